//! # aetcd-smol: an etcd v3 client for smol (and async-std)
//!
//! ```no_run
//! use aetcd_smol::Client;
//!
//! # fn main() -> Result<(), aetcd_smol::Error> {
//! smol::block_on(async {
//!     let client = Client::connect("localhost:2379").await?;
//!     client.put("greeting", "hello").await?;
//!     assert_eq!(client.get("greeting").await?.value().unwrap(), "hello");
//!     client.close().await;
//!     Ok(())
//! })
//! # }
//! ```
//!
//! No tokio runtime is involved: sockets and timers come from `async-io`, the
//! client's task runs on smol's executor (or any spawner given to [`Smol`]). The
//! API is the same as `aetcd-tokio`'s.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use aetcd_h2::{BoxFuture, Runtime, Timer};

pub use aetcd_h2::{
    election, kv, lease, lock, session, watch, CallOptions, Endpoint, Error, IntoEndpoints, Origin, ResponseFuture,
};

/// The etcd client on smol.
pub type Client = aetcd_h2::Client<Smol>;

/// Options for a [`Client`].
pub type ClientBuilder = aetcd_h2::ClientBuilder<Smol>;

type Spawner = Arc<dyn Fn(BoxFuture<()>) + Send + Sync>;

/// The smol runtime seam: `async-io` sockets and timers; the client's task is
/// spawned on smol's global executor unless another spawner is given.
///
/// ```no_run
/// # fn main() -> Result<(), aetcd_smol::Error> {
/// // e.g. for async-std: aetcd_smol::Smol::with_spawner(|task| { async_std::task::spawn(task); })
/// let rt = aetcd_smol::Smol::with_spawner(|task| smol::spawn(task).detach());
/// smol::block_on(async { aetcd_smol::Client::builder().runtime(rt).connect().await.map(drop) })
/// # }
/// ```
#[derive(Clone, Default)]
pub struct Smol {
    spawner: Option<Spawner>,
}

impl std::fmt::Debug for Smol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smol").field("custom_spawner", &self.spawner.is_some()).finish()
    }
}

impl Smol {
    /// Runs the client's task with `spawn` instead of smol's global executor.
    pub fn with_spawner(spawn: impl Fn(BoxFuture<()>) + Send + Sync + 'static) -> Smol {
        Smol { spawner: Some(Arc::new(spawn)) }
    }
}

impl Runtime for Smol {
    type Io = Compat<smol::net::TcpStream>;
    type Timer = SmolTimer;

    fn connect(&self, host: String, port: u16) -> BoxFuture<io::Result<Self::Io>> {
        Box::pin(async move {
            let stream = smol::net::TcpStream::connect((host.as_str(), port)).await?;
            stream.set_nodelay(true)?;
            Ok(Compat(stream))
        })
    }

    fn spawn(&self, task: BoxFuture<()>) {
        match &self.spawner {
            Some(spawn) => spawn(task),
            None => smol::spawn(task).detach(),
        }
    }

    fn timer(&self) -> SmolTimer {
        SmolTimer { timer: async_io::Timer::never() }
    }
}

/// A resettable `async_io::Timer`.
#[derive(Debug)]
pub struct SmolTimer {
    timer: async_io::Timer,
}

impl Timer for SmolTimer {
    fn reset(&mut self, at: Instant) {
        self.timer.set_at(at);
    }

    fn poll_fired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.timer).poll(cx).map(drop)
    }
}

/// Presents a `futures-io` byte stream with tokio's I/O traits, which `h2` speaks.
/// Only the traits: no tokio runtime runs.
#[derive(Debug)]
pub struct Compat<T>(pub T);

impl<T: smol::io::AsyncRead + Unpin> tokio::io::AsyncRead for Compat<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let unfilled = buf.initialize_unfilled();
        match Pin::new(&mut self.0).poll_read(cx, unfilled) {
            Poll::Ready(Ok(n)) => {
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: smol::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Compat<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}

//! # aetcd-tokio: an etcd v3 client for tokio
//!
//! ```no_run
//! use aetcd_tokio::Client;
//! use aetcd_tokio::kv::{Compare, Put, Txn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), aetcd_tokio::Error> {
//! let client = Client::connect("localhost:2379").await?;
//! client.put("greeting", "hello").await?;
//! assert_eq!(client.get("greeting").await?.value().unwrap(), "hello");
//!
//! let swapped = client.replace("greeting", "hello", "bonjour").await?;
//! let t = Txn::new()
//!     .when([Compare::version("counter").eq(0)])
//!     .and_then([Put::new("counter", "1")]);
//! let first = client.txn(t).await?.succeeded;
//! client.close().await;
//! # let _ = (swapped, first);
//! # Ok(()) }
//! ```
//!
//! Watches are `Stream`s that survive reconnects; leases can be kept alive in the
//! background; locks and elections hold kept-alive leases:
//!
//! ```no_run
//! use futures_util::StreamExt;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), aetcd_tokio::Error> {
//! let client = aetcd_tokio::Client::connect("localhost:2379").await?;
//! let mut changes = client.watch_prefix("jobs/").await?;
//! client.put("jobs/1", "queued").await?;
//! let event = changes.next().await.unwrap()?;
//! println!("{:?} {:?} at revision {}", event.kind, event.kv.key, event.revision());
//!
//! let lease = client.lease_grant_kept(10).await?; // renewed until dropped
//! let mut lock = client.lock("locks/jobs");
//! lock.acquire().await?;
//! lock.release().await?;
//! # drop(lease);
//! # Ok(()) }
//! ```
//!
//! The API is the same as `aetcd-smol`'s: both are [`aetcd_h2::Client`] with a
//! different runtime; this crate only supplies [`Tokio`], the runtime seam.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use aetcd_h2::{BoxFuture, Runtime, Timer};

pub use aetcd_h2::{
    election, kv, lease, lock, session, watch, CallOptions, Endpoint, Error, IntoEndpoints, Origin, ResponseFuture,
};

/// The etcd client on tokio.
pub type Client = aetcd_h2::Client<Tokio>;

/// Options for a [`Client`].
pub type ClientBuilder = aetcd_h2::ClientBuilder<Tokio>;

/// The tokio runtime seam: connects with `tokio::net`, spawns on the current
/// runtime (or the handle given), sleeps with `tokio::time`.
///
/// ```no_run
/// # async fn demo() -> Result<(), aetcd_tokio::Error> {
/// let on_other_runtime = aetcd_tokio::Tokio::with_handle(tokio::runtime::Handle::current());
/// let client = aetcd_tokio::Client::builder().runtime(on_other_runtime).connect().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Tokio {
    handle: Option<tokio::runtime::Handle>,
}

impl Tokio {
    /// Spawns the client's task on `handle` instead of the current runtime.
    pub fn with_handle(handle: tokio::runtime::Handle) -> Tokio {
        Tokio { handle: Some(handle) }
    }
}

impl Runtime for Tokio {
    type Io = tokio::net::TcpStream;
    type Timer = TokioTimer;

    fn connect(&self, host: String, port: u16) -> BoxFuture<io::Result<tokio::net::TcpStream>> {
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            stream.set_nodelay(true)?;
            Ok(stream)
        })
    }

    fn spawn(&self, task: BoxFuture<()>) {
        match &self.handle {
            Some(h) => drop(h.spawn(task)),
            None => drop(tokio::spawn(task)),
        }
    }

    fn timer(&self) -> TokioTimer {
        TokioTimer { sleep: None }
    }
}

/// A resettable `tokio::time::Sleep`.
#[derive(Debug)]
pub struct TokioTimer {
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Timer for TokioTimer {
    fn reset(&mut self, at: Instant) {
        let at = tokio::time::Instant::from_std(at);
        match &mut self.sleep {
            Some(s) => s.as_mut().reset(at),
            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(at))),
        }
    }

    fn poll_fired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.sleep {
            Some(s) => s.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}

use std::future::Future as _;

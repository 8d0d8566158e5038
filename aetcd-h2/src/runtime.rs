//! The runtime seam: everything the driver needs from an async runtime.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use aetcd_core::Error;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What an async runtime provides to the driver: TCP connect, spawn, a timer, and
/// the clock. `aetcd-tokio` and `aetcd-smol` each implement it in a few dozen lines.
pub trait Runtime: Clone + Default + Send + Sync + Unpin + 'static {
    /// A connected byte stream usable by `h2`.
    type Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static;
    /// The runtime's resettable timer.
    type Timer: Timer;

    /// Opens a TCP connection (with `TCP_NODELAY`) to `host:port`, trying each
    /// resolved address in turn.
    fn connect(&self, host: String, port: u16) -> BoxFuture<io::Result<Self::Io>>;

    /// Runs `task` in the background.
    fn spawn(&self, task: BoxFuture<()>);

    /// A timer that has not been set yet.
    fn timer(&self) -> Self::Timer;

    /// The current time.
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A timer that can be moved to a new instant and polled until it fires.
pub trait Timer: Send + Unpin + 'static {
    /// Fires at `at` (rearming a timer that already fired).
    fn reset(&mut self, at: Instant);
    /// Ready once the instant set last has passed.
    fn poll_fired(&mut self, cx: &mut Context<'_>) -> Poll<()>;
}

/// A deadline `d` from now (none if it is too far to represent).
pub(crate) fn deadline_in(d: Duration) -> Option<Instant> {
    Instant::now().checked_add(d)
}

/// Runs `f`, failing with [`Error::DeadlineExceeded`] (and dropping `f`) at `deadline`.
pub(crate) async fn with_deadline<R: Runtime, T>(
    runtime: &R,
    deadline: Option<Instant>,
    f: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    let Some(deadline) = deadline else { return f.await };
    let mut timer = runtime.timer();
    timer.reset(deadline);
    let mut f = std::pin::pin!(f);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(r) = f.as_mut().poll(cx) {
            return Poll::Ready(r);
        }
        timer.poll_fired(cx).map(|()| Err(Error::DeadlineExceeded))
    })
    .await
}

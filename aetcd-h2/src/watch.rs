//! Watches on [`Client`]: a handle per watch that is a `Stream` of events, with
//! `cancel()`, over the one multiplexed watch stream of the client.
//!
//! Buffering is bounded: each watch keeps at most `watch_buffer` undelivered
//! responses (see [`ClientBuilder::watch_buffer`](crate::ClientBuilder::watch_buffer)).
//! A consumer that falls further behind gets [`Error::WatchLagged`] with the
//! revision to resume from, instead of the client's memory growing without limit;
//! the other watches are not slowed down.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use aetcd_core::Error;
use bytes::Bytes;
use futures_channel::oneshot;
use futures_core::Stream;

pub use aetcd_core::rpc::watch::{EventKind, WatchEvent, WatchId, WatchRequest, WatchResponse};

use crate::client::{Client, Shared};
use crate::driver::Command;
use crate::runtime::{deadline_in, with_deadline, Runtime};

/// One item of a watch, as [`Watcher::responses`] yields them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WatchItem {
    /// The changes of one or more whole revisions.
    Events(WatchResponse),
    /// Every change up to `revision` has been delivered.
    Progress {
        /// The store revision the server vouched for.
        revision: i64,
    },
}

#[derive(Debug)]
struct Queue {
    items: VecDeque<WatchItem>,
    end: Option<Result<(), Error>>,
    waker: Option<Waker>,
    next_revision: i64,
}

/// State shared by the driver (producer) and the handle (consumer) of one watch.
#[derive(Debug)]
pub(crate) struct WatchShared {
    queue: Mutex<Queue>,
    capacity: usize,
}

impl WatchShared {
    pub(crate) fn new(capacity: usize, start_revision: i64) -> Arc<Self> {
        Arc::new(WatchShared {
            queue: Mutex::new(Queue { items: VecDeque::new(), end: None, waker: None, next_revision: start_revision }),
            capacity: capacity.max(1),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding this lock would be a bug in this file; the queue stays usable.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn created(&self, revision: i64) {
        let mut q = self.lock();
        if q.next_revision == 0 {
            q.next_revision = revision + 1;
        }
    }

    /// Queues a response; false when the buffer is full (the watch then ends lagged).
    pub(crate) fn push_events(&self, response: WatchResponse) -> bool {
        let mut q = self.lock();
        if q.end.is_some() {
            return true;
        }
        if q.items.len() >= self.capacity {
            let next_revision = q.next_revision;
            q.end = Some(Err(Error::WatchLagged { next_revision }));
            wake(&mut q);
            return false;
        }
        if let Some(last) = response.events.last() {
            q.next_revision = last.revision() + 1;
        }
        q.items.push_back(WatchItem::Events(response));
        wake(&mut q);
        true
    }

    /// Queues a progress notification; `next_revision` is where the watch would
    /// resume now (a requested progress does not move it: older servers may send
    /// it ahead of events still in flight).
    pub(crate) fn push_progress(&self, revision: i64, next_revision: i64) {
        let mut q = self.lock();
        if q.end.is_some() {
            return;
        }
        q.next_revision = q.next_revision.max(next_revision);
        // Consecutive progress notifications collapse into the newest.
        if let Some(WatchItem::Progress { revision: r }) = q.items.back_mut() {
            *r = (*r).max(revision);
        } else {
            q.items.push_back(WatchItem::Progress { revision });
        }
        wake(&mut q);
    }

    pub(crate) fn end(&self, result: Result<(), Error>) {
        let mut q = self.lock();
        if q.end.is_none() {
            q.end = Some(result);
        }
        wake(&mut q);
    }
}

fn wake(q: &mut Queue) {
    if let Some(w) = q.waker.take() {
        w.wake();
    }
}

/// A live watch: a [`Stream`] of events, in revision order, each exactly once,
/// across reconnects and server restarts.
///
/// The stream ends (`None`) after [`Watcher::cancel`]; it yields one `Err` and
/// then ends when the watch fails: [`Error::Compacted`] when the history it needs
/// was compacted, [`Error::WatchLagged`] when the consumer fell too far behind,
/// [`Error::PermissionDenied`], [`Error::NoLeader`], ... Dropping it cancels the watch.
///
/// ```no_run
/// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
/// use futures_util::StreamExt;
/// let mut watcher = client.watch_prefix("jobs/").await?;
/// while let Some(event) = watcher.next().await {
///     let event = event?;
///     println!("{:?} {:?} at {}", event.kind, event.kv.key, event.revision());
/// #   break;
/// }
/// watcher.cancel().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Watcher {
    id: WatchId,
    shared: Arc<WatchShared>,
    client: Arc<Shared>,
    current: VecDeque<WatchEvent>,
    finished: bool,
}

impl Watcher {
    /// The watch's id (also its id on the wire).
    pub fn id(&self) -> WatchId {
        self.id
    }

    /// The first revision not yet handed to this handle: watch again from here
    /// to continue without a gap or a repeat.
    pub fn next_revision(&self) -> i64 {
        let queued = self.shared.lock().items.iter().find_map(|i| match i {
            WatchItem::Events(r) => r.events.first().map(WatchEvent::revision),
            WatchItem::Progress { .. } => None,
        });
        match (self.current.front(), queued) {
            (Some(e), _) => e.revision(),
            (None, Some(r)) => r,
            (None, None) => self.shared.lock().next_revision,
        }
    }

    /// Cancels the watch and waits until the server confirmed it. No event is
    /// delivered after this returns; the stream then ends.
    pub async fn cancel(&mut self) -> Result<(), Error> {
        if self.finished {
            return Ok(());
        }
        let _ = self.client.send(Command::CancelWatch(self.id));
        self.current.clear();
        let result = std::future::poll_fn(|cx| {
            let mut q = self.shared.lock();
            q.items.clear();
            match q.end.take() {
                Some(r) => Poll::Ready(r),
                None => {
                    q.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await;
        self.finished = true;
        match result {
            Err(Error::Closed) => Ok(()),
            other => other,
        }
    }

    /// The watch as whole responses (every event of a revision together, with
    /// the header revision) and progress notifications.
    pub fn responses(self) -> WatchResponses {
        WatchResponses { inner: self }
    }

    fn poll_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<WatchItem, Error>>> {
        if self.finished {
            return Poll::Ready(None);
        }
        let mut q = self.shared.lock();
        if let Some(item) = q.items.pop_front() {
            return Poll::Ready(Some(Ok(item)));
        }
        match q.end.take() {
            Some(result) => {
                drop(q);
                self.finished = true;
                Poll::Ready(result.err().map(Err))
            }
            None => {
                q.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Stream for Watcher {
    type Item = Result<WatchEvent, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(e) = self.current.pop_front() {
                return Poll::Ready(Some(Ok(e)));
            }
            match self.poll_item(cx) {
                Poll::Ready(Some(Ok(WatchItem::Events(r)))) => self.current = r.events.into(),
                Poll::Ready(Some(Ok(WatchItem::Progress { .. }))) => continue,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.client.send(Command::CancelWatch(self.id));
        }
    }
}

/// A [`Watcher`] seen as whole responses and progress notifications.
#[derive(Debug)]
pub struct WatchResponses {
    inner: Watcher,
}

impl WatchResponses {
    /// Cancels the watch and waits for the server to confirm it.
    pub async fn cancel(&mut self) -> Result<(), Error> {
        self.inner.cancel().await
    }

    /// The first revision not yet handed out.
    pub fn next_revision(&self) -> i64 {
        self.inner.next_revision()
    }
}

impl Stream for WatchResponses {
    type Item = Result<WatchItem, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_item(cx)
    }
}

/// Cancels a watch whose creation was abandoned.
struct CreateGuard {
    client: Arc<Shared>,
    id: WatchId,
    armed: bool,
}

impl Drop for CreateGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.client.send(Command::CancelWatch(self.id));
        }
    }
}

impl<R> Client<R> {
    /// Watches one key from now on. Returns once the server created the watch, so
    /// every change after this returns is delivered.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// use futures_util::StreamExt;
    /// let mut w = client.watch("config").await?;
    /// client.put("config", "v2").await?;
    /// let event = w.next().await.unwrap()?;
    /// assert_eq!(event.kv.value, "v2");
    /// # Ok(()) }
    /// ```
    pub async fn watch(&self, key: impl Into<Bytes>) -> Result<Watcher, Error> {
        self.watch_with(WatchRequest::key(key)).await
    }

    /// Watches every key starting with `prefix`.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let w = client.watch_prefix("jobs/").await?;
    /// # Ok(()) }
    /// ```
    pub async fn watch_prefix(&self, prefix: impl Into<Bytes>) -> Result<Watcher, Error> {
        self.watch_with(WatchRequest::prefix(prefix)).await
    }

    /// Watches the keys in `[start, end)`.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let w = client.watch_range("a", "n").await?;
    /// # Ok(()) }
    /// ```
    pub async fn watch_range(&self, start: impl Into<Bytes>, end: impl Into<Bytes>) -> Result<Watcher, Error> {
        self.watch_with(WatchRequest::range(start, end)).await
    }

    /// Starts a watch with every option (see [`WatchRequest`]).
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// use aetcd_h2::watch::WatchRequest;
    /// let history = client.watch_with(WatchRequest::prefix("audit/").start_revision(1).prev_kv()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn watch_with(&self, request: WatchRequest) -> Result<Watcher, Error> {
        let id = WatchId(self.shared.next_id().0);
        let shared = WatchShared::new(self.shared.watch_buffer, request.requested_start_revision());
        let (created, answer) = oneshot::channel();
        let mut guard = CreateGuard { client: self.shared.clone(), id, armed: true };
        self.shared.send(Command::Watch { id, request, shared: shared.clone(), created })?;
        match answer.await {
            Ok(Ok(())) => {
                guard.armed = false;
                Ok(Watcher { id, shared, client: self.shared.clone(), current: VecDeque::new(), finished: false })
            }
            Ok(Err(e)) => {
                guard.armed = false;
                Err(e)
            }
            Err(_) => Err(Error::Closed),
        }
    }

    /// Asks the server to send every watch a progress notification (its current
    /// revision), seen as [`WatchItem::Progress`] by [`Watcher::responses`].
    pub fn request_progress(&self) -> Result<(), Error> {
        self.shared.send(Command::RequestProgress)
    }
}

impl<R: Runtime> Client<R> {
    /// Waits for the next change of `key` and returns it; fails with
    /// [`Error::DeadlineExceeded`] when none comes within `timeout`.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let next = client.watch_once("config", std::time::Duration::from_secs(5)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn watch_once(&self, key: impl Into<Bytes>, timeout: Duration) -> Result<WatchEvent, Error> {
        self.watch_once_with(WatchRequest::key(key), timeout).await
    }

    /// [`Client::watch_once`] with every watch option.
    pub async fn watch_once_with(&self, request: WatchRequest, timeout: Duration) -> Result<WatchEvent, Error> {
        let watch = self.watch_with(request);
        let first = async move {
            let mut w = watch.await?;
            let event = std::future::poll_fn(|cx| Pin::new(&mut w).poll_next(cx)).await;
            let _ = w.cancel().await;
            event.unwrap_or(Err(Error::Closed))
        };
        with_deadline(&self.runtime, deadline_in(timeout), first).await
    }
}

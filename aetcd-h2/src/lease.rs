//! Lease calls on [`Client`]: grant, revoke, time-to-live, list.
//! Automatic keep-alive: [`KeptLease`].

pub use aetcd_core::rpc::lease::{
    LeaseGrant, LeaseGrantResponse, LeaseLeases, LeaseLeasesResponse, LeaseRevoke, LeaseRevokeResponse,
    LeaseTimeToLive, LeaseTimeToLiveResponse,
};

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use aetcd_core::Error;

use crate::client::{Client, ResponseFuture, Shared};
use crate::driver::Command;

impl<R> Client<R> {
    /// Grants a lease of `ttl` seconds.
    ///
    /// ```no_run
    /// # async fn demo<R>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// use aetcd_h2::kv::Put;
    /// let lease = client.lease_grant(30).await?.id;
    /// client.request(Put::new("session/me", "alive").lease(lease)).await?;
    /// # Ok(()) }
    /// ```
    pub fn lease_grant(&self, ttl: i64) -> ResponseFuture<LeaseGrant> {
        self.request(LeaseGrant::new(ttl))
    }

    /// Revokes lease `id`, deleting its keys.
    ///
    /// ```no_run
    /// # async fn demo<R>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// client.lease_revoke(0x1234).await?;
    /// # Ok(()) }
    /// ```
    pub fn lease_revoke(&self, id: i64) -> ResponseFuture<LeaseRevoke> {
        self.request(LeaseRevoke::new(id))
    }

    /// How long lease `id` has left, with its keys.
    ///
    /// ```no_run
    /// # async fn demo<R>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let info = client.lease_time_to_live(0x1234).await?;
    /// println!("{} s left, keys {:?}", info.ttl, info.keys);
    /// # Ok(()) }
    /// ```
    pub fn lease_time_to_live(&self, id: i64) -> ResponseFuture<LeaseTimeToLive> {
        self.request(LeaseTimeToLive::new(id).with_keys())
    }

    /// Every lease id.
    ///
    /// ```no_run
    /// # async fn demo<R>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let ids = client.leases().await?.ids;
    /// # Ok(()) }
    /// ```
    pub fn leases(&self) -> ResponseFuture<LeaseLeases> {
        self.request(LeaseLeases::new())
    }
}

/// State shared by the driver and the handles of one kept lease.
#[derive(Debug)]
pub(crate) struct LeaseShared {
    state: Mutex<LeaseState>,
}

#[derive(Debug)]
struct LeaseState {
    ttl: i64,
    renewals: u64,
    lost: Option<Error>,
    wakers: Vec<Waker>,
}

impl LeaseShared {
    fn new(ttl: i64) -> Arc<Self> {
        Arc::new(LeaseShared { state: Mutex::new(LeaseState { ttl, renewals: 0, lost: None, wakers: Vec::new() }) })
    }

    fn lock(&self) -> MutexGuard<'_, LeaseState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn renewed(&self, ttl: i64) {
        let mut s = self.lock();
        s.ttl = ttl;
        s.renewals += 1;
        s.wakers.drain(..).for_each(Waker::wake);
    }

    pub(crate) fn lost(&self, error: Error) {
        let mut s = self.lock();
        if s.lost.is_none() {
            s.lost = Some(error);
        }
        s.wakers.drain(..).for_each(Waker::wake);
    }
}

/// A lease the client keeps alive in the background, renewing it a third of its
/// TTL after each confirmation over the client's one keep-alive stream, across
/// reconnects.
///
/// Loss is explicit: [`KeptLease::lost`] resolves with why the lease is gone
/// ([`Error::LeaseNotFound`] when the server says it expired or was revoked,
/// [`Error::LeaseExpired`] when its TTL passed without a confirmed renewal).
/// Dropping the handle stops the keep-alive (the lease then expires after its
/// TTL), or revokes the lease with [`KeptLease::revoke_on_drop`].
///
/// ```no_run
/// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
/// use aetcd_h2::kv::Put;
/// let lease = client.lease_grant_kept(10).await?;
/// client.request(Put::new("service/me", "10.0.0.7:80").lease(lease.id())).await?;
/// let why = lease.lost().await; // resolves only if the lease is lost
/// eprintln!("registration gone: {why}");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct KeptLease {
    id: i64,
    shared: Arc<LeaseShared>,
    client: Arc<Shared>,
    revoke_on_drop: bool,
    stopped: bool,
}

impl KeptLease {
    /// The lease id.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// The TTL of the last renewal (or the granted TTL before the first).
    pub fn ttl(&self) -> i64 {
        self.shared.lock().ttl
    }

    /// How many renewals the server confirmed so far.
    pub fn renewals(&self) -> u64 {
        self.shared.lock().renewals
    }

    /// Why the lease is lost, if it is.
    pub fn lost_reason(&self) -> Option<Error> {
        self.shared.lock().lost.clone()
    }

    /// True until a loss is reported.
    pub fn is_alive(&self) -> bool {
        self.shared.lock().lost.is_none()
    }

    /// Resolves when the lease is lost, with the reason; never while it is kept.
    pub fn lost(&self) -> LeaseLost {
        LeaseLost { shared: self.shared.clone() }
    }

    /// Revokes the lease when this handle is dropped (instead of letting it expire).
    pub fn revoke_on_drop(mut self, on: bool) -> Self {
        self.revoke_on_drop = on;
        self
    }

    /// Stops the keep-alive and revokes the lease, deleting its keys.
    pub async fn revoke(mut self) -> Result<(), Error> {
        self.stop_keeping();
        self.revoke_on_drop = false; // revoked here, not again from Drop
        let r = self.client_request(LeaseRevoke::new(self.id)).await;
        match r {
            Ok(_) | Err(Error::LeaseNotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn client_request<U: aetcd_core::rpc::Unary>(&self, request: U) -> ResponseFuture<U> {
        ResponseFuture::new(self.client.clone(), request)
    }

    fn stop_keeping(&mut self) {
        if !self.stopped {
            self.stopped = true;
            let _ = self.client.send(Command::StopKeepAlive { id: self.id, shared: self.shared.clone() });
        }
    }

    /// Waits for the next renewal the server confirms and returns its TTL, or
    /// the reason the lease was lost.
    ///
    /// ```no_run
    /// # async fn demo(lease: aetcd_h2::lease::KeptLease) -> Result<(), aetcd_h2::Error> {
    /// let ttl = lease.renewed().await?;
    /// # Ok(()) }
    /// ```
    pub async fn renewed(&self) -> Result<i64, Error> {
        let seen = self.renewals();
        self.renewal_after(seen).await
    }

    async fn renewal_after(&self, seen: u64) -> Result<i64, Error> {
        std::future::poll_fn(|cx| {
            let mut s = self.shared.lock();
            if let Some(e) = &s.lost {
                return Poll::Ready(Err(e.clone()));
            }
            if s.renewals > seen {
                return Poll::Ready(Ok(s.ttl));
            }
            register(&mut s.wakers, cx);
            Poll::Pending
        })
        .await
    }
}

impl Drop for KeptLease {
    fn drop(&mut self) {
        self.stop_keeping();
        if self.revoke_on_drop {
            self.client.fire(LeaseRevoke::new(self.id));
        }
    }
}

/// Resolves with the reason when a kept lease is lost.
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct LeaseLost {
    shared: Arc<LeaseShared>,
}

impl Future for LeaseLost {
    type Output = Error;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Error> {
        let mut s = self.shared.lock();
        match &s.lost {
            Some(e) => Poll::Ready(e.clone()),
            None => {
                register(&mut s.wakers, cx);
                Poll::Pending
            }
        }
    }
}

/// Adds the task's waker unless it is there already (a future polled often must
/// not grow the list).
fn register(wakers: &mut Vec<Waker>, cx: &Context<'_>) {
    if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
        wakers.push(cx.waker().clone());
    }
}

/// Revokes a granted lease unless disarmed: a grant whose caller went away
/// (its future dropped) leaves nothing to wait out its TTL.
struct RevokeUnlessKept {
    shared: Arc<Shared>,
    id: Option<i64>,
}

impl Drop for RevokeUnlessKept {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.shared.fire(LeaseRevoke::new(id));
        }
    }
}

impl<R> Client<R> {
    /// Keeps lease `id` alive in the background until the handle is dropped.
    /// Fails with [`Error::LeaseNotFound`] if the lease does not exist; returns
    /// after the server confirmed the first renewal.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let id = client.lease_grant(5).await?.id;
    /// let kept = client.lease_keep_alive(id).await?;
    /// # Ok(()) }
    /// ```
    pub async fn lease_keep_alive(&self, id: i64) -> Result<KeptLease, Error> {
        let info = self.lease_time_to_live(id).await?;
        if info.ttl < 0 {
            return Err(Error::LeaseNotFound);
        }
        self.keep(id, info.granted_ttl.max(info.ttl).max(1)).await
    }

    /// Grants a lease of `ttl` seconds and keeps it alive until the handle is dropped.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let lease = client.lease_grant_kept(2).await?.revoke_on_drop(true);
    /// # Ok(()) }
    /// ```
    pub async fn lease_grant_kept(&self, ttl: i64) -> Result<KeptLease, Error> {
        let granted = self.lease_grant(ttl).await?;
        let mut guard = RevokeUnlessKept { shared: self.shared.clone(), id: Some(granted.id) };
        let kept = self.keep(granted.id, granted.ttl).await?;
        guard.id = None;
        Ok(kept)
    }

    /// Renews lease `id` once, over the shared keep-alive stream; returns the new TTL.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let ttl = client.lease_keep_alive_once(0x1234).await?;
    /// # Ok(()) }
    /// ```
    pub async fn lease_keep_alive_once(&self, id: i64) -> Result<i64, Error> {
        let kept = self.lease_keep_alive(id).await?;
        Ok(kept.ttl())
    }

    async fn keep(&self, id: i64, ttl: i64) -> Result<KeptLease, Error> {
        let shared = LeaseShared::new(ttl);
        self.shared.send(Command::KeepAlive { id, ttl, shared: shared.clone() })?;
        let kept = KeptLease { id, shared, client: self.shared.clone(), revoke_on_drop: false, stopped: false };
        kept.renewal_after(0).await?;
        Ok(kept)
    }
}

//! Sessions: one kept-alive lease that the [locks](crate::lock) and
//! [elections](crate::election) made from it share.
//!
//! A [`Session`] grants a lease and keeps it alive until the session is closed or
//! the last handle that uses it (the session, or a lock or election made from it)
//! is dropped; then the lease is revoked. Locks and elections made from a session
//! never revoke its lease: they only delete their own keys.
//!
//! ```no_run
//! # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
//! let session = client.session().await?;
//! let mut jobs = session.lock("locks/jobs");
//! let mut leader = session.election("elections/scheduler");
//! jobs.acquire().await?;
//! leader.campaign("node-a").await?;
//! // Both are held by the same lease; closing the session ends both.
//! session.close().await?;
//! # Ok(()) }
//! ```

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use aetcd_core::rpc::election::{LeaderKey, Resign};
use aetcd_core::rpc::kv::{Compare, Delete, Get, KeyValue, Put, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse};
use aetcd_core::rpc::lease::{LeaseGrant, LeaseRevoke};
use aetcd_core::Error;
use bytes::Bytes;

use crate::client::{Client, ResponseFuture, Shared};
use crate::election::Election;
use crate::lease::{KeptLease, LeaseLost};
use crate::lock::Lock;
use crate::runtime::Runtime;
use crate::watch::{EventKind, WatchRequest};

/// The lease TTL, in seconds, of sessions, locks and elections that set none.
///
/// ```
/// assert_eq!(aetcd_h2::session::DEFAULT_TTL, 15);
/// ```
pub const DEFAULT_TTL: i64 = 15;

/// A one-shot signal with an error: set once, seen by every waiter.
#[derive(Debug, Default)]
struct Signal {
    state: Mutex<SignalState>,
}

#[derive(Debug, Default)]
struct SignalState {
    fired: Option<Error>,
    wakers: Vec<Waker>,
}

impl Signal {
    fn lock(&self) -> MutexGuard<'_, SignalState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fire(&self, error: Error) {
        let mut s = self.lock();
        if s.fired.is_none() {
            s.fired = Some(error);
        }
        s.wakers.drain(..).for_each(Waker::wake);
    }

    fn get(&self) -> Option<Error> {
        self.lock().fired.clone()
    }

    fn poll(&self, cx: &mut Context<'_>) -> Poll<Error> {
        let mut s = self.lock();
        if let Some(e) = &s.fired {
            return Poll::Ready(e.clone());
        }
        if !s.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            s.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// The lease of a session, shared by the session and everything made from it.
#[derive(Debug)]
pub(crate) struct SessionLease {
    kept: KeptLease,
    closed: Signal,
    /// Names of the locks and elections that use the lease now: each would use
    /// the same key, `<name>/<lease>`, so only one may at a time.
    names: Mutex<HashSet<Bytes>>,
}

impl SessionLease {
    pub(crate) fn id(&self) -> i64 {
        self.kept.id()
    }

    /// Why the lease can no longer be relied on, if it cannot.
    pub(crate) fn lost_reason(&self) -> Option<Error> {
        self.closed.get().or_else(|| self.kept.lost_reason())
    }

    fn names(&self) -> MutexGuard<'_, HashSet<Bytes>> {
        self.names.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves `name` for one lock or election of this session.
    pub(crate) fn claim(self: &Arc<Self>, name: &Bytes) -> Result<NameClaim, Error> {
        if !self.names().insert(name.clone()) {
            return Err(Error::InvalidArgument(format!(
                "the session already uses the lock or election {:?} (they would share one key)",
                String::from_utf8_lossy(name)
            )));
        }
        Ok(NameClaim { lease: self.clone(), name: name.clone() })
    }
}

/// A name reserved in a session; freed on drop.
#[derive(Debug)]
pub(crate) struct NameClaim {
    lease: Arc<SessionLease>,
    name: Bytes,
}

impl Drop for NameClaim {
    fn drop(&mut self) {
        self.lease.names().remove(&self.name);
    }
}

/// The lease behind one held lock or leadership: its own, or its session's.
#[derive(Debug)]
pub(crate) enum Holder {
    /// A lease granted for this lock or campaign alone; revoked when it ends.
    Owned(KeptLease),
    /// The session's lease, with the name reserved in the session (while the
    /// attempt runs, the reservation is held by its [`Undo`] instead).
    Session { lease: Arc<SessionLease>, claim: Option<NameClaim> },
}

impl Holder {
    /// A holder for a lock or campaign `name`: the session's lease (the name's
    /// reservation goes to `undo`, so that it outlives any cleanup), or a new kept
    /// lease of `ttl` seconds, whose revocation `undo` is armed with before it is
    /// even granted.
    pub(crate) async fn obtain<R: Runtime>(
        client: &Client<R>,
        session: Option<&Arc<SessionLease>>,
        name: &Bytes,
        ttl: i64,
        undo: &mut Undo,
    ) -> Result<Holder, Error> {
        match session {
            Some(s) => {
                if s.lost_reason().is_some() {
                    return Err(Error::SessionExpired);
                }
                undo.claim = Some(s.claim(name)?);
                Ok(Holder::Session { lease: s.clone(), claim: None })
            }
            None => grant_kept(client, ttl, undo).await.map(Holder::Owned),
        }
    }

    /// Takes over the name's reservation once the attempt succeeded.
    pub(crate) fn keep(&mut self, reservation: Option<NameClaim>) {
        if let Holder::Session { claim, .. } = self {
            *claim = reservation;
        }
    }

    pub(crate) fn id(&self) -> i64 {
        match self {
            Holder::Owned(k) => k.id(),
            Holder::Session { lease, .. } => lease.id(),
        }
    }

    pub(crate) fn lost_reason(&self) -> Option<Error> {
        match self {
            Holder::Owned(k) => k.lost_reason(),
            Holder::Session { lease, .. } => lease.lost_reason(),
        }
    }

    pub(crate) fn is_owned(&self) -> bool {
        matches!(self, Holder::Owned(_))
    }

    pub(crate) fn lost(&self) -> Lost {
        match self {
            Holder::Owned(k) => Lost { lease: Some(k.lost()), session: None, now: None },
            Holder::Session { lease, .. } => Lost::of_session(lease),
        }
    }

    /// Ends the hold: revokes an owned lease (which deletes the key), or runs
    /// `release` (which deletes the key). Cancel-safe: if this future is dropped
    /// before the server answered, the release is still sent. The name stays
    /// reserved in the session until the release is done.
    pub(crate) async fn release(self, shared: Arc<Shared>, release: Release) -> Result<(), Error> {
        let mut undo = Undo::new(shared);
        match self {
            Holder::Owned(kept) => {
                undo.arm(Release::Revoke(kept.id()));
                let r = kept.revoke().await; // stops the keep-alive first: no spurious loss
                undo.disarm();
                r
            }
            Holder::Session { claim, .. } => {
                undo.arm(release);
                undo.claim = claim;
                undo.run().await
            }
        }
    }

    /// Ends the hold from `Drop`: stops the keep-alive, then sends the release
    /// without waiting for it.
    pub(crate) fn release_now(self, shared: &Shared, release: Release) {
        match self {
            Holder::Owned(kept) => {
                let id = kept.id();
                drop(kept);
                Release::Revoke(id).fire(shared);
            }
            Holder::Session { claim, .. } => {
                release.fire(shared);
                drop(claim);
            }
        }
    }
}

/// Resolves when the lease behind a session, lock or leadership is lost (or
/// the session was closed), with the reason:
///
/// - [`Error::LeaseNotFound`]: the server says the lease expired or was revoked;
/// - [`Error::LeaseExpired`]: its TTL passed without a confirmed renewal (it may be gone);
/// - [`Error::SessionExpired`]: the session was closed, or (for a lock or election)
///   nothing is held when `lost()` is called;
/// - [`Error::Closed`]: the client was closed.
///
/// It never resolves while the lease is kept; a deliberate release does not
/// resolve it either.
///
/// ```no_run
/// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
/// let session = client.session().await?;
/// let lost: aetcd_h2::session::Lost = session.lost();
/// let why = lost.await; // only if the lease is lost
/// eprintln!("session over: {why}");
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Lost {
    lease: Option<LeaseLost>,
    session: Option<Arc<SessionLease>>,
    now: Option<Error>,
}

impl Lost {
    pub(crate) fn of_session(s: &Arc<SessionLease>) -> Lost {
        Lost { lease: Some(s.kept.lost()), session: Some(s.clone()), now: None }
    }

    /// Resolves at once with `error`.
    pub(crate) fn ready(error: Error) -> Lost {
        Lost { lease: None, session: None, now: Some(error) }
    }
}

impl Future for Lost {
    type Output = Error;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Error> {
        let this = &mut *self;
        if let Some(e) = &this.now {
            return Poll::Ready(e.clone());
        }
        if let Some(s) = &this.session {
            if let Poll::Ready(e) = s.closed.poll(cx) {
                return Poll::Ready(e);
            }
        }
        if let Some(l) = &mut this.lease {
            if let Poll::Ready(e) = Pin::new(l).poll(cx) {
                return Poll::Ready(e);
            }
        }
        Poll::Pending
    }
}

/// How a lock or leadership is given up.
#[derive(Debug, Clone)]
pub(crate) enum Release {
    /// Revoke the lease (its keys go with it).
    Revoke(i64),
    /// Delete the key if the compare holds (so that nobody else's key is deleted).
    Delete { key: Bytes, when: Compare },
    /// Resign the leadership (the server deletes the key if it still is ours).
    Resign(LeaderKey),
}

impl Release {
    /// Deletes `key` only while it is the incarnation created at `revision`.
    pub(crate) fn delete_if_created(key: Bytes, revision: i64) -> Release {
        let when = Compare::create_revision(key.clone()).eq(revision);
        Release::Delete { key, when }
    }

    fn fire(self, shared: &Shared) {
        match self {
            Release::Revoke(id) => shared.fire(LeaseRevoke::new(id)),
            Release::Delete { key, when } => shared.fire(Txn::new().when([when]).and_then([Delete::key(key)])),
            Release::Resign(leader) => shared.fire(Resign::new(&leader)),
        }
    }

    async fn run(self, shared: Arc<Shared>) -> Result<(), Error> {
        match self {
            Release::Revoke(id) => match ResponseFuture::new(shared, LeaseRevoke::new(id)).await {
                Ok(_) | Err(Error::LeaseNotFound) => Ok(()),
                Err(e) => Err(e),
            },
            Release::Delete { key, when } => {
                ResponseFuture::new(shared, Txn::new().when([when]).and_then([Delete::key(key)])).await.map(drop)
            }
            Release::Resign(leader) => match ResponseFuture::new(shared, Resign::new(&leader)).await {
                Ok(_) | Err(Error::ElectionNotLeader) => Ok(()),
                Err(e) => Err(e),
            },
        }
    }
}

/// What must be undone if an acquisition or campaign does not complete: run
/// (awaited) on failure, sent without waiting from `Drop` when the future that
/// owns it is dropped (cancelled). It also holds the name's reservation in the
/// session, released only after the cleanup (ran or was sent).
#[derive(Debug)]
pub(crate) struct Undo {
    shared: Arc<Shared>,
    action: Option<Release>,
    claim: Option<NameClaim>,
}

impl Undo {
    pub(crate) fn new(shared: Arc<Shared>) -> Undo {
        Undo { shared, action: None, claim: None }
    }

    pub(crate) fn arm(&mut self, action: Release) {
        self.action = Some(action);
    }

    pub(crate) fn disarm(&mut self) {
        self.action = None;
    }

    /// Nothing to undo any more (the attempt succeeded): hands back the name's
    /// reservation, if any, for the holder to keep.
    pub(crate) fn finish(&mut self) -> Option<NameClaim> {
        self.action = None;
        self.claim.take()
    }

    /// Takes over what `other` would undo, if anything.
    fn take_from(&mut self, other: &mut Undo) {
        if let Some(action) = other.action.take() {
            self.action = Some(action);
        }
    }

    /// Runs the armed action and waits for the server; still armed (and so sent
    /// from `Drop`) if this future is dropped before that.
    pub(crate) async fn run(&mut self) -> Result<(), Error> {
        let Some(action) = self.action.clone() else { return Ok(()) };
        let r = action.run(self.shared.clone()).await;
        self.action = None;
        r
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        if let Some(action) = self.action.take() {
            action.fire(&self.shared);
        }
        // `claim` is dropped after this: the name is free once the cleanup is sent.
    }
}

/// The outcome of [`create_own_key`].
pub(crate) struct OwnKey {
    /// The key's creation revision.
    pub(crate) revision: i64,
    /// The oldest key under the prefix at that revision.
    pub(crate) oldest: Option<KeyValue>,
}

impl OwnKey {
    /// True when `key` (created at `revision`) was the oldest.
    pub(crate) fn is_oldest(&self, key: &Bytes) -> bool {
        self.oldest.as_ref().is_some_and(|o| o.key == key && o.create_revision == self.revision)
    }
}

/// Creates `key` with `value` on `lease`, and returns its creation revision with
/// the oldest key under `prefix`, read in the same transaction. The creation runs
/// to its end even if this is cancelled (and is then undone).
///
/// A key that exists already on the same lease is a leftover of an earlier
/// attempt whose deletion is still under way: it is deleted (if still that
/// incarnation) and the key created anew, so that every cleanup of this attempt
/// is guarded by the creation revision and never deletes a later incarnation.
/// With `guard_undo`, `undo` is armed with that guarded deletion.
pub(crate) async fn create_own_key<R: Runtime>(
    client: &Client<R>,
    prefix: Bytes,
    key: Bytes,
    value: Bytes,
    lease: i64,
    guard_undo: bool,
    undo: &mut Undo,
) -> Result<OwnKey, Error> {
    let c = client.clone();
    let create = async move {
        let mut undo = Undo::new(c.shared.clone());
        let r = create_key(&c, &prefix, &key, value, lease).await;
        if let (Ok(own), true) = (&r, guard_undo) {
            undo.arm(Release::delete_if_created(key, own.revision));
        }
        (r, undo)
    };
    let (created, mut inner) = detached(&client.runtime, client.shared.clone(), create).await;
    undo.take_from(&mut inner);
    created
}

async fn create_key<R>(
    client: &Client<R>,
    prefix: &Bytes,
    key: &Bytes,
    value: Bytes,
    lease: i64,
) -> Result<OwnKey, Error> {
    let malformed = || Error::Malformed { reason: "transaction answer does not match its operations".into() };
    for _ in 0..4 {
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone()).eq(0)])
            .and_then([TxnOp::from(Put::new(key.clone(), value.clone()).lease(lease)), TxnOp::from(oldest(prefix))])
            .or_else([Get::key(key.clone())]);
        let r = client.txn(txn).await?;
        if r.succeeded {
            let [TxnOpResponse::Put(_), TxnOpResponse::Get(first)] = r.responses.as_slice() else {
                return Err(malformed());
            };
            return Ok(OwnKey { revision: r.header.revision, oldest: first.kvs.first().cloned() });
        }
        let [TxnOpResponse::Get(existing)] = r.responses.as_slice() else { return Err(malformed()) };
        match existing.kv() {
            Some(kv) if kv.lease == lease => {
                Release::delete_if_created(key.clone(), kv.create_revision).run(client.shared.clone()).await?;
            }
            Some(_) => {
                return Err(Error::InvalidArgument(format!(
                    "the key {:?} exists on another lease",
                    String::from_utf8_lossy(key)
                )))
            }
            None => {} // deleted meanwhile: try again
        }
    }
    Err(Error::SessionExpired)
}

/// Waits until no key under `prefix` created before `revision` is left: each
/// waiter watches only the next older key, not the holder (no herd).
pub(crate) async fn wait_for_older<R>(client: &Client<R>, prefix: &Bytes, revision: i64) -> Result<(), Error> {
    use futures_util::StreamExt;
    loop {
        let newest_older = Get::prefix(prefix.clone())
            .sort(SortTarget::Create, SortOrder::Descend)
            .max_create_revision(revision - 1)
            .limit(1)
            .keys_only();
        let r = client.request(newest_older).await?;
        let Some(older) = r.kvs.first() else { return Ok(()) };
        let request = WatchRequest::key(older.key.clone()).start_revision(r.header.revision + 1).no_put();
        let mut watch = match client.watch_with(request).await {
            Ok(w) => w,
            Err(Error::Compacted { .. }) => continue, // read again
            Err(e) => return Err(e),
        };
        loop {
            match watch.next().await {
                Some(Ok(e)) if e.kind == EventKind::Delete => break,
                Some(Ok(_)) => {}
                Some(Err(Error::Compacted { .. })) => break, // read again
                Some(Err(e)) => return Err(e),
                None => return Err(Error::Closed),
            }
        }
    }
}

/// A lease id nobody is likely to use: chosen here rather than by the server, so
/// that a grant cancelled in flight can still be revoked.
fn random_lease_id() -> i64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    h.write_u128(nanos);
    i64::try_from(h.finish() >> 1).unwrap_or(1).max(1)
}

/// Runs `work` in a task of its own, so that dropping the returned future (a
/// cancelled attempt) never abandons a write half-way, with its outcome unknown.
/// `work` returns its result with what undoes it; if nobody takes the result any
/// more, that is undone at once.
async fn detached<R: Runtime, T: Send + 'static>(
    runtime: &R,
    shared: Arc<Shared>,
    work: impl Future<Output = (Result<T, Error>, Undo)> + Send + 'static,
) -> (Result<T, Error>, Undo) {
    let (tx, rx) = futures_channel::oneshot::channel();
    runtime.spawn(Box::pin(async move {
        // If the receiver is gone, the returned (or, later, the channel's) `Undo` is dropped: it fires.
        let _ = tx.send(work.await);
    }));
    rx.await.unwrap_or_else(|_| (Err(Error::Closed), Undo::new(shared)))
}

/// Grants a lease of `ttl` seconds and keeps it alive. The grant runs to its end
/// even if this is cancelled, and `undo` is armed with the lease's revocation, so
/// that no outcome (error, deadline, cancellation) leaves the lease behind; the
/// caller disarms it.
pub(crate) async fn grant_kept<R: Runtime>(client: &Client<R>, ttl: i64, undo: &mut Undo) -> Result<KeptLease, Error> {
    if ttl <= 0 {
        return Err(Error::InvalidArgument("a lease TTL must be positive".into()));
    }
    let c = client.clone();
    let grant = async move {
        let mut undo = Undo::new(c.shared.clone());
        for _ in 0..8 {
            // Chosen here, so that a grant whose answer is lost can still be revoked.
            let id = random_lease_id();
            undo.arm(Release::Revoke(id));
            match c.request(LeaseGrant::new(ttl).id(id)).await {
                Ok(_) => return (Ok(id), undo),
                Err(Error::LeaseExists) => undo.disarm(), // somebody else's: not ours to revoke
                Err(e) => return (Err(e), undo),
            }
        }
        (Err(Error::LeaseExists), undo)
    };
    let (granted, mut inner) = detached(&client.runtime, client.shared.clone(), grant).await;
    undo.take_from(&mut inner);
    client.lease_keep_alive(granted?).await
}

/// `<name>/`: the prefix under which the keys of lock or election `name` live.
pub(crate) fn prefix_of(name: &[u8]) -> Bytes {
    let mut p = name.to_vec();
    p.push(b'/');
    p.into()
}

/// The oldest key (by creation revision) under `prefix`.
pub(crate) fn oldest(prefix: &Bytes) -> Get {
    Get::prefix(prefix.clone()).sort(SortTarget::Create, SortOrder::Ascend).limit(1)
}

/// The creation revision of `key` if, in one snapshot, it exists, is attached to
/// `lease`, and is the oldest key under `prefix` (so it holds the lock or leads).
pub(crate) async fn owner_revision<R>(
    client: &Client<R>,
    prefix: &Bytes,
    key: &Bytes,
    lease: i64,
) -> Result<Option<i64>, Error> {
    let txn = Txn::new().and_then([Get::key(key.clone()), oldest(prefix)]);
    let r = client.txn(txn).await?;
    let [TxnOpResponse::Get(mine), TxnOpResponse::Get(first)] = r.responses.as_slice() else {
        return Err(Error::Malformed { reason: "transaction answer does not match its two reads".into() });
    };
    Ok(match (mine.kv(), first.kv()) {
        (Some(m), Some(o)) if m.lease == lease && o.key == m.key && o.create_revision == m.create_revision => {
            Some(m.create_revision)
        }
        _ => None,
    })
}

/// Runs `f`, failing with [`Error::SessionExpired`] (and dropping `f`) if `lost` resolves first.
pub(crate) async fn unless_lost<T>(f: impl Future<Output = Result<T, Error>>, mut lost: Lost) -> Result<T, Error> {
    let mut f = std::pin::pin!(f);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(r) = f.as_mut().poll(cx) {
            return Poll::Ready(r);
        }
        Pin::new(&mut lost).poll(cx).map(|_| Err(Error::SessionExpired))
    })
    .await
}

/// One kept-alive lease for locks and elections to share, like Go's
/// `concurrency.Session`.
///
/// Made by [`Client::session`] or [`Client::session_with_ttl`]. The lease is
/// renewed in the background; [`Session::lost`] resolves if it is lost anyway.
/// Locks and elections made from the session ([`Session::lock`],
/// [`Session::election`]) hold its lease too and never revoke it. The lease is
/// revoked by [`Session::close`], or when the session and everything made from
/// it are dropped.
///
/// One session uses one key per lock or election name (`<name>/<lease>`), so it
/// can hold or wait for each name only once at a time: a second lock or
/// campaign on the same name fails with [`Error::InvalidArgument`] while the first
/// one waits or holds.
///
/// ```no_run
/// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
/// let session = client.session_with_ttl(10).await?;
/// let mut a = session.lock("locks/a");
/// let mut b = session.lock("locks/b");
/// a.acquire().await?;
/// b.acquire().await?;
/// assert_eq!(a.lease_id(), Some(session.lease_id()));
/// session.close().await?; // revokes the lease: both locks are gone
/// # Ok(()) }
/// ```
pub struct Session<R> {
    client: Client<R>,
    lease: Arc<SessionLease>,
}

impl<R> std::fmt::Debug for Session<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("lease", &self.lease.id()).finish_non_exhaustive()
    }
}

impl<R: Runtime> Client<R> {
    /// Starts a [`Session`] with a lease of [`DEFAULT_TTL`] (15) seconds.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let session = client.session().await?;
    /// println!("lease {:x}", session.lease_id());
    /// # Ok(()) }
    /// ```
    pub async fn session(&self) -> Result<Session<R>, Error> {
        self.session_with_ttl(DEFAULT_TTL).await
    }

    /// Starts a [`Session`] with a lease of `ttl` seconds: if this client cannot
    /// renew it for that long (a crash, a partition), the lease expires and the
    /// session's locks and leaderships pass to others.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let session = client.session_with_ttl(5).await?;
    /// # Ok(()) }
    /// ```
    pub async fn session_with_ttl(&self, ttl: i64) -> Result<Session<R>, Error> {
        let mut undo = Undo::new(self.shared.clone());
        match grant_kept(self, ttl, &mut undo).await {
            Ok(kept) => {
                undo.disarm();
                let lease = SessionLease {
                    kept: kept.revoke_on_drop(true),
                    closed: Signal::default(),
                    names: Mutex::new(HashSet::new()),
                };
                Ok(Session { client: self.clone(), lease: Arc::new(lease) })
            }
            Err(e) => {
                let _ = undo.run().await;
                Err(e)
            }
        }
    }
}

impl<R: Runtime> Session<R> {
    /// The session's lease id.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// use aetcd_h2::kv::Put;
    /// let session = client.session().await?;
    /// client.request(Put::new("members/me", "10.0.0.7").lease(session.lease_id())).await?;
    /// # Ok(()) }
    /// ```
    pub fn lease_id(&self) -> i64 {
        self.lease.id()
    }

    /// The TTL of the lease's last renewal, in seconds.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let session = client.session_with_ttl(5).await?;
    /// assert!(session.ttl() <= 5);
    /// # Ok(()) }
    /// ```
    pub fn ttl(&self) -> i64 {
        self.lease.kept.ttl()
    }

    /// True until the lease is known lost or the session closed.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let session = client.session().await?;
    /// assert!(session.is_alive());
    /// # Ok(()) }
    /// ```
    pub fn is_alive(&self) -> bool {
        self.lease.lost_reason().is_none()
    }

    /// Resolves when the session's lease is lost, with the reason (see [`Lost`]).
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let session = client.session().await?;
    /// let why = session.lost().await;
    /// eprintln!("session lost: {why}");
    /// # Ok(()) }
    /// ```
    pub fn lost(&self) -> Lost {
        Lost::of_session(&self.lease)
    }

    /// A [`Lock`] named `name` held by this session's lease.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let session = client.session().await?;
    /// let mut lock = session.lock("locks/report");
    /// lock.acquire().await?;
    /// lock.release().await?;
    /// # Ok(()) }
    /// ```
    pub fn lock(&self, name: impl Into<Bytes>) -> Lock<R> {
        Lock::new(self.client.clone(), name.into(), Some(self.lease.clone()))
    }

    /// An [`Election`] named `name` whose campaigns use this session's lease.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let session = client.session().await?;
    /// let mut election = session.election("elections/primary");
    /// election.campaign("node-a").await?;
    /// # Ok(()) }
    /// ```
    pub fn election(&self, name: impl Into<Bytes>) -> Election<R> {
        Election::new(self.client.clone(), name.into(), Some(self.lease.clone()))
    }

    /// Ends the session: revokes its lease (deleting the keys of its locks and
    /// campaigns) and waits for the server to confirm. Locks and elections made
    /// from the session see the loss at once ([`Error::SessionExpired`]).
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let session = client.session().await?;
    /// session.close().await?;
    /// # Ok(()) }
    /// ```
    pub async fn close(self) -> Result<(), Error> {
        self.lease.closed.fire(Error::SessionExpired);
        let id = self.lease.id();
        match Arc::try_unwrap(self.lease) {
            Ok(lease) => lease.kept.revoke_on_drop(false).revoke().await,
            // Still in use by locks or elections: they keep the handle (and see
            // the loss); the keep-alive ends when the server reports the lease gone.
            Err(_) => match self.client.lease_revoke(id).await {
                Ok(_) | Err(Error::LeaseNotFound) => Ok(()),
                Err(e) => Err(e),
            },
        }
    }
}

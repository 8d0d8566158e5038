//! Distributed locks: [`Lock`] and its scoped form [`LockGuard`].
//!
//! A lock is held by a lease that the client keeps alive: a lease of its own
//! (granted for each acquisition, revoked on release) or its
//! [session](crate::session)'s. The holder's key is `<name>/<lease in hex>`, the
//! scheme of etcd's Lock service and of Go's `concurrency.Mutex`, so locks taken
//! with other clients exclude ours and the other way round.
//!
//! A lock with a lease of its own waits in etcd's Lock service. A lock on a
//! session's lease waits in the client, with the service's algorithm (wait for the
//! deletion of the next older key): the service may create the key after a
//! cancelled wait was cleaned up, which a revoked lease of its own makes harmless
//! but would leave a phantom waiter on the session's lease.
//!
//! A lock promises no more than its lease: if the lease is lost (a partition
//! longer than the TTL, a revocation), the lock is gone and [`Lock::lost`]
//! resolves. Guard every write the lock protects with [`Lock::is_owner`] in a
//! transaction, and use [`Lock::revision`] as a fencing token.
//!
//! ```no_run
//! # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
//! use aetcd_h2::kv::{Put, Txn};
//! let guard = client.lock("locks/report").ttl(10).guard().await?;
//! let wrote = client
//!     .txn(Txn::new().when([guard.is_owner()]).and_then([Put::new("report", "done")]))
//!     .await?
//!     .succeeded;
//! assert!(wrote, "the lock was lost before the write");
//! guard.release().await?;
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use aetcd_core::rpc::kv::Compare;
use aetcd_core::rpc::lock::LockRequest;
use aetcd_core::Error;
use bytes::Bytes;

pub use aetcd_core::rpc::lock::{lock_key, LockResponse, UnlockRequest, UnlockResponse};

use crate::client::Client;
use crate::runtime::{deadline_in, with_deadline, Runtime};
use crate::session::{
    create_own_key, owner_revision, prefix_of, unless_lost, wait_for_older, Holder, Lost, Release, SessionLease, Undo,
    DEFAULT_TTL,
};

/// A held lock: the lease behind it, the key and the key's creation revision.
#[derive(Debug)]
struct Held {
    holder: Holder,
    key: Bytes,
    revision: i64,
}

impl Held {
    fn release_action(&self) -> Release {
        Release::delete_if_created(self.key.clone(), self.revision)
    }
}

/// A distributed mutex named `name`, made by [`Client::lock`] or
/// [`Session::lock`](crate::session::Session::lock). Nothing is sent until it is
/// acquired.
///
/// - [`Lock::acquire`] waits as long as it takes; [`Lock::acquire_timeout`] gives
///   up with [`Error::DeadlineExceeded`]; [`Lock::try_acquire`] answers at once.
/// - An attempt that fails, times out or is cancelled (its future dropped) leaves
///   nothing behind: the lease it granted is revoked, or (with a session's lease)
///   its waiting key is deleted.
/// - After the server grants the lock, the client checks that its key still
///   exists with its lease and is the oldest, so a lock whose lease expired
///   while waiting is reported as [`Error::SessionExpired`], never as held.
/// - Dropping a held `Lock` releases it (without waiting for the server).
///
/// ```no_run
/// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
/// let mut lock = client.lock("locks/db-migration").ttl(30);
/// lock.acquire().await?;
/// println!("fencing token {}", lock.revision().unwrap());
/// lock.release().await?;
/// # Ok(()) }
/// ```
pub struct Lock<R> {
    client: Client<R>,
    name: Bytes,
    ttl: i64,
    session: Option<Arc<SessionLease>>,
    held: Option<Held>,
}

impl<R> std::fmt::Debug for Lock<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lock")
            .field("name", &self.name)
            .field("ttl", &self.ttl)
            .field("session", &self.session.as_ref().map(|s| s.id()))
            .field("held", &self.held.as_ref().map(|h| (&h.key, h.revision)))
            .finish()
    }
}

impl<R: Runtime> Client<R> {
    /// A [`Lock`] named `name` that takes a lease of its own (TTL
    /// [`DEFAULT_TTL`](crate::session::DEFAULT_TTL) seconds unless set with
    /// [`Lock::ttl`]) for each acquisition. Sends nothing yet.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let mut lock = client.lock("locks/jobs");
    /// if lock.try_acquire().await? {
    ///     // ... the work ...
    ///     lock.release().await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn lock(&self, name: impl Into<Bytes>) -> Lock<R> {
        Lock::new(self.clone(), name.into(), None)
    }
}

impl<R: Runtime> Lock<R> {
    pub(crate) fn new(client: Client<R>, name: Bytes, session: Option<Arc<SessionLease>>) -> Lock<R> {
        Lock { client, name, ttl: DEFAULT_TTL, session, held: None }
    }

    /// The TTL in seconds of the lease this lock takes for each acquisition
    /// (default 15): how long the lock outlives a client that can no longer renew
    /// it. Ignored for a lock made from a session, which uses the session's lease.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let mut lock = client.lock("locks/short").ttl(5);
    /// # Ok(()) }
    /// ```
    pub fn ttl(mut self, secs: i64) -> Self {
        self.ttl = secs;
        self
    }

    /// The lock's name.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) {
    /// assert_eq!(client.lock("locks/a").name(), "locks/a");
    /// # }
    /// ```
    pub fn name(&self) -> &Bytes {
        &self.name
    }

    /// Waits until the lock is held, with no deadline. Returns at once if it is
    /// held already (as checked with the server).
    ///
    /// Fails with [`Error::SessionExpired`] if the lease is lost while waiting or
    /// the key was gone when the server granted the lock; with
    /// [`Error::InvalidArgument`] if the lock's session already uses this name.
    /// Dropping the future cancels the attempt and cleans up.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let mut lock = client.lock("locks/jobs");
    /// lock.acquire().await?;
    /// # Ok(()) }
    /// ```
    pub async fn acquire(&mut self) -> Result<(), Error> {
        self.acquire_until(None).await
    }

    /// Like [`Lock::acquire`], but gives up after `d` with
    /// [`Error::DeadlineExceeded`], having cleaned up: the lock is then not held
    /// and nothing of the attempt is left on the server.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// use std::time::Duration;
    /// let mut lock = client.lock("locks/jobs");
    /// match lock.acquire_timeout(Duration::from_secs(10)).await {
    ///     Ok(()) => { /* held */ }
    ///     Err(aetcd_h2::Error::DeadlineExceeded) => { /* not held; try later */ }
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn acquire_timeout(&mut self, d: Duration) -> Result<(), Error> {
        self.acquire_until(deadline_in(d)).await
    }

    async fn acquire_until(&mut self, deadline: Option<std::time::Instant>) -> Result<(), Error> {
        if self.held.is_some() {
            if self.is_acquired().await? {
                return Ok(());
            }
            self.discard().await;
        }
        let mut undo = Undo::new(self.client.shared.clone());
        let attempt = acquire_attempt(&self.client, &self.name, self.ttl, self.session.as_ref(), &mut undo);
        match with_deadline(&self.client.runtime, deadline, attempt).await {
            Ok(mut held) => {
                held.holder.keep(undo.finish());
                self.held = Some(held);
                Ok(())
            }
            Err(e) => {
                let _ = undo.run().await;
                Err(e)
            }
        }
    }

    /// Takes the lock if it is free, without waiting: `Ok(true)` if it is now
    /// held, `Ok(false)` (having cleaned up) if someone else holds it.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let mut lock = client.lock("locks/cron");
    /// if !lock.try_acquire().await? {
    ///     println!("another instance runs the job");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn try_acquire(&mut self) -> Result<bool, Error> {
        if self.held.is_some() {
            if self.is_acquired().await? {
                return Ok(true);
            }
            self.discard().await;
        }
        let mut undo = Undo::new(self.client.shared.clone());
        match try_attempt(&self.client, &self.name, self.ttl, self.session.as_ref(), &mut undo).await {
            Ok(Some(mut held)) => {
                held.holder.keep(undo.finish());
                self.held = Some(held);
                Ok(true)
            }
            Ok(None) => undo.run().await.map(|()| false),
            Err(e) => {
                let _ = undo.run().await;
                Err(e)
            }
        }
    }

    /// Releases the lock and waits for the server to confirm: deletes the key
    /// (and revokes the lock's own lease; a session's lease stays). Does nothing
    /// if the lock is not held. Cancel-safe: dropped mid-way, it still releases.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let mut lock = client.lock("locks/jobs");
    /// lock.acquire().await?;
    /// lock.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn release(&mut self) -> Result<(), Error> {
        let Some(held) = self.held.take() else { return Ok(()) };
        let release = held.release_action();
        held.holder.release(self.client.shared.clone(), release).await
    }

    /// Forgets a hold that is no longer valid, cleaning up what is left of it.
    async fn discard(&mut self) {
        let _ = self.release().await;
    }

    /// Asks the server whether the lock is held now: its key exists, carries its
    /// lease, is the incarnation acquired, and is the oldest waiter. False if it
    /// is not held, or its lease is known to be lost.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let mut lock = client.lock("locks/jobs");
    /// lock.acquire().await?;
    /// assert!(lock.is_acquired().await?);
    /// # Ok(()) }
    /// ```
    pub async fn is_acquired(&self) -> Result<bool, Error> {
        let Some(held) = &self.held else { return Ok(false) };
        if held.holder.lost_reason().is_some() {
            return Ok(false);
        }
        let owner = owner_revision(&self.client, &prefix_of(&self.name), &held.key, held.holder.id()).await?;
        Ok(owner == Some(held.revision) && held.holder.lost_reason().is_none())
    }

    /// The holder's key, `<name>/<lease in hex>`, while held.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let mut lock = client.lock("locks/jobs");
    /// lock.acquire().await?;
    /// println!("{:?}", lock.key().unwrap());
    /// # Ok(()) }
    /// ```
    pub fn key(&self) -> Option<&Bytes> {
        self.held.as_ref().map(|h| &h.key)
    }

    /// The creation revision of the holder's key while held: a fencing token that
    /// grows with every acquisition of this lock by anyone.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let mut lock = client.lock("locks/jobs");
    /// lock.acquire().await?;
    /// let token = lock.revision().unwrap();
    /// # Ok(()) }
    /// ```
    pub fn revision(&self) -> Option<i64> {
        self.held.as_ref().map(|h| h.revision)
    }

    /// The lease that holds the lock: the session's (always), or the lock's own
    /// while held.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let mut lock = client.lock("locks/jobs");
    /// assert_eq!(lock.lease_id(), None);
    /// lock.acquire().await?;
    /// assert!(lock.lease_id().is_some());
    /// # Ok(()) }
    /// ```
    pub fn lease_id(&self) -> Option<i64> {
        match (&self.held, &self.session) {
            (Some(h), _) => Some(h.holder.id()),
            (None, Some(s)) => Some(s.id()),
            (None, None) => None,
        }
    }

    /// A transaction compare that holds only while this lock is held (its key is
    /// the incarnation acquired): guard the writes the lock protects with it.
    /// When the lock is not held, the compare never holds.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// use aetcd_h2::kv::{Put, Txn};
    /// let mut lock = client.lock("locks/config");
    /// lock.acquire().await?;
    /// let t = Txn::new().when([lock.is_owner()]).and_then([Put::new("config", "v2")]);
    /// assert!(client.txn(t).await?.succeeded);
    /// # Ok(()) }
    /// ```
    pub fn is_owner(&self) -> Compare {
        match &self.held {
            Some(h) => Compare::create_revision(h.key.clone()).eq(h.revision),
            // No key has a negative creation revision.
            None => Compare::create_revision(prefix_of(&self.name)).eq(-1),
        }
    }

    /// Resolves if the lease is lost while the lock is held (see
    /// [`Lost`]); at once with [`Error::SessionExpired`] if
    /// the lock is not held when this is called.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// use futures_util::future::{select, Either};
    /// let mut lock = client.lock("locks/jobs");
    /// lock.acquire().await?;
    /// let work = std::pin::pin!(async { /* the protected work */ });
    /// if let Either::Right((why, _)) = select(work, lock.lost()).await {
    ///     eprintln!("lock lost mid-work: {why}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn lost(&self) -> Lost {
        match &self.held {
            Some(h) => h.holder.lost(),
            None => Lost::ready(Error::SessionExpired),
        }
    }

    /// Acquires the lock (waiting as long as it takes) and returns it as a guard
    /// that releases it when dropped.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// {
    ///     let _guard = client.lock("locks/jobs").guard().await?;
    ///     // ... the work ...
    /// } // released here
    /// # Ok(()) }
    /// ```
    pub async fn guard(mut self) -> Result<LockGuard<R>, Error> {
        self.acquire().await?;
        LockGuard::new(self)
    }

    /// Like [`Lock::guard`], but gives up after `d` with [`Error::DeadlineExceeded`]
    /// (the body then never runs without the lock).
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let guard = client.lock("locks/jobs").guard_timeout(std::time::Duration::from_secs(10)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn guard_timeout(mut self, d: Duration) -> Result<LockGuard<R>, Error> {
        self.acquire_timeout(d).await?;
        LockGuard::new(self)
    }
}

impl<R> Drop for Lock<R> {
    fn drop(&mut self) {
        if let Some(held) = self.held.take() {
            let release = held.release_action();
            held.holder.release_now(&self.client.shared, release);
        }
    }
}

/// One wait for the lock: lease, wait, verification.
async fn acquire_attempt<R: Runtime>(
    client: &Client<R>,
    name: &Bytes,
    ttl: i64,
    session: Option<&Arc<SessionLease>>,
    undo: &mut Undo,
) -> Result<Held, Error> {
    let holder = Holder::obtain(client, session, name, ttl, undo).await?;
    let lease = holder.id();
    let key = lock_key(name, lease);
    let prefix = prefix_of(name);
    let revision = if holder.is_owned() {
        // The server's Lock service waits. Should it create the key after this
        // attempt was given up, the key dies with the revoked lease.
        // No deadline of its own: the caller's deadline drops (and so cancels) it.
        let request = client.request(LockRequest::new(name.clone(), lease)).no_deadline();
        let granted = unless_lost(request, holder.lost()).await?;
        if granted.key != key {
            return Err(Error::Malformed { reason: "the lock was granted with a key that is not this lease's".into() });
        }
        // The Jepsen lesson: the server's answer is no proof the lease still holds the key.
        owner_revision(client, &prefix, &key, lease).await?.ok_or(Error::SessionExpired)?
    } else {
        // A session's lease outlives the attempt, and the server's Lock service
        // may create the key on it after the attempt was given up and cleaned up.
        // So the client waits itself (the same algorithm and keys as the service),
        // and every cleanup is guarded by the key's creation revision.
        let own = create_own_key(client, prefix.clone(), key.clone(), Bytes::new(), lease, true, undo).await?;
        if !own.is_oldest(&key) {
            unless_lost(wait_for_older(client, &prefix, own.revision), holder.lost()).await?;
        }
        if owner_revision(client, &prefix, &key, lease).await? != Some(own.revision) {
            return Err(Error::SessionExpired);
        }
        own.revision
    };
    if holder.lost_reason().is_some() {
        return Err(Error::SessionExpired);
    }
    Ok(Held { holder, key, revision })
}

/// One non-blocking attempt: `None` when someone else holds the lock.
async fn try_attempt<R: Runtime>(
    client: &Client<R>,
    name: &Bytes,
    ttl: i64,
    session: Option<&Arc<SessionLease>>,
    undo: &mut Undo,
) -> Result<Option<Held>, Error> {
    let holder = Holder::obtain(client, session, name, ttl, undo).await?;
    let lease = holder.id();
    let key = lock_key(name, lease);
    let guard = !holder.is_owned(); // an owned lease's revocation deletes the key
    let own = create_own_key(client, prefix_of(name), key.clone(), Bytes::new(), lease, guard, undo).await?;
    if !own.is_oldest(&key) {
        return Ok(None);
    }
    if holder.lost_reason().is_some() {
        return Err(Error::SessionExpired);
    }
    Ok(Some(Held { holder, key, revision: own.revision }))
}

/// A held lock that is released when dropped; made by [`Lock::guard`].
///
/// ```no_run
/// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
/// use aetcd_h2::kv::{Put, Txn};
/// let guard = client.lock("locks/ledger").guard().await?;
/// let t = Txn::new().when([guard.is_owner()]).and_then([Put::new("ledger/next", guard.revision().to_string())]);
/// client.txn(t).await?;
/// drop(guard); // releases without waiting; `guard.release().await` waits
/// # Ok(()) }
/// ```
pub struct LockGuard<R> {
    lock: Lock<R>,
    key: Bytes,
    revision: i64,
    lease: i64,
}

impl<R> std::fmt::Debug for LockGuard<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard").field("key", &self.key).field("revision", &self.revision).finish_non_exhaustive()
    }
}

impl<R: Runtime> LockGuard<R> {
    fn new(lock: Lock<R>) -> Result<LockGuard<R>, Error> {
        let Some(held) = &lock.held else { return Err(Error::SessionExpired) };
        let (key, revision, lease) = (held.key.clone(), held.revision, held.holder.id());
        Ok(LockGuard { lock, key, revision, lease })
    }

    /// The holder's key.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let guard = client.lock("locks/a").guard().await?;
    /// assert!(guard.key().starts_with(b"locks/a/"));
    /// # Ok(()) }
    /// ```
    pub fn key(&self) -> &Bytes {
        &self.key
    }

    /// The key's creation revision: the fencing token.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let guard = client.lock("locks/a").guard().await?;
    /// let token = guard.revision();
    /// # Ok(()) }
    /// ```
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The lease holding the lock.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let guard = client.lock("locks/a").guard().await?;
    /// println!("lease {:x}", guard.lease_id());
    /// # Ok(()) }
    /// ```
    pub fn lease_id(&self) -> i64 {
        self.lease
    }

    /// A compare that holds only while the lock is held (see [`Lock::is_owner`]).
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// use aetcd_h2::kv::{Put, Txn};
    /// let guard = client.lock("locks/a").guard().await?;
    /// client.txn(Txn::new().when([guard.is_owner()]).and_then([Put::new("a", "1")])).await?;
    /// # Ok(()) }
    /// ```
    pub fn is_owner(&self) -> Compare {
        self.lock.is_owner()
    }

    /// Asks the server whether the lock is still held (see [`Lock::is_acquired`]).
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let guard = client.lock("locks/a").guard().await?;
    /// assert!(guard.is_acquired().await?);
    /// # Ok(()) }
    /// ```
    pub async fn is_acquired(&self) -> Result<bool, Error> {
        self.lock.is_acquired().await
    }

    /// Resolves if the lease is lost while the lock is held (see [`Lock::lost`]).
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let guard = client.lock("locks/a").guard().await?;
    /// let why = guard.lost().await;
    /// # Ok(()) }
    /// ```
    pub fn lost(&self) -> Lost {
        self.lock.lost()
    }

    /// Releases the lock and waits for the server to confirm.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let guard = client.lock("locks/a").guard().await?;
    /// guard.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn release(mut self) -> Result<(), Error> {
        self.lock.release().await
    }
}

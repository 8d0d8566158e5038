//! Leader election: [`Election`] (campaign, proclaim, resign) and
//! [`LeaderChanges`] (observe who leads).
//!
//! Each candidate holds a key `<name>/<lease in hex>` whose value is its
//! proclamation; the leader is the candidate whose key was created first. This is
//! the scheme of etcd's Election service and of Go's `concurrency.Election`, so
//! candidates using other clients take part in the same election. As for
//! [locks](crate::lock), a campaign with a lease of its own waits in the service,
//! one on a session's lease waits in the client, with the same algorithm.
//!
//! ```no_run
//! # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
//! let mut election = client.election("elections/scheduler").ttl(10);
//! election.campaign("node-a:8080").await?; // waits until this node leads
//! let why = election.lost().await;          // leads until the lease is lost
//! eprintln!("no longer the leader: {why}");
//! # Ok(()) }
//! ```

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use aetcd_core::rpc::election::{Campaign, Leader, Proclaim};
use aetcd_core::rpc::kv::KeyValue;
use aetcd_core::rpc::lock::lock_key;
use aetcd_core::rpc::watch::WatchRequest;
use aetcd_core::Error;
use bytes::Bytes;
use futures_core::Stream;
use futures_util::StreamExt;

pub use aetcd_core::rpc::election::{CampaignResponse, LeaderKey, LeaderResponse, ProclaimResponse, ResignResponse};

use crate::client::Client;
use crate::runtime::{deadline_in, with_deadline, Runtime};
use crate::session::{
    create_own_key, oldest, owner_revision, prefix_of, unless_lost, wait_for_older, Holder, Lost, Release,
    SessionLease, Undo, DEFAULT_TTL,
};
use crate::watch::{WatchItem, WatchResponses};

/// A won leadership: the lease behind it and the leader's key.
#[derive(Debug)]
struct Leadership {
    holder: Holder,
    key: LeaderKey,
}

/// One election named `name`, made by [`Client::election`] or
/// [`Session::election`](crate::session::Session::election). Nothing is sent
/// until it is used.
///
/// - [`Election::campaign`] waits, with no deadline, until this candidate leads;
///   a campaign that fails or is cancelled (its future dropped) leaves nothing
///   behind (its own lease is revoked, or its key on a session's lease deleted).
/// - After the server says it leads, the client checks that its key still exists
///   with its lease and is the oldest, so a campaign whose lease expired while
///   waiting fails with [`Error::SessionExpired`] instead of claiming leadership.
/// - Dropping an `Election` that leads resigns (without waiting for the server).
///
/// ```no_run
/// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
/// let mut election = client.election("elections/primary");
/// election.campaign("10.0.0.7").await?;
/// election.proclaim("10.0.0.7 (draining)").await?;
/// election.resign().await?;
/// # Ok(()) }
/// ```
pub struct Election<R> {
    client: Client<R>,
    name: Bytes,
    ttl: i64,
    session: Option<Arc<SessionLease>>,
    leader: Option<Leadership>,
}

impl<R> std::fmt::Debug for Election<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Election")
            .field("name", &self.name)
            .field("ttl", &self.ttl)
            .field("session", &self.session.as_ref().map(|s| s.id()))
            .field("leader", &self.leader.as_ref().map(|l| &l.key))
            .finish()
    }
}

impl<R: Runtime> Client<R> {
    /// An [`Election`] named `name` whose campaigns each take a lease of their own
    /// (TTL [`DEFAULT_TTL`](crate::session::DEFAULT_TTL) seconds unless set with
    /// [`Election::ttl`]). Sends nothing yet.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let election = client.election("elections/primary");
    /// if let Some(leader) = election.leader().await? {
    ///     println!("{:?} leads", leader.value);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn election(&self, name: impl Into<Bytes>) -> Election<R> {
        Election::new(self.clone(), name.into(), None)
    }
}

impl<R: Runtime> Election<R> {
    pub(crate) fn new(client: Client<R>, name: Bytes, session: Option<Arc<SessionLease>>) -> Election<R> {
        Election { client, name, ttl: DEFAULT_TTL, session, leader: None }
    }

    /// The TTL in seconds of the lease each campaign takes (default 15): how long
    /// leadership outlives a client that can no longer renew it. Ignored for an
    /// election made from a session, which uses the session's lease.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let election = client.election("elections/primary").ttl(5);
    /// # Ok(()) }
    /// ```
    pub fn ttl(mut self, secs: i64) -> Self {
        self.ttl = secs;
        self
    }

    /// The election's name.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) {
    /// assert_eq!(client.election("elections/a").name(), "elections/a");
    /// # }
    /// ```
    pub fn name(&self) -> &Bytes {
        &self.name
    }

    /// Waits, with no deadline, until this candidate leads, announcing `value`.
    /// If it leads already (as checked with the server), proclaims `value` instead.
    ///
    /// Fails with [`Error::SessionExpired`] if the lease is lost while waiting or
    /// the key was gone when the server declared it leader; with
    /// [`Error::InvalidArgument`] if the election's session already uses this
    /// name. Dropping the future cancels the campaign and cleans up.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let mut election = client.election("elections/primary");
    /// election.campaign("node-a").await?;
    /// # Ok(()) }
    /// ```
    pub async fn campaign(&mut self, value: impl Into<Bytes>) -> Result<(), Error> {
        self.campaign_until(value.into(), None).await
    }

    /// Like [`Election::campaign`], but gives up after `d` with
    /// [`Error::DeadlineExceeded`], having withdrawn the candidacy.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let mut election = client.election("elections/primary");
    /// let leads = election.campaign_timeout("node-a", std::time::Duration::from_secs(5)).await.is_ok();
    /// # Ok(()) }
    /// ```
    pub async fn campaign_timeout(&mut self, value: impl Into<Bytes>, d: Duration) -> Result<(), Error> {
        self.campaign_until(value.into(), deadline_in(d)).await
    }

    async fn campaign_until(&mut self, value: Bytes, deadline: Option<std::time::Instant>) -> Result<(), Error> {
        if self.leader.is_some() {
            if self.is_leader().await? {
                return self.proclaim(value).await;
            }
            let _ = self.resign().await;
        }
        let mut undo = Undo::new(self.client.shared.clone());
        let attempt = campaign_attempt(&self.client, &self.name, self.ttl, self.session.as_ref(), value, &mut undo);
        match with_deadline(&self.client.runtime, deadline, attempt).await {
            Ok(mut leadership) => {
                leadership.holder.keep(undo.finish());
                self.leader = Some(leadership);
                Ok(())
            }
            Err(e) => {
                let _ = undo.run().await;
                Err(e)
            }
        }
    }

    /// Announces a new value as the leader. Fails with
    /// [`Error::ElectionNotLeader`] if this candidate does not (or no longer) lead.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let mut election = client.election("elections/primary");
    /// election.campaign("starting").await?;
    /// election.proclaim("ready").await?;
    /// # Ok(()) }
    /// ```
    pub async fn proclaim(&self, value: impl Into<Bytes>) -> Result<(), Error> {
        let Some(leader) = &self.leader else { return Err(Error::ElectionNotLeader) };
        if leader.holder.lost_reason().is_some() {
            return Err(Error::ElectionNotLeader);
        }
        self.client.request(Proclaim::new(&leader.key, value)).await.map(drop)
    }

    /// The current leader's key and value, or `None` when nobody campaigns.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// match client.election("elections/primary").leader().await? {
    ///     Some(kv) => println!("leader says {:?}", kv.value),
    ///     None => println!("no leader"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn leader(&self) -> Result<Option<KeyValue>, Error> {
        match self.client.request(Leader::new(self.name.clone())).await {
            Ok(r) if r.kv.key.is_empty() => Ok(None),
            Ok(r) => Ok(Some(r.kv)),
            Err(Error::ElectionNoLeader) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The leaders of this election as they change: the current leader first (if
    /// any), then each new leader or new proclamation. Intermediate states may be
    /// skipped when changes come faster than they are read, but the latest leader
    /// is always delivered. Nothing is yielded while nobody leads. The stream ends
    /// after an error (for example [`Error::Compacted`] or [`Error::WatchLagged`]).
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// use futures_util::StreamExt;
    /// let mut leaders = client.election("elections/primary").observe();
    /// while let Some(leader) = leaders.next().await {
    ///     println!("now led by {:?}", leader?.value);
    /// #   break;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn observe(&self) -> LeaderChanges {
        let state = Observe::Start { client: self.client.clone(), prefix: prefix_of(&self.name) };
        LeaderChanges { inner: Box::pin(futures_util::stream::unfold(state, Observe::step)) }
    }

    /// Gives up leadership (or a stale candidacy) and waits for the server to
    /// confirm: the next candidate then leads. Does nothing if this candidate
    /// does not lead. Cancel-safe: dropped mid-way, it still resigns.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let mut election = client.election("elections/primary");
    /// election.campaign("node-a").await?;
    /// election.resign().await?;
    /// # Ok(()) }
    /// ```
    pub async fn resign(&mut self) -> Result<(), Error> {
        let Some(leader) = self.leader.take() else { return Ok(()) };
        leader.holder.release(self.client.shared.clone(), Release::Resign(leader.key)).await
    }

    /// The leadership won by [`Election::campaign`], while this candidate leads.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let mut election = client.election("elections/primary");
    /// election.campaign("node-a").await?;
    /// println!("fencing token {}", election.leader_key().unwrap().revision);
    /// # Ok(()) }
    /// ```
    pub fn leader_key(&self) -> Option<&LeaderKey> {
        self.leader.as_ref().map(|l| &l.key)
    }

    /// The lease behind the candidacy: the session's (always), or the campaign's
    /// own while leading.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let mut election = client.election("elections/primary");
    /// election.campaign("node-a").await?;
    /// assert!(election.lease_id().is_some());
    /// # Ok(()) }
    /// ```
    pub fn lease_id(&self) -> Option<i64> {
        match (&self.leader, &self.session) {
            (Some(l), _) => Some(l.holder.id()),
            (None, Some(s)) => Some(s.id()),
            (None, None) => None,
        }
    }

    /// Asks the server whether this candidate leads now: its key exists, carries
    /// its lease, is the incarnation that won, and is the oldest candidate. False
    /// if it does not lead, or its lease is known to be lost.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let mut election = client.election("elections/primary");
    /// election.campaign("node-a").await?;
    /// assert!(election.is_leader().await?);
    /// # Ok(()) }
    /// ```
    pub async fn is_leader(&self) -> Result<bool, Error> {
        let Some(leader) = &self.leader else { return Ok(false) };
        if leader.holder.lost_reason().is_some() {
            return Ok(false);
        }
        let owner = owner_revision(&self.client, &prefix_of(&self.name), &leader.key.key, leader.holder.id()).await?;
        Ok(owner == Some(leader.key.revision) && leader.holder.lost_reason().is_none())
    }

    /// Resolves if the lease is lost while this candidate leads (see
    /// [`Lost`]); at once with [`Error::SessionExpired`] if
    /// it does not lead when this is called.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let mut election = client.election("elections/primary");
    /// election.campaign("node-a").await?;
    /// let why = election.lost().await;
    /// # Ok(()) }
    /// ```
    pub fn lost(&self) -> Lost {
        match &self.leader {
            Some(l) => l.holder.lost(),
            None => Lost::ready(Error::SessionExpired),
        }
    }
}

impl<R> Drop for Election<R> {
    fn drop(&mut self) {
        if let Some(leader) = self.leader.take() {
            leader.holder.release_now(&self.client.shared, Release::Resign(leader.key));
        }
    }
}

/// One campaign: lease, wait, verification.
async fn campaign_attempt<R: Runtime>(
    client: &Client<R>,
    name: &Bytes,
    ttl: i64,
    session: Option<&Arc<SessionLease>>,
    value: Bytes,
    undo: &mut Undo,
) -> Result<Leadership, Error> {
    let holder = Holder::obtain(client, session, name, ttl, undo).await?;
    let lease = holder.id();
    let key = lock_key(name, lease);
    let prefix = prefix_of(name);
    let won = if holder.is_owned() {
        // The server's Election service waits. Should it create the key after
        // this campaign was given up, the key dies with the revoked lease.
        // No deadline of its own: the caller's deadline drops (and so cancels) it.
        let request = client.request(Campaign::new(name.clone(), lease, value)).no_deadline();
        let won = unless_lost(request, holder.lost()).await?.leader;
        if won.key != key || won.lease != lease {
            return Err(Error::Malformed { reason: "the campaign was won with a key that is not this lease's".into() });
        }
        won
    } else {
        // As for locks: with a session's lease the client waits itself, with the
        // service's algorithm and keys, so that no key outlives a given-up campaign.
        let own = create_own_key(client, prefix.clone(), key.clone(), value, lease, true, undo).await?;
        if !own.is_oldest(&key) {
            unless_lost(wait_for_older(client, &prefix, own.revision), holder.lost()).await?;
        }
        let mut won = LeaderKey::default();
        won.name = name.clone();
        won.key = key.clone();
        won.revision = own.revision;
        won.lease = lease;
        won
    };
    // The server's answer (or our wait) is no proof the lease still holds the key.
    let revision = owner_revision(client, &prefix, &key, lease).await?;
    if revision != Some(won.revision) || holder.lost_reason().is_some() {
        return Err(Error::SessionExpired);
    }
    Ok(Leadership { holder, key: won })
}

/// The leaders of an election as they change; made by [`Election::observe`].
///
/// ```no_run
/// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
/// use futures_util::StreamExt;
/// let mut changes: aetcd_h2::election::LeaderChanges = client.election("e").observe();
/// let first = changes.next().await;
/// # Ok(()) }
/// ```
#[must_use = "streams do nothing unless polled"]
pub struct LeaderChanges {
    inner: Pin<Box<dyn Stream<Item = Result<KeyValue, Error>> + Send>>,
}

impl std::fmt::Debug for LeaderChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderChanges").finish_non_exhaustive()
    }
}

impl Stream for LeaderChanges {
    type Item = Result<KeyValue, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// What identifies a leadership state: the leader's key, its incarnation, its value.
type Seen = (Bytes, i64, Bytes);

fn seen(kv: &KeyValue) -> Seen {
    (kv.key.clone(), kv.create_revision, kv.value.clone())
}

/// The state of an observation.
enum Observe<R> {
    Start { client: Client<R>, prefix: Bytes },
    Running { client: Client<R>, prefix: Bytes, watch: WatchResponses, last: Option<Seen> },
    Done,
}

impl<R: Runtime> Observe<R> {
    async fn step(self) -> Option<(Result<KeyValue, Error>, Observe<R>)> {
        let (client, prefix, mut watch, mut last) = match self {
            Observe::Done => return None,
            Observe::Running { client, prefix, watch, last } => (client, prefix, watch, last),
            Observe::Start { client, prefix } => {
                let now = match client.request(oldest(&prefix)).await {
                    Ok(r) => r,
                    Err(e) => return Some((Err(e), Observe::Done)),
                };
                // Every change after the read is seen: none is missed between the two.
                let request = WatchRequest::prefix(prefix.clone()).start_revision(now.header.revision + 1);
                let watch = match client.watch_with(request).await {
                    Ok(w) => w.responses(),
                    Err(e) => return Some((Err(e), Observe::Done)),
                };
                match now.kvs.into_iter().next() {
                    Some(kv) => {
                        let last = Some(seen(&kv));
                        return Some((Ok(kv), Observe::Running { client, prefix, watch, last }));
                    }
                    None => (client, prefix, watch, None),
                }
            }
        };
        loop {
            match watch.next().await {
                Some(Ok(WatchItem::Events(_))) => {
                    let first = match client.request(oldest(&prefix)).await {
                        Ok(r) => r.kvs.into_iter().next(),
                        Err(e) => return Some((Err(e), Observe::Done)),
                    };
                    if let Some(kv) = first {
                        let now = seen(&kv);
                        if last.as_ref() != Some(&now) {
                            last = Some(now);
                            return Some((Ok(kv), Observe::Running { client, prefix, watch, last }));
                        }
                    }
                }
                Some(Ok(_)) => {} // progress notifications
                Some(Err(e)) => return Some((Err(e), Observe::Done)),
                None => return None,
            }
        }
    }
}

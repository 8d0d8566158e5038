//! Locks, sessions and elections against a real etcd, each scenario run on tokio
//! and on smol.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use aetcd_h2::kv::{Put, Txn};
use aetcd_h2::watch::{EventKind, Watcher};
use aetcd_h2::{Client, Error, Runtime};
use aetcd_tests::etcd::Cluster;
use aetcd_tests::within;
use bytes::Bytes;
use futures_util::future::{join_all, select, Either};
use futures_util::StreamExt;

aetcd_tests::on_both_runtimes!(
    acquire_release_and_a_waiter_wins_on_release,
    acquire_timeout_fails_cleanly,
    try_acquire_answers_at_once,
    counter_under_contention_with_fencing,
    a_dead_holder_passes_the_lock_after_its_ttl,
    dropping_a_pending_acquire_leaves_nothing,
    losing_the_lease_while_held_is_reported,
    losing_the_lease_while_waiting_fails_the_wait,
    session_locks_share_the_session_lease,
    election_hands_over_on_resign_and_observe_follows,
    election_hands_over_when_the_leader_loses_its_lease,
);

const LIMIT: Duration = Duration::from_secs(60);

async fn connect<R: Runtime>(endpoint: &str) -> Client<R> {
    Client::<R>::connect(endpoint).await.expect("connect to the test etcd")
}

async fn lease_ids<R: Runtime>(c: &Client<R>) -> BTreeSet<i64> {
    c.leases().await.unwrap().ids.into_iter().collect()
}

async fn keys_under<R: Runtime>(c: &Client<R>, prefix: &'static str) -> Vec<Bytes> {
    c.get_prefix(prefix).await.unwrap().kvs.into_iter().map(|kv| kv.key).collect()
}

/// Waits until the set of leases is `expected`: for cleanup sent without waiting
/// (from `Drop`) whose completion no event announces.
async fn leases_settle_to<R: Runtime>(c: &Client<R>, expected: &BTreeSet<i64>) {
    let deadline = Instant::now() + LIMIT;
    loop {
        let now = lease_ids(c).await;
        if &now == expected {
            return;
        }
        assert!(Instant::now() < deadline, "leases {now:?}, expected {expected:?}");
        within::<R, _>(Duration::from_millis(20), std::future::pending::<()>()).await;
    }
}

/// Waits for a put of a key not in `known`, and returns that key.
async fn new_key_put<R: Runtime>(w: &mut Watcher, known: &[&Bytes]) -> Bytes {
    loop {
        match within::<R, _>(LIMIT, w.next()).await {
            Some(Some(Ok(e))) if e.kind == EventKind::Put && !known.contains(&&e.kv.key) => return e.kv.key,
            Some(Some(Ok(_))) => continue,
            other => panic!("expected the put of a new key, got {other:?}"),
        }
    }
}

/// Waits for the deletion of `key`.
async fn deleted<R: Runtime>(w: &mut Watcher, key: &Bytes) {
    loop {
        match within::<R, _>(LIMIT, w.next()).await {
            Some(Some(Ok(e))) if e.kind == EventKind::Delete && e.kv.key == key => return,
            Some(Some(Ok(_))) => continue,
            other => panic!("expected the deletion of {key:?}, got {other:?}"),
        }
    }
}

async fn acquire_release_and_a_waiter_wins_on_release<R: Runtime>() {
    let etcd = Cluster::start();
    let c = connect::<R>(&etcd.endpoint(0)).await;
    let mut a = c.lock("l").ttl(10);
    assert_eq!((a.key(), a.revision(), a.lease_id()), (None, None, None));
    a.acquire().await.unwrap();
    assert!(a.is_acquired().await.unwrap());
    let key_a = a.key().unwrap().clone();
    assert_eq!(key_a, format!("l/{:x}", a.lease_id().unwrap()));
    let rev_a = a.revision().unwrap();
    assert_eq!(c.get(key_a.clone()).await.unwrap().kv().unwrap().create_revision, rev_a);
    // The fencing compare holds for the holder.
    let t = Txn::new().when([a.is_owner()]).and_then([Put::new("guarded", "a")]);
    assert!(c.txn(t).await.unwrap().succeeded);

    let mut w = c.watch_prefix("l/").await.unwrap();
    let mut b = c.lock("l").ttl(10);
    let key_b = {
        let mut b_acquire = std::pin::pin!(b.acquire());
        // B waits: its key is there, its acquisition does not complete.
        let key_b = match select(b_acquire.as_mut(), std::pin::pin!(new_key_put::<R>(&mut w, &[&key_a]))).await {
            Either::Left((r, _)) => panic!("B acquired while A holds the lock: {r:?}"),
            Either::Right((key, _)) => key,
        };
        a.release().await.unwrap();
        within::<R, _>(LIMIT, b_acquire).await.expect("B acquires after A's release").unwrap();
        key_b
    };
    assert_eq!(b.key(), Some(&key_b));
    assert!(b.revision().unwrap() > rev_a);
    assert!(b.is_acquired().await.unwrap());
    assert!(!a.is_acquired().await.unwrap());
    assert_eq!(a.key(), None);
    // A's compare no longer holds, B's does.
    assert!(!c.txn(Txn::new().when([a.is_owner()]).and_then([Put::new("guarded", "a")])).await.unwrap().succeeded);
    assert!(c.txn(Txn::new().when([b.is_owner()]).and_then([Put::new("guarded", "b")])).await.unwrap().succeeded);
    let rev_b = b.revision().unwrap();
    b.release().await.unwrap();
    assert!(keys_under(&c, "l/").await.is_empty());

    // The guard form: released when dropped.
    let guard = c.lock("l").ttl(10).guard().await.unwrap();
    assert!(guard.is_acquired().await.unwrap());
    let key = guard.key().clone();
    assert!(guard.revision() > rev_b);
    let lease = guard.lease_id();
    drop(guard);
    deleted::<R>(&mut w, &key).await;
    assert!(!lease_ids(&c).await.contains(&lease));
    // ... or explicitly.
    let guard = c.lock("l").ttl(10).guard().await.unwrap();
    let lease = guard.lease_id();
    guard.release().await.unwrap();
    assert!(keys_under(&c, "l/").await.is_empty());
    assert!(!lease_ids(&c).await.contains(&lease));
}

async fn acquire_timeout_fails_cleanly<R: Runtime>() {
    let etcd = Cluster::start();
    let c = connect::<R>(&etcd.endpoint(0)).await;
    let mut holder = c.lock("t").ttl(10);
    holder.acquire().await.unwrap();
    let holder_key = holder.key().unwrap().clone();
    let before = lease_ids(&c).await;

    let mut other = c.lock("t").ttl(10);
    let started = Instant::now();
    let r = within::<R, _>(LIMIT, other.acquire_timeout(Duration::from_millis(500))).await.expect("no hang");
    assert_eq!(r, Err(Error::DeadlineExceeded));
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(500) && took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(other.key(), None);
    assert!(!other.is_acquired().await.unwrap());
    assert_eq!(lease_ids(&c).await, before, "the attempt's lease was revoked");
    assert_eq!(keys_under(&c, "t/").await, vec![holder_key.clone()]);
    assert!(holder.is_acquired().await.unwrap());

    // The guard form never hands out a guard without the lock.
    let r = c.lock("t").ttl(10).guard_timeout(Duration::from_millis(300)).await;
    assert_eq!(r.unwrap_err(), Error::DeadlineExceeded);
    assert_eq!(lease_ids(&c).await, before);

    // With a session's lease: the waiting key goes, the session's lease stays.
    let session = c.session_with_ttl(10).await.unwrap();
    let mut from_session = session.lock("t");
    let r = within::<R, _>(LIMIT, from_session.acquire_timeout(Duration::from_millis(300))).await.unwrap();
    assert_eq!(r, Err(Error::DeadlineExceeded));
    assert_eq!(keys_under(&c, "t/").await, vec![holder_key]);
    assert!(c.lease_time_to_live(session.lease_id()).await.unwrap().ttl > 0);

    // Once the lock is free, the same handles acquire.
    holder.release().await.unwrap();
    from_session.acquire_timeout(Duration::from_secs(10)).await.unwrap();
    assert!(from_session.is_acquired().await.unwrap());
}

async fn try_acquire_answers_at_once<R: Runtime>() {
    let etcd = Cluster::start();
    let c = connect::<R>(&etcd.endpoint(0)).await;
    let mut a = c.lock("try").ttl(10);
    assert!(a.try_acquire().await.unwrap());
    assert!(a.is_acquired().await.unwrap());
    let rev_a = a.revision().unwrap();
    assert!(a.try_acquire().await.unwrap(), "held already");
    assert_eq!(a.revision(), Some(rev_a));
    let before = lease_ids(&c).await;

    let mut b = c.lock("try").ttl(10);
    let started = Instant::now();
    assert!(!within::<R, _>(LIMIT, b.try_acquire()).await.unwrap().unwrap());
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert_eq!(b.key(), None);
    assert_eq!(lease_ids(&c).await, before, "the failed attempt's lease was revoked");
    assert_eq!(keys_under(&c, "try/").await, vec![a.key().unwrap().clone()]);

    let session = c.session_with_ttl(10).await.unwrap();
    let mut s = session.lock("try");
    assert!(!s.try_acquire().await.unwrap());
    assert_eq!(keys_under(&c, "try/").await, vec![a.key().unwrap().clone()]);
    assert!(session.is_alive());

    a.release().await.unwrap();
    assert!(b.try_acquire().await.unwrap());
    assert!(b.revision().unwrap() > rev_a);
    assert!(!s.try_acquire().await.unwrap());
    b.release().await.unwrap();
    assert!(s.try_acquire().await.unwrap());
    assert_eq!(s.lease_id(), Some(session.lease_id()));
}

async fn counter_under_contention_with_fencing<R: Runtime>() {
    const TASKS: usize = 16;
    const ROUNDS: usize = 50;
    let etcd = Cluster::start();
    let c = connect::<R>(&etcd.endpoint(0)).await;
    c.put("counter", "0").await.unwrap();
    let leases_before = lease_ids(&c).await;
    let tasks = (0..TASKS).map(|i| {
        let c = c.clone();
        async move {
            // Half the tasks lock with a session's lease, half with a lease per acquisition.
            let session = if i % 2 == 0 { Some(c.session_with_ttl(10).await.unwrap()) } else { None };
            let mut lock = match &session {
                Some(s) => s.lock("counter-lock"),
                None => c.lock("counter-lock").ttl(10),
            };
            let mut seen = Vec::with_capacity(ROUNDS);
            for _ in 0..ROUNDS {
                lock.acquire().await.unwrap();
                let revision = lock.revision().unwrap();
                let value = c.get("counter").await.unwrap();
                let n: u64 = value.kv().unwrap().value_str().unwrap().parse().unwrap();
                let t = Txn::new().when([lock.is_owner()]).and_then([Put::new("counter", (n + 1).to_string())]);
                assert!(c.txn(t).await.unwrap().succeeded, "the guarded write of a lock holder failed");
                lock.release().await.unwrap();
                seen.push((n, revision));
            }
            if let Some(s) = session {
                s.close().await.unwrap();
            }
            seen
        }
    });
    let per_task = within::<R, _>(Duration::from_secs(600), join_all(tasks)).await.expect("the tasks finish");
    let counter = c.get("counter").await.unwrap();
    assert_eq!(counter.kv().unwrap().value_str(), Some("800"));
    let mut all: Vec<(u64, i64)> = per_task.into_iter().flatten().collect();
    all.sort();
    let values: Vec<u64> = all.iter().map(|&(n, _)| n).collect();
    assert_eq!(values, (0..(TASKS * ROUNDS) as u64).collect::<Vec<_>>(), "each increment seen once");
    // In the order the lock was held, the fencing revisions strictly increase.
    for pair in all.windows(2) {
        assert!(pair[0].1 < pair[1].1, "fencing revisions out of order: {pair:?}");
    }
    assert!(keys_under(&c, "counter-lock/").await.is_empty());
    assert_eq!(lease_ids(&c).await, leases_before);
}

async fn a_dead_holder_passes_the_lock_after_its_ttl<R: Runtime>() {
    let etcd = Cluster::start();
    let dying = connect::<R>(&etcd.endpoint(0)).await;
    let mut a = dying.lock("dead").ttl(2);
    a.acquire().await.unwrap();
    let key_a = a.key().unwrap().clone();

    let c = connect::<R>(&etcd.endpoint(0)).await;
    let mut w = c.watch_prefix("dead/").await.unwrap();
    let mut b = c.lock("dead").ttl(10);
    let took = {
        let mut b_acquire = std::pin::pin!(b.acquire());
        match select(b_acquire.as_mut(), std::pin::pin!(new_key_put::<R>(&mut w, &[&key_a]))).await {
            Either::Left((r, _)) => panic!("B acquired while A holds the lock: {r:?}"),
            Either::Right(_) => {}
        }
        // A's client dies: no release, no more renewals.
        dying.close().await;
        let died = Instant::now();
        within::<R, _>(LIMIT, b_acquire).await.expect("B acquires once A's lease expires").unwrap();
        died.elapsed()
    };
    assert!(took >= Duration::from_secs(1), "the lease of TTL 2 s outlived its client for {took:?} only");
    assert!(b.is_acquired().await.unwrap());
    drop(a); // its release cannot be sent any more; harmless
    assert!(b.is_acquired().await.unwrap());
}

async fn dropping_a_pending_acquire_leaves_nothing<R: Runtime>() {
    let etcd = Cluster::start();
    let c = connect::<R>(&etcd.endpoint(0)).await;
    let mut holder = c.lock("drop").ttl(10);
    holder.acquire().await.unwrap();
    let holder_key = holder.key().unwrap().clone();
    let session = c.session_with_ttl(10).await.unwrap();
    let before = lease_ids(&c).await;
    let mut w = c.watch_prefix("drop/").await.unwrap();

    // A lock with its own lease, and one with the session's.
    for use_session in [false, true] {
        let mut waiter = if use_session { session.lock("drop") } else { c.lock("drop").ttl(10) };
        let key = {
            let acquire = std::pin::pin!(waiter.acquire());
            match select(acquire, std::pin::pin!(new_key_put::<R>(&mut w, &[&holder_key]))).await {
                Either::Left((r, _)) => panic!("acquired while held elsewhere: {r:?}"),
                Either::Right((key, _)) => key,
            }
            // The pending acquisition is dropped here.
        };
        deleted::<R>(&mut w, &key).await;
        // The server also deletes the key of a cancelled wait, so its deletion may
        // come before the lease's revocation (sent without waiting from `Drop`).
        leases_settle_to::<R>(&c, &before).await;
        assert_eq!(keys_under(&c, "drop/").await, vec![holder_key.clone()]);
        assert_eq!(waiter.key(), None);
    }
    assert!(c.lease_time_to_live(session.lease_id()).await.unwrap().ttl > 0);
    assert!(holder.is_acquired().await.unwrap());

    // The session can use the name again afterwards.
    let mut again = session.lock("drop");
    holder.release().await.unwrap();
    within::<R, _>(LIMIT, again.acquire()).await.unwrap().unwrap();
}

async fn losing_the_lease_while_held_is_reported<R: Runtime>() {
    let etcd = Cluster::start();
    let c = connect::<R>(&etcd.endpoint(0)).await;
    let other = connect::<R>(&etcd.endpoint(0)).await;
    let mut l = c.lock("lost").ttl(5);
    assert_eq!(within::<R, _>(LIMIT, l.lost()).await, Some(Error::SessionExpired), "nothing held yet");
    l.acquire().await.unwrap();
    let lost = l.lost();
    let owner = l.is_owner();
    other.lease_revoke(l.lease_id().unwrap()).await.unwrap();
    let why = within::<R, _>(LIMIT, lost).await.expect("the loss is reported");
    assert_eq!(why, Error::LeaseNotFound);
    assert!(!l.is_acquired().await.unwrap());
    assert!(!c.txn(Txn::new().when([owner]).and_then([Put::new("x", "1")])).await.unwrap().succeeded);

    // Someone else takes it; releasing the lost lock does not touch theirs.
    let mut n = other.lock("lost").ttl(5);
    assert!(n.try_acquire().await.unwrap());
    l.release().await.unwrap();
    assert!(n.is_acquired().await.unwrap());
    // The lost handle acquires again after the new holder is done.
    n.release().await.unwrap();
    l.acquire().await.unwrap();
    assert!(l.is_acquired().await.unwrap());
}

async fn losing_the_lease_while_waiting_fails_the_wait<R: Runtime>() {
    let etcd = Cluster::start();
    let c = connect::<R>(&etcd.endpoint(0)).await;
    let other = connect::<R>(&etcd.endpoint(0)).await;
    let mut holder = c.lock("w").ttl(10);
    holder.acquire().await.unwrap();
    let holder_key = holder.key().unwrap().clone();
    let mut w = c.watch_prefix("w/").await.unwrap();
    let before = lease_ids(&c).await;

    // The waiter's own lease is revoked by someone else while it waits.
    let mut waiter = c.lock("w").ttl(3);
    let r = {
        let mut acquire = std::pin::pin!(waiter.acquire());
        let key = match select(acquire.as_mut(), std::pin::pin!(new_key_put::<R>(&mut w, &[&holder_key]))).await {
            Either::Left((r, _)) => panic!("acquired while held elsewhere: {r:?}"),
            Either::Right((key, _)) => key,
        };
        let lease = i64::from_str_radix(std::str::from_utf8(&key[b"w/".len()..]).unwrap(), 16).unwrap();
        other.lease_revoke(lease).await.unwrap();
        within::<R, _>(LIMIT, acquire).await.expect("the wait ends when its lease is lost")
    };
    assert_eq!(r, Err(Error::SessionExpired));
    assert_eq!(waiter.key(), None);
    assert_eq!(lease_ids(&c).await, before);
    assert_eq!(keys_under(&c, "w/").await, vec![holder_key.clone()]);

    // A session is closed while one of its locks waits.
    let session = other.session_with_ttl(10).await.unwrap();
    let mut from_session = session.lock("w");
    let r = {
        let mut acquire = std::pin::pin!(from_session.acquire());
        match select(acquire.as_mut(), std::pin::pin!(new_key_put::<R>(&mut w, &[&holder_key]))).await {
            Either::Left((r, _)) => panic!("acquired while held elsewhere: {r:?}"),
            Either::Right(_) => {}
        }
        session.close().await.unwrap();
        within::<R, _>(LIMIT, acquire).await.expect("the wait ends when the session closes")
    };
    assert_eq!(r, Err(Error::SessionExpired));
    assert_eq!(keys_under(&c, "w/").await, vec![holder_key]);
    assert_eq!(lease_ids(&c).await, before);
    assert!(holder.is_acquired().await.unwrap());
}

async fn session_locks_share_the_session_lease<R: Runtime>() {
    let etcd = Cluster::start();
    let c = connect::<R>(&etcd.endpoint(0)).await;
    let session = c.session_with_ttl(10).await.unwrap();
    let id = session.lease_id();
    assert!(session.is_alive());
    let mut a = session.lock("sa");
    let mut b = session.lock("sb");
    assert_eq!(a.lease_id(), Some(id));
    a.acquire().await.unwrap();
    b.acquire().await.unwrap();
    assert_eq!((a.lease_id(), b.lease_id()), (Some(id), Some(id)));
    assert_eq!(a.key().unwrap(), &format!("sa/{id:x}"));

    // One name, one user per session (they would share the key).
    let mut twin = session.lock("sa");
    assert!(matches!(twin.try_acquire().await, Err(Error::InvalidArgument(_))));
    assert!(a.is_acquired().await.unwrap());

    // Releasing or dropping a lock keeps the session's lease.
    a.release().await.unwrap();
    assert!(keys_under(&c, "sa/").await.is_empty());
    assert!(twin.try_acquire().await.unwrap(), "the name is free again");
    let mut w = c.watch_prefix("sa/").await.unwrap();
    let twin_key = twin.key().unwrap().clone();
    drop(twin);
    deleted::<R>(&mut w, &twin_key).await;
    assert!(c.lease_time_to_live(id).await.unwrap().ttl > 0);
    assert!(b.is_acquired().await.unwrap());

    // Another session waits for this one's lock.
    let rival = c.session_with_ttl(10).await.unwrap();
    let mut r = rival.lock("sb");
    assert!(!r.try_acquire().await.unwrap());

    // Closing revokes the lease: every lock of the session is gone at once.
    let b_lost = b.lost();
    session.close().await.unwrap();
    assert_eq!(c.lease_time_to_live(id).await.unwrap().ttl, -1);
    assert_eq!(within::<R, _>(LIMIT, b_lost).await, Some(Error::SessionExpired));
    assert!(!b.is_acquired().await.unwrap());
    assert!(matches!(b.try_acquire().await, Err(Error::SessionExpired)));
    assert!(r.try_acquire().await.unwrap());

    // A session nobody else uses: closed, its lease is revoked.
    let alone = c.session_with_ttl(10).await.unwrap();
    let alone_id = alone.lease_id();
    alone.close().await.unwrap();
    assert!(!lease_ids(&c).await.contains(&alone_id));
    // Dropped (with everything made from it): its lease is revoked too.
    let dropped = c.session_with_ttl(10).await.unwrap();
    c.request(Put::new("marker", "v").lease(dropped.lease_id())).await.unwrap();
    let mut w = c.watch("marker").await.unwrap();
    drop(dropped);
    deleted::<R>(&mut w, &Bytes::from_static(b"marker")).await;
}

async fn election_hands_over_on_resign_and_observe_follows<R: Runtime>() {
    let etcd = Cluster::start();
    let c = connect::<R>(&etcd.endpoint(0)).await;
    let watcher = c.election("e");
    assert_eq!(watcher.leader().await.unwrap(), None, "no candidate, no leader");
    let mut observed = watcher.observe();

    let mut a = c.election("e").ttl(10);
    assert!(!a.is_leader().await.unwrap());
    assert_eq!(a.proclaim("nobody").await, Err(Error::ElectionNotLeader));
    a.campaign("a").await.unwrap();
    assert!(a.is_leader().await.unwrap());
    let key_a = a.leader_key().unwrap().key.clone();
    let first = within::<R, _>(LIMIT, observed.next()).await.unwrap().unwrap().unwrap();
    assert_eq!((&first.key, &first.value[..]), (&key_a, &b"a"[..]));
    assert_eq!(watcher.leader().await.unwrap().unwrap().value, "a");

    let mut w = c.watch_prefix("e/").await.unwrap();
    let mut b = c.election("e").ttl(10);
    {
        let mut b_campaign = std::pin::pin!(b.campaign("b"));
        match select(b_campaign.as_mut(), std::pin::pin!(new_key_put::<R>(&mut w, &[&key_a]))).await {
            Either::Left((r, _)) => panic!("B leads while A does: {r:?}"),
            Either::Right(_) => {}
        }
        // The leader's new proclamation is observed; B's candidacy is not a change of leader.
        a.proclaim("a2").await.unwrap();
        let next = within::<R, _>(LIMIT, observed.next()).await.unwrap().unwrap().unwrap();
        assert_eq!((&next.key, &next.value[..]), (&key_a, &b"a2"[..]));
        assert_eq!(watcher.leader().await.unwrap().unwrap().value, "a2");
        a.resign().await.unwrap();
        within::<R, _>(LIMIT, b_campaign).await.expect("B leads after A resigns").unwrap();
    }
    let key_b = b.leader_key().unwrap().key.clone();
    assert_ne!(key_a, key_b);
    let next = within::<R, _>(LIMIT, observed.next()).await.unwrap().unwrap().unwrap();
    assert_eq!((&next.key, &next.value[..]), (&key_b, &b"b"[..]));
    assert!(b.is_leader().await.unwrap());
    assert!(!a.is_leader().await.unwrap());
    assert_eq!(a.proclaim("a3").await, Err(Error::ElectionNotLeader));
    assert!(b.leader_key().unwrap().revision > first.create_revision);

    // Campaigning again while leading proclaims.
    b.campaign("b2").await.unwrap();
    let next = within::<R, _>(LIMIT, observed.next()).await.unwrap().unwrap().unwrap();
    assert_eq!((&next.key, &next.value[..]), (&key_b, &b"b2"[..]));

    b.resign().await.unwrap();
    assert_eq!(watcher.leader().await.unwrap(), None);
    assert!(keys_under(&c, "e/").await.is_empty());
}

async fn election_hands_over_when_the_leader_loses_its_lease<R: Runtime>() {
    let etcd = Cluster::start();
    let c = connect::<R>(&etcd.endpoint(0)).await;
    let other = connect::<R>(&etcd.endpoint(0)).await;
    let mut a = c.election("f").ttl(5);
    a.campaign("a").await.unwrap();
    let key_a = a.leader_key().unwrap().key.clone();
    let a_lost = a.lost();

    // B campaigns with a session's lease.
    let session = other.session_with_ttl(10).await.unwrap();
    let mut b = session.election("f");
    let mut w = c.watch_prefix("f/").await.unwrap();
    let mut observed = c.election("f").observe();
    let first = within::<R, _>(LIMIT, observed.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(first.key, key_a);
    {
        let mut b_campaign = std::pin::pin!(b.campaign("b"));
        match select(b_campaign.as_mut(), std::pin::pin!(new_key_put::<R>(&mut w, &[&key_a]))).await {
            Either::Left((r, _)) => panic!("B leads while A does: {r:?}"),
            Either::Right(_) => {}
        }
        other.lease_revoke(a.lease_id().unwrap()).await.unwrap();
        within::<R, _>(LIMIT, b_campaign).await.expect("B leads once A's lease is gone").unwrap();
    }
    assert_eq!(within::<R, _>(LIMIT, a_lost).await, Some(Error::LeaseNotFound));
    assert!(!a.is_leader().await.unwrap());
    assert_eq!(a.proclaim("still me?").await, Err(Error::ElectionNotLeader));
    assert!(b.is_leader().await.unwrap());
    assert_eq!(b.lease_id(), Some(session.lease_id()));
    let next = within::<R, _>(LIMIT, observed.next()).await.unwrap().unwrap().unwrap();
    assert_eq!((&next.key[..], &next.value[..]), (b.leader_key().unwrap().key.as_ref(), &b"b"[..]));

    // Resigning a session's leadership keeps the session's lease.
    b.resign().await.unwrap();
    assert_eq!(c.election("f").leader().await.unwrap(), None);
    assert!(c.lease_time_to_live(session.lease_id()).await.unwrap().ttl > 0);
}

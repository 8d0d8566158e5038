//! Lease keep-alive scenarios against a real etcd, each run on tokio and on smol.

use std::time::{Duration, Instant};

use aetcd_h2::kv::Put;
use aetcd_h2::watch::EventKind;
use aetcd_h2::{Client, Error, Runtime};
use aetcd_tests::etcd::Cluster;
use aetcd_tests::proxy::Proxy;
use aetcd_tests::within;
use futures_util::StreamExt;

aetcd_tests::on_both_runtimes!(
    kept_lease_outlives_its_ttl,
    unkept_lease_expires_with_its_keys,
    keep_alive_survives_a_server_restart,
    revoked_kept_lease_reports_loss,
    unconfirmed_renewals_report_expiry,
    dropping_the_handle_stops_or_revokes,
    keep_alive_of_a_missing_lease_fails,
);

const LIMIT: Duration = Duration::from_secs(60);

async fn connect<R: Runtime>(endpoint: &str) -> Client<R> {
    Client::<R>::connect(endpoint).await.expect("connect to the test etcd")
}

/// Waits (on the runtime's timer) until `d` has passed: the duration is what is
/// under test here, not a stand-in for an event.
async fn pass_time<R: Runtime>(d: Duration) {
    within::<R, _>(d, std::future::pending::<()>()).await;
}

/// Waits for the delete event of `key`.
async fn deleted<R: Runtime>(w: &mut aetcd_h2::watch::Watcher) {
    loop {
        match within::<R, _>(LIMIT, w.next()).await {
            Some(Some(Ok(e))) if e.kind == EventKind::Delete => return,
            Some(Some(Ok(_))) => continue,
            other => panic!("expected a delete event, got {other:?}"),
        }
    }
}

async fn kept_lease_outlives_its_ttl<R: Runtime>() {
    let etcd = Cluster::start();
    let c = connect::<R>(&etcd.endpoint(0)).await;
    let lease = c.lease_grant_kept(2).await.unwrap();
    c.request(Put::new("kept", "v").lease(lease.id())).await.unwrap();
    let start = Instant::now();
    pass_time::<R>(Duration::from_secs(10)).await;
    assert!(start.elapsed() >= Duration::from_secs(10));
    let ttl = c.lease_time_to_live(lease.id()).await.unwrap();
    assert!(ttl.ttl > 0, "a lease with TTL 2 s is alive after 10 s: {ttl:?}");
    assert!(lease.is_alive());
    assert!(lease.renewals() >= 10, "renewed about every 2/3 s, got {}", lease.renewals());
    assert_eq!(c.get("kept").await.unwrap().count, 1);
}

async fn unkept_lease_expires_with_its_keys<R: Runtime>() {
    let etcd = Cluster::start();
    let c = connect::<R>(&etcd.endpoint(0)).await;
    let id = c.lease_grant(1).await.unwrap().id;
    c.request(Put::new("short", "v").lease(id)).await.unwrap();
    let mut w = c.watch("short").await.unwrap();
    deleted::<R>(&mut w).await;
    assert_eq!(c.lease_time_to_live(id).await.unwrap().ttl, -1);
    assert_eq!(c.get("short").await.unwrap().count, 0);
}

async fn keep_alive_survives_a_server_restart<R: Runtime>() {
    let mut etcd = Cluster::start();
    let c = Client::<R>::builder()
        .endpoint(etcd.endpoint(0))
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(300))
        .connect()
        .await
        .unwrap();
    let lease = c.lease_grant_kept(6).await.unwrap();
    c.request(Put::new("survivor", "v").lease(lease.id())).await.unwrap();
    etcd.kill(0);
    etcd.restart(0);
    // Renewals resume on a new stream (overdue ones at once).
    for _ in 0..3 {
        let ttl = within::<R, _>(LIMIT, lease.renewed()).await.expect("renewals resume after the restart");
        assert!(ttl.unwrap() > 0);
    }
    assert!(c.lease_time_to_live(lease.id()).await.unwrap().ttl > 0);
    assert_eq!(c.get("survivor").await.unwrap().count, 1);
}

async fn revoked_kept_lease_reports_loss<R: Runtime>() {
    let etcd = Cluster::start();
    let c = connect::<R>(&etcd.endpoint(0)).await;
    let lease = c.lease_grant_kept(3).await.unwrap();
    c.lease_revoke(lease.id()).await.unwrap();
    let why = within::<R, _>(LIMIT, lease.lost()).await.expect("loss reported");
    assert_eq!(why, Error::LeaseNotFound);
    assert!(!lease.is_alive());
}

async fn unconfirmed_renewals_report_expiry<R: Runtime>() {
    let etcd = Cluster::start();
    let proxy = Proxy::start(&etcd.endpoint(0));
    let c = Client::<R>::builder().endpoint(proxy.endpoint()).connect().await.unwrap();
    let lease = c.lease_grant_kept(2).await.unwrap();
    proxy.cut();
    let started = Instant::now();
    let why = within::<R, _>(LIMIT, lease.lost()).await.expect("loss reported");
    assert_eq!(why, Error::LeaseExpired { id: lease.id() });
    assert!(started.elapsed() <= Duration::from_secs(3), "reported within the TTL, took {:?}", started.elapsed());
}

async fn dropping_the_handle_stops_or_revokes<R: Runtime>() {
    let etcd = Cluster::start();
    let c = connect::<R>(&etcd.endpoint(0)).await;
    // Dropped: no more renewals, the lease expires after its TTL.
    let lease = c.lease_grant_kept(1).await.unwrap();
    c.request(Put::new("dropped", "v").lease(lease.id())).await.unwrap();
    let mut w = c.watch("dropped").await.unwrap();
    drop(lease);
    deleted::<R>(&mut w).await;
    // Revoke-on-drop: the keys go at once, long before the 60 s TTL.
    let lease = c.lease_grant_kept(60).await.unwrap().revoke_on_drop(true);
    let id = lease.id();
    c.request(Put::new("revoked", "v").lease(id)).await.unwrap();
    let mut w = c.watch("revoked").await.unwrap();
    drop(lease);
    deleted::<R>(&mut w).await;
    assert!(!c.leases().await.unwrap().ids.contains(&id));
    // Explicit revoke.
    let lease = c.lease_grant_kept(60).await.unwrap();
    let id = lease.id();
    lease.revoke().await.unwrap();
    assert!(!c.leases().await.unwrap().ids.contains(&id));
}

async fn keep_alive_of_a_missing_lease_fails<R: Runtime>() {
    let etcd = Cluster::start();
    let c = connect::<R>(&etcd.endpoint(0)).await;
    assert_eq!(c.lease_keep_alive(0x5151).await.unwrap_err(), Error::LeaseNotFound);
    let id = c.lease_grant(30).await.unwrap().id;
    let ttl = c.lease_keep_alive_once(id).await.unwrap();
    assert!(ttl >= 29);
}

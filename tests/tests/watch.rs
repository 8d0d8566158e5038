//! Watch scenarios against a real etcd, each run on tokio and on smol.

use std::time::Duration;

use aetcd_h2::kv::{Put, Txn, TxnOp};
use aetcd_h2::watch::{EventKind, WatchEvent, WatchItem, WatchRequest, Watcher};
use aetcd_h2::{Client, Error, Runtime};
use aetcd_tests::etcd::{Cluster, ClusterBuilder};
use aetcd_tests::proxy::Proxy;
use aetcd_tests::{metric, within};
use futures_util::future::join_all;
use futures_util::StreamExt;

aetcd_tests::on_both_runtimes!(
    events_on_key_prefix_and_range,
    prev_kv_and_filters,
    transaction_events_arrive_together,
    history_replay_and_compaction,
    restarts_lose_and_repeat_nothing,
    compaction_during_outage_ends_the_watch,
    ten_thousand_watches,
    watch_cancel_cycles_leak_nothing,
    progress_notifications,
    fragmented_responses_arrive_whole,
    cancel_and_drop,
    slow_consumer_is_told_where_to_resume,
    watch_once,
);

const LIMIT: Duration = Duration::from_secs(60);

async fn connect<R: Runtime>(endpoint: &str) -> Client<R> {
    Client::<R>::connect(endpoint).await.expect("connect to the test etcd")
}

/// The next `n` events, failing the test after a minute instead of hanging.
async fn next_events<R: Runtime>(w: &mut Watcher, n: usize) -> Vec<WatchEvent> {
    let mut out = Vec::new();
    while out.len() < n {
        match within::<R, _>(LIMIT, w.next()).await {
            Some(Some(Ok(e))) => out.push(e),
            Some(Some(Err(e))) => panic!("watch failed after {} events: {e:?}", out.len()),
            Some(None) => panic!("watch ended after {} events", out.len()),
            None => panic!("no event within {LIMIT:?} after {} events", out.len()),
        }
    }
    out
}

fn summary(events: &[WatchEvent]) -> Vec<(EventKind, String, String)> {
    events
        .iter()
        .map(|e| {
            let k = String::from_utf8_lossy(&e.kv.key).into_owned();
            let v = String::from_utf8_lossy(&e.kv.value).into_owned();
            (e.kind, k, v)
        })
        .collect()
}

async fn events_on_key_prefix_and_range<R: Runtime>() {
    let etcd = Cluster::start();
    let c = connect::<R>(&etcd.endpoint(0)).await;
    let mut key = c.watch("w/a").await.unwrap();
    let mut prefix = c.watch_prefix("w/").await.unwrap();
    let mut range = c.watch_range("w/b", "w/d").await.unwrap();
    let r1 = c.put("w/a", "1").await.unwrap().header.revision;
    c.put("w/b", "2").await.unwrap();
    c.put("w/d", "3").await.unwrap();
    c.put("x/a", "4").await.unwrap();
    let r5 = c.delete("w/a").await.unwrap().header.revision;
    c.put("w/c", "5").await.unwrap();

    let on_key = next_events::<R>(&mut key, 2).await;
    assert_eq!(
        summary(&on_key),
        vec![(EventKind::Put, "w/a".into(), "1".into()), (EventKind::Delete, "w/a".into(), "".into())]
    );
    assert_eq!((on_key[0].revision(), on_key[1].revision()), (r1, r5));
    assert_eq!((on_key[0].kv.version, on_key[0].kv.create_revision), (1, r1));
    let on_prefix = next_events::<R>(&mut prefix, 5).await;
    let keys: Vec<String> = summary(&on_prefix).into_iter().map(|(_, k, _)| k).collect();
    assert_eq!(keys, vec!["w/a", "w/b", "w/d", "w/a", "w/c"]);
    assert!(on_prefix.windows(2).all(|p| p[0].revision() < p[1].revision()));
    let on_range = next_events::<R>(&mut range, 2).await;
    let keys: Vec<String> = summary(&on_range).into_iter().map(|(_, k, _)| k).collect();
    assert_eq!(keys, vec!["w/b", "w/c"]);
    for w in [&mut key, &mut prefix, &mut range] {
        w.cancel().await.unwrap();
        assert!(w.next().await.is_none());
    }
}

async fn prev_kv_and_filters<R: Runtime>() {
    let etcd = Cluster::start();
    let c = connect::<R>(&etcd.endpoint(0)).await;
    c.put("f/k", "old").await.unwrap();
    let mut with_prev = c.watch_with(WatchRequest::key("f/k").prev_kv()).await.unwrap();
    let mut no_put = c.watch_with(WatchRequest::prefix("f/").no_put()).await.unwrap();
    let mut no_delete = c.watch_with(WatchRequest::prefix("f/").no_delete()).await.unwrap();
    c.put("f/k", "new").await.unwrap();
    c.delete("f/k").await.unwrap();
    c.put("f/end", "x").await.unwrap();

    let e = next_events::<R>(&mut with_prev, 2).await;
    assert_eq!(e[0].prev_kv.as_ref().unwrap().value, "old");
    assert_eq!(e[0].kv.value, "new");
    assert_eq!(e[1].kind, EventKind::Delete);
    assert_eq!(e[1].prev_kv.as_ref().unwrap().value, "new");
    let deletes = next_events::<R>(&mut no_put, 1).await;
    assert_eq!(summary(&deletes), vec![(EventKind::Delete, "f/k".into(), "".into())]);
    assert_eq!(deletes[0].prev_kv, None, "no prev_kv unless asked for");
    let puts = next_events::<R>(&mut no_delete, 2).await;
    assert_eq!(
        summary(&puts),
        vec![(EventKind::Put, "f/k".into(), "new".into()), (EventKind::Put, "f/end".into(), "x".into())]
    );
}

async fn transaction_events_arrive_together<R: Runtime>() {
    let etcd = Cluster::start();
    let c = connect::<R>(&etcd.endpoint(0)).await;
    let mut responses = c.watch_prefix("t/").await.unwrap().responses();
    let txn = Txn::new().and_then([
        TxnOp::from(Put::new("t/1", "a")),
        TxnOp::from(Put::new("t/2", "b")),
        TxnOp::from(Put::new("t/3", "c")),
    ]);
    let rev = c.txn(txn).await.unwrap().header.revision;
    c.put("t/4", "d").await.unwrap();
    let first = within::<R, _>(LIMIT, responses.next()).await.unwrap().unwrap().unwrap();
    match first {
        WatchItem::Events(r) => {
            assert_eq!(r.events.len(), 3, "the three writes of one revision come in one response");
            assert!(r.events.iter().all(|e| e.revision() == rev));
            assert_eq!(r.revision, rev);
        }
        other => panic!("expected events, got {other:?}"),
    }
    match within::<R, _>(LIMIT, responses.next()).await.unwrap().unwrap().unwrap() {
        WatchItem::Events(r) => assert_eq!((r.events.len(), r.revision), (1, rev + 1)),
        other => panic!("expected events, got {other:?}"),
    }
}

async fn history_replay_and_compaction<R: Runtime>() {
    let etcd = Cluster::start();
    let c = connect::<R>(&etcd.endpoint(0)).await;
    let mut revs = Vec::new();
    for i in 0..6 {
        revs.push(c.put("h/k", format!("v{i}")).await.unwrap().header.revision);
    }
    // From an old revision: history replays, in order.
    let mut old = c.watch_with(WatchRequest::key("h/k").start_revision(revs[1])).await.unwrap();
    let replay = next_events::<R>(&mut old, 5).await;
    let values: Vec<String> = summary(&replay).into_iter().map(|(_, _, v)| v).collect();
    assert_eq!(values, vec!["v1", "v2", "v3", "v4", "v5"]);
    old.cancel().await.unwrap();

    c.compact(revs[3]).await.unwrap();
    let mut compacted = c.watch_with(WatchRequest::key("h/k").start_revision(revs[1])).await.unwrap();
    match within::<R, _>(LIMIT, compacted.next()).await.unwrap() {
        Some(Err(Error::Compacted { compact_revision })) => assert_eq!(compact_revision, Some(revs[3])),
        other => panic!("expected Compacted, got {other:?}"),
    }
    assert!(compacted.next().await.is_none());
    // Re-watching from the compaction revision works.
    let mut again = c.watch_with(WatchRequest::key("h/k").start_revision(revs[3])).await.unwrap();
    let values: Vec<String> = summary(&next_events::<R>(&mut again, 3).await).into_iter().map(|(_, _, v)| v).collect();
    assert_eq!(values, vec!["v3", "v4", "v5"]);
}

async fn restarts_lose_and_repeat_nothing<R: Runtime>() {
    let mut etcd = Cluster::start();
    let endpoint = etcd.endpoint(0);
    let c = Client::<R>::builder()
        .endpoint(&endpoint)
        .request_timeout(Duration::from_secs(5))
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(500))
        .watch_buffer(4096)
        .connect()
        .await
        .unwrap();
    let mut w = c.watch_prefix("r/").await.unwrap();
    let mut acked = Vec::new();
    for i in 0..1000 {
        if i > 0 && i % 250 == 0 {
            etcd.kill(0);
            assert!(c.put("r/down", "x").await.is_err(), "the server is down");
            etcd.restart(0);
        }
        loop {
            match c.put(format!("r/{i:04}"), format!("{i}")).await {
                Ok(r) => {
                    acked.push(r.header.revision);
                    break;
                }
                Err(e) => assert!(e.is_transient(), "unexpected error {e:?}"),
            }
        }
    }
    let last = *acked.last().unwrap();
    let mut seen = Vec::new();
    while seen.last().is_none_or(|r| *r < last) {
        let e = next_events::<R>(&mut w, 1).await.remove(0);
        if &e.kv.key[..] != b"r/down" {
            seen.push(e.revision());
        }
    }
    assert!(seen.windows(2).all(|p| p[0] < p[1]), "events in strictly increasing revision order, no repeats");
    for rev in &acked {
        assert_eq!(
            seen.iter().filter(|r| *r == rev).count(),
            1,
            "acknowledged put at revision {rev} seen exactly once"
        );
    }
}

async fn compaction_during_outage_ends_the_watch<R: Runtime>() {
    let etcd = Cluster::start();
    let proxy = Proxy::start(&etcd.endpoint(0));
    let direct = connect::<R>(&etcd.endpoint(0)).await;
    let c = Client::<R>::builder()
        .endpoint(proxy.endpoint())
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .connect()
        .await
        .unwrap();
    let mut w = c.watch("o/k").await.unwrap();
    direct.put("o/k", "1").await.unwrap();
    assert_eq!(next_events::<R>(&mut w, 1).await[0].kv.value, "1");

    proxy.cut();
    direct.put("o/k", "2").await.unwrap(); // the watch has not seen this one
    let now = direct.put("o/other", "x").await.unwrap().header.revision;
    direct.compact(now).await.unwrap();
    proxy.heal();
    match within::<R, _>(LIMIT, w.next()).await.unwrap() {
        Some(Err(Error::Compacted { compact_revision })) => assert_eq!(compact_revision, Some(now)),
        other => panic!("the watch must not skip the compacted event silently, got {other:?}"),
    }
    assert!(w.next().await.is_none());
}

async fn ten_thousand_watches<R: Runtime>() {
    let etcd = Cluster::start();
    let c = connect::<R>(&etcd.endpoint(0)).await;
    const N: usize = 10_000;
    let mut watchers = Vec::with_capacity(N);
    for chunk in (0..N).collect::<Vec<_>>().chunks(1000) {
        let created = join_all(chunk.iter().map(|i| c.watch(format!("many/{i:05}")))).await;
        watchers.extend(created.into_iter().map(|w| w.unwrap()));
    }
    assert_eq!(metric(&etcd.endpoint(0), "etcd_debugging_mvcc_watcher_total"), Some(N as f64));
    // Cancelling one leaves the others intact.
    watchers[0].cancel().await.unwrap();
    for chunk in (0..N).collect::<Vec<_>>().chunks(500) {
        for r in join_all(chunk.iter().map(|i| c.put(format!("many/{i:05}"), format!("{i}")))).await {
            r.unwrap();
        }
    }
    let got = join_all(watchers.iter_mut().enumerate().skip(1).map(|(i, w)| async move {
        let e = next_events::<R>(w, 1).await.remove(0);
        (i, e)
    }))
    .await;
    for (i, e) in got {
        assert_eq!(e.kv.value, format!("{i}"));
    }
    assert!(watchers[0].next().await.is_none(), "the cancelled watch saw nothing");
    assert_eq!(metric(&etcd.endpoint(0), "etcd_debugging_mvcc_watcher_total"), Some((N - 1) as f64));
}

async fn watch_cancel_cycles_leak_nothing<R: Runtime>() {
    let etcd = Cluster::start();
    let c = connect::<R>(&etcd.endpoint(0)).await;
    let cycles = (0..100).map(|i| {
        let c = c.clone();
        async move {
            let mut w = c.watch(format!("cycle/{i}")).await.unwrap();
            c.put(format!("cycle/{i}"), "x").await.unwrap();
            let e = next_events::<R>(&mut w, 1).await;
            assert_eq!(e[0].kv.value, "x");
            w.cancel().await.unwrap();
            // And a watch dropped without cancel is cancelled too.
            drop(c.watch(format!("cycle/{i}")).await.unwrap());
        }
    });
    join_all(cycles).await;
    // Drops send their cancel in the background: wait for the server to count them out.
    let mut watchers = f64::NAN;
    for _ in 0..500 {
        watchers = metric(&etcd.endpoint(0), "etcd_debugging_mvcc_watcher_total").unwrap();
        if watchers == 0.0 {
            break;
        }
        c.get("sync").await.unwrap(); // a round trip after which earlier cancels were processed
    }
    assert_eq!(watchers, 0.0, "every watch was cancelled on the server");
}

async fn progress_notifications<R: Runtime>() {
    let etcd = ClusterBuilder::new().arg("--experimental-watch-progress-notify-interval=200ms").start();
    let c = connect::<R>(&etcd.endpoint(0)).await;
    let rev = c.put("p/other", "x").await.unwrap().header.revision;
    let mut periodic = c.watch_with(WatchRequest::key("p/k").progress_notify()).await.unwrap().responses();
    match within::<R, _>(LIMIT, periodic.next()).await.unwrap().unwrap().unwrap() {
        WatchItem::Progress { revision } => assert!(revision >= rev),
        other => panic!("expected progress, got {other:?}"),
    }
    // The revision moves on without events for this key.
    let later = c.put("p/other", "y").await.unwrap().header.revision;
    loop {
        match within::<R, _>(LIMIT, periodic.next()).await.unwrap().unwrap().unwrap() {
            WatchItem::Progress { revision } if revision >= later => break,
            WatchItem::Progress { .. } => continue,
            other => panic!("expected progress only, got {other:?}"),
        }
    }
    assert!(periodic.next_revision() > later);

    // Requested progress reaches a watch without progress_notify.
    let mut asked = c.watch("p/quiet").await.unwrap().responses();
    let now = c.put("p/other", "z").await.unwrap().header.revision;
    c.request_progress().unwrap();
    match within::<R, _>(LIMIT, asked.next()).await.unwrap().unwrap().unwrap() {
        WatchItem::Progress { revision } => assert!(revision >= now),
        other => panic!("expected progress, got {other:?}"),
    }
}

async fn fragmented_responses_arrive_whole<R: Runtime>() {
    let etcd = ClusterBuilder::new().arg("--max-request-bytes=1048576").start();
    let c = connect::<R>(&etcd.endpoint(0)).await;
    let value = |i: u8| vec![i; 700 * 1024];
    let first = c.put("frag/0", value(0)).await.unwrap().header.revision;
    for i in 1..4u8 {
        c.put(format!("frag/{i}"), value(i)).await.unwrap();
    }
    // Replaying four 700 KiB events is one 2.8 MiB response, over the server's
    // 1 MiB limit: the server sends it in fragments, the client joins them.
    let mut w = c.watch_with(WatchRequest::prefix("frag/").start_revision(first).fragment()).await.unwrap().responses();
    let mut events = Vec::new();
    while events.len() < 4 {
        if let WatchItem::Events(r) = within::<R, _>(LIMIT, w.next()).await.unwrap().unwrap().unwrap() {
            events.extend(r.events);
        }
    }
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.kv.value.len(), 700 * 1024);
        assert!(e.kv.value.iter().all(|b| *b == i as u8));
    }
}

async fn cancel_and_drop<R: Runtime>() {
    let etcd = Cluster::start();
    let c = connect::<R>(&etcd.endpoint(0)).await;
    let mut w = c.watch("c/k").await.unwrap();
    c.put("c/k", "1").await.unwrap();
    w.cancel().await.unwrap();
    c.put("c/k", "2").await.unwrap();
    // The event before the cancel may or may not have been read; none comes after.
    assert!(w.next().await.is_none());
    assert!(w.next().await.is_none());
    assert_eq!(metric(&etcd.endpoint(0), "etcd_debugging_mvcc_watcher_total"), Some(0.0));

    // Closing the client ends its watches.
    let mut open = c.watch("c/k").await.unwrap();
    c.close().await;
    assert!(matches!(open.next().await, Some(Err(Error::Closed)) | None));
    assert!(matches!(c.watch("c/k").await, Err(Error::Closed)));
}

async fn slow_consumer_is_told_where_to_resume<R: Runtime>() {
    let etcd = Cluster::start();
    let c = Client::<R>::builder().endpoint(etcd.endpoint(0)).watch_buffer(8).connect().await.unwrap();
    let mut w = c.watch_prefix("s/").await.unwrap();
    let mut revs = Vec::new();
    for i in 0..50 {
        revs.push(c.put(format!("s/{i:02}"), "x").await.unwrap().header.revision);
    }
    let mut got = Vec::new();
    let resume = loop {
        match within::<R, _>(LIMIT, w.next()).await.unwrap() {
            Some(Ok(e)) => got.push(e.revision()),
            Some(Err(Error::WatchLagged { next_revision })) => break next_revision,
            other => panic!("expected WatchLagged, got {other:?}"),
        }
    };
    assert!(w.next().await.is_none());
    assert!(got.len() >= 8 && got.len() < 50, "buffered {} responses", got.len());
    assert_eq!(got[..], revs[..got.len()]);
    assert_eq!(resume, revs[got.len()]);
    // Resuming from there loses and repeats nothing.
    let mut rest = c.watch_with(WatchRequest::prefix("s/").start_revision(resume)).await.unwrap();
    let more = next_events::<R>(&mut rest, 50 - got.len()).await;
    got.extend(more.iter().map(WatchEvent::revision));
    assert_eq!(got, revs);
}

async fn watch_once<R: Runtime>() {
    let etcd = Cluster::start();
    let c = connect::<R>(&etcd.endpoint(0)).await;
    assert_eq!(c.watch_once("once/k", Duration::from_millis(200)).await, Err(Error::DeadlineExceeded));
    let waiter = std::pin::pin!(c.watch_once("once/k", LIMIT));
    let writer = std::pin::pin!(async {
        // Write until the waiter has its event (its watch may not exist for the first puts).
        loop {
            c.put("once/k", "v").await.unwrap();
        }
    });
    let event = match futures_util::future::select(waiter, writer).await {
        futures_util::future::Either::Left((event, _)) => event,
        futures_util::future::Either::Right(((), _)) => unreachable!("the writer never stops"),
    };
    assert_eq!(event.unwrap().kv.value, "v");
    let rev = c.put("once/k", "w").await.unwrap().header.revision;
    c.compact(rev).await.unwrap();
    let old = c.watch_once_with(WatchRequest::key("once/k").start_revision(1), LIMIT).await;
    assert_eq!(old, Err(Error::Compacted { compact_revision: Some(rev) }));
}

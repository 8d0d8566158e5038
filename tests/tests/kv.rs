//! Key-value scenarios against a real etcd, each run on tokio and on smol.
//! The etcd version comes from `AETCD_ETCD_VERSION` (3.5.1 or 3.4.23).

use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use aetcd_h2::kv::{prefix_end, Compact, Compare, Delete, Get, Put, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse};
use aetcd_h2::lease::LeaseGrant;
use aetcd_h2::{Client, Error, Runtime};
use aetcd_tests::etcd::{unused_port, Cluster, ClusterBuilder};
use bytes::Bytes;
use futures_util::future::join_all;

aetcd_tests::on_both_runtimes!(
    put_get_delete,
    get_ranges_and_options,
    paging_with_limit_and_more,
    historical_reads,
    put_with_lease_and_ignore_options,
    delete_ranges,
    transactions,
    nested_and_range_transactions,
    replace_is_compare_and_swap,
    compaction,
    big_values,
    request_too_large_is_typed,
    hundreds_of_concurrent_calls,
    server_killed_mid_call,
    connection_refused_and_bad_endpoints,
    wrong_endpoint,
    no_leader_and_deadlines,
    close_ends_the_client,
);

async fn connect<R: Runtime>(etcd: &Cluster) -> Client<R> {
    Client::<R>::connect(etcd.endpoint(0)).await.expect("connect to the test etcd")
}

fn values(kvs: &[aetcd_h2::kv::KeyValue]) -> Vec<&[u8]> {
    kvs.iter().map(|kv| &kv.value[..]).collect()
}

fn keys(kvs: &[aetcd_h2::kv::KeyValue]) -> Vec<&[u8]> {
    kvs.iter().map(|kv| &kv.key[..]).collect()
}

async fn put_get_delete<R: Runtime>() {
    let etcd = Cluster::start();
    let c = connect::<R>(&etcd).await;

    let put = c.put("a", "1").await.unwrap();
    let rev = put.header.revision;
    assert!(rev > 1);
    assert_eq!(put.prev_kv, None);

    let got = c.get("a").await.unwrap();
    assert_eq!(got.count, 1);
    let kv = got.kv().unwrap();
    assert_eq!((&kv.key[..], &kv.value[..]), (&b"a"[..], &b"1"[..]));
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version, kv.lease), (rev, rev, 1, 0));
    assert_eq!(got.header.revision, rev);

    let missing = c.get("no-such-key").await.unwrap();
    assert!(missing.kvs.is_empty());
    assert_eq!((missing.count, missing.value()), (0, None));

    let second = c.request(Put::new("a", "2").prev_kv()).await.unwrap();
    assert_eq!(second.prev_kv.as_ref().map(|kv| &kv.value[..]), Some(&b"1"[..]));
    assert_eq!(c.get("a").await.unwrap().kv().unwrap().version, 2);

    let deleted = c.request(Delete::key("a").prev_kv()).await.unwrap();
    assert_eq!(deleted.deleted, 1);
    assert_eq!(values(&deleted.prev_kvs), vec![&b"2"[..]]);
    assert_eq!(c.delete("a").await.unwrap().deleted, 0);
    assert!(c.get("a").await.unwrap().kvs.is_empty());

    // Binary keys and values travel untouched.
    let raw = Bytes::from_static(&[0, 159, 146, 150, 255]);
    c.put(raw.clone(), raw.clone()).await.unwrap();
    assert_eq!(c.get(raw.clone()).await.unwrap().value(), Some(&raw));

    // Usage errors come back before anything is sent.
    assert!(matches!(c.put("", "v").await, Err(Error::InvalidArgument(_))));
}

async fn get_ranges_and_options<R: Runtime>() {
    let etcd = Cluster::start();
    let c = connect::<R>(&etcd).await;
    let mut revs = Vec::new();
    // Values chosen so that value order differs from key order.
    for (k, v) in [("p/a", "3"), ("p/b", "5"), ("p/c", "1"), ("p/d", "4"), ("p/e", "2")] {
        revs.push(c.put(k, v).await.unwrap().header.revision);
    }
    c.put("q/x", "9").await.unwrap();
    c.put("p/b", "5").await.unwrap(); // p/b: version 2, newest mod revision

    let prefix = c.get_prefix("p/").await.unwrap();
    assert_eq!(keys(&prefix.kvs), vec![&b"p/a"[..], b"p/b", b"p/c", b"p/d", b"p/e"]);
    assert_eq!((prefix.count, prefix.more), (5, false));

    let range = c.get_range("p/b", "p/d").await.unwrap();
    assert_eq!(keys(&range.kvs), vec![&b"p/b"[..], b"p/c"]);

    let from = c.get_from_key("p/d").await.unwrap();
    assert_eq!(keys(&from.kvs), vec![&b"p/d"[..], b"p/e", b"q/x"]);

    let all = c.get_all().await.unwrap();
    assert_eq!(all.count, 6);

    let keys_only = c.request(Get::prefix("p/").keys_only()).await.unwrap();
    assert_eq!(keys_only.kvs.len(), 5);
    assert!(keys_only.kvs.iter().all(|kv| kv.value.is_empty()));

    let count_only = c.request(Get::prefix("p/").count_only()).await.unwrap();
    assert!(count_only.kvs.is_empty());
    assert_eq!(count_only.count, 5);

    let by_value = c.request(Get::prefix("p/").sort(SortTarget::Value, SortOrder::Descend)).await.unwrap();
    assert_eq!(values(&by_value.kvs), vec![&b"5"[..], b"4", b"3", b"2", b"1"]);
    let by_value_up = c.request(Get::prefix("p/").sort(SortTarget::Value, SortOrder::Ascend)).await.unwrap();
    assert_eq!(values(&by_value_up.kvs), vec![&b"1"[..], b"2", b"3", b"4", b"5"]);
    let by_key_down = c.request(Get::prefix("p/").sort(SortTarget::Key, SortOrder::Descend)).await.unwrap();
    assert_eq!(keys(&by_key_down.kvs), vec![&b"p/e"[..], b"p/d", b"p/c", b"p/b", b"p/a"]);
    let by_create = c.request(Get::prefix("p/").sort(SortTarget::Create, SortOrder::Descend)).await.unwrap();
    assert_eq!(keys(&by_create.kvs)[0], b"p/e");
    let by_mod = c.request(Get::prefix("p/").sort(SortTarget::Mod, SortOrder::Descend)).await.unwrap();
    assert_eq!(keys(&by_mod.kvs)[0], b"p/b");
    let by_version = c.request(Get::prefix("p/").sort(SortTarget::Version, SortOrder::Descend)).await.unwrap();
    assert_eq!(keys(&by_version.kvs)[0], b"p/b");

    let serializable = c.request(Get::prefix("p/").serializable()).await.unwrap();
    assert_eq!(keys(&serializable.kvs), keys(&prefix.kvs));

    let modified_since_c = c.request(Get::prefix("p/").min_mod_revision(revs[2])).await.unwrap();
    assert_eq!(keys(&modified_since_c.kvs), vec![&b"p/b"[..], b"p/c", b"p/d", b"p/e"]);
    let modified_until_c = c.request(Get::prefix("p/").max_mod_revision(revs[2])).await.unwrap();
    assert_eq!(keys(&modified_until_c.kvs), vec![&b"p/a"[..], b"p/c"]);
    let created_until_b = c.request(Get::prefix("p/").max_create_revision(revs[1])).await.unwrap();
    assert_eq!(keys(&created_until_b.kvs), vec![&b"p/a"[..], b"p/b"]);
    let created_since_d = c.request(Get::prefix("p/").min_create_revision(revs[3])).await.unwrap();
    assert_eq!(keys(&created_since_d.kvs), vec![&b"p/d"[..], b"p/e"]);
}

async fn paging_with_limit_and_more<R: Runtime>() {
    let etcd = Cluster::start();
    let c = connect::<R>(&etcd).await;
    let puts = (0..25).map(|i| c.put(format!("page/{i:02}"), format!("{i}")));
    for r in join_all(puts).await {
        r.unwrap();
    }
    let end = prefix_end(b"page/");
    let mut start = Bytes::from_static(b"page/");
    let mut seen = Vec::new();
    let mut pages = Vec::new();
    let mut revision = 0;
    loop {
        let mut get = Get::range(start.clone(), end.clone()).limit(10);
        if revision != 0 {
            get = get.revision(revision); // every page at the first page's revision
        }
        let page = c.request(get).await.unwrap();
        revision = page.header.revision;
        assert_eq!(page.count, 25 - seen.len() as i64);
        pages.push((page.kvs.len(), page.more));
        seen.extend(page.kvs.iter().map(|kv| kv.key.clone()));
        if !page.more {
            break;
        }
        let mut next = page.kvs.last().unwrap().key.to_vec();
        next.push(0);
        start = next.into();
    }
    assert_eq!(pages, vec![(10, true), (10, true), (5, false)]);
    let expected: Vec<Bytes> = (0..25).map(|i| Bytes::from(format!("page/{i:02}"))).collect();
    assert_eq!(seen, expected);
}

async fn historical_reads<R: Runtime>() {
    let etcd = Cluster::start();
    let c = connect::<R>(&etcd).await;
    let r1 = c.put("h", "v1").await.unwrap().header.revision;
    let r2 = c.put("h", "v2").await.unwrap().header.revision;
    c.delete("h").await.unwrap();
    let at = |rev| c.request(Get::key("h").revision(rev));
    assert_eq!(at(r1).await.unwrap().value().unwrap(), "v1");
    assert_eq!(at(r2).await.unwrap().value().unwrap(), "v2");
    assert!(at(0).await.unwrap().kvs.is_empty());
    assert_eq!(at(r2 + 1000).await, Err(Error::FutureRevision));
}

async fn put_with_lease_and_ignore_options<R: Runtime>() {
    let etcd = Cluster::start();
    let c = connect::<R>(&etcd).await;
    let lease = c.lease_grant(60).await.unwrap();
    assert!(lease.id != 0 && lease.ttl >= 59);
    c.request(Put::new("leased", "v").lease(lease.id)).await.unwrap();
    assert_eq!(c.get("leased").await.unwrap().kv().unwrap().lease, lease.id);
    let ttl = c.lease_time_to_live(lease.id).await.unwrap();
    assert_eq!(ttl.keys, vec![Bytes::from_static(b"leased")]);
    assert!(c.leases().await.unwrap().ids.contains(&lease.id));

    // ignore_value keeps the value while moving the key to another lease.
    let other = c.lease_grant(60).await.unwrap().id;
    c.request(Put::new("leased", "").ignore_value().lease(other)).await.unwrap();
    let kv = c.get("leased").await.unwrap().kvs.remove(0);
    assert_eq!((&kv.value[..], kv.lease), (&b"v"[..], other));
    // ignore_lease keeps the lease while changing the value.
    c.request(Put::new("leased", "w").ignore_lease()).await.unwrap();
    let kv = c.get("leased").await.unwrap().kvs.remove(0);
    assert_eq!((&kv.value[..], kv.lease), (&b"w"[..], other));

    assert_eq!(c.request(Put::new("absent", "").ignore_value()).await, Err(Error::KeyNotFound));
    assert_eq!(c.request(Put::new("absent", "x").ignore_lease()).await, Err(Error::KeyNotFound));
    assert_eq!(c.request(Put::new("leased", "x").ignore_value()).await, Err(Error::ValueProvided));
    assert_eq!(c.request(Put::new("leased", "x").lease(other).ignore_lease()).await, Err(Error::LeaseProvided));
    assert_eq!(c.request(Put::new("k", "v").lease(0x7777)).await, Err(Error::LeaseNotFound));
    assert_eq!(c.request(LeaseGrant::new(60).id(other)).await, Err(Error::LeaseExists));

    c.lease_revoke(other).await.unwrap();
    assert!(c.get("leased").await.unwrap().kvs.is_empty(), "revoking the lease deletes its key");
    assert_eq!(c.lease_time_to_live(other).await.unwrap().ttl, -1);
}

async fn delete_ranges<R: Runtime>() {
    let etcd = Cluster::start();
    let c = connect::<R>(&etcd).await;
    for k in ["d/a", "d/b", "d/c", "e/a", "e/b", "f/a"] {
        c.put(k, k).await.unwrap();
    }
    let r = c.delete_range("d/b", "e/b").await.unwrap();
    assert_eq!(r.deleted, 3); // d/b d/c e/a
    let r = c.request(Delete::prefix("d/").prev_kv()).await.unwrap();
    assert_eq!((r.deleted, keys(&r.prev_kvs)), (1, vec![&b"d/a"[..]]));
    let r = c.request(Delete::from_key("e/")).await.unwrap();
    assert_eq!(r.deleted, 2); // e/b f/a
    assert_eq!(c.get_all().await.unwrap().count, 0);
    assert!(matches!(c.request(Delete::key("")).await, Err(Error::InvalidArgument(_))));
}

async fn transactions<R: Runtime>() {
    let etcd = Cluster::start();
    let c = connect::<R>(&etcd).await;
    let created = c.put("t", "old").await.unwrap().header.revision;
    let lease = c.lease_grant(60).await.unwrap().id;
    c.request(Put::new("leased", "x").lease(lease)).await.unwrap();

    let txn = Txn::new()
        .when([Compare::value("t").eq("old")])
        .and_then([TxnOp::from(Put::new("t", "new").prev_kv()), TxnOp::from(Get::key("t"))])
        .or_else([Get::key("nothing")]);
    let r = c.txn(txn).await.unwrap();
    assert!(r.succeeded);
    match &r.responses[..] {
        [TxnOpResponse::Put(p), TxnOpResponse::Get(g)] => {
            assert_eq!(p.prev_kv.as_ref().unwrap().value, "old");
            assert_eq!(g.value().unwrap(), "new");
        }
        other => panic!("unexpected responses {other:?}"),
    }

    // Failure branch.
    let r = c
        .transaction(
            [Compare::value("t").eq("old")],
            [TxnOp::from(Delete::key("t"))],
            [TxnOp::from(Get::key("t")), TxnOp::from(Delete::key("t").prev_kv())],
        )
        .await
        .unwrap();
    assert!(!r.succeeded);
    match &r.responses[..] {
        [TxnOpResponse::Get(g), TxnOpResponse::Delete(d)] => {
            assert_eq!(g.value().unwrap(), "new");
            assert_eq!(d.deleted, 1);
            assert_eq!(d.prev_kvs[0].value, "new");
        }
        other => panic!("unexpected responses {other:?}"),
    }

    // Every target with every operator, against known values.
    c.put("t", "m").await.unwrap(); // version 1 again, created anew
    let now = c.get("t").await.unwrap().kvs.remove(0);
    let holds = |cmp: Compare| {
        let c = c.clone();
        async move { c.txn(Txn::new().when([cmp])).await.unwrap().succeeded }
    };
    assert!(holds(Compare::value("t").eq("m")).await);
    assert!(holds(Compare::value("t").ne("z")).await);
    assert!(holds(Compare::value("t").lt("n")).await);
    assert!(holds(Compare::value("t").gt("l")).await);
    assert!(!holds(Compare::value("t").gt("m")).await);
    assert!(holds(Compare::version("t").eq(1)).await);
    assert!(holds(Compare::version("t").gt(0)).await);
    assert!(holds(Compare::version("missing").eq(0)).await);
    assert!(holds(Compare::version("t").lt(2)).await);
    assert!(holds(Compare::version("t").ne(5)).await);
    assert!(holds(Compare::create_revision("t").eq(now.create_revision)).await);
    assert!(holds(Compare::create_revision("t").gt(created)).await);
    assert!(holds(Compare::mod_revision("t").eq(now.mod_revision)).await);
    assert!(holds(Compare::mod_revision("t").lt(now.mod_revision + 1)).await);
    assert!(!holds(Compare::mod_revision("t").ne(now.mod_revision)).await);
    assert!(holds(Compare::lease("leased").eq(lease)).await);
    assert!(holds(Compare::lease("t").eq(0)).await);
    assert!(holds(Compare::lease("leased").ne(0)).await);

    // Server-side refusals are typed.
    let dup = Txn::new().and_then([Put::new("d", "1"), Put::new("d", "2")]);
    assert_eq!(c.txn(dup).await, Err(Error::DuplicateKey));
    let many = Txn::new().and_then((0..129).map(|i| Put::new(format!("many/{i}"), "v")));
    assert_eq!(c.txn(many).await, Err(Error::TooManyOps));
}

async fn nested_and_range_transactions<R: Runtime>() {
    let etcd = Cluster::start();
    let c = connect::<R>(&etcd).await;
    for k in ["r/a", "r/b", "r/c"] {
        c.put(k, "on").await.unwrap();
    }
    let rev = c.get("r/a").await.unwrap().header.revision;

    // Range compares: hold only if they hold for every key in the range.
    let all_on = Compare::value("r/").eq("on").with_prefix();
    assert!(c.txn(Txn::new().when([all_on.clone()])).await.unwrap().succeeded);
    let some_before = Compare::mod_revision("r/a").lt(rev).with_range("r/d");
    assert!(!c.txn(Txn::new().when([some_before])).await.unwrap().succeeded);
    c.put("r/b", "off").await.unwrap();
    assert!(!c.txn(Txn::new().when([all_on])).await.unwrap().succeeded);

    // A nested transaction inside each branch, answered in kind.
    let inner_ok = Txn::new().when([Compare::value("r/b").eq("off")]).and_then([Put::new("r/b", "fixed")]);
    let inner_fail = Txn::new().when([Compare::version("r/zz").gt(0)]).or_else([Get::prefix("r/")]);
    let outer =
        Txn::new().when([Compare::version("r/a").gt(0)]).and_then([TxnOp::Txn(inner_ok), TxnOp::Txn(inner_fail)]);
    let r = c.txn(outer).await.unwrap();
    assert!(r.succeeded);
    match &r.responses[..] {
        [TxnOpResponse::Txn(a), TxnOpResponse::Txn(b)] => {
            assert!(a.succeeded);
            assert!(matches!(&a.responses[..], [TxnOpResponse::Put(_)]));
            assert!(!b.succeeded);
            match &b.responses[..] {
                [TxnOpResponse::Get(g)] => assert_eq!(g.count, 3),
                other => panic!("unexpected inner responses {other:?}"),
            }
        }
        other => panic!("unexpected responses {other:?}"),
    }
    assert_eq!(c.get("r/b").await.unwrap().value().unwrap(), "fixed");
}

async fn replace_is_compare_and_swap<R: Runtime>() {
    let etcd = Cluster::start();
    let c = connect::<R>(&etcd).await;
    c.put("cas", "1").await.unwrap();
    assert!(c.replace("cas", "1", "2").await.unwrap());
    assert!(!c.replace("cas", "1", "3").await.unwrap());
    assert_eq!(c.get("cas").await.unwrap().value().unwrap(), "2");
    assert!(!c.replace("absent", "", "x").await.unwrap());
}

async fn compaction<R: Runtime>() {
    let etcd = Cluster::start();
    let c = connect::<R>(&etcd).await;
    let mut revs = Vec::new();
    for i in 1..=5 {
        revs.push(c.put("c", format!("v{i}")).await.unwrap().header.revision);
    }
    c.compact(revs[2]).await.unwrap();
    let old = c.request(Get::key("c").revision(revs[1])).await;
    assert_eq!(old, Err(Error::Compacted { compact_revision: None }));
    let kept = c.request(Get::key("c").revision(revs[2])).await.unwrap();
    assert_eq!(kept.value().unwrap(), "v3");
    assert_eq!(c.compact(revs[1]).await, Err(Error::Compacted { compact_revision: None }));
    c.request(Compact::new(revs[3]).physical()).await.unwrap();
    assert!(matches!(c.request(Get::key("c").revision(revs[2])).await, Err(Error::Compacted { .. })));
    assert_eq!(c.get("c").await.unwrap().value().unwrap(), "v5");
    assert_eq!(c.compact(revs[4] + 100).await, Err(Error::FutureRevision));
}

async fn big_values<R: Runtime>() {
    let etcd = ClusterBuilder::new().arg("--max-request-bytes=10485760").start();
    let c = connect::<R>(&etcd).await;
    let big: Bytes = (0..(4 << 20) + 12_345).map(|i| (i % 251) as u8).collect::<Vec<u8>>().into();
    c.put("big", big.clone()).await.unwrap();
    c.put("big2", big.clone()).await.unwrap();
    let got = c.get("big").await.unwrap();
    assert_eq!(got.value().unwrap().len(), big.len());
    assert!(got.value().unwrap() == &big);
    // Two big values in one answer: about 8.4 MiB in one message.
    let both = c.get_prefix("big").await.unwrap();
    assert_eq!(both.kvs.len(), 2);
    assert!(both.kvs.iter().all(|kv| kv.value == big));

    // A client with a small decoding limit refuses the answer with a typed error and stays usable.
    let small =
        Client::<R>::builder().endpoint(etcd.endpoint(0)).max_decoding_message_size(1 << 20).connect().await.unwrap();
    match small.get("big").await {
        Err(Error::MessageTooLarge { len, limit }) => assert!(len > big.len() && limit == 1 << 20),
        other => panic!("expected MessageTooLarge, got {other:?}"),
    }
    assert_eq!(small.get("nothing").await.unwrap().count, 0);
    // And a small encoding limit refuses before sending.
    let tight =
        Client::<R>::builder().endpoint(etcd.endpoint(0)).max_encoding_message_size(1024).connect().await.unwrap();
    assert!(matches!(tight.put("x", vec![0u8; 2048]).await, Err(Error::MessageTooLarge { .. })));
}

async fn request_too_large_is_typed<R: Runtime>() {
    let etcd = Cluster::start(); // default --max-request-bytes: 1.5 MiB
    let c = connect::<R>(&etcd).await;
    let err = c.put("too-big", vec![7u8; 3 << 20]).await.unwrap_err();
    assert_eq!(err, Error::RequestTooLarge);
    c.put("fine", vec![7u8; 1 << 20]).await.unwrap();
}

async fn hundreds_of_concurrent_calls<R: Runtime>() {
    let etcd = Cluster::start();
    let c = connect::<R>(&etcd).await;
    let puts = (0..500).map(|i| c.put(format!("con/{i:03}"), format!("{i}")));
    let revs: Vec<i64> = join_all(puts).await.into_iter().map(|r| r.unwrap().header.revision).collect();
    let mut unique = revs.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 500, "every put got its own revision");
    let gets = (0..500).map(|i| c.get(format!("con/{i:03}")));
    for (i, r) in join_all(gets).await.into_iter().enumerate() {
        assert_eq!(r.unwrap().value().unwrap(), &Bytes::from(format!("{i}")));
    }
    // Clones share the connection and work from many tasks at once.
    let clones = (0..200).map(|i| {
        let c = c.clone();
        async move { c.get(format!("con/{i:03}")).await.unwrap().count }
    });
    assert!(join_all(clones).await.into_iter().all(|n| n == 1));
    assert_eq!(c.request(Get::prefix("con/").count_only()).await.unwrap().count, 500);
}

async fn server_killed_mid_call<R: Runtime>() {
    let etcd = Arc::new(Mutex::new(Cluster::start()));
    let endpoint = etcd.lock().unwrap().endpoint(0);
    let c =
        Client::<R>::builder().endpoint(&endpoint).request_timeout(Duration::from_secs(10)).connect().await.unwrap();

    // A killer thread waits for the word, then kills etcd while writers are busy.
    let (go, wait) = mpsc::channel::<()>();
    let killer = {
        let etcd = etcd.clone();
        std::thread::spawn(move || {
            wait.recv().unwrap();
            etcd.lock().unwrap().kill(0);
        })
    };
    let mut acknowledged = Vec::new();
    let mut errors = Vec::new();
    let mut told = false;
    let mut batch = 0;
    while errors.is_empty() {
        let puts = (0..64).map(|i| {
            let key = format!("kill/{batch}/{i}");
            let put = c.put(key.clone(), key.clone());
            async move { (key, put.await) }
        });
        for (key, r) in join_all(puts).await {
            match r {
                Ok(_) => acknowledged.push(key),
                Err(e) => errors.push(e),
            }
        }
        if !told {
            go.send(()).unwrap();
            told = true;
        }
        batch += 1;
    }
    killer.join().unwrap();
    for e in &errors {
        assert!(e.is_transient(), "a dead server gives a transport error, got {e:?}");
    }
    // With the server gone, a call fails clearly instead of hanging.
    let down = c.get("x").await.unwrap_err();
    assert!(matches!(down, Error::ConnectFailed { .. } | Error::ConnectionLost { .. }), "got {down:?}");

    // After a restart the same client works again, and nothing acknowledged was lost.
    etcd.lock().unwrap().restart(0);
    let gets = acknowledged.iter().map(|k| c.get(k.clone()));
    for (k, r) in acknowledged.iter().zip(join_all(gets).await) {
        assert_eq!(r.unwrap().value().map(|v| &v[..]), Some(k.as_bytes()), "acknowledged put of {k} lost");
    }
    c.put("after", "restart").await.unwrap();
}

async fn connection_refused_and_bad_endpoints<R: Runtime>() {
    let port = unused_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    match Client::<R>::connect(endpoint.as_str()).await {
        Err(Error::ConnectFailed { endpoint: e, reason }) => {
            assert_eq!(e, endpoint);
            assert!(reason.to_lowercase().contains("refused"), "{reason}");
        }
        other => panic!("expected ConnectFailed, got {other:?}"),
    }
    // A lazily built client reports the same on its first call.
    let lazy = Client::<R>::builder().endpoint(&endpoint).build().unwrap();
    assert!(matches!(lazy.get("k").await, Err(Error::ConnectFailed { .. })));
    assert!(matches!(Client::<R>::connect("http://127.0.0.1:notaport").await, Err(Error::InvalidArgument(_))));
    assert!(matches!(Client::<R>::connect("ftp://127.0.0.1:2379").await, Err(Error::InvalidArgument(_))));
    // Two endpoints, the first refusing: the client uses the second.
    let etcd = Cluster::start();
    let c = Client::<R>::connect([endpoint.clone(), etcd.endpoint(0)]).await.unwrap();
    c.put("k", "v").await.unwrap();
}

async fn wrong_endpoint<R: Runtime>() {
    // A plain HTTP/1.1 server where etcd was expected: it answers the HTTP/2
    // preface with a 400 and closes, as web servers do.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf);
        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    });
    let c = Client::<R>::builder()
        .endpoint(format!("127.0.0.1:{port}"))
        .request_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let err = c.get("k").await.unwrap_err();
    assert!(
        matches!(err, Error::ConnectionLost { .. } | Error::Malformed { .. }),
        "a non-gRPC server gives a transport or protocol error, got {err:?}"
    );
    server.join().unwrap();
}

async fn no_leader_and_deadlines<R: Runtime>() {
    let mut etcd = Cluster::start_members(3);
    // Leave member 0 alone: without a quorum it has no leader.
    etcd.kill(1);
    etcd.kill(2);
    let endpoint = etcd.endpoint(0);
    let strict = Client::<R>::builder().endpoint(&endpoint).require_leader(true).connect().await.unwrap();
    let started = std::time::Instant::now();
    let err = loop {
        // The member notices the missing leader after an election timeout.
        match strict.put("k", "v").timeout(Duration::from_secs(3)).await {
            Err(Error::NoLeader) => break Error::NoLeader,
            // Until the member notices, a write may be forwarded to the dead leader and time out.
            Err(Error::DeadlineExceeded | Error::RequestTimedOut { .. } | Error::LeaderChanged)
                if started.elapsed() < Duration::from_secs(30) =>
            {
                continue
            }
            other => break other.map(drop).unwrap_err(),
        }
    };
    assert_eq!(err, Error::NoLeader);
    // Without require_leader the write waits; the client's own deadline ends it.
    let patient = Client::<R>::connect(endpoint.as_str()).await.unwrap();
    let err = patient.put("k", "v").timeout(Duration::from_millis(300)).await.unwrap_err();
    assert_eq!(err, Error::DeadlineExceeded);
    // A serializable read is still served by the lone member.
    assert_eq!(patient.request(Get::key("k").serializable()).await.unwrap().count, 0);
}

async fn close_ends_the_client<R: Runtime>() {
    let etcd = Cluster::start();
    let c = connect::<R>(&etcd).await;
    let other = c.clone();
    c.put("k", "v").await.unwrap();
    c.close().await;
    assert!(c.is_closed() && other.is_closed());
    assert_eq!(other.get("k").await, Err(Error::Closed));
    c.close().await; // twice is fine
}

//! A tour of aetcd on tokio: `cargo run -p aetcd-tokio --example demo -- [ENDPOINT]`.
//! (`scripts/demo.sh` starts a throwaway etcd and runs this against it.)

use std::time::Duration;

use aetcd_tokio::kv::{Compare, Get, Put, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse};
use aetcd_tokio::{Client, Error};
use futures_util::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let endpoint = std::env::args().nth(1).unwrap_or_else(|| "localhost:2379".to_owned());
    // Connecting checks the endpoint at once: a wrong one fails here, clearly.
    let client = Client::builder().endpoint(&endpoint).request_timeout(Duration::from_secs(5)).connect().await?;
    println!("connected to {endpoint}");

    // put / get / delete
    let rev = client.put("demo/greeting", "hello").await?.header.revision;
    let got = client.get("demo/greeting").await?;
    println!("get demo/greeting -> {:?} (written at revision {rev})", got.value());
    println!(
        "get demo/missing  -> {} keys (a missing key is an empty result)",
        client.get("demo/missing").await?.count
    );

    // prefixes and options
    for (name, score) in [("ann", "7"), ("bob", "9"), ("cid", "3")] {
        client.put(format!("demo/users/{name}"), score).await?;
    }
    let by_score =
        client.request(Get::prefix("demo/users/").sort(SortTarget::Value, SortOrder::Descend).limit(2)).await?;
    let top: Vec<_> =
        by_score.kvs.iter().map(|kv| (kv.key_str().unwrap_or("?"), kv.value_str().unwrap_or("?"))).collect();
    println!("top 2 users by score: {top:?} (more: {})", by_score.more);

    // history
    client.put("demo/greeting", "bonjour").await?;
    let then = client.request(Get::key("demo/greeting").revision(rev)).await?;
    println!("demo/greeting at revision {rev}: {:?}", then.value());

    // transactions
    let swapped = client.replace("demo/greeting", "bonjour", "hallo").await?;
    println!("replace bonjour -> hallo: {swapped}");
    let txn = Txn::new()
        .when([Compare::version("demo/counter").eq(0)])
        .and_then([TxnOp::from(Put::new("demo/counter", "1")), TxnOp::from(Get::key("demo/counter"))])
        .or_else([Get::key("demo/counter")]);
    let r = client.txn(txn).await?;
    if let Some(TxnOpResponse::Get(g)) = r.responses.last() {
        println!("counter created by this txn: {}, value {:?}", r.succeeded, g.value());
    }

    // leases
    let lease = client.lease_grant(10).await?;
    client.request(Put::new("demo/ephemeral", "gone in 10 s").lease(lease.id)).await?;
    println!("lease {:x} holds {:?}", lease.id, client.lease_time_to_live(lease.id).await?.keys);
    client.lease_revoke(lease.id).await?;
    println!("after revoke: {} keys", client.get("demo/ephemeral").await?.count);

    // watches: a Stream of events until cancel
    let mut watcher = client.watch_prefix("demo/watched/").await?;
    client.put("demo/watched/a", "1").await?;
    client.delete("demo/watched/a").await?;
    for _ in 0..2 {
        if let Some(event) = watcher.next().await {
            let event = event?;
            println!("watch: {:?} {:?} at revision {}", event.kind, event.kv.key_str(), event.revision());
        }
    }
    watcher.cancel().await?;

    // locks: acquire/release, or a guard released on drop; the lease is kept alive meanwhile
    let mut lock = client.lock("demo/locks/report").ttl(10);
    lock.acquire_timeout(Duration::from_secs(5)).await?;
    println!("lock held with key {:?}, fencing revision {:?}", lock.key(), lock.revision());
    let busy = client.lock("demo/locks/report").try_acquire().await?;
    println!("a second locker gets it at once? {busy}");
    lock.release().await?;
    {
        let guard = client.lock("demo/locks/report").guard().await?;
        println!("guard holds the lock at revision {}", guard.revision());
    } // released here

    // typed errors
    match client.request(Get::key("demo/greeting").revision(rev + 1_000_000)).await {
        Err(Error::FutureRevision) => println!("reading the future: Error::FutureRevision"),
        other => println!("unexpected: {other:?}"),
    }

    let deleted = client.delete_prefix("demo/").await?.deleted;
    println!("cleaned up {deleted} keys");
    client.close().await;
    Ok(())
}

//! Key-value operations on [`Client`]: the short forms of the request types in
//! [`aetcd_core::rpc::kv`], which are re-exported here for every option.

use std::future::Future;

use aetcd_core::Error;
use bytes::Bytes;

pub use aetcd_core::rpc::kv::{
    prefix_end, Compact, CompactResponse, Compare, CompareOp, Delete, DeleteResponse, Get, GetResponse, KeyValue,
    NumberCompare, Put, PutResponse, ResponseHeader, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse, TxnResponse,
    ValueCompare,
};

use crate::client::{Client, ResponseFuture};

impl<R> Client<R> {
    /// Reads one key. A missing key gives an empty response, not an error.
    ///
    /// ```no_run
    /// # async fn demo<R>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// match client.get("config").await?.kv() {
    ///     Some(kv) => println!("{:?} at revision {}", kv.value, kv.mod_revision),
    ///     None => println!("no such key"),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn get(&self, key: impl Into<Bytes>) -> ResponseFuture<Get> {
        self.request(Get::key(key))
    }

    /// Reads every key that starts with `prefix`, in key order.
    ///
    /// ```no_run
    /// # async fn demo<R>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// for kv in client.get_prefix("users/").await?.kvs {
    ///     println!("{:?}", kv.key);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn get_prefix(&self, prefix: impl Into<Bytes>) -> ResponseFuture<Get> {
        self.request(Get::prefix(prefix))
    }

    /// Reads the keys in `[start, end)`.
    ///
    /// ```no_run
    /// # async fn demo<R>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let a_to_m = client.get_range("a", "n").await?;
    /// # Ok(()) }
    /// ```
    pub fn get_range(&self, start: impl Into<Bytes>, end: impl Into<Bytes>) -> ResponseFuture<Get> {
        self.request(Get::range(start, end))
    }

    /// Reads every key greater than or equal to `key`.
    ///
    /// ```no_run
    /// # async fn demo<R>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let rest = client.get_from_key("m").await?;
    /// # Ok(()) }
    /// ```
    pub fn get_from_key(&self, key: impl Into<Bytes>) -> ResponseFuture<Get> {
        self.request(Get::from_key(key))
    }

    /// Reads every key.
    ///
    /// ```no_run
    /// # async fn demo<R>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let everything = client.get_all().await?;
    /// println!("{} keys", everything.count);
    /// # Ok(()) }
    /// ```
    pub fn get_all(&self) -> ResponseFuture<Get> {
        self.request(Get::all())
    }

    /// Sets `key` to `value`.
    ///
    /// ```no_run
    /// # async fn demo<R>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let revision = client.put("greeting", "hello").await?.header.revision;
    /// # Ok(()) }
    /// ```
    pub fn put(&self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> ResponseFuture<Put> {
        self.request(Put::new(key, value))
    }

    /// Deletes one key.
    ///
    /// ```no_run
    /// # async fn demo<R>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let gone = client.delete("greeting").await?.deleted == 1;
    /// # Ok(()) }
    /// ```
    pub fn delete(&self, key: impl Into<Bytes>) -> ResponseFuture<Delete> {
        self.request(Delete::key(key))
    }

    /// Deletes every key that starts with `prefix`.
    ///
    /// ```no_run
    /// # async fn demo<R>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// client.delete_prefix("tmp/").await?;
    /// # Ok(()) }
    /// ```
    pub fn delete_prefix(&self, prefix: impl Into<Bytes>) -> ResponseFuture<Delete> {
        self.request(Delete::prefix(prefix))
    }

    /// Deletes the keys in `[start, end)`.
    ///
    /// ```no_run
    /// # async fn demo<R>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// client.delete_range("a", "n").await?;
    /// # Ok(()) }
    /// ```
    pub fn delete_range(&self, start: impl Into<Bytes>, end: impl Into<Bytes>) -> ResponseFuture<Delete> {
        self.request(Delete::range(start, end))
    }

    /// Runs a transaction.
    ///
    /// ```no_run
    /// # async fn demo<R>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// use aetcd_h2::kv::{Compare, Get, Put, Txn};
    /// let t = Txn::new()
    ///     .when([Compare::version("config").eq(0)])
    ///     .and_then([Put::new("config", "initial")])
    ///     .or_else([Get::key("config")]);
    /// let created = client.txn(t).await?.succeeded;
    /// # Ok(()) }
    /// ```
    pub fn txn(&self, txn: Txn) -> ResponseFuture<Txn> {
        self.request(txn)
    }

    /// Runs a transaction given as its three parts: if every compare holds, the
    /// `success` operations run, otherwise the `failure` operations.
    ///
    /// ```no_run
    /// # async fn demo<R>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// use aetcd_h2::kv::{Compare, Delete, Get, TxnOp};
    /// let r = client
    ///     .transaction(
    ///         [Compare::value("state").eq("done"), Compare::version("lock").gt(0)],
    ///         [TxnOp::from(Delete::key("lock"))],
    ///         [TxnOp::from(Get::key("state"))],
    ///     )
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn transaction(
        &self,
        compare: impl IntoIterator<Item = Compare>,
        success: impl IntoIterator<Item = TxnOp>,
        failure: impl IntoIterator<Item = TxnOp>,
    ) -> ResponseFuture<Txn> {
        self.request(Txn::new().when(compare).and_then(success).or_else(failure))
    }

    /// Compare-and-swap: sets `key` to `new` only if its value is `old`.
    /// Returns whether it did.
    ///
    /// ```no_run
    /// # async fn demo<R>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// if !client.replace("config", "v1", "v2").await? {
    ///     println!("someone else changed it");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn replace(
        &self,
        key: impl Into<Bytes>,
        old: impl Into<Bytes>,
        new: impl Into<Bytes>,
    ) -> impl Future<Output = Result<bool, Error>> + Send + 'static {
        let key = key.into();
        let txn = Txn::new().when([Compare::value(key.clone()).eq(old)]).and_then([Put::new(key, new)]);
        let answer = self.txn(txn);
        async move { Ok(answer.await?.succeeded) }
    }

    /// Discards the key-value history before `revision`.
    ///
    /// ```no_run
    /// # async fn demo<R>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let now = client.get("any").await?.header.revision;
    /// client.compact(now).await?;
    /// # Ok(()) }
    /// ```
    pub fn compact(&self, revision: i64) -> ResponseFuture<Compact> {
        self.request(Compact::new(revision))
    }
}

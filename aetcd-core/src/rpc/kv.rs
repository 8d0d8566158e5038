//! The KV service: get, put, delete, transactions and compaction, with every option.
//!
//! Keys and values are [`Bytes`]: what the caller passes is moved into the request
//! and what the server sends is sliced out of the received frame, never copied.

use bytes::Bytes;

use super::{decode_pb, Method, Unary, UnaryRequest};
use crate::error::Error;
use crate::pb::{etcdserverpb as pb, mvccpb};

/// The header of every etcd response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResponseHeader {
    /// The cluster's id.
    pub cluster_id: u64,
    /// The id of the member that answered.
    pub member_id: u64,
    /// The store's revision when the request was applied.
    pub revision: i64,
    /// The member's raft term.
    pub raft_term: u64,
}

impl From<Option<pb::ResponseHeader>> for ResponseHeader {
    fn from(h: Option<pb::ResponseHeader>) -> Self {
        let h = h.unwrap_or_default();
        ResponseHeader {
            cluster_id: h.cluster_id,
            member_id: h.member_id,
            revision: h.revision,
            raft_term: h.raft_term,
        }
    }
}

/// A key and its value, with the revisions that describe its history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyValue {
    /// The key.
    pub key: Bytes,
    /// The value (empty for `keys_only` reads).
    pub value: Bytes,
    /// Revision of the key's last creation.
    pub create_revision: i64,
    /// Revision of the key's last modification.
    pub mod_revision: i64,
    /// Number of modifications since creation (a deletion resets it to 0).
    pub version: i64,
    /// The lease attached to the key, 0 for none.
    pub lease: i64,
}

impl KeyValue {
    /// The key as UTF-8, if it is.
    pub fn key_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.key).ok()
    }

    /// The value as UTF-8, if it is.
    pub fn value_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.value).ok()
    }
}

impl From<mvccpb::KeyValue> for KeyValue {
    fn from(kv: mvccpb::KeyValue) -> Self {
        KeyValue {
            key: kv.key,
            value: kv.value,
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            lease: kv.lease,
        }
    }
}

/// The smallest key after every key that starts with `prefix`, as etcd expects in
/// `range_end`: the prefix with its last byte below 0xff incremented and the rest
/// dropped; `"\0"` (to the end of the keyspace) when there is no such byte.
///
/// ```
/// use aetcd_core::rpc::kv::prefix_end;
/// assert_eq!(&prefix_end(b"abc")[..], b"abd");
/// assert_eq!(&prefix_end(b"a\xff")[..], b"b");
/// assert_eq!(&prefix_end(b"\xff\xff")[..], b"\0");
/// assert_eq!(&prefix_end(b"")[..], b"\0");
/// ```
pub fn prefix_end(prefix: &[u8]) -> Bytes {
    match prefix.iter().rposition(|&b| b != 0xff) {
        Some(i) => {
            let mut end = prefix[..=i].to_vec();
            end[i] += 1;
            Bytes::from(end)
        }
        None => Bytes::from_static(b"\0"),
    }
}

/// Which keys a get, delete or compare covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyRange {
    Key(Bytes),
    Prefix(Bytes),
    Range(Bytes, Bytes),
    FromKey(Bytes),
    All,
}

impl KeyRange {
    pub(crate) fn into_wire(self) -> (Bytes, Bytes) {
        match self {
            KeyRange::Key(k) => (k, Bytes::new()),
            KeyRange::Prefix(p) if p.is_empty() => (Bytes::from_static(b"\0"), Bytes::from_static(b"\0")),
            KeyRange::Prefix(p) => {
                let end = prefix_end(&p);
                (p, end)
            }
            KeyRange::Range(s, e) => (s, e),
            KeyRange::FromKey(k) if k.is_empty() => (Bytes::from_static(b"\0"), Bytes::from_static(b"\0")),
            KeyRange::FromKey(k) => (k, Bytes::from_static(b"\0")),
            KeyRange::All => (Bytes::from_static(b"\0"), Bytes::from_static(b"\0")),
        }
    }
}

/// How to order the results of a get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SortOrder {
    /// Server order (ascending by key).
    #[default]
    None,
    /// Ascending.
    Ascend,
    /// Descending.
    Descend,
}

/// What to sort the results of a get by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SortTarget {
    /// The key.
    #[default]
    Key,
    /// The version.
    Version,
    /// The creation revision.
    Create,
    /// The modification revision.
    Mod,
    /// The value.
    Value,
}

/// A read of one key, a prefix, a range, everything from a key, or every key.
///
/// ```
/// use aetcd_core::rpc::kv::{Get, SortOrder, SortTarget};
/// let page = Get::prefix("users/").limit(100).sort(SortTarget::Mod, SortOrder::Descend).serializable();
/// let old = Get::key("config").revision(42);
/// let n = Get::all().count_only();
/// # let _ = (page, old, n);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a request does nothing until it is sent"]
pub struct Get {
    range: KeyRange,
    req: pb::RangeRequest,
}

impl Get {
    fn new(range: KeyRange) -> Get {
        Get { range, req: pb::RangeRequest::default() }
    }

    /// Reads one key. A missing key gives an empty result, not an error.
    pub fn key(key: impl Into<Bytes>) -> Get {
        Get::new(KeyRange::Key(key.into()))
    }

    /// Reads every key starting with `prefix` (every key if it is empty).
    pub fn prefix(prefix: impl Into<Bytes>) -> Get {
        Get::new(KeyRange::Prefix(prefix.into()))
    }

    /// Reads the keys in `[start, end)`.
    pub fn range(start: impl Into<Bytes>, end: impl Into<Bytes>) -> Get {
        Get::new(KeyRange::Range(start.into(), end.into()))
    }

    /// Reads every key greater than or equal to `key`.
    pub fn from_key(key: impl Into<Bytes>) -> Get {
        Get::new(KeyRange::FromKey(key.into()))
    }

    /// Reads every key.
    pub fn all() -> Get {
        Get::new(KeyRange::All)
    }

    /// Returns at most `n` keys (0: no limit); the response's `more` says if there were more.
    pub fn limit(mut self, n: i64) -> Self {
        self.req.limit = n;
        self
    }

    /// Reads the store as it was at `revision` (0: the current revision).
    pub fn revision(mut self, revision: i64) -> Self {
        self.req.revision = revision;
        self
    }

    /// Sorts the results. Ascending by key is the server's natural order and is
    /// sent as "no sort", so the server need not load the whole range.
    pub fn sort(mut self, target: SortTarget, order: SortOrder) -> Self {
        let (target, order) = match (target, order) {
            (SortTarget::Key, SortOrder::Ascend) => (SortTarget::Key, SortOrder::None),
            other => other,
        };
        self.req.sort_target = match target {
            SortTarget::Key => pb::range_request::SortTarget::Key,
            SortTarget::Version => pb::range_request::SortTarget::Version,
            SortTarget::Create => pb::range_request::SortTarget::Create,
            SortTarget::Mod => pb::range_request::SortTarget::Mod,
            SortTarget::Value => pb::range_request::SortTarget::Value,
        } as i32;
        self.req.sort_order = match order {
            SortOrder::None => pb::range_request::SortOrder::None,
            SortOrder::Ascend => pb::range_request::SortOrder::Ascend,
            SortOrder::Descend => pb::range_request::SortOrder::Descend,
        } as i32;
        self
    }

    /// Serves the read from the member that receives it, without a quorum round:
    /// faster, possibly stale.
    pub fn serializable(mut self) -> Self {
        self.req.serializable = true;
        self
    }

    /// Returns keys without values.
    pub fn keys_only(mut self) -> Self {
        self.req.keys_only = true;
        self
    }

    /// Returns only the count of matching keys.
    pub fn count_only(mut self) -> Self {
        self.req.count_only = true;
        self
    }

    /// Only keys modified at or after `revision`.
    pub fn min_mod_revision(mut self, revision: i64) -> Self {
        self.req.min_mod_revision = revision;
        self
    }

    /// Only keys modified at or before `revision`.
    pub fn max_mod_revision(mut self, revision: i64) -> Self {
        self.req.max_mod_revision = revision;
        self
    }

    /// Only keys created at or after `revision`.
    pub fn min_create_revision(mut self, revision: i64) -> Self {
        self.req.min_create_revision = revision;
        self
    }

    /// Only keys created at or before `revision`.
    pub fn max_create_revision(mut self, revision: i64) -> Self {
        self.req.max_create_revision = revision;
        self
    }

    fn to_pb(&self) -> pb::RangeRequest {
        let (key, range_end) = self.range.clone().into_wire();
        pb::RangeRequest { key, range_end, ..self.req.clone() }
    }
}

/// The answer to a [`Get`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GetResponse {
    /// The response header (its revision is the one the read saw).
    pub header: ResponseHeader,
    /// The keys found, in the requested order.
    pub kvs: Vec<KeyValue>,
    /// True when `limit` cut the result short.
    pub more: bool,
    /// How many keys matched in total (regardless of `limit`).
    pub count: i64,
}

impl GetResponse {
    /// The first key found, if any (for single-key reads: the key).
    pub fn kv(&self) -> Option<&KeyValue> {
        self.kvs.first()
    }

    /// The first key's value, if any.
    pub fn value(&self) -> Option<&Bytes> {
        self.kvs.first().map(|kv| &kv.value)
    }
}

impl From<pb::RangeResponse> for GetResponse {
    fn from(r: pb::RangeResponse) -> Self {
        GetResponse {
            header: r.header.into(),
            kvs: r.kvs.into_iter().map(KeyValue::from).collect(),
            more: r.more,
            count: r.count,
        }
    }
}

impl Unary for Get {
    type Response = GetResponse;

    fn encode(&self) -> Result<UnaryRequest, Error> {
        Ok(UnaryRequest::new(Method::Range, &self.to_pb()))
    }

    fn decode(message: Bytes) -> Result<GetResponse, Error> {
        decode_pb::<pb::RangeResponse>(message).map(GetResponse::from)
    }
}

/// A write of one key.
///
/// ```
/// use aetcd_core::rpc::kv::Put;
/// let p = Put::new("k", "v").lease(0x1234).prev_kv();
/// let touch = Put::new("k", "").ignore_value(); // keeps the value, bumps the revision
/// # let _ = (p, touch);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a request does nothing until it is sent"]
pub struct Put {
    req: pb::PutRequest,
}

impl Put {
    /// Sets `key` to `value`.
    pub fn new(key: impl Into<Bytes>, value: impl Into<Bytes>) -> Put {
        Put { req: pb::PutRequest { key: key.into(), value: value.into(), ..Default::default() } }
    }

    /// Attaches the key to a lease: the key is deleted when the lease ends.
    pub fn lease(mut self, lease: i64) -> Self {
        self.req.lease = lease;
        self
    }

    /// Returns the previous key-value in the response.
    pub fn prev_kv(mut self) -> Self {
        self.req.prev_kv = true;
        self
    }

    /// Keeps the current value (the given value must be empty); fails with
    /// [`Error::KeyNotFound`] if the key does not exist.
    pub fn ignore_value(mut self) -> Self {
        self.req.ignore_value = true;
        self
    }

    /// Keeps the current lease (no lease may be given); fails with
    /// [`Error::KeyNotFound`] if the key does not exist.
    pub fn ignore_lease(mut self) -> Self {
        self.req.ignore_lease = true;
        self
    }

    fn check(&self) -> Result<(), Error> {
        if self.req.key.is_empty() {
            return Err(Error::InvalidArgument("put needs a non-empty key".into()));
        }
        Ok(())
    }
}

/// The answer to a [`Put`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PutResponse {
    /// The response header; its revision is the write's revision.
    pub header: ResponseHeader,
    /// The previous key-value, when asked for and the key existed.
    pub prev_kv: Option<KeyValue>,
}

impl From<pb::PutResponse> for PutResponse {
    fn from(r: pb::PutResponse) -> Self {
        PutResponse { header: r.header.into(), prev_kv: r.prev_kv.map(KeyValue::from) }
    }
}

impl Unary for Put {
    type Response = PutResponse;

    fn encode(&self) -> Result<UnaryRequest, Error> {
        self.check()?;
        Ok(UnaryRequest::new(Method::Put, &self.req))
    }

    fn decode(message: Bytes) -> Result<PutResponse, Error> {
        decode_pb::<pb::PutResponse>(message).map(PutResponse::from)
    }
}

/// A deletion of one key, a prefix, a range, everything from a key, or every key.
///
/// ```
/// use aetcd_core::rpc::kv::Delete;
/// let d = Delete::prefix("tmp/").prev_kv();
/// # let _ = d;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a request does nothing until it is sent"]
pub struct Delete {
    range: KeyRange,
    prev_kv: bool,
}

impl Delete {
    /// Deletes one key.
    pub fn key(key: impl Into<Bytes>) -> Delete {
        Delete { range: KeyRange::Key(key.into()), prev_kv: false }
    }

    /// Deletes every key starting with `prefix` (every key if it is empty).
    pub fn prefix(prefix: impl Into<Bytes>) -> Delete {
        Delete { range: KeyRange::Prefix(prefix.into()), prev_kv: false }
    }

    /// Deletes the keys in `[start, end)`.
    pub fn range(start: impl Into<Bytes>, end: impl Into<Bytes>) -> Delete {
        Delete { range: KeyRange::Range(start.into(), end.into()), prev_kv: false }
    }

    /// Deletes every key greater than or equal to `key`.
    pub fn from_key(key: impl Into<Bytes>) -> Delete {
        Delete { range: KeyRange::FromKey(key.into()), prev_kv: false }
    }

    /// Deletes every key.
    pub fn all() -> Delete {
        Delete { range: KeyRange::All, prev_kv: false }
    }

    /// Returns the deleted key-values in the response.
    pub fn prev_kv(mut self) -> Self {
        self.prev_kv = true;
        self
    }

    fn to_pb(&self) -> pb::DeleteRangeRequest {
        let (key, range_end) = self.range.clone().into_wire();
        pb::DeleteRangeRequest { key, range_end, prev_kv: self.prev_kv }
    }

    fn check(&self) -> Result<(), Error> {
        if let KeyRange::Key(k) = &self.range {
            if k.is_empty() {
                return Err(Error::InvalidArgument("delete needs a non-empty key".into()));
            }
        }
        Ok(())
    }
}

/// The answer to a [`Delete`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeleteResponse {
    /// The response header.
    pub header: ResponseHeader,
    /// How many keys were deleted.
    pub deleted: i64,
    /// The deleted key-values, when asked for.
    pub prev_kvs: Vec<KeyValue>,
}

impl From<pb::DeleteRangeResponse> for DeleteResponse {
    fn from(r: pb::DeleteRangeResponse) -> Self {
        DeleteResponse {
            header: r.header.into(),
            deleted: r.deleted,
            prev_kvs: r.prev_kvs.into_iter().map(KeyValue::from).collect(),
        }
    }
}

impl Unary for Delete {
    type Response = DeleteResponse;

    fn encode(&self) -> Result<UnaryRequest, Error> {
        self.check()?;
        Ok(UnaryRequest::new(Method::DeleteRange, &self.to_pb()))
    }

    fn decode(message: Bytes) -> Result<DeleteResponse, Error> {
        decode_pb::<pb::DeleteRangeResponse>(message).map(DeleteResponse::from)
    }
}

/// Compaction of the key-value history up to a revision.
///
/// ```
/// use aetcd_core::rpc::kv::Compact;
/// let c = Compact::new(1000).physical();
/// # let _ = c;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a request does nothing until it is sent"]
pub struct Compact {
    req: pb::CompactionRequest,
}

impl Compact {
    /// Discards history before `revision`.
    pub fn new(revision: i64) -> Compact {
        Compact { req: pb::CompactionRequest { revision, physical: false } }
    }

    /// Answers only once the compacted data is physically removed.
    pub fn physical(mut self) -> Self {
        self.req.physical = true;
        self
    }
}

/// The answer to a [`Compact`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompactResponse {
    /// The response header.
    pub header: ResponseHeader,
}

impl Unary for Compact {
    type Response = CompactResponse;

    fn encode(&self) -> Result<UnaryRequest, Error> {
        Ok(UnaryRequest::new(Method::Compact, &self.req))
    }

    fn decode(message: Bytes) -> Result<CompactResponse, Error> {
        decode_pb::<pb::CompactionResponse>(message).map(|r| CompactResponse { header: r.header.into() })
    }
}

/// How a [`Compare`] relates the key's attribute to the given operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CompareOp {
    /// `==`
    Equal,
    /// `!=`
    NotEqual,
    /// `<`
    Less,
    /// `>`
    Greater,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attr {
    Version,
    CreateRevision,
    ModRevision,
    Lease,
}

/// The start of a compare on a key's value; finish it with an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "finish the compare with eq, ne, lt or gt"]
pub struct ValueCompare {
    key: Bytes,
}

/// The start of a compare on a key's version, revisions or lease; finish it with an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "finish the compare with eq, ne, lt or gt"]
pub struct NumberCompare {
    key: Bytes,
    attr: Attr,
}

/// A condition of a transaction.
///
/// ```
/// use aetcd_core::rpc::kv::Compare;
/// let same = Compare::value("config").eq("v1");          // value(config) == "v1"
/// let exists = Compare::version("config").gt(0);         // version(config) > 0
/// let missing = Compare::create_revision("lock").eq(0);  // the key does not exist
/// let untouched = Compare::mod_revision("jobs/").lt(100).with_prefix(); // every key under jobs/
/// # let _ = (same, exists, missing, untouched);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a compare does nothing until it is part of a transaction"]
pub struct Compare {
    cmp: pb::Compare,
}

macro_rules! operators {
    ($builder:ident, $operand:ty) => {
        impl $builder {
            /// The attribute equals `operand`.
            pub fn eq(self, operand: impl Into<$operand>) -> Compare {
                self.build(CompareOp::Equal, operand.into())
            }
            /// The attribute differs from `operand`.
            pub fn ne(self, operand: impl Into<$operand>) -> Compare {
                self.build(CompareOp::NotEqual, operand.into())
            }
            /// The attribute is less than `operand`.
            pub fn lt(self, operand: impl Into<$operand>) -> Compare {
                self.build(CompareOp::Less, operand.into())
            }
            /// The attribute is greater than `operand`.
            pub fn gt(self, operand: impl Into<$operand>) -> Compare {
                self.build(CompareOp::Greater, operand.into())
            }
        }
    };
}

operators!(ValueCompare, Bytes);
operators!(NumberCompare, i64);

fn compare_result(op: CompareOp) -> i32 {
    use pb::compare::CompareResult as R;
    (match op {
        CompareOp::Equal => R::Equal,
        CompareOp::NotEqual => R::NotEqual,
        CompareOp::Less => R::Less,
        CompareOp::Greater => R::Greater,
    }) as i32
}

impl ValueCompare {
    fn build(self, op: CompareOp, operand: Bytes) -> Compare {
        Compare {
            cmp: pb::Compare {
                result: compare_result(op),
                target: pb::compare::CompareTarget::Value as i32,
                key: self.key,
                range_end: Bytes::new(),
                target_union: Some(pb::compare::TargetUnion::Value(operand)),
            },
        }
    }
}

impl NumberCompare {
    fn build(self, op: CompareOp, operand: i64) -> Compare {
        use pb::compare::{CompareTarget as T, TargetUnion as U};
        let (target, union) = match self.attr {
            Attr::Version => (T::Version, U::Version(operand)),
            Attr::CreateRevision => (T::Create, U::CreateRevision(operand)),
            Attr::ModRevision => (T::Mod, U::ModRevision(operand)),
            Attr::Lease => (T::Lease, U::Lease(operand)),
        };
        Compare {
            cmp: pb::Compare {
                result: compare_result(op),
                target: target as i32,
                key: self.key,
                range_end: Bytes::new(),
                target_union: Some(union),
            },
        }
    }
}

impl Compare {
    /// Compares the key's value.
    pub fn value(key: impl Into<Bytes>) -> ValueCompare {
        ValueCompare { key: key.into() }
    }

    /// Compares the key's version (0 when the key does not exist).
    pub fn version(key: impl Into<Bytes>) -> NumberCompare {
        NumberCompare { key: key.into(), attr: Attr::Version }
    }

    /// Compares the key's creation revision (0 when the key does not exist).
    pub fn create_revision(key: impl Into<Bytes>) -> NumberCompare {
        NumberCompare { key: key.into(), attr: Attr::CreateRevision }
    }

    /// Compares the key's modification revision.
    pub fn mod_revision(key: impl Into<Bytes>) -> NumberCompare {
        NumberCompare { key: key.into(), attr: Attr::ModRevision }
    }

    /// Compares the key's lease id (0 for none).
    pub fn lease(key: impl Into<Bytes>) -> NumberCompare {
        NumberCompare { key: key.into(), attr: Attr::Lease }
    }

    /// Applies the compare to every key in `[key, end)`: it holds if it holds for each.
    pub fn with_range(mut self, end: impl Into<Bytes>) -> Self {
        self.cmp.range_end = end.into();
        self
    }

    /// Applies the compare to every key starting with the compare's key.
    pub fn with_prefix(mut self) -> Self {
        self.cmp.range_end = prefix_end(&self.cmp.key);
        self
    }

    /// The operator.
    pub fn op(&self) -> CompareOp {
        use pb::compare::CompareResult as R;
        match R::try_from(self.cmp.result) {
            Ok(R::NotEqual) => CompareOp::NotEqual,
            Ok(R::Less) => CompareOp::Less,
            Ok(R::Greater) => CompareOp::Greater,
            _ => CompareOp::Equal,
        }
    }
}

/// One operation of a transaction branch.
///
/// ```
/// use aetcd_core::rpc::kv::{Get, Put, TxnOp};
/// let ops: Vec<TxnOp> = vec![Put::new("a", "1").into(), Get::key("a").into()];
/// # let _ = ops;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TxnOp {
    /// A read.
    Get(Get),
    /// A write.
    Put(Put),
    /// A deletion.
    Delete(Delete),
    /// A nested transaction.
    Txn(Txn),
}

impl From<Get> for TxnOp {
    fn from(g: Get) -> Self {
        TxnOp::Get(g)
    }
}
impl From<Put> for TxnOp {
    fn from(p: Put) -> Self {
        TxnOp::Put(p)
    }
}
impl From<Delete> for TxnOp {
    fn from(d: Delete) -> Self {
        TxnOp::Delete(d)
    }
}
impl From<Txn> for TxnOp {
    fn from(t: Txn) -> Self {
        TxnOp::Txn(t)
    }
}

impl TxnOp {
    fn to_pb(&self) -> Result<pb::RequestOp, Error> {
        use pb::request_op::Request as R;
        let r = match self {
            TxnOp::Get(g) => R::RequestRange(g.to_pb()),
            TxnOp::Put(p) => {
                p.check()?;
                R::RequestPut(p.req.clone())
            }
            TxnOp::Delete(d) => {
                d.check()?;
                R::RequestDeleteRange(d.to_pb())
            }
            TxnOp::Txn(t) => R::RequestTxn(t.to_pb()?),
        };
        Ok(pb::RequestOp { request: Some(r) })
    }
}

/// A transaction: if every compare holds, the success operations run, otherwise
/// the failure operations, atomically at one revision.
///
/// ```
/// use aetcd_core::rpc::kv::{Compare, Get, Put, Txn};
/// let cas = Txn::new()
///     .when([Compare::value("k").eq("old")])
///     .and_then([Put::new("k", "new")])
///     .or_else([Get::key("k")]);
/// # let _ = cas;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use = "a request does nothing until it is sent"]
pub struct Txn {
    compares: Vec<Compare>,
    success: Vec<TxnOp>,
    failure: Vec<TxnOp>,
}

impl Txn {
    /// An empty transaction (no compares: the success branch runs).
    pub fn new() -> Txn {
        Txn::default()
    }

    /// Adds conditions; all must hold.
    pub fn when(mut self, compares: impl IntoIterator<Item = Compare>) -> Self {
        self.compares.extend(compares);
        self
    }

    /// Adds operations to run when every condition holds.
    pub fn and_then<O: Into<TxnOp>>(mut self, ops: impl IntoIterator<Item = O>) -> Self {
        self.success.extend(ops.into_iter().map(Into::into));
        self
    }

    /// Adds operations to run when a condition fails.
    pub fn or_else<O: Into<TxnOp>>(mut self, ops: impl IntoIterator<Item = O>) -> Self {
        self.failure.extend(ops.into_iter().map(Into::into));
        self
    }

    fn to_pb(&self) -> Result<pb::TxnRequest, Error> {
        Ok(pb::TxnRequest {
            compare: self.compares.iter().map(|c| c.cmp.clone()).collect(),
            success: self.success.iter().map(TxnOp::to_pb).collect::<Result<_, _>>()?,
            failure: self.failure.iter().map(TxnOp::to_pb).collect::<Result<_, _>>()?,
        })
    }
}

/// The answer of one transaction operation, in the order of the branch that ran.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TxnOpResponse {
    /// Answer to a [`TxnOp::Get`].
    Get(GetResponse),
    /// Answer to a [`TxnOp::Put`].
    Put(PutResponse),
    /// Answer to a [`TxnOp::Delete`].
    Delete(DeleteResponse),
    /// Answer to a nested [`TxnOp::Txn`].
    Txn(TxnResponse),
}

/// The answer to a [`Txn`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TxnResponse {
    /// The response header.
    pub header: ResponseHeader,
    /// True when the compares held and the success branch ran.
    pub succeeded: bool,
    /// One answer per operation of the branch that ran.
    pub responses: Vec<TxnOpResponse>,
}

impl TryFrom<pb::TxnResponse> for TxnResponse {
    type Error = Error;

    fn try_from(r: pb::TxnResponse) -> Result<Self, Error> {
        use pb::response_op::Response as R;
        let responses = r
            .responses
            .into_iter()
            .map(|op| match op.response {
                Some(R::ResponseRange(g)) => Ok(TxnOpResponse::Get(g.into())),
                Some(R::ResponsePut(p)) => Ok(TxnOpResponse::Put(p.into())),
                Some(R::ResponseDeleteRange(d)) => Ok(TxnOpResponse::Delete(d.into())),
                Some(R::ResponseTxn(t)) => TxnResponse::try_from(t).map(TxnOpResponse::Txn),
                None => Err(Error::malformed("transaction answer without an operation response")),
            })
            .collect::<Result<_, _>>()?;
        Ok(TxnResponse { header: r.header.into(), succeeded: r.succeeded, responses })
    }
}

impl Unary for Txn {
    type Response = TxnResponse;

    fn encode(&self) -> Result<UnaryRequest, Error> {
        Ok(UnaryRequest::new(Method::Txn, &self.to_pb()?))
    }

    fn decode(message: Bytes) -> Result<TxnResponse, Error> {
        decode_pb::<pb::TxnResponse>(message).and_then(TxnResponse::try_from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_on_the_wire() {
        assert_eq!(Get::prefix("ab").to_pb().range_end, Bytes::from_static(b"ac"));
        let all = Get::all().to_pb();
        assert_eq!((&all.key[..], &all.range_end[..]), (&b"\0"[..], &b"\0"[..]));
        let empty_prefix = Get::prefix("").to_pb();
        assert_eq!((&empty_prefix.key[..], &empty_prefix.range_end[..]), (&b"\0"[..], &b"\0"[..]));
        let from = Get::from_key("m").to_pb();
        assert_eq!((&from.key[..], &from.range_end[..]), (&b"m"[..], &b"\0"[..]));
        assert_eq!(Get::key("k").to_pb().range_end, Bytes::new());
    }

    #[test]
    fn ascending_key_sort_is_sent_as_no_sort() {
        let r = Get::prefix("a").sort(SortTarget::Key, SortOrder::Ascend).to_pb();
        assert_eq!(r.sort_order, 0);
        let r = Get::prefix("a").sort(SortTarget::Mod, SortOrder::Descend).to_pb();
        assert_eq!((r.sort_order, r.sort_target), (2, 3));
    }

    #[test]
    fn usage_errors_before_sending() {
        assert!(matches!(Put::new("", "v").encode(), Err(Error::InvalidArgument(_))));
        let nested = Txn::new().and_then([Txn::new().and_then([Delete::key("")])]);
        assert!(matches!(nested.encode(), Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn compare_targets() {
        let c = Compare::lease("k").eq(7);
        assert_eq!(c.cmp.target, pb::compare::CompareTarget::Lease as i32);
        assert_eq!(c.cmp.target_union, Some(pb::compare::TargetUnion::Lease(7)));
        let c = Compare::value("k").ne("x").with_prefix();
        assert_eq!(c.op(), CompareOp::NotEqual);
        assert_eq!(&c.cmp.range_end[..], b"l");
    }

    #[test]
    fn txn_response_without_op_is_malformed() {
        let r = pb::TxnResponse { responses: vec![pb::ResponseOp { response: None }], ..Default::default() };
        assert!(matches!(TxnResponse::try_from(r), Err(Error::Malformed { .. })));
    }
}

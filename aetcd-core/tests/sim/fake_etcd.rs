//! A tiny in-memory etcd KV store: enough of Range, Put, DeleteRange, Txn and
//! Compact to answer the requests the typed API builds, with real protobuf
//! answers. One revision counter, no history (reads at an old revision are
//! answered from the current state unless they are below the compaction point).

use std::collections::BTreeMap;

use aetcd_core::grpc::frame::{encode, PREFIX_LEN};
use aetcd_core::grpc::{Code, Status};
use aetcd_core::pb::etcdserverpb as pb;
use aetcd_core::pb::mvccpb::KeyValue;
use bytes::Bytes;
use prost::Message;

const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
const FUTURE: &str = "etcdserver: mvcc: required revision is a future revision";
const KEY_NOT_FOUND: &str = "etcdserver: key not found";

/// The store.
#[derive(Debug, Clone)]
pub struct FakeEtcd {
    kvs: BTreeMap<Bytes, KeyValue>,
    revision: i64,
    compacted: i64,
    /// How many requests were answered (successfully or not), by method path.
    pub served: BTreeMap<&'static str, usize>,
}

impl Default for FakeEtcd {
    fn default() -> Self {
        FakeEtcd::new()
    }
}

/// The half-open key interval a request covers.
#[derive(Debug, Clone)]
enum Span {
    One(Bytes),
    From(Bytes),
    Between(Bytes, Bytes),
}

impl Span {
    fn new(key: &Bytes, range_end: &Bytes) -> Span {
        if range_end.is_empty() {
            Span::One(key.clone())
        } else if &range_end[..] == b"\0" {
            Span::From(key.clone())
        } else {
            Span::Between(key.clone(), range_end.clone())
        }
    }

    fn contains(&self, k: &[u8]) -> bool {
        match self {
            Span::One(key) => k == &key[..],
            Span::From(start) => k >= &start[..],
            Span::Between(start, end) => k >= &start[..] && k < &end[..],
        }
    }
}

impl FakeEtcd {
    /// An empty store at revision 1 (etcd's first revision).
    pub fn new() -> FakeEtcd {
        FakeEtcd { kvs: BTreeMap::new(), revision: 1, compacted: 0, served: BTreeMap::new() }
    }

    /// The current revision.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The current value of `key`.
    pub fn value(&self, key: &[u8]) -> Option<Bytes> {
        self.kvs.get(key).map(|kv| kv.value.clone())
    }

    fn header(&self) -> Option<pb::ResponseHeader> {
        Some(pb::ResponseHeader { cluster_id: 0xC1, member_id: 0x11, revision: self.revision, raft_term: 2 })
    }

    /// Answers one call: `frame` is the whole gRPC frame the client sent. Returns the
    /// framed protobuf answer (prefix included) or the status etcd would answer with.
    pub fn handle(&mut self, path: &'static str, frame: &[u8]) -> Result<Bytes, Status> {
        *self.served.entry(path).or_default() += 1;
        let body = unframe(frame)?;
        let bad =
            |e: prost::DecodeError| Status::new(Code::Internal, format!("grpc: error unmarshalling request: {e}"));
        match path {
            "/etcdserverpb.KV/Range" => {
                let req = pb::RangeRequest::decode(body).map_err(bad)?;
                self.range(&req).map(|r| encode(&r))
            }
            "/etcdserverpb.KV/Put" => {
                let req = pb::PutRequest::decode(body).map_err(bad)?;
                let mut next = self.revision + 1;
                let r = self.put(&req, &mut next)?;
                self.revision = next.max(self.revision);
                Ok(encode(&pb::PutResponse { header: self.header(), ..r }))
            }
            "/etcdserverpb.KV/DeleteRange" => {
                let req = pb::DeleteRangeRequest::decode(body).map_err(bad)?;
                let mut wrote = false;
                let r = self.delete(&req, self.revision + 1, &mut wrote);
                if wrote {
                    self.revision += 1;
                }
                Ok(encode(&pb::DeleteRangeResponse { header: self.header(), ..r }))
            }
            "/etcdserverpb.KV/Txn" => {
                let req = pb::TxnRequest::decode(body).map_err(bad)?;
                // Validate first, like etcd: a failing operation fails the whole transaction.
                let mut scratch = self.clone();
                let mut wrote = false;
                let r = scratch.txn(&req, self.revision + 1, &mut wrote)?;
                let served = std::mem::take(&mut self.served);
                *self = scratch;
                self.served = served;
                if wrote {
                    self.revision += 1;
                }
                Ok(encode(&pb::TxnResponse { header: self.header(), ..r }))
            }
            "/etcdserverpb.KV/Compact" => {
                let req = pb::CompactionRequest::decode(body).map_err(bad)?;
                if req.revision <= self.compacted {
                    return Err(Status::new(Code::OutOfRange, COMPACTED));
                }
                if req.revision > self.revision {
                    return Err(Status::new(Code::OutOfRange, FUTURE));
                }
                self.compacted = req.revision;
                Ok(encode(&pb::CompactionResponse { header: self.header() }))
            }
            other => Err(Status::new(Code::Unimplemented, format!("unknown method {other}"))),
        }
    }

    fn range(&self, req: &pb::RangeRequest) -> Result<pb::RangeResponse, Status> {
        if req.revision > self.revision {
            return Err(Status::new(Code::OutOfRange, FUTURE));
        }
        if req.revision > 0 && req.revision < self.compacted {
            return Err(Status::new(Code::OutOfRange, COMPACTED));
        }
        let span = Span::new(&req.key, &req.range_end);
        let matching: Vec<&KeyValue> = self.kvs.values().filter(|kv| span.contains(&kv.key)).collect();
        let count = matching.len() as i64;
        let limit = if req.limit > 0 { req.limit as usize } else { usize::MAX };
        let kvs = if req.count_only {
            Vec::new()
        } else {
            matching
                .iter()
                .take(limit)
                .map(|kv| {
                    let mut kv = (*kv).clone();
                    if req.keys_only {
                        kv.value = Bytes::new();
                    }
                    kv
                })
                .collect()
        };
        let more = !req.count_only && matching.len() > limit;
        Ok(pb::RangeResponse { header: self.header(), kvs, more, count })
    }

    /// Writes at revision `*rev` (the revision of the enclosing write).
    fn put(&mut self, req: &pb::PutRequest, rev: &mut i64) -> Result<pb::PutResponse, Status> {
        let prev = self.kvs.get(&req.key).cloned();
        if (req.ignore_value || req.ignore_lease) && prev.is_none() {
            return Err(Status::new(Code::InvalidArgument, KEY_NOT_FOUND));
        }
        let value = if req.ignore_value {
            prev.as_ref().map(|p| p.value.clone()).unwrap_or_default()
        } else {
            req.value.clone()
        };
        let lease = if req.ignore_lease { prev.as_ref().map(|p| p.lease).unwrap_or_default() } else { req.lease };
        let kv = KeyValue {
            key: req.key.clone(),
            create_revision: prev.as_ref().map(|p| p.create_revision).unwrap_or(*rev),
            mod_revision: *rev,
            version: prev.as_ref().map(|p| p.version).unwrap_or(0) + 1,
            value,
            lease,
        };
        self.kvs.insert(req.key.clone(), kv);
        Ok(pb::PutResponse { header: None, prev_kv: if req.prev_kv { prev } else { None } })
    }

    fn delete(&mut self, req: &pb::DeleteRangeRequest, _rev: i64, wrote: &mut bool) -> pb::DeleteRangeResponse {
        let span = Span::new(&req.key, &req.range_end);
        let keys: Vec<Bytes> = self.kvs.keys().filter(|k| span.contains(k)).cloned().collect();
        let mut prev_kvs = Vec::new();
        for k in &keys {
            if let Some(kv) = self.kvs.remove(k) {
                if req.prev_kv {
                    prev_kvs.push(kv);
                }
            }
        }
        *wrote |= !keys.is_empty();
        pb::DeleteRangeResponse { header: None, deleted: keys.len() as i64, prev_kvs }
    }

    fn compare(&self, c: &pb::Compare) -> bool {
        use pb::compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
        let span = Span::new(&c.key, &c.range_end);
        let kvs: Vec<Option<&KeyValue>> = match span {
            Span::One(k) => vec![self.kvs.get(&k)],
            span => self.kvs.values().filter(|kv| span.contains(&kv.key)).map(Some).collect(),
        };
        let result = R::try_from(c.result).unwrap_or(R::Equal);
        let holds = |ord: std::cmp::Ordering| match result {
            R::Equal => ord.is_eq(),
            R::NotEqual => ord.is_ne(),
            R::Less => ord.is_lt(),
            R::Greater => ord.is_gt(),
        };
        kvs.into_iter().all(|kv| match (T::try_from(c.target), &c.target_union) {
            (Ok(T::Value), Some(U::Value(v))) => match kv {
                Some(kv) => holds(kv.value[..].cmp(&v[..])),
                None => false, // etcd: a value compare on a missing key fails
            },
            (Ok(T::Version), Some(U::Version(n))) => holds(kv.map_or(0, |kv| kv.version).cmp(n)),
            (Ok(T::Create), Some(U::CreateRevision(n))) => holds(kv.map_or(0, |kv| kv.create_revision).cmp(n)),
            (Ok(T::Mod), Some(U::ModRevision(n))) => holds(kv.map_or(0, |kv| kv.mod_revision).cmp(n)),
            (Ok(T::Lease), Some(U::Lease(n))) => holds(kv.map_or(0, |kv| kv.lease).cmp(n)),
            _ => false,
        })
    }

    fn txn(&mut self, req: &pb::TxnRequest, rev: i64, wrote: &mut bool) -> Result<pb::TxnResponse, Status> {
        use pb::request_op::Request as Q;
        use pb::response_op::Response as A;
        let succeeded = req.compare.iter().all(|c| self.compare(c));
        let ops = if succeeded { &req.success } else { &req.failure };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let answer = match &op.request {
                Some(Q::RequestRange(r)) => A::ResponseRange(pb::RangeResponse { header: None, ..self.range(r)? }),
                Some(Q::RequestPut(p)) => {
                    let mut at = rev;
                    let r = self.put(p, &mut at)?;
                    *wrote = true;
                    A::ResponsePut(r)
                }
                Some(Q::RequestDeleteRange(d)) => A::ResponseDeleteRange(self.delete(d, rev, wrote)),
                Some(Q::RequestTxn(t)) => A::ResponseTxn(self.txn(t, rev, wrote)?),
                None => return Err(Status::new(Code::InvalidArgument, "etcdserver: empty operation")),
            };
            responses.push(pb::ResponseOp { response: Some(answer) });
        }
        Ok(pb::TxnResponse { header: None, succeeded, responses })
    }
}

/// Strips and checks the gRPC prefix of a request frame.
pub fn unframe(frame: &[u8]) -> Result<&[u8], Status> {
    if frame.len() < PREFIX_LEN || frame[0] != 0 {
        return Err(Status::new(Code::Internal, "grpc: bad request frame"));
    }
    let len = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize;
    if frame.len() != PREFIX_LEN + len {
        return Err(Status::new(Code::Internal, "grpc: request frame length mismatch"));
    }
    Ok(&frame[PREFIX_LEN..])
}

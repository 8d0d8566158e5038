//! Typed etcd requests and responses, one module per service.
//!
//! A request type (for example [`kv::Get`]) is a builder for every option of its
//! RPC. It implements [`Unary`], which turns it into an [`UnaryRequest`] (the
//! method and the framed message, ready to send) and decodes the answer into a
//! typed response. Nothing of the generated protobuf types leaks into these
//! signatures.

pub mod election;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod watch;

use bytes::Bytes;

use crate::error::Error;

/// An etcd method: its gRPC path and whether repeating it is harmless.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Method {
    /// `KV/Range`.
    Range,
    /// `KV/Put`.
    Put,
    /// `KV/DeleteRange`.
    DeleteRange,
    /// `KV/Txn`.
    Txn,
    /// `KV/Compact`.
    Compact,
    /// `Lease/LeaseGrant`.
    LeaseGrant,
    /// `Lease/LeaseRevoke`.
    LeaseRevoke,
    /// `Lease/LeaseTimeToLive`.
    LeaseTimeToLive,
    /// `Lease/LeaseLeases`.
    LeaseLeases,
    /// `Lock/Lock`.
    Lock,
    /// `Lock/Unlock`.
    Unlock,
    /// `Election/Campaign`.
    Campaign,
    /// `Election/Proclaim`.
    Proclaim,
    /// `Election/Leader`.
    Leader,
    /// `Election/Resign`.
    Resign,
}

impl Method {
    /// The gRPC method path.
    ///
    /// ```
    /// assert_eq!(aetcd_core::rpc::Method::Range.path(), "/etcdserverpb.KV/Range");
    /// ```
    pub fn path(self) -> &'static str {
        match self {
            Method::Range => "/etcdserverpb.KV/Range",
            Method::Put => "/etcdserverpb.KV/Put",
            Method::DeleteRange => "/etcdserverpb.KV/DeleteRange",
            Method::Txn => "/etcdserverpb.KV/Txn",
            Method::Compact => "/etcdserverpb.KV/Compact",
            Method::LeaseGrant => "/etcdserverpb.Lease/LeaseGrant",
            Method::LeaseRevoke => "/etcdserverpb.Lease/LeaseRevoke",
            Method::LeaseTimeToLive => "/etcdserverpb.Lease/LeaseTimeToLive",
            Method::LeaseLeases => "/etcdserverpb.Lease/LeaseLeases",
            Method::Lock => "/v3lockpb.Lock/Lock",
            Method::Unlock => "/v3lockpb.Lock/Unlock",
            Method::Campaign => "/v3electionpb.Election/Campaign",
            Method::Proclaim => "/v3electionpb.Election/Proclaim",
            Method::Leader => "/v3electionpb.Election/Leader",
            Method::Resign => "/v3electionpb.Election/Resign",
        }
    }

    /// True when sending the request twice has the same effect as once (reads),
    /// so it may be retried after a transport failure.
    pub fn is_idempotent(self) -> bool {
        matches!(
            self,
            Method::Range | Method::LeaseRevoke | Method::LeaseTimeToLive | Method::LeaseLeases | Method::Leader
        )
    }
}

/// A unary request ready to send: its method and its length-prefixed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnaryRequest {
    /// The method to call.
    pub method: Method,
    /// The gRPC frame (prefix and protobuf bytes).
    pub frame: Bytes,
}

impl UnaryRequest {
    pub(crate) fn new<M: prost::Message>(method: Method, msg: &M) -> UnaryRequest {
        UnaryRequest { method, frame: crate::grpc::frame::encode(msg) }
    }
}

/// A typed unary etcd request.
///
/// ```
/// use aetcd_core::rpc::{kv::Get, Unary, Method};
/// let req = Get::prefix("app/").limit(10).encode().unwrap();
/// assert_eq!(req.method, Method::Range);
/// ```
pub trait Unary {
    /// The typed answer.
    type Response;
    /// Validates and encodes the request. Errors are usage errors.
    fn encode(&self) -> Result<UnaryRequest, Error>;
    /// Decodes the server's answer (one protobuf message, without the prefix).
    fn decode(message: Bytes) -> Result<Self::Response, Error>;
}

pub(crate) fn decode_pb<M: prost::Message + Default>(message: Bytes) -> Result<M, Error> {
    M::decode(message).map_err(|e| Error::malformed(format!("cannot decode {}: {e}", std::any::type_name::<M>())))
}

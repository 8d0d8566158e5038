//! The unary calls of the Lease service: grant, revoke, time-to-live, list.
//!
//! Automatic keep-alive (one stream for every kept lease) builds on these.

use bytes::Bytes;

use super::kv::ResponseHeader;
use super::{decode_pb, Method, Unary, UnaryRequest};
use crate::error::Error;
use crate::pb::etcdserverpb as pb;

/// Grants a lease with a TTL in seconds; keys attached to it are deleted when it ends.
///
/// ```
/// use aetcd_core::rpc::lease::LeaseGrant;
/// let any_id = LeaseGrant::new(10);
/// let chosen = LeaseGrant::new(10).id(0x1234); // fails with Error::LeaseExists if taken
/// # let _ = (any_id, chosen);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a request does nothing until it is sent"]
pub struct LeaseGrant {
    req: pb::LeaseGrantRequest,
}

impl LeaseGrant {
    /// A lease of `ttl` seconds with an id chosen by the server.
    pub fn new(ttl: i64) -> LeaseGrant {
        LeaseGrant { req: pb::LeaseGrantRequest { ttl, id: 0 } }
    }

    /// Asks for this lease id (0: the server chooses).
    pub fn id(mut self, id: i64) -> Self {
        self.req.id = id;
        self
    }
}

/// The answer to a [`LeaseGrant`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaseGrantResponse {
    /// The response header.
    pub header: ResponseHeader,
    /// The lease id.
    pub id: i64,
    /// The TTL the server granted, in seconds.
    pub ttl: i64,
}

impl Unary for LeaseGrant {
    type Response = LeaseGrantResponse;

    fn encode(&self) -> Result<UnaryRequest, Error> {
        if self.req.ttl <= 0 {
            return Err(Error::InvalidArgument("a lease TTL must be positive".into()));
        }
        Ok(UnaryRequest::new(Method::LeaseGrant, &self.req))
    }

    fn decode(message: Bytes) -> Result<LeaseGrantResponse, Error> {
        let r = decode_pb::<pb::LeaseGrantResponse>(message)?;
        if !r.error.is_empty() {
            return Err(Error::Server(crate::grpc::Status::new(crate::grpc::Code::Unknown, r.error)));
        }
        Ok(LeaseGrantResponse { header: r.header.into(), id: r.id, ttl: r.ttl })
    }
}

/// Revokes a lease: its keys are deleted at once.
///
/// ```
/// let r = aetcd_core::rpc::lease::LeaseRevoke::new(0x1234);
/// # let _ = r;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a request does nothing until it is sent"]
pub struct LeaseRevoke {
    req: pb::LeaseRevokeRequest,
}

impl LeaseRevoke {
    /// Revokes lease `id`.
    pub fn new(id: i64) -> LeaseRevoke {
        LeaseRevoke { req: pb::LeaseRevokeRequest { id } }
    }
}

/// The answer to a [`LeaseRevoke`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaseRevokeResponse {
    /// The response header.
    pub header: ResponseHeader,
}

impl Unary for LeaseRevoke {
    type Response = LeaseRevokeResponse;

    fn encode(&self) -> Result<UnaryRequest, Error> {
        Ok(UnaryRequest::new(Method::LeaseRevoke, &self.req))
    }

    fn decode(message: Bytes) -> Result<LeaseRevokeResponse, Error> {
        decode_pb::<pb::LeaseRevokeResponse>(message).map(|r| LeaseRevokeResponse { header: r.header.into() })
    }
}

/// Asks how long a lease has left, optionally with the keys attached to it.
///
/// ```
/// let q = aetcd_core::rpc::lease::LeaseTimeToLive::new(0x1234).with_keys();
/// # let _ = q;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a request does nothing until it is sent"]
pub struct LeaseTimeToLive {
    req: pb::LeaseTimeToLiveRequest,
}

impl LeaseTimeToLive {
    /// Asks about lease `id`.
    pub fn new(id: i64) -> LeaseTimeToLive {
        LeaseTimeToLive { req: pb::LeaseTimeToLiveRequest { id, keys: false } }
    }

    /// Also lists the keys attached to the lease.
    pub fn with_keys(mut self) -> Self {
        self.req.keys = true;
        self
    }
}

/// The answer to a [`LeaseTimeToLive`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaseTimeToLiveResponse {
    /// The response header.
    pub header: ResponseHeader,
    /// The lease id.
    pub id: i64,
    /// Seconds left; -1 when the lease does not exist (expired or revoked).
    pub ttl: i64,
    /// The TTL the lease was granted with.
    pub granted_ttl: i64,
    /// The attached keys, when asked for.
    pub keys: Vec<Bytes>,
}

impl Unary for LeaseTimeToLive {
    type Response = LeaseTimeToLiveResponse;

    fn encode(&self) -> Result<UnaryRequest, Error> {
        Ok(UnaryRequest::new(Method::LeaseTimeToLive, &self.req))
    }

    fn decode(message: Bytes) -> Result<LeaseTimeToLiveResponse, Error> {
        decode_pb::<pb::LeaseTimeToLiveResponse>(message).map(|r| LeaseTimeToLiveResponse {
            header: r.header.into(),
            id: r.id,
            ttl: r.ttl,
            granted_ttl: r.granted_ttl,
            keys: r.keys,
        })
    }
}

/// Lists every lease.
///
/// ```
/// let q = aetcd_core::rpc::lease::LeaseLeases::new();
/// # let _ = q;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use = "a request does nothing until it is sent"]
pub struct LeaseLeases {
    _private: (),
}

impl LeaseLeases {
    /// The list request.
    pub fn new() -> LeaseLeases {
        LeaseLeases::default()
    }
}

/// The answer to a [`LeaseLeases`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaseLeasesResponse {
    /// The response header.
    pub header: ResponseHeader,
    /// Every lease id.
    pub ids: Vec<i64>,
}

impl Unary for LeaseLeases {
    type Response = LeaseLeasesResponse;

    fn encode(&self) -> Result<UnaryRequest, Error> {
        Ok(UnaryRequest::new(Method::LeaseLeases, &pb::LeaseLeasesRequest {}))
    }

    fn decode(message: Bytes) -> Result<LeaseLeasesResponse, Error> {
        decode_pb::<pb::LeaseLeasesResponse>(message)
            .map(|r| LeaseLeasesResponse { header: r.header.into(), ids: r.leases.into_iter().map(|l| l.id).collect() })
    }
}

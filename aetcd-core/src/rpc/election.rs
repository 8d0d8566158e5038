//! The Election service (`v3electionpb.Election`): leader election on a lease.
//!
//! Each candidate holds a key `<name>/<lease id in hex>`; the leader is the
//! candidate whose key was created first. Its value is the leader's proclamation.

use bytes::Bytes;

use super::kv::{KeyValue, ResponseHeader};
use super::{decode_pb, Method, Unary, UnaryRequest};
use crate::error::Error;
use crate::pb::v3electionpb as pb;

/// Identifies a leadership: the election, the leader's key, its creation
/// revision and the lease behind it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaderKey {
    /// The election's name.
    pub name: Bytes,
    /// The leader's key.
    pub key: Bytes,
    /// The key's creation revision (a fencing token).
    pub revision: i64,
    /// The lease holding the key.
    pub lease: i64,
}

impl LeaderKey {
    fn to_pb(&self) -> pb::LeaderKey {
        pb::LeaderKey { name: self.name.clone(), key: self.key.clone(), rev: self.revision, lease: self.lease }
    }
}

/// Waits until the lease's candidate is the leader of election `name`, proclaiming `value`.
///
/// ```
/// let req = aetcd_core::rpc::election::Campaign::new("leader", 0x1234, "node-a");
/// # let _ = req;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a request does nothing until it is sent"]
pub struct Campaign {
    req: pb::CampaignRequest,
}

impl Campaign {
    /// A campaign for `name` on `lease` with the initial `value`.
    pub fn new(name: impl Into<Bytes>, lease: i64, value: impl Into<Bytes>) -> Campaign {
        Campaign { req: pb::CampaignRequest { name: name.into(), lease, value: value.into() } }
    }
}

/// The answer to a [`Campaign`]: the candidate is the leader.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CampaignResponse {
    /// The response header.
    pub header: ResponseHeader,
    /// The leadership won.
    pub leader: LeaderKey,
}

impl Unary for Campaign {
    type Response = CampaignResponse;

    fn encode(&self) -> Result<UnaryRequest, Error> {
        if self.req.name.is_empty() {
            return Err(Error::InvalidArgument("an election needs a name".into()));
        }
        Ok(UnaryRequest::new(Method::Campaign, &self.req))
    }

    fn decode(message: Bytes) -> Result<CampaignResponse, Error> {
        let r = decode_pb::<pb::CampaignResponse>(message)?;
        let l = r.leader.ok_or_else(|| Error::malformed("campaign answer without a leader key"))?;
        let leader = LeaderKey { name: l.name, key: l.key, revision: l.rev, lease: l.lease };
        Ok(CampaignResponse { header: r.header.into(), leader })
    }
}

/// Makes the leader announce a new value, if it still is the leader.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a request does nothing until it is sent"]
pub struct Proclaim {
    req: pb::ProclaimRequest,
}

impl Proclaim {
    /// Proclaims `value` for `leader`.
    ///
    /// ```
    /// use aetcd_core::rpc::election::{LeaderKey, Proclaim};
    /// let p = Proclaim::new(&LeaderKey::default(), "new value");
    /// # let _ = p;
    /// ```
    pub fn new(leader: &LeaderKey, value: impl Into<Bytes>) -> Proclaim {
        Proclaim { req: pb::ProclaimRequest { leader: Some(leader.to_pb()), value: value.into() } }
    }
}

/// The answer to a [`Proclaim`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProclaimResponse {
    /// The response header.
    pub header: ResponseHeader,
}

impl Unary for Proclaim {
    type Response = ProclaimResponse;

    fn encode(&self) -> Result<UnaryRequest, Error> {
        Ok(UnaryRequest::new(Method::Proclaim, &self.req))
    }

    fn decode(message: Bytes) -> Result<ProclaimResponse, Error> {
        decode_pb::<pb::ProclaimResponse>(message).map(|r| ProclaimResponse { header: r.header.into() })
    }
}

/// Asks who leads election `name`.
///
/// ```
/// let q = aetcd_core::rpc::election::Leader::new("leader");
/// # let _ = q;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a request does nothing until it is sent"]
pub struct Leader {
    req: pb::LeaderRequest,
}

impl Leader {
    /// The leader of `name`.
    pub fn new(name: impl Into<Bytes>) -> Leader {
        Leader { req: pb::LeaderRequest { name: name.into() } }
    }
}

/// The answer to a [`Leader`]: the leader's key and proclaimed value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaderResponse {
    /// The response header.
    pub header: ResponseHeader,
    /// The leader's key-value (its value is the proclamation).
    pub kv: KeyValue,
}

impl Unary for Leader {
    type Response = LeaderResponse;

    fn encode(&self) -> Result<UnaryRequest, Error> {
        Ok(UnaryRequest::new(Method::Leader, &self.req))
    }

    fn decode(message: Bytes) -> Result<LeaderResponse, Error> {
        let r = decode_pb::<pb::LeaderResponse>(message)?;
        Ok(LeaderResponse { header: r.header.into(), kv: r.kv.map(KeyValue::from).unwrap_or_default() })
    }
}

/// Gives up leadership.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a request does nothing until it is sent"]
pub struct Resign {
    req: pb::ResignRequest,
}

impl Resign {
    /// Resigns `leader`.
    ///
    /// ```
    /// let r = aetcd_core::rpc::election::Resign::new(&Default::default());
    /// # let _ = r;
    /// ```
    pub fn new(leader: &LeaderKey) -> Resign {
        Resign { req: pb::ResignRequest { leader: Some(leader.to_pb()) } }
    }
}

/// The answer to a [`Resign`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResignResponse {
    /// The response header.
    pub header: ResponseHeader,
}

impl Unary for Resign {
    type Response = ResignResponse;

    fn encode(&self) -> Result<UnaryRequest, Error> {
        Ok(UnaryRequest::new(Method::Resign, &self.req))
    }

    fn decode(message: Bytes) -> Result<ResignResponse, Error> {
        decode_pb::<pb::ResignResponse>(message).map(|r| ResignResponse { header: r.header.into() })
    }
}

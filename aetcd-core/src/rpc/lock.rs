//! The Lock service (`v3lockpb.Lock`): a distributed mutex held by a lease.
//!
//! The server waits (possibly for long) until the lock is free, then answers with
//! the holder's key, `<name>/<lease id in hex>`; the key's creation revision is a
//! fencing token. The caller must keep the lease alive while holding the lock.

use bytes::Bytes;

use super::kv::ResponseHeader;
use super::{decode_pb, Method, Unary, UnaryRequest};
use crate::error::Error;
use crate::pb::v3lockpb as pb;

/// Waits for the lock `name` and takes it for `lease`.
///
/// ```
/// let req = aetcd_core::rpc::lock::LockRequest::new("jobs", 0x1234);
/// assert_eq!(&req.key_for_lease()[..], b"jobs/1234");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a request does nothing until it is sent"]
pub struct LockRequest {
    req: pb::LockRequest,
}

impl LockRequest {
    /// Locks `name` for `lease`.
    pub fn new(name: impl Into<Bytes>, lease: i64) -> LockRequest {
        LockRequest { req: pb::LockRequest { name: name.into(), lease } }
    }

    /// The key the server creates for this lease while it waits and holds:
    /// `<name>/<lease id in lowercase hex>`.
    pub fn key_for_lease(&self) -> Bytes {
        lock_key(&self.req.name, self.req.lease)
    }
}

/// The key a lease holds (or waits with) for lock or election `name`.
pub fn lock_key(name: &[u8], lease: i64) -> Bytes {
    let mut key = name.to_vec();
    key.extend_from_slice(format!("/{lease:x}").as_bytes());
    key.into()
}

/// The answer to a [`LockRequest`]: the lock is held.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockResponse {
    /// The response header.
    pub header: ResponseHeader,
    /// The holder's key; delete it (or revoke the lease) to release.
    pub key: Bytes,
}

impl Unary for LockRequest {
    type Response = LockResponse;

    fn encode(&self) -> Result<UnaryRequest, Error> {
        if self.req.name.is_empty() {
            return Err(Error::InvalidArgument("a lock needs a name".into()));
        }
        Ok(UnaryRequest::new(Method::Lock, &self.req))
    }

    fn decode(message: Bytes) -> Result<LockResponse, Error> {
        decode_pb::<pb::LockResponse>(message).map(|r| LockResponse { header: r.header.into(), key: r.key })
    }
}

/// Releases a lock by deleting its holder's key.
///
/// ```
/// let req = aetcd_core::rpc::lock::UnlockRequest::new("jobs/1234");
/// # let _ = req;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a request does nothing until it is sent"]
pub struct UnlockRequest {
    req: pb::UnlockRequest,
}

impl UnlockRequest {
    /// Releases the lock held with `key`.
    pub fn new(key: impl Into<Bytes>) -> UnlockRequest {
        UnlockRequest { req: pb::UnlockRequest { key: key.into() } }
    }
}

/// The answer to an [`UnlockRequest`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnlockResponse {
    /// The response header.
    pub header: ResponseHeader,
}

impl Unary for UnlockRequest {
    type Response = UnlockResponse;

    fn encode(&self) -> Result<UnaryRequest, Error> {
        Ok(UnaryRequest::new(Method::Unlock, &self.req))
    }

    fn decode(message: Bytes) -> Result<UnlockResponse, Error> {
        decode_pb::<pb::UnlockResponse>(message).map(|r| UnlockResponse { header: r.header.into() })
    }
}

//! The one error type of the client, classified by who caused it.

use std::fmt;

use crate::grpc::{Code, FrameError, Status};

/// Everything that can go wrong with an etcd call.
///
/// Variants fall in five groups, told apart by [`Error::origin`]: usage errors
/// (returned at once, before anything is sent), client-side limits (deadline, a
/// closed client), transport failures (connect, connection lost), protocol
/// violations by the peer (malformed frames, oversized messages), and errors the
/// etcd server answered with, mapped from their gRPC code and message.
///
/// ```
/// use aetcd_core::{Error, Origin};
/// use aetcd_core::grpc::{Code, Status};
/// let e = Error::from_status(Status::new(Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted"));
/// assert_eq!(e, Error::Compacted { compact_revision: None });
/// assert_eq!(e.origin(), Origin::Server);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The request is invalid and was not sent (e.g. an empty key).
    InvalidArgument(String),
    /// The client was closed; no further calls are possible.
    Closed,
    /// The call's deadline passed before the server answered. A write may still
    /// have been applied.
    DeadlineExceeded,
    /// No connection could be made to any endpoint.
    ConnectFailed {
        /// The endpoint tried last.
        endpoint: String,
        /// What the transport reported (e.g. "connection refused").
        reason: String,
    },
    /// Connecting did not finish within the connect timeout.
    ConnectTimeout {
        /// The endpoint that did not answer.
        endpoint: String,
    },
    /// The connection broke while the call was in flight; a write's outcome is unknown.
    ConnectionLost {
        /// What the transport reported.
        reason: String,
    },
    /// The server reset the call's HTTP/2 stream.
    StreamReset {
        /// The HTTP/2 error code.
        code: u32,
    },
    /// The server sent something that is not a valid gRPC response.
    Malformed {
        /// What was wrong.
        reason: String,
    },
    /// A message is larger than the configured limit.
    MessageTooLarge {
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The revision asked for was compacted. Watches carry the oldest revision
    /// still available; unary calls do not learn it.
    Compacted {
        /// The compaction revision, when the server said it.
        compact_revision: Option<i64>,
    },
    /// The revision asked for is newer than the store's current revision.
    FutureRevision,
    /// `ignore_value`/`ignore_lease` on a key that does not exist.
    KeyNotFound,
    /// A value was given together with `ignore_value`.
    ValueProvided,
    /// A lease was given together with `ignore_lease`.
    LeaseProvided,
    /// The lease does not exist (expired or revoked).
    LeaseNotFound,
    /// A kept lease's TTL passed without a confirmed renewal: it may be gone.
    LeaseExpired {
        /// The lease.
        id: i64,
    },
    /// A lease with the requested id already exists.
    LeaseExists,
    /// The requested TTL is larger than the server allows.
    LeaseTtlTooLarge,
    /// The transaction has more operations than the server allows (`--max-txn-ops`).
    TooManyOps,
    /// The transaction writes the same key twice.
    DuplicateKey,
    /// The request is larger than the server accepts (`--max-request-bytes`).
    RequestTooLarge,
    /// The server is overloaded (its applied index trails the committed index).
    TooManyRequests,
    /// The database is out of space (NOSPACE alarm).
    NoSpace,
    /// The user may not do this.
    PermissionDenied,
    /// Wrong user name or password.
    AuthFailed,
    /// The auth token is invalid or expired.
    InvalidAuthToken,
    /// The auth store changed since the token was issued.
    AuthOldRevision,
    /// Auth is enabled but the call carried no user.
    UserEmpty,
    /// Auth is not enabled on the server.
    AuthNotEnabled,
    /// The member has no leader.
    NoLeader,
    /// The leader changed while the request was being handled.
    LeaderChanged,
    /// The server gave up waiting for the request to be applied; a write's outcome is unknown.
    RequestTimedOut {
        /// The server's message (there are several variants).
        message: String,
    },
    /// The server (or the path to it) is unavailable.
    Unavailable {
        /// The server's message.
        message: String,
    },
    /// The election has no leader.
    ElectionNoLeader,
    /// The caller is not (or no longer) the election's leader.
    ElectionNotLeader,
    /// The lease behind a lock or campaign ended while it waited.
    SessionExpired,
    /// The server ended a watch for a reason without a variant of its own.
    WatchCanceled {
        /// The server's cancel reason.
        reason: String,
    },
    /// A watch's consumer fell too far behind; the watch was cancelled instead of
    /// buffering without bound. Watch again from `next_revision` to continue
    /// without a gap.
    WatchLagged {
        /// The first revision not delivered.
        next_revision: i64,
    },
    /// Any other status the server answered with.
    Server(Status),
}

/// Who caused an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// The caller: the request was refused before it was sent.
    Usage,
    /// The client itself: deadline or shutdown.
    Client,
    /// The network or the connection.
    Transport,
    /// The peer broke the gRPC protocol.
    Protocol,
    /// The etcd server answered with an error.
    Server,
}

impl Error {
    /// Maps a non-OK gRPC status from etcd to a typed error by its code and message.
    pub fn from_status(status: Status) -> Error {
        let msg = status.message.as_str();
        let etcd = msg.strip_prefix("etcdserver: ").unwrap_or(msg);
        match (status.code, etcd) {
            (_, "mvcc: required revision has been compacted") => Error::Compacted { compact_revision: None },
            (_, "mvcc: required revision is a future revision") => Error::FutureRevision,
            (_, "key not found") => Error::KeyNotFound,
            (_, "value is provided") => Error::ValueProvided,
            (_, "lease is provided") => Error::LeaseProvided,
            (_, "requested lease not found") => Error::LeaseNotFound,
            (_, "lease already exists") => Error::LeaseExists,
            (_, "too large lease TTL") => Error::LeaseTtlTooLarge,
            (_, "too many operations in txn request") => Error::TooManyOps,
            (_, "duplicate key given in txn request") => Error::DuplicateKey,
            (_, "request is too large") => Error::RequestTooLarge,
            (_, "too many requests") => Error::TooManyRequests,
            (_, "mvcc: database space exceeded") => Error::NoSpace,
            (_, "permission denied") => Error::PermissionDenied,
            (_, "authentication failed, invalid user ID or password") => Error::AuthFailed,
            (_, "invalid auth token") => Error::InvalidAuthToken,
            (_, "revision of auth store is old") => Error::AuthOldRevision,
            (_, "user name is empty") => Error::UserEmpty,
            (_, "authentication is not enabled") => Error::AuthNotEnabled,
            (_, "no leader") => Error::NoLeader,
            (_, "leader changed") => Error::LeaderChanged,
            (_, "election: no leader") => Error::ElectionNoLeader,
            (_, "election: not leader") => Error::ElectionNotLeader,
            (_, "mutex: session is expired") | (_, "session: expired") => Error::SessionExpired,
            (_, m) if m.starts_with("request timed out") => Error::RequestTimedOut { message: status.message },
            (Code::ResourceExhausted, m) if m.contains("larger than max") => Error::RequestTooLarge,
            (Code::Unavailable, _) => Error::Unavailable { message: status.message },
            (Code::DeadlineExceeded, _) => Error::DeadlineExceeded,
            // Go servers answer "context deadline exceeded" (code Unknown) when the
            // call's grpc-timeout runs out inside them.
            (_, "context deadline exceeded") => Error::DeadlineExceeded,
            _ => Error::Server(status),
        }
    }

    /// Who caused this error.
    ///
    /// ```
    /// use aetcd_core::{Error, Origin};
    /// assert_eq!(Error::DeadlineExceeded.origin(), Origin::Client);
    /// assert_eq!(Error::LeaseNotFound.origin(), Origin::Server);
    /// ```
    pub fn origin(&self) -> Origin {
        match self {
            Error::InvalidArgument(_) => Origin::Usage,
            Error::Closed | Error::DeadlineExceeded | Error::WatchLagged { .. } => Origin::Client,
            Error::ConnectFailed { .. }
            | Error::ConnectTimeout { .. }
            | Error::ConnectionLost { .. }
            | Error::StreamReset { .. } => Origin::Transport,
            Error::Malformed { .. } | Error::MessageTooLarge { .. } => Origin::Protocol,
            _ => Origin::Server,
        }
    }

    /// True when the same request may succeed later or elsewhere: transport
    /// failures and the server's "unavailable" family. Writes that failed this way
    /// may or may not have been applied.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::ConnectFailed { .. }
                | Error::ConnectTimeout { .. }
                | Error::ConnectionLost { .. }
                | Error::StreamReset { .. }
                | Error::NoLeader
                | Error::LeaderChanged
                | Error::RequestTimedOut { .. }
                | Error::Unavailable { .. }
                | Error::TooManyRequests
        )
    }

    pub(crate) fn from_frame(e: FrameError) -> Error {
        match e {
            FrameError::TooLarge { len, limit } => Error::MessageTooLarge { len, limit },
            other => Error::Malformed { reason: other.to_string() },
        }
    }

    pub(crate) fn malformed(reason: impl Into<String>) -> Error {
        Error::Malformed { reason: reason.into() }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            Error::Closed => f.write_str("the client is closed"),
            Error::DeadlineExceeded => f.write_str("deadline exceeded before etcd answered"),
            Error::ConnectFailed { endpoint, reason } => write!(f, "cannot connect to {endpoint}: {reason}"),
            Error::ConnectTimeout { endpoint } => write!(f, "connecting to {endpoint} timed out"),
            Error::ConnectionLost { reason } => write!(f, "connection to etcd lost during the call: {reason}"),
            Error::StreamReset { code } => write!(f, "etcd reset the call's stream (HTTP/2 error code {code})"),
            Error::Malformed { reason } => write!(f, "malformed response from etcd: {reason}"),
            Error::MessageTooLarge { len, limit } => {
                write!(f, "message of {len} bytes exceeds the limit of {limit} bytes")
            }
            Error::Compacted { compact_revision: Some(r) } => {
                write!(f, "revision compacted; the oldest available revision is {r}")
            }
            Error::Compacted { compact_revision: None } => f.write_str("required revision has been compacted"),
            Error::FutureRevision => f.write_str("required revision is a future revision"),
            Error::KeyNotFound => f.write_str("key not found"),
            Error::ValueProvided => f.write_str("a value was given with ignore_value"),
            Error::LeaseProvided => f.write_str("a lease was given with ignore_lease"),
            Error::LeaseNotFound => f.write_str("lease not found"),
            Error::LeaseExpired { id } => write!(f, "lease {id:x} was not renewed within its TTL"),
            Error::LeaseExists => f.write_str("a lease with this id already exists"),
            Error::LeaseTtlTooLarge => f.write_str("lease TTL too large"),
            Error::TooManyOps => f.write_str("too many operations in the transaction"),
            Error::DuplicateKey => f.write_str("the transaction writes the same key twice"),
            Error::RequestTooLarge => f.write_str("request is larger than the server accepts"),
            Error::TooManyRequests => f.write_str("the server has too many requests pending"),
            Error::NoSpace => f.write_str("etcd database space exceeded"),
            Error::PermissionDenied => f.write_str("permission denied"),
            Error::AuthFailed => f.write_str("authentication failed: wrong user name or password"),
            Error::InvalidAuthToken => f.write_str("invalid auth token"),
            Error::AuthOldRevision => f.write_str("auth token is older than the auth store"),
            Error::UserEmpty => f.write_str("auth is enabled but no user was given"),
            Error::AuthNotEnabled => f.write_str("authentication is not enabled on the server"),
            Error::NoLeader => f.write_str("the etcd member has no leader"),
            Error::LeaderChanged => f.write_str("the etcd leader changed"),
            Error::RequestTimedOut { message } => write!(f, "etcd request timed out ({message})"),
            Error::Unavailable { message } => write!(f, "etcd unavailable: {message}"),
            Error::ElectionNoLeader => f.write_str("the election has no leader"),
            Error::ElectionNotLeader => f.write_str("not the election's leader"),
            Error::SessionExpired => f.write_str("the lease behind the lock or campaign has expired"),
            Error::WatchCanceled { reason } => write!(f, "etcd cancelled the watch: {reason}"),
            Error::WatchLagged { next_revision } => {
                write!(f, "the watch consumer fell behind; resume from revision {next_revision}")
            }
            Error::Server(s) => write!(f, "etcd error: {s}"),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(code: Code, m: &str) -> Error {
        Error::from_status(Status::new(code, m))
    }

    #[test]
    fn etcd_messages_map_to_variants() {
        assert_eq!(map(Code::NotFound, "etcdserver: requested lease not found"), Error::LeaseNotFound);
        assert_eq!(map(Code::FailedPrecondition, "etcdserver: lease already exists"), Error::LeaseExists);
        assert_eq!(
            map(Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision"),
            Error::FutureRevision
        );
        assert_eq!(map(Code::InvalidArgument, "etcdserver: request is too large"), Error::RequestTooLarge);
        assert_eq!(
            map(Code::ResourceExhausted, "grpc: received message larger than max (5000000 vs. 2097152)"),
            Error::RequestTooLarge
        );
        assert_eq!(map(Code::ResourceExhausted, "etcdserver: too many requests"), Error::TooManyRequests);
        assert_eq!(map(Code::Unauthenticated, "etcdserver: invalid auth token"), Error::InvalidAuthToken);
        assert_eq!(map(Code::PermissionDenied, "etcdserver: permission denied"), Error::PermissionDenied);
        assert_eq!(map(Code::Unavailable, "etcdserver: no leader"), Error::NoLeader);
        assert!(matches!(
            map(Code::Unavailable, "etcdserver: request timed out, possibly due to previous leader failure"),
            Error::RequestTimedOut { .. }
        ));
        assert!(matches!(map(Code::Unavailable, "etcdserver: server stopped"), Error::Unavailable { .. }));
        assert!(matches!(map(Code::Internal, "boom"), Error::Server(_)));
    }
}

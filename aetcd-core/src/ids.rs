//! Small `Copy` identifiers. None of them is ever reused within one [`Core`](crate::Core),
//! so a stale id can never address a newer entity.

use std::fmt;

/// A request chosen by the caller (one user-visible operation; it may use several calls).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// One gRPC call (one HTTP/2 stream), numbered by the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CallId(pub(crate) u64);

/// One configured endpoint: its index in the client's endpoint list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EndpointId(pub(crate) u32);

impl CallId {
    /// The call's number, for logs and maps.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl EndpointId {
    /// The endpoint's index in the configured list.
    pub fn index(self) -> usize {
        self.0 as usize
    }

    /// The id of the endpoint at `index` in the configured list.
    pub fn from_index(index: usize) -> EndpointId {
        EndpointId(index as u32)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request#{}", self.0)
    }
}

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "call#{}", self.0)
    }
}

impl fmt::Display for EndpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "endpoint#{}", self.0)
    }
}

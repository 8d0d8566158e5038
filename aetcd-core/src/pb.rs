//! The etcd v3 protobuf messages, generated at build time from `proto/`.
//!
//! These are the wire types; the client API exposes its own typed values built
//! from them (see [`crate::rpc`]). They are public for embedders that need a
//! field the typed API does not carry yet.
#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// Multi-version concurrency control types: key-values and events.
pub mod mvccpb {
    include!(concat!(env!("OUT_DIR"), "/mvccpb.rs"));
}

/// Users, roles and permissions.
pub mod authpb {
    include!(concat!(env!("OUT_DIR"), "/authpb.rs"));
}

/// The etcd services: KV, Watch, Lease, Cluster, Maintenance, Auth.
pub mod etcdserverpb {
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.rs"));
}

/// The Lock service.
pub mod v3lockpb {
    include!(concat!(env!("OUT_DIR"), "/v3lockpb.rs"));
}

/// The Election service.
pub mod v3electionpb {
    include!(concat!(env!("OUT_DIR"), "/v3electionpb.rs"));
}

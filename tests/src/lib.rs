//! Test support for aetcd: starts real etcd clusters (see [`etcd`]) for the integration tests in `tests/`.

pub mod etcd;

//! # aetcd-h2: the shared HTTP/2 driver and async API of aetcd
//!
//! The runtime-neutral half of the `aetcd-tokio` and `aetcd-smol` clients: one
//! background task per client drives an [`aetcd_core::Core`] over one `h2`
//! connection per endpoint, and [`Client`] is the async handle users hold. The
//! runtime crates only implement [`Runtime`] (TCP connect, spawn, a timer).
//!
//! Use it directly to run aetcd on another runtime: implement [`Runtime`] and
//! name `Client<YourRuntime>`.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod client;
mod driver;
pub mod election;
pub mod kv;
pub mod lease;
pub mod lock;
mod runtime;
pub mod session;
pub mod watch;

pub use aetcd_core::{CallOptions, Endpoint, Error, Origin};
pub use client::{Client, ClientBuilder, IntoEndpoints, ResponseFuture, DEFAULT_WATCH_BUFFER};
pub use runtime::{BoxFuture, Runtime, Timer};

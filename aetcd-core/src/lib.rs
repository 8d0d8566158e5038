//! # aetcd-core: a sans-IO etcd v3 client
//!
//! This crate knows etcd and gRPC, and nothing of sockets, clocks, threads,
//! async runtimes or HTTP/2. It encodes typed etcd requests into gRPC frames,
//! decodes responses from any split of the byte stream, tracks every request and
//! call by id with its deadline, and tells its driver what to do next. The
//! `aetcd-tokio` and `aetcd-smol` crates drive it over HTTP/2; a custom event loop
//! can drive it too.
//!
//! ## The driving contract
//!
//! 1. Every input carries `now`, the caller's monotonic time. Time never runs
//!    backwards: an older `now` is treated as the newest seen.
//! 2. After every input (`start_unary`, `cancel`, `close`, any `handle_*`), drain
//!    [`Core::poll_output`] until it returns `None`, and carry out each
//!    [`Output`] in order.
//! 3. Then read [`Core::poll_timeout`] and call [`Core::handle_timeout`] when that
//!    instant is reached (early or repeated calls are harmless).
//! 4. Report what the transport saw for each call: `handle_headers`, then any
//!    number of `handle_data`, then `handle_trailers`, or `handle_reset` if the
//!    stream ended abnormally; and for each endpoint `handle_connected`,
//!    `handle_connect_failed` or `handle_disconnected`.
//!
//! The example below is such a driver, with a canned server instead of a network:
//!
//! ```
//! use std::time::{Duration, Instant};
//! use aetcd_core::{CallOptions, Config, Core, Endpoint, Event, Output, RequestId};
//! use aetcd_core::rpc::{kv::Get, Unary};
//! use aetcd_core::pb::{etcdserverpb::RangeResponse, mvccpb::KeyValue};
//!
//! let mut now = Instant::now(); // a driver reads its clock; a simulation may invent one
//! let mut core = Core::new(Config::new(vec![Endpoint::new("127.0.0.1", 2379)]));
//! let get = Get::key("greeting");
//! core.start_unary(now, RequestId(1), get.encode().unwrap(), CallOptions::new()).unwrap();
//!
//! let mut answer = None;
//! while let Some(output) = core.poll_output() {
//!     match output {
//!         Output::Connect { endpoint } => {
//!             // connect TCP + HTTP/2 to core.endpoint(endpoint), then:
//!             now += Duration::from_millis(1);
//!             core.handle_connected(now, endpoint);
//!         }
//!         Output::OpenCall { call, head, .. } => {
//!             assert_eq!(head.path, "/etcdserverpb.KV/Range");
//!             // send the request; here the "server" answers at once
//!             let reply = RangeResponse {
//!                 kvs: vec![KeyValue { key: "greeting".into(), value: "hello".into(), ..Default::default() }],
//!                 count: 1,
//!                 ..Default::default()
//!             };
//!             let frame = aetcd_core::grpc::frame::encode(&reply);
//!             core.handle_headers(now, call, 200, [("content-type", &b"application/grpc"[..])]);
//!             let (a, b) = frame.split_at(3); // any split works
//!             core.handle_data(now, call, bytes::Bytes::copy_from_slice(a));
//!             core.handle_data(now, call, bytes::Bytes::copy_from_slice(b));
//!             core.handle_trailers(now, call, [("grpc-status", &b"0"[..])]);
//!         }
//!         Output::Event(Event::Unary { id, result }) => {
//!             assert_eq!(id, RequestId(1));
//!             answer = Some(Get::decode(result.unwrap()).unwrap());
//!         }
//!         other => panic!("unexpected {other:?}"),
//!     }
//! }
//! let answer = answer.unwrap();
//! assert_eq!(answer.value().unwrap(), "hello");
//! // Nothing left to do but the connection's housekeeping:
//! assert!(core.poll_timeout().is_none());
//! ```
//!
//! ## Modules
//!
//! - [`grpc`]: framing, status, request metadata;
//! - [`rpc`]: typed requests and responses with every option;
//! - [`Core`]: endpoints, calls, deadlines;
//! - [`pb`]: the generated wire types.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod config;
mod core;
mod error;
pub mod grpc;
mod ids;
mod keeper;
pub mod pb;
pub mod rpc;
mod stream;
mod watch;

pub use crate::config::{Config, Endpoint, Scheme};
pub use crate::core::{CallOptions, Core, Event, Output, TimerReason};
pub use crate::error::{Error, Origin};
pub use crate::ids::{CallId, EndpointId, RequestId};
pub use crate::keeper::LeaseUpdate;
pub use crate::rpc::watch::WatchId;
pub use bytes::Bytes;

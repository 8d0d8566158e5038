//! The gRPC layer: message framing, call status and request metadata. No HTTP/2:
//! the driver carries these bytes and headers over its own transport.

pub mod frame;
pub mod metadata;
pub mod status;

pub use frame::{FrameDecoder, FrameError};
pub use metadata::RequestHead;
pub use status::{Code, Status};

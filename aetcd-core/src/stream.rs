//! The bookkeeping shared by the long-lived streams (watch, keep-alive): whether
//! one is open, wanted or not needed, the frames waiting to go out on it, and the
//! backoff before reopening it after a break.

use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::ids::CallId;

/// Where a long-lived stream stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    /// No stream and none wanted.
    Idle,
    /// A stream is wanted: waiting for a connection or for the reconnect backoff.
    Wanted,
    /// Open as this call.
    Open(CallId),
}

#[derive(Debug)]
pub(crate) struct StreamSlot {
    state: Stream,
    /// Frames waiting to be sent on the open stream.
    write: BytesMut,
    backoff: Duration,
    backoff_min: Duration,
    backoff_max: Duration,
}

impl StreamSlot {
    pub(crate) fn new(backoff_min: Duration, backoff_max: Duration) -> Self {
        StreamSlot { state: Stream::Idle, write: BytesMut::new(), backoff: backoff_min, backoff_min, backoff_max }
    }

    pub(crate) fn state(&self) -> Stream {
        self.state
    }

    pub(crate) fn is_open(&self) -> bool {
        matches!(self.state, Stream::Open(_))
    }

    pub(crate) fn is_wanted(&self) -> bool {
        self.state == Stream::Wanted
    }

    /// Asks for a stream. True when one must now be opened (none was open or wanted).
    pub(crate) fn want(&mut self) -> bool {
        if self.state == Stream::Idle {
            self.state = Stream::Wanted;
            return true;
        }
        false
    }

    /// Queues one message as a gRPC frame.
    pub(crate) fn push<M: prost::Message>(&mut self, msg: &M) {
        crate::grpc::frame::encode_into(msg, &mut self.write);
    }

    /// The stream opened as `call`; what was queued (its first bytes) is returned.
    pub(crate) fn opened(&mut self, call: CallId) -> Bytes {
        self.state = Stream::Open(call);
        self.write.split().freeze()
    }

    /// Bytes to send on the open stream, if any.
    pub(crate) fn take_write(&mut self) -> Option<(CallId, Bytes)> {
        match self.state {
            Stream::Open(call) if !self.write.is_empty() => Some((call, self.write.split().freeze())),
            _ => None,
        }
    }

    /// The stream ended. With `reopen`, returns the wait before the next one
    /// (doubling up to the maximum); otherwise no stream is wanted any more.
    pub(crate) fn ended(&mut self, reopen: bool) -> Option<Duration> {
        self.write.clear();
        if !reopen {
            self.state = Stream::Idle;
            return None;
        }
        self.state = Stream::Wanted;
        let wait = self.backoff;
        self.backoff = self.backoff.saturating_mul(2).min(self.backoff_max);
        Some(wait)
    }

    /// The stream works: the next break starts its backoff afresh.
    pub(crate) fn worked(&mut self) {
        self.backoff = self.backoff_min;
    }

    /// Forgets the stream (the client is closing); returns the call to reset.
    pub(crate) fn close(&mut self) -> Option<CallId> {
        let call = match self.state {
            Stream::Open(call) => Some(call),
            _ => None,
        };
        self.state = Stream::Idle;
        self.write.clear();
        call
    }
}

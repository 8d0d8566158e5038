//! The watch multiplexer: every watch of the client shares one bidirectional
//! `Watch` stream, told apart by caller-chosen watch ids (so creates are pipelined
//! and answers matched without ambiguity). Each watch remembers the next revision
//! it needs; when the stream breaks, every live watch is re-created from there,
//! so the application sees each event once, in order, with no action of its own.
//!
//! All transitions of a watch live in this file; `Core` only opens and closes the
//! stream and feeds it.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;

use crate::core::{Event, Output};
use crate::error::Error;
use crate::grpc::{Code, Status};
use crate::ids::CallId;
use crate::pb::{etcdserverpb as pb, mvccpb};
use crate::rpc::watch::{WatchEvent, WatchId, WatchRequest, WatchResponse, WatchUpdate};
use crate::stream::{Stream, StreamSlot};

/// Path of the Watch service's only method.
pub(crate) const WATCH_PATH: &str = "/etcdserverpb.Watch/Watch";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Needs a create request on the next stream.
    Pending,
    /// Create sent on the current stream; no answer yet.
    Creating,
    /// Created on the current stream.
    Active,
    /// Cancel sent; waiting for the server to confirm.
    Cancelling,
}

#[derive(Debug)]
struct Watcher {
    request: WatchRequest,
    /// The first revision not yet delivered; 0 while unknown (a watch "from now"
    /// that the server has not created yet). Never decreases.
    next_rev: i64,
    state: State,
    created_once: bool,
    /// Events of a fragmented response, until its last fragment.
    fragments: Vec<mvccpb::Event>,
}

#[derive(Debug)]
pub(crate) struct WatchMux {
    watches: HashMap<WatchId, Watcher>,
    stream: StreamSlot,
    /// Watches whose create was sent on the current stream, oldest first: a
    /// failed create is answered with watch id -1 and belongs to the oldest.
    creating: VecDeque<WatchId>,
}

impl WatchMux {
    pub(crate) fn new(backoff_min: Duration, backoff_max: Duration) -> Self {
        WatchMux {
            watches: HashMap::new(),
            stream: StreamSlot::new(backoff_min, backoff_max),
            creating: VecDeque::new(),
        }
    }

    pub(crate) fn stream(&self) -> Stream {
        self.stream.state()
    }

    pub(crate) fn next_revision(&self, id: WatchId) -> Option<i64> {
        self.watches.get(&id).map(|w| w.next_rev)
    }

    pub(crate) fn len(&self) -> usize {
        self.watches.len()
    }

    /// True when watches exist but no stream carries them.
    pub(crate) fn wants_stream(&self) -> bool {
        self.stream.is_wanted()
    }

    /// Registers a watch. Returns true when a stream must be opened for it.
    pub(crate) fn add(&mut self, id: WatchId, request: WatchRequest) -> Result<bool, Error> {
        if id.0 == 0 || id.0 > i64::MAX as u64 {
            return Err(Error::InvalidArgument(format!("{id}: watch ids go from 1 to 2^63-1")));
        }
        let next_rev = request.requested_start_revision().max(0);
        match self.watches.entry(id) {
            Entry::Occupied(_) => return Err(Error::InvalidArgument(format!("{id} is already in use"))),
            Entry::Vacant(v) => {
                v.insert(Watcher {
                    request,
                    next_rev,
                    state: State::Pending,
                    created_once: false,
                    fragments: Vec::new(),
                });
            }
        }
        if self.stream.is_open() {
            self.send_create(id);
        }
        Ok(self.stream.want())
    }

    /// Cancels a watch; it ends with `Ok` once the server confirms (at once when
    /// no stream carries it).
    pub(crate) fn cancel(&mut self, id: WatchId, out: &mut VecDeque<Output>) {
        let Some(w) = self.watches.get_mut(&id) else { return };
        match w.state {
            State::Pending => {
                self.watches.remove(&id);
                out.push_back(Output::Event(Event::Watch { id, update: WatchUpdate::Ended(Ok(())) }));
            }
            State::Creating | State::Active => {
                w.state = State::Cancelling;
                w.fragments.clear();
                let cancel =
                    pb::watch_request::RequestUnion::CancelRequest(pb::WatchCancelRequest { watch_id: id.0 as i64 });
                self.push_request(cancel);
            }
            State::Cancelling => {}
        }
    }

    /// Asks the server for a progress notification for every watch on the stream.
    pub(crate) fn request_progress(&mut self) {
        if self.stream.is_open() {
            self.push_request(pb::watch_request::RequestUnion::ProgressRequest(pb::WatchProgressRequest {}));
        }
    }

    /// A new stream is opening as `call`: returns the creates of every watch to
    /// send as its first bytes.
    pub(crate) fn stream_opened(&mut self, call: CallId) -> Bytes {
        self.creating.clear();
        let mut pending: Vec<WatchId> =
            self.watches.iter().filter(|(_, w)| w.state == State::Pending).map(|(id, _)| *id).collect();
        pending.sort_unstable(); // oldest first: deterministic and fair
        for id in pending {
            self.send_create(id);
        }
        self.stream.opened(call)
    }

    /// Bytes to send on the open stream, if any.
    pub(crate) fn take_write(&mut self) -> Option<(CallId, Bytes)> {
        self.stream.take_write()
    }

    /// The stream ended with `error`. Watches that were being cancelled end;
    /// the others wait for the next stream. Returns the wait before reopening, or
    /// `None` when the error is final (then every watch has ended with it).
    pub(crate) fn stream_ended(&mut self, error: Error, out: &mut VecDeque<Output>) -> Option<Duration> {
        self.creating.clear();
        let retry = should_retry(&error);
        let mut ids: Vec<WatchId> = self.watches.keys().copied().collect();
        ids.sort_unstable(); // events in a reproducible order
        for id in ids {
            let w = self.watches.get_mut(&id).expect("id taken from the map just above");
            if w.state == State::Cancelling || !retry {
                let cancelled = w.state == State::Cancelling;
                self.watches.remove(&id);
                let result = if cancelled { Ok(()) } else { Err(error.clone()) };
                out.push_back(Output::Event(Event::Watch { id, update: WatchUpdate::Ended(result) }));
            } else {
                w.state = State::Pending;
                w.fragments.clear();
            }
        }
        self.stream.ended(!self.watches.is_empty())
    }

    /// Ends every watch (the client is closing).
    pub(crate) fn close(&mut self, out: &mut VecDeque<Output>) -> Option<CallId> {
        let call = self.stream.close();
        self.creating.clear();
        let mut ids: Vec<WatchId> = self.watches.drain().map(|(id, _)| id).collect();
        ids.sort_unstable();
        for id in ids {
            out.push_back(Output::Event(Event::Watch { id, update: WatchUpdate::Ended(Err(Error::Closed)) }));
        }
        call
    }

    /// One message received on the stream.
    pub(crate) fn handle_message(&mut self, message: Bytes, out: &mut VecDeque<Output>) -> Result<(), Error> {
        let r = crate::rpc::decode_pb::<pb::WatchResponse>(message)?;
        let revision = r.header.as_ref().map_or(0, |h| h.revision);
        if r.created {
            return self.handle_created(r, revision, out);
        }
        if r.watch_id == -1 {
            // The answer to a progress request covers every watch on the stream.
            if !r.canceled && r.events.is_empty() {
                let mut ids: Vec<WatchId> =
                    self.watches.iter().filter(|(_, w)| w.state == State::Active).map(|(id, _)| *id).collect();
                ids.sort_unstable();
                for id in ids {
                    out.push_back(Output::Event(Event::Watch { id, update: WatchUpdate::Progress { revision } }));
                }
            }
            return Ok(());
        }
        let id = WatchId(r.watch_id as u64);
        let Some(w) = self.watches.get_mut(&id) else {
            return Ok(()); // a watch that already ended; its cancel is on its way
        };
        if r.canceled {
            let result = if r.compact_revision != 0 {
                Err(Error::Compacted { compact_revision: Some(r.compact_revision) })
            } else if w.state == State::Cancelling {
                Ok(())
            } else {
                Err(cancel_error(&r.cancel_reason))
            };
            self.watches.remove(&id);
            self.creating.retain(|c| *c != id);
            out.push_back(Output::Event(Event::Watch { id, update: WatchUpdate::Ended(result) }));
            return Ok(());
        }
        if w.state == State::Cancelling {
            return Ok(()); // nothing reaches the application after cancel
        }
        if r.fragment {
            w.fragments.extend(r.events);
            return Ok(());
        }
        let mut raw = std::mem::take(&mut w.fragments);
        raw.extend(r.events);
        if raw.is_empty() {
            // A periodic progress notification: sent only once the watch has caught up.
            w.next_rev = w.next_rev.max(revision + 1);
            out.push_back(Output::Event(Event::Watch { id, update: WatchUpdate::Progress { revision } }));
            return Ok(());
        }
        let floor = w.next_rev;
        let events: Vec<WatchEvent> = raw
            .into_iter()
            .map(WatchEvent::from_pb)
            .filter(|e| e.revision() >= floor) // never deliver a revision twice
            .collect();
        let Some(last) = events.last() else { return Ok(()) };
        w.next_rev = w.next_rev.max(last.revision() + 1);
        let update = WatchUpdate::Events(WatchResponse { revision, events });
        out.push_back(Output::Event(Event::Watch { id, update }));
        Ok(())
    }

    fn handle_created(&mut self, r: pb::WatchResponse, revision: i64, out: &mut VecDeque<Output>) -> Result<(), Error> {
        let id = if r.watch_id == -1 {
            self.creating.pop_front()
        } else {
            let id = WatchId(r.watch_id as u64);
            self.creating.retain(|c| *c != id);
            Some(id)
        };
        let Some(id) = id else { return Ok(()) };
        let Some(w) = self.watches.get_mut(&id) else { return Ok(()) };
        if r.canceled {
            let result = if w.state == State::Cancelling { Ok(()) } else { Err(cancel_error(&r.cancel_reason)) };
            self.watches.remove(&id);
            out.push_back(Output::Event(Event::Watch { id, update: WatchUpdate::Ended(result) }));
            return Ok(());
        }
        // The stream works: the next break starts its backoff afresh.
        self.stream.worked();
        if w.state == State::Creating {
            w.state = State::Active;
        }
        if w.next_rev == 0 {
            // A watch "from now" starts after the revision the server created it at.
            w.next_rev = revision + 1;
        }
        if !w.created_once {
            w.created_once = true;
            out.push_back(Output::Event(Event::Watch { id, update: WatchUpdate::Created { revision } }));
        }
        Ok(())
    }

    fn send_create(&mut self, id: WatchId) {
        let Some(w) = self.watches.get_mut(&id) else { return };
        w.state = State::Creating;
        let create = w.request.to_create(id, w.next_rev);
        self.creating.push_back(id);
        self.push_request(pb::watch_request::RequestUnion::CreateRequest(create));
    }

    fn push_request(&mut self, union: pb::watch_request::RequestUnion) {
        self.stream.push(&pb::WatchRequest { request_union: Some(union) });
    }
}

/// Maps a server's cancel reason (e.g. "etcdserver: permission denied") to an error.
fn cancel_error(reason: &str) -> Error {
    match Error::from_status(Status::new(Code::Unknown, reason)) {
        Error::Server(_) => Error::WatchCanceled { reason: reason.to_owned() },
        e => e,
    }
}

/// Whether a broken stream is worth reopening: transport trouble and server
/// unavailability are; a member without a leader (with `hasleader`), auth and
/// permission refusals are final for the watches.
fn should_retry(error: &Error) -> bool {
    match error {
        Error::NoLeader => false,
        Error::Closed => false,
        Error::Malformed { .. } | Error::MessageTooLarge { .. } | Error::DeadlineExceeded => true,
        Error::Server(s) => matches!(s.code, Code::Ok | Code::Internal | Code::Unknown | Code::Cancelled),
        e => e.is_transient(),
    }
}

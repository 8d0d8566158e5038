//! The client state machine: endpoints and their connections, requests and the
//! calls that carry them, deadlines. It is driven by `handle_*` inputs stamped
//! with the caller's time and drained with [`Core::poll_output`].

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::config::{Config, Endpoint};
use crate::error::Error;
use crate::grpc::{Code, FrameDecoder, RequestHead, Status};
use crate::ids::{CallId, EndpointId, RequestId};
use crate::keeper::{Keeper, LeaseUpdate, KEEP_ALIVE_PATH};
use crate::rpc::watch::{WatchId, WatchRequest, WatchUpdate};
use crate::rpc::UnaryRequest;
use crate::stream::Stream;
use crate::watch::{WatchMux, WATCH_PATH};

/// Per-request options.
///
/// ```
/// use aetcd_core::CallOptions;
/// use std::time::Duration;
/// let opts = CallOptions::new().timeout(Duration::from_secs(2));
/// # let _ = opts;
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallOptions {
    timeout: Option<Duration>,
    no_deadline: bool,
}

impl CallOptions {
    /// Defaults: the client's request timeout.
    pub fn new() -> CallOptions {
        CallOptions::default()
    }

    /// This request's deadline, counted from when it is started.
    pub fn timeout(mut self, d: Duration) -> CallOptions {
        self.timeout = Some(d);
        self.no_deadline = false;
        self
    }

    /// No deadline at all, not even the client's default: for calls that wait
    /// by design (a lock, a campaign).
    pub fn no_deadline(mut self) -> CallOptions {
        self.timeout = None;
        self.no_deadline = true;
        self
    }
}

/// Something the driver must do, or an event for the application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// Open a connection (TCP, then HTTP/2) to this endpoint, then report
    /// [`Core::handle_connected`] or [`Core::handle_connect_failed`].
    Connect {
        /// Which endpoint ([`Core::endpoint`] has its address).
        endpoint: EndpointId,
    },
    /// Close the connection to this endpoint; its calls are already ended.
    Disconnect {
        /// Which endpoint.
        endpoint: EndpointId,
    },
    /// Open a call (an HTTP/2 stream) on the endpoint's connection and send `message`.
    OpenCall {
        /// The new call.
        call: CallId,
        /// The connection to open it on.
        endpoint: EndpointId,
        /// Path and metadata.
        head: RequestHead,
        /// The first gRPC frame to send.
        message: Bytes,
        /// True when the client sends nothing after `message` (unary calls).
        end_stream: bool,
    },
    /// Send more bytes (whole gRPC frames) on an open streaming call.
    SendMessage {
        /// The call.
        call: CallId,
        /// One or more gRPC frames.
        message: Bytes,
        /// True when the client sends nothing more on this call.
        end_stream: bool,
    },
    /// Reset a call's stream (cancel); nothing more will be reported for it.
    ResetCall {
        /// The call.
        call: CallId,
    },
    /// An event for the application.
    Event(Event),
}

/// What happened, for the application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A unary request finished: its answer message (decode it with the request
    /// type's [`Unary::decode`](crate::rpc::Unary::decode)) or why it failed.
    Unary {
        /// The request.
        id: RequestId,
        /// The answer message, or the error.
        result: Result<Bytes, Error>,
    },
    /// Something happened to a kept lease.
    Lease {
        /// The lease id.
        id: i64,
        /// What happened.
        update: LeaseUpdate,
    },
    /// Something happened to a watch.
    Watch {
        /// The watch.
        id: WatchId,
        /// What happened.
        update: WatchUpdate,
    },
}

/// Why the core wants to be woken at [`Core::poll_timeout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum TimerReason {
    /// A request's deadline.
    RequestDeadline(RequestId),
    /// A connection attempt's deadline.
    ConnectTimeout(EndpointId),
    /// The end of the wait before reconnecting to an endpoint.
    ReconnectBackoff(EndpointId),
    /// The end of the wait before reopening the watch stream.
    WatchReconnect,
    /// The end of the wait before reopening the keep-alive stream.
    KeepAliveReconnect,
    /// A kept lease's renewal is due.
    LeaseRenew(i64),
    /// A kept lease's TTL runs out unless a renewal was confirmed.
    LeaseDeadline(i64),
}

/// The two long-lived streams of a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamKind {
    Watch,
    KeepAlive,
}

impl StreamKind {
    fn reconnect_timer(self) -> TimerReason {
        match self {
            StreamKind::Watch => TimerReason::WatchReconnect,
            StreamKind::KeepAlive => TimerReason::KeepAliveReconnect,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conn {
    Idle,
    Connecting,
    Connected,
    Backoff,
}

#[derive(Debug)]
struct EndpointState {
    endpoint: Endpoint,
    conn: Conn,
    backoff: Duration,
    /// Failed since the last success; cleared when a connection is made.
    failed: bool,
}

#[derive(Debug)]
enum Kind {
    Unary(UnaryRequest),
    /// Resolves as soon as a connection is up (the answer is an empty message).
    Connect,
}

#[derive(Debug)]
struct Request {
    kind: Kind,
    deadline: Option<Instant>,
    call: Option<CallId>,
}

#[derive(Debug)]
enum CallKind {
    Unary { request: RequestId, message: Option<Bytes> },
    Stream(StreamKind),
}

#[derive(Debug)]
struct Call {
    kind: CallKind,
    endpoint: EndpointId,
    decoder: FrameDecoder,
    headers_seen: bool,
}

/// The sans-IO etcd client.
///
/// See the [crate docs](crate) for the driving contract.
#[derive(Debug)]
pub struct Core {
    config: Config,
    endpoints: Vec<EndpointState>,
    next_endpoint: usize,
    next_call: u64,
    requests: HashMap<RequestId, Request>,
    calls: HashMap<CallId, Call>,
    waiting: VecDeque<RequestId>,
    timers: BTreeSet<(Instant, TimerReason)>,
    outputs: VecDeque<Output>,
    watch: WatchMux,
    keeper: Keeper,
    now: Option<Instant>,
    closed: bool,
}

impl Core {
    /// A core for this configuration. Nothing happens until the first request.
    pub fn new(config: Config) -> Core {
        let endpoints = config
            .endpoints
            .iter()
            .map(|e| EndpointState {
                endpoint: e.clone(),
                conn: Conn::Idle,
                backoff: config.reconnect_backoff_min,
                failed: false,
            })
            .collect();
        let watch = WatchMux::new(config.reconnect_backoff_min, config.reconnect_backoff_max);
        let keeper = Keeper::new(config.reconnect_backoff_min, config.reconnect_backoff_max);
        Core {
            watch,
            keeper,
            config,
            endpoints,
            next_endpoint: 0,
            next_call: 1,
            requests: HashMap::new(),
            calls: HashMap::new(),
            waiting: VecDeque::new(),
            timers: BTreeSet::new(),
            outputs: VecDeque::new(),
            now: None,
            closed: false,
        }
    }

    // ----- application commands -----

    /// Starts a unary request under the caller-chosen `id`. Its outcome arrives as
    /// [`Event::Unary`]. Errors here are usage errors and nothing was started.
    pub fn start_unary(
        &mut self,
        now: Instant,
        id: RequestId,
        unary: UnaryRequest,
        options: CallOptions,
    ) -> Result<(), Error> {
        let now = self.tick(now);
        if self.closed {
            return Err(Error::Closed);
        }
        if self.requests.contains_key(&id) {
            return Err(Error::InvalidArgument(format!("{id} is already in use")));
        }
        let body = unary.frame.len().saturating_sub(crate::grpc::frame::PREFIX_LEN);
        if body > self.config.max_encoding_message_size {
            return Err(Error::MessageTooLarge { len: body, limit: self.config.max_encoding_message_size });
        }
        self.start(now, id, Kind::Unary(unary), options);
        Ok(())
    }

    /// Makes sure a connection is up: answers [`Event::Unary`] with an empty message
    /// once one is (at once if one already is), or with the reason none could be made.
    /// Clients call this at creation so a wrong endpoint shows up there.
    pub fn connect(&mut self, now: Instant, id: RequestId, options: CallOptions) -> Result<(), Error> {
        let now = self.tick(now);
        if self.closed {
            return Err(Error::Closed);
        }
        if self.requests.contains_key(&id) {
            return Err(Error::InvalidArgument(format!("{id} is already in use")));
        }
        self.start(now, id, Kind::Connect, options);
        Ok(())
    }

    fn start(&mut self, now: Instant, id: RequestId, kind: Kind, options: CallOptions) {
        // A deadline too far away to represent (e.g. `Duration::MAX`) is no deadline.
        let timeout = if options.no_deadline { None } else { options.timeout.or(self.config.request_timeout) };
        let deadline = timeout.and_then(|d| now.checked_add(d));
        if let Some(d) = deadline {
            self.timers.insert((d, TimerReason::RequestDeadline(id)));
        }
        self.requests.insert(id, Request { kind, deadline, call: None });
        match self.ready_endpoint() {
            Some(ep) => self.open_call(now, id, ep),
            None => {
                self.waiting.push_back(id);
                self.ensure_connecting(now);
            }
        }
    }

    /// Starts watching under the caller-chosen `id` (from 1). Updates arrive as
    /// [`Event::Watch`]: `Created` once, then `Events` and `Progress`, and finally
    /// `Ended`. The watch survives stream and connection loss: it is re-created
    /// from the next revision it needs, and nothing is delivered twice.
    pub fn watch(&mut self, now: Instant, id: WatchId, request: WatchRequest) -> Result<(), Error> {
        let now = self.tick(now);
        if self.closed {
            return Err(Error::Closed);
        }
        if self.watch.add(id, request)? {
            self.open_stream(now, StreamKind::Watch);
        }
        Ok(())
    }

    /// Keeps lease `id` (granted with `ttl` seconds) alive: renewed a third of its
    /// TTL after each confirmation, over one keep-alive stream for every lease,
    /// across reconnects. Updates arrive as [`Event::Lease`]; a lease that is gone
    /// or whose TTL passed unconfirmed is reported `Lost` and no longer kept.
    pub fn keep_alive(&mut self, now: Instant, id: i64, ttl: i64) -> Result<(), Error> {
        let now = self.tick(now);
        if self.closed {
            return Err(Error::Closed);
        }
        if self.keeper.add(now, id, ttl)? {
            self.open_stream(now, StreamKind::KeepAlive);
        }
        Ok(())
    }

    /// Stops keeping lease `id` alive (the lease then expires after its TTL,
    /// unless revoked). Returns whether it was kept.
    pub fn stop_keep_alive(&mut self, now: Instant, id: i64) -> bool {
        self.tick(now);
        self.keeper.remove(id)
    }

    /// Leases being kept alive.
    pub fn kept_leases(&self) -> usize {
        self.keeper.len()
    }

    /// Cancels a watch. It ends with `Ended(Ok(()))` once the server confirms; no
    /// events are reported for it after this call.
    pub fn cancel_watch(&mut self, now: Instant, id: WatchId) {
        self.tick(now);
        self.watch.cancel(id, &mut self.outputs);
    }

    /// Asks the server to report progress (its current revision) to every watch.
    pub fn request_progress(&mut self, now: Instant) {
        self.tick(now);
        self.watch.request_progress();
    }

    /// The first revision a watch has not delivered yet: where it resumes after a
    /// reconnect (0 while unknown). `None` for an unknown or ended watch.
    pub fn watch_next_revision(&self, id: WatchId) -> Option<i64> {
        self.watch.next_revision(id)
    }

    /// Watches not yet ended.
    pub fn watch_count(&self) -> usize {
        self.watch.len()
    }

    /// Abandons a request: its call is reset and no event is reported for it.
    /// Unknown or finished ids are ignored.
    pub fn cancel(&mut self, now: Instant, id: RequestId) {
        self.tick(now);
        if let Some(req) = self.remove_request(id) {
            if let Some(call) = req.call {
                self.calls.remove(&call);
                self.outputs.push_back(Output::ResetCall { call });
            }
        }
    }

    /// Closes the client: every request fails with [`Error::Closed`] and every
    /// connection is dropped. Later requests are refused.
    pub fn close(&mut self, now: Instant) {
        self.tick(now);
        if self.closed {
            return;
        }
        self.closed = true;
        let mut ids: Vec<RequestId> = self.requests.keys().copied().collect();
        ids.sort_unstable(); // events in a reproducible order
        for id in ids {
            self.fail_request(id, Error::Closed);
        }
        let streams = [self.watch.close(&mut self.outputs), self.keeper.close(&mut self.outputs)];
        for call in streams.into_iter().flatten() {
            self.calls.remove(&call);
            self.outputs.push_back(Output::ResetCall { call });
        }
        for i in 0..self.endpoints.len() {
            if matches!(self.endpoints[i].conn, Conn::Connected | Conn::Connecting) {
                self.outputs.push_back(Output::Disconnect { endpoint: EndpointId(i as u32) });
            }
            self.endpoints[i].conn = Conn::Idle;
        }
        self.timers.clear();
    }

    // ----- inputs from the driver -----

    /// The connection to `endpoint` is up and can carry calls.
    pub fn handle_connected(&mut self, now: Instant, endpoint: EndpointId) {
        let now = self.tick(now);
        let Some(state) = self.endpoints.get_mut(endpoint.index()) else { return };
        if state.conn != Conn::Connecting {
            return;
        }
        state.conn = Conn::Connected;
        state.failed = false;
        state.backoff = self.config.reconnect_backoff_min;
        self.remove_timer(TimerReason::ConnectTimeout(endpoint));
        while let Some(id) = self.waiting.pop_front() {
            if self.requests.contains_key(&id) {
                self.open_call(now, id, endpoint);
            }
        }
        for kind in [StreamKind::Watch, StreamKind::KeepAlive] {
            let waiting = self.timers.iter().any(|(_, r)| *r == kind.reconnect_timer());
            if self.wants_stream(kind) && !waiting {
                self.open_stream(now, kind);
            }
        }
    }

    /// Connecting to `endpoint` failed with `reason` (as the transport reported it).
    pub fn handle_connect_failed(&mut self, now: Instant, endpoint: EndpointId, reason: impl Into<String>) {
        let now = self.tick(now);
        let Some(state) = self.endpoints.get(endpoint.index()) else { return };
        if state.conn != Conn::Connecting {
            return;
        }
        let error = Error::ConnectFailed { endpoint: state.endpoint.to_string(), reason: reason.into() };
        self.connect_failed(now, endpoint, error);
    }

    /// The connection to `endpoint` ended (closed, reset, GOAWAY, I/O error).
    /// Calls on it fail with [`Error::ConnectionLost`].
    pub fn handle_disconnected(&mut self, now: Instant, endpoint: EndpointId, reason: impl Into<String>) {
        let now = self.tick(now);
        let Some(state) = self.endpoints.get_mut(endpoint.index()) else { return };
        match state.conn {
            Conn::Connected => state.conn = Conn::Idle,
            Conn::Connecting => {
                let error = Error::ConnectFailed { endpoint: state.endpoint.to_string(), reason: reason.into() };
                self.connect_failed(now, endpoint, error);
                return;
            }
            Conn::Idle | Conn::Backoff => return,
        }
        let reason = reason.into();
        let mut lost: Vec<CallId> =
            self.calls.iter().filter(|(_, c)| c.endpoint == endpoint).map(|(id, _)| *id).collect();
        lost.sort_unstable(); // events in a reproducible order
        for call in lost {
            self.finish_call(call, Err(Error::ConnectionLost { reason: reason.clone() }));
        }
        if !self.waiting.is_empty() {
            self.ensure_connecting(now);
        }
    }

    /// The response head of `call`: its HTTP status and headers as name/value pairs.
    pub fn handle_headers<'a, I>(&mut self, now: Instant, call: CallId, status: u16, headers: I)
    where
        I: IntoIterator<Item = (&'a str, &'a [u8])>,
    {
        self.tick(now);
        let Some(c) = self.calls.get_mut(&call) else { return };
        if c.headers_seen {
            self.fail_call(call, Error::malformed("response headers received twice"));
            return;
        }
        c.headers_seen = true;
        let mut content_type_ok = false;
        let mut grpc_status = None;
        let mut grpc_message: &[u8] = b"";
        for (name, value) in headers {
            if name.eq_ignore_ascii_case("content-type") {
                content_type_ok = value.starts_with(b"application/grpc");
            } else if name.eq_ignore_ascii_case("grpc-status") {
                grpc_status = Some(value);
            } else if name.eq_ignore_ascii_case("grpc-message") {
                grpc_message = value;
            }
        }
        if status != 200 {
            let code = match status {
                400 => Code::Internal,
                401 => Code::Unauthenticated,
                403 => Code::PermissionDenied,
                404 => Code::Unimplemented,
                429 | 502..=504 => Code::Unavailable,
                _ => Code::Unknown,
            };
            let error = match code {
                Code::Unavailable => Error::Unavailable { message: format!("HTTP status {status}") },
                _ => Error::malformed(format!("HTTP status {status} instead of a gRPC response")),
            };
            self.fail_call(call, error);
            return;
        }
        if let Some(code) = grpc_status {
            // Trailers-only response: the status is in the headers and the call is over.
            let status = Status::from_headers([("grpc-status", code), ("grpc-message", grpc_message)]);
            self.finish_with_status(call, status);
            return;
        }
        if !content_type_ok {
            self.fail_call(call, Error::malformed("response content-type is not application/grpc"));
        }
    }

    /// A DATA chunk of `call`, in whatever split the transport produced.
    pub fn handle_data(&mut self, now: Instant, call: CallId, data: Bytes) {
        self.tick(now);
        let Some(c) = self.calls.get_mut(&call) else { return };
        if !c.headers_seen {
            self.fail_call(call, Error::malformed("data before response headers"));
            return;
        }
        c.decoder.push(data);
        loop {
            let Some(c) = self.calls.get_mut(&call) else { return };
            match c.decoder.next_message() {
                Ok(None) => return,
                Ok(Some(message)) => match &mut c.kind {
                    CallKind::Unary { message: slot, .. } => {
                        if slot.is_some() {
                            self.fail_call(call, Error::malformed("unary call answered with more than one message"));
                            return;
                        }
                        *slot = Some(message);
                    }
                    CallKind::Stream(kind) => {
                        let handled = match kind {
                            StreamKind::Watch => self.watch.handle_message(message, &mut self.outputs),
                            StreamKind::KeepAlive => {
                                let now = self.now.unwrap_or(now);
                                self.keeper.handle_message(now, message, &mut self.outputs)
                            }
                        };
                        if let Err(e) = handled {
                            self.fail_call(call, e);
                            return;
                        }
                    }
                },
                Err(e) => {
                    self.fail_call(call, Error::from_frame(e));
                    return;
                }
            }
        }
    }

    /// The trailers that end `call`.
    pub fn handle_trailers<'a, I>(&mut self, now: Instant, call: CallId, trailers: I)
    where
        I: IntoIterator<Item = (&'a str, &'a [u8])>,
    {
        self.tick(now);
        if !self.calls.contains_key(&call) {
            return;
        }
        let status = Status::from_headers(trailers);
        self.finish_with_status(call, status);
    }

    /// The peer reset the stream of `call` with this HTTP/2 error code.
    pub fn handle_reset(&mut self, now: Instant, call: CallId, code: u32) {
        self.tick(now);
        self.finish_call(call, Err(Error::StreamReset { code }));
    }

    /// The stream of `call` broke with the connection under it (I/O error,
    /// GOAWAY, or the stream ended without trailers).
    pub fn handle_call_lost(&mut self, now: Instant, call: CallId, reason: impl Into<String>) {
        self.tick(now);
        if self.calls.contains_key(&call) {
            self.finish_call(call, Err(Error::ConnectionLost { reason: reason.into() }));
        }
    }

    /// Fires every timer that is due at `now`. Harmless when nothing is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.tick(now);
        self.keeper.handle_timeout(now, &mut self.outputs);
        while let Some(&(at, reason)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            match reason {
                TimerReason::RequestDeadline(id) => {
                    if let Some(call) = self.requests.get(&id).and_then(|r| r.call) {
                        self.outputs.push_back(Output::ResetCall { call });
                    }
                    self.fail_request(id, Error::DeadlineExceeded);
                }
                TimerReason::ConnectTimeout(ep) => {
                    if self.endpoints[ep.index()].conn == Conn::Connecting {
                        self.outputs.push_back(Output::Disconnect { endpoint: ep });
                        let endpoint = self.endpoints[ep.index()].endpoint.to_string();
                        self.connect_failed(now, ep, Error::ConnectTimeout { endpoint });
                    }
                }
                TimerReason::ReconnectBackoff(ep) => {
                    let state = &mut self.endpoints[ep.index()];
                    if state.conn == Conn::Backoff {
                        state.conn = Conn::Idle;
                        if !self.waiting.is_empty() || self.watch.wants_stream() || self.keeper.wants_stream() {
                            self.ensure_connecting(now);
                        }
                    }
                }
                TimerReason::WatchReconnect => self.open_stream(now, StreamKind::Watch),
                TimerReason::KeepAliveReconnect => self.open_stream(now, StreamKind::KeepAlive),
                TimerReason::LeaseRenew(_) | TimerReason::LeaseDeadline(_) => {}
            }
        }
    }

    // ----- outputs -----

    /// The next thing to do, `None` when there is nothing until [`Core::poll_timeout`]
    /// or the next input.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(out) = self.outputs.pop_front() {
            return Some(out);
        }
        // Stream writes queued meanwhile go out as one message per stream.
        let (call, message) = self.watch.take_write().or_else(|| self.keeper.take_write())?;
        Some(Output::SendMessage { call, message, end_stream: false })
    }

    /// When to call [`Core::handle_timeout`] next, if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let own = self.timers.first().map(|(at, _)| *at);
        match (own, self.keeper.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Why the core wants to wake at [`Core::poll_timeout`].
    pub fn timeout_reason(&self) -> Option<TimerReason> {
        let own = self.timers.first().copied();
        let lease = self.keeper.poll_timeout().zip(self.keeper.timeout_lease());
        match (own, lease) {
            (Some((a, r)), Some((b, _))) if a <= b => Some(r),
            (_, Some((_, (id, deadline)))) => {
                Some(if deadline { TimerReason::LeaseDeadline(id) } else { TimerReason::LeaseRenew(id) })
            }
            (own, None) => own.map(|(_, r)| r),
        }
    }

    /// The address of an endpoint named in an output.
    pub fn endpoint(&self, id: EndpointId) -> &Endpoint {
        &self.endpoints[id.index()].endpoint
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Requests not yet finished.
    pub fn requests_in_flight(&self) -> usize {
        self.requests.len()
    }

    /// True after [`Core::close`].
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    // ----- internals -----

    fn tick(&mut self, now: Instant) -> Instant {
        let now = match self.now {
            Some(prev) if prev > now => prev,
            _ => now,
        };
        self.now = Some(now);
        now
    }

    fn remove_timer(&mut self, reason: TimerReason) {
        // Timers other than request deadlines are few (one per endpoint), so a scan is fine.
        self.timers.retain(|(_, r)| *r != reason);
    }

    fn ready_endpoint(&mut self) -> Option<EndpointId> {
        let n = self.endpoints.len();
        for k in 0..n {
            let i = (self.next_endpoint + k) % n;
            if self.endpoints[i].conn == Conn::Connected {
                self.next_endpoint = (i + 1) % n;
                return Some(EndpointId(i as u32));
            }
        }
        None
    }

    /// Starts a connection attempt unless one is under way; prefers endpoints that
    /// have not failed since they last worked.
    fn ensure_connecting(&mut self, now: Instant) {
        if self.closed || self.endpoints.iter().any(|e| e.conn == Conn::Connecting) {
            return;
        }
        let n = self.endpoints.len();
        let pick = (0..n)
            .map(|k| (self.next_endpoint + k) % n)
            .filter(|&i| self.endpoints[i].conn == Conn::Idle)
            .min_by_key(|&i| self.endpoints[i].failed);
        if let Some(i) = pick {
            self.endpoints[i].conn = Conn::Connecting;
            let ep = EndpointId(i as u32);
            if let Some(at) = now.checked_add(self.config.connect_timeout) {
                self.timers.insert((at, TimerReason::ConnectTimeout(ep)));
            }
            self.outputs.push_back(Output::Connect { endpoint: ep });
        }
        // Otherwise every endpoint waits out its backoff; the backoff timer retries.
    }

    fn connect_failed(&mut self, now: Instant, ep: EndpointId, error: Error) {
        self.remove_timer(TimerReason::ConnectTimeout(ep));
        let max = self.config.reconnect_backoff_max;
        let state = &mut self.endpoints[ep.index()];
        state.conn = Conn::Backoff;
        state.failed = true;
        let wait = state.backoff;
        state.backoff = state.backoff.saturating_mul(2).min(max);
        if let Some(at) = now.checked_add(wait) {
            self.timers.insert((at, TimerReason::ReconnectBackoff(ep)));
        }
        // Try an endpoint that has not failed yet; when none is left, the waiting
        // requests learn why instead of waiting out their deadlines.
        let untried = self.endpoints.iter().any(|e| e.conn == Conn::Idle && !e.failed);
        if untried {
            self.ensure_connecting(now);
        } else {
            while let Some(id) = self.waiting.pop_front() {
                self.fail_request(id, error.clone());
            }
        }
    }

    fn open_call(&mut self, now: Instant, id: RequestId, endpoint: EndpointId) {
        let Some(req) = self.requests.get_mut(&id) else { return };
        if req.call.is_some() {
            // Queued twice: an earlier request under the same id ended while waiting
            // (cancel, deadline) and left its id in `waiting`. One call per request.
            return;
        }
        let unary = match &req.kind {
            Kind::Unary(u) => u,
            Kind::Connect => {
                self.remove_request(id);
                self.outputs.push_back(Output::Event(Event::Unary { id, result: Ok(Bytes::new()) }));
                return;
            }
        };
        let call = CallId(self.next_call);
        self.next_call += 1;
        req.call = Some(call);
        let head = RequestHead {
            path: unary.method.path(),
            timeout: req.deadline.map(|d| d.saturating_duration_since(now)),
            token: None,
            require_leader: self.config.require_leader,
        };
        let message = unary.frame.clone();
        self.calls.insert(
            call,
            Call {
                kind: CallKind::Unary { request: id, message: None },
                endpoint,
                decoder: FrameDecoder::new(self.config.max_decoding_message_size),
                headers_seen: false,
            },
        );
        self.outputs.push_back(Output::OpenCall { call, endpoint, head, message, end_stream: true });
    }

    fn finish_with_status(&mut self, call: CallId, status: Option<Status>) {
        let Some(c) = self.calls.get_mut(&call) else { return };
        let result = match (status, &mut c.kind) {
            (None, _) => Err(Error::malformed("call ended without grpc-status")),
            (Some(s), CallKind::Unary { message, .. }) if s.is_ok() => match message.take() {
                Some(m) if c.decoder.is_idle() => Ok(m),
                Some(_) => Err(Error::malformed("call ended inside a message")),
                None => Err(Error::malformed("call ended without an answer message")),
            },
            (Some(s), CallKind::Stream(_)) if s.is_ok() => {
                Err(Error::ConnectionLost { reason: "the server ended the stream".into() })
            }
            (Some(s), _) => Err(Error::from_status(s)),
        };
        self.finish_call(call, result);
    }

    /// Ends a call because of a local decision (bad input): reset its stream too.
    fn fail_call(&mut self, call: CallId, error: Error) {
        self.outputs.push_back(Output::ResetCall { call });
        self.finish_call(call, Err(error));
    }

    fn finish_call(&mut self, call: CallId, result: Result<Bytes, Error>) {
        let Some(c) = self.calls.remove(&call) else { return };
        match c.kind {
            CallKind::Unary { request, .. } => {
                if self.remove_request(request).is_some() {
                    self.outputs.push_back(Output::Event(Event::Unary { id: request, result }));
                }
            }
            CallKind::Stream(kind) => {
                let error = result.err().unwrap_or(Error::ConnectionLost { reason: "stream ended".into() });
                let wait = match kind {
                    StreamKind::Watch => self.watch.stream_ended(error, &mut self.outputs),
                    StreamKind::KeepAlive => self.keeper.stream_ended(),
                };
                // Every input records `now` before it can end a call.
                if let (Some(wait), Some(now)) = (wait, self.now) {
                    self.remove_timer(kind.reconnect_timer());
                    let at = now.checked_add(wait).unwrap_or(now);
                    self.timers.insert((at, kind.reconnect_timer()));
                }
            }
        }
    }

    fn wants_stream(&self, kind: StreamKind) -> bool {
        match kind {
            StreamKind::Watch => self.watch.wants_stream(),
            StreamKind::KeepAlive => self.keeper.wants_stream(),
        }
    }

    /// Opens a long-lived stream on a connected endpoint, or connects first.
    fn open_stream(&mut self, now: Instant, kind: StreamKind) {
        let open = match kind {
            StreamKind::Watch => self.watch.stream(),
            StreamKind::KeepAlive => self.keeper.stream(),
        };
        if self.closed || !self.wants_stream(kind) || matches!(open, Stream::Open(_)) {
            return;
        }
        let Some(endpoint) = self.ready_endpoint() else {
            self.ensure_connecting(now);
            return;
        };
        let call = CallId(self.next_call);
        self.next_call += 1;
        self.calls.insert(
            call,
            Call {
                kind: CallKind::Stream(kind),
                endpoint,
                decoder: FrameDecoder::new(self.config.max_decoding_message_size),
                headers_seen: false,
            },
        );
        let (path, message) = match kind {
            StreamKind::Watch => (WATCH_PATH, self.watch.stream_opened(call)),
            StreamKind::KeepAlive => (KEEP_ALIVE_PATH, self.keeper.stream_opened(now, call)),
        };
        // A member that loses its leader ends the stream instead of leaving it silent.
        let head = RequestHead { path, timeout: None, token: None, require_leader: true };
        self.outputs.push_back(Output::OpenCall { call, endpoint, head, message, end_stream: false });
    }

    fn fail_request(&mut self, id: RequestId, error: Error) {
        if let Some(req) = self.remove_request(id) {
            if let Some(call) = req.call {
                self.calls.remove(&call);
            }
            self.outputs.push_back(Output::Event(Event::Unary { id, result: Err(error) }));
        }
    }

    fn remove_request(&mut self, id: RequestId) -> Option<Request> {
        let req = self.requests.remove(&id)?;
        if let Some(d) = req.deadline {
            self.timers.remove(&(d, TimerReason::RequestDeadline(id)));
        }
        Some(req)
    }
}

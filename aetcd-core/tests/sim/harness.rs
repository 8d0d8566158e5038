//! The deterministic driver: a virtual clock, a fake etcd, scripted connection
//! outcomes and server answers with injectable faults, and a model of what the
//! core may and may not do, checked after every input.
//!
//! The harness plays the transport. It drains [`Core::poll_output`] after every
//! input, carries out each output (connect, open a call, reset a call), and
//! feeds the fake server's answer back as headers / data / trailers, split and
//! corrupted as the test asks. Every output is checked against a model of the
//! requests, calls and connections; any violation panics with a description.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use aetcd_core::grpc::{Code, RequestHead};
use aetcd_core::rpc::{Unary, UnaryRequest};
use aetcd_core::{CallId, CallOptions, Config, Core, Endpoint, EndpointId, Error, Event, Output, RequestId};
use bytes::Bytes;

use crate::fake_etcd::FakeEtcd;
use crate::rng::Rng;

/// Headers as the transport hands them over.
pub type Headers = Vec<(String, Vec<u8>)>;

/// One thing the transport reports about a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The response head.
    Headers(u16, Headers),
    /// A DATA chunk (the harness may split it further, see [`Split`]).
    Data(Bytes),
    /// The trailers that end the call.
    Trailers(Headers),
    /// The peer reset the stream with this HTTP/2 code.
    Reset(u32),
    /// The stream broke (`handle_call_lost`).
    Lost(String),
    /// The whole connection under the call dropped (`handle_disconnected`).
    Disconnect(String),
}

impl Step {
    /// True when the transport considers the call over after this step.
    fn ends_call(&self) -> bool {
        match self {
            Step::Headers(200, h) => h.iter().any(|(n, _)| n.eq_ignore_ascii_case("grpc-status")),
            Step::Headers(..) | Step::Data(_) => false,
            Step::Trailers(_) | Step::Reset(_) | Step::Lost(_) | Step::Disconnect(_) => true,
        }
    }
}

/// `content-type: application/grpc`.
pub fn grpc_headers() -> Headers {
    vec![("content-type".into(), b"application/grpc".to_vec())]
}

/// `grpc-status: 0`.
pub fn ok_trailers() -> Headers {
    vec![("grpc-status".into(), b"0".to_vec())]
}

/// A status as trailers, with the message percent-encoded as gRPC does.
pub fn status_trailers(code: Code, message: &str) -> Headers {
    let mut t = vec![("grpc-status".into(), code.as_u32().to_string().into_bytes())];
    if !message.is_empty() {
        t.push(("grpc-message".into(), percent_encode(message)));
    }
    t
}

/// gRPC's percent-encoding of `grpc-message`: bytes outside printable ASCII and `%`.
pub fn percent_encode(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in s.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b);
        } else {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    out
}

/// A successful answer: headers, the framed message, OK trailers.
pub fn ok_script(frame: Bytes) -> Vec<Step> {
    vec![Step::Headers(200, grpc_headers()), Step::Data(frame), Step::Trailers(ok_trailers())]
}

/// A trailers-only answer carrying `status` (what etcd sends for errors).
pub fn trailers_only(code: Code, message: &str) -> Vec<Step> {
    let mut h = grpc_headers();
    h.extend(status_trailers(code, message));
    vec![Step::Headers(200, h)]
}

/// Frames raw bytes with an explicit flag byte and announced length.
pub fn raw_frame(flag: u8, announced: u32, body: &[u8]) -> Bytes {
    let mut v = vec![flag];
    v.extend_from_slice(&announced.to_be_bytes());
    v.extend_from_slice(body);
    Bytes::from(v)
}

/// How the server answers the next call.
pub enum Reply {
    /// The fake etcd answers.
    Serve,
    /// The fake etcd answers, then the script is rewritten (a fault).
    Rewrite(Box<dyn FnOnce(Vec<Step>) -> Vec<Step>>),
    /// A canned script; the fake etcd never sees the request.
    Script(Vec<Step>),
    /// No answer, ever.
    Hold,
}

/// What happens to the next connection attempt to an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connect {
    /// `handle_connected` at once.
    Accept,
    /// `handle_connect_failed` at once with this reason.
    Refuse(String),
    /// Nothing: the test (or the connect timeout) decides.
    Hang,
}

/// How DATA steps are cut before they reach the core.
#[derive(Debug, Clone)]
pub enum Split {
    /// As they are.
    Whole,
    /// At these offsets (clamped, sorted; empty pieces are delivered too).
    At(Vec<usize>),
    /// One byte at a time.
    Bytewise,
    /// At random points.
    Random(Rng),
}

impl Split {
    fn pieces(&mut self, data: &Bytes) -> Vec<Bytes> {
        let cuts: Vec<usize> = match self {
            Split::Whole => Vec::new(),
            Split::At(at) => {
                let mut at: Vec<usize> = at.iter().map(|&a| a.min(data.len())).collect();
                at.sort_unstable();
                at
            }
            Split::Bytewise => (1..data.len()).collect(),
            Split::Random(rng) => {
                let n = rng.index(5);
                let mut at: Vec<usize> = (0..n).map(|_| rng.index(data.len() + 1)).collect();
                at.sort_unstable();
                at
            }
        };
        let mut out = Vec::with_capacity(cuts.len() + 1);
        let mut from = 0;
        for c in cuts {
            out.push(data.slice(from..c));
            from = c;
        }
        out.push(data.slice(from..));
        out
    }
}

/// The core's configuration, kept readable for the model (`Config` hides its fields).
#[derive(Debug, Clone)]
pub struct Setup {
    pub endpoints: usize,
    pub request_timeout: Option<Duration>,
    pub connect_timeout: Duration,
    pub max_decoding: usize,
    pub max_encoding: usize,
    pub require_leader: bool,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Default for Setup {
    /// One endpoint and the library's defaults.
    fn default() -> Setup {
        Setup {
            endpoints: 1,
            request_timeout: Some(Config::DEFAULT_REQUEST_TIMEOUT),
            connect_timeout: Config::DEFAULT_CONNECT_TIMEOUT,
            max_decoding: Config::DEFAULT_MAX_DECODING_MESSAGE_SIZE,
            max_encoding: Config::DEFAULT_MAX_ENCODING_MESSAGE_SIZE,
            require_leader: false,
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
        }
    }
}

impl Setup {
    /// The address of endpoint `i`: `127.0.0.<i+1>:2379`.
    pub fn address(i: usize) -> Endpoint {
        Endpoint::new(format!("127.0.0.{}", i + 1), 2379)
    }

    /// The `Config` this describes.
    pub fn config(&self) -> Config {
        let mut c = Config::new((0..self.endpoints).map(Setup::address).collect());
        c.request_timeout(self.request_timeout)
            .connect_timeout(self.connect_timeout)
            .max_decoding_message_size(self.max_decoding)
            .max_encoding_message_size(self.max_encoding)
            .require_leader(self.require_leader)
            .reconnect_backoff(self.backoff_min, self.backoff_max);
        c
    }
}

/// The transport's view of one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Idle,
    Connecting,
    Connected,
}

/// A call the core opened.
#[derive(Debug, Clone)]
pub struct CallRec {
    pub request: RequestId,
    pub endpoint: EndpointId,
    pub head: RequestHead,
    pub message: Bytes,
    /// Reset by the core or ended by the transport: nothing may mention it again.
    pub done: bool,
    pub reset: bool,
    /// Steps of the script delivered so far.
    pub delivered: usize,
    /// What is left to deliver.
    pub script: VecDeque<Step>,
}

/// A request the core must still answer.
#[derive(Debug, Clone)]
struct Live {
    /// `None` for `Core::connect` requests.
    unary: Option<UnaryRequest>,
    deadline: Option<Instant>,
    call: Option<CallId>,
}

/// The simulation.
pub struct Sim {
    pub core: Core,
    pub epoch: Instant,
    /// The harness clock: what the next input is stamped with.
    pub now: Instant,
    pub server: FakeEtcd,
    /// Deliver answers as soon as calls open (otherwise `deliver*` does it).
    pub auto: bool,
    pub split: Split,
    /// Per-call answers, in the order calls open; `default_reply` when empty.
    pub replies: VecDeque<Reply>,
    pub default_reply: fn() -> Reply,
    /// Per-endpoint outcomes of successive connection attempts; `Accept` when empty.
    pub connects: Vec<VecDeque<Connect>>,
    /// Every output, in order.
    pub log: Vec<Output>,
    /// Every event, in order.
    pub events: Vec<(RequestId, Result<Bytes, Error>)>,
    pub calls: BTreeMap<CallId, CallRec>,
    pub links: Vec<Link>,
    /// Connection attempts per endpoint, in order.
    pub connect_log: Vec<EndpointId>,
    live: BTreeMap<RequestId, Live>,
    cancelled: BTreeSet<RequestId>,
    /// The core's notion of now: the newest instant passed so far.
    newest: Instant,
    in_timeout: bool,
    closed: bool,
    pub setup: Setup,
}

impl Sim {
    /// A simulation of a core with this configuration.
    pub fn new(setup: Setup) -> Sim {
        let epoch = Instant::now(); // read once; everything else is epoch + durations
        let n = setup.endpoints;
        Sim {
            core: Core::new(setup.config()),
            epoch,
            now: epoch,
            server: FakeEtcd::new(),
            auto: true,
            split: Split::Whole,
            replies: VecDeque::new(),
            default_reply: || Reply::Serve,
            connects: vec![VecDeque::new(); n],
            log: Vec::new(),
            events: Vec::new(),
            calls: BTreeMap::new(),
            links: vec![Link::Idle; n],
            connect_log: Vec::new(),
            live: BTreeMap::new(),
            cancelled: BTreeSet::new(),
            newest: epoch,
            in_timeout: false,
            closed: false,
            setup,
        }
    }

    /// The instant `d` after the epoch.
    pub fn at(&self, d: Duration) -> Instant {
        self.epoch + d
    }

    /// Moves the harness clock forward (no input is given).
    pub fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    fn stamp(&mut self) -> Instant {
        self.newest = self.newest.max(self.now);
        self.now
    }

    // ----- commands -----

    /// Starts a typed request with default options; panics if the core refuses it.
    pub fn start<U: Unary>(&mut self, id: u64, request: &U) -> RequestId {
        let unary = request.encode().expect("a valid request");
        self.try_start(RequestId(id), unary, None).expect("start_unary");
        RequestId(id)
    }

    /// Starts a typed request with its own timeout; panics if the core refuses it.
    pub fn start_timeout<U: Unary>(&mut self, id: u64, request: &U, timeout: Duration) -> RequestId {
        let unary = request.encode().expect("a valid request");
        self.try_start(RequestId(id), unary, Some(timeout)).expect("start_unary");
        RequestId(id)
    }

    /// `start_unary` (with `CallOptions::timeout(t)` when `timeout` is set), checked
    /// against the model.
    pub fn try_start(&mut self, id: RequestId, unary: UnaryRequest, timeout: Option<Duration>) -> Result<(), Error> {
        let now = self.stamp();
        let result = self.core.start_unary(now, id, unary.clone(), options(timeout));
        let body = unary.frame.len().saturating_sub(aetcd_core::grpc::frame::PREFIX_LEN);
        let limit = self.setup.max_encoding;
        match &result {
            Ok(()) => {
                assert!(!self.closed, "start_unary accepted {id} after close");
                assert!(!self.live.contains_key(&id), "start_unary accepted {id}, which is in flight");
                assert!(body <= limit, "start_unary accepted a {body}-byte message over the {limit} limit");
                let deadline = self.deadline_for(timeout);
                self.live.insert(id, Live { unary: Some(unary), deadline, call: None });
                self.cancelled.remove(&id);
            }
            Err(Error::Closed) => assert!(self.closed, "start_unary said Closed before close"),
            Err(Error::InvalidArgument(_)) => assert!(self.live.contains_key(&id), "InvalidArgument for fresh {id}"),
            Err(Error::MessageTooLarge { len, limit: l }) => assert_eq!((*len, *l), (body, limit)),
            Err(e) => panic!("start_unary failed unexpectedly: {e:?}"),
        }
        self.settle();
        result
    }

    /// `Core::connect`, checked against the model.
    pub fn try_connect(&mut self, id: RequestId, timeout: Option<Duration>) -> Result<(), Error> {
        let now = self.stamp();
        let result = self.core.connect(now, id, options(timeout));
        match &result {
            Ok(()) => {
                assert!(!self.live.contains_key(&id));
                let deadline = self.deadline_for(timeout);
                self.live.insert(id, Live { unary: None, deadline, call: None });
                self.cancelled.remove(&id);
            }
            Err(Error::Closed) => assert!(self.closed),
            Err(Error::InvalidArgument(_)) => assert!(self.live.contains_key(&id)),
            Err(e) => panic!("connect failed unexpectedly: {e:?}"),
        }
        self.settle();
        result
    }

    /// The deadline the core must give a request started now: its own timeout or
    /// the client's, counted from the newest instant seen (an older `now` does not
    /// move it back).
    fn deadline_for(&self, timeout: Option<Duration>) -> Option<Instant> {
        timeout.or(self.setup.request_timeout).and_then(|d| self.newest.checked_add(d))
    }

    /// `Core::cancel`.
    pub fn cancel(&mut self, id: RequestId) {
        let now = self.stamp();
        if self.live.remove(&id).is_some() {
            self.cancelled.insert(id);
        }
        self.core.cancel(now, id);
        self.settle();
    }

    /// `Core::close`.
    pub fn close(&mut self) {
        let now = self.stamp();
        self.closed = true;
        self.core.close(now);
        self.settle();
        assert!(self.live.is_empty(), "requests survived close: {:?}", self.live.keys().collect::<Vec<_>>());
        assert_eq!(self.core.poll_timeout(), None, "timers survived close");
    }

    // ----- time -----

    /// `handle_timeout` stamped with the harness clock.
    pub fn timeout(&mut self) {
        let now = self.stamp();
        self.in_timeout = true;
        self.core.handle_timeout(now);
        self.pump();
        self.in_timeout = false;
        self.settle();
        let newest = self.newest;
        for (id, l) in &self.live {
            assert!(l.deadline.is_none_or(|d| d > newest), "{id} is past its deadline after handle_timeout");
        }
    }

    /// Jumps the clock to `poll_timeout()` (if any, and if it is ahead) and fires it.
    /// Returns the reason the core gave.
    pub fn fire(&mut self) -> Option<aetcd_core::TimerReason> {
        let at = self.core.poll_timeout()?;
        let reason = self.core.timeout_reason();
        assert!(reason.is_some(), "poll_timeout without timeout_reason");
        if at > self.now {
            self.now = at;
        }
        self.timeout();
        reason
    }

    // ----- transport reports -----

    /// Reports a pending connection attempt as made.
    pub fn accept(&mut self, ep: EndpointId) {
        let now = self.stamp();
        if self.links[ep.index()] == Link::Connecting {
            self.links[ep.index()] = Link::Connected;
        }
        self.core.handle_connected(now, ep);
        self.settle();
    }

    /// Reports a pending connection attempt as failed.
    pub fn refuse(&mut self, ep: EndpointId, reason: &str) {
        let now = self.stamp();
        if self.links[ep.index()] == Link::Connecting {
            self.links[ep.index()] = Link::Idle;
        }
        self.core.handle_connect_failed(now, ep, reason);
        self.settle();
    }

    /// Reports the connection to `ep` as gone; the transport forgets its calls.
    pub fn disconnect(&mut self, ep: EndpointId, reason: &str) {
        self.disconnect_inner(ep, reason);
        self.settle();
    }

    fn disconnect_inner(&mut self, ep: EndpointId, reason: &str) {
        let now = self.stamp();
        self.drop_link(ep);
        self.core.handle_disconnected(now, ep, reason);
        self.pump();
    }

    fn drop_link(&mut self, ep: EndpointId) {
        self.links[ep.index()] = Link::Idle;
        for c in self.calls.values_mut() {
            if c.endpoint == ep {
                c.done = true;
                c.script.clear();
            }
        }
    }

    /// Calls whose answers are not fully delivered, oldest first.
    pub fn pending_calls(&self) -> Vec<CallId> {
        self.calls.iter().filter(|(_, c)| !c.done && !c.script.is_empty()).map(|(id, _)| *id).collect()
    }

    /// Calls still open (not reset, not ended), oldest first.
    pub fn open_calls(&self) -> Vec<CallId> {
        self.calls.iter().filter(|(_, c)| !c.done).map(|(id, _)| *id).collect()
    }

    /// Delivers the next step of `call` (a DATA step in the pieces `split` makes).
    /// Returns false when nothing was left.
    pub fn deliver_step(&mut self, call: CallId) -> bool {
        let Some(c) = self.calls.get_mut(&call).filter(|c| !c.done) else { return false };
        let Some(step) = c.script.pop_front() else { return false };
        c.delivered += 1;
        self.feed_inner(call, step);
        true
    }

    /// Delivers everything left of `call`.
    pub fn deliver(&mut self, call: CallId) {
        while self.deliver_step(call) {}
        self.settle();
    }

    /// Delivers everything left of every call.
    pub fn deliver_all(&mut self) {
        while let Some(call) = self.pending_calls().first().copied() {
            while self.deliver_step(call) {}
        }
        self.settle();
    }

    /// Feeds one step for `call` to the core, whether or not the call is still open
    /// (stale input must be ignored by the core).
    pub fn feed(&mut self, call: CallId, step: Step) {
        self.feed_inner(call, step);
        self.settle();
    }

    fn feed_inner(&mut self, call: CallId, step: Step) {
        let endpoint = self.calls.get(&call).map(|c| c.endpoint);
        let was_open = self.calls.get(&call).is_some_and(|c| !c.done);
        if step.ends_call() {
            if let Some(c) = self.calls.get_mut(&call) {
                c.done = true;
                c.script.clear();
            }
        }
        match step {
            Step::Headers(status, h) => {
                let now = self.stamp();
                self.core.handle_headers(now, call, status, h.iter().map(|(n, v)| (n.as_str(), v.as_slice())));
                self.pump();
            }
            Step::Data(data) => {
                for piece in self.split.pieces(&data) {
                    if was_open && self.calls.get(&call).is_some_and(|c| c.done) {
                        // the core reset the call midway: the transport stops reading
                        break;
                    }
                    let now = self.stamp();
                    self.core.handle_data(now, call, piece);
                    self.pump();
                }
            }
            Step::Trailers(t) => {
                let now = self.stamp();
                self.core.handle_trailers(now, call, t.iter().map(|(n, v)| (n.as_str(), v.as_slice())));
                self.pump();
            }
            Step::Reset(code) => {
                let now = self.stamp();
                self.core.handle_reset(now, call, code);
                self.pump();
            }
            Step::Lost(reason) => {
                let now = self.stamp();
                self.core.handle_call_lost(now, call, reason);
                self.pump();
            }
            Step::Disconnect(reason) => {
                if let Some(ep) = endpoint {
                    self.disconnect_inner(ep, &reason);
                }
            }
        }
    }

    // ----- results -----

    /// The one outcome of `id` (the latest, if the id was reused).
    pub fn outcome(&self, id: RequestId) -> Option<&Result<Bytes, Error>> {
        self.events.iter().rev().find(|(i, _)| *i == id).map(|(_, r)| r)
    }

    /// The outcome of `id`, decoded as `U`'s answer; panics if there is none yet.
    pub fn result<U: Unary>(&self, id: RequestId) -> Result<U::Response, Error> {
        match self.outcome(id) {
            Some(Ok(m)) => U::decode(m.clone()),
            Some(Err(e)) => Err(e.clone()),
            None => panic!("{id} has no outcome yet"),
        }
    }

    /// The error `id` ended with; panics if it is still in flight or succeeded.
    pub fn error(&self, id: RequestId) -> Error {
        match self.outcome(id) {
            Some(Err(e)) => e.clone(),
            other => panic!("{id}: expected an error, got {other:?}"),
        }
    }

    /// How many events `id` got.
    pub fn event_count(&self, id: RequestId) -> usize {
        self.events.iter().filter(|(i, _)| *i == id).count()
    }

    /// True when the request is still in flight in the model.
    pub fn is_live(&self, id: RequestId) -> bool {
        self.live.contains_key(&id)
    }

    /// Requests in flight in the model.
    pub fn live_ids(&self) -> Vec<RequestId> {
        self.live.keys().copied().collect()
    }

    /// The call that carries `id` (its latest one).
    pub fn call_of(&self, id: RequestId) -> Option<CallId> {
        self.calls.iter().rev().find(|(_, c)| c.request == id).map(|(call, _)| *call)
    }

    /// The calls `ResetCall` named in `log[from..]`.
    pub fn resets_since(&self, from: usize) -> Vec<CallId> {
        self.log[from..]
            .iter()
            .filter_map(|o| match o {
                Output::ResetCall { call } => Some(*call),
                _ => None,
            })
            .collect()
    }

    // ----- the driver loop -----

    /// Drains every output, carrying each out and checking it, then checks that the
    /// core and the model agree.
    fn pump(&mut self) {
        while let Some(out) = self.core.poll_output() {
            self.log.push(out.clone());
            self.carry_out(out);
        }
        self.check_quiet();
    }

    /// In auto mode, delivers every pending answer (oldest call first), each step
    /// followed by a full drain. Never nested: only top-level commands call it.
    fn settle(&mut self) {
        self.pump();
        if self.auto {
            while let Some(call) = self.pending_calls().first().copied() {
                while self.deliver_step(call) {}
            }
        }
    }

    fn carry_out(&mut self, out: Output) {
        match out {
            Output::Connect { endpoint } => {
                assert!(!self.closed, "Connect after close");
                let link = &mut self.links[endpoint.index()];
                assert_eq!(*link, Link::Idle, "Connect to {endpoint}, which is {link:?}");
                *link = Link::Connecting;
                self.connect_log.push(endpoint);
                match self.connects[endpoint.index()].pop_front().unwrap_or(Connect::Accept) {
                    Connect::Accept => {
                        self.links[endpoint.index()] = Link::Connected;
                        let now = self.stamp();
                        self.core.handle_connected(now, endpoint);
                    }
                    Connect::Refuse(reason) => {
                        self.links[endpoint.index()] = Link::Idle;
                        let now = self.stamp();
                        self.core.handle_connect_failed(now, endpoint, reason);
                    }
                    Connect::Hang => {}
                }
            }
            Output::Disconnect { endpoint } => {
                let link = self.links[endpoint.index()];
                assert_ne!(link, Link::Idle, "Disconnect of {endpoint}, which is idle");
                self.drop_link(endpoint);
            }
            Output::OpenCall { call, endpoint, head, message, end_stream } => {
                assert!(!self.closed, "OpenCall after close");
                assert!(end_stream, "unary calls end the client's stream");
                assert!(!self.calls.contains_key(&call), "{call} opened twice");
                assert_eq!(self.links[endpoint.index()], Link::Connected, "{call} opened on {endpoint}, not connected");
                let newest = self.newest;
                let request = self
                    .live
                    .iter_mut()
                    .find(|(_, l)| l.call.is_none() && l.unary.as_ref().is_some_and(|u| u.frame == message))
                    .map(|(id, l)| {
                        l.call = Some(call);
                        let unary = l.unary.as_ref().map(|u| u.method.path());
                        assert_eq!(Some(head.path), unary, "{call}: path of another method");
                        // grpc-timeout is exactly what is left of the request's deadline
                        assert_eq!(
                            head.timeout,
                            l.deadline.map(|d| d.saturating_duration_since(newest)),
                            "{call}: grpc-timeout"
                        );
                        *id
                    });
                let Some(request) = request else {
                    panic!("{call} opened for no request waiting for a call (message {message:?})");
                };
                assert_eq!(head.require_leader, self.setup.require_leader, "{call}: hasleader");
                let reply = self.replies.pop_front().unwrap_or_else(self.default_reply);
                let script: Vec<Step> = match reply {
                    Reply::Serve => self.serve(head.path, &message),
                    Reply::Rewrite(f) => f(self.serve(head.path, &message)),
                    Reply::Script(s) => s,
                    Reply::Hold => Vec::new(),
                };
                self.calls.insert(
                    call,
                    CallRec {
                        request,
                        endpoint,
                        head,
                        message,
                        done: false,
                        reset: false,
                        delivered: 0,
                        script: script.into(),
                    },
                );
            }
            Output::ResetCall { call } => {
                let c = self.calls.get_mut(&call).unwrap_or_else(|| panic!("ResetCall of unknown {call}"));
                assert!(!c.done, "ResetCall of {call}, which already ended (reset: {})", c.reset);
                c.done = true;
                c.reset = true;
                c.script.clear();
            }
            Output::Event(Event::Unary { id, result }) => {
                let live = self.live.remove(&id).unwrap_or_else(|| {
                    let why = if self.cancelled.contains(&id) { "cancelled" } else { "not in flight" };
                    panic!("event for {id}, which is {why}: {result:?}")
                });
                match &result {
                    Err(Error::ConnectFailed { .. } | Error::ConnectTimeout { .. }) => {
                        assert_eq!(live.call, None, "{id} failed to connect but had a call");
                    }
                    Err(Error::DeadlineExceeded) => {
                        assert!(self.in_timeout, "{id}: DeadlineExceeded outside handle_timeout");
                        assert!(live.deadline.is_some_and(|d| d <= self.newest), "{id}: DeadlineExceeded early");
                    }
                    Err(Error::Closed) => assert!(self.closed, "{id}: Closed before close"),
                    Ok(m) if live.unary.is_none() => assert!(m.is_empty(), "connect answered with a message"),
                    _ => {}
                }
                self.events.push((id, result));
            }
            other => panic!("unexpected output {other:?}"),
        }
    }

    fn serve(&mut self, path: &'static str, message: &Bytes) -> Vec<Step> {
        match self.server.handle(path, message) {
            Ok(frame) => ok_script(frame),
            Err(status) => trailers_only(status.code, &status.message),
        }
    }

    /// After the outputs are drained, the core and the model agree.
    fn check_quiet(&self) {
        assert_eq!(self.core.requests_in_flight(), self.live.len(), "requests in flight: core vs model");
        for (call, c) in &self.calls {
            let owner_live = self.live.get(&c.request).is_some_and(|l| l.call == Some(*call));
            if c.done {
                assert!(!owner_live, "{call} ended but its request {} is still in flight", c.request);
            } else {
                assert!(owner_live, "{call} is still open but its request {} is over", c.request);
            }
        }
        for (id, l) in &self.live {
            if let Some(call) = l.call {
                assert!(!self.calls[&call].done, "{id} waits on {call}, which is over");
            }
        }
        if let Some(first) = self.live.values().filter_map(|l| l.deadline).min() {
            let at = self.core.poll_timeout();
            assert!(at.is_some_and(|at| at <= first), "poll_timeout {at:?} is after a deadline {first:?}");
        }
        if self.core.poll_timeout().is_some() {
            assert!(self.core.timeout_reason().is_some());
        }
    }
}

fn options(timeout: Option<Duration>) -> CallOptions {
    match timeout {
        Some(t) => CallOptions::new().timeout(t),
        None => CallOptions::new(),
    }
}

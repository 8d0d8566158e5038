//! The driver task: carries the core's outputs over HTTP/2 and feeds what the
//! transport sees back into the core. It makes no protocol decision and parses
//! nothing: framing, status, errors and deadlines are the core's business.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use aetcd_core::grpc::RequestHead;
use aetcd_core::rpc::watch::{WatchId, WatchRequest, WatchUpdate};
use aetcd_core::rpc::UnaryRequest;
use aetcd_core::{CallId, CallOptions, Core, EndpointId, Error, Event, LeaseUpdate, Output, RequestId, Scheme};
use std::sync::Arc;

use crate::lease::LeaseShared;
use crate::watch::WatchShared;
use bytes::Bytes;
use futures_channel::{mpsc, oneshot};
use futures_core::Stream;
use futures_util::stream::{SelectAll, StreamExt};
use h2::client::{ResponseFuture, SendRequest};
use h2::{RecvStream, SendStream};
use http::header::{HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Uri};
use std::borrow::Cow;

use crate::runtime::{Runtime, Timer};

/// The answer channel of one request.
pub(crate) type Reply = oneshot::Sender<Result<Bytes, Error>>;

/// What the user-facing handles ask of the driver.
pub(crate) enum Command {
    Unary { id: RequestId, request: UnaryRequest, options: CallOptions, reply: Reply },
    Connect { id: RequestId, options: CallOptions, reply: Reply },
    Cancel(RequestId),
    Watch { id: WatchId, request: WatchRequest, shared: Arc<WatchShared>, created: oneshot::Sender<Result<(), Error>> },
    CancelWatch(WatchId),
    KeepAlive { id: i64, ttl: i64, shared: Arc<LeaseShared> },
    StopKeepAlive { id: i64, shared: Arc<LeaseShared> },
    RequestProgress,
    Close(oneshot::Sender<()>),
}

/// The driver's side of one watch.
struct WatchSlot {
    shared: Arc<WatchShared>,
    created: Option<oneshot::Sender<Result<(), Error>>>,
}

/// A connection being made: TCP connect, then the HTTP/2 handshake.
type Connecting<Io> =
    crate::runtime::BoxFuture<Result<(SendRequest<Bytes>, h2::client::Connection<Io, Bytes>), String>>;

/// An `OpenCall` that waits for the connection to accept a new stream.
struct PendingOpen {
    call: CallId,
    head: RequestHead,
    message: Bytes,
    end_stream: bool,
}

/// One endpoint's connection. The driver polls the connection itself (no task
/// of its own), so a call costs no extra task wake-up; dropping it closes it.
struct ConnSlot<Io> {
    connecting: Option<Connecting<Io>>,
    connection: Option<Pin<Box<h2::client::Connection<Io, Bytes>>>>,
    send: Option<SendRequest<Bytes>>,
    authority: Option<Authority>,
    blocked: VecDeque<PendingOpen>,
}

impl<Io> Default for ConnSlot<Io> {
    fn default() -> Self {
        ConnSlot { connecting: None, connection: None, send: None, authority: None, blocked: VecDeque::new() }
    }
}

/// Window sizes: large enough that big ranges and many concurrent calls are not
/// throttled by HTTP/2 flow control.
const STREAM_WINDOW: u32 = 4 << 20;
const CONNECTION_WINDOW: u32 = 32 << 20;
/// Items taken from one source per pass, so no source starves the others.
const BATCH: usize = 512;

pub(crate) struct Driver<R: Runtime> {
    rt: R,
    core: Core,
    commands: mpsc::UnboundedReceiver<Command>,
    replies: HashMap<RequestId, Reply>,
    watches: HashMap<WatchId, WatchSlot>,
    leases: HashMap<i64, Vec<Arc<LeaseShared>>>,
    conns: Vec<ConnSlot<R::Io>>,
    readers: SelectAll<CallReader>,
    senders: HashMap<CallId, SendStream<Bytes>>,
    timer: R::Timer,
    timer_at: Option<Instant>,
    close_waiters: Vec<oneshot::Sender<()>>,
    commands_done: bool,
}

impl<R: Runtime> Driver<R> {
    pub(crate) fn new(rt: R, core: Core, commands: mpsc::UnboundedReceiver<Command>) -> Self {
        let conns = (0..core.config().endpoints().len()).map(|_| ConnSlot::default()).collect();
        let timer = rt.timer();
        Driver {
            rt,
            core,
            commands,
            replies: HashMap::new(),
            watches: HashMap::new(),
            leases: HashMap::new(),
            conns,
            readers: SelectAll::new(),
            senders: HashMap::new(),
            timer,
            timer_at: None,
            close_waiters: Vec::new(),
            commands_done: false,
        }
    }

    fn command(&mut self, now: Instant, cmd: Command) {
        match cmd {
            Command::Unary { id, request, options, reply } => match self.core.start_unary(now, id, request, options) {
                Ok(()) => {
                    self.replies.insert(id, reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Connect { id, options, reply } => match self.core.connect(now, id, options) {
                Ok(()) => {
                    self.replies.insert(id, reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Cancel(id) => {
                self.replies.remove(&id);
                self.core.cancel(now, id);
            }
            Command::Watch { id, request, shared, created } => match self.core.watch(now, id, request) {
                Ok(()) => {
                    self.watches.insert(id, WatchSlot { shared, created: Some(created) });
                }
                Err(e) => {
                    let _ = created.send(Err(e));
                }
            },
            Command::CancelWatch(id) => self.core.cancel_watch(now, id),
            Command::KeepAlive { id, ttl, shared } => {
                let kept = self.leases.entry(id).or_default();
                if kept.is_empty() {
                    if let Err(e) = self.core.keep_alive(now, id, ttl) {
                        shared.lost(e);
                        self.leases.remove(&id);
                        return;
                    }
                }
                kept.push(shared);
            }
            Command::StopKeepAlive { id, shared } => {
                if let Some(kept) = self.leases.get_mut(&id) {
                    kept.retain(|s| !Arc::ptr_eq(s, &shared));
                    if kept.is_empty() {
                        self.leases.remove(&id);
                        self.core.stop_keep_alive(now, id);
                    }
                }
            }
            Command::RequestProgress => self.core.request_progress(now),
            Command::Close(done) => {
                self.close_waiters.push(done);
                self.core.close(now);
            }
        }
    }

    /// Drives connection attempts and connections; reports what changed to the core.
    fn poll_connections(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let mut progress = false;
        for i in 0..self.conns.len() {
            let endpoint = EndpointId::from_index(i);
            let slot = &mut self.conns[i];
            if let Some(connecting) = slot.connecting.as_mut() {
                if let Poll::Ready(result) = connecting.as_mut().poll(cx) {
                    slot.connecting = None;
                    progress = true;
                    match result {
                        Ok((send, connection)) => {
                            slot.send = Some(send);
                            slot.connection = Some(Box::pin(connection));
                            self.core.handle_connected(now, endpoint);
                        }
                        Err(reason) => self.core.handle_connect_failed(now, endpoint, reason),
                    }
                }
            }
            let slot = &mut self.conns[i];
            if let Some(connection) = slot.connection.as_mut() {
                if let Poll::Ready(result) = connection.as_mut().poll(cx) {
                    let reason = match result {
                        Ok(()) => "connection closed by the server".to_owned(),
                        Err(e) => e.to_string(),
                    };
                    progress = true;
                    slot.connection = None;
                    slot.send = None;
                    let blocked: Vec<PendingOpen> = slot.blocked.drain(..).collect();
                    for open in blocked {
                        self.core.handle_call_lost(now, open.call, reason.clone());
                    }
                    self.core.handle_disconnected(now, endpoint, reason);
                }
            }
        }
        progress
    }

    fn feed(&mut self, now: Instant, call: CallId, ev: ReadEvent) {
        match ev {
            ReadEvent::Headers(parts) => {
                let headers = parts.headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes()));
                self.core.handle_headers(now, call, parts.status.as_u16(), headers);
            }
            ReadEvent::Data(data) => self.core.handle_data(now, call, data),
            ReadEvent::Trailers(trailers) => {
                self.senders.remove(&call);
                let trailers = trailers.iter().map(|(n, v)| (n.as_str(), v.as_bytes()));
                self.core.handle_trailers(now, call, trailers);
            }
            ReadEvent::Ended => {
                self.senders.remove(&call);
                self.core.handle_call_lost(now, call, "the stream ended without a status");
            }
            ReadEvent::Failed(e) => {
                self.senders.remove(&call);
                match e.reason() {
                    Some(reason) if e.is_reset() && e.is_remote() => {
                        self.core.handle_reset(now, call, u32::from(reason));
                    }
                    _ => self.core.handle_call_lost(now, call, e.to_string()),
                }
            }
        }
    }

    /// Carries out every pending output. Returns whether there was any.
    fn drain(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let mut any = false;
        while let Some(out) = self.core.poll_output() {
            any = true;
            match out {
                Output::Connect { endpoint } => self.start_connect(endpoint),
                Output::Disconnect { endpoint } => {
                    let slot = &mut self.conns[endpoint.index()];
                    slot.connecting = None;
                    slot.connection = None;
                    slot.send = None;
                    let blocked: Vec<PendingOpen> = slot.blocked.drain(..).collect();
                    for open in blocked {
                        self.core.handle_call_lost(now, open.call, "disconnected");
                    }
                }
                Output::OpenCall { call, endpoint, head, message, end_stream } => {
                    let open = PendingOpen { call, head, message, end_stream };
                    if self.conns[endpoint.index()].blocked.is_empty() {
                        self.open(cx, now, endpoint, open);
                    } else {
                        self.conns[endpoint.index()].blocked.push_back(open);
                    }
                }
                Output::ResetCall { call } => {
                    if let Some(mut stream) = self.senders.remove(&call) {
                        stream.send_reset(h2::Reason::CANCEL);
                    }
                    for slot in &mut self.conns {
                        slot.blocked.retain(|o| o.call != call);
                    }
                }
                Output::SendMessage { call, message, end_stream } => {
                    if let Some(stream) = self.senders.get_mut(&call) {
                        if let Err(e) = stream.send_data(message, end_stream) {
                            self.core.handle_call_lost(now, call, e.to_string());
                        }
                    }
                }
                Output::Event(Event::Unary { id, result }) => {
                    if let Some(reply) = self.replies.remove(&id) {
                        let _ = reply.send(result);
                    }
                }
                Output::Event(Event::Watch { id, update }) => self.watch_update(now, id, update),
                Output::Event(Event::Lease { id, update }) => match update {
                    LeaseUpdate::KeptAlive { ttl } => {
                        for s in self.leases.get(&id).into_iter().flatten() {
                            s.renewed(ttl);
                        }
                    }
                    LeaseUpdate::Lost(e) => {
                        for s in self.leases.remove(&id).into_iter().flatten() {
                            s.lost(e.clone());
                        }
                    }
                    _ => {}
                },
                _ => {}
            }
        }
        any
    }

    fn watch_update(&mut self, now: Instant, id: WatchId, update: WatchUpdate) {
        let Some(slot) = self.watches.get_mut(&id) else { return };
        match update {
            WatchUpdate::Created { revision } => {
                slot.shared.created(revision);
                if let Some(created) = slot.created.take() {
                    let _ = created.send(Ok(()));
                }
            }
            WatchUpdate::Events(response) => {
                let accepted = slot.shared.push_events(response);
                // A consumer too slow to keep up ends its watch rather than buffer without bound.
                let lagging = !accepted;
                if lagging {
                    self.watches.remove(&id);
                    self.core.cancel_watch(now, id);
                }
            }
            WatchUpdate::Progress { revision } => {
                slot.shared.push_progress(revision, self.core.watch_next_revision(id).unwrap_or(0));
            }
            WatchUpdate::Ended(result) => {
                if let Some(slot) = self.watches.remove(&id) {
                    if let Some(created) = slot.created {
                        let _ = created.send(Err(result.clone().err().unwrap_or(Error::Closed)));
                    }
                    slot.shared.end(result);
                }
            }
            _ => {}
        }
    }

    /// Opens the call's stream and sends its first message, or parks it while the
    /// connection cannot take a new stream. Returns false when parked.
    fn open(&mut self, cx: &mut Context<'_>, now: Instant, endpoint: EndpointId, open: PendingOpen) -> bool {
        let slot = &mut self.conns[endpoint.index()];
        let (Some(send), Some(authority)) = (slot.send.as_mut(), slot.authority.as_ref()) else {
            self.core.handle_call_lost(now, open.call, "no connection to the endpoint");
            return true;
        };
        match send.poll_ready(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Pending => {
                slot.blocked.push_front(open);
                return false;
            }
            Poll::Ready(Err(e)) => {
                self.core.handle_call_lost(now, open.call, e.to_string());
                return true;
            }
        }
        let request = build_request(authority, &open.head);
        match send.send_request(request, false) {
            Ok((response, mut stream)) => match send_first(&mut stream, open.message, open.end_stream) {
                Ok(()) => {
                    self.readers.push(CallReader { call: open.call, state: ReaderState::Head(response) });
                    self.senders.insert(open.call, stream);
                }
                Err(e) => self.core.handle_call_lost(now, open.call, e.to_string()),
            },
            Err(e) => self.core.handle_call_lost(now, open.call, e.to_string()),
        }
        true
    }

    fn retry_blocked(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let mut any = false;
        for i in 0..self.conns.len() {
            while let Some(open) = self.conns[i].blocked.pop_front() {
                if !self.open(cx, now, EndpointId::from_index(i), open) {
                    break;
                }
                any = true;
            }
        }
        any
    }

    fn start_connect(&mut self, endpoint: EndpointId) {
        let ep = self.core.endpoint(endpoint).clone();
        let slot = &mut self.conns[endpoint.index()];
        slot.connection = None;
        slot.send = None;
        let failed = |reason: String| -> Connecting<R::Io> { Box::pin(async move { Err(reason) }) };
        if ep.scheme() == Scheme::Https {
            slot.connecting = Some(failed("TLS endpoints are not supported yet".to_owned()));
            return;
        }
        slot.authority = match Authority::try_from(ep.authority()) {
            Ok(a) => Some(a),
            Err(e) => {
                slot.connecting = Some(failed(format!("invalid authority: {e}")));
                return;
            }
        };
        let rt = self.rt.clone();
        slot.connecting = Some(Box::pin(async move {
            let io = rt.connect(ep.host().to_owned(), ep.port()).await.map_err(|e| e.to_string())?;
            h2::client::Builder::new()
                .initial_window_size(STREAM_WINDOW)
                .initial_connection_window_size(CONNECTION_WINDOW)
                .handshake::<_, Bytes>(io)
                .await
                .map_err(|e| format!("HTTP/2 handshake failed: {e}"))
        }));
    }

    fn finished(&self) -> bool {
        self.core.is_closed() && self.replies.is_empty()
    }
}

impl<R: Runtime> Future for Driver<R> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            let now = this.rt.now();
            let mut progress = false;
            // Connection news first, so no new call is opened on a connection known to be dead.
            progress |= this.poll_connections(cx, now);
            for _ in 0..BATCH {
                match this.commands.poll_next_unpin(cx) {
                    Poll::Ready(Some(cmd)) => {
                        this.command(now, cmd);
                        progress = true;
                    }
                    Poll::Ready(None) => {
                        if !this.commands_done {
                            // Every handle is gone: nobody can ask for anything any more.
                            this.commands_done = true;
                            this.core.close(now);
                            progress = true;
                        }
                        break;
                    }
                    Poll::Pending => break,
                }
            }
            progress |= this.retry_blocked(cx, now);
            for _ in 0..BATCH {
                match this.readers.poll_next_unpin(cx) {
                    Poll::Ready(Some((call, ev))) => {
                        this.feed(now, call, ev);
                        progress = true;
                    }
                    Poll::Ready(None) | Poll::Pending => break,
                }
            }
            if this.core.poll_timeout().is_some_and(|at| at <= now) {
                this.core.handle_timeout(now);
            }
            progress |= this.drain(cx, now);
            if this.finished() {
                // Refuse further commands before telling anyone the client is closed.
                this.commands.close();
                for done in this.close_waiters.drain(..) {
                    let _ = done.send(());
                }
                return Poll::Ready(());
            }
            if progress {
                continue;
            }
            if let Some(at) = this.core.poll_timeout() {
                // Re-arm only when the deadline moves earlier: most requests finish
                // long before theirs, and a wake-up that finds nothing due is harmless.
                if this.timer_at.is_none_or(|armed| at < armed) {
                    this.timer.reset(at);
                    this.timer_at = Some(at);
                }
            }
            if this.timer_at.is_some() && this.timer.poll_fired(cx).is_ready() {
                this.timer_at = None;
                continue;
            }
            return Poll::Pending;
        }
    }
}

fn send_first(stream: &mut SendStream<Bytes>, message: Bytes, end_stream: bool) -> Result<(), h2::Error> {
    if message.is_empty() && !end_stream {
        return Ok(());
    }
    stream.send_data(message, end_stream)
}

fn build_request(authority: &Authority, head: &RequestHead) -> http::Request<()> {
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(http::uri::Scheme::HTTP);
    uri.authority = Some(authority.clone());
    uri.path_and_query = Some(PathAndQuery::from_static(head.path));
    let mut request = http::Request::new(());
    *request.method_mut() = http::Method::POST;
    // Scheme, authority and a static path always form a valid URI.
    *request.uri_mut() = Uri::from_parts(uri).unwrap_or_default();
    let headers = request.headers_mut();
    for (name, value) in head.headers() {
        let value = match value {
            Cow::Borrowed(v) => HeaderValue::from_static(v),
            Cow::Owned(v) => match HeaderValue::try_from(v) {
                Ok(v) => v,
                Err(_) => continue,
            },
        };
        // The core's header names are lowercase ASCII constants.
        headers.insert(HeaderName::from_static(name), value);
    }
    request
}

enum ReadEvent {
    Headers(http::response::Parts),
    Data(Bytes),
    Trailers(http::HeaderMap),
    Ended,
    Failed(h2::Error),
}

enum ReaderState {
    Head(ResponseFuture),
    Body(RecvStream),
    Done,
}

/// Reads one call's response: head, data chunks, trailers.
struct CallReader {
    call: CallId,
    state: ReaderState,
}

impl Stream for CallReader {
    type Item = (CallId, ReadEvent);

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let call = self.call;
        let (next, event) = match &mut self.state {
            ReaderState::Head(response) => match Pin::new(response).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(response)) => {
                    let (parts, body) = response.into_parts();
                    (ReaderState::Body(body), ReadEvent::Headers(parts))
                }
                Poll::Ready(Err(e)) => (ReaderState::Done, ReadEvent::Failed(e)),
            },
            ReaderState::Body(body) => match body.poll_data(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(data))) => {
                    let _ = body.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some((call, ReadEvent::Data(data))));
                }
                Poll::Ready(Some(Err(e))) => (ReaderState::Done, ReadEvent::Failed(e)),
                Poll::Ready(None) => match body.poll_trailers(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(Some(t))) => (ReaderState::Done, ReadEvent::Trailers(t)),
                    Poll::Ready(Ok(None)) => (ReaderState::Done, ReadEvent::Ended),
                    Poll::Ready(Err(e)) => (ReaderState::Done, ReadEvent::Failed(e)),
                },
            },
            ReaderState::Done => return Poll::Ready(None),
        };
        self.state = next;
        Poll::Ready(Some((call, event)))
    }
}

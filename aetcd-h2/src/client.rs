//! The user-facing client handle, its builder, and the future of one request.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use aetcd_core::rpc::Unary;
use aetcd_core::{CallOptions, Config, Core, Endpoint, Error, RequestId};
use bytes::Bytes;
use futures_channel::{mpsc, oneshot};

use crate::driver::{Command, Driver};
use crate::runtime::Runtime;

/// Default of [`ClientBuilder::watch_buffer`].
pub const DEFAULT_WATCH_BUFFER: usize = 1024;

/// What every handle of one client shares.
pub(crate) struct Shared {
    commands: mpsc::UnboundedSender<Command>,
    next_id: AtomicU64,
    pub(crate) watch_buffer: usize,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("closed", &self.commands.is_closed()).finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn next_id(&self) -> RequestId {
        RequestId(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    pub(crate) fn send(&self, cmd: Command) -> Result<(), Error> {
        self.commands.unbounded_send(cmd).map_err(|_| Error::Closed)
    }

    /// Sends a request whose answer nobody waits for (cleanup from `Drop`).
    pub(crate) fn fire<U: Unary>(&self, request: U) {
        if let Ok(request) = request.encode() {
            let (reply, _) = oneshot::channel();
            let id = self.next_id();
            let _ = self.send(Command::Unary { id, request, options: CallOptions::new(), reply });
        }
    }
}

/// An etcd client running on the runtime `R`.
///
/// Cheap to clone: clones share one connection per endpoint and one background
/// task. The task ends when [`Client::close`] is called or the last clone (and
/// the last pending request) is dropped. `aetcd-tokio` and `aetcd-smol` export it
/// as `Client` with their runtime filled in.
///
/// ```no_run
/// # async fn demo<R: aetcd_h2::Runtime>() -> Result<(), aetcd_h2::Error> {
/// let client = aetcd_h2::Client::<R>::connect("localhost:2379").await?;
/// client.put("greeting", "hello").await?;
/// let got = client.get("greeting").await?;
/// assert_eq!(got.value().unwrap(), "hello");
/// # Ok(()) }
/// ```
pub struct Client<R> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) runtime: R,
}

impl<R: Clone> Clone for Client<R> {
    fn clone(&self) -> Self {
        Client { shared: self.shared.clone(), runtime: self.runtime.clone() }
    }
}

impl<R> std::fmt::Debug for Client<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("closed", &self.shared.commands.is_closed()).finish()
    }
}

/// One or more endpoint addresses: a string, or a list of strings.
///
/// ```
/// use aetcd_h2::IntoEndpoints;
/// assert_eq!("localhost:2379".into_endpoints().unwrap().len(), 1);
/// assert_eq!(["http://a:2379", "http://b:2379"].into_endpoints().unwrap().len(), 2);
/// ```
pub trait IntoEndpoints {
    /// Parses the addresses.
    fn into_endpoints(self) -> Result<Vec<Endpoint>, Error>;
}

impl IntoEndpoints for &str {
    fn into_endpoints(self) -> Result<Vec<Endpoint>, Error> {
        Ok(vec![Endpoint::parse(self)?])
    }
}
impl IntoEndpoints for String {
    fn into_endpoints(self) -> Result<Vec<Endpoint>, Error> {
        self.as_str().into_endpoints()
    }
}
impl IntoEndpoints for &String {
    fn into_endpoints(self) -> Result<Vec<Endpoint>, Error> {
        self.as_str().into_endpoints()
    }
}
impl IntoEndpoints for Endpoint {
    fn into_endpoints(self) -> Result<Vec<Endpoint>, Error> {
        Ok(vec![self])
    }
}
impl<S: AsRef<str>> IntoEndpoints for Vec<S> {
    fn into_endpoints(self) -> Result<Vec<Endpoint>, Error> {
        self.iter().map(|s| Endpoint::parse(s.as_ref())).collect()
    }
}
impl<S: AsRef<str>> IntoEndpoints for &[S] {
    fn into_endpoints(self) -> Result<Vec<Endpoint>, Error> {
        self.iter().map(|s| Endpoint::parse(s.as_ref())).collect()
    }
}
impl<S: AsRef<str>, const N: usize> IntoEndpoints for [S; N] {
    fn into_endpoints(self) -> Result<Vec<Endpoint>, Error> {
        self.iter().map(|s| Endpoint::parse(s.as_ref())).collect()
    }
}

/// Options for a new [`Client`].
///
/// ```no_run
/// # async fn demo<R: aetcd_h2::Runtime>() -> Result<(), aetcd_h2::Error> {
/// use std::time::Duration;
/// let client = aetcd_h2::Client::<R>::builder()
///     .host("127.0.0.1")
///     .port(2379)
///     .connect_timeout(Duration::from_secs(2))
///     .request_timeout(Duration::from_secs(10))
///     .max_decoding_message_size(256 << 20)
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until connect() or build()"]
pub struct ClientBuilder<R> {
    endpoints: Vec<Endpoint>,
    host: Option<String>,
    port: Option<u16>,
    config: Config,
    error: Option<Error>,
    runtime: R,
    watch_buffer: usize,
}

impl<R: Runtime> ClientBuilder<R> {
    /// Defaults: `localhost:2379`, 5 s connect timeout, 30 s request timeout,
    /// 64 MiB message limits.
    pub fn new() -> Self {
        ClientBuilder {
            endpoints: Vec::new(),
            host: None,
            port: None,
            config: Config::new(Vec::new()),
            error: None,
            runtime: R::default(),
            watch_buffer: DEFAULT_WATCH_BUFFER,
        }
    }

    /// Adds endpoints (`http://host:port`, `host:port` or `host`).
    pub fn endpoints(mut self, endpoints: impl IntoEndpoints) -> Self {
        match endpoints.into_endpoints() {
            Ok(e) => self.endpoints.extend(e),
            Err(e) => self.error = Some(e),
        }
        self
    }

    /// Adds one endpoint.
    pub fn endpoint(self, endpoint: impl AsRef<str>) -> Self {
        self.endpoints(endpoint.as_ref())
    }

    /// The host of a single endpoint (with [`ClientBuilder::port`]; default `localhost`).
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// The port of a single endpoint (default 2379).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// How long one connection attempt may take.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.config.connect_timeout(d);
        self
    }

    /// Deadline of every request that sets none itself.
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.config.request_timeout(Some(d));
        self
    }

    /// No default deadline: requests wait as long as it takes.
    pub fn no_request_timeout(mut self) -> Self {
        self.config.request_timeout(None);
        self
    }

    /// The largest message accepted from the server.
    pub fn max_decoding_message_size(mut self, n: usize) -> Self {
        self.config.max_decoding_message_size(n);
        self
    }

    /// The largest message sent to the server.
    pub fn max_encoding_message_size(mut self, n: usize) -> Self {
        self.config.max_encoding_message_size(n);
        self
    }

    /// Asks members to refuse calls while they have no leader.
    pub fn require_leader(mut self, on: bool) -> Self {
        self.config.require_leader(on);
        self
    }

    /// The wait between failed attempts to connect to one endpoint grows from
    /// `min` to `max`.
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.config.reconnect_backoff(min, max);
        self
    }

    /// How many undelivered responses one watch may buffer before it ends with
    /// [`Error::WatchLagged`] (default 1024).
    pub fn watch_buffer(mut self, responses: usize) -> Self {
        self.watch_buffer = responses.max(1);
        self
    }

    /// The runtime handle to use (the default one otherwise).
    pub fn runtime(mut self, runtime: R) -> Self {
        self.runtime = runtime;
        self
    }

    /// Starts the client without waiting for a connection: the first request connects.
    pub fn build(self) -> Result<Client<R>, Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let mut endpoints = self.endpoints;
        if self.host.is_some() || self.port.is_some() {
            let host = self.host.unwrap_or_else(|| "localhost".to_owned());
            endpoints.push(Endpoint::new(host, self.port.unwrap_or(Endpoint::DEFAULT_PORT)));
        }
        let mut config = self.config;
        config.set_endpoints(endpoints);
        let (tx, rx) = mpsc::unbounded();
        let driver = Driver::new(self.runtime.clone(), Core::new(config), rx);
        self.runtime.spawn(Box::pin(driver));
        let shared = Shared { commands: tx, next_id: AtomicU64::new(1), watch_buffer: self.watch_buffer };
        Ok(Client { shared: Arc::new(shared), runtime: self.runtime })
    }

    /// Starts the client and waits until it is connected to an endpoint; fails
    /// with [`Error::ConnectFailed`] or [`Error::ConnectTimeout`] when none answers.
    pub async fn connect(self) -> Result<Client<R>, Error> {
        let client = self.build()?;
        let (reply, answer) = oneshot::channel();
        let id = client.shared.next_id();
        client.shared.send(Command::Connect { id, options: CallOptions::new(), reply })?;
        match answer.await {
            Ok(Ok(_)) => Ok(client),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Closed),
        }
    }
}

impl<R: Runtime> Default for ClientBuilder<R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<R: Runtime> Client<R> {
    /// Connects to etcd at `endpoints` (a `"host:port"` or URL, or a list of them).
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>() -> Result<(), aetcd_h2::Error> {
    /// let one = aetcd_h2::Client::<R>::connect("http://127.0.0.1:2379").await?;
    /// let cluster = aetcd_h2::Client::<R>::connect(["10.0.0.1:2379", "10.0.0.2:2379"]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(endpoints: impl IntoEndpoints) -> Result<Self, Error> {
        Self::builder().endpoints(endpoints).connect().await
    }

    /// Connects to etcd at `localhost:2379`.
    pub async fn connect_local() -> Result<Self, Error> {
        Self::builder().connect().await
    }

    /// A builder for the remaining options.
    pub fn builder() -> ClientBuilder<R> {
        ClientBuilder::new()
    }
}

impl<R> Client<R> {
    /// Sends any typed unary request (see [`aetcd_core::rpc`]) and returns its typed answer.
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// use aetcd_h2::kv::{Get, SortOrder, SortTarget};
    /// let newest = client.request(Get::prefix("jobs/").sort(SortTarget::Mod, SortOrder::Descend).limit(1)).await?;
    /// # Ok(()) }
    /// ```
    pub fn request<U: Unary>(&self, request: U) -> ResponseFuture<U> {
        ResponseFuture::new(self.shared.clone(), request)
    }

    /// Closes the client: pending requests fail with [`Error::Closed`], connections
    /// are dropped and the background task ends before this returns.
    pub async fn close(&self) {
        let (done, wait) = oneshot::channel();
        if self.shared.send(Command::Close(done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// True once the client was closed (by [`Client::close`] or because its task ended).
    pub fn is_closed(&self) -> bool {
        self.shared.commands.is_closed()
    }
}

enum State<U> {
    Init { shared: Arc<Shared>, request: U, options: CallOptions },
    Waiting { shared: Arc<Shared>, id: RequestId, answer: oneshot::Receiver<Result<Bytes, Error>> },
    Done,
}

/// The answer of one request. Nothing is sent until it is first polled; dropping
/// it before it completes cancels the request.
#[must_use = "a request does nothing until it is awaited"]
pub struct ResponseFuture<U> {
    state: State<U>,
}

impl<U: Unary> ResponseFuture<U> {
    pub(crate) fn new(shared: Arc<Shared>, request: U) -> Self {
        ResponseFuture { state: State::Init { shared, request, options: CallOptions::new() } }
    }

    /// Sets this request's deadline (instead of the client's request timeout).
    ///
    /// ```no_run
    /// # async fn demo<R: aetcd_h2::Runtime>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let v = client.get("k").timeout(std::time::Duration::from_millis(200)).await?;
    /// # Ok(()) }
    /// ```
    pub fn timeout(mut self, d: Duration) -> Self {
        if let State::Init { options, .. } = &mut self.state {
            *options = options.timeout(d);
        }
        self
    }

    /// No deadline at all for this request, not even the client's default.
    pub fn no_deadline(mut self) -> Self {
        if let State::Init { options, .. } = &mut self.state {
            *options = options.no_deadline();
        }
        self
    }
}

impl<U: Unary + Unpin> Future for ResponseFuture<U> {
    type Output = Result<U::Response, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let State::Init { .. } = this.state {
            let State::Init { shared, request, options } = std::mem::replace(&mut this.state, State::Done) else {
                return Poll::Ready(Err(Error::Closed)); // checked just above
            };
            let request = match request.encode() {
                Ok(r) => r,
                Err(e) => return Poll::Ready(Err(e)),
            };
            let (reply, answer) = oneshot::channel();
            let id = shared.next_id();
            if let Err(e) = shared.send(Command::Unary { id, request, options, reply }) {
                return Poll::Ready(Err(e));
            }
            this.state = State::Waiting { shared, id, answer };
        }
        let State::Waiting { answer, .. } = &mut this.state else {
            return Poll::Ready(Err(Error::InvalidArgument("response future polled after completion".into())));
        };
        let result = match Pin::new(answer).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(Ok(message))) => U::decode(message),
            Poll::Ready(Ok(Err(e))) => Err(e),
            Poll::Ready(Err(_)) => Err(Error::Closed),
        };
        this.state = State::Done;
        Poll::Ready(result)
    }
}

impl<U> Drop for ResponseFuture<U> {
    fn drop(&mut self) {
        if let State::Waiting { shared, id, .. } = &self.state {
            let _ = shared.send(Command::Cancel(*id));
        }
    }
}

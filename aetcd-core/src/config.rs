//! Client configuration: endpoints, timeouts and limits.

use std::fmt;
use std::time::Duration;

use crate::error::Error;

/// Whether an endpoint speaks plain HTTP/2 or TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheme {
    /// `http://`: plain text.
    Http,
    /// `https://`: TLS.
    Https,
}

/// One etcd member's client address.
///
/// ```
/// use aetcd_core::Endpoint;
/// let e = Endpoint::parse("http://10.0.0.1:2379").unwrap();
/// assert_eq!((e.host(), e.port()), ("10.0.0.1", 2379));
/// assert_eq!(Endpoint::parse("localhost").unwrap().to_string(), "http://localhost:2379");
/// assert!(Endpoint::parse("http://host:notaport").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    scheme: Scheme,
    host: String,
    port: u16,
}

impl Endpoint {
    /// The default etcd client port.
    pub const DEFAULT_PORT: u16 = 2379;

    /// A plain-text endpoint.
    pub fn new(host: impl Into<String>, port: u16) -> Endpoint {
        Endpoint { scheme: Scheme::Http, host: host.into(), port }
    }

    /// Parses `http://host:port`, `https://host:port`, `host:port` or `host`
    /// (port 2379). IPv6 hosts go in brackets: `http://[::1]:2379`.
    pub fn parse(s: &str) -> Result<Endpoint, Error> {
        let bad = |why: &str| Error::InvalidArgument(format!("invalid endpoint {s:?}: {why}"));
        let (scheme, rest) = if let Some(r) = s.strip_prefix("http://") {
            (Scheme::Http, r)
        } else if let Some(r) = s.strip_prefix("https://") {
            (Scheme::Https, r)
        } else if s.contains("://") {
            return Err(bad("the scheme must be http or https"));
        } else {
            (Scheme::Http, s)
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') {
            return Err(bad("an endpoint has no path"));
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let Some((host, after)) = v6.split_once(']') else { return Err(bad("unclosed '['")) };
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad("bad port"))?,
                None if after.is_empty() => Self::DEFAULT_PORT,
                None => return Err(bad("junk after ']'")),
            };
            (host.to_owned(), port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| bad("bad port"))?),
                None => (rest.to_owned(), Self::DEFAULT_PORT),
            }
        };
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        Ok(Endpoint { scheme, host, port })
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The host name or address (without brackets for IPv6).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port`, as sent in `:authority`.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        write!(f, "{scheme}://{}", self.authority())
    }
}

/// Settings of a [`Core`](crate::Core).
///
/// ```
/// use aetcd_core::{Config, Endpoint};
/// use std::time::Duration;
/// let mut config = Config::new(vec![Endpoint::new("127.0.0.1", 2379)]);
/// config.request_timeout(Some(Duration::from_secs(5))).max_decoding_message_size(128 << 20);
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) endpoints: Vec<Endpoint>,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Option<Duration>,
    pub(crate) max_decoding_message_size: usize,
    pub(crate) max_encoding_message_size: usize,
    pub(crate) require_leader: bool,
    pub(crate) reconnect_backoff_min: Duration,
    pub(crate) reconnect_backoff_max: Duration,
}

impl Config {
    /// Default connect timeout.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    /// Default per-request timeout.
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
    /// Default limit for one received message: generous, so large ranges work.
    pub const DEFAULT_MAX_DECODING_MESSAGE_SIZE: usize = 64 << 20;
    /// Default limit for one sent message (the server has its own, smaller, limit).
    pub const DEFAULT_MAX_ENCODING_MESSAGE_SIZE: usize = 64 << 20;

    /// A configuration for these endpoints (`localhost:2379` if the list is empty).
    pub fn new(endpoints: Vec<Endpoint>) -> Config {
        let endpoints =
            if endpoints.is_empty() { vec![Endpoint::new("localhost", Endpoint::DEFAULT_PORT)] } else { endpoints };
        Config {
            endpoints,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            request_timeout: Some(Self::DEFAULT_REQUEST_TIMEOUT),
            max_decoding_message_size: Self::DEFAULT_MAX_DECODING_MESSAGE_SIZE,
            max_encoding_message_size: Self::DEFAULT_MAX_ENCODING_MESSAGE_SIZE,
            require_leader: false,
            reconnect_backoff_min: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_secs(2),
        }
    }

    /// The endpoints.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// Replaces the endpoints (`localhost:2379` if the list is empty).
    pub fn set_endpoints(&mut self, endpoints: Vec<Endpoint>) -> &mut Self {
        self.endpoints =
            if endpoints.is_empty() { vec![Endpoint::new("localhost", Endpoint::DEFAULT_PORT)] } else { endpoints };
        self
    }

    /// How long a connection attempt may take.
    pub fn connect_timeout(&mut self, d: Duration) -> &mut Self {
        self.connect_timeout = d;
        self
    }

    /// The deadline of a request that sets none itself (`None`: no deadline).
    pub fn request_timeout(&mut self, d: Option<Duration>) -> &mut Self {
        self.request_timeout = d;
        self
    }

    /// The largest message accepted from the server.
    pub fn max_decoding_message_size(&mut self, n: usize) -> &mut Self {
        self.max_decoding_message_size = n;
        self
    }

    /// The largest message the client will send.
    pub fn max_encoding_message_size(&mut self, n: usize) -> &mut Self {
        self.max_encoding_message_size = n;
        self
    }

    /// Asks the server to refuse calls while it has no leader (`hasleader` metadata).
    pub fn require_leader(&mut self, on: bool) -> &mut Self {
        self.require_leader = on;
        self
    }

    /// The bounds of the exponential wait between failed connection attempts to one endpoint.
    pub fn reconnect_backoff(&mut self, min: Duration, max: Duration) -> &mut Self {
        self.reconnect_backoff_min = min;
        self.reconnect_backoff_max = max.max(min);
        self
    }
}

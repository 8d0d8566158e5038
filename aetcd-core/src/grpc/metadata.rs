//! Request metadata: the HTTP/2 request head of a gRPC call to etcd.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

/// What the driver needs to open one call: the method path and the gRPC metadata.
///
/// [`RequestHead::headers`] lists every header to send besides the pseudo-headers
/// (`:method POST`, `:scheme`, `:authority`, and `:path` = [`RequestHead::path`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The method path, e.g. `/etcdserverpb.KV/Range`.
    pub path: &'static str,
    /// Sent as `grpc-timeout` when set.
    pub timeout: Option<Duration>,
    /// The auth token, sent as `token`.
    pub token: Option<Arc<str>>,
    /// Sends `hasleader: true`, asking the server to refuse the call without a leader.
    pub require_leader: bool,
}

impl RequestHead {
    /// A head for `path` with no metadata.
    pub fn new(path: &'static str) -> Self {
        RequestHead { path, timeout: None, token: None, require_leader: false }
    }

    /// The headers to send, in order.
    ///
    /// ```
    /// use aetcd_core::grpc::RequestHead;
    /// use std::time::Duration;
    /// let mut head = RequestHead::new("/etcdserverpb.KV/Range");
    /// head.timeout = Some(Duration::from_millis(1500));
    /// head.require_leader = true;
    /// let h = head.headers();
    /// assert!(h.contains(&("content-type", "application/grpc".into())));
    /// assert!(h.contains(&("te", "trailers".into())));
    /// assert!(h.contains(&("grpc-timeout", "1500000u".into())));
    /// assert!(h.contains(&("hasleader", "true".into())));
    /// ```
    pub fn headers(&self) -> Vec<(&'static str, Cow<'static, str>)> {
        let mut out = Vec::with_capacity(5);
        out.push(("content-type", Cow::Borrowed("application/grpc")));
        out.push(("te", Cow::Borrowed("trailers")));
        if let Some(t) = self.timeout {
            out.push(("grpc-timeout", Cow::Owned(encode_timeout(t))));
        }
        if let Some(token) = &self.token {
            out.push(("token", Cow::Owned(token.to_string())));
        }
        if self.require_leader {
            out.push(("hasleader", Cow::Borrowed("true")));
        }
        out
    }
}

/// Encodes a duration as a `grpc-timeout` value: at most 8 digits and a unit,
/// choosing the finest unit that fits (rounding up, so the server never sees a
/// shorter deadline than the client's).
///
/// ```
/// use aetcd_core::grpc::metadata::encode_timeout;
/// use std::time::Duration;
/// assert_eq!(encode_timeout(Duration::from_micros(1500)), "1500000n");
/// assert_eq!(encode_timeout(Duration::from_secs(30)), "30000000u");
/// assert_eq!(encode_timeout(Duration::from_secs(300)), "300000m");
/// assert_eq!(encode_timeout(Duration::from_secs(1_000_000_000)), "16666667M");
/// ```
pub fn encode_timeout(d: Duration) -> String {
    const MAX: u128 = 99_999_999;
    let nanos = d.as_nanos();
    let units: [(u128, char); 6] = [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
        (3_600_000_000_000, 'H'),
    ];
    for (per, unit) in units {
        let v = nanos.div_ceil(per);
        if v <= MAX {
            return format!("{v}{unit}");
        }
    }
    format!("{MAX}H")
}

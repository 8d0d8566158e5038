//! gRPC status: the `grpc-status` code and `grpc-message` text that end every call,
//! read from trailers or from a trailers-only response.

use std::fmt;

/// A gRPC status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Code {
    /// 0: success.
    Ok,
    /// 1: the call was cancelled.
    Cancelled,
    /// 2: unknown error.
    Unknown,
    /// 3: the request was invalid.
    InvalidArgument,
    /// 4: the deadline passed.
    DeadlineExceeded,
    /// 5: something was not found.
    NotFound,
    /// 6: something already exists.
    AlreadyExists,
    /// 7: not allowed.
    PermissionDenied,
    /// 8: out of a resource (space, rate).
    ResourceExhausted,
    /// 9: the system is not in the state the call needs.
    FailedPrecondition,
    /// 10: aborted.
    Aborted,
    /// 11: out of the valid range (etcd: compacted or future revision).
    OutOfRange,
    /// 12: not implemented by the server.
    Unimplemented,
    /// 13: internal error.
    Internal,
    /// 14: the service is unavailable; reads may be retried.
    Unavailable,
    /// 15: unrecoverable data loss.
    DataLoss,
    /// 16: no valid credentials.
    Unauthenticated,
    /// A code outside 0..=16.
    Other(u32),
}

impl Code {
    /// The code for a numeric `grpc-status` value.
    ///
    /// ```
    /// use aetcd_core::grpc::Code;
    /// assert_eq!(Code::from_u32(14), Code::Unavailable);
    /// assert_eq!(Code::from_u32(99), Code::Other(99));
    /// ```
    pub fn from_u32(n: u32) -> Code {
        use Code::*;
        match n {
            0 => Ok,
            1 => Cancelled,
            2 => Unknown,
            3 => InvalidArgument,
            4 => DeadlineExceeded,
            5 => NotFound,
            6 => AlreadyExists,
            7 => PermissionDenied,
            8 => ResourceExhausted,
            9 => FailedPrecondition,
            10 => Aborted,
            11 => OutOfRange,
            12 => Unimplemented,
            13 => Internal,
            14 => Unavailable,
            15 => DataLoss,
            16 => Unauthenticated,
            n => Other(n),
        }
    }

    /// The numeric value sent in `grpc-status`.
    pub fn as_u32(self) -> u32 {
        use Code::*;
        match self {
            Ok => 0,
            Cancelled => 1,
            Unknown => 2,
            InvalidArgument => 3,
            DeadlineExceeded => 4,
            NotFound => 5,
            AlreadyExists => 6,
            PermissionDenied => 7,
            ResourceExhausted => 8,
            FailedPrecondition => 9,
            Aborted => 10,
            OutOfRange => 11,
            Unimplemented => 12,
            Internal => 13,
            Unavailable => 14,
            DataLoss => 15,
            Unauthenticated => 16,
            Other(n) => n,
        }
    }
}

/// The status a call ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The gRPC code.
    pub code: Code,
    /// The percent-decoded `grpc-message`, empty when absent.
    pub message: String,
}

impl Status {
    /// A status with this code and message.
    ///
    /// ```
    /// use aetcd_core::grpc::{Code, Status};
    /// let s = Status::new(Code::NotFound, "etcdserver: requested lease not found");
    /// assert_eq!(s.code, Code::NotFound);
    /// ```
    pub fn new(code: Code, message: impl Into<String>) -> Status {
        Status { code, message: message.into() }
    }

    /// Reads `grpc-status` and `grpc-message` from trailers (or trailers-only headers).
    ///
    /// Returns `None` when there is no `grpc-status`, and a status with code
    /// [`Code::Unknown`] when it is present but not a number.
    ///
    /// ```
    /// use aetcd_core::grpc::{Code, Status};
    /// let t = [("grpc-status", &b"5"[..]), ("grpc-message", &b"etcdserver: requested lease not found"[..])];
    /// let s = Status::from_headers(t).unwrap();
    /// assert_eq!(s.code, Code::NotFound);
    /// assert_eq!(s.message, "etcdserver: requested lease not found");
    /// ```
    pub fn from_headers<'a, I>(headers: I) -> Option<Status>
    where
        I: IntoIterator<Item = (&'a str, &'a [u8])>,
    {
        let mut code = None;
        let mut message = String::new();
        for (name, value) in headers {
            if name.eq_ignore_ascii_case("grpc-status") {
                code = Some(
                    std::str::from_utf8(value)
                        .ok()
                        .and_then(|s| s.trim().parse::<u32>().ok())
                        .map(Code::from_u32)
                        .unwrap_or(Code::Unknown),
                );
            } else if name.eq_ignore_ascii_case("grpc-message") {
                message = percent_decode(value);
            }
        }
        code.map(|code| Status { code, message })
    }

    /// True for [`Code::Ok`].
    pub fn is_ok(&self) -> bool {
        self.code == Code::Ok
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "grpc status {:?} ({})", self.code, self.code.as_u32())?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

/// Decodes gRPC's percent-encoding of `grpc-message`; invalid escapes are kept
/// as they are and invalid UTF-8 is replaced, never an error.
pub fn percent_decode(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' && i + 2 < raw.len() {
            if let (Some(h), Some(l)) = (hex(raw[i + 1]), hex(raw[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode(b"a%20b"), "a b");
        assert_eq!(percent_decode(b"100%"), "100%");
        assert_eq!(percent_decode(b"%zz%4"), "%zz%4");
        assert_eq!(percent_decode(b"caf%C3%A9"), "café");
        assert_eq!(percent_decode(b"%FF"), "\u{fffd}");
    }

    #[test]
    fn missing_and_garbage_status() {
        assert_eq!(Status::from_headers([("content-type", &b"application/grpc"[..])]), None);
        let s = Status::from_headers([("grpc-status", &b"x1"[..])]).unwrap();
        assert_eq!(s.code, Code::Unknown);
    }
}

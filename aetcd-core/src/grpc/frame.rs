//! gRPC message framing: each message on the wire is a 1-byte compression flag, a
//! 4-byte big-endian length and the protobuf bytes.
//!
//! [`encode`] produces a whole frame; [`FrameDecoder`] takes the DATA chunks of a
//! response in whatever split they arrive and yields whole messages, refusing any
//! message larger than its limit before buffering it.

use std::collections::VecDeque;
use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Length of the prefix in front of every gRPC message.
pub const PREFIX_LEN: usize = 5;

/// Encodes `msg` into one length-prefixed, uncompressed gRPC frame.
///
/// ```
/// use aetcd_core::grpc::frame::{encode, PREFIX_LEN};
/// let frame = encode(&aetcd_core::pb::etcdserverpb::RangeRequest { key: "k".into(), ..Default::default() });
/// assert_eq!(frame[0], 0); // not compressed
/// assert_eq!(frame.len(), PREFIX_LEN + 3);
/// ```
pub fn encode<M: prost::Message>(msg: &M) -> Bytes {
    let len = msg.encoded_len();
    let mut buf = BytesMut::with_capacity(PREFIX_LEN + len);
    buf.put_u8(0);
    // A message of 4 GiB or more cannot be framed; prost would not produce one
    // from an etcd request that the client accepted (the send limit is checked first).
    buf.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    msg.encode_raw(&mut buf);
    buf.freeze()
}

/// Appends `msg` as one length-prefixed, uncompressed gRPC frame to `buf`, so
/// several messages for one stream go out as one write.
///
/// ```
/// let mut buf = bytes::BytesMut::new();
/// let req = aetcd_core::pb::etcdserverpb::LeaseKeepAliveRequest { id: 7 };
/// aetcd_core::grpc::frame::encode_into(&req, &mut buf);
/// aetcd_core::grpc::frame::encode_into(&req, &mut buf);
/// assert_eq!(buf.len(), 2 * (aetcd_core::grpc::frame::PREFIX_LEN + 2));
/// ```
pub fn encode_into<M: prost::Message>(msg: &M, buf: &mut BytesMut) {
    let len = msg.encoded_len();
    buf.reserve(PREFIX_LEN + len);
    buf.put_u8(0);
    buf.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    msg.encode_raw(buf);
}

/// Why a byte stream could not be split into gRPC messages.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// The prefix announced a message larger than the configured limit.
    TooLarge {
        /// Announced length in bytes.
        len: usize,
        /// The decoder's limit in bytes.
        limit: usize,
    },
    /// The message is compressed, which the client never asks for.
    Compressed,
    /// The compression flag byte is neither 0 nor 1.
    BadFlag(u8),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge { len, limit } => {
                write!(f, "message of {len} bytes is over the limit of {limit} bytes")
            }
            FrameError::Compressed => f.write_str("compressed message, but no compression was negotiated"),
            FrameError::BadFlag(b) => write!(f, "invalid gRPC compression flag {b}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Incremental decoder of length-prefixed gRPC messages.
///
/// Chunks are kept as they arrive; a message that lies inside one chunk is handed
/// out as a slice of it (no copy), one that spans chunks is joined once.
///
/// ```
/// use aetcd_core::grpc::frame::FrameDecoder;
/// use bytes::Bytes;
/// let mut d = FrameDecoder::new(1024);
/// d.push(Bytes::from_static(&[0, 0, 0]));
/// assert_eq!(d.next_message(), Ok(None));
/// d.push(Bytes::from_static(&[0, 2, b'h', b'i', 0]));
/// assert_eq!(d.next_message(), Ok(Some(Bytes::from_static(b"hi"))));
/// assert_eq!(d.next_message(), Ok(None));
/// assert_eq!(d.buffered(), 1);
/// ```
#[derive(Debug)]
pub struct FrameDecoder {
    chunks: VecDeque<Bytes>,
    buffered: usize,
    limit: usize,
    /// Length of the message whose prefix was already consumed.
    body_len: Option<usize>,
}

impl FrameDecoder {
    /// A decoder that refuses messages longer than `limit` bytes.
    pub fn new(limit: usize) -> Self {
        FrameDecoder { chunks: VecDeque::new(), buffered: 0, limit, body_len: None }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        self.buffered += data.len();
        self.chunks.push_back(data);
    }

    /// Bytes received but not yet returned as part of a message.
    pub fn buffered(&self) -> usize {
        self.buffered + if self.body_len.is_some() { PREFIX_LEN } else { 0 }
    }

    /// True when no partial message is buffered.
    pub fn is_idle(&self) -> bool {
        self.buffered == 0 && self.body_len.is_none()
    }

    /// The next whole message, `Ok(None)` if more bytes are needed.
    ///
    /// After an error the stream is unusable: the caller must end the call.
    pub fn next_message(&mut self) -> Result<Option<Bytes>, FrameError> {
        let len = match self.body_len {
            Some(len) => len,
            None => {
                if self.buffered < PREFIX_LEN {
                    return Ok(None);
                }
                let mut prefix = [0u8; PREFIX_LEN];
                self.copy_out(&mut prefix);
                let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
                match prefix[0] {
                    0 => {}
                    1 => return Err(FrameError::Compressed),
                    b => return Err(FrameError::BadFlag(b)),
                }
                if len > self.limit {
                    return Err(FrameError::TooLarge { len, limit: self.limit });
                }
                self.body_len = Some(len);
                len
            }
        };
        if self.buffered < len {
            return Ok(None);
        }
        self.body_len = None;
        Ok(Some(self.take(len)))
    }

    fn copy_out(&mut self, out: &mut [u8]) {
        let mut filled = 0;
        while filled < out.len() {
            // `buffered >= out.len()` was checked by the caller, so a chunk is there.
            let Some(front) = self.chunks.front_mut() else { return };
            let n = (out.len() - filled).min(front.len());
            out[filled..filled + n].copy_from_slice(&front[..n]);
            front.advance(n);
            filled += n;
            if front.is_empty() {
                self.chunks.pop_front();
            }
        }
        self.buffered -= filled;
    }

    fn take(&mut self, len: usize) -> Bytes {
        if len == 0 {
            return Bytes::new();
        }
        self.buffered -= len;
        if let Some(front) = self.chunks.front_mut() {
            if front.len() >= len {
                let out = front.split_to(len);
                if front.is_empty() {
                    self.chunks.pop_front();
                }
                return out;
            }
        }
        let mut out = BytesMut::with_capacity(len);
        while out.len() < len {
            let Some(front) = self.chunks.front_mut() else { break };
            let n = (len - out.len()).min(front.len());
            out.extend_from_slice(&front[..n]);
            front.advance(n);
            if front.is_empty() {
                self.chunks.pop_front();
            }
        }
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut v = vec![0];
        v.extend_from_slice(&(body.len() as u32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn every_split_of_three_messages_decodes_the_same() {
        let mut wire = frame(b"first");
        wire.extend(frame(b""));
        wire.extend(frame(&[7u8; 300]));
        for a in 0..wire.len() {
            for b in a..wire.len() {
                let mut d = FrameDecoder::new(1000);
                let mut got = Vec::new();
                for part in [&wire[..a], &wire[a..b], &wire[b..]] {
                    d.push(Bytes::copy_from_slice(part));
                    while let Some(m) = d.next_message().unwrap() {
                        got.push(m);
                    }
                }
                assert_eq!(got.len(), 3, "split at {a},{b}");
                assert_eq!(&got[0][..], b"first");
                assert!(got[1].is_empty());
                assert_eq!(&got[2][..], &[7u8; 300][..]);
                assert!(d.is_idle());
            }
        }
    }

    #[test]
    fn byte_by_byte() {
        let wire = frame(b"hello world");
        let mut d = FrameDecoder::new(100);
        for (i, b) in wire.iter().enumerate() {
            d.push(Bytes::copy_from_slice(&[*b]));
            let m = d.next_message().unwrap();
            if i + 1 == wire.len() {
                assert_eq!(m.as_deref(), Some(&b"hello world"[..]));
            } else {
                assert_eq!(m, None);
            }
        }
    }

    #[test]
    fn single_chunk_message_is_not_copied() {
        let wire = Bytes::from(frame(b"abcdef"));
        let base = wire.as_ptr() as usize;
        let mut d = FrameDecoder::new(100);
        d.push(wire);
        let m = d.next_message().unwrap().unwrap();
        assert_eq!(m.as_ptr() as usize, base + PREFIX_LEN);
    }

    #[test]
    fn oversized_message_is_refused_from_its_prefix() {
        let mut d = FrameDecoder::new(10);
        d.push(Bytes::from_static(&[0, 0, 0, 0, 11]));
        assert_eq!(d.next_message(), Err(FrameError::TooLarge { len: 11, limit: 10 }));
        let mut d = FrameDecoder::new(10);
        d.push(Bytes::from_static(&[0, 0xff, 0xff, 0xff, 0xff]));
        assert!(matches!(d.next_message(), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn garbage_flags_are_errors() {
        let mut d = FrameDecoder::new(10);
        d.push(Bytes::from_static(&[1, 0, 0, 0, 1, 0]));
        assert_eq!(d.next_message(), Err(FrameError::Compressed));
        let mut d = FrameDecoder::new(10);
        d.push(Bytes::from_static(b"HTTP/1.1 400"));
        assert_eq!(d.next_message(), Err(FrameError::BadFlag(b'H')));
    }

    #[test]
    fn encode_roundtrip() {
        use crate::pb::etcdserverpb::PutRequest;
        let req = PutRequest { key: "k".into(), value: vec![1u8; 70_000].into(), ..Default::default() };
        let mut d = FrameDecoder::new(1 << 20);
        d.push(encode(&req));
        let msg = d.next_message().unwrap().unwrap();
        let back: PutRequest = prost::Message::decode(msg).unwrap();
        assert_eq!(back, req);
    }
}

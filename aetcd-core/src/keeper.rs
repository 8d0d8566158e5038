//! The lease keeper: one `LeaseKeepAlive` stream carries the renewals of every
//! kept lease. Each lease is renewed a third of its TTL after the last
//! confirmation and is reported lost, explicitly, when the server says its TTL
//! is gone or when its TTL passes without a confirmation. Renewals that fell due
//! while the stream was down go out as soon as a new stream opens.
//!
//! It owns its timers (renewal and deadline per lease) and is composed into
//! [`Core`](crate::Core)'s `poll_timeout`/`handle_timeout`.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::core::{Event, Output};
use crate::error::Error;
use crate::ids::CallId;
use crate::pb::etcdserverpb as pb;
use crate::stream::{Stream, StreamSlot};

/// Path of the keep-alive method.
pub(crate) const KEEP_ALIVE_PATH: &str = "/etcdserverpb.Lease/LeaseKeepAlive";

/// Renewals are never closer together than this, even for very short TTLs or
/// while no answer comes.
const MIN_RENEW_INTERVAL: Duration = Duration::from_millis(500);

/// What happened to a kept lease.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseUpdate {
    /// The server renewed the lease for `ttl` seconds.
    KeptAlive {
        /// Seconds granted by this renewal.
        ttl: i64,
    },
    /// The lease is gone (or can no longer be vouched for); keep-alive stopped.
    /// [`Error::LeaseNotFound`]: the server says it expired or was revoked;
    /// [`Error::LeaseExpired`]: its TTL passed without a confirmed renewal;
    /// [`Error::Closed`]: the client closed.
    Lost(Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    Renew,
    Deadline,
}

#[derive(Debug)]
struct Kept {
    ttl: Duration,
    /// When the oldest unanswered renewal went out: the server renewed the lease
    /// after that, so its TTL runs out no earlier than `sent_at + ttl`.
    sent_at: Option<Instant>,
    renew_at: Instant,
    deadline: Instant,
}

#[derive(Debug)]
pub(crate) struct Keeper {
    leases: HashMap<i64, Kept>,
    timers: BTreeSet<(Instant, i64, Due)>,
    stream: StreamSlot,
}

impl Keeper {
    pub(crate) fn new(backoff_min: Duration, backoff_max: Duration) -> Self {
        Keeper { leases: HashMap::new(), timers: BTreeSet::new(), stream: StreamSlot::new(backoff_min, backoff_max) }
    }

    pub(crate) fn stream(&self) -> Stream {
        self.stream.state()
    }

    pub(crate) fn wants_stream(&self) -> bool {
        self.stream.is_wanted()
    }

    pub(crate) fn len(&self) -> usize {
        self.leases.len()
    }

    /// Starts keeping `id` alive; its first renewal is due at once. `ttl` is the
    /// lease's TTL in seconds as last known (granted). Returns true when a stream
    /// must be opened.
    pub(crate) fn add(&mut self, now: Instant, id: i64, ttl: i64) -> Result<bool, Error> {
        if ttl <= 0 {
            return Err(Error::InvalidArgument("a kept lease needs a positive TTL".into()));
        }
        self.remove(id);
        let ttl = Duration::from_secs(ttl as u64);
        let kept = Kept { ttl, sent_at: None, renew_at: now, deadline: now + ttl };
        self.timers.insert((kept.renew_at, id, Due::Renew));
        self.timers.insert((kept.deadline, id, Due::Deadline));
        self.leases.insert(id, kept);
        Ok(self.stream.want())
    }

    /// Stops keeping `id` alive (the lease itself is left to expire).
    pub(crate) fn remove(&mut self, id: i64) -> bool {
        let Some(k) = self.leases.remove(&id) else { return false };
        self.timers.remove(&(k.renew_at, id, Due::Renew));
        self.timers.remove(&(k.deadline, id, Due::Deadline));
        true
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(at, _, _)| *at)
    }

    pub(crate) fn timeout_lease(&self) -> Option<(i64, bool)> {
        self.timers.first().map(|(_, id, due)| (*id, *due == Due::Deadline))
    }

    /// Sends due renewals (when the stream is open) and reports leases whose
    /// deadline passed.
    pub(crate) fn handle_timeout(&mut self, now: Instant, out: &mut VecDeque<Output>) {
        let open = self.stream.is_open();
        let mut parked = Vec::new();
        while let Some(&(at, id, due)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            match due {
                Due::Deadline => {
                    if let Some(k) = self.leases.remove(&id) {
                        self.timers.remove(&(k.renew_at, id, Due::Renew));
                        let lost = LeaseUpdate::Lost(Error::LeaseExpired { id });
                        out.push_back(Output::Event(Event::Lease { id, update: lost }));
                    }
                }
                Due::Renew if open => {
                    let Some(k) = self.leases.get_mut(&id) else { continue };
                    self.stream.push(&pb::LeaseKeepAliveRequest { id });
                    k.sent_at.get_or_insert(now);
                    // Until an answer sets the next renewal, repeat at the usual cadence.
                    k.renew_at = now + (k.ttl / 3).max(MIN_RENEW_INTERVAL);
                    self.timers.insert((k.renew_at, id, Due::Renew));
                }
                // Overdue with no stream: sent as soon as one opens.
                Due::Renew => parked.push(id),
            }
        }
        for id in parked {
            if let Some(k) = self.leases.get_mut(&id) {
                k.renew_at = now;
            }
        }
    }

    /// A stream opened as `call`: the renewals that are due go out with it.
    pub(crate) fn stream_opened(&mut self, now: Instant, call: CallId) -> Bytes {
        let mut due: Vec<i64> = self.leases.iter().filter(|(_, k)| k.renew_at <= now).map(|(id, _)| *id).collect();
        due.sort_unstable(); // a reproducible order
        for id in due {
            let k = self.leases.get_mut(&id).expect("id taken from the map just above");
            self.timers.remove(&(k.renew_at, id, Due::Renew));
            self.stream.push(&pb::LeaseKeepAliveRequest { id });
            k.sent_at.get_or_insert(now);
            k.renew_at = now + (k.ttl / 3).max(MIN_RENEW_INTERVAL);
            self.timers.insert((k.renew_at, id, Due::Renew));
        }
        self.stream.opened(call)
    }

    pub(crate) fn take_write(&mut self) -> Option<(CallId, Bytes)> {
        self.stream.take_write()
    }

    /// The stream ended. Leases keep their deadlines; returns the wait before
    /// reopening while any lease is kept.
    pub(crate) fn stream_ended(&mut self) -> Option<Duration> {
        self.stream.ended(!self.leases.is_empty())
    }

    pub(crate) fn close(&mut self, out: &mut VecDeque<Output>) -> Option<CallId> {
        let call = self.stream.close();
        self.timers.clear();
        let mut ids: Vec<i64> = self.leases.drain().map(|(id, _)| id).collect();
        ids.sort_unstable();
        for id in ids {
            out.push_back(Output::Event(Event::Lease { id, update: LeaseUpdate::Lost(Error::Closed) }));
        }
        call
    }

    pub(crate) fn handle_message(
        &mut self,
        now: Instant,
        message: Bytes,
        out: &mut VecDeque<Output>,
    ) -> Result<(), Error> {
        let r = crate::rpc::decode_pb::<pb::LeaseKeepAliveResponse>(message)?;
        self.stream.worked();
        let id = r.id;
        let Some(k) = self.leases.get_mut(&id) else { return Ok(()) };
        if r.ttl <= 0 {
            self.remove(id);
            out.push_back(Output::Event(Event::Lease { id, update: LeaseUpdate::Lost(Error::LeaseNotFound) }));
            return Ok(());
        }
        self.timers.remove(&(k.renew_at, id, Due::Renew));
        self.timers.remove(&(k.deadline, id, Due::Deadline));
        k.ttl = Duration::from_secs(r.ttl as u64);
        k.renew_at = now + (k.ttl / 3).max(MIN_RENEW_INTERVAL);
        k.deadline = k.sent_at.take().unwrap_or(now) + k.ttl;
        self.timers.insert((k.renew_at, id, Due::Renew));
        self.timers.insert((k.deadline, id, Due::Deadline));
        out.push_back(Output::Event(Event::Lease { id, update: LeaseUpdate::KeptAlive { ttl: r.ttl } }));
        Ok(())
    }
}

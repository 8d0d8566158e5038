//! Watch requests and what a watch delivers: typed events grouped by revision.

use bytes::Bytes;

use super::kv::{KeyRange, KeyValue};
use crate::pb::{etcdserverpb as pb, mvccpb};

/// A caller-chosen watch id (at least 1). It is also the `watch_id` sent to the
/// server, so creates can be pipelined and answers matched without ambiguity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WatchId(pub u64);

impl std::fmt::Display for WatchId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "watch#{}", self.0)
    }
}

/// What to watch and how: a key, prefix, range, everything from a key, or all
/// keys; from which revision; with previous values; without puts or deletes;
/// with progress notifications; with fragmented large responses.
///
/// ```
/// use aetcd_core::rpc::watch::WatchRequest;
/// let w = WatchRequest::prefix("jobs/").start_revision(100).prev_kv().no_delete().progress_notify();
/// # let _ = w;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a watch request does nothing until it is started"]
pub struct WatchRequest {
    range: KeyRange,
    start_revision: i64,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    progress_notify: bool,
    fragment: bool,
}

impl WatchRequest {
    fn new(range: KeyRange) -> Self {
        WatchRequest {
            range,
            start_revision: 0,
            prev_kv: false,
            no_put: false,
            no_delete: false,
            progress_notify: false,
            fragment: false,
        }
    }

    /// Watches one key.
    pub fn key(key: impl Into<Bytes>) -> Self {
        Self::new(KeyRange::Key(key.into()))
    }

    /// Watches every key starting with `prefix`.
    pub fn prefix(prefix: impl Into<Bytes>) -> Self {
        Self::new(KeyRange::Prefix(prefix.into()))
    }

    /// Watches the keys in `[start, end)`.
    pub fn range(start: impl Into<Bytes>, end: impl Into<Bytes>) -> Self {
        Self::new(KeyRange::Range(start.into(), end.into()))
    }

    /// Watches every key greater than or equal to `key`.
    pub fn from_key(key: impl Into<Bytes>) -> Self {
        Self::new(KeyRange::FromKey(key.into()))
    }

    /// Watches every key.
    pub fn all() -> Self {
        Self::new(KeyRange::All)
    }

    /// Delivers history from `revision` on (inclusive). 0: only changes after the
    /// watch is created.
    pub fn start_revision(mut self, revision: i64) -> Self {
        self.start_revision = revision;
        self
    }

    /// Each event carries the key's previous value (when still in history).
    pub fn prev_kv(mut self) -> Self {
        self.prev_kv = true;
        self
    }

    /// Leaves out put events.
    pub fn no_put(mut self) -> Self {
        self.no_put = true;
        self
    }

    /// Leaves out delete events.
    pub fn no_delete(mut self) -> Self {
        self.no_delete = true;
        self
    }

    /// Asks the server for periodic progress notifications while idle.
    pub fn progress_notify(mut self) -> Self {
        self.progress_notify = true;
        self
    }

    /// Lets the server split responses larger than its request limit; the client
    /// joins the pieces before delivering them.
    pub fn fragment(mut self) -> Self {
        self.fragment = true;
        self
    }

    /// The start revision asked for (0: from now).
    pub fn requested_start_revision(&self) -> i64 {
        self.start_revision
    }

    pub(crate) fn to_create(&self, id: WatchId, start_revision: i64) -> pb::WatchCreateRequest {
        let (key, range_end) = self.range.clone().into_wire();
        let mut filters = Vec::new();
        if self.no_put {
            filters.push(pb::watch_create_request::FilterType::Noput as i32);
        }
        if self.no_delete {
            filters.push(pb::watch_create_request::FilterType::Nodelete as i32);
        }
        pb::WatchCreateRequest {
            key,
            range_end,
            start_revision,
            progress_notify: self.progress_notify,
            filters,
            prev_kv: self.prev_kv,
            watch_id: id.0 as i64,
            fragment: self.fragment,
        }
    }
}

/// Whether an event wrote or deleted its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// The key was created or updated.
    Put,
    /// The key was deleted (its `kv` holds the key and the deletion's revision).
    Delete,
}

/// One change to one key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WatchEvent {
    /// Put or delete.
    pub kind: EventKind,
    /// The key after the change (for a delete: the key, with `mod_revision` the deletion's revision).
    pub kv: KeyValue,
    /// The key before the change, when the watch asked for it and it is still in history.
    pub prev_kv: Option<KeyValue>,
}

impl WatchEvent {
    /// The revision of the change.
    pub fn revision(&self) -> i64 {
        self.kv.mod_revision
    }

    pub(crate) fn from_pb(e: mvccpb::Event) -> WatchEvent {
        let kind = match mvccpb::event::EventType::try_from(e.r#type) {
            Ok(mvccpb::event::EventType::Delete) => EventKind::Delete,
            _ => EventKind::Put,
        };
        WatchEvent { kind, kv: e.kv.map(KeyValue::from).unwrap_or_default(), prev_kv: e.prev_kv.map(KeyValue::from) }
    }
}

/// The events of one watch response: every change of one or more revisions,
/// never part of a revision.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WatchResponse {
    /// The response header's revision (at least the last event's revision).
    pub revision: i64,
    /// The events, in revision order.
    pub events: Vec<WatchEvent>,
}

/// What happened to a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WatchUpdate {
    /// The server created the watch (reported once, not again after a resume).
    Created {
        /// The store's revision at creation.
        revision: i64,
    },
    /// Changes.
    Events(WatchResponse),
    /// Every change up to `revision` has been delivered.
    Progress {
        /// The store revision the server vouched for.
        revision: i64,
    },
    /// The watch is over: `Ok` after a cancel, otherwise why it ended.
    Ended(Result<(), crate::Error>),
}

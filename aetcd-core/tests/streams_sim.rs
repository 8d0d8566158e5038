//! Deterministic tests of the two long-lived streams, the watch multiplexer and
//! the lease keeper, on virtual time: no sockets, no real clock.

use std::time::{Duration, Instant};

use aetcd_core::grpc::frame::{encode, FrameDecoder};
use aetcd_core::pb::etcdserverpb as pb;
use aetcd_core::pb::mvccpb;
use aetcd_core::rpc::watch::{WatchId, WatchRequest, WatchUpdate};
use aetcd_core::{CallId, Config, Core, Endpoint, EndpointId, Error, Event, LeaseUpdate, Output, TimerReason};
use bytes::Bytes;
use prost::Message;

/// A core with one endpoint, a virtual clock and a record of what it did.
struct Sim {
    core: Core,
    now: Instant,
    endpoint: Option<EndpointId>,
    events: Vec<Event>,
    /// Streams opened: (call, path, messages sent on it so far).
    streams: Vec<(CallId, &'static str, Vec<Bytes>)>,
    resets: Vec<CallId>,
}

impl Sim {
    fn new() -> Sim {
        let mut config = Config::new(vec![Endpoint::new("127.0.0.1", 2379)]);
        config.reconnect_backoff(Duration::from_millis(100), Duration::from_secs(1));
        Sim {
            core: Core::new(config),
            now: Instant::now(),
            endpoint: None,
            events: Vec::new(),
            streams: Vec::new(),
            resets: Vec::new(),
        }
    }

    /// Carries out every output; connections succeed at once.
    fn drain(&mut self) {
        while let Some(out) = self.core.poll_output() {
            match out {
                Output::Connect { endpoint } => {
                    self.endpoint = Some(endpoint);
                    self.core.handle_connected(self.now, endpoint);
                }
                Output::OpenCall { call, head, message, end_stream, .. } => {
                    assert!(!end_stream, "streams stay open");
                    assert!(head.require_leader, "streams ask for a leader");
                    self.streams.push((call, head.path, frames(message)));
                    self.core.handle_headers(self.now, call, 200, [("content-type", &b"application/grpc"[..])]);
                }
                Output::SendMessage { call, message, .. } => {
                    let s = self.streams.iter_mut().find(|s| s.0 == call).expect("message on an opened stream");
                    s.2.extend(frames(message));
                }
                Output::ResetCall { call } => self.resets.push(call),
                Output::Event(e) => self.events.push(e),
                Output::Disconnect { .. } => {}
                other => panic!("unexpected output {other:?}"),
            }
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.core.handle_timeout(self.now);
        self.drain();
    }

    /// Jumps to the core's next deadline and fires it.
    fn jump(&mut self) -> TimerReason {
        let at = self.core.poll_timeout().expect("a timer is set");
        let reason = self.core.timeout_reason().expect("a reason");
        self.now = self.now.max(at);
        self.core.handle_timeout(self.now);
        self.drain();
        reason
    }

    fn stream(&self, path: &str) -> (CallId, Vec<Bytes>) {
        let s = self.streams.iter().rev().find(|s| s.1 == path).expect("stream opened");
        (s.0, s.2.clone())
    }

    fn reply<M: Message>(&mut self, call: CallId, msg: &M) {
        self.core.handle_data(self.now, call, encode(msg));
        self.drain();
    }

    fn watch_updates(&mut self) -> Vec<(WatchId, WatchUpdate)> {
        let mut out = Vec::new();
        self.events.retain(|e| match e {
            Event::Watch { id, update } => {
                out.push((*id, update.clone()));
                false
            }
            _ => true,
        });
        out
    }

    fn lease_updates(&mut self) -> Vec<(i64, LeaseUpdate)> {
        let mut out = Vec::new();
        self.events.retain(|e| match e {
            Event::Lease { id, update } => {
                out.push((*id, update.clone()));
                false
            }
            _ => true,
        });
        out
    }
}

fn frames(bytes: Bytes) -> Vec<Bytes> {
    let mut d = FrameDecoder::new(1 << 20);
    d.push(bytes);
    let mut out = Vec::new();
    while let Some(m) = d.next_message().unwrap() {
        out.push(m);
    }
    assert!(d.is_idle());
    out
}

const WATCH: &str = "/etcdserverpb.Watch/Watch";
const KEEP: &str = "/etcdserverpb.Lease/LeaseKeepAlive";

fn creates(msgs: &[Bytes]) -> Vec<pb::WatchCreateRequest> {
    msgs.iter()
        .filter_map(|m| match pb::WatchRequest::decode(m.clone()).unwrap().request_union {
            Some(pb::watch_request::RequestUnion::CreateRequest(c)) => Some(c),
            _ => None,
        })
        .collect()
}

fn cancels(msgs: &[Bytes]) -> Vec<i64> {
    msgs.iter()
        .filter_map(|m| match pb::WatchRequest::decode(m.clone()).unwrap().request_union {
            Some(pb::watch_request::RequestUnion::CancelRequest(c)) => Some(c.watch_id),
            _ => None,
        })
        .collect()
}

fn header(revision: i64) -> Option<pb::ResponseHeader> {
    Some(pb::ResponseHeader { revision, ..Default::default() })
}

fn created(id: i64, revision: i64) -> pb::WatchResponse {
    pb::WatchResponse { header: header(revision), watch_id: id, created: true, ..Default::default() }
}

fn put_event(key: &str, rev: i64) -> mvccpb::Event {
    mvccpb::Event {
        r#type: 0,
        kv: Some(mvccpb::KeyValue {
            key: Bytes::copy_from_slice(key.as_bytes()),
            mod_revision: rev,
            create_revision: rev,
            version: 1,
            value: Bytes::from_static(b"v"),
            lease: 0,
        }),
        prev_kv: None,
    }
}

fn events(id: i64, revs: &[i64]) -> pb::WatchResponse {
    pb::WatchResponse {
        header: header(*revs.last().unwrap()),
        watch_id: id,
        events: revs.iter().map(|r| put_event("k", *r)).collect(),
        ..Default::default()
    }
}

fn revisions(update: &WatchUpdate) -> Vec<i64> {
    match update {
        WatchUpdate::Events(r) => r.events.iter().map(|e| e.revision()).collect(),
        other => panic!("expected events, got {other:?}"),
    }
}

#[test]
fn creates_are_pipelined_with_client_ids_and_matched_in_any_order() {
    let mut s = Sim::new();
    for i in 1..=3 {
        s.core.watch(s.now, WatchId(i), WatchRequest::key(format!("k{i}"))).unwrap();
    }
    s.drain();
    let (call, msgs) = s.stream(WATCH);
    let c = creates(&msgs);
    assert_eq!(c.iter().map(|c| c.watch_id).collect::<Vec<_>>(), vec![1, 2, 3], "three creates before any answer");
    // Answers in another order are matched by id.
    s.reply(call, &created(3, 30));
    s.reply(call, &created(1, 10));
    s.reply(call, &created(2, 20));
    let got = s.watch_updates();
    assert_eq!(
        got,
        vec![
            (WatchId(3), WatchUpdate::Created { revision: 30 }),
            (WatchId(1), WatchUpdate::Created { revision: 10 }),
            (WatchId(2), WatchUpdate::Created { revision: 20 }),
        ]
    );
}

#[test]
fn a_refused_create_belongs_to_the_oldest_pending_one() {
    let mut s = Sim::new();
    s.core.watch(s.now, WatchId(1), WatchRequest::key("secret")).unwrap();
    s.core.watch(s.now, WatchId(2), WatchRequest::key("open")).unwrap();
    s.drain();
    let (call, _) = s.stream(WATCH);
    let refused = pb::WatchResponse {
        header: header(5),
        watch_id: -1,
        created: true,
        canceled: true,
        cancel_reason: "etcdserver: permission denied".into(),
        ..Default::default()
    };
    s.reply(call, &refused);
    s.reply(call, &created(2, 5));
    assert_eq!(
        s.watch_updates(),
        vec![
            (WatchId(1), WatchUpdate::Ended(Err(Error::PermissionDenied))),
            (WatchId(2), WatchUpdate::Created { revision: 5 }),
        ]
    );
    assert_eq!(s.core.watch_count(), 1);
}

#[test]
fn after_a_reset_every_watch_resumes_from_its_next_revision_without_repeats() {
    let mut s = Sim::new();
    s.core.watch(s.now, WatchId(1), WatchRequest::prefix("a/")).unwrap(); // from now
    s.core.watch(s.now, WatchId(2), WatchRequest::prefix("b/").start_revision(3)).unwrap(); // history
    s.core.watch(s.now, WatchId(3), WatchRequest::key("c")).unwrap(); // never sees an event
    s.drain();
    let (call, msgs) = s.stream(WATCH);
    assert_eq!(creates(&msgs).iter().map(|c| c.start_revision).collect::<Vec<_>>(), vec![0, 3, 0]);
    for id in 1..=3 {
        s.reply(call, &created(id, 10));
    }
    s.reply(call, &events(1, &[11, 11]));
    s.reply(call, &events(2, &[3, 5]));
    s.reply(call, &events(1, &[14]));
    let before = s.watch_updates();
    assert_eq!(before.len(), 6);

    // The stream breaks: nothing is lost, a new stream re-creates all three.
    s.core.handle_reset(s.now, call, 2);
    s.drain();
    assert_eq!(s.core.poll_timeout().map(|t| t - s.now), Some(Duration::from_millis(100)), "backoff before reopening");
    assert_eq!(s.jump(), TimerReason::WatchReconnect);
    let (call2, msgs) = s.stream(WATCH);
    assert_ne!(call2, call);
    let c = creates(&msgs);
    let starts: Vec<(i64, i64)> = c.iter().map(|c| (c.watch_id, c.start_revision)).collect();
    assert_eq!(starts, vec![(1, 15), (2, 6), (3, 11)], "last event + 1, or the creation revision + 1");
    assert_eq!(c[0].key, Bytes::from_static(b"a/"), "the original options are kept");
    for id in 1..=3 {
        s.reply(call2, &created(id, 20));
    }
    // A server that repeats an old revision is not believed.
    s.reply(call2, &events(1, &[14, 16]));
    let after = s.watch_updates();
    assert_eq!(after.len(), 1, "no second Created is shown: {after:?}");
    assert_eq!(revisions(&after[0].1), vec![16]);
}

#[test]
fn compaction_while_away_ends_the_watch_with_the_compact_revision() {
    let mut s = Sim::new();
    s.core.watch(s.now, WatchId(7), WatchRequest::key("k")).unwrap();
    s.drain();
    let (call, _) = s.stream(WATCH);
    s.reply(call, &created(7, 10));
    s.reply(call, &events(7, &[12]));
    s.core.handle_call_lost(s.now, call, "connection reset");
    s.drain();
    s.jump();
    let (call2, msgs) = s.stream(WATCH);
    assert_eq!(creates(&msgs)[0].start_revision, 13);
    s.reply(call2, &created(7, 40));
    let compacted = pb::WatchResponse {
        header: header(40),
        watch_id: 7,
        canceled: true,
        compact_revision: 30,
        ..Default::default()
    };
    s.reply(call2, &compacted);
    let got = s.watch_updates();
    assert_eq!(got.last().unwrap().1, WatchUpdate::Ended(Err(Error::Compacted { compact_revision: Some(30) })));
    assert_eq!(s.core.watch_count(), 0);
}

#[test]
fn fragments_are_joined_and_progress_moves_only_what_it_may() {
    let mut s = Sim::new();
    s.core.watch(s.now, WatchId(1), WatchRequest::prefix("f/").fragment().progress_notify()).unwrap();
    s.drain();
    let (call, _) = s.stream(WATCH);
    s.reply(call, &created(1, 10));
    let mut part = events(1, &[11, 12]);
    part.fragment = true;
    s.reply(call, &part);
    assert!(
        s.watch_updates().iter().all(|(_, u)| !matches!(u, WatchUpdate::Events(_))),
        "nothing before the last fragment"
    );
    s.reply(call, &events(1, &[13]));
    let got = s.watch_updates();
    assert_eq!(got.len(), 1, "one response for the joined fragments: {got:?}");
    assert_eq!(revisions(&got[0].1), vec![11, 12, 13]);
    // A periodic progress for this watch moves its resume point...
    s.reply(call, &pb::WatchResponse { header: header(50), watch_id: 1, ..Default::default() });
    assert_eq!(s.watch_updates(), vec![(WatchId(1), WatchUpdate::Progress { revision: 50 })]);
    assert_eq!(s.core.watch_next_revision(WatchId(1)), Some(51));
    // ...a requested one (id -1) is shown but may run ahead of events on older servers.
    s.core.request_progress(s.now);
    s.drain();
    s.reply(call, &pb::WatchResponse { header: header(90), watch_id: -1, ..Default::default() });
    assert_eq!(s.watch_updates(), vec![(WatchId(1), WatchUpdate::Progress { revision: 90 })]);
    assert_eq!(s.core.watch_next_revision(WatchId(1)), Some(51));
}

#[test]
fn cancel_waits_for_the_server_and_nothing_follows_it() {
    let mut s = Sim::new();
    s.core.watch(s.now, WatchId(1), WatchRequest::key("k")).unwrap();
    s.drain();
    let (call, _) = s.stream(WATCH);
    s.reply(call, &created(1, 10));
    s.core.cancel_watch(s.now, WatchId(1));
    s.drain();
    assert_eq!(cancels(&s.stream(WATCH).1), vec![1]);
    s.reply(call, &events(1, &[11])); // in flight before the server saw the cancel
    s.reply(call, &pb::WatchResponse { header: header(11), watch_id: 1, canceled: true, ..Default::default() });
    let got = s.watch_updates();
    assert_eq!(
        got,
        vec![(WatchId(1), WatchUpdate::Created { revision: 10 }), (WatchId(1), WatchUpdate::Ended(Ok(())))]
    );
}

#[test]
fn no_leader_ends_every_watch_and_transport_loss_does_not() {
    let mut s = Sim::new();
    s.core.watch(s.now, WatchId(1), WatchRequest::key("k")).unwrap();
    s.core.watch(s.now, WatchId(2), WatchRequest::key("j")).unwrap();
    s.drain();
    let (call, _) = s.stream(WATCH);
    s.reply(call, &created(1, 1));
    s.reply(call, &created(2, 1));
    s.core.handle_trailers(s.now, call, [("grpc-status", &b"14"[..]), ("grpc-message", &b"etcdserver: no leader"[..])]);
    s.drain();
    let ended: Vec<_> = s.watch_updates().into_iter().filter(|(_, u)| matches!(u, WatchUpdate::Ended(_))).collect();
    assert_eq!(
        ended,
        vec![
            (WatchId(1), WatchUpdate::Ended(Err(Error::NoLeader))),
            (WatchId(2), WatchUpdate::Ended(Err(Error::NoLeader)))
        ]
    );
}

#[test]
fn reconnect_backoff_grows_and_resets_once_a_stream_works() {
    let mut s = Sim::new();
    s.core.watch(s.now, WatchId(1), WatchRequest::key("k")).unwrap();
    s.drain();
    let mut waits = Vec::new();
    for _ in 0..5 {
        let (call, _) = s.stream(WATCH);
        s.core.handle_reset(s.now, call, 2);
        s.drain();
        waits.push(s.core.poll_timeout().unwrap() - s.now);
        s.jump();
    }
    let ms: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
    assert_eq!(ms, vec![100, 200, 400, 800, 1000]);
    let (call, _) = s.stream(WATCH);
    s.reply(call, &created(1, 3));
    s.core.handle_reset(s.now, call, 2);
    s.drain();
    assert_eq!(s.core.poll_timeout().unwrap() - s.now, Duration::from_millis(100));
}

fn keepalive_ids(msgs: &[Bytes]) -> Vec<i64> {
    msgs.iter().map(|m| pb::LeaseKeepAliveRequest::decode(m.clone()).unwrap().id).collect()
}

fn kept(id: i64, ttl: i64) -> pb::LeaseKeepAliveResponse {
    pb::LeaseKeepAliveResponse { header: header(1), id, ttl }
}

#[test]
fn keep_alive_renews_at_a_third_of_the_ttl() {
    let mut s = Sim::new();
    s.core.keep_alive(s.now, 0xa, 9).unwrap();
    s.drain();
    s.advance(Duration::ZERO); // the first renewal is due at once
    let (call, msgs) = s.stream(KEEP);
    assert_eq!(keepalive_ids(&msgs), vec![0xa]);
    s.reply(call, &kept(0xa, 9));
    assert_eq!(s.lease_updates(), vec![(0xa, LeaseUpdate::KeptAlive { ttl: 9 })]);
    assert_eq!(s.core.poll_timeout().unwrap() - s.now, Duration::from_secs(3));
    assert_eq!(s.core.timeout_reason(), Some(TimerReason::LeaseRenew(0xa)));
    for round in 1..=3 {
        assert_eq!(s.jump(), TimerReason::LeaseRenew(0xa));
        assert_eq!(keepalive_ids(&s.stream(KEEP).1).len(), 1 + round);
        s.reply(call, &kept(0xa, 9));
    }
    assert_eq!(s.core.kept_leases(), 1);
}

#[test]
fn silence_from_the_server_ends_in_expiry_at_the_ttl() {
    let mut s = Sim::new();
    let start = s.now;
    s.core.keep_alive(s.now, 7, 6).unwrap();
    s.drain();
    s.advance(Duration::ZERO);
    let (call, _) = s.stream(KEEP);
    s.reply(call, &kept(7, 6));
    let answered = s.now;
    // No more answers: renewals keep going out, then the lease is declared lost.
    let mut renewals = 0;
    while s.core.kept_leases() > 0 {
        match s.jump() {
            TimerReason::LeaseRenew(7) => renewals += 1,
            TimerReason::LeaseDeadline(7) => {}
            other => panic!("unexpected timer {other:?}"),
        }
    }
    assert!(renewals >= 2);
    assert!(keepalive_ids(&s.stream(KEEP).1).len() >= 3, "renewals were sent meanwhile");
    assert_eq!(s.now - answered, Duration::from_secs(6), "the deadline is the TTL after the renewal was sent");
    assert!(s.now >= start);
    assert_eq!(s.lease_updates().last().unwrap(), &(7, LeaseUpdate::Lost(Error::LeaseExpired { id: 7 })));
    assert_eq!(s.core.kept_leases(), 0);
}

#[test]
fn a_ttl_of_zero_means_the_lease_is_gone() {
    let mut s = Sim::new();
    s.core.keep_alive(s.now, 3, 30).unwrap();
    s.drain();
    s.advance(Duration::ZERO);
    let (call, _) = s.stream(KEEP);
    s.reply(call, &kept(3, 0));
    assert_eq!(s.lease_updates(), vec![(3, LeaseUpdate::Lost(Error::LeaseNotFound))]);
    assert_eq!(s.core.kept_leases(), 0);
}

#[test]
fn overdue_renewals_go_out_on_the_new_stream_at_once() {
    let mut s = Sim::new();
    s.core.keep_alive(s.now, 1, 30).unwrap();
    s.core.keep_alive(s.now, 2, 3).unwrap();
    s.drain();
    s.advance(Duration::ZERO);
    let (call, _) = s.stream(KEEP);
    s.reply(call, &kept(1, 30));
    s.reply(call, &kept(2, 3));
    // The stream breaks; lease 2's renewal falls due while it is down.
    s.core.handle_call_lost(s.now, call, "gone");
    s.drain();
    s.advance(Duration::from_millis(1500));
    let (call2, msgs) = s.stream(KEEP);
    assert_ne!(call2, call, "a new stream opened after the backoff");
    assert_eq!(keepalive_ids(&msgs), vec![2], "the overdue renewal went out at once, lease 1 is not due");
    s.reply(call2, &kept(2, 3));
    assert!(s.lease_updates().contains(&(2, LeaseUpdate::KeptAlive { ttl: 3 })));
}

#[test]
fn stopping_keep_alive_sends_nothing_more() {
    let mut s = Sim::new();
    s.core.keep_alive(s.now, 5, 3).unwrap();
    s.drain();
    s.advance(Duration::ZERO);
    let (call, _) = s.stream(KEEP);
    s.reply(call, &kept(5, 3));
    assert!(s.core.stop_keep_alive(s.now, 5));
    s.advance(Duration::from_secs(60));
    assert_eq!(keepalive_ids(&s.stream(KEEP).1), vec![5]);
    assert!(s.lease_updates().iter().all(|(_, u)| matches!(u, LeaseUpdate::KeptAlive { .. })));
    assert_eq!(s.core.poll_timeout(), None);
}

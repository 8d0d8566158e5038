//! End-to-end malformed-server tests through the real h2 driver, on tokio and on smol.
//!
//! The server here is not an etcd: it is a canned-response HTTP/2 server (h2 on a
//! tokio runtime in a background thread) that answers each call according to the
//! key of the `Range` request it carries, so that one client can meet several bad
//! answers in a row and show it is still usable. Two more modes are not HTTP/2 at
//! all: one closes every TCP connection at once, one writes garbage.
//!
//! Every scenario is one generic `async fn` over the runtime, instantiated for
//! `aetcd_tokio` and `aetcd_smol` by `both_runtimes!`.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Once};
use std::time::{Duration, Instant};

use aetcd_core::grpc::frame::{encode, FrameError};
use aetcd_core::pb::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader};
use aetcd_core::pb::mvccpb::KeyValue;
use aetcd_h2::kv::GetResponse;
use aetcd_h2::{Client, Error, Runtime, Timer};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response};
use prost::Message;

// ----- the canned server -----

/// What the server is.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// An HTTP/2 server answering by request key (see [`answer`]).
    Grpc,
    /// Accepts TCP connections and closes them at once.
    CloseAtOnce,
    /// Accepts TCP connections and writes garbage instead of HTTP/2.
    Garbage,
}

/// A running canned server; its thread lives as long as the test process.
struct CannedServer {
    addr: SocketAddr,
    /// What the server saw: (request key, observation).
    seen: mpsc::Receiver<(String, String)>,
    /// TCP connections accepted so far.
    connections: Arc<AtomicUsize>,
}

impl CannedServer {
    fn start(mode: Mode) -> CannedServer {
        watch_background_panics();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let (tx, seen) = mpsc::channel();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        std::thread::Builder::new()
            .name("canned-server".into())
            .spawn(move || match mode {
                Mode::Grpc => {
                    listener.set_nonblocking(true).expect("nonblocking listener");
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                    rt.block_on(serve_grpc(listener, tx, count));
                }
                Mode::CloseAtOnce => {
                    for socket in listener.incoming() {
                        count.fetch_add(1, Ordering::SeqCst);
                        drop(socket);
                    }
                }
                Mode::Garbage => {
                    for socket in listener.incoming() {
                        count.fetch_add(1, Ordering::SeqCst);
                        let Ok(mut socket) = socket else { continue };
                        std::thread::spawn(move || {
                            let _ = socket.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
                            // Keep reading until the client gives up, so it sees the garbage
                            // rather than a reset.
                            let mut sink = [0u8; 4096];
                            while matches!(socket.read(&mut sink), Ok(n) if n > 0) {}
                        });
                    }
                }
            })
            .expect("spawn the server thread");
        CannedServer { addr, seen, connections }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits (bounded) until the server reports `what` for the request with `key`.
    fn expect(&self, key: &str, what: &str) {
        let limit = Instant::now() + Duration::from_secs(10);
        let mut got = Vec::new();
        while let Some(left) = limit.checked_duration_since(Instant::now()) {
            match self.seen.recv_timeout(left) {
                Ok((k, w)) if k == key && w == what => return,
                Ok(other) => got.push(other),
                Err(_) => break,
            }
        }
        panic!("the server never saw {what:?} for {key:?}; it saw {got:?}");
    }

    /// Waits (bounded) for the first observation starting with `prefix` for `key`.
    fn observed(&self, key: &str, prefix: &str) -> String {
        let limit = Instant::now() + Duration::from_secs(10);
        while let Some(left) = limit.checked_duration_since(Instant::now()) {
            match self.seen.recv_timeout(left) {
                Ok((k, w)) if k == key && w.starts_with(prefix) => return w,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("the server never saw {prefix:?} for {key:?}");
    }
}

async fn serve_grpc(listener: TcpListener, seen: mpsc::Sender<(String, String)>, count: Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    loop {
        let Ok((socket, _)) = listener.accept().await else { continue };
        count.fetch_add(1, Ordering::SeqCst);
        // A second handle on the socket lets a call kill the whole connection.
        let Ok(std_socket) = socket.into_std() else { continue };
        let Ok(killer) = std_socket.try_clone() else { continue };
        let Ok(socket) = tokio::net::TcpStream::from_std(std_socket) else { continue };
        let killer = Arc::new(killer);
        let seen = seen.clone();
        tokio::spawn(async move {
            let Ok(mut conn) = h2::server::handshake(socket).await else { return };
            while let Some(Ok((request, respond))) = conn.accept().await {
                tokio::spawn(answer(request, respond, killer.clone(), seen.clone()));
            }
        });
    }
}

fn grpc_response(status: u16) -> Response<()> {
    let mut r = Response::new(());
    *r.status_mut() = http::StatusCode::from_u16(status).expect("a valid status");
    r.headers_mut().insert("content-type", HeaderValue::from_static("application/grpc"));
    r
}

fn ok_trailers() -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert("grpc-status", HeaderValue::from_static("0"));
    t
}

/// The answer to `Get::key("split")`: a real RangeResponse.
fn split_answer() -> RangeResponse {
    RangeResponse {
        header: Some(ResponseHeader { cluster_id: 1, member_id: 2, revision: 7, raft_term: 3 }),
        kvs: vec![KeyValue {
            key: Bytes::from_static(b"split"),
            value: Bytes::from_static(b"one byte at a time"),
            create_revision: 5,
            mod_revision: 7,
            version: 2,
            lease: 0,
        }],
        more: false,
        count: 1,
    }
}

fn check_split_answer(r: &GetResponse) {
    assert_eq!(r.header.revision, 7);
    assert_eq!(r.count, 1);
    let kv = r.kv().expect("one key");
    assert_eq!((&kv.key[..], &kv.value[..]), (&b"split"[..], &b"one byte at a time"[..]));
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (5, 7, 2));
}

/// Waits until the client resets the stream and reports it.
async fn report_reset(stream: &mut h2::SendStream<Bytes>, key: &str, seen: &mpsc::Sender<(String, String)>) {
    let reason = std::future::poll_fn(|cx| stream.poll_reset(cx)).await;
    let what = match reason {
        Ok(r) => format!("reset {r:?}"),
        Err(e) => format!("stream error {e}"),
    };
    let _ = seen.send((key.to_owned(), what));
}

/// Answers one call by the key of its `RangeRequest`.
async fn answer(
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    killer: Arc<std::net::TcpStream>,
    seen: mpsc::Sender<(String, String)>,
) {
    let timeout = request.headers().get("grpc-timeout").map(|v| v.to_str().unwrap_or("?").to_owned());
    let mut body = request.into_body();
    let mut frame = Vec::new();
    while let Some(chunk) = body.data().await {
        let Ok(chunk) = chunk else { return };
        let _ = body.flow_control().release_capacity(chunk.len());
        frame.extend_from_slice(&chunk);
    }
    let key = match frame.get(5..).map(RangeRequest::decode) {
        Some(Ok(r)) => String::from_utf8_lossy(&r.key).into_owned(),
        _ => String::new(),
    };
    let _ = seen.send((key.clone(), format!("grpc-timeout {}", timeout.as_deref().unwrap_or("none"))));
    match key.as_str() {
        // (a) a DATA frame whose compression flag byte is neither 0 nor 1
        "bad-flag" | "compressed" => {
            let flag = if key == "bad-flag" { 7 } else { 1 };
            let Ok(mut stream) = respond.send_response(grpc_response(200), false) else { return };
            let _ = stream.send_data(Bytes::from(vec![flag, 0, 0, 0, 2, 0x0a, 0x00]), false);
            report_reset(&mut stream, &key, &seen).await;
        }
        // (b) a length prefix of 100 MiB, and then nothing of the body
        "huge-prefix" => {
            let Ok(mut stream) = respond.send_response(grpc_response(200), false) else { return };
            let _ = stream.send_data(Bytes::from_static(&[0, 0x06, 0x40, 0x00, 0x00]), false);
            report_reset(&mut stream, &key, &seen).await;
        }
        // (c) a valid answer in 1-byte DATA frames, then OK trailers
        "split" => {
            let Ok(mut stream) = respond.send_response(grpc_response(200), false) else { return };
            let frame = encode(&split_answer());
            for i in 0..frame.len() {
                if stream.send_data(frame.slice(i..i + 1), false).is_err() {
                    return;
                }
            }
            let _ = stream.send_trailers(ok_trailers());
        }
        // (d) trailers-only: etcd's "no leader"
        "no-leader" => {
            let mut r = grpc_response(200);
            r.headers_mut().insert("grpc-status", HeaderValue::from_static("14"));
            r.headers_mut().insert("grpc-message", HeaderValue::from_static("etcdserver: no leader"));
            let _ = respond.send_response(r, true);
        }
        // (e) the response head, then the whole connection dies
        "die" => {
            let Ok(mut stream) = respond.send_response(grpc_response(200), false) else { return };
            let _ = stream.send_data(Bytes::from_static(&[0, 0, 0]), false);
            let _ = seen.send((key, "killing the connection".into()));
            let _ = killer.shutdown(Shutdown::Both);
        }
        // (f) not a gRPC answer: HTTP 500
        "http-500" => {
            let mut r = Response::new(());
            *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
            let _ = respond.send_response(r, true);
        }
        // (g) never answers; reports the client's reset
        "silent" => {
            let reason = std::future::poll_fn(|cx| respond.poll_reset(cx)).await;
            let what = match reason {
                Ok(r) => format!("reset {r:?}"),
                Err(e) => format!("stream error {e}"),
            };
            let _ = seen.send((key, what));
        }
        _ => {
            let mut r = grpc_response(200);
            r.headers_mut().insert("grpc-status", HeaderValue::from_static("12"));
            r.headers_mut().insert("grpc-message", HeaderValue::from_static("unknown scenario"));
            let _ = respond.send_response(r, true);
        }
    }
}

// ----- client side -----

/// Panics on the threads that run the client's tasks or the server.
static BACKGROUND_PANICS: AtomicUsize = AtomicUsize::new(0);

fn watch_background_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            let name = thread.name().unwrap_or("");
            if name.starts_with("tokio-runtime-worker") || name.starts_with("smol-") || name.starts_with("canned-") {
                BACKGROUND_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
    });
}

fn assert_no_background_panic() {
    assert_eq!(BACKGROUND_PANICS.load(Ordering::SeqCst), 0, "a client task or the server panicked");
}

/// Awaits `f`, failing the test if it takes longer than `limit` (a hang guard, not
/// a synchronisation: every awaited request here ends on its own much sooner).
async fn guard<R: Runtime, F: std::future::Future>(limit: Duration, f: F) -> F::Output {
    let mut timer = R::default().timer();
    timer.reset(Instant::now() + limit);
    let mut f = std::pin::pin!(f);
    std::future::poll_fn(|cx| {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(cx) {
            return std::task::Poll::Ready(v);
        }
        if timer.poll_fired(cx).is_ready() {
            panic!("the request hung for {limit:?}");
        }
        std::task::Poll::Pending
    })
    .await
}

/// Polls two futures together until both are done.
async fn join<A, B>(a: A, b: B) -> (A::Output, B::Output)
where
    A: std::future::Future + Unpin,
    B: std::future::Future + Unpin,
{
    let (mut a, mut b) = (a, b);
    let (mut ra, mut rb) = (None, None);
    std::future::poll_fn(|cx| {
        if ra.is_none() {
            if let std::task::Poll::Ready(v) = std::pin::Pin::new(&mut a).poll(cx) {
                ra = Some(v);
            }
        }
        if rb.is_none() {
            if let std::task::Poll::Ready(v) = std::pin::Pin::new(&mut b).poll(cx) {
                rb = Some(v);
            }
        }
        if ra.is_some() && rb.is_some() {
            std::task::Poll::Ready((ra.take().unwrap(), rb.take().unwrap()))
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}

const HANG: Duration = Duration::from_secs(20);

fn client<R: Runtime>(server: &CannedServer) -> Client<R> {
    Client::<R>::builder().endpoint(server.endpoint()).build().expect("a valid endpoint")
}

/// The client still works: the split answer decodes.
async fn still_usable<R: Runtime>(client: &Client<R>) {
    let answer = guard::<R, _>(HANG, client.get("split")).await.expect("a good answer after a bad one");
    check_split_answer(&answer);
}

// ----- scenarios -----

/// (a) A bad compression flag byte: Malformed, the call is reset, the client goes on.
async fn bad_compression_flag<R: Runtime>() {
    let server = CannedServer::start(Mode::Grpc);
    let client = client::<R>(&server);
    let e = guard::<R, _>(HANG, client.get("bad-flag")).await.unwrap_err();
    assert_eq!(e, Error::Malformed { reason: FrameError::BadFlag(7).to_string() });
    server.expect("bad-flag", "reset CANCEL");
    still_usable(&client).await;
    let e = guard::<R, _>(HANG, client.get("compressed")).await.unwrap_err();
    assert_eq!(e, Error::Malformed { reason: FrameError::Compressed.to_string() });
    server.expect("compressed", "reset CANCEL");
    still_usable(&client).await;
    assert_eq!(server.connections.load(Ordering::SeqCst), 1, "one connection carried every call");
    client.close().await;
    assert_no_background_panic();
}

/// (b) A 100 MiB length prefix: refused from the prefix alone, the call is reset.
async fn oversized_length_prefix<R: Runtime>() {
    let server = CannedServer::start(Mode::Grpc);
    let client = client::<R>(&server);
    let e = guard::<R, _>(HANG, client.get("huge-prefix")).await.unwrap_err();
    assert_eq!(e, Error::MessageTooLarge { len: 100 << 20, limit: 64 << 20 });
    server.expect("huge-prefix", "reset CANCEL");
    still_usable(&client).await;
    // With a smaller limit, the real answer of (c) is too large as well.
    let strict = Client::<R>::builder().endpoint(server.endpoint()).max_decoding_message_size(10).build().unwrap();
    let e = guard::<R, _>(HANG, strict.get("split")).await.unwrap_err();
    let len = encode(&split_answer()).len() - 5;
    assert_eq!(e, Error::MessageTooLarge { len, limit: 10 });
    strict.close().await;
    client.close().await;
    assert_no_background_panic();
}

/// (c) A valid answer in 1-byte DATA frames decodes, alone and next to others.
async fn one_byte_data_frames<R: Runtime>() {
    let server = CannedServer::start(Mode::Grpc);
    let client = client::<R>(&server);
    still_usable(&client).await;
    let (a, b) = guard::<R, _>(HANG, join(client.get("split"), client.get("split"))).await;
    check_split_answer(&a.unwrap());
    check_split_answer(&b.unwrap());
    client.close().await;
    assert_no_background_panic();
}

/// (d) Trailers-only status 14 with etcd's message: NoLeader.
async fn trailers_only_no_leader<R: Runtime>() {
    let server = CannedServer::start(Mode::Grpc);
    let client = client::<R>(&server);
    let e = guard::<R, _>(HANG, client.get("no-leader")).await.unwrap_err();
    assert_eq!(e, Error::NoLeader);
    assert!(e.is_transient());
    still_usable(&client).await;
    client.close().await;
    assert_no_background_panic();
}

/// (e) The server dies after the response head: ConnectionLost; the next request
/// connects again.
async fn connection_dies_mid_call<R: Runtime>() {
    let server = CannedServer::start(Mode::Grpc);
    let client = client::<R>(&server);
    let e = guard::<R, _>(HANG, client.get("die")).await.unwrap_err();
    assert!(matches!(e, Error::ConnectionLost { .. }), "got {e:?}");
    server.expect("die", "killing the connection");
    // The next request goes over a new connection. It can still meet the dead one
    // if the driver has not yet processed the connection's end (a known race: the
    // client does not retry), so one retry is allowed, and only for that error.
    let answer = match guard::<R, _>(HANG, client.get("split")).await {
        Err(Error::ConnectionLost { .. }) => guard::<R, _>(HANG, client.get("split")).await,
        other => other,
    };
    check_split_answer(&answer.expect("a new connection works"));
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);
    client.close().await;
    assert_no_background_panic();
}

/// (f) HTTP 500 instead of a gRPC answer: Malformed.
async fn http_500<R: Runtime>() {
    let server = CannedServer::start(Mode::Grpc);
    let client = client::<R>(&server);
    let e = guard::<R, _>(HANG, client.get("http-500")).await.unwrap_err();
    assert_eq!(e, Error::Malformed { reason: "HTTP status 500 instead of a gRPC response".into() });
    still_usable(&client).await;
    client.close().await;
    assert_no_background_panic();
}

/// (g) No answer: DeadlineExceeded at the client's request timeout, the stream is
/// reset, grpc-timeout told the server, and the client goes on.
async fn never_answers<R: Runtime>() {
    let server = CannedServer::start(Mode::Grpc);
    let client =
        Client::<R>::builder().endpoint(server.endpoint()).request_timeout(Duration::from_millis(300)).build().unwrap();
    let started = Instant::now();
    let e = guard::<R, _>(HANG, client.get("silent")).await.unwrap_err();
    assert_eq!(e, Error::DeadlineExceeded);
    assert!(started.elapsed() >= Duration::from_millis(300), "the deadline fired early");
    // grpc-timeout carried what was left of the 300 ms (in microseconds or nanoseconds).
    let sent = server.observed("silent", "grpc-timeout ");
    let value = sent.trim_start_matches("grpc-timeout ");
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().unwrap_or_else(|_| panic!("bad grpc-timeout {value:?}"));
    let left = match unit {
        "n" => Duration::from_nanos(n),
        "u" => Duration::from_micros(n),
        "m" => Duration::from_millis(n),
        _ => panic!("unexpected grpc-timeout unit in {value:?}"),
    };
    assert!(left > Duration::ZERO && left <= Duration::from_millis(300), "grpc-timeout {value}");
    server.expect("silent", "reset CANCEL");
    // Still usable, with a request deadline of its own that is not the point here.
    let answer = guard::<R, _>(HANG, client.get("split").timeout(Duration::from_secs(15))).await;
    check_split_answer(&answer.unwrap());
    client.close().await;
    assert_no_background_panic();
}

/// A per-request deadline on a silent call, while other calls go on.
async fn own_deadline_on_a_silent_call<R: Runtime>() {
    let server = CannedServer::start(Mode::Grpc);
    let client = client::<R>(&server);
    let silent = client.get("silent").timeout(Duration::from_millis(200));
    let (silent, fine) = guard::<R, _>(HANG, join(silent, client.get("split"))).await;
    assert_eq!(silent.unwrap_err(), Error::DeadlineExceeded);
    check_split_answer(&fine.unwrap());
    server.expect("silent", "reset CANCEL");
    client.close().await;
    assert_no_background_panic();
}

/// (h) Accepts TCP and closes at once: a transport error, typed, every time.
async fn closes_at_once<R: Runtime>() {
    let server = CannedServer::start(Mode::CloseAtOnce);
    let client = client::<R>(&server);
    for _ in 0..2 {
        let e = guard::<R, _>(HANG, client.get("k")).await.unwrap_err();
        assert!(matches!(e, Error::ConnectFailed { .. } | Error::ConnectionLost { .. }), "got {e:?}");
    }
    client.close().await;
    assert_no_background_panic();
}

/// (i) Accepts TCP and writes garbage: a transport error, typed, every time.
async fn writes_garbage<R: Runtime>() {
    let server = CannedServer::start(Mode::Garbage);
    let client = client::<R>(&server);
    for _ in 0..2 {
        let e = guard::<R, _>(HANG, client.get("k")).await.unwrap_err();
        assert!(matches!(e, Error::ConnectFailed { .. } | Error::ConnectionLost { .. }), "got {e:?}");
    }
    let e = guard::<R, _>(HANG, Client::<R>::builder().endpoint(server.endpoint()).connect()).await.map(drop);
    assert!(matches!(e, Ok(()) | Err(Error::ConnectFailed { .. } | Error::ConnectionLost { .. })), "got {e:?}");
    client.close().await;
    assert_no_background_panic();
}

/// Nothing listens at all: ConnectFailed with the endpoint named.
async fn nothing_listens<R: Runtime>() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let endpoint = format!("http://127.0.0.1:{port}");
    let client = Client::<R>::builder().endpoint(&endpoint).build().unwrap();
    match guard::<R, _>(HANG, client.get("k")).await.unwrap_err() {
        Error::ConnectFailed { endpoint: e, .. } => assert_eq!(e, endpoint),
        other => panic!("got {other:?}"),
    }
    client.close().await;
    assert_no_background_panic();
}

// ----- both runtimes -----

fn block_on_tokio<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime").block_on(f)
}

macro_rules! both_runtimes {
    ($($name:ident),* $(,)?) => {
        mod on_tokio {
            $(
                #[test]
                fn $name() {
                    super::block_on_tokio(super::$name::<aetcd_tokio::Tokio>())
                }
            )*
        }
        mod on_smol {
            $(
                #[test]
                fn $name() {
                    smol::block_on(super::$name::<aetcd_smol::Smol>())
                }
            )*
        }
    };
}

both_runtimes!(
    bad_compression_flag,
    oversized_length_prefix,
    one_byte_data_frames,
    trailers_only_no_leader,
    connection_dies_mid_call,
    http_500,
    never_answers,
    own_deadline_on_a_silent_call,
    closes_at_once,
    writes_garbage,
    nothing_listens,
);

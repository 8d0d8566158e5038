//! Test support for aetcd: starts real etcd clusters (see [`etcd`]) for the
//! integration tests in `tests/`, and runs one scenario on both runtimes.

pub mod etcd;
pub mod proxy;

use std::future::Future;

/// Runs `f` to completion on a 2-worker tokio runtime (the client's task runs on
/// the workers, so the test body may block briefly, e.g. to restart etcd).
pub fn block_on_tokio<F: Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("cannot build a tokio runtime");
    rt.block_on(f)
}

/// Runs `f` to completion with `smol::block_on`; the client's task runs on smol's
/// global executor threads.
pub fn block_on_smol<F: Future>(f: F) -> F::Output {
    smol::block_on(f)
}

/// Runs `f`, giving up after `limit`: `None` then. Guards a test against a
/// hang where a lost event would otherwise leave it waiting forever.
pub async fn within<R: aetcd_h2::Runtime, F: Future>(limit: std::time::Duration, f: F) -> Option<F::Output> {
    use aetcd_h2::Timer;
    let mut timer = R::default().timer();
    timer.reset(std::time::Instant::now() + limit);
    let mut f = std::pin::pin!(f);
    std::future::poll_fn(|cx| {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(cx) {
            return std::task::Poll::Ready(Some(v));
        }
        timer.poll_fired(cx).map(|()| None)
    })
    .await
}

/// The value of an etcd metric (first sample of `name`) from a member's `/metrics`.
pub fn metric(endpoint: &str, name: &str) -> Option<f64> {
    use std::io::{Read, Write};
    let addr = endpoint.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.trim().parse().ok())
}

/// Instantiates each named scenario `async fn name<R: aetcd_h2::Runtime>()` as a
/// test on tokio (module `on_tokio`) and on smol (module `on_smol`).
#[macro_export]
macro_rules! on_both_runtimes {
    ($($name:ident),* $(,)?) => {
        mod on_tokio {
            $(
                #[test]
                fn $name() {
                    $crate::block_on_tokio(super::$name::<aetcd_tokio::Tokio>())
                }
            )*
        }
        mod on_smol {
            $(
                #[test]
                fn $name() {
                    $crate::block_on_smol(super::$name::<aetcd_smol::Smol>())
                }
            )*
        }
    };
}

//! Test support for aetcd: starts real etcd clusters (see [`etcd`]) for the
//! integration tests in `tests/`, and runs one scenario on both runtimes.

pub mod etcd;

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

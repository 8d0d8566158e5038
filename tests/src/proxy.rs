//! A TCP proxy that a test can cut and heal: the client loses its connection to
//! etcd (and cannot reconnect) while etcd itself keeps running and can be written
//! to and compacted by others. A fault injector, not a fake etcd: bytes pass
//! through untouched.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

struct State {
    target: SocketAddr,
    open: AtomicBool,
    stop: AtomicBool,
    conns: Mutex<Vec<TcpStream>>,
}

/// A cuttable loopback proxy to one etcd client URL.
pub struct Proxy {
    addr: SocketAddr,
    state: Arc<State>,
    accept: Option<thread::JoinHandle<()>>,
}

impl Proxy {
    /// Proxies to `target` (`http://127.0.0.1:PORT` or `127.0.0.1:PORT`).
    pub fn start(target: &str) -> Proxy {
        let target: SocketAddr = target.trim_start_matches("http://").parse().expect("the proxy target is an IP:port");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(State {
            target,
            open: AtomicBool::new(true),
            stop: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
        });
        let st = state.clone();
        let accept = thread::spawn(move || {
            for incoming in listener.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = incoming else { continue };
                if !st.open.load(Ordering::SeqCst) {
                    drop(client); // partitioned: the connection closes at once
                    continue;
                }
                let Ok(server) = TcpStream::connect(st.target) else { continue };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                {
                    let mut conns = st.conns.lock().unwrap();
                    conns.push(client.try_clone().expect("clone socket"));
                    conns.push(server.try_clone().expect("clone socket"));
                }
                pump(client.try_clone().expect("clone socket"), server.try_clone().expect("clone socket"));
                pump(server, client);
            }
        });
        Proxy { addr, state, accept: Some(accept) }
    }

    /// The URL to give the client.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Breaks every proxied connection and refuses new ones until [`Proxy::heal`].
    pub fn cut(&self) {
        self.state.open.store(false, Ordering::SeqCst);
        for c in self.state.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Lets connections through again.
    pub fn heal(&self) {
        self.state.open.store(true, Ordering::SeqCst);
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    });
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.state.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

//! A loopback TCP proxy between workers and coordinators that the tests can break: `cut`
//! drops every open connection and refuses (accepts and closes at once) new ones until
//! `restore`; the backends can be swapped (a restarted coordinator on a new port) and are
//! tried round-robin, skipping any that refuse (replicas).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

/// The proxy's handle; dropping it stops the proxy and closes its connections.
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

struct State {
    backends: Mutex<Vec<SocketAddr>>,
    next: AtomicUsize,
    cut: AtomicBool,
    /// Bumped on every cut so open connections notice and close.
    generation: watch::Sender<u64>,
    /// Connections forwarded, for the figures.
    connections: AtomicU64,
    /// Connections refused while cut.
    refused: AtomicU64,
    /// Armed by [`Proxy::trap_large_write`]: the next client write of at least `.0` bytes is
    /// half forwarded, then held, and the backend it was going to is sent on `.1`.
    trap: Mutex<Option<(usize, oneshot::Sender<SocketAddr>)>>,
}

impl Proxy {
    /// A proxy on a free loopback port forwarding to `backends`.
    pub async fn start(backends: Vec<SocketAddr>) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            backends: Mutex::new(backends),
            next: AtomicUsize::new(0),
            cut: AtomicBool::new(false),
            generation: watch::channel(0).0,
            connections: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            trap: Mutex::new(None),
        });
        let s = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if s.cut.load(Ordering::SeqCst) {
                    s.refused.fetch_add(1, Ordering::Relaxed);
                    drop(inbound);
                    continue;
                }
                tokio::spawn(forward(s.clone(), inbound));
            }
        });
        Ok(Proxy { addr, state, task })
    }

    /// `http://<addr>`, for workers.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
        self.state.generation.send_modify(|g| *g += 1);
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.state.cut.store(false, Ordering::SeqCst);
    }

    /// Drops every open connection but keeps accepting (a flap, or a backend swap).
    pub fn reset_connections(&self) {
        self.state.generation.send_modify(|g| *g += 1);
    }

    /// Replaces the backends.
    pub fn set_backends(&self, backends: Vec<SocketAddr>) {
        *self.state.backends.lock().expect("backends lock") = backends;
    }

    /// Arms a trap for the next client→server read of at least `min_bytes` (a checkpoint
    /// upload; heartbeats and reports are far smaller): half of it is forwarded, the rest held
    /// until the connection is dropped, and the backend's address is sent on the returned
    /// channel, so a test can kill that coordinator exactly mid-upload.
    pub fn trap_large_write(&self, min_bytes: usize) -> oneshot::Receiver<SocketAddr> {
        let (tx, rx) = oneshot::channel();
        *self.state.trap.lock().expect("trap lock") = Some((min_bytes, tx));
        rx
    }

    /// Disarms a trap that has not fired.
    pub fn disarm(&self) {
        self.state.trap.lock().expect("trap lock").take();
    }

    /// (connections forwarded, connections refused while cut).
    pub fn counts(&self) -> (u64, u64) {
        (
            self.state.connections.load(Ordering::Relaxed),
            self.state.refused.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

async fn forward(s: Arc<State>, inbound: TcpStream) {
    let mut gen_rx = s.generation.subscribe();
    let backends = s.backends.lock().expect("backends lock").clone();
    let start = s.next.fetch_add(1, Ordering::Relaxed);
    let mut outbound = None;
    for i in 0..backends.len() {
        let b = backends[(start + i) % backends.len()];
        if let Ok(o) = TcpStream::connect(b).await {
            outbound = Some((o, b));
            break;
        }
    }
    let Some((outbound, backend)) = outbound else {
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    s.connections.fetch_add(1, Ordering::Relaxed);
    gen_rx.mark_unchanged();
    let (mut in_r, mut in_w) = inbound.into_split();
    let (mut out_r, mut out_w) = outbound.into_split();
    let up = async {
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = match in_r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let fired = {
                let mut trap = s.trap.lock().expect("trap lock");
                match trap.take() {
                    Some((min, tx)) if n >= min => Some(tx),
                    other => {
                        *trap = other;
                        None
                    }
                }
            };
            if let Some(tx) = fired {
                let _ = out_w.write_all(&buf[..n / 2]).await;
                let _ = tx.send(backend);
                // Hold the rest: the test kills the backend, which ends this connection.
                std::future::pending::<()>().await;
            }
            if out_w.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let down = tokio::io::copy(&mut out_r, &mut in_w);
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = gen_rx.changed() => {}
    }
}

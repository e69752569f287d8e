//! Prometheus metrics: counters and an RPC latency histogram kept in atomics, runs by state
//! read from Postgres at scrape time, served as text on `/metrics` by a tiny HTTP/1.1 loop.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sqlx::{PgPool, Row};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const BUCKETS_MS: [f64; 12] = [
    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0, 30000.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; 12],
    over: u64,
    sum_ms: f64,
}

/// Process-wide counters.
#[derive(Default)]
pub struct Metrics {
    /// Runs leased.
    pub leases: AtomicU64,
    /// Leases the reaper expired.
    pub expiries: AtomicU64,
    /// Epoch reports stored.
    pub epochs_reported: AtomicU64,
    /// Checkpoints stored.
    pub checkpoints_stored: AtomicU64,
    /// Writes refused by fencing.
    pub fenced: AtomicU64,
    rpc: Mutex<BTreeMap<&'static str, Histogram>>,
}

/// Records one RPC's latency when dropped.
pub struct RpcTimer {
    metrics: Arc<Metrics>,
    method: &'static str,
    start: Instant,
}

impl Drop for RpcTimer {
    fn drop(&mut self) {
        let ms = self.start.elapsed().as_secs_f64() * 1000.0;
        let mut rpc = self.metrics.rpc.lock().expect("metrics lock");
        let h = rpc.entry(self.method).or_default();
        match BUCKETS_MS.iter().position(|b| ms <= *b) {
            Some(i) => h.counts[i] += 1,
            None => h.over += 1,
        }
        h.sum_ms += ms;
    }
}

impl Metrics {
    /// Starts timing an RPC.
    pub fn timer(self: &Arc<Self>, method: &'static str) -> RpcTimer {
        RpcTimer {
            metrics: self.clone(),
            method,
            start: Instant::now(),
        }
    }

    /// The exposition text.
    pub async fn render(&self, pool: &PgPool) -> String {
        let mut out = String::new();
        out.push_str("# HELP poet_runs Runs by state.\n# TYPE poet_runs gauge\n");
        if let Ok(rows) = sqlx::query("select state, count(*) as n from runs group by state")
            .fetch_all(pool)
            .await
        {
            for r in rows {
                out.push_str(&format!(
                    "poet_runs{{state=\"{}\"}} {}\n",
                    r.get::<String, _>("state"),
                    r.get::<i64, _>("n")
                ));
            }
        }
        for (name, help, v) in [
            ("poet_leases_total", "Runs leased to workers.", &self.leases),
            (
                "poet_lease_expiries_total",
                "Leases expired by the reaper.",
                &self.expiries,
            ),
            (
                "poet_epochs_reported_total",
                "Epoch reports stored.",
                &self.epochs_reported,
            ),
            (
                "poet_checkpoints_stored_total",
                "Checkpoints stored.",
                &self.checkpoints_stored,
            ),
            (
                "poet_fenced_writes_total",
                "Worker writes refused because their lease was not current.",
                &self.fenced,
            ),
        ] {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                v.load(Ordering::Relaxed)
            ));
        }
        out.push_str("# HELP poet_rpc_duration_ms gRPC handling latency.\n# TYPE poet_rpc_duration_ms histogram\n");
        let rpc = self.rpc.lock().expect("metrics lock");
        for (method, h) in rpc.iter() {
            let mut cum = 0;
            for (i, b) in BUCKETS_MS.iter().enumerate() {
                cum += h.counts[i];
                out.push_str(&format!(
                    "poet_rpc_duration_ms_bucket{{method=\"{method}\",le=\"{b}\"}} {cum}\n"
                ));
            }
            let total = cum + h.over;
            out.push_str(&format!(
                "poet_rpc_duration_ms_bucket{{method=\"{method}\",le=\"+Inf\"}} {total}\n"
            ));
            out.push_str(&format!(
                "poet_rpc_duration_ms_sum{{method=\"{method}\"}} {}\n",
                h.sum_ms
            ));
            out.push_str(&format!(
                "poet_rpc_duration_ms_count{{method=\"{method}\"}} {total}\n"
            ));
        }
        out
    }
}

/// Serves `/metrics` until the listener fails.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, pool: PgPool) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            return;
        };
        let metrics = metrics.clone();
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let n =
                match tokio::time::timeout(std::time::Duration::from_secs(5), sock.read(&mut buf))
                    .await
                {
                    Ok(Ok(n)) => n,
                    _ => return,
                };
            let req = String::from_utf8_lossy(&buf[..n]);
            let (status, body) = if req.starts_with("GET /metrics") {
                ("200 OK", metrics.render(&pool).await)
            } else {
                (
                    "404 Not Found",
                    "only /metrics is served here\n".to_string(),
                )
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}

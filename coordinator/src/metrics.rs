//! Prometheus metrics: counters and an RPC latency histogram kept in atomics, runs by state
//! read from Postgres, served as text on `/metrics` by a tiny HTTP/1.1 loop.
//!
//! A scrape must never cost the queue (SECURITY.md, finding 5): runs by state are cached for
//! [`RUNS_CACHE`] and refreshed by one scrape at a time (the others wait for it and reuse the
//! answer), so any number of scrapers makes at most one query per period; at most
//! [`MAX_CONCURRENT_SCRAPES`] connections are served at once and the rest get 503 at once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sqlx::{PgPool, Row};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// How long runs by state are reused before a scrape queries Postgres again.
pub const RUNS_CACHE: std::time::Duration = std::time::Duration::from_secs(5);

/// Scrape connections served at once; one more is answered 503 and closed.
pub const MAX_CONCURRENT_SCRAPES: usize = 4;

/// Runs by state as last read, and when.
#[derive(Default)]
struct RunsByState {
    read_at: Option<Instant>,
    counts: Vec<(String, i64)>,
}

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
    /// The cached runs by state; the async lock makes the refresh single-flight.
    runs: tokio::sync::Mutex<RunsByState>,
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

    /// Runs by state, from the cache when it is younger than [`RUNS_CACHE`]. A failed
    /// refresh keeps the last answer (and is retried by the next scrape).
    async fn runs_by_state(&self, pool: &PgPool) -> Vec<(String, i64)> {
        let mut cache = self.runs.lock().await;
        if cache.read_at.is_none_or(|t| t.elapsed() >= RUNS_CACHE) {
            let read =
                sqlx::query("select state, count(*) as n from runs group by state").fetch_all(pool);
            match tokio::time::timeout(std::time::Duration::from_secs(2), read).await {
                Ok(Ok(rows)) => {
                    cache.counts = rows
                        .iter()
                        .map(|r| (r.get::<String, _>("state"), r.get::<i64, _>("n")))
                        .collect();
                    cache.read_at = Some(Instant::now());
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "metrics: runs by state not refreshed"),
                Err(_) => tracing::debug!("metrics: runs by state timed out"),
            }
        }
        cache.counts.clone()
    }

    /// The exposition text.
    pub async fn render(&self, pool: &PgPool) -> String {
        let mut out = String::new();
        out.push_str("# HELP poet_runs Runs by state.\n# TYPE poet_runs gauge\n");
        for (state, n) in self.runs_by_state(pool).await {
            out.push_str(&format!("poet_runs{{state=\"{state}\"}} {n}\n"));
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
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_SCRAPES));
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            return;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tokio::spawn(async move {
                // Read the request first: closing a socket with unread data resets it, and
                // the scraper would see a reset instead of the 503.
                let mut buf = [0u8; 2048];
                let _ =
                    tokio::time::timeout(std::time::Duration::from_secs(1), sock.read(&mut buf))
                        .await;
                let body = "too many concurrent scrapes\n";
                let resp = format!(
                    "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
            continue;
        };
        let metrics = metrics.clone();
        let pool = pool.clone();
        tokio::spawn(async move {
            let _permit = permit;
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

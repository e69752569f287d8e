//! Prometheus metrics, encoded by `prometheus-client` and served on `/metrics` by a small axum
//! app on `--metrics-listen`. Counters live in atomics the services bump; the RPC latency is a
//! `prometheus-client` histogram family in seconds; runs by state are read from Postgres.
//!
//! A scrape must never cost the queue (SECURITY.md, finding 5): runs by state are cached for
//! [`RUNS_CACHE`] and refreshed by one scrape at a time (the others wait for it and reuse the
//! answer), so any number of scrapers makes at most one query per period; at most
//! [`MAX_CONCURRENT_SCRAPES`] scrapes are served at once and the rest get 503 at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use sqlx::{PgPool, Row};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How long runs by state are reused before a scrape queries Postgres again.
pub const RUNS_CACHE: Duration = Duration::from_secs(5);

/// Scrapes served at once; one more is answered 503 at once.
pub const MAX_CONCURRENT_SCRAPES: usize = 4;

/// Upper bounds of the RPC latency buckets, seconds (1 ms to 30 s: long-polls are slow).
const BUCKETS_S: [f64; 12] = [
    0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

/// The label of the RPC histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Method {
    method: &'static str,
}

/// The label of runs by state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

fn rpc_histogram() -> Histogram {
    Histogram::new(BUCKETS_S)
}

/// Runs by state as last read, and when.
#[derive(Default)]
struct RunsByState {
    read_at: Option<Instant>,
    counts: Vec<(String, i64)>,
}

/// Process-wide metrics.
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
    /// gRPC handling latency per method.
    rpc: Family<Method, Histogram, fn() -> Histogram>,
    /// The cached runs by state; the async lock makes the refresh single-flight.
    runs: tokio::sync::Mutex<RunsByState>,
    /// How long `runs` is reused ([`RUNS_CACHE`]; tests shorten it).
    runs_ttl: Duration,
    /// Scrapes in flight.
    slots: Arc<Semaphore>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::with_cache(RUNS_CACHE)
    }
}

/// Records one RPC's latency when dropped.
pub struct RpcTimer {
    metrics: Arc<Metrics>,
    method: &'static str,
    start: Instant,
}

impl Drop for RpcTimer {
    fn drop(&mut self) {
        self.metrics
            .rpc
            .get_or_create(&Method {
                method: self.method,
            })
            .observe(self.start.elapsed().as_secs_f64());
    }
}

/// What one scrape encodes: the counters' values and runs by state at that moment, and the
/// histogram family.
#[derive(Debug)]
struct Snapshot {
    counters: [(&'static str, &'static str, u64); 5],
    runs: Vec<(String, i64)>,
    rpc: Family<Method, Histogram, fn() -> Histogram>,
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauge = ConstGauge::new(0i64);
        let mut runs = encoder.encode_descriptor(
            "poet_runs",
            "Runs by state (every replica reports the same global numbers).",
            None,
            gauge.metric_type(),
        )?;
        for (state, n) in &self.runs {
            ConstGauge::new(*n).encode(runs.encode_family(&StateLabel {
                state: state.clone(),
            })?)?;
        }
        for (name, help, v) in self.counters {
            let c = ConstCounter::new(v);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        self.rpc.encode(encoder.encode_descriptor(
            "poet_rpc_duration",
            "gRPC handling latency.",
            Some(&Unit::Seconds),
            self.rpc.metric_type(),
        )?)
    }
}

impl Metrics {
    /// Metrics whose runs-by-state cache lives `ttl`.
    pub fn with_cache(ttl: Duration) -> Self {
        Metrics {
            leases: AtomicU64::new(0),
            expiries: AtomicU64::new(0),
            epochs_reported: AtomicU64::new(0),
            checkpoints_stored: AtomicU64::new(0),
            fenced: AtomicU64::new(0),
            rpc: Family::new_with_constructor(rpc_histogram),
            runs: Default::default(),
            runs_ttl: ttl,
            slots: Arc::new(Semaphore::new(MAX_CONCURRENT_SCRAPES)),
        }
    }

    /// Starts timing an RPC.
    pub fn timer(self: &Arc<Self>, method: &'static str) -> RpcTimer {
        RpcTimer {
            metrics: self.clone(),
            method,
            start: Instant::now(),
        }
    }

    /// Runs by state, from the cache when it is younger than the TTL. A failed refresh keeps
    /// the last answer (and is retried by the next scrape).
    async fn runs_by_state(&self, pool: &PgPool) -> Vec<(String, i64)> {
        let mut cache = self.runs.lock().await;
        if cache.read_at.is_none_or(|t| t.elapsed() >= self.runs_ttl) {
            let read =
                sqlx::query("select state, count(*) as n from runs group by state").fetch_all(pool);
            match tokio::time::timeout(Duration::from_secs(2), read).await {
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

    /// The exposition text (OpenMetrics).
    pub async fn render(&self, pool: &PgPool) -> String {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let snapshot = Snapshot {
            counters: [
                ("poet_leases", "Runs leased to workers.", n(&self.leases)),
                (
                    "poet_lease_expiries",
                    "Leases expired by the reaper.",
                    n(&self.expiries),
                ),
                (
                    "poet_epochs_reported",
                    "Epoch reports stored.",
                    n(&self.epochs_reported),
                ),
                (
                    "poet_checkpoints_stored",
                    "Checkpoints stored.",
                    n(&self.checkpoints_stored),
                ),
                (
                    "poet_fenced_writes",
                    "Worker writes refused because their lease was not current.",
                    n(&self.fenced),
                ),
            ],
            runs: self.runs_by_state(pool).await,
            rpc: self.rpc.clone(),
        };
        let mut registry = Registry::default();
        registry.register_collector(Box::new(snapshot));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// [`Self::render`] unless [`MAX_CONCURRENT_SCRAPES`] are already in flight (`None`).
    pub async fn try_render(&self, pool: &PgPool) -> Option<String> {
        let _slot = self.slots.try_acquire().ok()?;
        Some(self.render(pool).await)
    }
}

#[derive(Clone)]
struct MetricsState {
    metrics: Arc<Metrics>,
    pool: PgPool,
}

async fn scrape(State(st): State<MetricsState>) -> Response {
    match st.metrics.try_render(&st.pool).await {
        Some(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many concurrent scrapes\n",
        )
            .into_response(),
    }
}

/// Serves `/metrics` on `listener` until it fails.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, pool: PgPool) {
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(scrape))
        .fallback(|| async { (StatusCode::NOT_FOUND, "only /metrics is served here\n") })
        .with_state(MetricsState { metrics, pool });
    if let Err(e) = axum::serve(listener, app).await {
        tracing::warn!(error = %e, "metrics server stopped");
    }
}

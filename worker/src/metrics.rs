//! The worker's Prometheus metrics: what it trained, how fast, what it holds, whether the
//! coordinator still answers it, and (on a CUDA device) its GPU's load and memory. Served as
//! OpenMetrics text on `/metrics` by a small axum app on `--metrics-addr`, encoded by
//! `prometheus-client` like the coordinator's (`coordinator/src/metrics.rs`).
//!
//! The agent records into [`WorkerMetrics`] (atomics and two small locks, never held across an
//! await); a scrape reads them and computes the heartbeat age at that moment. GPU figures come
//! from `nvidia-smi --query-gpu=utilization.gpu,memory.used,memory.total` run at scrape time
//! (libtorch exposes neither). Its cost is one process start per scrape (not measured here: no
//! GPU machine has been lent), bounded by [`NVIDIA_SMI_TIMEOUT`] and shared by every scrape
//! within [`GPU_CACHE`]. On a CPU device, without `nvidia-smi`, or when it fails, the GPU series
//! are absent rather than zero, so an alert on low utilisation never fires for a machine that
//! has no GPU.
//!
//! Like the coordinator's `/metrics`, this endpoint has no token: it shows run ids and
//! throughput, no secrets; bind it to loopback or a network only Prometheus reaches.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use std::sync::Arc;
use tch::Device;
use tokio::net::TcpListener;

/// How long one scrape waits for `nvidia-smi` before it leaves the GPU series out.
pub const NVIDIA_SMI_TIMEOUT: Duration = Duration::from_secs(2);

/// How long one `nvidia-smi` answer serves later scrapes: however many scrapers there are,
/// the worker starts at most one `nvidia-smi` per period (a scrape must never cost the
/// training, as SECURITY.md's finding 5 says of the coordinator's queue).
pub const GPU_CACHE: Duration = Duration::from_secs(1);

/// Who this worker is, once registered: the info metric's labels.
#[derive(Debug, Clone)]
struct Identity {
    worker_id: i64,
    device: Device,
}

/// What the agent records and a scrape reads.
#[derive(Debug, Default)]
pub struct WorkerMetrics {
    /// Epochs whose report and checkpoint the coordinator accepted.
    epochs: AtomicU64,
    /// Characters per second of the last accepted epoch, as `f64` bits; a figure once
    /// `epochs` is past 0 (absent before the first epoch).
    chars_per_sec_bits: AtomicU64,
    /// Runs leased to this worker.
    leases: AtomicU64,
    /// Leases lost while training: fenced by a newer lease, or expired without heartbeats.
    leases_lost: AtomicU64,
    /// The run held now (0: idle).
    run_id: AtomicU64,
    /// When the coordinator last answered a heartbeat (or the registration).
    last_heartbeat: Mutex<Option<Instant>>,
    /// Set at registration.
    identity: Mutex<Option<Identity>>,
    /// The last `nvidia-smi` answer and when it came; the async lock makes the refresh
    /// single-flight (concurrent scrapes wait for it and reuse the answer).
    gpu: tokio::sync::Mutex<Option<(Instant, Option<GpuStats>)>>,
    /// The `nvidia-smi` to run; `None` finds it on `PATH`.
    nvidia_smi: Option<PathBuf>,
}

impl WorkerMetrics {
    /// Metrics that read GPU figures from `program` instead of the `nvidia-smi` on `PATH`:
    /// for a host that keeps it elsewhere, and for tests on machines without a GPU.
    pub fn with_nvidia_smi(program: impl Into<PathBuf>) -> Self {
        WorkerMetrics {
            nvidia_smi: Some(program.into()),
            ..Default::default()
        }
    }

    /// Registered as `worker_id`, training on `device`; counts as the first contact.
    pub fn registered(&self, worker_id: i64, device: Device) {
        *self.identity.lock().expect("identity lock") = Some(Identity { worker_id, device });
        self.heartbeat_ok();
    }

    /// The coordinator answered a heartbeat.
    pub fn heartbeat_ok(&self) {
        *self.last_heartbeat.lock().expect("heartbeat lock") = Some(Instant::now());
    }

    /// A run was leased; it is the one held until [`Self::run_ended`].
    pub fn run_leased(&self, run_id: i64) {
        self.leases.fetch_add(1, Ordering::Relaxed);
        self.run_id.store(run_id.max(0) as u64, Ordering::Relaxed);
    }

    /// The run held ended; `lost` when its lease was fenced or expired under it.
    pub fn run_ended(&self, lost: bool) {
        self.run_id.store(0, Ordering::Relaxed);
        if lost {
            self.leases_lost.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The coordinator accepted an epoch trained at `chars_per_sec`.
    pub fn epoch_done(&self, chars_per_sec: f64) {
        // The rate first: a scrape that sees the new count (acquire) sees its rate.
        self.chars_per_sec_bits
            .store(chars_per_sec.to_bits(), Ordering::Relaxed);
        self.epochs.fetch_add(1, Ordering::Release);
    }

    /// Epochs accepted so far.
    pub fn epochs(&self) -> u64 {
        self.epochs.load(Ordering::Relaxed)
    }

    /// The exposition text (OpenMetrics), GPU figures read now.
    pub async fn render(&self) -> String {
        let identity = self.identity.lock().expect("identity lock").clone();
        let gpu = match identity.as_ref().map(|i| i.device) {
            Some(Device::Cuda(n)) => {
                let mut cache = self.gpu.lock().await;
                match *cache {
                    Some((at, stats)) if at.elapsed() < GPU_CACHE => stats,
                    _ => {
                        let program = self.nvidia_smi.as_deref().unwrap_or("nvidia-smi".as_ref());
                        let stats = gpu_stats(program, n).await;
                        *cache = Some((Instant::now(), stats));
                        stats
                    }
                }
            }
            _ => None,
        };
        let epochs = self.epochs.load(Ordering::Acquire);
        let snapshot = Snapshot {
            epochs,
            chars_per_sec: (epochs > 0)
                .then(|| f64::from_bits(self.chars_per_sec_bits.load(Ordering::Relaxed))),
            leases: self.leases.load(Ordering::Relaxed),
            leases_lost: self.leases_lost.load(Ordering::Relaxed),
            run_id: self.run_id.load(Ordering::Relaxed),
            heartbeat_age_s: self
                .last_heartbeat
                .lock()
                .expect("heartbeat lock")
                .map(|t| t.elapsed().as_secs_f64()),
            identity,
            gpu,
        };
        let mut registry = Registry::default();
        registry.register_collector(Box::new(snapshot));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// One GPU's figures from `nvidia-smi`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpuStats {
    /// Busy fraction over nvidia-smi's last sample period, 0..1.
    pub utilization: f64,
    /// Memory in use on the GPU (every process, CUDA contexts included), bytes.
    pub memory_used_bytes: i64,
    /// The GPU's memory, bytes.
    pub memory_total_bytes: i64,
}

/// Parses one line of `nvidia-smi --query-gpu=utilization.gpu,memory.used,memory.total
/// --format=csv,noheader,nounits` (`37, 1234, 81559`: percent, MiB, MiB); `None` for anything
/// else (`[N/A]` on GPUs that do not report a field, an error text).
pub fn parse_gpu_stats(text: &str) -> Option<GpuStats> {
    let line = text.lines().next()?;
    let mut f = line.split(',').map(str::trim);
    let util: f64 = f.next()?.parse().ok()?;
    let used: i64 = f.next()?.parse().ok()?;
    let total: i64 = f.next()?.parse().ok()?;
    if f.next().is_some() || !(0.0..=100.0).contains(&util) || used < 0 || total <= 0 {
        return None;
    }
    Some(GpuStats {
        utilization: util / 100.0,
        memory_used_bytes: used << 20,
        memory_total_bytes: total << 20,
    })
}

/// GPU `index`'s figures, or `None` when `nvidia-smi` is missing, fails or is slow.
async fn gpu_stats(program: &Path, index: usize) -> Option<GpuStats> {
    let out = tokio::process::Command::new(program)
        .args([
            "--query-gpu=utilization.gpu,memory.used,memory.total",
            "--format=csv,noheader,nounits",
            "-i",
            &index.to_string(),
        ])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(NVIDIA_SMI_TIMEOUT, out)
        .await
        .ok()?
        .ok()?;
    if !out.status.success() {
        return None;
    }
    parse_gpu_stats(&String::from_utf8_lossy(&out.stdout))
}

/// What one scrape encodes.
#[derive(Debug)]
struct Snapshot {
    epochs: u64,
    chars_per_sec: Option<f64>,
    leases: u64,
    leases_lost: u64,
    run_id: u64,
    heartbeat_age_s: Option<f64>,
    identity: Option<Identity>,
    gpu: Option<GpuStats>,
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counters = [
            (
                "poet_worker_epochs",
                "Epochs trained here whose report and checkpoint the coordinator accepted.",
                self.epochs,
            ),
            (
                "poet_worker_leases",
                "Runs leased to this worker.",
                self.leases,
            ),
            (
                "poet_worker_leases_lost",
                "Leases lost while training (fenced by a newer lease, or expired without heartbeats).",
                self.leases_lost,
            ),
        ];
        for (name, help, v) in counters {
            let c = ConstCounter::new(v);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        let g = ConstGauge::new(self.run_id as i64);
        g.encode(encoder.encode_descriptor(
            "poet_worker_run_id",
            "The run being trained (0: idle).",
            None,
            g.metric_type(),
        )?)?;
        let mut gauge = |name: &str, help: &str, unit: Option<Unit>, v: Option<f64>| {
            let Some(v) = v else { return Ok(()) };
            let g = ConstGauge::new(v);
            g.encode(encoder.encode_descriptor(name, help, unit.as_ref(), g.metric_type())?)
        };
        gauge(
            "poet_worker_epoch_chars_per_second",
            "Training throughput of the last accepted epoch, characters per second.",
            None,
            self.chars_per_sec,
        )?;
        gauge(
            "poet_worker_heartbeat_age",
            "Time since the coordinator last answered a heartbeat (absent before registration).",
            Some(Unit::Seconds),
            self.heartbeat_age_s,
        )?;
        let gpu = self.gpu;
        gauge(
            "poet_worker_gpu_utilization",
            "GPU busy fraction (nvidia-smi utilization.gpu / 100).",
            // `Unit::Ratios` would name it `_ratios`; Prometheus' convention is `_ratio`.
            Some(Unit::Other("ratio".into())),
            gpu.map(|g| g.utilization),
        )?;
        gauge(
            "poet_worker_gpu_memory_used",
            "GPU memory in use, every process and CUDA context included (nvidia-smi).",
            Some(Unit::Bytes),
            gpu.map(|g| g.memory_used_bytes as f64),
        )?;
        gauge(
            "poet_worker_gpu_memory_total",
            "GPU memory (nvidia-smi).",
            Some(Unit::Bytes),
            gpu.map(|g| g.memory_total_bytes as f64),
        )?;
        if let Some(id) = &self.identity {
            let info = Info::new(vec![
                ("worker_id".to_string(), id.worker_id.to_string()),
                ("device".to_string(), crate::device::device_name(id.device)),
                ("version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
            ]);
            info.encode(encoder.encode_descriptor(
                "poet_worker",
                "This worker's id at the coordinator, its device and version.",
                None,
                info.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

async fn scrape(State(metrics): State<Arc<WorkerMetrics>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.render().await,
    )
        .into_response()
}

/// Binds `addr` for [`serve`], now, so a bad or taken address fails at startup.
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Serves `/metrics` on `listener` until it fails (the caller aborts it at shutdown).
pub async fn serve(listener: std::net::TcpListener, metrics: Arc<WorkerMetrics>) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => return tracing::warn!(error = %e, "metrics listener unusable"),
    };
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "metrics on /metrics");
    }
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(scrape))
        .fallback(|| async { (StatusCode::NOT_FOUND, "only /metrics is served here\n") })
        .with_state(metrics);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::warn!(error = %e, "metrics server stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvidia_smi_lines_parse_into_base_units() {
        assert_eq!(
            parse_gpu_stats("37, 1234, 81559\n"),
            Some(GpuStats {
                utilization: 0.37,
                memory_used_bytes: 1234 << 20,
                memory_total_bytes: 81559 << 20,
            })
        );
        for bad in [
            "",
            "[N/A], 1234, 81559",
            "37, 1234",
            "37, 1234, 81559, 5",
            "101, 1, 2",
            "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver",
        ] {
            assert_eq!(parse_gpu_stats(bad), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_cpu_worker_has_no_gpu_series_and_no_age_before_registering() {
        let m = WorkerMetrics::default();
        let text = m.render().await;
        assert!(text.contains("poet_worker_epochs_total 0"), "{text}");
        assert!(text.contains("poet_worker_run_id 0"), "{text}");
        for absent in [
            "poet_worker_heartbeat_age_seconds",
            "poet_worker_epoch_chars_per_second",
            "poet_worker_gpu",
            "poet_worker_info",
        ] {
            assert!(!text.contains(absent), "{absent} in {text}");
        }
        m.registered(7, Device::Cpu);
        m.run_leased(42);
        m.epoch_done(1500.5);
        let text = m.render().await;
        assert!(text.contains("poet_worker_epochs_total 1"), "{text}");
        assert!(text.contains("poet_worker_leases_total 1"), "{text}");
        assert!(text.contains("poet_worker_run_id 42"), "{text}");
        assert!(
            text.contains("poet_worker_epoch_chars_per_second 1500.5"),
            "{text}"
        );
        // Seconds since registering: small, written as the encoder likes (`0.0012` or
        // `9.32e-7`: CI saw the second).
        let age: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("poet_worker_heartbeat_age_seconds "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no heartbeat age in {text}"));
        assert!((0.0..1.0).contains(&age), "{age} in {text}");
        assert!(
            text.contains("poet_worker_info{worker_id=\"7\",device=\"cpu\""),
            "{text}"
        );
        assert!(!text.contains("poet_worker_gpu"), "{text}");
        m.run_ended(true);
        let text = m.render().await;
        assert!(text.contains("poet_worker_run_id 0"), "{text}");
        assert!(text.contains("poet_worker_leases_lost_total 1"), "{text}");
    }

    /// A stand-in `nvidia-smi` (no GPU on the machines that run the tests) that logs each
    /// call and answers `answer`.
    fn fake_nvidia_smi(dir: &Path, answer: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join("nvidia-smi");
        let log = dir.join("calls");
        std::fs::write(
            &p,
            format!(
                "#!/bin/sh\necho \"$@\" >> '{}'\necho '{answer}'\n",
                log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[tokio::test]
    async fn a_cuda_worker_shows_its_gpu_and_scrapes_share_one_nvidia_smi_call() {
        let dir = tempfile::tempdir().unwrap();
        let m = WorkerMetrics::with_nvidia_smi(fake_nvidia_smi(dir.path(), "37, 1024, 81559"));
        m.registered(3, Device::Cuda(1));
        let (a, b) = tokio::join!(m.render(), m.render());
        for text in [&a, &b] {
            assert!(
                text.contains("poet_worker_gpu_utilization_ratio 0.37"),
                "{text}"
            );
            assert!(
                text.contains(&format!(
                    "poet_worker_gpu_memory_used_bytes {}.0",
                    1024u64 << 20
                )),
                "{text}"
            );
            assert!(
                text.contains(&format!(
                    "poet_worker_gpu_memory_total_bytes {}.0",
                    81559u64 << 20
                )),
                "{text}"
            );
            assert!(text.contains("device=\"cuda:1\""), "{text}");
        }
        let calls = std::fs::read_to_string(dir.path().join("calls")).unwrap();
        assert_eq!(calls.lines().count(), 1, "{calls}");
        assert!(calls.contains("-i 1"), "{calls}");
        // A GPU that does not report a field: the series are left out, not zeroed.
        let dir = tempfile::tempdir().unwrap();
        let m = WorkerMetrics::with_nvidia_smi(fake_nvidia_smi(dir.path(), "[N/A], 1024, 81559"));
        m.registered(3, Device::Cuda(0));
        let text = m.render().await;
        assert!(!text.contains("poet_worker_gpu"), "{text}");
        // No such program: the same.
        let m = WorkerMetrics::with_nvidia_smi(dir.path().join("missing"));
        m.registered(3, Device::Cuda(0));
        assert!(!m.render().await.contains("poet_worker_gpu"));
    }
}

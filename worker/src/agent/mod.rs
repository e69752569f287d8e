//! The worker process against a coordinator: register, lease runs, train them on a dedicated
//! OS thread, heartbeat, report epochs and upload checkpoints, and serve generation jobs
//! beside training. [`run`] is the whole process; `main.rs` only parses flags.
//!
//! Tasks and threads, one module each:
//! - [`lease`]: the lease loop (the caller's task) takes one run at a time and drives it: it
//!   receives epoch reports from the training thread through a bounded channel and turns them
//!   into `ReportEpoch` + `UploadCheckpoint` calls, then `CompleteRun` or `FailRun`;
//! - the training thread (`std::thread`, never the async runtime) runs
//!   [`crate::train::Trainer::run`];
//! - [`heartbeat`]: beats every `heartbeat_interval` whatever the trainer does, carrying the
//!   current lease, epoch and progress;
//! - [`generation`]: long-polls `LeaseGeneration` and samples on its own thread.
//!
//! [`cache`] keeps verified copies of datasets and checkpoints; [`retry`] says which failures
//! are retried and how calls under a lease are retried (delays from
//! [`poet_core::retry::Backoff`], jittered so a fleet does not retry in lockstep).
//!
//! Stopping a run: the coordinator's cancel (heartbeat reply), a fenced write
//! (FAILED_PRECONDITION: another worker holds the lease now) and a lease that has surely
//! expired (no successful heartbeat for `lease_ttl`) all raise the run's cancel flag; the
//! trainer sees it before its next batch, and nothing more is reported for that run.
//! Transport errors are retried with backoff until the lease has surely expired. On shutdown
//! the trainer is stopped and the run released (`FailRun` with `release`), so the coordinator
//! requeues it at once.
//!
//! The coordinator serves a bounded number of dataset downloads at once; a refused one
//! (RESOURCE_EXHAUSTED) is retried with backoff while the heartbeat task keeps the lease.

mod cache;
mod generation;
mod heartbeat;
mod lease;
mod retry;

use crate::device::{self, DeviceSpec};
use crate::metrics::WorkerMetrics;
use poet_core::retry::Backoff;
use poet_proto::v1 as pb;
use retry::retryable;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tch::Device;
use tokio::sync::watch;
use tonic::Status;
use tracing::{info, warn};

/// Everything the agent needs to serve a coordinator.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Coordinator URL, e.g. `http://coordinator:7070`.
    pub coordinator: String,
    /// Device to train (and sample) on.
    pub device: DeviceSpec,
    /// Bearer token sent on every call, when the coordinator requires one.
    pub token: Option<String>,
    /// TLS files for an https:// coordinator.
    pub tls: Tls,
    /// Where downloaded datasets and checkpoints are kept between runs.
    pub cache_dir: PathBuf,
    /// Host name reported at registration.
    pub host: String,
    /// How long one `LeaseRun`/`LeaseGeneration` long-poll waits.
    pub lease_wait: Duration,
    /// Whether to serve generation jobs beside training.
    pub serve_generation: bool,
    /// `--label key=value` pairs announced at Register; sweeps can require them.
    pub labels: Vec<(String, String)>,
    /// Where the agent records what `/metrics` shows (served by the caller, if at all).
    pub metrics: Arc<WorkerMetrics>,
}

impl AgentConfig {
    /// Defaults for everything but the coordinator URL: auto device, no token, cache under
    /// the system temp dir, 20 s long-polls, generation served.
    pub fn new(coordinator: impl Into<String>) -> Self {
        AgentConfig {
            coordinator: coordinator.into(),
            device: DeviceSpec::Auto,
            token: None,
            tls: Tls::default(),
            cache_dir: std::env::temp_dir().join("poet-worker-cache"),
            host: host_name(),
            lease_wait: Duration::from_secs(20),
            serve_generation: true,
            labels: Vec::new(),
            metrics: Arc::default(),
        }
    }
}

/// TLS files for an https:// coordinator: a CA to trust (else the system's roots) and, for a
/// coordinator that requires client certificates (mTLS), this worker's certificate and key.
#[derive(Debug, Clone, Default)]
pub struct Tls {
    /// PEM CA certificate.
    pub ca: Option<PathBuf>,
    /// PEM client certificate.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
}

/// Why the agent could not run at all (per-run problems are reported to the coordinator,
/// not returned).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The coordinator URL does not parse.
    #[error("coordinator url {url:?}: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// Why it is refused.
        reason: String,
    },
    /// The token cannot travel as an HTTP header.
    #[error("token is not valid header text")]
    BadToken,
    /// A TLS file is missing or the TLS settings do not fit together.
    #[error("{0}")]
    Tls(String),
    /// The coordinator refused the registration (bad token, wrong role).
    #[error("registration refused: {0}")]
    Register(Status),
    /// The configured device is not on this machine.
    #[error(transparent)]
    Device(#[from] crate::device::NoDevice),
    /// The cache directory cannot be created.
    #[error("cache dir {path}: {source}")]
    Cache {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// This host's name, for registration.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

type Client = poet_proto::client::Worker;

/// What the lease loop, the heartbeat task and the generation task share.
#[derive(Clone)]
struct Worker {
    /// gRPC client (cheap to clone, one HTTP/2 connection).
    client: Client,
    /// Id from `Register`.
    id: i64,
    /// The secret `Register` returned with the id: every call that names the id carries it.
    secret: String,
    /// How often to heartbeat.
    heartbeat: Duration,
    /// Lease lifetime without heartbeats (updated by heartbeat replies).
    lease_ttl: Duration,
    /// Torch device for training and sampling.
    device: Device,
    /// Cache root.
    cache_dir: PathBuf,
    /// Long-poll wait.
    lease_wait: Duration,
    /// The run held now, if any: what heartbeats carry and how stops are signalled.
    slot: Arc<Mutex<Option<Arc<RunSlot>>>>,
    /// What `/metrics` shows.
    metrics: Arc<WorkerMetrics>,
}

/// Why a run stops before it completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
    /// The process is shutting down: release the run.
    Shutdown,
    /// The coordinator cancelled it: say nothing more.
    Cancelled,
    /// Another lease replaced ours: say nothing more.
    Fenced,
    /// No heartbeat succeeded for a whole lease lifetime: the lease is gone.
    Expired,
    /// The sweep's scheduler paused or stopped the run at the epoch just reported, whose
    /// checkpoint is stored: hand it back with `CompleteRun`.
    Halted,
}

/// The shared state of the run being trained.
struct RunSlot {
    /// The lease to send.
    lease: pb::Lease,
    /// Raised to stop the trainer between batches.
    cancel: Arc<AtomicBool>,
    /// First reason the run was stopped, if it was.
    stop: Mutex<Option<StopReason>>,
    /// (epoch, fraction done) for heartbeats.
    progress: Mutex<(u32, f64)>,
    /// Last time the coordinator answered a heartbeat or a write for this lease.
    last_ok: Mutex<Instant>,
}

impl RunSlot {
    fn request_stop(&self, why: StopReason) {
        let mut stop = self.stop.lock().expect("stop lock");
        if stop.is_none() {
            *stop = Some(why);
            self.cancel.store(true, Ordering::Relaxed);
        }
    }

    fn stop_reason(&self) -> Option<StopReason> {
        *self.stop.lock().expect("stop lock")
    }

    fn touch(&self) {
        *self.last_ok.lock().expect("last_ok lock") = Instant::now();
    }

    fn expired(&self, ttl: Duration) -> bool {
        self.last_ok.lock().expect("last_ok lock").elapsed() > ttl
    }
}

/// Serves the coordinator until `shutdown` resolves: registers, then leases and trains runs
/// one at a time while serving generation jobs. Returns after releasing any run in progress.
pub async fn run(
    config: AgentConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let connect = poet_proto::client::Connect {
        url: config.coordinator.clone(),
        token: config.token.clone(),
        tls_ca: config.tls.ca.clone(),
        tls_cert: config.tls.cert.clone(),
        tls_key: config.tls.key.clone(),
        tls_domain: None,
    };
    let connect_err = |e: poet_proto::client::ConnectError| match e {
        poet_proto::client::ConnectError::BadUrl { url, reason } => {
            AgentError::BadUrl { url, reason }
        }
        poet_proto::client::ConnectError::BadToken => AgentError::BadToken,
        poet_proto::client::ConnectError::Tls(t) => AgentError::Tls(t),
    };
    let endpoint = connect.endpoint().map_err(connect_err)?;
    let client = connect
        .worker(endpoint.connect_lazy())
        .map_err(connect_err)?;
    for sub in ["datasets", "checkpoints"] {
        let path = config.cache_dir.join(sub);
        std::fs::create_dir_all(&path).map_err(|source| AgentError::Cache { path, source })?;
    }
    let device = config.device.resolve()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    let reg = tokio::select! {
        r = register(client.clone(), &config, device) => r?,
        _ = &mut shutdown => return Ok(()),
    };
    let worker = Worker {
        client,
        id: reg.worker_id,
        secret: reg.worker_secret.clone(),
        heartbeat: Duration::from_millis(reg.heartbeat_interval_ms.max(100) as u64),
        lease_ttl: Duration::from_millis(reg.lease_ttl_ms.max(1000) as u64),
        device,
        cache_dir: config.cache_dir.clone(),
        lease_wait: config.lease_wait,
        slot: Arc::new(Mutex::new(None)),
        metrics: config.metrics.clone(),
    };
    worker.metrics.registered(worker.id, device);
    info!(worker_id = worker.id, device = %device::device_name(device), "registered");
    let heartbeat = tokio::spawn(heartbeat::heartbeat_loop(worker.clone()));
    let generation = config
        .serve_generation
        .then(|| tokio::spawn(generation::generation_loop(worker.clone(), stop_rx.clone())));
    let lease_loop = lease::lease_loop(worker.clone(), stop_rx);
    tokio::pin!(lease_loop);
    tokio::select! {
        _ = &mut lease_loop => {}
        _ = &mut shutdown => {
            info!("shutting down");
            let _ = stop_tx.send(true);
            let slot = worker.slot.lock().expect("slot lock").clone();
            if let Some(slot) = slot {
                slot.request_stop(StopReason::Shutdown);
            }
            lease_loop.await;
        }
    }
    heartbeat.abort();
    if let Some(g) = generation {
        g.abort();
    }
    Ok(())
}

async fn register(
    mut client: Client,
    config: &AgentConfig,
    device: Device,
) -> Result<pb::RegisterResponse, AgentError> {
    let (gpu_name, gpu_memory_bytes) = gpu_info(device);
    let req = pb::RegisterRequest {
        host: config.host.clone(),
        device: device::device_name(device),
        gpu_name,
        gpu_memory_bytes,
        version: env!("CARGO_PKG_VERSION").into(),
        worker_id: 0,
        worker_secret: String::new(),
        cpu_threads: tch::get_num_threads(),
        memory_bytes: crate::capacity::host_memory_bytes(),
        labels: crate::capacity::labels_map(&config.labels),
    };
    let mut backoff = Backoff::worker();
    loop {
        match client.register(req.clone()).await {
            Ok(r) => return Ok(r.into_inner()),
            Err(s) if retryable(&s) => {
                warn!(error = %s, "coordinator unreachable, retrying registration");
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Err(s) => return Err(AgentError::Register(s)),
        }
    }
}

/// GPU model and memory via `nvidia-smi` (libtorch does not expose them); empty on CPU or
/// when the tool is missing.
fn gpu_info(device: Device) -> (String, i64) {
    let Device::Cuda(n) = device else {
        return (String::new(), 0);
    };
    let out = std::process::Command::new("nvidia-smi")
        .args([
            "--query-gpu=name,memory.total",
            "--format=csv,noheader,nounits",
            "-i",
            &n.to_string(),
        ])
        .output();
    let Ok(out) = out else {
        return (String::new(), 0);
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.trim().split(',').map(str::trim);
    let name = parts.next().unwrap_or_default().to_string();
    let mib: i64 = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    (name, mib * 1024 * 1024)
}

//! The worker process against a coordinator: register, lease runs, train them on a dedicated
//! OS thread, heartbeat, report epochs and upload checkpoints, and serve generation jobs
//! beside training. [`run`] is the whole process; `main.rs` only parses flags.
//!
//! Tasks and threads:
//! - the lease loop (the caller's task) takes one run at a time and drives it: it receives
//!   epoch reports from the training thread through a bounded channel and turns them into
//!   `ReportEpoch` + `UploadCheckpoint` calls, then `CompleteRun` or `FailRun`;
//! - the training thread (`std::thread`, never the async runtime) runs [`Trainer::run`];
//! - the heartbeat task beats every `heartbeat_interval` whatever the trainer does, carrying
//!   the current lease, epoch and progress;
//! - the generation task long-polls `LeaseGeneration` and samples on its own thread.
//!
//! Stopping a run: the coordinator's cancel (heartbeat reply), a fenced write
//! (FAILED_PRECONDITION: another worker holds the lease now) and a lease that has surely
//! expired (no successful heartbeat for `lease_ttl`) all raise the run's cancel flag; the
//! trainer sees it before its next batch, and nothing more is reported for that run.
//! Transport errors are retried with exponential backoff until the lease has surely
//! expired. On shutdown the trainer is stopped and the run released (`FailRun` with
//! `release`), so the coordinator requeues it at once.
//!
//! Datasets are cached under `<cache_dir>/datasets/<content_hash>/` and checkpoints under
//! `<cache_dir>/checkpoints/<sha256>`; both are verified by sha256 before use, and an entry
//! that fails the check is downloaded again. A dataset download streams into the cache
//! entry's temporary folder and becomes the entry only once its sizes and sha256 match the
//! coordinator's header. The coordinator serves a bounded number of dataset downloads at
//! once; a refused one (RESOURCE_EXHAUSTED) is retried with backoff while the heartbeat task
//! keeps the lease.

use crate::checkpoint::Checkpoint;
use crate::device::{self, DeviceSpec};
use crate::sample::{self, SampleRequest};
use crate::train::{EpochReport, Outcome, TrainError, Trainer};
use poet_core::config::TrainConfig;
use poet_proto::v1::{self as pb, dataset_chunk, upload_checkpoint_request};
use sha2::{Digest, Sha256};
use std::future::Future;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tch::Device;
use tokio::sync::{mpsc, watch};
use tonic::{Code, Status};
use tracing::{debug, info, warn};

/// Upload chunk size (the contract's maximum).
const CHUNK: usize = poet_proto::client::CHUNK_BYTES;
/// First retry delay of a failed call; doubles up to [`BACKOFF_MAX`].
const BACKOFF_START: Duration = Duration::from_millis(200);
/// Longest retry delay.
const BACKOFF_MAX: Duration = Duration::from_secs(10);

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
    };
    info!(worker_id = worker.id, device = %device::device_name(device), "registered");
    let heartbeat = tokio::spawn(heartbeat_loop(worker.clone()));
    let generation = config
        .serve_generation
        .then(|| tokio::spawn(generation_loop(worker.clone(), stop_rx.clone())));
    let lease_loop = lease_loop(worker.clone(), stop_rx);
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
    };
    let mut delay = BACKOFF_START;
    loop {
        match client.register(req.clone()).await {
            Ok(r) => return Ok(r.into_inner()),
            Err(s) if retryable(&s) => {
                warn!(error = %s, "coordinator unreachable, retrying registration");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(BACKOFF_MAX);
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

/// Transport-level failures worth retrying; everything else is an answer.
fn retryable(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable
            | Code::Unknown
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Aborted
            | Code::ResourceExhausted
            | Code::Internal
    )
}

/// Beats until aborted, also during shutdown, so the lease lives while the trainer stops.
async fn heartbeat_loop(worker: Worker) {
    let mut client = worker.client.clone();
    let mut tick = tokio::time::interval(worker.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let slot = worker.slot.lock().expect("slot lock").clone();
        let (lease, (epoch, progress)) = match &slot {
            Some(s) => (
                Some(s.lease.clone()),
                *s.progress.lock().expect("progress lock"),
            ),
            None => (None, (0, 0.0)),
        };
        let req = pb::HeartbeatRequest {
            worker_id: worker.id,
            lease,
            epoch: epoch as i32,
            progress,
            worker_secret: worker.secret.clone(),
        };
        let res = client.heartbeat(req).await;
        let Some(slot) = slot else {
            if let Err(e) = res {
                debug!(error = %e, "idle heartbeat failed");
            }
            continue;
        };
        match res {
            Ok(r) if r.get_ref().cancel => {
                info!(run_id = slot.lease.run_id, "run cancelled by coordinator");
                slot.request_stop(StopReason::Cancelled);
            }
            Ok(_) => slot.touch(),
            Err(s) if s.code() == Code::FailedPrecondition => {
                warn!(run_id = slot.lease.run_id, "lease lost");
                slot.request_stop(StopReason::Fenced);
            }
            Err(s) => {
                warn!(run_id = slot.lease.run_id, error = %s, "heartbeat failed");
                if slot.expired(worker.lease_ttl) {
                    slot.request_stop(StopReason::Expired);
                }
            }
        }
    }
}

async fn lease_loop(worker: Worker, mut stop: watch::Receiver<bool>) {
    let mut client = worker.client.clone();
    let mut delay = BACKOFF_START;
    while !*stop.borrow() {
        let req = pb::LeaseRunRequest {
            worker_id: worker.id,
            wait_ms: worker.lease_wait.as_millis() as i64,
            worker_secret: worker.secret.clone(),
        };
        let res = tokio::select! {
            r = client.lease_run(req) => r,
            _ = stop.changed() => return,
        };
        match res {
            Ok(r) => {
                delay = BACKOFF_START;
                if let Some(lease) = r.into_inner().lease {
                    train_run(&worker, lease, &stop).await;
                }
            }
            Err(s) => {
                warn!(error = %s, "lease_run failed");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.changed() => return,
                }
                delay = (delay * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// What the training thread tells the lease loop.
enum Event {
    /// An epoch finished; report it and upload its checkpoint.
    Epoch(Box<EpochReport>),
    /// The trainer returned.
    Done(Result<Outcome, TrainError>),
}

/// Drives one leased run from setup to its final call.
async fn train_run(worker: &Worker, run: pb::RunLease, stop: &watch::Receiver<bool>) {
    let Some(lease) = run.lease.clone() else {
        return;
    };
    let run_id = lease.run_id;
    let slot = Arc::new(RunSlot {
        lease: lease.clone(),
        cancel: Arc::new(AtomicBool::new(false)),
        stop: Mutex::new(None),
        progress: Mutex::new((0, 0.0)),
        last_ok: Mutex::new(Instant::now()),
    });
    *worker.slot.lock().expect("slot lock") = Some(slot.clone());
    // Shutdown raises the flag first and then looks for a slot; looking at the flag after
    // installing the slot closes the gap where a lease arrives during shutdown.
    if *stop.borrow() {
        slot.request_stop(StopReason::Shutdown);
    }
    info!(run_id, attempt = lease.attempt, "run leased");
    let ttl = if run.lease_ttl_ms > 0 {
        Duration::from_millis(run.lease_ttl_ms as u64)
    } else {
        worker.lease_ttl
    };
    let result = drive(worker, &run, &slot, ttl).await;
    *worker.slot.lock().expect("slot lock") = None;
    let mut client = worker.client.clone();
    let fail = |reason: String, release: bool, permanent: bool| pb::FailRunRequest {
        lease: Some(lease.clone()),
        reason,
        release,
        permanent,
    };
    let final_call = match (result, slot.stop_reason()) {
        (_, Some(StopReason::Shutdown)) => Some(fail("worker shutting down".into(), true, false)),
        (_, Some(StopReason::Halted)) | (Ok(()), None) => {
            let res = with_retry(&slot, ttl, || {
                let mut c = client.clone();
                let req = pb::CompleteRunRequest {
                    lease: Some(lease.clone()),
                };
                async move { c.complete_run(req).await }
            })
            .await;
            match res {
                Ok(_) => info!(
                    run_id,
                    halted = slot.stop_reason().is_some(),
                    "run handed back"
                ),
                Err(e) => warn!(run_id, error = %e, "complete_run failed"),
            }
            None
        }
        (_, Some(why)) => {
            info!(run_id, reason = ?why, "run abandoned");
            None
        }
        (Err(RunFailure { reason, permanent }), None) => {
            warn!(run_id, %reason, permanent, "run failed");
            Some(fail(reason, false, permanent))
        }
    };
    if let Some(req) = final_call {
        // Released or failed runs are bounded by the lease: after it the coordinator's reaper
        // requeues the run anyway, so a few quick retries suffice.
        for _ in 0..5 {
            match client.fail_run(req.clone()).await {
                Ok(_) => break,
                Err(s) if retryable(&s) => tokio::time::sleep(Duration::from_millis(500)).await,
                Err(s) => {
                    warn!(run_id, error = %s, "fail_run refused");
                    break;
                }
            }
        }
    }
}

/// A run that ended in error: what to tell the coordinator.
struct RunFailure {
    reason: String,
    permanent: bool,
}

impl RunFailure {
    fn new(reason: impl Into<String>, permanent: bool) -> Self {
        RunFailure {
            reason: reason.into(),
            permanent,
        }
    }
}

/// Sets the run up, trains it on its own thread and reports each epoch. `Ok` when every
/// epoch was reported (or the run stopped: see the slot's stop reason).
async fn drive(
    worker: &Worker,
    run: &pb::RunLease,
    slot: &Arc<RunSlot>,
    ttl: Duration,
) -> Result<(), RunFailure> {
    let cfg = TrainConfig::from_json(&run.config_json)
        .map_err(|e| RunFailure::new(format!("config: {e}"), true))?;
    let dataset = run
        .dataset
        .clone()
        .ok_or_else(|| RunFailure::new("lease carries no dataset", true))?;
    let mut delay = BACKOFF_START;
    let (train_text, val_text) = loop {
        match fetch_dataset(worker, &dataset).await {
            Ok(texts) => break texts,
            // The coordinator's downloads are all taken: wait for one.
            Err(FetchError::Rpc(s))
                if s.code() == Code::ResourceExhausted && slot.stop_reason().is_none() =>
            {
                debug!(
                    dataset_id = dataset.id,
                    ?delay,
                    "dataset downloads busy, retrying"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(BACKOFF_MAX);
            }
            Err(e) => {
                return Err(RunFailure::new(
                    format!("dataset {}: {e}", dataset.id),
                    false,
                ));
            }
        }
    };
    let resume = match &run.resume_from {
        Some(c) => {
            let bytes = fetch_checkpoint(worker, c)
                .await
                .map_err(|e| RunFailure::new(format!("checkpoint {}: {e}", c.id), false))?;
            Some(
                Checkpoint::from_bytes(&bytes)
                    .map_err(|e| RunFailure::new(format!("checkpoint {}: {e}", c.id), true))?,
            )
        }
        None => None,
    };
    let (tx, mut rx) = mpsc::channel::<Event>(1);
    let cancel = slot.cancel.clone();
    let device = worker.device;
    let progress_slot = slot.clone();
    let thread = std::thread::Builder::new()
        .name(format!(
            "train-{}",
            run.lease.as_ref().map_or(0, |l| l.run_id)
        ))
        .spawn(move || {
            let trainer = match &resume {
                Some(ckpt) => Trainer::resume(cfg, ckpt, &train_text, &val_text, device),
                None => Trainer::new(cfg, &train_text, &val_text, device),
            };
            let result = trainer.and_then(|mut t| {
                let mut progress = |p: crate::train::Progress| {
                    *progress_slot.progress.lock().expect("progress lock") =
                        (p.epoch, p.batch as f64 / p.batches.max(1) as f64);
                };
                let mut on_epoch =
                    |r: EpochReport| match tx.blocking_send(Event::Epoch(Box::new(r))) {
                        Ok(()) => ControlFlow::Continue(()),
                        Err(_) => ControlFlow::Break(()),
                    };
                t.run(&cancel, &mut progress, &mut on_epoch)
            });
            let _ = tx.blocking_send(Event::Done(result));
        })
        .map_err(|e| RunFailure::new(format!("cannot start training thread: {e}"), false))?;
    let mut outcome = Ok(());
    loop {
        match rx.recv().await {
            None => break,
            Some(Event::Epoch(report)) => {
                if slot.stop_reason().is_some() {
                    continue;
                }
                if let Err(e) = report_epoch(worker, slot, ttl, &report).await {
                    warn!(run_id = slot.lease.run_id, epoch = report.epoch, error = %e, "epoch report abandoned");
                    slot.request_stop(e.stop_reason());
                }
            }
            Some(Event::Done(Ok(_))) => break,
            Some(Event::Done(Err(e))) => {
                outcome = Err(RunFailure::new(e.to_string(), e.is_permanent()));
                break;
            }
        }
    }
    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    outcome
}

/// Why a call under a lease was given up.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("lease fenced")]
    Fenced,
    #[error("lease expired while retrying: {0}")]
    Expired(Status),
    #[error("run stopped")]
    Stopped(StopReason),
    #[error("refused: {0}")]
    Refused(Status),
}

impl CallError {
    fn stop_reason(&self) -> StopReason {
        match self {
            CallError::Fenced => StopReason::Fenced,
            CallError::Stopped(r) => *r,
            // A refused report (bad request) leaves the run unreportable; stop it like an
            // expired lease so the coordinator's reaper can requeue it.
            CallError::Expired(_) | CallError::Refused(_) => StopReason::Expired,
        }
    }
}

/// Calls `f` until it succeeds, retrying transport errors with exponential backoff while the
/// lease can still be alive (last success within `ttl`).
async fn with_retry<T, F, Fut>(slot: &RunSlot, ttl: Duration, mut f: F) -> Result<T, CallError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, Status>>,
{
    let mut delay = BACKOFF_START;
    loop {
        // A halted run still makes its last calls (checkpoint upload, completion).
        if let Some(why) = slot.stop_reason()
            && why != StopReason::Halted
        {
            return Err(CallError::Stopped(why));
        }
        match f().await {
            Ok(r) => {
                slot.touch();
                return Ok(r.into_inner());
            }
            Err(s) if s.code() == Code::FailedPrecondition => return Err(CallError::Fenced),
            Err(s) if retryable(&s) => {
                if slot.expired(ttl) {
                    return Err(CallError::Expired(s));
                }
                debug!(error = %s, ?delay, "retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(BACKOFF_MAX);
            }
            Err(s) => return Err(CallError::Refused(s)),
        }
    }
}

async fn report_epoch(
    worker: &Worker,
    slot: &RunSlot,
    ttl: Duration,
    r: &EpochReport,
) -> Result<(), CallError> {
    let lease = slot.lease.clone();
    let metrics = serde_json::json!({
        "val_duration_s": r.val_duration_s,
        "formulation_val_loss": r.formulation_val_loss,
        "grad_norm_mean": r.grad_norm_mean,
        "batches": r.batches,
        "checkpoint_bytes": r.checkpoint.len(),
    });
    let epoch = pb::Epoch {
        epoch: r.epoch as i32,
        attempt: lease.attempt,
        train_loss: r.train_loss,
        val_loss: r.val_loss,
        duration_s: r.duration_s,
        chars_per_sec: r.chars_per_sec,
        metrics_json: metrics.to_string(),
        reported_at: None,
    };
    let answer = with_retry(slot, ttl, || {
        let mut c = worker.client.clone();
        let req = pb::ReportEpochRequest {
            lease: Some(lease.clone()),
            epoch: Some(epoch.clone()),
        };
        async move { c.report_epoch(req).await }
    })
    .await?;
    let halt = answer
        .directive
        .as_ref()
        .filter(|d| d.action() != pb::Action::Continue);
    let messages = upload_messages(&lease, r.epoch, &r.checkpoint);
    with_retry(slot, ttl, || {
        let mut c = worker.client.clone();
        let stream = tokio_stream::iter(messages.clone());
        async move { c.upload_checkpoint(stream).await }
    })
    .await?;
    info!(
        run_id = lease.run_id,
        epoch = r.epoch,
        train_loss = r.train_loss,
        val_loss = r.val_loss,
        "epoch reported"
    );
    if let Some(d) = halt {
        // The checkpoint of this epoch is stored: stop training and hand the run back.
        info!(run_id = lease.run_id, epoch = r.epoch, action = ?d.action(), reason = %d.reason, "run halted by the sweep's scheduler");
        slot.request_stop(StopReason::Halted);
    }
    Ok(())
}

/// The messages of one checkpoint upload: header, then chunks of at most 1 MiB.
fn upload_messages(
    lease: &pb::Lease,
    epoch: u32,
    bytes: &[u8],
) -> Vec<pb::UploadCheckpointRequest> {
    use upload_checkpoint_request::Part;
    let header = pb::CheckpointHeader {
        lease: Some(lease.clone()),
        epoch: epoch as i32,
        size: bytes.len() as i64,
        sha256: hex::encode(Sha256::digest(bytes)),
    };
    std::iter::once(Part::Header(header))
        .chain(bytes.chunks(CHUNK).map(|c| Part::Data(c.to_vec())))
        .map(|p| pb::UploadCheckpointRequest { part: Some(p) })
        .collect()
}

/// Why a download is unusable.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("{0}")]
    Rpc(#[from] Status),
    #[error("{0}")]
    Invalid(String),
    #[error("cache: {0}")]
    Io(#[from] std::io::Error),
}

/// The dataset's training and validation text, from the cache when a verified copy is there.
async fn fetch_dataset(
    worker: &Worker,
    dataset: &pb::Dataset,
) -> Result<(String, String), FetchError> {
    let key = if !dataset.content_hash.is_empty()
        && dataset.content_hash.chars().all(|c| c.is_ascii_hexdigit())
    {
        dataset.content_hash.clone()
    } else {
        format!("id-{}", dataset.id)
    };
    let dir = worker.cache_dir.join("datasets").join(key);
    if let Some(texts) = read_cached_dataset(&dir) {
        debug!(dataset_id = dataset.id, "dataset cache hit");
        return Ok(texts);
    }
    if dir.exists() {
        warn!(dataset_id = dataset.id, path = %dir.display(), "cached dataset fails its sha256 check; downloading it again");
    }
    let mut client = worker.client.clone();
    let stream = client
        .download_dataset(pb::DownloadDatasetRequest {
            dataset_id: dataset.id,
        })
        .await?
        .into_inner();
    download_dataset(stream, &dir).await?;
    read_cached_dataset(&dir).ok_or_else(|| {
        // Sizes and hash matched the header: the text itself is not UTF-8.
        let _ = std::fs::remove_dir_all(&dir);
        FetchError::Invalid("downloaded text is not UTF-8".into())
    })
}

/// Writes a dataset download into a temporary folder beside `dir`, chunk by chunk, checks its
/// sizes and sha256 against the header, then renames it to `dir`: a corrupt or cut download
/// never becomes a cache entry.
async fn download_dataset<S>(mut stream: S, dir: &Path) -> Result<(), FetchError>
where
    S: futures::Stream<Item = Result<pb::DatasetChunk, Status>> + Unpin,
{
    use futures::StreamExt;
    use std::io::Write;
    let parent = dir.parent().expect("dataset dir has a parent");
    let tmp = parent.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&tmp)?;
    let written = async {
        let mut train = std::fs::File::create(tmp.join("train.txt"))?;
        let mut val = std::fs::File::create(tmp.join("validation.txt"))?;
        let (mut header, mut sizes, mut hasher) = (None, [0i64; 2], Sha256::new());
        while let Some(msg) = stream.next().await {
            match msg?.part {
                Some(dataset_chunk::Part::Header(h)) => header = Some(h),
                Some(dataset_chunk::Part::Train(b)) => {
                    train.write_all(&b)?;
                    hasher.update(&b);
                    sizes[0] += b.len() as i64;
                }
                Some(dataset_chunk::Part::Validation(b)) => {
                    val.write_all(&b)?;
                    hasher.update(&b);
                    sizes[1] += b.len() as i64;
                }
                None => {}
            }
        }
        let h = header.ok_or_else(|| FetchError::Invalid("download has no header".into()))?;
        if [h.train_bytes, h.validation_bytes] != sizes {
            return Err(FetchError::Invalid(format!(
                "sizes {}+{} differ from header {}+{}",
                sizes[0], sizes[1], h.train_bytes, h.validation_bytes
            )));
        }
        let sha = hex::encode(hasher.finalize());
        if !sha.eq_ignore_ascii_case(&h.sha256) {
            return Err(FetchError::Invalid("sha256 mismatch".into()));
        }
        std::fs::write(tmp.join("sha256"), &sha)?;
        Ok(())
    }
    .await;
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(&tmp, dir)?;
    Ok(())
}

fn sha_of(train: &[u8], val: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(train);
    h.update(val);
    hex::encode(h.finalize())
}

fn read_cached_dataset(dir: &Path) -> Option<(String, String)> {
    let train = std::fs::read_to_string(dir.join("train.txt")).ok()?;
    let val = std::fs::read_to_string(dir.join("validation.txt")).ok()?;
    let sha = std::fs::read_to_string(dir.join("sha256")).ok()?;
    (sha_of(train.as_bytes(), val.as_bytes()) == sha.trim()).then_some((train, val))
}

/// A checkpoint's bytes, verified against its size and sha256; cached by sha256.
async fn fetch_checkpoint(worker: &Worker, ckpt: &pb::Checkpoint) -> Result<Vec<u8>, FetchError> {
    let sha = ckpt.sha256.to_ascii_lowercase();
    let cached = (!sha.is_empty() && sha.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| worker.cache_dir.join("checkpoints").join(&sha));
    if let Some(path) = &cached
        && let Ok(bytes) = std::fs::read(path)
        && hex::encode(Sha256::digest(&bytes)) == sha
    {
        return Ok(bytes);
    }
    let mut client = worker.client.clone();
    let mut stream = client
        .download_checkpoint(pb::DownloadCheckpointRequest {
            checkpoint_id: ckpt.id,
        })
        .await?
        .into_inner();
    let mut bytes = Vec::with_capacity(ckpt.size.max(0) as usize);
    while let Some(chunk) = stream.message().await? {
        bytes.extend_from_slice(&chunk.data);
    }
    if bytes.len() as i64 != ckpt.size {
        return Err(FetchError::Invalid(format!(
            "size {} differs from {}",
            bytes.len(),
            ckpt.size
        )));
    }
    if hex::encode(Sha256::digest(&bytes)) != sha {
        return Err(FetchError::Invalid("sha256 mismatch".into()));
    }
    if let Some(path) = cached {
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        std::fs::write(&tmp, &bytes)?;
        std::fs::rename(tmp, path)?;
    }
    Ok(bytes)
}

async fn generation_loop(worker: Worker, mut stop: watch::Receiver<bool>) {
    let mut client = worker.client.clone();
    let mut delay = BACKOFF_START;
    while !*stop.borrow() {
        let req = pb::LeaseGenerationRequest {
            worker_id: worker.id,
            wait_ms: worker.lease_wait.as_millis() as i64,
            worker_secret: worker.secret.clone(),
        };
        let res = tokio::select! {
            r = client.lease_generation(req) => r,
            _ = stop.changed() => return,
        };
        let job = match res {
            Ok(r) => {
                delay = BACKOFF_START;
                match r.into_inner().job {
                    Some(job) => job,
                    None => continue,
                }
            }
            Err(s) => {
                if s.code() == Code::Unimplemented {
                    delay = BACKOFF_MAX * 6;
                }
                debug!(error = %s, "lease_generation failed");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.changed() => return,
                }
                delay = (delay * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        let (generation_id, lease_id) = (job.generation_id, job.lease_id.clone());
        info!(generation_id, "generation leased");
        let (streams, error) = match generate(&worker, job).await {
            Ok(streams) => (streams, String::new()),
            Err(e) => {
                warn!(generation_id, error = %e, "generation failed");
                (Vec::new(), e)
            }
        };
        let req = pb::CompleteGenerationRequest {
            worker_id: worker.id,
            generation_id,
            streams,
            error,
            lease_id,
            worker_secret: worker.secret.clone(),
        };
        for _ in 0..5 {
            match client.complete_generation(req.clone()).await {
                Ok(_) => break,
                Err(s) if retryable(&s) => tokio::time::sleep(Duration::from_secs(1)).await,
                Err(s) => {
                    warn!(generation_id, error = %s, "complete_generation refused");
                    break;
                }
            }
        }
    }
}

/// Downloads the job's checkpoint and samples on a thread of its own.
async fn generate(
    worker: &Worker,
    job: pb::GenerationJob,
) -> Result<Vec<pb::SampledStream>, String> {
    let ckpt = job.checkpoint.clone().ok_or("job carries no checkpoint")?;
    let bytes = fetch_checkpoint(worker, &ckpt)
        .await
        .map_err(|e| format!("checkpoint {}: {e}", ckpt.id))?;
    let device = worker.device;
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(format!("sample-{}", job.generation_id))
        .spawn(move || {
            let result = (|| {
                let ckpt = Checkpoint::from_bytes(&bytes).map_err(|e| e.to_string())?;
                let model = ckpt.model(device).map_err(|e| e.to_string())?;
                let req = SampleRequest::of_job(&job)?;
                sample::sample(&model, &ckpt.vocab(), &ckpt.meta.config, &req)
                    .map_err(|e| e.to_string())
            })();
            let _ = tx.send(result);
        })
        .map_err(|e| format!("cannot start sampling thread: {e}"))?;
    let streams = rx.await.map_err(|_| "sampling thread died".to_string())??;
    Ok(streams
        .into_iter()
        .map(|s| pb::SampledStream {
            temperature: s.temperature,
            text: s.text,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_are_header_then_bounded_chunks() {
        let lease = pb::Lease {
            run_id: 1,
            lease_id: "l".into(),
            attempt: 2,
        };
        let bytes = vec![7u8; CHUNK * 2 + 5];
        let msgs = upload_messages(&lease, 3, &bytes);
        assert_eq!(msgs.len(), 4);
        let Some(upload_checkpoint_request::Part::Header(h)) = &msgs[0].part else {
            panic!("header first")
        };
        assert_eq!((h.epoch, h.size), (3, bytes.len() as i64));
        assert_eq!(h.sha256, hex::encode(Sha256::digest(&bytes)));
        let sizes: Vec<usize> = msgs[1..]
            .iter()
            .map(|m| match &m.part {
                Some(upload_checkpoint_request::Part::Data(d)) => d.len(),
                _ => panic!("data after header"),
            })
            .collect();
        assert_eq!(sizes, vec![CHUNK, CHUNK, 5]);
    }

    /// A download as the coordinator streams it: header, then chunks; `sha` as announced.
    fn download(train: &str, val: &str, sha: String) -> Vec<Result<pb::DatasetChunk, Status>> {
        use dataset_chunk::Part;
        let header = pb::DatasetHeader {
            dataset: None,
            train_bytes: train.len() as i64,
            validation_bytes: val.len() as i64,
            sha256: sha,
        };
        let (t, v) = train.split_at(2);
        [
            Part::Header(header),
            Part::Train(t.into()),
            Part::Train(v.into()),
            Part::Validation(val.into()),
        ]
        .into_iter()
        .map(|p| Ok(pb::DatasetChunk { part: Some(p) }))
        .collect()
    }

    #[tokio::test]
    async fn dataset_cache_entries_are_verified_downloads() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("abc");
        let good = download("train", "val", sha_of(b"train", b"val"));
        download_dataset(futures::stream::iter(good), &d)
            .await
            .unwrap();
        assert_eq!(
            read_cached_dataset(&d),
            Some(("train".into(), "val".into()))
        );
        // A corrupt file fails the check (and is then downloaded again).
        std::fs::write(d.join("train.txt"), "trian").unwrap();
        assert_eq!(read_cached_dataset(&d), None);
        // A download that does not match its header never becomes an entry.
        let e = dir.path().join("def");
        let bad = download("train", "val", sha_of(b"other", b"val"));
        let err = download_dataset(futures::stream::iter(bad), &e)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("sha256"), "{err}");
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            left,
            vec![std::ffi::OsString::from("abc")],
            "no entry, no temp folder"
        );
    }
}

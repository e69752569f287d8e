//! The worker-facing gRPC service: registration, long-poll leasing, heartbeats, fenced
//! epoch reports and checkpoint uploads, downloads, and generation jobs.
//!
//! A worker is its id and the random secret `Register` handed out with it: every call that
//! names a worker id must carry the secret (SECURITY.md, finding 9), and writes about a run
//! or a generation job carry that job's lease id.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use futures::{Stream, StreamExt};
use poet_core::retry::Backoff;
use poet_proto::v1::{self, worker_service_server::WorkerService};
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use super::Shared;
use crate::artifacts::Artifacts;
use crate::error::ServiceError;
use crate::limits;
use crate::queue::{Beat, EpochReport, GiveUp, LeaseRef};

/// Largest chunk sent or accepted in a stream.
pub const CHUNK: usize = 1 << 20;
/// How long an upload may go without a message.
const UPLOAD_IDLE: Duration = Duration::from_secs(60);

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The stored form of a worker secret: its sha256, hex.
fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// What a registering worker can hold, checked: memory not negative, labels well-formed.
fn capacity(r: &v1::RegisterRequest) -> Result<crate::queue::Capacity, ServiceError> {
    for (field, v) in [
        ("gpu_memory_bytes", r.gpu_memory_bytes),
        ("memory_bytes", r.memory_bytes),
        ("cpu_threads", r.cpu_threads.into()),
    ] {
        if v < 0 {
            return Err(ServiceError::Invalid(format!("{field}: {v} is negative")));
        }
    }
    if r.labels.len() > poet_core::resources::MAX_LABELS {
        return Err(ServiceError::Invalid(format!(
            "labels: {} labels, at most {}",
            r.labels.len(),
            poet_core::resources::MAX_LABELS
        )));
    }
    for (k, v) in &r.labels {
        poet_core::resources::check_label(k, v)
            .map_err(|e| ServiceError::Invalid(format!("labels: {e}")))?;
    }
    Ok(crate::queue::Capacity {
        gpu: r.device != "cpu",
        gpu_memory_bytes: r.gpu_memory_bytes,
        memory_bytes: r.memory_bytes,
        labels: r
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    })
}

fn lease_ref(lease: Option<&v1::Lease>) -> Result<LeaseRef, ServiceError> {
    let l = lease.ok_or_else(|| ServiceError::Invalid("lease: missing".into()))?;
    let lease_id = Uuid::parse_str(&l.lease_id).map_err(|_| {
        ServiceError::Invalid(format!(
            "lease.lease_id: '{}' is not a lease id",
            l.lease_id
        ))
    })?;
    Ok(LeaseRef {
        run_id: l.run_id,
        lease_id,
    })
}

impl Shared {
    /// A dataset's description; versions are immutable, so it is cached.
    async fn dataset(&self, id: i64) -> Result<v1::Dataset, ServiceError> {
        if let Some(d) = self.datasets.lock().await.get(&id) {
            return Ok(d.clone());
        }
        let d: v1::Dataset =
            crate::history::dataset_view(crate::history::get_dataset(&self.pool, id).await?).into();
        self.datasets.lock().await.insert(id, d.clone());
        Ok(d)
    }

    /// What a download's header announces for dataset `id`: one streamed pass on first use.
    async fn dataset_digest(&self, id: i64) -> Result<crate::datasets::Digest, ServiceError> {
        if let Some(d) = self.dataset_digests.lock().await.get(&id) {
            return Ok(d.clone());
        }
        let d = crate::datasets::digest(&self.pool, id).await?;
        self.dataset_digests.lock().await.insert(id, d.clone());
        Ok(d)
    }

    /// Whether `run` belongs to an adaptive sweep: from the lease cache, else the database.
    async fn adaptive(&self, run: i64) -> Result<bool, ServiceError> {
        if let Some(a) = self
            .adaptive_runs
            .lock()
            .expect("adaptive_runs lock")
            .get(&run)
        {
            return Ok(*a);
        }
        let a: Option<bool> = sqlx::query_scalar(
            "select s.adaptive from runs r join sweeps s on s.id = r.sweep_id where r.id = $1",
        )
        .bind(run)
        .fetch_optional(&self.pool)
        .await?;
        Ok(a.unwrap_or(false))
    }

    fn remember_run(&self, run: i64, adaptive: bool) {
        let mut known = self.adaptive_runs.lock().expect("adaptive_runs lock");
        if known.len() > 100_000 {
            known.clear();
        }
        known.insert(run, adaptive);
    }

    fn forget_run(&self, run: i64) {
        self.adaptive_runs
            .lock()
            .expect("adaptive_runs lock")
            .remove(&run);
    }

    fn count_fenced<T>(&self, r: &Result<T, ServiceError>) {
        if let Err(ServiceError::FailedPrecondition(_)) = r {
            self.metrics.fenced.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Checks that the caller holds worker `worker_id`'s secret: NOT_FOUND for an unknown id,
    /// PERMISSION_DENIED for a missing or wrong secret.
    async fn authenticate(&self, worker_id: i64, secret: &str) -> Result<(), ServiceError> {
        let hash = secret_hash(secret);
        let known = self
            .worker_secrets
            .lock()
            .expect("worker_secrets lock")
            .get(&worker_id)
            .is_some_and(|h| crate::auth::ct_eq(h.as_bytes(), hash.as_bytes()));
        if known {
            return Ok(());
        }
        let stored: Option<Option<String>> =
            sqlx::query_scalar("select secret_sha256 from workers where id = $1")
                .bind(worker_id)
                .fetch_optional(&self.pool)
                .await?;
        match stored {
            None => Err(ServiceError::NotFound(format!(
                "no worker {worker_id}; call Register first"
            ))),
            Some(Some(h)) if crate::auth::ct_eq(h.as_bytes(), hash.as_bytes()) => {
                let mut known = self.worker_secrets.lock().expect("worker_secrets lock");
                if known.len() > 100_000 {
                    known.clear();
                }
                known.insert(worker_id, h);
                Ok(())
            }
            Some(_) => Err(ServiceError::PermissionDenied(format!(
                "worker_secret: not the secret of worker {worker_id}; a worker speaks only for the id Register gave it"
            ))),
        }
    }

    /// Authenticates the worker and marks it alive.
    async fn touch_worker(&self, worker_id: i64, secret: &str) -> Result<(), ServiceError> {
        self.authenticate(worker_id, secret).await?;
        sqlx::query("update workers set last_seen_at = now() where id = $1")
            .bind(worker_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn run_lease(&self, c: crate::queue::Claimed) -> Result<v1::RunLease, ServiceError> {
        let dataset = self.dataset(c.dataset_id).await?;
        Ok(v1::RunLease {
            lease: Some(v1::Lease {
                run_id: c.lease.run_id,
                lease_id: c.lease.lease_id.to_string(),
                attempt: c.attempt,
            }),
            config_json: c.config,
            dataset: Some(dataset),
            resume_from: c.resume_from.map(Into::into),
            lease_ttl_ms: self.queue.lease_ttl().num_milliseconds(),
        })
    }

    async fn receive_checkpoint(
        &self,
        mut stream: Streaming<v1::UploadCheckpointRequest>,
    ) -> Result<v1::Checkpoint, ServiceError> {
        use v1::upload_checkpoint_request::Part;
        let first = tokio::time::timeout(UPLOAD_IDLE, stream.message())
            .await
            .map_err(|_| ServiceError::Invalid("upload: no header within 60 s".into()))?
            .map_err(|s| ServiceError::Invalid(format!("upload: {}", s.message())))?;
        let Some(v1::UploadCheckpointRequest {
            part: Some(Part::Header(h)),
        }) = first
        else {
            return Err(ServiceError::Invalid(
                "upload: the first message must be the header".into(),
            ));
        };
        let lease = lease_ref(h.lease.as_ref())?;
        if h.size < 0 || h.size as u64 > self.cfg.max_checkpoint_bytes {
            return Err(ServiceError::TooLarge(format!(
                "header.size: {} is outside 0..={}",
                h.size, self.cfg.max_checkpoint_bytes
            )));
        }
        let want_sha = h.sha256.to_ascii_lowercase();
        if want_sha.len() != 64 || !want_sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ServiceError::Invalid(
                "header.sha256: not 64 hex digits".into(),
            ));
        }
        let (attempt, owner) = self.queue.check_checkpoint(lease, h.epoch).await?;
        // Held until the upload is stored or refused, or its client goes away.
        let slot = self.uploads.take(lease.lease_id, owner)?;
        let key = Artifacts::checkpoint_key(lease.run_id, h.epoch, attempt, &want_sha);
        let mut writer = self
            .artifacts
            .writer(&key)
            .await
            .map_err(|e| ServiceError::Storage(e.to_string()))?;
        let mut hasher = Sha256::new();
        let mut received: u64 = 0;
        let outcome: Result<(), ServiceError> = async {
            loop {
                let msg = tokio::time::timeout(UPLOAD_IDLE, stream.message())
                    .await
                    .map_err(|_| ServiceError::Invalid("upload: stalled for 60 s".into()))?
                    .map_err(|s| ServiceError::Invalid(format!("upload: {}", s.message())))?;
                let Some(msg) = msg else { break };
                match msg.part {
                    Some(Part::Data(d)) => {
                        received += d.len() as u64;
                        if received > h.size as u64 {
                            return Err(ServiceError::Invalid(format!(
                                "upload: more bytes than the declared size {}",
                                h.size
                            )));
                        }
                        hasher.update(&d);
                        writer.write(&d);
                    }
                    _ => return Err(ServiceError::Invalid("upload: a second header".into())),
                }
            }
            if received != h.size as u64 {
                return Err(ServiceError::Invalid(format!(
                    "upload: truncated, got {received} of {} bytes",
                    h.size
                )));
            }
            let got = hex::encode(hasher.finalize_reset());
            if got != want_sha {
                return Err(ServiceError::Invalid(format!(
                    "upload: sha256 mismatch (declared {want_sha}, got {got})"
                )));
            }
            Ok(())
        }
        .await;
        if let Err(e) = outcome {
            writer.abort().await;
            return Err(e);
        }
        // The rest runs detached from the request: a client that goes away now (killed, cut
        // off) would otherwise cancel this future between storing the blob and committing its
        // row, or between the commit and the retention deletes, leaking blobs.
        let this = self.clone();
        let (epoch, size) = (h.epoch, h.size);
        tokio::spawn(async move {
            let _slot = slot;
            this.store_checkpoint(writer, lease, epoch, size, key, want_sha)
                .await
        })
        .await
        .map_err(|e| ServiceError::Storage(format!("checkpoint store task: {e}")))?
    }

    /// Completes a received upload: makes the blob durable, commits its row (fenced), and
    /// deletes what that made unreferenced (retention, or this blob when refused).
    async fn store_checkpoint(
        &self,
        writer: crate::artifacts::BlobWriter,
        lease: LeaseRef,
        epoch: i32,
        size: i64,
        key: String,
        want_sha: String,
    ) -> Result<v1::Checkpoint, ServiceError> {
        writer
            .finish()
            .await
            .map_err(|e| ServiceError::Storage(e.to_string()))?;
        let committed = self
            .queue
            .commit_checkpoint(
                lease,
                epoch,
                &key,
                size,
                &want_sha,
                self.cfg.keep_last_checkpoints,
                Utc::now(),
            )
            .await;
        match committed {
            Ok((row, drop_keys)) => {
                self.metrics
                    .checkpoints_stored
                    .fetch_add(1, Ordering::Relaxed);
                for k in drop_keys {
                    self.delete_unreferenced(&k).await;
                }
                Ok(row.into())
            }
            Err(e) => {
                self.delete_unreferenced(&key).await;
                Err(e)
            }
        }
    }

    /// Deletes a blob unless a live checkpoint row still names it. The lookup is retried
    /// (about 12 s in all) so a database restart does not leak the blob; only an answer
    /// deletes it, never an error.
    async fn delete_unreferenced(&self, key: &str) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_millis(6400));
        for attempt in 0..6u32 {
            let live: Result<Option<i64>, _> =
                sqlx::query_scalar("select id from checkpoints where key = $1 and live")
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await;
            match live {
                Ok(Some(_)) => return,
                Ok(None) => {
                    if let Err(e) = self.artifacts.delete(key).await {
                        tracing::warn!(key, error = %e, "could not delete checkpoint blob");
                    }
                    return;
                }
                Err(e) => {
                    tracing::warn!(key, attempt, error = %e, "could not check a blob before deleting it");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }
}

#[tonic::async_trait]
impl WorkerService for Shared {
    async fn register(
        &self,
        req: Request<v1::RegisterRequest>,
    ) -> Result<Response<v1::RegisterResponse>, Status> {
        let _t = self.metrics.timer("Register");
        let r = req.into_inner();
        if r.host.is_empty() || r.device.is_empty() {
            return Err(ServiceError::Invalid("host and device must be set".into()).into());
        }
        for (field, value) in [
            ("host", &r.host),
            ("device", &r.device),
            ("gpu_name", &r.gpu_name),
            ("version", &r.version),
        ] {
            limits::check_chars(field, value, limits::MAX_NAME_CHARS)?;
        }
        let capacity = capacity(&r)?;
        let labels = serde_json::to_value(&capacity.labels).expect("a string map serialises");
        // An id is reused only by whoever holds its secret; an unknown id registers anew.
        let reused = r.worker_id != 0
            && match self.authenticate(r.worker_id, &r.worker_secret).await {
                Ok(()) => true,
                Err(ServiceError::NotFound(_)) => false,
                Err(e) => return Err(e.into()),
            };
        let reused: Option<i64> = if reused {
            sqlx::query_scalar(
                "update workers set host = $2, device = $3, gpu_name = $4, gpu_memory_bytes = $5, version = $6,
                     cpu_threads = $7, memory_bytes = $8, labels = $9, last_seen_at = now()
                 where id = $1 returning id",
            )
            .bind(r.worker_id)
            .bind(&r.host)
            .bind(&r.device)
            .bind(&r.gpu_name)
            .bind(r.gpu_memory_bytes)
            .bind(&r.version)
            .bind(r.cpu_threads)
            .bind(r.memory_bytes)
            .bind(&labels)
            .fetch_optional(&self.pool)
            .await
            .map_err(ServiceError::from)?
        } else {
            None
        };
        let (id, secret) = match reused {
            Some(id) => (id, r.worker_secret.clone()),
            None => {
                let secret = Uuid::new_v4().to_string();
                let id = sqlx::query_scalar(
                    "insert into workers (host, device, gpu_name, gpu_memory_bytes, version, secret_sha256,
                         cpu_threads, memory_bytes, labels)
                     values ($1, $2, $3, $4, $5, $6, $7, $8, $9) returning id",
                )
                .bind(&r.host)
                .bind(&r.device)
                .bind(&r.gpu_name)
                .bind(r.gpu_memory_bytes)
                .bind(&r.version)
                .bind(secret_hash(&secret))
                .bind(r.cpu_threads)
                .bind(r.memory_bytes)
                .bind(&labels)
                .fetch_one(&self.pool)
                .await
                .map_err(ServiceError::from)?;
                (id, secret)
            }
        };
        self.queue.set_capacity(id, capacity);
        tracing::info!(worker_id = id, host = %r.host, device = %r.device, "worker registered");
        Ok(Response::new(v1::RegisterResponse {
            worker_id: id,
            heartbeat_interval_ms: self.cfg.heartbeat_interval().as_millis() as i64,
            lease_ttl_ms: self.cfg.lease_ttl().as_millis() as i64,
            worker_secret: secret,
        }))
    }

    async fn lease_run(
        &self,
        req: Request<v1::LeaseRunRequest>,
    ) -> Result<Response<v1::LeaseRunResponse>, Status> {
        let _t = self.metrics.timer("LeaseRun");
        let r = req.into_inner();
        self.authenticate(r.worker_id, &r.worker_secret).await?;
        let capacity = self.queue.capacity(r.worker_id).await?;
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(r.wait_ms.clamp(0, 60_000) as u64);
        loop {
            let notified = self.runs_queued.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let claimed = match self
                .batches
                .claim(r.worker_id, capacity.clone(), Utc::now())
                .await
            {
                // lease_owner references workers: an unknown id fails the claim.
                Err(ServiceError::Database(e))
                    if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("23503") =>
                {
                    return Err(ServiceError::NotFound(format!(
                        "no worker {}; call Register first",
                        r.worker_id
                    ))
                    .into());
                }
                other => other?,
            };
            if let Some(c) = claimed {
                self.remember_run(c.lease.run_id, c.adaptive);
                self.metrics.leases.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    run_id = c.lease.run_id,
                    attempt = c.attempt,
                    worker_id = r.worker_id,
                    resume_epoch = c.resume_from.as_ref().map(|x| x.epoch).unwrap_or(0),
                    discarded = c.discarded_epochs,
                    "run leased"
                );
                let lease = self.run_lease(c).await?;
                return Ok(Response::new(v1::LeaseRunResponse { lease: Some(lease) }));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                // An idle poll is the worker's sign of life (a lease counts through its heartbeats).
                self.touch_worker(r.worker_id, &r.worker_secret).await?;
                return Ok(Response::new(v1::LeaseRunResponse { lease: None }));
            }
            // Notifications wake us at once; the short poll covers a lost listener connection.
            let _ =
                tokio::time::timeout((deadline - now).min(Duration::from_secs(2)), notified).await;
        }
    }

    async fn heartbeat(
        &self,
        req: Request<v1::HeartbeatRequest>,
    ) -> Result<Response<v1::HeartbeatResponse>, Status> {
        let _t = self.metrics.timer("Heartbeat");
        let r = req.into_inner();
        self.touch_worker(r.worker_id, &r.worker_secret).await?;
        let Some(l) = r.lease.as_ref() else {
            return Ok(Response::new(v1::HeartbeatResponse {
                cancel: false,
                lease_ttl_ms: 0,
            }));
        };
        let lease = lease_ref(Some(l))?;
        let beat = self.queue.heartbeat(lease, Utc::now()).await;
        self.count_fenced(&beat);
        let cancel = beat? == Beat::Cancel;
        if cancel {
            tracing::info!(run_id = lease.run_id, "run cancelled at heartbeat");
        }
        Ok(Response::new(v1::HeartbeatResponse {
            cancel,
            lease_ttl_ms: self.queue.lease_ttl().num_milliseconds(),
        }))
    }

    async fn report_epoch(
        &self,
        req: Request<v1::ReportEpochRequest>,
    ) -> Result<Response<v1::ReportEpochResponse>, Status> {
        let _t = self.metrics.timer("ReportEpoch");
        let r = req.into_inner();
        let lease = lease_ref(r.lease.as_ref())?;
        let e = r
            .epoch
            .ok_or_else(|| ServiceError::Invalid("epoch: missing".into()))?;
        limits::check_bytes(
            "epoch.metrics_json",
            &e.metrics_json,
            limits::MAX_JSON_BYTES,
        )?;
        let metrics = if e.metrics_json.is_empty() {
            serde_json::json!({})
        } else {
            serde_json::from_str(&e.metrics_json)
                .map_err(|err| ServiceError::Invalid(format!("epoch.metrics_json: {err}")))?
        };
        let report = EpochReport {
            epoch: e.epoch,
            train_loss: e.train_loss,
            val_loss: e.val_loss,
            duration_s: e.duration_s,
            chars_per_sec: e.chars_per_sec,
            metrics,
        };
        let stored = self.batches.report_epoch(lease, report).await;
        self.count_fenced(&stored);
        let stored = stored?;
        if stored {
            self.metrics.epochs_reported.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                run_id = lease.run_id,
                epoch = e.epoch,
                train_loss = e.train_loss,
                val_loss = e.val_loss,
                "epoch reported"
            );
        }
        // Also on a retry (`stored` false): the scheduler answers what it decided then.
        let directive = if self.adaptive(lease.run_id).await? {
            crate::scheduler::after_epoch(&self.pool, lease, e.epoch, Utc::now()).await?
        } else {
            None
        };
        if let Some(d) = &directive {
            tracing::info!(run_id = lease.run_id, epoch = e.epoch, action = ?d.action(), reason = %d.reason, "run halted by its sweep's scheduler");
        }
        Ok(Response::new(v1::ReportEpochResponse { stored, directive }))
    }

    async fn upload_checkpoint(
        &self,
        req: Request<Streaming<v1::UploadCheckpointRequest>>,
    ) -> Result<Response<v1::UploadCheckpointResponse>, Status> {
        let _t = self.metrics.timer("UploadCheckpoint");
        let result = self.receive_checkpoint(req.into_inner()).await;
        self.count_fenced(&result);
        Ok(Response::new(v1::UploadCheckpointResponse {
            checkpoint: Some(result?),
        }))
    }

    type DownloadCheckpointStream = BoxStream<v1::DataChunk>;

    async fn download_checkpoint(
        &self,
        req: Request<v1::DownloadCheckpointRequest>,
    ) -> Result<Response<Self::DownloadCheckpointStream>, Status> {
        let _t = self.metrics.timer("DownloadCheckpoint");
        let id = req.into_inner().checkpoint_id;
        let key: Option<String> =
            sqlx::query_scalar("select key from checkpoints where id = $1 and live")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(ServiceError::from)?;
        let key = key.ok_or_else(|| ServiceError::NotFound(format!("no kept checkpoint {id}")))?;
        let blobs = self
            .artifacts
            .get_stream(&key)
            .await
            .map_err(|e| ServiceError::Storage(e.to_string()))?;
        let out = blobs.flat_map(|r| {
            let items: Vec<Result<v1::DataChunk, Status>> = match r {
                Ok(b) => b
                    .chunks(CHUNK)
                    .map(|c| Ok(v1::DataChunk { data: c.to_vec() }))
                    .collect(),
                Err(e) => vec![Err(ServiceError::Storage(e.to_string()).into())],
            };
            futures::stream::iter(items)
        });
        Ok(Response::new(Box::pin(out)))
    }

    type DownloadDatasetStream = BoxStream<v1::DatasetChunk>;

    async fn download_dataset(
        &self,
        req: Request<v1::DownloadDatasetRequest>,
    ) -> Result<Response<Self::DownloadDatasetStream>, Status> {
        let _t = self.metrics.timer("DownloadDataset");
        use crate::datasets::Chunk;
        use v1::dataset_chunk::Part;
        let id = req.into_inner().dataset_id;
        let dataset = self.dataset(id).await?;
        let permit = self.downloads.clone().try_acquire_owned().map_err(|_| {
            ServiceError::Busy(format!(
                "download: {} dataset downloads are in flight, the most this coordinator serves at once (--max-dataset-downloads); retry later",
                self.cfg.max_dataset_downloads
            ))
        })?;
        let digest = self.dataset_digest(id).await?;
        let header = v1::DatasetHeader {
            dataset: Some(dataset),
            train_bytes: digest.train_bytes,
            validation_bytes: digest.validation_bytes,
            sha256: digest.sha256.clone(),
        };
        // At most two chunks wait between the cursor and the connection: a slow reader holds
        // the cursor back instead of filling memory.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<v1::DatasetChunk, Status>>(2);
        let pool = self.pool.clone();
        tokio::spawn(async move {
            // The place is given back when the stream ends or its client goes away.
            let _permit = permit;
            let header = v1::DatasetChunk {
                part: Some(Part::Header(header)),
            };
            if tx.send(Ok(header)).await.is_err() {
                return;
            }
            let sent = crate::datasets::stream(&pool, id, CHUNK, |c| {
                let tx = tx.clone();
                let part = match c {
                    Chunk::Train(b) => Part::Train(b),
                    Chunk::Validation(b) => Part::Validation(b),
                };
                async move {
                    tx.send(Ok(v1::DatasetChunk { part: Some(part) }))
                        .await
                        .is_ok()
                }
            })
            .await;
            let failure = match sent {
                Ok(Some(d)) if d == digest => return,
                Ok(None) => return,
                Ok(Some(_)) => {
                    ServiceError::Storage(format!("dataset {id} changed while it was served"))
                }
                Err(e) => e,
            };
            let _ = tx.send(Err(failure.into())).await;
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn complete_run(
        &self,
        req: Request<v1::CompleteRunRequest>,
    ) -> Result<Response<v1::CompleteRunResponse>, Status> {
        let _t = self.metrics.timer("CompleteRun");
        let lease = lease_ref(req.into_inner().lease.as_ref())?;
        let r = self.batches.complete(lease, Utc::now()).await;
        self.count_fenced(&r);
        r?;
        tracing::info!(run_id = lease.run_id, "run handed back");
        if self.adaptive(lease.run_id).await? {
            crate::scheduler::after_run_end(&self.pool, lease.run_id, Utc::now()).await?;
        }
        self.forget_run(lease.run_id);
        Ok(Response::new(v1::CompleteRunResponse {}))
    }

    async fn fail_run(
        &self,
        req: Request<v1::FailRunRequest>,
    ) -> Result<Response<v1::FailRunResponse>, Status> {
        let _t = self.metrics.timer("FailRun");
        let r = req.into_inner();
        let lease = lease_ref(r.lease.as_ref())?;
        let how = if r.release {
            GiveUp::Release
        } else if r.permanent {
            GiveUp::Permanent
        } else {
            GiveUp::Retry
        };
        let reason = limits::truncate_chars(&r.reason, limits::MAX_ERROR_CHARS);
        let state = self.queue.fail(lease, reason, how, Utc::now()).await;
        self.count_fenced(&state);
        let state = state?;
        tracing::info!(run_id = lease.run_id, ?how, new_state = %state, reason = %reason, "run given up");
        if self.adaptive(lease.run_id).await? {
            crate::scheduler::after_run_end(&self.pool, lease.run_id, Utc::now()).await?;
        }
        self.forget_run(lease.run_id);
        Ok(Response::new(v1::FailRunResponse {}))
    }

    async fn lease_generation(
        &self,
        req: Request<v1::LeaseGenerationRequest>,
    ) -> Result<Response<v1::LeaseGenerationResponse>, Status> {
        let _t = self.metrics.timer("LeaseGeneration");
        let r = req.into_inner();
        self.touch_worker(r.worker_id, &r.worker_secret).await?;
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(r.wait_ms.clamp(0, 60_000) as u64);
        loop {
            let notified = self.generations_queued.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(job) = crate::generation::claim(
                &self.pool,
                &self.ngrams.corpora,
                r.worker_id,
                self.queue.lease_ttl(),
                Utc::now(),
            )
            .await?
            {
                return Ok(Response::new(v1::LeaseGenerationResponse {
                    job: Some(job),
                }));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(Response::new(v1::LeaseGenerationResponse { job: None }));
            }
            let _ =
                tokio::time::timeout((deadline - now).min(Duration::from_secs(2)), notified).await;
        }
    }

    async fn complete_generation(
        &self,
        req: Request<v1::CompleteGenerationRequest>,
    ) -> Result<Response<v1::CompleteGenerationResponse>, Status> {
        let _t = self.metrics.timer("CompleteGeneration");
        let r = req.into_inner();
        self.authenticate(r.worker_id, &r.worker_secret).await?;
        crate::generation::complete(&self.pool, &self.artifacts, &self.ngrams, &r, Utc::now())
            .await?;
        Ok(Response::new(v1::CompleteGenerationResponse {}))
    }
}

//! The agent against a scripted coordinator: the real generated gRPC server on a free port,
//! whose answers each test sets. The scripted side records every call; tests wait on those
//! records (with a generous deadline), never on fixed sleeps.

// Each test holds the torch-generator lock (a std mutex) for its whole body on purpose: the
// agent trains on its own thread meanwhile, and no other test may draw from torch's RNG.
#![allow(clippy::await_holding_lock)]

use crate::helpers::{texts, tiny, torch_rng};
use poet_core::config::{Formulation, TrainConfig};
use poet_proto::v1::worker_service_server::{WorkerService, WorkerServiceServer};
use poet_proto::v1::{self as pb, dataset_chunk, upload_checkpoint_request};
use poet_worker::agent::{self, AgentConfig};
use poet_worker::checkpoint::Checkpoint;
use poet_worker::device::DeviceSpec;
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, oneshot};
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};

/// What the scripted coordinator hands out and what it has seen.
#[derive(Default)]
struct Log {
    runs: Vec<pb::RunLease>,
    generations: Vec<pb::GenerationJob>,
    fence_reports: bool,
    cancel_heartbeats: bool,
    checkpoints: Vec<(pb::Checkpoint, Vec<u8>)>,
    epochs: Vec<(pb::Lease, pb::Epoch)>,
    completed: Vec<pb::Lease>,
    failed: Vec<pb::FailRunRequest>,
    generated: Vec<pb::CompleteGenerationRequest>,
    lease_calls: usize,
    leased_heartbeats: usize,
    auth: Vec<Option<String>>,
}

#[derive(Clone, Default)]
struct Scripted {
    log: Arc<Mutex<Log>>,
    changed: Arc<Notify>,
}

impl Scripted {
    fn note<T>(&self, req: &Request<T>) {
        let auth = req
            .metadata()
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_string());
        self.log.lock().unwrap().auth.push(auth);
    }

    fn with<R>(&self, f: impl FnOnce(&mut Log) -> R) -> R {
        let r = f(&mut self.log.lock().unwrap());
        self.changed.notify_waiters();
        r
    }

    /// Waits until `cond` holds on the log (60 s at most, for slow shared CI machines).
    async fn until(&self, what: &str, cond: impl Fn(&Log) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let notified = self.changed.notified();
            if cond(&self.log.lock().unwrap()) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("timed out waiting for {what}");
            }
        }
    }
}

type Stream<T> = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl WorkerService for Scripted {
    async fn register(
        &self,
        req: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        self.note(&req);
        assert_eq!(req.get_ref().device, "cpu");
        Ok(Response::new(pb::RegisterResponse {
            worker_id: 9,
            heartbeat_interval_ms: 100,
            lease_ttl_ms: 5000,
        }))
    }

    async fn lease_run(
        &self,
        req: Request<pb::LeaseRunRequest>,
    ) -> Result<Response<pb::LeaseRunResponse>, Status> {
        self.note(&req);
        let lease = self.with(|l| {
            l.lease_calls += 1;
            (!l.runs.is_empty()).then(|| l.runs.remove(0))
        });
        if lease.is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Response::new(pb::LeaseRunResponse { lease }))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        self.note(&req);
        let cancel = self.with(|l| {
            if req.get_ref().lease.is_some() {
                l.leased_heartbeats += 1;
            }
            l.cancel_heartbeats && req.get_ref().lease.is_some()
        });
        Ok(Response::new(pb::HeartbeatResponse {
            cancel,
            lease_ttl_ms: 5000,
        }))
    }

    async fn report_epoch(
        &self,
        req: Request<pb::ReportEpochRequest>,
    ) -> Result<Response<pb::ReportEpochResponse>, Status> {
        self.note(&req);
        let r = req.into_inner();
        self.with(|l| {
            if l.fence_reports {
                return Err(Status::failed_precondition("lease is not current"));
            }
            l.epochs.push((r.lease.unwrap(), r.epoch.unwrap()));
            Ok(Response::new(pb::ReportEpochResponse { stored: true }))
        })
    }

    async fn upload_checkpoint(
        &self,
        req: Request<tonic::Streaming<pb::UploadCheckpointRequest>>,
    ) -> Result<Response<pb::UploadCheckpointResponse>, Status> {
        self.note(&req);
        let mut stream = req.into_inner();
        let Some(Ok(pb::UploadCheckpointRequest {
            part: Some(upload_checkpoint_request::Part::Header(h)),
        })) = stream.next().await
        else {
            return Err(Status::invalid_argument("header first"));
        };
        let mut bytes = Vec::new();
        while let Some(msg) = stream.next().await {
            match msg?.part {
                Some(upload_checkpoint_request::Part::Data(d)) if d.len() <= 1 << 20 => {
                    bytes.extend(d)
                }
                _ => return Err(Status::invalid_argument("bad chunk")),
            }
        }
        assert_eq!(h.size, bytes.len() as i64);
        assert_eq!(h.sha256, hex::encode(Sha256::digest(&bytes)));
        let lease = h.lease.unwrap();
        let checkpoint = self.with(|l| {
            let c = pb::Checkpoint {
                id: l.checkpoints.len() as i64 + 1,
                run_id: lease.run_id,
                epoch: h.epoch,
                size: h.size,
                sha256: h.sha256.clone(),
                ..Default::default()
            };
            l.checkpoints.push((c.clone(), bytes));
            c
        });
        Ok(Response::new(pb::UploadCheckpointResponse {
            checkpoint: Some(checkpoint),
        }))
    }

    type DownloadCheckpointStream = Stream<pb::DataChunk>;

    async fn download_checkpoint(
        &self,
        req: Request<pb::DownloadCheckpointRequest>,
    ) -> Result<Response<Self::DownloadCheckpointStream>, Status> {
        self.note(&req);
        let id = req.get_ref().checkpoint_id;
        let bytes = self.with(|l| {
            l.checkpoints
                .iter()
                .find(|c| c.0.id == id)
                .map(|c| c.1.clone())
        });
        let bytes = bytes.ok_or_else(|| Status::not_found("checkpoint"))?;
        let chunks: Vec<Result<pb::DataChunk, Status>> = bytes
            .chunks(1000)
            .map(|c| Ok(pb::DataChunk { data: c.to_vec() }))
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    type DownloadDatasetStream = Stream<pb::DatasetChunk>;

    async fn download_dataset(
        &self,
        req: Request<pb::DownloadDatasetRequest>,
    ) -> Result<Response<Self::DownloadDatasetStream>, Status> {
        self.note(&req);
        let (train, val) = texts();
        let mut h = Sha256::new();
        h.update(train.as_bytes());
        h.update(val.as_bytes());
        let header = pb::DatasetHeader {
            dataset: Some(dataset()),
            train_bytes: train.len() as i64,
            validation_bytes: val.len() as i64,
            sha256: hex::encode(h.finalize()),
        };
        // Chunks that split inside lines (and could split inside a character).
        let mut parts = vec![dataset_chunk::Part::Header(header)];
        parts.extend(
            train
                .as_bytes()
                .chunks(7)
                .map(|c| dataset_chunk::Part::Train(c.to_vec())),
        );
        parts.extend(
            val.as_bytes()
                .chunks(7)
                .map(|c| dataset_chunk::Part::Validation(c.to_vec())),
        );
        let msgs: Vec<Result<pb::DatasetChunk, Status>> = parts
            .into_iter()
            .map(|p| Ok(pb::DatasetChunk { part: Some(p) }))
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(msgs))))
    }

    async fn complete_run(
        &self,
        req: Request<pb::CompleteRunRequest>,
    ) -> Result<Response<pb::CompleteRunResponse>, Status> {
        self.note(&req);
        self.with(|l| l.completed.push(req.into_inner().lease.unwrap()));
        Ok(Response::new(pb::CompleteRunResponse {}))
    }

    async fn fail_run(
        &self,
        req: Request<pb::FailRunRequest>,
    ) -> Result<Response<pb::FailRunResponse>, Status> {
        self.note(&req);
        self.with(|l| l.failed.push(req.into_inner()));
        Ok(Response::new(pb::FailRunResponse {}))
    }

    async fn lease_generation(
        &self,
        req: Request<pb::LeaseGenerationRequest>,
    ) -> Result<Response<pb::LeaseGenerationResponse>, Status> {
        self.note(&req);
        let job = self.with(|l| (!l.generations.is_empty()).then(|| l.generations.remove(0)));
        if job.is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Response::new(pb::LeaseGenerationResponse { job }))
    }

    async fn complete_generation(
        &self,
        req: Request<pb::CompleteGenerationRequest>,
    ) -> Result<Response<pb::CompleteGenerationResponse>, Status> {
        self.note(&req);
        self.with(|l| l.generated.push(req.into_inner()));
        Ok(Response::new(pb::CompleteGenerationResponse {}))
    }
}

fn dataset() -> pb::Dataset {
    pb::Dataset {
        id: 3,
        name: "tiny".into(),
        version: 1,
        content_hash: "abc123".into(),
        ..Default::default()
    }
}

fn run_lease(run_id: i64, cfg: &TrainConfig, resume_from: Option<pb::Checkpoint>) -> pb::RunLease {
    pb::RunLease {
        lease: Some(pb::Lease {
            run_id,
            lease_id: format!("lease-{run_id}"),
            attempt: 1,
        }),
        config_json: cfg.canonical_json(),
        dataset: Some(dataset()),
        resume_from,
        lease_ttl_ms: 5000,
    }
}

/// A scripted coordinator on a free port and an agent serving it; the sender stops the agent.
async fn start(
    scripted: &Scripted,
    token: Option<&str>,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
    tempfile::TempDir,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = WorkerServiceServer::new(scripted.clone());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let cache = tempfile::tempdir().unwrap();
    let config = AgentConfig {
        device: DeviceSpec::Cpu,
        token: token.map(str::to_string),
        cache_dir: cache.path().to_path_buf(),
        lease_wait: Duration::from_millis(200),
        ..AgentConfig::new(format!("http://{addr}"))
    };
    let (tx, rx) = oneshot::channel::<()>();
    let agent = tokio::spawn(async move {
        agent::run(config, async {
            let _ = rx.await;
        })
        .await
        .unwrap()
    });
    (tx, agent, cache)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trains_reports_resumes_and_samples() {
    let _rng = torch_rng();
    let scripted = Scripted::default();
    let cfg = TrainConfig {
        epochs: 2,
        ..tiny(Formulation::Seq)
    };
    scripted.with(|l| l.runs.push(run_lease(1, &cfg, None)));
    let (stop, agent, cache) = start(&scripted, Some("s3cret")).await;

    scripted
        .until("run 1 completed", |l| l.completed.len() == 1)
        .await;
    scripted.with(|l| {
        assert_eq!(
            l.epochs.iter().map(|e| e.1.epoch).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert!(l.epochs.iter().all(|(lease, e)| lease.lease_id == "lease-1"
            && e.attempt == 1
            && e.val_loss.is_finite()));
        assert_eq!(l.checkpoints.len(), 2);
        assert_eq!(
            Checkpoint::from_bytes(&l.checkpoints[1].1)
                .unwrap()
                .meta
                .epoch,
            2
        );
        assert!(l.failed.is_empty());
    });
    assert!(cache.path().join("datasets/abc123/train.txt").exists());

    // Resume run 2 from run 1's epoch-1 checkpoint: only epoch 2 is trained and reported.
    let first = scripted.with(|l| l.checkpoints[0].0.clone());
    scripted.with(|l| l.runs.push(run_lease(2, &cfg, Some(first))));
    scripted
        .until("run 2 completed", |l| l.completed.len() == 2)
        .await;
    scripted.with(|l| {
        let run2: Vec<i32> = l
            .epochs
            .iter()
            .filter(|e| e.0.run_id == 2)
            .map(|e| e.1.epoch)
            .collect();
        assert_eq!(run2, vec![2]);
        // Same data, same seed, resumed exactly: epoch 2 of both runs agrees.
        let (a, b) = (&l.epochs[1].1, &l.epochs[2].1);
        assert!((a.train_loss - b.train_loss).abs() < 1e-6);
    });

    // A generation job on run 1's last checkpoint.
    let last = scripted.with(|l| l.checkpoints[1].0.clone());
    let job = pb::GenerationJob {
        generation_id: 5,
        checkpoint: Some(last),
        config_json: cfg.canonical_json(),
        temperatures: vec![0.0, 1.0],
        chars: 30,
        poems: 2,
        seed: 1,
        prime: String::new(),
    };
    scripted.with(|l| l.generations.push(job));
    scripted
        .until("generation completed", |l| !l.generated.is_empty())
        .await;
    scripted.with(|l| {
        let g = &l.generated[0];
        assert_eq!(
            (g.generation_id, g.error.as_str(), g.streams.len()),
            (5, "", 4)
        );
        assert!(g.streams.iter().all(|s| s.text.chars().count() == 30));
        assert!(
            l.auth.iter().all(|a| a.as_deref() == Some("Bearer s3cret")),
            "every call carries the token"
        );
    });

    stop.send(()).unwrap();
    agent.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fenced_run_stops_silently_and_leasing_goes_on() {
    let _rng = torch_rng();
    let scripted = Scripted::default();
    let cfg = TrainConfig {
        epochs: 1000,
        ..tiny(Formulation::Seq)
    };
    scripted.with(|l| {
        l.fence_reports = true;
        l.runs.push(run_lease(1, &cfg, None));
    });
    let (stop, agent, _cache) = start(&scripted, None).await;
    scripted
        .until("a lease after the fenced run", |l| {
            l.runs.is_empty() && l.lease_calls >= 3
        })
        .await;
    scripted.with(|l| {
        assert!(
            l.completed.is_empty() && l.failed.is_empty(),
            "a fenced run reports nothing more"
        );
        assert!(l.auth.iter().all(Option::is_none));
    });
    stop.send(()).unwrap();
    agent.await.unwrap();
    scripted.with(|l| assert!(l.failed.is_empty(), "nothing to release after a fence"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_by_heartbeat_stops_the_run() {
    let _rng = torch_rng();
    let scripted = Scripted::default();
    let cfg = TrainConfig {
        epochs: 1000,
        ..tiny(Formulation::Seq)
    };
    scripted.with(|l| {
        l.cancel_heartbeats = true;
        l.runs.push(run_lease(1, &cfg, None));
    });
    let (stop, agent, _cache) = start(&scripted, None).await;
    scripted
        .until("cancel heard and leasing resumed", |l| {
            l.leased_heartbeats >= 1 && l.lease_calls >= 3
        })
        .await;
    scripted.with(|l| assert!(l.completed.is_empty() && l.failed.is_empty()));
    stop.send(()).unwrap();
    agent.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_releases_the_run() {
    let _rng = torch_rng();
    let scripted = Scripted::default();
    let cfg = TrainConfig {
        epochs: 1000,
        ..tiny(Formulation::Seq)
    };
    scripted.with(|l| l.runs.push(run_lease(1, &cfg, None)));
    let (stop, agent, _cache) = start(&scripted, None).await;
    scripted
        .until("first epoch reported", |l| !l.epochs.is_empty())
        .await;
    stop.send(()).unwrap();
    agent.await.unwrap();
    scripted.with(|l| {
        assert_eq!(l.failed.len(), 1);
        assert!(l.failed[0].release && !l.failed[0].permanent);
        assert!(l.completed.is_empty());
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_fails_the_run_permanently() {
    let _rng = torch_rng();
    let scripted = Scripted::default();
    let mut lease = run_lease(1, &tiny(Formulation::Seq), None);
    lease.config_json = r#"{"layers": 0}"#.into();
    scripted.with(|l| l.runs.push(lease));
    let (stop, agent, _cache) = start(&scripted, None).await;
    scripted.until("run failed", |l| !l.failed.is_empty()).await;
    scripted.with(|l| {
        let f = &l.failed[0];
        assert!(
            f.permanent && !f.release && f.reason.contains("layers"),
            "{f:?}"
        );
    });
    stop.send(()).unwrap();
    agent.await.unwrap();
}

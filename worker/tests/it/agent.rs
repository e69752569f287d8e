//! The agent against the real coordinator: `poet_coordinator::run` on a free loopback port
//! over a fresh test database. Tests drive it through its client API, stand in for another
//! worker or for time passing through its queue and SQL, and assert outcomes in its database
//! (runs, attempts, epochs, checkpoints, generations). They wait by polling the database with
//! a deadline, never on fixed sleeps.

// Each test holds the torch-generator lock (a std mutex) for its whole body on purpose: the
// agent trains on its own thread meanwhile, and no other test may draw from torch's RNG.
#![allow(clippy::await_holding_lock)]

use crate::helpers::{POEMS, tiny, torch_rng};
use poet_coordinator::CoordinatorConfig;
use poet_coordinator::artifacts::Artifacts;
use poet_coordinator::queue::{Queue, Reaped};
use poet_coordinator::testing::{Client, TestCoordinator, lease_run, register};
use poet_core::config::{Formulation, TrainConfig};
use poet_proto::v1::{self as pb, upload_checkpoint_request::Part};
use poet_worker::agent::{self, AgentConfig, AgentError};
use poet_worker::checkpoint::Checkpoint;
use poet_worker::device::DeviceSpec;
use poet_worker::train::Trainer;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use std::future::Future;
use std::ops::ControlFlow;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tch::Device;
use tokio::sync::oneshot;

/// The client token of the coordinator that requires tokens (16 chars at least).
const CLIENT_TOKEN: &str = "client-5d2e8f1a9c3b7046d1e8a2f5c9b30e7d";
/// Its worker token, which the agent must send on every call.
const WORKER_TOKEN: &str = "worker-8a4c1e7f3d9b2056a8c3e1f7d4b92c60";

/// Heartbeats every 200 ms so a cancel is heard quickly; a lease lifetime no test reaches, so
/// a lease expires only where a test moves the reaper's clock.
pub(crate) fn config() -> CoordinatorConfig {
    CoordinatorConfig {
        lease_ttl_s: 30.0,
        heartbeat_interval_s: 0.2,
        reaper_interval_s: 0.2,
        ..Default::default()
    }
}

/// A worker agent served in-process until stopped.
struct Agent {
    /// Resolves the agent's shutdown future.
    stop: oneshot::Sender<()>,
    /// The agent's task.
    handle: tokio::task::JoinHandle<Result<(), AgentError>>,
    /// Its dataset and checkpoint cache.
    cache: tempfile::TempDir,
}

impl Agent {
    fn start(c: &TestCoordinator, token: Option<&str>) -> Agent {
        Agent::start_on(c, token, tempfile::tempdir().unwrap())
    }

    /// An agent whose cache is `cache` (a previous agent's).
    fn start_on(c: &TestCoordinator, token: Option<&str>, cache: tempfile::TempDir) -> Agent {
        let config = AgentConfig {
            device: DeviceSpec::Cpu,
            token: token.map(str::to_string),
            cache_dir: cache.path().to_path_buf(),
            lease_wait: Duration::from_millis(200),
            ..AgentConfig::new(c.url())
        };
        let (stop, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(agent::run(config, async {
            let _ = rx.await;
        }));
        Agent {
            stop,
            handle,
            cache,
        }
    }

    /// Shuts the agent down and waits until it has returned (after releasing any run).
    async fn stop(self) {
        self.stop_keeping_cache().await;
    }

    /// [`stop`](Self::stop), handing back its cache for the next agent.
    async fn stop_keeping_cache(self) -> tempfile::TempDir {
        let _ = self.stop.send(());
        self.handle.await.unwrap().unwrap();
        self.cache
    }
}

/// Seeds dataset `name` with the test poems (twice over, as in `corpus`).
pub(crate) async fn seed(c: &TestCoordinator, name: &str) {
    let poems: Vec<&str> = POEMS.iter().chain(&POEMS).copied().collect();
    poet_sql::testing::seed_dataset(&c.db.pool, name, &poems)
        .await
        .unwrap();
}

/// Submits a one-run sweep of `cfg` on `dataset`; returns the run's id.
pub(crate) async fn submit(client: &mut Client, dataset: &str, cfg: &TrainConfig) -> i64 {
    let spec = format!(
        "dataset = \"{dataset}\"\nmax_attempts = 3\n[base]\n{}",
        toml::to_string(cfg).unwrap()
    );
    let created = client
        .submit_sweep(pb::SubmitSweepRequest {
            spec,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .created;
    assert_eq!(created.len(), 1);
    created[0].id
}

/// Polls `probe` every 20 ms until it yields a value (60 s at most, for slow shared machines).
pub(crate) async fn until<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The columns of a `runs` row the tests look at.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct RunRow {
    state: String,
    attempt: i32,
    failures: i32,
    epochs_done: i32,
    error: Option<String>,
    lease_id: Option<String>,
    lease_owner: Option<i64>,
}

async fn run_row(pool: &PgPool, run: i64) -> RunRow {
    sqlx::query_as(
        "select state, attempt, failures, epochs_done, error, lease_id::text as lease_id, lease_owner
         from runs where id = $1",
    )
    .bind(run)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Waits until `run` is in `state`.
pub(crate) async fn wait_state(pool: &PgPool, run: i64, state: &str) -> RunRow {
    until(&format!("run {run} {state}"), || async move {
        let r = run_row(pool, run).await;
        (r.state == state).then_some(r)
    })
    .await
}

/// A coordinator (no tokens) and an agent mid-way through a run of 1000 epochs (its first
/// epoch reported): the coordinator, its client, the run and the agent.
async fn training() -> (TestCoordinator, Client, i64, Agent) {
    let c = TestCoordinator::start(config(), None).await;
    let mut client = c.client();
    seed(&c, "tiny").await;
    let endless = TrainConfig {
        epochs: 1000,
        ..tiny(Formulation::Seq)
    };
    let run = submit(&mut client, "tiny", &endless).await;
    let agent = Agent::start(&c, None);
    let pool = &c.db.pool;
    until(&format!("run {run}'s first epoch"), || async move {
        let r = run_row(pool, run).await;
        (r.state == "running" && r.epochs_done >= 1).then_some(())
    })
    .await;
    (c, client, run, agent)
}

/// Waits until the agent has trained a further (one-epoch) run to success: it leases on.
async fn trains_the_next_run(c: &TestCoordinator, client: &mut Client) {
    let cfg = TrainConfig {
        epochs: 1,
        ..tiny(Formulation::Seq)
    };
    let next = submit(client, "tiny", &cfg).await;
    wait_state(&c.db.pool, next, "succeeded").await;
}

/// A `run_attempts` row: one lease of a run and how it ended.
#[derive(Debug, sqlx::FromRow)]
struct AttemptRow {
    attempt: i32,
    worker_id: i64,
    resumed_from_epoch: i32,
    outcome: Option<String>,
    detail: Option<String>,
}

async fn attempts(pool: &PgPool, run: i64) -> Vec<AttemptRow> {
    sqlx::query_as(
        "select attempt, worker_id, resumed_from_epoch, outcome, detail
         from run_attempts where run_id = $1 order by attempt",
    )
    .bind(run)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// An `epochs` row: what an attempt reported for one epoch.
#[derive(Debug, sqlx::FromRow)]
struct EpochRow {
    epoch: i32,
    attempt: i32,
    train_loss: f64,
    val_loss: f64,
}

async fn epochs(pool: &PgPool, run: i64) -> Vec<EpochRow> {
    sqlx::query_as(
        "select epoch, attempt, train_loss, val_loss from epochs where run_id = $1 order by epoch",
    )
    .bind(run)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// A `checkpoints` row: where a stored checkpoint's blob is and its hash.
#[derive(Debug, sqlx::FromRow)]
struct CheckpointRow {
    epoch: i32,
    key: String,
    sha256: String,
}

async fn checkpoints(pool: &PgPool, run: i64) -> Vec<CheckpointRow> {
    sqlx::query_as("select epoch, key, sha256 from checkpoints where run_id = $1 order by epoch")
        .bind(run)
        .fetch_all(pool)
        .await
        .unwrap()
}

/// Epochs of the two runs of the first test: the resumed one trains two after its checkpoint.
const EPOCHS: i32 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trains_reports_resumes_and_samples() {
    let _rng = torch_rng();
    // Authentication on: every worker call without the worker token is refused, so a run
    // that gets trained at all shows that every call carried it.
    let c = TestCoordinator::start(config(), Some((CLIENT_TOKEN, WORKER_TOKEN))).await;
    let pool = &c.db.pool;
    let mut client = c.client();
    let cfg = TrainConfig {
        epochs: EPOCHS as u32,
        ..tiny(Formulation::Seq)
    };
    // Run B (to resume) and run A (trained start to finish): the same config on two
    // datasets with the same poems, so their epochs must agree.
    seed(&c, "tiny").await;
    seed(&c, "tiny-copy").await;
    let b = submit(&mut client, "tiny-copy", &cfg).await;

    // B's first attempt, before the agent starts: another worker leases B, trains epoch 1
    // (the real trainer on the text the coordinator serves), reports it with its checkpoint
    // and dies. The reaper, its clock moved past the lease, requeues B.
    let mut other = c.worker();
    let other_id = register(&mut other, "doomed").await;
    let leased = lease_run(&mut other, other_id, 0)
        .await
        .expect("run B queued");
    let lease = leased.lease.clone().unwrap();
    assert_eq!((lease.run_id, lease.attempt), (b, 1));
    let texts = poet_coordinator::datasets::corpus(pool, leased.dataset.unwrap().id)
        .await
        .unwrap();
    let mut trainer = Trainer::new(
        TrainConfig::from_json(&leased.config_json).unwrap(),
        &texts.train,
        &texts.validation,
        Device::Cpu,
    )
    .unwrap();
    let mut first = None;
    trainer
        .run(&AtomicBool::new(false), &mut |_| {}, &mut |r| {
            first = Some(r);
            ControlFlow::Break(())
        })
        .unwrap();
    let first = first.unwrap();
    other
        .report_epoch(pb::ReportEpochRequest {
            lease: Some(lease.clone()),
            epoch: Some(pb::Epoch {
                epoch: 1,
                attempt: 1,
                train_loss: first.train_loss,
                val_loss: first.val_loss,
                duration_s: first.duration_s,
                chars_per_sec: first.chars_per_sec,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let header = pb::CheckpointHeader {
        lease: Some(lease),
        epoch: 1,
        size: first.checkpoint.len() as i64,
        sha256: hex::encode(Sha256::digest(&first.checkpoint)),
    };
    let upload = [Part::Header(header), Part::Data(first.checkpoint)]
        .map(|p| pb::UploadCheckpointRequest { part: Some(p) });
    other
        .upload_checkpoint(tokio_stream::iter(upload))
        .await
        .unwrap();
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let reaped = Queue::new(pool.clone(), Duration::from_secs(30))
        .reap(later)
        .await
        .unwrap();
    assert_eq!(
        reaped,
        vec![Reaped {
            run_id: b,
            state: "queued".into()
        }]
    );

    let a = submit(&mut client, "tiny", &cfg).await;
    let agent = Agent::start(&c, Some(WORKER_TOKEN));

    // Run A, start to finish: every epoch reported and checkpointed, then completed.
    let ra = wait_state(pool, a, "succeeded").await;
    assert_eq!((ra.attempt, ra.failures, ra.epochs_done), (1, 0, EPOCHS));
    let ea = epochs(pool, a).await;
    assert_eq!(
        ea.iter().map(|e| e.epoch).collect::<Vec<_>>(),
        (1..=EPOCHS).collect::<Vec<_>>()
    );
    assert!(
        ea.iter()
            .all(|e| e.attempt == 1 && e.train_loss.is_finite() && e.val_loss.is_finite())
    );
    let ca = checkpoints(pool, a).await;
    assert_eq!(
        ca.iter().map(|c| c.epoch).collect::<Vec<_>>(),
        (1..=EPOCHS).collect::<Vec<_>>()
    );
    let last = ca.last().unwrap();
    let store = Artifacts::open(&c.artifacts.path().display().to_string()).unwrap();
    let blob = store.get(&last.key).await.unwrap().expect("latest kept");
    assert_eq!(hex::encode(Sha256::digest(&blob)), last.sha256);
    assert_eq!(
        Checkpoint::from_bytes(&blob).unwrap().meta.epoch,
        EPOCHS as u32
    );
    let att = attempts(pool, a).await;
    assert_eq!(att.len(), 1);
    assert_eq!(att[0].outcome.as_deref(), Some("completed"));
    let agent_id = att[0].worker_id;
    let hash: String = sqlx::query_scalar("select content_hash from datasets where name = 'tiny'")
        .fetch_one(pool)
        .await
        .unwrap();
    assert!(
        agent
            .cache
            .path()
            .join("datasets")
            .join(hash)
            .join("train.txt")
            .exists()
    );

    // Run B, resumed by the agent from epoch 1's checkpoint: only the later epochs are
    // trained and reported, and they agree with A's (same data, same seed, exact resume).
    let rb = wait_state(pool, b, "succeeded").await;
    assert_eq!((rb.attempt, rb.failures, rb.epochs_done), (2, 1, EPOCHS));
    let att = attempts(pool, b).await;
    assert_eq!(
        att.iter()
            .map(|a| (
                a.attempt,
                a.worker_id,
                a.resumed_from_epoch,
                a.outcome.as_deref()
            ))
            .collect::<Vec<_>>(),
        vec![
            (1, other_id.id, 0, Some("lease_expired")),
            (2, agent_id, 1, Some("completed"))
        ]
    );
    let eb = epochs(pool, b).await;
    assert_eq!(
        eb.iter().map(|e| (e.epoch, e.attempt)).collect::<Vec<_>>(),
        (1..=EPOCHS)
            .map(|e| (e, if e == 1 { 1 } else { 2 }))
            .collect::<Vec<_>>()
    );
    for (x, y) in ea.iter().zip(&eb) {
        assert!(
            (x.train_loss - y.train_loss).abs() < 1e-6 && (x.val_loss - y.val_loss).abs() < 1e-6,
            "epoch {}: {x:?} vs {y:?}",
            x.epoch
        );
    }

    // A generation on A's latest checkpoint, served by the agent and judged by the coordinator.
    let g = client
        .generate(pb::GenerateRequest {
            run_id: a,
            checkpoint: "latest".into(),
            temperatures: vec![0.0, 1.0],
            chars: 30,
            poems: 2,
            seed: 1,
            wait: true,
            wait_seconds: 60,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .generation
        .unwrap();
    assert_eq!(
        (g.state.as_str(), g.error.as_str(), g.epoch),
        ("done", "", EPOCHS),
        "{g:?}"
    );
    // The coordinator stores the streams split into poems: 2 streams of 30 chars per
    // temperature come back as poems of at most 30 chars at those temperatures.
    assert!(!g.poems.is_empty(), "{g:?}");
    assert!(g.poems.iter().all(|p| [0.0, 1.0].contains(&p.temperature)
        && p.text.chars().count() <= 30
        && p.report.is_some()));
    let served_by: Option<i64> =
        sqlx::query_scalar("select worker_id from generations where id = $1")
            .bind(g.id)
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(served_by, Some(agent_id));

    agent.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fenced_run_stops_silently_and_leasing_goes_on() {
    let _rng = torch_rng();
    let (c, mut client, run, agent) = training().await;
    let pool = &c.db.pool;

    // Another worker takes the lease over (as after a partition: a fresh lease id).
    let other = register(&mut c.worker(), "other").await;
    let (taken, done): (String, i32) = sqlx::query_as(
        "update runs set lease_id = gen_random_uuid(), lease_owner = $2,
             lease_expires_at = now() + interval '1 hour'
         where id = $1 and state = 'running' returning lease_id::text, epochs_done",
    )
    .bind(run)
    .bind(other.id)
    .fetch_one(pool)
    .await
    .unwrap();

    // Leasing goes on: the agent (one run at a time) drops the fenced run and trains the next.
    trains_the_next_run(&c, &mut client).await;

    // The fenced run is left to its new holder as it was, after the fence and after the
    // agent's shutdown: nothing completed, failed, released or reported it. (The coordinator
    // would refuse such calls on the old lease anyway; that the agent stopped the run is
    // shown by its training the next one.)
    let check = || async {
        let r = run_row(pool, run).await;
        assert_eq!(
            (
                r.state.as_str(),
                r.lease_id.as_deref(),
                r.lease_owner,
                r.epochs_done
            ),
            ("running", Some(taken.as_str()), Some(other.id), done)
        );
        let att = attempts(pool, run).await;
        assert_eq!(att.len(), 1);
        assert_eq!(att[0].outcome, None, "{att:?}");
    };
    check().await;
    agent.stop().await;
    check().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_by_heartbeat_stops_the_run() {
    let _rng = torch_rng();
    let (c, mut client, run, agent) = training().await;
    let pool = &c.db.pool;

    let asked = client
        .cancel_run(pb::CancelRunRequest {
            run_id: run,
            reason: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((asked.cancelled, asked.cancel_requested), (0, 1));
    let r = wait_state(pool, run, "cancelled").await;
    assert_eq!((r.attempt, r.failures), (1, 0));
    // Ended by the heartbeat that carried the cancel (no detail), not by a call of the
    // agent's (a FailRun would record its reason): it says nothing more about the run.
    let att = attempts(pool, run).await;
    assert_eq!(att.len(), 1);
    assert_eq!(
        (att[0].outcome.as_deref(), att[0].detail.as_deref()),
        (Some("cancelled"), None)
    );

    // Leasing resumes after the cancel.
    trains_the_next_run(&c, &mut client).await;
    assert_eq!(run_row(pool, run).await.state, "cancelled");
    agent.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_releases_the_run() {
    let _rng = torch_rng();
    let (c, _client, run, agent) = training().await;
    let pool = &c.db.pool;
    agent.stop().await;

    // Released: queued again at once, and not counted as a failure.
    let r = run_row(pool, run).await;
    assert_eq!(
        (r.state.as_str(), r.attempt, r.failures, r.lease_id),
        ("queued", 1, 0, None)
    );
    let att = attempts(pool, run).await;
    assert_eq!(att.len(), 1);
    assert_eq!(
        (att[0].outcome.as_deref(), att[0].detail.as_deref()),
        (Some("released"), Some("worker shutting down"))
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_fails_the_run_permanently() {
    let _rng = torch_rng();
    let c = TestCoordinator::start(config(), None).await;
    let pool = &c.db.pool;
    let mut client = c.client();
    seed(&c, "tiny").await;
    let run = submit(&mut client, "tiny", &tiny(Formulation::Seq)).await;
    // The coordinator validates configs at submission, so a config this worker refuses (as
    // from a coordinator of another version) is written straight into the queue.
    sqlx::query(r#"update runs set config = '{"layers": 0}' where id = $1"#)
        .bind(run)
        .execute(pool)
        .await
        .unwrap();
    let agent = Agent::start(&c, None);

    // Failed for good on its first attempt, though the sweep allows 3: a retryable failure
    // would requeue it, a release would not count it.
    let r = wait_state(pool, run, "failed").await;
    assert_eq!((r.attempt, r.failures), (1, 1));
    let error = r.error.unwrap_or_default();
    assert!(
        error.contains("layers") && !error.contains("attempt"),
        "{error}"
    );
    let att = attempts(pool, run).await;
    assert_eq!(att.len(), 1);
    assert_eq!(att[0].outcome.as_deref(), Some("failed"));
    agent.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asha_pauses_promotes_and_the_promoted_run_continues_exactly() {
    let _rng = torch_rng();
    let c = TestCoordinator::start(config(), None).await;
    let mut client = c.client();
    seed(&c, "tiny").await;
    let cfg = TrainConfig {
        epochs: 3,
        ..tiny(Formulation::Seq)
    };
    // Three learning rates; rungs at epoch 1 only (eta 3, 3 epochs): the best of the three
    // is promoted and trains on to epoch 3, the other two stop.
    let spec = format!(
        "dataset = \"tiny\"\n[stopping]\nrule = \"asha\"\nmin_epochs = 1\neta = 3\n[base]\n{}\n[grid]\nlearning_rate = [0.03, 0.01, 0.001]\n",
        toml::to_string(&cfg).unwrap()
    );
    client
        .submit_sweep(pb::SubmitSweepRequest {
            spec,
            ..Default::default()
        })
        .await
        .unwrap();
    let agent = Agent::start(&c, None);
    let pool = &c.db.pool;
    until("the sweep to finish", || async move {
        let done: bool =
            sqlx::query_scalar("select finished_at is not null from sweeps where id = 1")
                .fetch_one(pool)
                .await
                .unwrap();
        done.then_some(())
    })
    .await;
    let states: Vec<(i64, String, i32)> =
        sqlx::query_as("select id, state, epochs_done from runs order by id")
            .fetch_all(pool)
            .await
            .unwrap();
    let winner: Vec<i64> = states
        .iter()
        .filter(|s| s.1 == "succeeded")
        .map(|s| s.0)
        .collect();
    assert_eq!(winner.len(), 1, "{states:?}");
    assert!(
        states
            .iter()
            .all(|s| s.1 == "succeeded" && s.2 == 3 || s.1 == "stopped" && s.2 == 1),
        "{states:?}"
    );
    let w = winner[0];
    // The winner was paused at epoch 1 (the first two arrivals had no quota), then promoted:
    // its second lease resumed from the epoch-1 checkpoint.
    let att = attempts(pool, w).await;
    let resumed: Vec<(i32, i32)> = att
        .iter()
        .map(|a| (a.attempt, a.resumed_from_epoch))
        .collect();
    assert!(
        resumed == vec![(1, 0), (2, 1)] || resumed == vec![(1, 0)],
        "{resumed:?}"
    );
    let paused_first: bool = sqlx::query_scalar(
        "select exists (select 1 from sweep_decisions where kind = 'pause' and run_id = $1)",
    )
    .bind(w)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(paused_first, resumed.len() == 2);
    let got = epochs(pool, w).await;
    agent.stop().await;

    // The same config trained straight through, in this process on the same texts, gives the
    // same numbers: a pause and a promotion change nothing.
    let hash: String = sqlx::query_scalar("select content_hash from datasets where name = 'tiny'")
        .fetch_one(pool)
        .await
        .unwrap();
    let lr: f64 =
        sqlx::query_scalar("select (config->>'learning_rate')::float8 from runs where id = $1")
            .bind(w)
            .fetch_one(pool)
            .await
            .unwrap();
    let id: i64 = sqlx::query_scalar("select id from datasets where content_hash = $1")
        .bind(&hash)
        .fetch_one(pool)
        .await
        .unwrap();
    let texts = poet_coordinator::datasets::corpus(pool, id).await.unwrap();
    let mut t = Trainer::new(
        TrainConfig {
            learning_rate: lr,
            ..cfg.clone()
        },
        &texts.train,
        &texts.validation,
        Device::Cpu,
    )
    .unwrap();
    let mut straight = vec![];
    t.run(&AtomicBool::new(false), &mut |_| {}, &mut |r| {
        straight.push((r.train_loss, r.val_loss));
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(straight.len(), got.len());
    for (e, (x, y)) in got.iter().zip(&straight).enumerate() {
        assert!(
            (x.train_loss - y.0).abs() < 1e-6 && (x.val_loss - y.1).abs() < 1e-6,
            "epoch {}: {x:?} vs {y:?}",
            e + 1
        );
    }
    let kinds: Vec<String> = sqlx::query_scalar("select kind from sweep_decisions order by id")
        .fetch_all(pool)
        .await
        .unwrap();
    assert_eq!(kinds.last().map(String::as_str), Some("finish"));
    assert_eq!(
        kinds.iter().filter(|k| *k == "stop").count(),
        2,
        "{kinds:?}"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_cached_dataset_is_downloaded_again() {
    let _rng = torch_rng();
    let c = TestCoordinator::start(config(), None).await;
    let pool = &c.db.pool;
    let mut client = c.client();
    seed(&c, "tiny").await;
    let cfg = TrainConfig {
        epochs: 1,
        ..tiny(Formulation::Seq)
    };
    let first = submit(&mut client, "tiny", &cfg).await;
    let agent = Agent::start(&c, None);
    wait_state(pool, first, "succeeded").await;
    let cache = agent.stop_keeping_cache().await;

    // One byte of the cached training text changes (same size, still UTF-8).
    let (id, hash): (i64, String) =
        sqlx::query_as("select id, content_hash from datasets where name = 'tiny'")
            .fetch_one(pool)
            .await
            .unwrap();
    let train = cache.path().join("datasets").join(hash).join("train.txt");
    let good = std::fs::read(&train).unwrap();
    let served = poet_coordinator::datasets::corpus(pool, id).await.unwrap();
    assert_eq!(good, served.train.as_bytes());
    let mut bad = good.clone();
    let at = bad.iter().position(|b| *b == b'a').unwrap();
    bad[at] = b'o';
    std::fs::write(&train, &bad).unwrap();

    // The next run on that dataset finds the entry corrupt and downloads it again: it trains
    // on the coordinator's text, and the entry is whole again.
    let second = submit(
        &mut client,
        "tiny",
        &TrainConfig {
            seed: cfg.seed + 1,
            ..cfg
        },
    )
    .await;
    let agent = Agent::start_on(&c, None, cache);
    wait_state(pool, second, "succeeded").await;
    assert_eq!(std::fs::read(&train).unwrap(), good);
    agent.stop().await;
    c.stop().await;
}

/// Issue 20: a CPU agent with `--label zone=a` announces its labels, threads and memory; it
/// trains the run meant for zone a and never leases the GPU-only run queued before it, which
/// `poet sweeps submit` warned about.
#[tokio::test]
async fn a_labelled_cpu_agent_announces_itself_and_takes_only_runs_it_can_hold() {
    let _torch = torch_rng();
    let c = TestCoordinator::start(config(), None).await;
    let client = c.client();
    seed(&c, "tiny").await;
    let cfg = TrainConfig {
        epochs: 1,
        ..tiny(Formulation::Seq)
    };
    let base: Vec<String> = toml::to_string(&cfg)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("seed"))
        .map(str::to_string)
        .collect();
    let submit_with = |resources: &str, seed: u64| {
        let spec = format!(
            "dataset = \"tiny\"\n[base]\n{}\nseed = {seed}\n[resources]\n{resources}\n",
            base.join("\n")
        );
        let mut client = client.clone();
        async move {
            client
                .submit_sweep(pb::SubmitSweepRequest {
                    spec,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let gpu = submit_with("gpu = true", 1).await;
    let zone = submit_with("labels = { zone = \"a\" }", 2).await;
    // No worker yet: both are reported at submit.
    assert_eq!(gpu.warnings.len(), 1, "{:?}", gpu.warnings);
    assert!(gpu.warnings[0].contains("no worker fits: needs"));
    let (gpu_run, zone_run) = (gpu.created[0].id, zone.created[0].id);
    let cache = tempfile::tempdir().unwrap();
    let config = AgentConfig {
        device: DeviceSpec::Cpu,
        cache_dir: cache.path().to_path_buf(),
        lease_wait: Duration::from_millis(200),
        labels: vec![("zone".into(), "a".into())],
        ..AgentConfig::new(c.url())
    };
    let (stop, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(agent::run(config, async {
        let _ = rx.await;
    }));
    let agent = Agent {
        stop,
        handle,
        cache,
    };
    wait_state(&c.db.pool, zone_run, "succeeded").await;
    let (labels, memory, threads): (serde_json::Value, i64, i32) = sqlx::query_as(
        "select labels, memory_bytes, cpu_threads from workers order by id desc limit 1",
    )
    .fetch_one(&c.db.pool)
    .await
    .unwrap();
    assert_eq!(labels, serde_json::json!({"zone": "a"}));
    assert!(
        memory > 0 && threads > 0,
        "memory {memory}, threads {threads}"
    );
    let gpu_row = run_row(&c.db.pool, gpu_run).await;
    assert_eq!((gpu_row.state.as_str(), gpu_row.attempt), ("queued", 0));
    agent.stop().await;
}

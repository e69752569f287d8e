//! The fleet soak (issue 20): a mixed-requirement workload on a mixed fleet while workers are
//! SIGKILLed over and over and coordinator replicas are restarted now and then.
//!
//! The fleet: 4 CPU workers, two started with `--label pool=big`, behind a TCP proxy to 2
//! coordinator replicas. Each wave submits three sweeps: one whose `[resources]` needs the
//! label `pool = "big"` (only half the fleet may train it), one that needs a CPU worker
//! (`gpu = false`) and one with no needs. Every `POET_SOAK_EVERY_S` seconds a worker is
//! SIGKILLed (every other kill one whose run has a checkpoint, the others at random) and a
//! fresh process (same labels, new cache) takes its place; every 10th fault also SIGKILLs a
//! coordinator replica and starts it on a new port. Whenever the queue is
//! nearly drained before the kill target, another wave is submitted, so the target is met
//! whatever the machine's speed (a fixed-size sweep would end early on a fast machine and
//! never reach it on a slow one).
//!
//! At the end: every run of every wave succeeded exactly once (0 lost), epochs are exactly
//! `1..E`, every attempt resumed from its run's latest checkpoint
//! ([`check::resumes_not_from_latest`]), no attempt ran on a worker without the labels its run
//! needs, and after one orphan-sweep pass (a SIGKILLed replica may leave a blob it stored but
//! never committed) no unreferenced blob is left.
//!
//! Sizes: `POET_SOAK_KILLS` (default 8, the CI size: about 20 s here) worker SIGKILLs;
//! `./poet.sh soak` runs 100 (see RELIABILITY.md).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use poet_proto::v1::{self, poet_client::PoetClient};
use poet_reliability::check;
use poet_reliability::procs::{self, CoordinatorProc, CoordinatorSpec, WorkerProc};
use poet_reliability::{fixtures, proxy::Proxy};
use rand::{Rng, SeedableRng, rngs::StdRng};
use sqlx::PgPool;

/// Epochs per run, and batches per epoch (an epoch takes a fraction of a second).
const EPOCHS: u32 = 6;
const MAX_BATCHES: u32 = 60;
/// Runs per sweep; a wave is three sweeps.
const RUNS_PER_SWEEP: usize = 4;
/// A coordinator replica is restarted on one fault in this many (the 5th, 15th, 25th, ...:
/// the CI size sees one too).
const COORDINATOR_EVERY: usize = 10;

/// The `[resources]` of each sweep of a wave: label-bound, CPU-only, anything.
const NEEDS: [(&str, &str); 3] = [
    ("big", "[resources]\nlabels = { pool = \"big\" }\n"),
    ("cpu", "[resources]\ngpu = false\n"),
    ("any", ""),
];

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One worker slot of the fleet: its process and the flags it is (re)started with.
struct Slot {
    proc: WorkerProc,
    flags: Vec<String>,
}

struct Fleet {
    pool: PgPool,
    dir: tempfile::TempDir,
    spec: CoordinatorSpec,
    coords: Vec<CoordinatorProc>,
    proxy: Proxy,
    slots: Vec<Slot>,
    /// Worker processes started so far (names their logs and caches).
    started: usize,
}

impl Fleet {
    async fn start_worker(&mut self, flags: &[String]) -> Result<WorkerProc> {
        let n = self.started;
        self.started += 1;
        WorkerProc::start_with(
            &self.proxy.url(),
            &self.dir.path().join(format!("cache-{n}")),
            &self.spec.log_dir,
            &format!("worker-{n}"),
            flags,
        )
        .await
    }

    /// Submits one wave (three sweeps, one per entry of [`NEEDS`]); returns its run ids.
    async fn submit_wave(&self, wave: usize) -> Result<Vec<i64>> {
        let mut client = PoetClient::connect(format!("http://{}", self.coords[0].addr)).await?;
        let mut runs = Vec::new();
        for (k, (name, needs)) in NEEDS.iter().enumerate() {
            // Seeds of its own per sweep: runs are keyed by config, so repeated seeds would
            // reuse runs already trained instead of adding work.
            let first = (wave * NEEDS.len() + k) * RUNS_PER_SWEEP + 1;
            let spec = format!(
                "{}{needs}",
                fixtures::sweep_spec_seeds(
                    "soak",
                    first..first + RUNS_PER_SWEEP,
                    EPOCHS,
                    MAX_BATCHES
                )
            );
            let r = client
                .submit_sweep(v1::SubmitSweepRequest {
                    spec,
                    name: format!("soak-{wave}-{name}"),
                    ..Default::default()
                })
                .await?
                .into_inner();
            ensure!(
                r.created.len() == RUNS_PER_SWEEP && r.existing.is_empty(),
                "sweep soak-{wave}-{name}: {} runs created, {} reused",
                r.created.len(),
                r.existing.len()
            );
            runs.extend(check::sweep_runs(&self.pool, r.sweep.context("sweep")?.id).await?);
        }
        Ok(runs)
    }

    /// SIGKILLs coordinator `i` and starts a new one (new port) behind the proxy.
    async fn restart_coordinator(&mut self, i: usize, n: usize) -> Result<()> {
        self.coords[i]
            .restart(&self.spec, &format!("coordinator-{i}-r{n}"))
            .await?;
        self.proxy
            .set_backends(self.coords.iter().map(|c| c.addr).collect());
        Ok(())
    }

    fn logs(&self) -> String {
        procs::logs(&self.coords, self.slots.iter().map(|s| &s.proc))
    }
}

/// The worker id a worker process logged at registration (`registered worker_id=N`).
fn registered_id(w: &WorkerProc) -> Option<i64> {
    let log = std::fs::read_to_string(&w.stderr).ok()?;
    let rest = log.split("registered worker_id=").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Workers holding one of `runs` that has a checkpoint to resume from.
async fn checkpointed_holders(pool: &PgPool, runs: &[i64]) -> Result<Vec<i64>> {
    Ok(sqlx::query_scalar(
        "select lease_owner from runs
         where id = any($1) and state = 'running' and epochs_done >= 1 and lease_owner is not null",
    )
    .bind(runs)
    .fetch_all(pool)
    .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_mixed_fleet_under_repeated_sigkills() {
    let kills_wanted: usize = env_or("POET_SOAK_KILLS", 8);
    let every = Duration::from_secs_f64(env_or("POET_SOAK_EVERY_S", 1.0));
    // Generous (a wave takes tens of seconds, a minute on a loaded 2-core machine): the bound
    // only turns a hang into a failure.
    let deadline = Duration::from_secs(env_or(
        "POET_SOAK_DEADLINE_S",
        180 + 6 * kills_wanted as u64,
    ));
    let outcome = tokio::time::timeout(deadline + Duration::from_secs(60), async {
        soak(kills_wanted, every, deadline).await
    })
    .await;
    match outcome {
        Ok(r) => r.unwrap(),
        Err(_) => panic!("soak did not finish in {deadline:?} + 60 s"),
    }
}

async fn soak(kills_wanted: usize, every: Duration, deadline: Duration) -> Result<()> {
    poet_reliability::procs::worker_bin()?;
    let db = poet_sql::testing::fresh_db().await;
    let pool = db.pool.clone();
    let dir = tempfile::tempdir()?;
    let spec = CoordinatorSpec {
        database_url: db.url.clone(),
        artifacts: dir.path().join("artifacts"),
        lease_ttl_s: 3.0,
        heartbeat_s: 0.75,
        reaper_s: 0.5,
        env: vec![],
        log_dir: dir.path().join("logs"),
    };
    let mut coords = Vec::new();
    for i in 0..2 {
        coords
            .push(CoordinatorProc::start(&spec, "127.0.0.1:0", &format!("coordinator-{i}")).await?);
    }
    let proxy = Proxy::start(coords.iter().map(|c| c.addr).collect()).await?;
    let mut fleet = Fleet {
        pool: pool.clone(),
        dir,
        spec,
        coords,
        proxy,
        slots: Vec::new(),
        started: 0,
    };
    fixtures::seed_dataset(&pool, "soak").await?;
    let mut runs = fleet.submit_wave(0).await?;
    let mut waves = 1;
    for i in 0..4 {
        let flags: Vec<String> = if i < 2 {
            vec!["--label".into(), "pool=big".into()]
        } else {
            vec![]
        };
        let proc = fleet.start_worker(&flags).await?;
        fleet.slots.push(Slot { proc, flags });
    }

    let t = Instant::now();
    let mut rng = StdRng::seed_from_u64(20);
    let (mut kills, mut restarts, mut faults) = (0usize, 0usize, 0usize);
    let mut next = t + every;
    loop {
        let done = check::succeeded(&pool, &runs).await?;
        let dead = check::dead_runs(&pool, &runs).await?;
        if !dead.is_empty() {
            bail!("runs ended badly: {dead:?}\n{}", fleet.logs());
        }
        if kills >= kills_wanted && done == runs.len() {
            break;
        }
        if t.elapsed() > deadline {
            bail!(
                "{done} of {} runs succeeded, {kills} of {kills_wanted} kills after {deadline:?}\n{}",
                runs.len(),
                fleet.logs()
            );
        }
        // Keep work queued until the last kill, so every kill can hit a training worker.
        if kills < kills_wanted && runs.len() - done < 4 {
            runs.extend(fleet.submit_wave(waves).await?);
            waves += 1;
        }
        if kills < kills_wanted && Instant::now() >= next {
            // Every other kill aims at a worker whose run has stored a checkpoint (so the
            // resume path is exercised even at the CI size); the others are random, idle
            // workers and runs without a checkpoint included.
            let aimed = if faults % 2 == 0 {
                let holders = checkpointed_holders(&pool, &runs).await?;
                let ids: Vec<usize> = (0..fleet.slots.len())
                    .filter(|&i| {
                        registered_id(&fleet.slots[i].proc).is_some_and(|w| holders.contains(&w))
                    })
                    .collect();
                (!ids.is_empty()).then(|| ids[rng.gen_range(0..ids.len())])
            } else {
                None
            };
            let i = aimed.unwrap_or_else(|| rng.gen_range(0..fleet.slots.len()));
            fleet.slots[i].proc.kill().await;
            let flags = fleet.slots[i].flags.clone();
            fleet.slots[i].proc = fleet.start_worker(&flags).await?;
            kills += 1;
            faults += 1;
            if faults % COORDINATOR_EVERY == COORDINATOR_EVERY / 2 {
                let c = rng.gen_range(0..fleet.coords.len());
                fleet.restart_coordinator(c, faults).await?;
                restarts += 1;
            }
            next = Instant::now() + every;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let secs = t.elapsed().as_secs_f64();

    let f = check::check_runs(&pool, &fleet.spec.artifacts, &runs, EPOCHS).await?;
    let not_latest = check::resumes_not_from_latest(&pool, &runs).await?;
    let unfit = check::attempts_on_unfit_workers(&pool, &runs).await?;
    let store =
        poet_coordinator::artifacts::Artifacts::open(&fleet.spec.artifacts.display().to_string())?;
    let swept = poet_coordinator::retention::sweep_orphans(&pool, &store, Duration::ZERO).await?;
    let after = check::check_runs(&pool, &fleet.spec.artifacts, &runs, EPOCHS).await?;
    let labelled: i64 = sqlx::query_scalar(
        "select count(*) from run_attempts a join runs r on r.id = a.run_id
         where a.run_id = any($1) and r.need_labels <> '{}'",
    )
    .bind(&runs)
    .fetch_one(&pool)
    .await?;
    eprintln!(
        "[soak] worker_sigkills={kills} coordinator_restarts={restarts} waves={waves} sweeps={} runs={} epochs={} attempts={} labelled_attempts={labelled} resumed={} resumed_not_from_latest={} unfit_attempts={} orphans_swept={} left_after_sweep={} lost=0 time={secs:.1}s",
        waves * NEEDS.len(),
        f.runs,
        f.epochs,
        f.attempts,
        f.resumed,
        not_latest.len(),
        unfit.len(),
        swept.deleted + swept.staging_deleted,
        after.orphan_blobs.len() + after.stale_blobs.len() + after.staging_files.len(),
    );
    ensure!(not_latest.is_empty(), "{not_latest:#?}");
    ensure!(unfit.is_empty(), "{unfit:#?}");
    ensure!(
        kills >= kills_wanted,
        "{kills} kills, wanted {kills_wanted}"
    );
    ensure!(
        f.resumed > 0,
        "no attempt resumed from a checkpoint: the kills missed every run"
    );
    ensure!(labelled > 0, "no attempt of the label-bound sweeps");
    ensure!(
        after.orphan_blobs.is_empty()
            && after.stale_blobs.is_empty()
            && after.staging_files.is_empty(),
        "left after one orphan-sweep pass: {after:?}"
    );
    for w in &mut fleet.slots {
        w.proc.kill().await;
    }
    for c in &mut fleet.coords {
        c.kill().await;
    }
    Ok(())
}

//! Fault tests against the real processes: `poet coordinator` and `poet-worker` children on
//! loopback, a fresh database each (a private cluster for the Postgres restart), tiny models.
//! Each test injects faults while a sweep trains, waits for the sweep to finish, then checks
//! the invariants of [`poet_reliability::check`]. Sizes: `POET_CHAOS_SCALE=large` for the long
//! run (see RELIABILITY.md); the default is the CI size.
//!
//! The tests need both binaries; a missing one fails the test with the command to build it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use poet_proto::v1::{self, poet_client::PoetClient};
use poet_reliability::check::{self, Figures};
use poet_reliability::procs::{self, CoordinatorProc, CoordinatorSpec, WorkerProc, tail, wait_for};
use poet_reliability::proxy::Proxy;
use poet_reliability::{fixtures, scale};
use rand::{Rng, SeedableRng, rngs::StdRng};
use sqlx::PgPool;

/// One test's world: a database, an artifacts folder, coordinators behind a proxy, workers.
struct Stack {
    pool: PgPool,
    dir: tempfile::TempDir,
    spec: CoordinatorSpec,
    coords: Vec<CoordinatorProc>,
    /// Workers reach the coordinators only through this proxy, so a restarted coordinator
    /// (on a new port) or a cut link is one call away.
    proxy: Proxy,
    workers: Vec<WorkerProc>,
    started_workers: usize,
}

impl Stack {
    async fn new(database_url: String, pool: PgPool, replicas: usize, ttl: f64) -> Result<Stack> {
        let dir = tempfile::tempdir()?;
        let spec = CoordinatorSpec {
            database_url,
            artifacts: dir.path().join("artifacts"),
            lease_ttl_s: ttl,
            heartbeat_s: (ttl / 4.0).max(0.25),
            reaper_s: 0.5,
            env: vec![],
            log_dir: dir.path().join("logs"),
        };
        let mut coords = Vec::new();
        for i in 0..replicas {
            coords.push(
                CoordinatorProc::start(&spec, "127.0.0.1:0", &format!("coordinator-{i}")).await?,
            );
        }
        let proxy = Proxy::start(coords.iter().map(|c| c.addr).collect()).await?;
        Ok(Stack {
            pool,
            dir,
            spec,
            coords,
            proxy,
            workers: vec![],
            started_workers: 0,
        })
    }

    async fn client(&self) -> Result<PoetClient<tonic::transport::Channel>> {
        Ok(PoetClient::connect(format!("http://{}", self.coords[0].addr)).await?)
    }

    /// Seeds the dataset and submits the sweep; returns its run ids.
    async fn submit(&self, runs: usize, epochs: u32, max_batches: u32) -> Result<Vec<i64>> {
        fixtures::seed_dataset(&self.pool, "chaos").await?;
        let text = fixtures::sweep_spec("chaos", runs, epochs, max_batches);
        let r = self
            .client()
            .await?
            .submit_sweep(v1::SubmitSweepRequest {
                spec: text,
                ..Default::default()
            })
            .await?
            .into_inner();
        check::sweep_runs(&self.pool, r.sweep.context("sweep")?.id).await
    }

    async fn start_worker(&mut self, url: &str) -> Result<usize> {
        let n = self.started_workers;
        self.started_workers += 1;
        let cache = self.dir.path().join(format!("cache-{n}"));
        self.workers.push(
            WorkerProc::start(url, &cache, &self.spec.log_dir, &format!("worker-{n}")).await?,
        );
        Ok(self.workers.len() - 1)
    }

    /// SIGKILLs coordinator `i` and starts a new one (new port) in its place.
    async fn restart_coordinator(&mut self, i: usize, n: usize) -> Result<()> {
        self.coords[i]
            .restart(&self.spec, &format!("coordinator-{i}-r{n}"))
            .await?;
        self.proxy
            .set_backends(self.coords.iter().map(|c| c.addr).collect());
        Ok(())
    }

    /// What the logs say, for a failure message.
    fn logs(&self) -> String {
        procs::logs(&self.coords, &self.workers)
    }

    /// Waits until every run succeeded (or one is dead, or the deadline passes), calling
    /// `fault` every `every` meanwhile; returns the number of faults injected.
    async fn drive<F>(
        &mut self,
        runs: &[i64],
        deadline: Duration,
        every: Duration,
        mut fault: F,
    ) -> Result<usize>
    where
        F: AsyncFnMut(&mut Stack, usize) -> Result<()>,
    {
        let start = Instant::now();
        let mut next = start + every;
        let mut faults = 0;
        loop {
            // The database may be down for a moment (the Postgres restart test): keep polling.
            let done = match check::succeeded(&self.pool, runs).await {
                Ok(d) => d,
                Err(_) if start.elapsed() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if done == runs.len() {
                return Ok(faults);
            }
            let dead = check::dead_runs(&self.pool, runs).await?;
            if !dead.is_empty() {
                bail!("runs ended badly: {dead:?}\n{}", self.logs());
            }
            if start.elapsed() > deadline {
                bail!(
                    "{done} of {} runs succeeded after {deadline:?}\n{}",
                    runs.len(),
                    self.logs()
                );
            }
            if Instant::now() >= next && done + 1 < runs.len() {
                fault(self, faults).await?;
                faults += 1;
                next = Instant::now() + every;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn artifacts(&self) -> PathBuf {
        self.spec.artifacts.clone()
    }

    async fn stop(mut self) {
        for w in &mut self.workers {
            w.kill().await;
        }
        for c in &mut self.coords {
            c.kill().await;
        }
    }
}

fn report(name: &str, faults: usize, f: &Figures, secs: f64) {
    eprintln!(
        "[{name}] faults={faults} runs={} epochs={} attempts={} resumed={} live_checkpoints={} blobs={} orphan_blobs={} stale_blobs={} staging_files={} lost=0 time={secs:.1}s",
        f.runs,
        f.epochs,
        f.attempts,
        f.resumed,
        f.live_checkpoints,
        f.blobs,
        f.orphan_blobs.len(),
        f.stale_blobs.len(),
        f.staging_files.len()
    );
}

async fn fresh() -> (String, PgPool) {
    let db = poet_sql::testing::fresh_db().await;
    (db.url, db.pool)
}

/// Bounds a test in time so a hang fails instead of blocking CI.
async fn bounded<F: std::future::Future<Output = Result<()>>>(secs: u64, f: F) {
    match tokio::time::timeout(Duration::from_secs(secs), f).await {
        Ok(r) => r.unwrap(),
        Err(_) => panic!("test did not finish in {secs} s"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_chaos_sigkill_and_restart() {
    let sc = scale();
    bounded(sc.deadline_s + 30, async {
        poet_reliability::procs::worker_bin()?;
        let (url, pool) = fresh().await;
        let mut st = Stack::new(url, pool.clone(), 1, 3.0).await?;
        let runs = st.submit(sc.runs, sc.epochs, sc.max_batches).await?;
        let purl = st.proxy.url();
        for _ in 0..3 {
            st.start_worker(&purl).await?;
        }
        let t = Instant::now();
        let mut rng = StdRng::seed_from_u64(11);
        let faults = st
            .drive(
                &runs,
                Duration::from_secs(sc.deadline_s),
                Duration::from_secs_f64(sc.fault_every_s),
                async |st, _| {
                    let i = rng.gen_range(0..st.workers.len());
                    st.workers[i].kill().await;
                    let cache = st.dir.path().join(format!("cache-{}", st.started_workers));
                    st.started_workers += 1;
                    st.workers[i] = WorkerProc::start(
                        &purl,
                        &cache,
                        &st.spec.log_dir,
                        &format!("worker-{}", st.started_workers),
                    )
                    .await?;
                    Ok(())
                },
            )
            .await?;
        let f = check::check_runs(&pool, &st.artifacts(), &runs, sc.epochs).await?;
        report("worker-chaos", faults, &f, t.elapsed().as_secs_f64());
        assert!(
            faults >= 3,
            "too few faults injected ({faults}): the sweep finished too fast to test anything"
        );
        assert!(
            f.resumed > 0,
            "no run resumed from a checkpoint: the kills missed every run"
        );
        assert!(
            f.orphan_blobs.is_empty() && f.stale_blobs.is_empty() && f.staging_files.is_empty(),
            "{f:?}"
        );
        st.stop().await;
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_chaos_with_two_replicas() {
    let sc = scale();
    bounded(sc.deadline_s + 30, async {
        poet_reliability::procs::worker_bin()?;
        let (url, pool) = fresh().await;
        let mut st = Stack::new(url, pool.clone(), 2, 3.0).await?;
        let runs = st.submit(sc.runs, sc.epochs, sc.max_batches).await?;
        let purl = st.proxy.url();
        for _ in 0..3 {
            st.start_worker(&purl).await?;
        }
        let t = Instant::now();
        let mut rng = StdRng::seed_from_u64(12);
        let mut mid_upload = 0;
        let faults = st
            .drive(
                &runs,
                Duration::from_secs(sc.deadline_s),
                Duration::from_secs_f64(sc.fault_every_s),
                async |st, n| {
                    // Every third fault takes both replicas down at once (a full outage); one
                    // in three waits for a checkpoint upload to be half through the proxy and
                    // kills the replica receiving it; the others kill a random replica while
                    // the other keeps serving.
                    match n % 3 {
                        2 => {
                            st.restart_coordinator(0, n).await?;
                            st.restart_coordinator(1, n).await?;
                        }
                        1 => {
                            let trap = st.proxy.trap_large_write(4096);
                            match tokio::time::timeout(Duration::from_secs(5), trap).await {
                                Ok(Ok(addr)) => {
                                    let i =
                                        st.coords.iter().position(|c| c.addr == addr).unwrap_or(0);
                                    st.restart_coordinator(i, n).await?;
                                    mid_upload += 1;
                                }
                                _ => {
                                    st.proxy.disarm();
                                    st.restart_coordinator(rng.gen_range(0..2), n).await?;
                                }
                            }
                        }
                        _ => st.restart_coordinator(rng.gen_range(0..2), n).await?,
                    }
                    Ok(())
                },
            )
            .await?;
        let f = check::check_runs(&pool, &st.artifacts(), &runs, sc.epochs).await?;
        report("coordinator-chaos", faults, &f, t.elapsed().as_secs_f64());
        eprintln!("[coordinator-chaos] kills mid checkpoint upload: {mid_upload}");
        assert!(faults >= 3, "too few faults injected ({faults})");
        assert!(mid_upload >= 1, "no kill landed mid checkpoint upload");
        // A coordinator SIGKILLed between storing a blob and committing its row (or between
        // the commit and the retention delete, or mid-upload) leaves a blob or staging file
        // nobody references: reported above, not lost work (live rows without blobs are a
        // hard failure inside check_runs). One pass of the orphan sweep, the one every
        // replica runs periodically, removes them all: the sweep is over and no upload is in
        // flight, so no grace period is needed.
        let store = poet_coordinator::artifacts::Artifacts::open(&st.artifacts().display().to_string())?;
        let swept = poet_coordinator::retention::sweep_orphans(&pool, &store, Duration::ZERO).await?;
        let after = check::check_runs(&pool, &st.artifacts(), &runs, sc.epochs).await?;
        eprintln!(
            "[coordinator-chaos] orphan sweep: deleted {} blobs and {} staging files; left: orphan={} stale={} staging={}",
            swept.deleted,
            swept.staging_deleted,
            after.orphan_blobs.len(),
            after.stale_blobs.len(),
            after.staging_files.len()
        );
        assert!(swept.ran);
        assert_eq!(
            swept.deleted + swept.staging_deleted,
            f.orphan_blobs.len() + f.stale_blobs.len() + f.staging_files.len(),
            "the sweep deleted exactly the unreferenced files: {f:?}"
        );
        assert!(
            after.orphan_blobs.is_empty() && after.stale_blobs.is_empty() && after.staging_files.is_empty(),
            "left after one sweep pass: {after:?}"
        );
        st.stop().await;
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_mid_sweep() {
    let sc = scale();
    bounded(sc.deadline_s + 60, async {
        poet_reliability::procs::worker_bin()?;
        let pgdir = tempfile::tempdir()?;
        let cluster = poet_sql::cluster::PrivateCluster::at(pgdir.path().join("pg"));
        let c2 = cluster.clone();
        let info = tokio::task::spawn_blocking(move || c2.ensure_running()).await??;
        // The coordinator reaches Postgres through a proxy, so the restarted cluster (on a new
        // port) keeps the coordinator's URL: to the coordinator it is the same server.
        let pg_proxy = Proxy::start(vec![format!("127.0.0.1:{}", info.port).parse()?]).await?;
        let url = info.url_through(&pg_proxy.addr.to_string(), "poet");
        let pool = poet_sql::connect(&url).await?;
        let mut st = Stack::new(url, pool.clone(), 1, 4.0).await?;
        let runs = st
            .submit(sc.runs.min(8), sc.epochs * 3, sc.max_batches)
            .await?;
        let purl = st.proxy.url();
        for _ in 0..3 {
            st.start_worker(&purl).await?;
        }
        let t = Instant::now();
        let faults = st
            .drive(
                &runs,
                Duration::from_secs(sc.deadline_s),
                Duration::from_secs(2),
                async |_st, _| {
                    let c = cluster.clone();
                    let info = tokio::task::spawn_blocking(move || -> Result<_> {
                        c.stop()?;
                        std::thread::sleep(Duration::from_secs(1));
                        Ok(c.ensure_running()?)
                    })
                    .await??;
                    pg_proxy.set_backends(vec![format!("127.0.0.1:{}", info.port).parse()?]);
                    pg_proxy.reset_connections();
                    Ok(())
                },
            )
            .await;
        // Our own pool's connections died with the server; a fresh pool for the checks.
        let info = cluster.info().context("cluster info")?;
        let pool = poet_sql::connect(&info.url()).await?;
        let faults = faults?;
        let f = check::check_runs(&pool, &st.artifacts(), &runs, sc.epochs * 3).await?;
        report("postgres-restart", faults, &f, t.elapsed().as_secs_f64());
        assert!(faults >= 1, "postgres was never restarted");
        // Regression: a retention delete whose "still live?" lookup hit the restart used to be
        // skipped, leaking the blob (coordinator/src/service/worker.rs, delete_unreferenced).
        assert!(
            f.stale_blobs.is_empty() && f.orphan_blobs.is_empty() && f.staging_files.is_empty(),
            "{f:?}"
        );
        st.stop().await;
        let _ = tokio::task::spawn_blocking(move || cluster.stop()).await;
        Ok(())
    })
    .await;
}

/// The worker that holds run `run_id`'s current lease, once it has stored a checkpoint.
async fn holder(pool: &PgPool, run_id: i64) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar(
        "select lease_owner from runs where id = $1 and state = 'running' and exists (select 1 from checkpoints c where c.run_id = runs.id and c.live)",
    )
    .bind(run_id)
    .fetch_optional(pool)
    .await?
    .flatten())
}

/// When the run's current lease expires (moved on by every heartbeat); `None` if not running.
async fn lease_expiry(
    pool: &PgPool,
    run_id: i64,
) -> Result<Option<sqlx::types::chrono::DateTime<sqlx::types::chrono::Utc>>> {
    Ok(
        sqlx::query_scalar("select lease_expires_at from runs where id = $1 and state = 'running'")
            .bind(run_id)
            .fetch_optional(pool)
            .await?
            .flatten(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_cut_shorter_than_the_lease_keeps_the_run() {
    bounded(120, async {
        poet_reliability::procs::worker_bin()?;
        let (url, pool) = fresh().await;
        let ttl = 6.0;
        let mut st = Stack::new(url, pool.clone(), 1, ttl).await?;
        // Long enough (about 15 s of training on a quiet machine; the fixture's epoch is
        // short) that both cuts land while the run trains. With 8 epochs a run could finish
        // during the first cut and leave the second waiting for a heartbeat that a finished
        // run never sends (CI, stop 23).
        let epochs = 60;
        let runs = st.submit(1, epochs, 40).await?;
        let purl = st.proxy.url();
        st.start_worker(&purl).await?;
        wait_for("the run to start", Duration::from_secs(60), || {
            holder(&pool, runs[0])
        })
        .await?;
        let t = Instant::now();
        // Two cuts, each well under the TTL: transport errors are retried, the lease holds.
        // Between cuts, wait until a heartbeat got through (the lease's expiry moved on)
        // rather than a fixed second: on a loaded machine the worker's retry can take longer,
        // and two cuts without a heartbeat between them are one cut of twice the length.
        // A cut counts only if the run was still training when it ended; should the run
        // finish early anyway, the cuts stop and the test asks for at least one.
        let mut faults = 0;
        for _ in 0..2 {
            let Some(before) = lease_expiry(&pool, runs[0]).await? else {
                break;
            };
            st.proxy.cut();
            tokio::time::sleep(Duration::from_secs_f64(ttl / 3.0)).await;
            st.proxy.restore();
            let beat = wait_for(
                "a heartbeat after the cut, or the run's end",
                Duration::from_secs(30),
                || async {
                    let state: String = sqlx::query_scalar("select state from runs where id = $1")
                        .bind(runs[0])
                        .fetch_one(&pool)
                        .await?;
                    if state != "running" {
                        return Ok(Some(false));
                    }
                    Ok(lease_expiry(&pool, runs[0])
                        .await?
                        .filter(|e| *e > before)
                        .map(|_| true))
                },
            )
            .await?;
            if !beat {
                break;
            }
            faults += 1;
        }
        assert!(
            faults >= 1,
            "the run ended before a cut could be tested:\n{}",
            st.logs()
        );
        st.drive(
            &runs,
            Duration::from_secs(90),
            Duration::from_secs(3600),
            async |_, _| Ok(()),
        )
        .await?;
        let f = check::check_runs(&pool, &st.artifacts(), &runs, epochs).await?;
        report("net-cut-short", faults, &f, t.elapsed().as_secs_f64());
        assert_eq!(
            f.attempts,
            1,
            "a short cut must not move the run:\n{}",
            st.logs()
        );
        st.stop().await;
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_cut_longer_than_the_lease_moves_the_run_and_fences_the_old_worker() {
    bounded(150, async {
        poet_reliability::procs::worker_bin()?;
        let (url, pool) = fresh().await;
        let ttl = 3.0;
        let mut st = Stack::new(url, pool.clone(), 1, ttl).await?;
        let runs = st.submit(1, 10, 40).await?;
        // Worker A behind the cuttable proxy; worker B on its own link, started once A holds the run.
        let purl = st.proxy.url();
        st.start_worker(&purl).await?;
        let a = wait_for("worker A to hold the run", Duration::from_secs(60), || holder(&pool, runs[0])).await?;
        let direct = Proxy::start(vec![st.coords[0].addr]).await?;
        st.start_worker(&direct.url()).await?;
        let t = Instant::now();
        st.proxy.cut();
        // Keep A cut until the run is re-leased to B, plus a little: then A's writes are late.
        let run_id = runs[0];
        let b = wait_for("the run to move to worker B", Duration::from_secs(60), || {
            let pool = pool.clone();
            async move {
                Ok(sqlx::query_scalar::<_, i64>("select lease_owner from runs where id = $1 and state = 'running' and lease_owner <> $2")
                    .bind(run_id)
                    .bind(a)
                    .fetch_optional(&pool)
                    .await?)
            }
        })
        .await?;
        st.proxy.restore();
        // A late write under A's old lease, sent the moment its link is back (as a worker whose
        // clock lags would): refused by fencing, and nothing of it stored.
        let old: (uuid::Uuid, i32) = sqlx::query_as("select lease_id, attempt from run_attempts where run_id = $1 and worker_id = $2 order by attempt limit 1")
            .bind(run_id)
            .bind(a)
            .fetch_one(&pool)
            .await?;
        let mut wc = poet_proto::v1::worker_service_client::WorkerServiceClient::connect(st.proxy.url()).await?;
        let late = v1::ReportEpochRequest {
            lease: Some(v1::Lease { run_id, lease_id: old.0.to_string(), attempt: old.1 }),
            epoch: Some(v1::Epoch { epoch: 9, train_loss: 0.5, val_loss: 0.5, duration_s: 1.0, chars_per_sec: 1.0, ..Default::default() }),
        };
        let refused = wc.report_epoch(late).await.expect_err("a late write under the old lease must be refused");
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused:?}");
        st.drive(&runs, Duration::from_secs(100), Duration::from_secs(3600), async |_, _| Ok(())).await?;
        let f = check::check_runs(&pool, &st.artifacts(), &runs, 10).await?;
        report("net-cut-long", 1, &f, t.elapsed().as_secs_f64());
        assert!(f.attempts >= 2, "the run never moved");
        // Regression: a cut mid upload used to cancel the coordinator's handler between
        // storing the blob and committing its row, leaving an orphan blob.
        assert!(f.orphan_blobs.is_empty() && f.stale_blobs.is_empty() && f.staging_files.is_empty(), "{f:?}");
        // Every epoch after B's resume point is B's: A's late writes never landed.
        let rows: Vec<(i32, i64)> = sqlx::query_as(
            "select e.epoch, a.worker_id from epochs e join run_attempts a on a.run_id = e.run_id and a.attempt = e.attempt
             where e.run_id = $1 order by e.epoch",
        )
        .bind(runs[0])
        .fetch_all(&pool)
        .await?;
        let resumed: i32 = sqlx::query_scalar("select resumed_from_epoch from run_attempts where run_id = $1 and worker_id = $2 order by attempt limit 1")
            .bind(runs[0])
            .bind(b)
            .fetch_one(&pool)
            .await?;
        for (e, w) in &rows {
            if *e > resumed {
                assert_eq!(*w, b, "epoch {e} after B's resume ({resumed}) was written by worker {w}");
            }
        }
        // A stopped the run: fenced by the coordinator (a refused heartbeat, "lease lost", or a
        // refused write), or by its own lease clock. B can finish the run before A's trainer
        // reaches its next batch and logs "run abandoned", so the fence itself counts.
        let a_log = std::fs::read_to_string(&st.workers[0].stderr)?;
        assert!(
            a_log.contains("run abandoned")
                || a_log.contains("fenced")
                || a_log.contains("lease lost")
                || a_log.contains("epoch report abandoned"),
            "worker A never gave the run up:\n{}",
            tail(&st.workers[0].stderr, 30)
        );
        st.stop().await;
        Ok(())
    })
    .await;
}

//! The end-of-test invariants, checked against the database and the artifacts folder, and
//! the figures the tests print (and RELIABILITY.md reports).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Result, bail, ensure};
use sqlx::{PgPool, Row};

/// What a finished sweep looked like.
#[derive(Debug, Default, Clone)]
pub struct Figures {
    /// Runs checked.
    pub runs: usize,
    /// Epoch rows (all runs).
    pub epochs: usize,
    /// Leases (attempts) over all runs.
    pub attempts: usize,
    /// Attempts that resumed from a checkpoint.
    pub resumed: usize,
    /// Live checkpoint rows.
    pub live_checkpoints: usize,
    /// Blob files found under `runs/`.
    pub blobs: usize,
    /// Complete blobs with no checkpoint row at all (a crash between store and commit).
    pub orphan_blobs: Vec<String>,
    /// Blobs whose row is no longer live (retention delete lost to a crash).
    pub stale_blobs: Vec<String>,
    /// Multipart staging files left by an upload cut short (`<key>#<n>`).
    pub staging_files: Vec<String>,
}

/// Every file under `dir`, as `/`-joined paths relative to `root`.
fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        if e.file_type()?.is_dir() {
            walk(root, &p, out)?;
        } else {
            let rel = p.strip_prefix(root).expect("under root");
            out.push(
                rel.components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/"),
            );
        }
    }
    Ok(())
}

/// Checks every invariant of the runs in `run_ids` (each with `epochs` epochs) and of the
/// artifacts under `artifacts`. Hard failures: a run not succeeded exactly once, a gap or
/// duplicate epoch, a resume from a checkpoint that never existed, an epoch written by an
/// attempt that resumed past it, a resumed loss that restarted, a live row without its blob.
/// Orphan, stale and staging blobs are returned for the caller to judge (a SIGKILLed
/// coordinator can leave them; a killed worker must not).
pub async fn check_runs(
    pool: &PgPool,
    artifacts: &Path,
    run_ids: &[i64],
    epochs: u32,
) -> Result<Figures> {
    let mut f = Figures {
        runs: run_ids.len(),
        ..Default::default()
    };
    let running: i64 = sqlx::query_scalar("select count(*) from runs where state = 'running'")
        .fetch_one(pool)
        .await?;
    ensure!(running == 0, "{running} runs left running");
    for &id in run_ids {
        let r =
            sqlx::query("select state, epochs_done, epochs_total, error from runs where id = $1")
                .bind(id)
                .fetch_one(pool)
                .await?;
        let state: String = r.get("state");
        ensure!(
            state == "succeeded",
            "run {id} is {state} ({:?})",
            r.get::<Option<String>, _>("error")
        );
        ensure!(
            r.get::<i32, _>("epochs_total") == epochs as i32,
            "run {id}: epochs_total"
        );
        ensure!(
            r.get::<i32, _>("epochs_done") == epochs as i32,
            "run {id}: epochs_done"
        );
        let attempts = sqlx::query("select attempt, resumed_from_epoch, outcome from run_attempts where run_id = $1 order by attempt")
            .bind(id)
            .fetch_all(pool)
            .await?;
        let completed = attempts
            .iter()
            .filter(|a| a.get::<Option<String>, _>("outcome").as_deref() == Some("completed"))
            .count();
        ensure!(completed == 1, "run {id} completed {completed} times");
        let last = attempts.last().expect("an attempt");
        ensure!(
            last.get::<Option<String>, _>("outcome").as_deref() == Some("completed"),
            "run {id}: the last attempt did not complete"
        );
        f.attempts += attempts.len();
        let rows = sqlx::query(
            "select epoch, attempt, train_loss from epochs where run_id = $1 order by epoch",
        )
        .bind(id)
        .fetch_all(pool)
        .await?;
        let got: Vec<i32> = rows.iter().map(|r| r.get("epoch")).collect();
        let want: Vec<i32> = (1..=epochs as i32).collect();
        ensure!(got == want, "run {id}: epochs {got:?}, want {want:?}");
        f.epochs += rows.len();
        let loss: BTreeMap<i32, f64> = rows
            .iter()
            .map(|r| (r.get("epoch"), r.get("train_loss")))
            .collect();
        let by_epoch_attempt: BTreeMap<i32, i32> = rows
            .iter()
            .map(|r| (r.get("epoch"), r.get("attempt")))
            .collect();
        let resumed_from: BTreeMap<i32, i32> = attempts
            .iter()
            .map(|a| (a.get("attempt"), a.get("resumed_from_epoch")))
            .collect();
        // An epoch is written by an attempt that started before it.
        for (&e, a) in &by_epoch_attempt {
            let from = resumed_from.get(a).copied();
            ensure!(
                matches!(from, Some(r) if r < e),
                "run {id}: epoch {e} by attempt {a}, which resumed from {from:?}"
            );
        }
        for a in &attempts {
            let r: i32 = a.get("resumed_from_epoch");
            if r == 0 {
                continue;
            }
            f.resumed += 1;
            let ck: i64 = sqlx::query_scalar(
                "select count(*) from checkpoints where run_id = $1 and epoch = $2",
            )
            .bind(id)
            .bind(r)
            .fetch_one(pool)
            .await?;
            ensure!(
                ck == 1,
                "run {id}: attempt {} resumed from epoch {r}, which has no checkpoint",
                a.get::<i32, _>("attempt")
            );
            // The first epoch after the resume continues the curve: training is deterministic
            // per seed, so a restart from scratch would repeat epoch 1's loss; a continuation
            // is below it, and (past epoch 2) nearer the resume epoch's loss than epoch 1's.
            let att: i32 = a.get("attempt");
            if by_epoch_attempt.get(&(r + 1)) == Some(&att) {
                let (l1, lr, next) = (loss[&1], loss[&r], loss[&(r + 1)]);
                ensure!(
                    next < l1 - 1e-6,
                    "run {id}: epoch {} after resume has loss {next}, epoch 1 had {l1}: restarted?",
                    r + 1
                );
                if r >= 2 {
                    ensure!(
                        (next - lr).abs() < (next - l1).abs(),
                        "run {id}: epoch {} after resume has loss {next}, nearer epoch 1's {l1} than epoch {r}'s {lr}",
                        r + 1
                    );
                }
            }
        }
    }
    // Blobs against rows.
    let mut files = Vec::new();
    walk(artifacts, &artifacts.join("runs"), &mut files)?;
    let rows = sqlx::query("select key, live from checkpoints")
        .fetch_all(pool)
        .await?;
    let live: BTreeSet<String> = rows
        .iter()
        .filter(|r| r.get::<bool, _>("live"))
        .map(|r| r.get("key"))
        .collect();
    let all: BTreeSet<String> = rows.iter().map(|r| r.get("key")).collect();
    f.live_checkpoints = live.len();
    let mut present = BTreeSet::new();
    for file in files {
        if file.contains('#') {
            f.staging_files.push(file);
            continue;
        }
        f.blobs += 1;
        if !all.contains(&file) {
            f.orphan_blobs.push(file.clone());
        } else if !live.contains(&file) {
            f.stale_blobs.push(file.clone());
        }
        present.insert(file);
    }
    let missing: Vec<&String> = live.difference(&present).collect();
    if !missing.is_empty() {
        bail!("live checkpoint rows without their blob: {missing:?}");
    }
    Ok(f)
}

/// The run ids of a sweep.
pub async fn sweep_runs(pool: &PgPool, sweep_id: i64) -> Result<Vec<i64>> {
    Ok(
        sqlx::query_scalar("select run_id from sweep_runs where sweep_id = $1 order by run_id")
            .bind(sweep_id)
            .fetch_all(pool)
            .await?,
    )
}

/// How many of `run_ids` have succeeded.
pub async fn succeeded(pool: &PgPool, run_ids: &[i64]) -> Result<usize> {
    let n: i64 =
        sqlx::query_scalar("select count(*) from runs where id = any($1) and state = 'succeeded'")
            .bind(run_ids)
            .fetch_one(pool)
            .await?;
    Ok(n as usize)
}

/// Runs that ended in a state other than succeeded (failed, cancelled): the sweep cannot finish.
pub async fn dead_runs(
    pool: &PgPool,
    run_ids: &[i64],
) -> Result<Vec<(i64, String, Option<String>)>> {
    let rows = sqlx::query(
        "select id, state, error from runs where id = any($1) and state in ('failed', 'cancelled')",
    )
    .bind(run_ids)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get("id"), r.get("state"), r.get("error")))
        .collect())
}

/// Attempts that did not resume from the run's latest checkpoint: for every attempt, the
/// highest checkpoint epoch stored by the run's earlier attempts (0 if none) must equal its
/// `resumed_from_epoch`. Stronger than [`check_runs`], which only asks that a resume point
/// exists: an attempt that restarted from scratch (or from an older checkpoint) rewrites the
/// discarded epochs and would still pass there. Returns one line per violation.
pub async fn resumes_not_from_latest(pool: &PgPool, run_ids: &[i64]) -> Result<Vec<String>> {
    let rows = sqlx::query(
        "select a.run_id, a.attempt, a.resumed_from_epoch,
                coalesce((select max(c.epoch) from checkpoints c
                          where c.run_id = a.run_id and c.attempt < a.attempt), 0) as latest
         from run_attempts a where a.run_id = any($1)
         order by a.run_id, a.attempt",
    )
    .bind(run_ids)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .filter(|r| r.get::<i32, _>("resumed_from_epoch") != r.get::<i32, _>("latest"))
        .map(|r| {
            format!(
                "run {} attempt {} resumed from epoch {}, the latest checkpoint before it was epoch {}",
                r.get::<i64, _>("run_id"),
                r.get::<i32, _>("attempt"),
                r.get::<i32, _>("resumed_from_epoch"),
                r.get::<i32, _>("latest")
            )
        })
        .collect())
}

/// Attempts leased to a worker that lacks a label the run needs (`[resources] labels`), one
/// line each: the claim must never hand a run to a worker that cannot hold it.
pub async fn attempts_on_unfit_workers(pool: &PgPool, run_ids: &[i64]) -> Result<Vec<String>> {
    let rows = sqlx::query(
        "select a.run_id, a.attempt, a.worker_id, r.need_labels::text as need, w.labels::text as has
         from run_attempts a join runs r on r.id = a.run_id join workers w on w.id = a.worker_id
         where a.run_id = any($1) and not (r.need_labels <@ w.labels)",
    )
    .bind(run_ids)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| {
            format!(
                "run {} attempt {} went to worker {} with labels {} (needs {})",
                r.get::<i64, _>("run_id"),
                r.get::<i32, _>("attempt"),
                r.get::<i64, _>("worker_id"),
                r.get::<String, _>("has"),
                r.get::<String, _>("need")
            )
        })
        .collect())
}

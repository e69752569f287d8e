//! Run control after submission: retry, extend, fork, pause and resume a sweep, change its
//! priority. Each action is one transaction and is recorded in the sweep's decisions with who
//! asked (`user`) and what changed, beside the scheduler's own decisions.
//!
//! - **retry** a failed, cancelled or stopped run: it is queued again with fresh attempts and
//!   resumes from its last checkpoint. A retried *stopped* run is exempt from its sweep's
//!   stopping rule from then on (a user overrode it).
//! - **extend** a succeeded or stopped run by N epochs: `epochs_total` grows, the run is queued
//!   and resumes from its last checkpoint (bit-exactly: the epoch schedule depends only on the
//!   seed and the epoch number). Its config and `config_hash` stay those it was submitted with:
//!   the hash names the experiment that was asked for, so a later sweep submitting the same
//!   config attaches to this run rather than training it again; the lease carries the new
//!   `epochs`. An extended run is exempt from its sweep's stopping rule.
//! - **fork** a run from any kept checkpoint with changed settings: a new run of the same sweep
//!   and dataset, linked to its parent (`parent_run_id`, `parent_checkpoint_id`), that starts
//!   from the parent's weights and optimizer state at that epoch (a warm start) and inherits
//!   the parent's epoch rows up to it, so its curve reads 1..E like any run's. The model's
//!   shape and seed cannot change (the weights must fit). Its `config_hash` is that of its
//!   config *and* the checkpoint it starts from, so forking twice the same way gives the same
//!   run. Forks are exempt from the stopping rule.
//! - **pause / resume** a sweep: its queued runs are not leased while it is paused; running
//!   runs go on.
//! - **priority**: the sweep's and its waiting runs'.

use chrono::{DateTime, Utc};
use poet_core::config::TrainConfig;
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};

use crate::error::{Result, ServiceError};
use crate::history::{RunRow, SweepRow};
use crate::scheduler::{record as record_action, user_reason};

/// Keys a fork may not change: the weights and the epoch schedule must fit the checkpoint.
const SHAPE_KEYS: &[&str] = &[
    "layers",
    "units",
    "embedding",
    "seq_len",
    "formulation",
    "seed",
    "cell",
];

/// The first of [`SHAPE_KEYS`] whose value differs between two configs.
fn shape_change(a: &TrainConfig, b: &TrainConfig) -> Option<&'static str> {
    let same = [
        a.layers == b.layers,
        a.units == b.units,
        a.embedding == b.embedding,
        a.seq_len == b.seq_len,
        a.formulation == b.formulation,
        a.seed == b.seed,
        a.cell == b.cell,
    ];
    SHAPE_KEYS
        .iter()
        .zip(same)
        .find(|(_, same)| !same)
        .map(|(k, _)| *k)
}

async fn run_row(pool: &PgPool, id: i64) -> Result<RunRow> {
    sqlx::query_as(&format!("{} where r.id = $1", RunRow::SELECT))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("no run {id}")))
}

/// The state a run is in, for an error saying it cannot take an action.
async fn state_of(tx: &mut sqlx::PgConnection, id: i64) -> Result<String> {
    sqlx::query_scalar("select state from runs where id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("no run {id}")))
}

/// Requeues a failed, cancelled or stopped run.
pub async fn retry_run(pool: &PgPool, run_id: i64, now: DateTime<Utc>) -> Result<RunRow> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query(
        "update runs set state = 'queued', failures = 0, error = null, finished_at = null,
             cancel_requested = false, halt_at = null, halt_state = null,
             decided_epoch = case when state = 'stopped' then epochs_total else decided_epoch end
         where id = $1 and state in ('failed', 'cancelled', 'stopped')
         returning sweep_id, epochs_done, (select state from runs where id = $1) as was",
    )
    .bind(run_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        let state = state_of(&mut tx, run_id).await?;
        return Err(ServiceError::FailedPrecondition(format!(
            "run {run_id} is {state}; only failed, cancelled or stopped runs can be retried"
        )));
    };
    let sweep_id: i64 = row.get("sweep_id");
    let was: String = row.get("was");
    reopen_sweep(&mut tx, sweep_id).await?;
    let reason = user_reason(
        format!("retried by a user (was {was}); resumes from its last checkpoint"),
        serde_json::json!({"rule": "user", "was": was}),
    );
    record_action(
        &mut tx,
        sweep_id,
        Some(run_id),
        row.get("epochs_done"),
        "retry",
        &reason,
        now,
    )
    .await?;
    tx.commit().await?;
    run_row(pool, run_id).await
}

/// Trains a finished run `epochs` more epochs.
pub async fn extend_run(
    pool: &PgPool,
    run_id: i64,
    epochs: i32,
    now: DateTime<Utc>,
) -> Result<RunRow> {
    if !(1..=10_000).contains(&epochs) {
        return Err(ServiceError::Invalid(format!(
            "epochs: {epochs} is out of range 1..=10000"
        )));
    }
    let mut tx = pool.begin().await?;
    let row = sqlx::query(
        "update runs set state = 'queued', epochs_total = epochs_total + $2, finished_at = null,
             halt_at = null, halt_state = null, decided_epoch = epochs_total + $2
         where id = $1 and state in ('succeeded', 'stopped')
         returning sweep_id, epochs_done, epochs_total",
    )
    .bind(run_id)
    .bind(epochs)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        let state = state_of(&mut tx, run_id).await?;
        return Err(ServiceError::FailedPrecondition(format!(
            "run {run_id} is {state}; only succeeded or stopped runs can be extended"
        )));
    };
    let sweep_id: i64 = row.get("sweep_id");
    let total: i32 = row.get("epochs_total");
    reopen_sweep(&mut tx, sweep_id).await?;
    let reason = user_reason(
        format!("extended by a user by {epochs} epochs to {total}"),
        serde_json::json!({"rule": "user", "epochs": epochs, "epochs_total": total}),
    );
    record_action(
        &mut tx,
        sweep_id,
        Some(run_id),
        row.get("epochs_done"),
        "extend",
        &reason,
        now,
    )
    .await?;
    tx.commit().await?;
    run_row(pool, run_id).await
}

/// Forks a run from its checkpoint `checkpoint_id` (0 = its best) with `overrides` (a JSON
/// object of config keys).
pub async fn fork_run(
    pool: &PgPool,
    run_id: i64,
    checkpoint_id: i64,
    overrides: &str,
    now: DateTime<Utc>,
) -> Result<RunRow> {
    crate::limits::check_bytes("overrides_json", overrides, crate::limits::MAX_JSON_BYTES)?;
    let parent = run_row(pool, run_id).await?;
    let overrides: serde_json::Map<String, serde_json::Value> = if overrides.trim().is_empty() {
        Default::default()
    } else {
        serde_json::from_str(overrides).map_err(|e| {
            ServiceError::Invalid(format!(
                "overrides_json: not a JSON object of config keys: {e}"
            ))
        })?
    };
    let stored = |e: String| ServiceError::Invalid(format!("run {run_id}: stored config: {e}"));
    let mut config: serde_json::Value =
        serde_json::from_str(&parent.config_text).map_err(|e| stored(e.to_string()))?;
    let parent_config =
        TrainConfig::from_json(&parent.config_text).map_err(|e| stored(e.to_string()))?;
    for (k, v) in &overrides {
        config[k] = v.clone();
    }
    let config = TrainConfig::from_json(&config.to_string())
        .map_err(|e| ServiceError::Invalid(format!("overrides_json: {e}")))?;
    config
        .validate()
        .map_err(|e| ServiceError::Invalid(format!("overrides_json.{}: {}", e.field, e.message)))?;
    // Compared as parsed configs, not as JSON: a key the stored config leaves out at its
    // default (`cell` before the GRU existed) may be overridden with that same default.
    if let Some(k) = shape_change(&parent_config, &config) {
        return Err(ServiceError::Invalid(format!(
            "overrides_json.{k}: a fork keeps the parent's model shape and seed ({})",
            SHAPE_KEYS.join(", ")
        )));
    }
    let ck = sqlx::query(
        "select id, epoch from checkpoints where run_id = $1 and live and ($2 = 0 or id = $2)
         order by case when $2 = 0 then val_loss end, epoch limit 1",
    )
    .bind(run_id)
    .bind(checkpoint_id)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| {
        ServiceError::NotFound(if checkpoint_id == 0 {
            format!("run {run_id} has no kept checkpoint to fork from")
        } else {
            format!("no kept checkpoint {checkpoint_id} of run {run_id}")
        })
    })?;
    let (ck_id, ck_epoch): (i64, i32) = (ck.get("id"), ck.get("epoch"));
    if config.epochs as i32 <= ck_epoch {
        return Err(ServiceError::Invalid(format!(
            "overrides_json.epochs: {} leaves nothing to train after checkpoint {ck_id} (epoch {ck_epoch})",
            config.epochs
        )));
    }
    let content_hash: String =
        sqlx::query_scalar("select content_hash from datasets where id = $1")
            .bind(parent.dataset_id)
            .fetch_one(pool)
            .await?;
    let hash = hex::encode(Sha256::digest(format!(
        "{}\nforked from checkpoint {ck_id}",
        config.run_hash(&content_hash)
    )));
    let mut tx = pool.begin().await?;
    let id: Option<i64> = sqlx::query_scalar(
        "insert into runs (sweep_id, dataset_id, config, config_hash, priority, max_attempts, epochs_total,
             parent_run_id, parent_checkpoint_id, decided_epoch, created_at)
         values ($1, $2, $3::jsonb, $4, $5, $6, $7, $8, $9, $7, $10)
         on conflict (config_hash) do nothing returning id",
    )
    .bind(parent.sweep_id)
    .bind(parent.dataset_id)
    .bind(config.canonical_json())
    .bind(&hash)
    .bind(parent.priority)
    .bind(parent.max_attempts)
    .bind(config.epochs as i32)
    .bind(run_id)
    .bind(ck_id)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(id) = id else {
        // The same fork exists: answer it.
        let existing: i64 = sqlx::query_scalar("select id from runs where config_hash = $1")
            .bind(&hash)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        return run_row(pool, existing).await;
    };
    sqlx::query(
        "insert into epochs (run_id, epoch, attempt, train_loss, val_loss, duration_s, chars_per_sec, metrics, reported_at)
         select $1, epoch, 0, train_loss, val_loss, duration_s, chars_per_sec, metrics, reported_at
         from epochs where run_id = $2 and epoch <= $3",
    )
    .bind(id)
    .bind(run_id)
    .bind(ck_epoch)
    .execute(&mut *tx)
    .await?;
    crate::queue::refresh_run_stats(&mut tx, id).await?;
    sqlx::query("insert into sweep_runs (sweep_id, run_id) values ($1, $2) on conflict do nothing")
        .bind(parent.sweep_id)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    reopen_sweep(&mut tx, parent.sweep_id).await?;
    let changed: Vec<String> = overrides
        .iter()
        .map(|(k, v)| format!("{k} = {v}"))
        .collect();
    let reason = user_reason(
        format!(
            "forked by a user from run {run_id} at checkpoint {ck_id} (epoch {ck_epoch}){}",
            if changed.is_empty() {
                String::new()
            } else {
                format!(" with {}", changed.join(", "))
            }
        ),
        serde_json::json!({"rule": "user", "parent_run_id": run_id, "parent_checkpoint_id": ck_id,
            "epoch": ck_epoch, "overrides": overrides}),
    );
    record_action(
        &mut tx,
        parent.sweep_id,
        Some(id),
        ck_epoch,
        "fork",
        &reason,
        now,
    )
    .await?;
    tx.commit().await?;
    run_row(pool, id).await
}

/// A finished sweep that gets work again is not finished any more.
async fn reopen_sweep(tx: &mut sqlx::PgConnection, sweep_id: i64) -> Result<()> {
    sqlx::query("update sweeps set finished_at = null where id = $1")
        .bind(sweep_id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

async fn sweep_row(pool: &PgPool, id: i64) -> Result<SweepRow> {
    crate::history::select_sweeps(Some(id), 1, 0)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("no sweep {id}")))
}

/// Pauses (`true`) or resumes a sweep.
pub async fn set_paused(
    pool: &PgPool,
    sweep_id: i64,
    paused: bool,
    now: DateTime<Utc>,
) -> Result<SweepRow> {
    let mut tx = pool.begin().await?;
    let changed = sqlx::query("update sweeps set paused = $2 where id = $1 and paused <> $2")
        .bind(sweep_id)
        .bind(paused)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if changed == 1 {
        let (kind, text) = if paused {
            ("pause_sweep", "paused by a user: no new leases")
        } else {
            ("resume_sweep", "resumed by a user")
        };
        let reason = user_reason(text.into(), serde_json::json!({"rule": "user"}));
        record_action(&mut tx, sweep_id, None, 0, kind, &reason, now).await?;
    }
    tx.commit().await?;
    sweep_row(pool, sweep_id).await
}

/// Sets a sweep's priority and that of its queued and paused runs.
pub async fn set_priority(
    pool: &PgPool,
    sweep_id: i64,
    priority: i32,
    now: DateTime<Utc>,
) -> Result<SweepRow> {
    if !(-1000..=1000).contains(&priority) {
        return Err(ServiceError::Invalid(format!(
            "priority: {priority} is out of range -1000..=1000"
        )));
    }
    let mut tx = pool.begin().await?;
    let old: Option<i32> =
        sqlx::query_scalar("update sweeps s set priority = $2 from (select priority from sweeps where id = $1 for update) o where s.id = $1 returning o.priority")
            .bind(sweep_id)
            .bind(priority)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(old) = old else {
        return Err(ServiceError::NotFound(format!("no sweep {sweep_id}")));
    };
    let runs = sqlx::query(
        "update runs set priority = $2 where sweep_id = $1 and state in ('queued', 'paused')",
    )
    .bind(sweep_id)
    .bind(priority)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let reason = user_reason(
        format!("priority changed by a user from {old} to {priority} ({runs} waiting runs)"),
        serde_json::json!({"rule": "user", "from": old, "to": priority, "runs": runs}),
    );
    record_action(&mut tx, sweep_id, None, 0, "priority", &reason, now).await?;
    tx.commit().await?;
    sweep_row(pool, sweep_id).await
}

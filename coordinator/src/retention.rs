//! The orphan sweep: deletes checkpoint blobs that no live checkpoint row names, and the
//! multipart staging files of uploads that never finished.
//!
//! A blob is written before its row is committed, and a row is marked not live before its blob
//! is deleted (retention, in `service::worker`); a coordinator killed between the two steps
//! leaves a blob behind, never a row without its blob. Each replica's reaper calls
//! [`sweep_orphans`] every [`ORPHAN_SWEEP_EVERY`]; a transaction-scoped advisory lock lets one
//! replica sweep at a time (the others skip that round), so replicas never list and delete
//! the same keys twice.
//!
//! Only blobs last written more than [`ORPHAN_GRACE`] ago are candidates. A blob's time is
//! when its upload completed, and its row is committed right after (within the 60 s upload
//! idle timeout even when the database is slow); the margin covers clock skew between the
//! coordinator and an S3 server, whose clock stamps the blob. Right before deleting, the sweep
//! asks again (the row, then the blob's time), so a re-upload of the same key that completed
//! meanwhile is kept.

use std::collections::HashSet;
use std::time::Duration;

use sqlx::PgPool;

use crate::artifacts::Artifacts;
use crate::error::{Result, ServiceError};

/// How long a blob may exist without a live row before the sweep deletes it: the 60 s upload
/// timeout plus four minutes for clock skew between the coordinator and the store.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(5 * 60);

/// How often each replica tries to sweep.
pub const ORPHAN_SWEEP_EVERY: Duration = Duration::from_secs(5 * 60);

/// The advisory lock that lets one replica sweep at a time (transaction-scoped: a replica
/// that dies mid-sweep releases it with its connection).
pub const SWEEP_LOCK: i64 = 0x706f_6574_6f72_7068; // "poetorph"

/// What one sweep pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// False when another replica held the sweep lock, so this one did nothing.
    pub ran: bool,
    /// Blobs under `runs/` older than the grace period that were looked at.
    pub examined: usize,
    /// Blobs deleted: no row names them, or their row is no longer live.
    pub deleted: usize,
    /// Multipart staging files (`<key>#<n>`, local folder only) deleted.
    pub staging_deleted: usize,
}

fn storage(e: crate::artifacts::StorageError) -> ServiceError {
    ServiceError::Storage(e.to_string())
}

/// One pass: deletes `runs/` blobs older than `grace` that no live checkpoint row names, and
/// staging files older than `grace`. Skips the pass (`ran: false`) when another replica is
/// sweeping. `grace` zero is for a quiet system only (tests, after every upload finished).
pub async fn sweep_orphans(
    pool: &PgPool,
    artifacts: &Artifacts,
    grace: Duration,
) -> Result<SweepReport> {
    let mut report = SweepReport::default();
    let mut tx = pool.begin().await?;
    let locked: bool = sqlx::query_scalar("select pg_try_advisory_xact_lock($1)")
        .bind(SWEEP_LOCK)
        .fetch_one(&mut *tx)
        .await?;
    if !locked {
        return Ok(report);
    }
    report.ran = true;
    let keys = artifacts
        .list_older_than("runs", grace)
        .await
        .map_err(storage)?;
    report.examined = keys.len();
    let live: HashSet<String> =
        sqlx::query_scalar("select key from checkpoints where live and key = any($1)")
            .bind(&keys)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
    let cutoff =
        chrono::Utc::now() - chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    for key in keys.iter().filter(|k| !live.contains(*k)) {
        // Ask again just before deleting: a retried upload of the same key may have finished
        // and committed its row since the listing.
        let now_live: bool =
            sqlx::query_scalar("select exists (select 1 from checkpoints where key = $1 and live)")
                .bind(key)
                .fetch_one(&mut *tx)
                .await?;
        let rewritten = match artifacts.object_meta(key).await.map_err(storage)? {
            Some(m) => m.last_modified > cutoff,
            None => true,
        };
        if now_live || rewritten {
            continue;
        }
        artifacts.delete(key).await.map_err(storage)?;
        tracing::info!(key = %key, "deleted orphan checkpoint blob");
        report.deleted += 1;
    }
    for rel in artifacts
        .list_staging_older_than("runs", grace)
        .await
        .map_err(storage)?
    {
        artifacts.delete_staging(&rel).await.map_err(storage)?;
        tracing::info!(file = %rel, "deleted an unfinished upload's staging file");
        report.staging_deleted += 1;
    }
    tx.commit().await?;
    Ok(report)
}

//! The orphan sweep: deletes checkpoint blobs that no live checkpoint row names.
//!
//! A blob is written before its row is committed, and a row is marked not live before its blob
//! is deleted; a coordinator killed between the two steps leaves a blob behind (never a row
//! without its blob). Every replica runs this sweep periodically; it only touches blobs older
//! than a grace period, so an upload still being committed is never taken for an orphan.

use std::collections::HashSet;
use std::time::Duration;

use sqlx::PgPool;

use crate::artifacts::Artifacts;
use crate::error::{Result, ServiceError};

/// How long a blob may exist without a live row before the sweep deletes it.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(15 * 60);

/// How often each replica sweeps.
pub const ORPHAN_SWEEP_EVERY: Duration = Duration::from_secs(5 * 60);

/// Deletes checkpoint blobs older than `grace` that no live row names; returns how many.
pub async fn sweep_orphans(pool: &PgPool, artifacts: &Artifacts, grace: Duration) -> Result<usize> {
    let keys = artifacts
        .list_older_than("runs", grace)
        .await
        .map_err(|e| ServiceError::Storage(e.to_string()))?;
    if keys.is_empty() {
        return Ok(0);
    }
    let live: HashSet<String> =
        sqlx::query_scalar("select key from checkpoints where live and key = any($1)")
            .bind(&keys)
            .fetch_all(pool)
            .await?
            .into_iter()
            .collect();
    let mut deleted = 0;
    for key in keys.iter().filter(|k| !live.contains(*k)) {
        artifacts
            .delete(key)
            .await
            .map_err(|e| ServiceError::Storage(e.to_string()))?;
        tracing::info!(key = %key, "deleted orphan checkpoint blob");
        deleted += 1;
    }
    Ok(deleted)
}

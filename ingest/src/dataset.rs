//! What an ingest left out, and why: `poet datasets rejects`. Reading datasets themselves
//! (list, find, export, the split) is `poet_sql::datasets`'s.

use serde::Serialize;
use sqlx::PgPool;

use crate::IngestError;

/// A line or document an ingest left out, as stored in `ingest_rejects`.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct RejectRow {
    /// Input name.
    pub file: String,
    /// 1-based line (scroll: hit position).
    pub line: i64,
    /// `malformed` (a line that could not be used) or `filtered` (a document judged empty or
    /// prose).
    pub kind: String,
    /// Malformed: why, in words. Filtered: the verdict's name (`hard_wrapped`, ...).
    pub reason: String,
    /// The post's id (filtered documents).
    pub source_id: Option<String>,
    /// The filter's measures and `why` (filtered documents).
    pub measures: Option<serde_json::Value>,
}

/// How many rejects of one kind and reason a dataset has (malformed lines are one reason,
/// `malformed`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct RejectCount {
    /// `malformed` or `filtered`.
    pub kind: String,
    /// The reason (`malformed` for every malformed line).
    pub reason: String,
    /// How many.
    pub count: i64,
}

/// A dataset's rejects by reason, most frequent first.
pub async fn reject_counts(
    pool: &PgPool,
    dataset_id: i64,
) -> Result<Vec<RejectCount>, IngestError> {
    ready(pool, dataset_id).await?;
    Ok(sqlx::query_as(
        "select kind, case when kind = 'malformed' then 'malformed' else reason end as reason,
                count(*) as count
         from ingest_rejects where dataset_id = $1 group by 1, 2 order by 3 desc, 2",
    )
    .bind(dataset_id)
    .fetch_all(pool)
    .await?)
}

/// A dataset's rejects in input order, at most `limit`; `reason` keeps one reason (a verdict's
/// name, or `malformed` for every malformed line).
pub async fn rejects(
    pool: &PgPool,
    dataset_id: i64,
    reason: Option<&str>,
    limit: i64,
) -> Result<Vec<RejectRow>, IngestError> {
    ready(pool, dataset_id).await?;
    Ok(sqlx::query_as(
        "select file, line, kind, reason, source_id, measures from ingest_rejects
         where dataset_id = $1
           and ($2::text is null or (kind = 'filtered' and reason = $2)
                or (kind = 'malformed' and $2 = 'malformed'))
         order by file, line limit $3",
    )
    .bind(dataset_id)
    .bind(reason)
    .bind(limit.max(0))
    .fetch_all(pool)
    .await?)
}

async fn ready(pool: &PgPool, dataset_id: i64) -> Result<(), IngestError> {
    match poet_sql::datasets::get(pool, dataset_id).await? {
        Some(_) => Ok(()),
        None => Err(IngestError::NoSuchDataset(format!("#{dataset_id}"))),
    }
}

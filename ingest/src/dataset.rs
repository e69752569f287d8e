//! Reading datasets: `poet dataset list | show NAME[@V] | export`, and the train/validation
//! corpora the coordinator streams to workers.
//!
//! Only `ready` versions are visible. The export order (and the order of [`corpus_text`]) is
//! dedupe-key order, which does not depend on the order of the dump.
//!
//! # The split
//! Every poem has a shard, `sha256(normalised text)[..8] mod shards`, so a poem keeps its side
//! of the split across re-ingests and dump versions. Validation is the poems whose shard is in
//! `validation_shards` = `0..ceil(shards × validation_fraction)` (7 of 64 at the default 0.1).
//! In a tiny dataset hashing can leave one side empty; then, when the dataset has at least two
//! poems and the fraction is positive, the first poem in export order is moved to the empty
//! side (`datasets.split_flip` records its key), so validation is never empty with ≥ 2 poems
//! and training never is either.

use futures::TryStreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::IngestError;

/// Which side of the split.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// The poems training runs learn from.
    Train,
    /// The held-out poems for validation loss.
    Validation,
}

/// A ready dataset version, as `list` and `show` print it.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct DatasetInfo {
    /// Database id (what runs reference).
    pub id: i64,
    /// Name.
    pub name: String,
    /// Version (1, 2, …).
    pub version: i32,
    /// sha256 over the framed poems in export order.
    pub content_hash: String,
    /// sha256 of the parameters.
    pub params_hash: String,
    /// Mapping, tag, filter, shards, validation fraction.
    pub params: serde_json::Value,
    /// Per-stage counts of the ingest and input bytes.
    pub counts: serde_json::Value,
    /// Poems.
    pub poems: i64,
    /// Characters of the framed corpus.
    pub chars: i64,
    /// Distinct characters, sorted.
    pub vocab: String,
    /// Number of shards.
    pub shards: i32,
    /// Shards forming the validation split.
    pub validation_shards: Vec<i32>,
    /// When it was created.
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl DatasetInfo {
    /// `name@version`.
    pub fn reference(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

impl std::fmt::Display for DatasetInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} (dataset {})", self.reference(), self.id)?;
        writeln!(
            f,
            "  created       {}",
            self.created_at.format("%Y-%m-%d %H:%M:%S UTC")
        )?;
        writeln!(f, "  poems         {}", self.poems)?;
        writeln!(f, "  characters    {}", self.chars)?;
        writeln!(
            f,
            "  vocabulary    {} characters",
            self.vocab.chars().count()
        )?;
        writeln!(
            f,
            "  shards        {} (validation: {:?})",
            self.shards, self.validation_shards
        )?;
        writeln!(f, "  content hash  {}", self.content_hash)?;
        writeln!(f, "  params        {}", self.params)?;
        write!(f, "  counts        {}", self.counts)
    }
}

/// Whether `name` is a valid dataset name (the same rule as the table's check).
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() <= 100
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The columns of a [`DatasetInfo`]: a constant, the only text `format!` puts into the
/// statements below (values are bound).
const INFO_COLUMNS: &str = "id, name, version, content_hash, params_hash, params, counts, poems, chars, vocab, shards, validation_shards, created_at";

/// Every ready dataset version, by name then version.
pub async fn list_datasets(pool: &PgPool) -> Result<Vec<DatasetInfo>, IngestError> {
    Ok(sqlx::query_as(&format!(
        "select {INFO_COLUMNS} from datasets where state = 'ready' order by name, version"
    ))
    .fetch_all(pool)
    .await?)
}

/// Finds `name` (its latest version) or `name@version`.
pub async fn find_dataset(pool: &PgPool, reference: &str) -> Result<DatasetInfo, IngestError> {
    let (name, version) = match reference.split_once('@') {
        Some((n, v)) => (
            n,
            Some(
                v.parse::<i32>()
                    .map_err(|_| IngestError::BadReference(reference.to_string()))?,
            ),
        ),
        None => (reference, None),
    };
    if !valid_name(name) {
        return Err(IngestError::BadReference(reference.to_string()));
    }
    let found: Option<DatasetInfo> = sqlx::query_as(&format!(
        "select {INFO_COLUMNS} from datasets
         where state = 'ready' and name = $1 and ($2::int is null or version = $2)
         order by version desc limit 1"
    ))
    .bind(name)
    .bind(version)
    .fetch_optional(pool)
    .await?;
    found.ok_or_else(|| IngestError::NoSuchDataset(reference.to_string()))
}

/// What an export wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExportSummary {
    /// Poems written.
    pub poems: u64,
    /// Bytes written.
    pub bytes: u64,
    /// The content hash recomputed from what was written (equals the dataset's).
    pub content_hash: String,
}

/// Writes the framed corpus (`++++\n` + poem + `\n` per poem, export order) to `out`,
/// streaming: memory stays flat whatever the dataset size. This is the file the reference
/// experiment trained on.
pub async fn export<W: AsyncWrite + Unpin>(
    pool: &PgPool,
    dataset_id: i64,
    out: &mut W,
) -> Result<ExportSummary, IngestError> {
    export_split(pool, dataset_id, None, out).await
}

/// [`export`] limited to one side of the split (`None`: all poems).
pub async fn export_split<W: AsyncWrite + Unpin>(
    pool: &PgPool,
    dataset_id: i64,
    split: Option<Split>,
    out: &mut W,
) -> Result<ExportSummary, IngestError> {
    ready(pool, dataset_id).await?;
    // $2: whether to keep the validation side (null: both). A poem is on the validation side
    // when its shard is held out, unless `split_flip` moves its dedupe key across.
    let validation = split.map(|s| s == Split::Validation);
    let mut rows = sqlx::query_scalar::<_, String>(
        "select p.text from poems p join datasets d on d.id = p.dataset_id
         where p.dataset_id = $1
           and ($2::boolean is null
                or ((p.shard = any(d.validation_shards))
                    <> (p.dedupe_key = coalesce(d.split_flip, ''))) = $2)
         order by p.dedupe_key",
    )
    .bind(dataset_id)
    .bind(validation)
    .fetch(pool);
    let mut hasher = Sha256::new();
    let (mut poems, mut bytes) = (0u64, 0u64);
    let out_err = |e: std::io::Error| IngestError::output("export", e);
    while let Some(text) = rows.try_next().await? {
        out.write_all(text.as_bytes()).await.map_err(out_err)?;
        hasher.update(Sha256::digest(text.as_bytes()));
        poems += 1;
        bytes += text.len() as u64;
    }
    out.flush().await.map_err(out_err)?;
    Ok(ExportSummary {
        poems,
        bytes,
        content_hash: hex::encode(hasher.finalize()),
    })
}

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

/// One side of the split as one string (what the coordinator streams to workers).
pub async fn corpus_text(
    pool: &PgPool,
    dataset_id: i64,
    split: Split,
) -> Result<String, IngestError> {
    let mut buf = Vec::new();
    export_split(pool, dataset_id, Some(split), &mut buf).await?;
    String::from_utf8(buf).map_err(|_| IngestError::Internal("corpus is not utf-8".into()))
}

async fn ready(pool: &PgPool, dataset_id: i64) -> Result<(), IngestError> {
    let found: Option<i64> =
        sqlx::query_scalar("select id from datasets where id = $1 and state = 'ready'")
            .bind(dataset_id)
            .fetch_optional(pool)
            .await?;
    found
        .map(|_| ())
        .ok_or_else(|| IngestError::NoSuchDataset(format!("#{dataset_id}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("poetry"));
        assert!(valid_name("wp-2017.v_1"));
        assert!(!valid_name(""));
        assert!(!valid_name("-x"));
        assert!(!valid_name("a@b"));
        assert!(!valid_name(&"a".repeat(101)));
    }
}

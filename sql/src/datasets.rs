//! The read side of datasets, in one place for every reader (SECURITY-free, ingest-free):
//! `poet datasets list | show NAME[@V] | export`, the corpora the coordinator streams to
//! workers, and the dataset a sweep names. Writing datasets is `poet-ingest`'s; this module
//! links neither the HTML parser nor the dump readers, so the coordinator does not either.
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
use poet_core::sweep::DatasetRef;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Why a dataset could not be read. [`DatasetError::kind`]-like matching is by variant.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// No ready version matches.
    #[error("no such dataset '{0}'")]
    NotFound(String),
    /// The reference does not parse.
    #[error("dataset reference '{reference}': {why}")]
    BadReference {
        /// As given.
        reference: String,
        /// What is wrong.
        why: String,
    },
    /// Writing the export failed (a closed pipe, a full disk).
    #[error("export: {0}")]
    Output(#[source] std::io::Error),
    /// A stored poem is not UTF-8 (never written by ingest).
    #[error("dataset {0}: corpus is not utf-8")]
    NotUtf8(i64),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl std::str::FromStr for Split {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "train" => Ok(Split::Train),
            "validation" => Ok(Split::Validation),
            other => Err(format!("split {other:?} is not train or validation")),
        }
    }
}

/// Which side of the split.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
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

const INFO_COLUMNS: &str = "id, name, version, content_hash, params_hash, params, counts, poems, chars, vocab, shards, validation_shards, created_at";

/// Every ready dataset version, by name then version.
pub async fn list_datasets(pool: &PgPool) -> Result<Vec<DatasetInfo>, DatasetError> {
    Ok(sqlx::query_as(&format!(
        "select {INFO_COLUMNS} from datasets where state = 'ready' order by name, version"
    ))
    .fetch_all(pool)
    .await?)
}

/// Finds `name` (its latest version) or `name@version`; the reference is parsed by the one
/// rule, [`DatasetRef`]'s.
pub async fn find_dataset(pool: &PgPool, reference: &str) -> Result<DatasetInfo, DatasetError> {
    let r: DatasetRef =
        reference.parse().map_err(
            |e: poet_core::sweep::SpecError| DatasetError::BadReference {
                reference: reference.to_string(),
                why: e.message,
            },
        )?;
    find(pool, &r)
        .await?
        .ok_or_else(|| DatasetError::NotFound(reference.to_string()))
}

/// The ready version `r` names, if there is one.
pub async fn find(pool: &PgPool, r: &DatasetRef) -> Result<Option<DatasetInfo>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select {INFO_COLUMNS} from datasets
         where state = 'ready' and name = $1 and ($2::int is null or version = $2)
         order by version desc limit 1"
    ))
    .bind(&r.name)
    .bind(r.version)
    .fetch_optional(pool)
    .await
}

/// The ready version with this id, if there is one.
pub async fn get(pool: &PgPool, id: i64) -> Result<Option<DatasetInfo>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select {INFO_COLUMNS} from datasets where state = 'ready' and id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
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
) -> Result<ExportSummary, DatasetError> {
    export_split(pool, dataset_id, None, out).await
}

/// [`export`] limited to one side of the split (`None`: all poems).
pub async fn export_split<W: AsyncWrite + Unpin>(
    pool: &PgPool,
    dataset_id: i64,
    split: Option<Split>,
    out: &mut W,
) -> Result<ExportSummary, DatasetError> {
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
    let out_err = DatasetError::Output;
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

/// One side of the split as one string (the coordinator streams [`export_split`] to workers
/// instead, chunk by chunk).
pub async fn corpus_text(
    pool: &PgPool,
    dataset_id: i64,
    split: Split,
) -> Result<String, DatasetError> {
    let mut buf = Vec::new();
    export_split(pool, dataset_id, Some(split), &mut buf).await?;
    String::from_utf8(buf).map_err(|_| DatasetError::NotUtf8(dataset_id))
}

async fn ready(pool: &PgPool, dataset_id: i64) -> Result<(), DatasetError> {
    let found: Option<i64> =
        sqlx::query_scalar("select id from datasets where id = $1 and state = 'ready'")
            .bind(dataset_id)
            .fetch_optional(pool)
            .await?;
    found
        .map(|_| ())
        .ok_or_else(|| DatasetError::NotFound(format!("#{dataset_id}")))
}

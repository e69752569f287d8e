//! Dataset text for workers: the training and validation corpora exactly as
//! `poet datasets export --split` writes them (`poet_sql::datasets::export_split` owns the
//! format and the split rule), streamed from a database cursor in chunks, so that a download holds one
//! chunk of a corpus in memory at a time, never the whole (SECURITY.md, finding 7).

use std::future::Future;

use sha2::{Digest as _, Sha256};
use sqlx::PgPool;
use tokio::io::AsyncReadExt;

use poet_sql::datasets::Split;

use crate::error::{Result, ServiceError};

/// Training and validation text of a dataset.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// Training text.
    pub train: String,
    /// Validation text.
    pub validation: String,
}

/// What a download's header announces: the sizes of both sides and the sha256 (hex) of the
/// training bytes followed by the validation bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    /// Bytes of training text.
    pub train_bytes: i64,
    /// Bytes of validation text.
    pub validation_bytes: i64,
    /// sha256 (hex) of both, training first.
    pub sha256: String,
}

/// One chunk of a streamed corpus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    /// Training text (may end inside a character).
    Train(Vec<u8>),
    /// Validation text (same rule).
    Validation(Vec<u8>),
}

/// Streams a ready dataset, the training side then the validation side, through `each` in
/// chunks of at most `chunk` bytes. `each` answers whether to go on (false: the receiver is
/// gone). Returns the digest of what was streamed, or `None` when `each` stopped it.
pub async fn stream<F, Fut>(
    pool: &PgPool,
    dataset_id: i64,
    chunk: usize,
    mut each: F,
) -> Result<Option<Digest>>
where
    F: FnMut(Chunk) -> Fut,
    Fut: Future<Output = bool>,
{
    if poet_sql::datasets::get(pool, dataset_id).await?.is_none() {
        return Err(ServiceError::NotFound(format!("no dataset {dataset_id}")));
    }
    let mut hasher = Sha256::new();
    let mut sizes = [0i64; 2];
    for (i, split) in [Split::Train, Split::Validation].into_iter().enumerate() {
        let wrap: fn(Vec<u8>) -> Chunk = match split {
            Split::Train => Chunk::Train,
            Split::Validation => Chunk::Validation,
        };
        // The export writes into a pipe of one chunk's size; this side reads it in chunks.
        // A full pipe holds the export (and its cursor) back until the chunk is taken.
        let (mut writer, reader) = tokio::io::duplex(chunk);
        let export = async move {
            let done =
                poet_sql::datasets::export_split(pool, dataset_id, Some(split), &mut writer).await;
            drop(writer);
            done
        };
        let forward = async {
            // Owned here: when this side stops early, the pipe breaks and the export ends.
            let mut reader = reader;
            loop {
                let mut buf = vec![0u8; chunk];
                let mut filled = 0;
                while filled < chunk {
                    match reader.read(&mut buf[filled..]).await {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) => return Err(ServiceError::Storage(format!("dataset pipe: {e}"))),
                    }
                }
                if filled == 0 {
                    return Ok(true);
                }
                buf.truncate(filled);
                hasher.update(&buf);
                sizes[i] += filled as i64;
                if !each(wrap(buf)).await {
                    return Ok(false);
                }
                if filled < chunk {
                    return Ok(true);
                }
            }
        };
        let (exported, forwarded) = tokio::join!(export, forward);
        // A receiver that went away breaks the pipe too: its answer comes first.
        if !forwarded? {
            return Ok(None);
        }
        exported.map_err(|e| ServiceError::Storage(e.to_string()))?;
    }
    Ok(Some(Digest {
        train_bytes: sizes[0],
        validation_bytes: sizes[1],
        sha256: hex::encode(hasher.finalize()),
    }))
}

/// The digest of a ready dataset's download: one streamed pass, nothing kept.
pub async fn digest(pool: &PgPool, dataset_id: i64) -> Result<Digest> {
    let d = stream(pool, dataset_id, 1 << 20, |_| async { true }).await?;
    Ok(d.expect("a stream that is never stopped ends with its digest"))
}

/// A ready dataset's whole text, training then validation, as one string: what the 4-gram
/// set of the plagiarism check is built from (once per version).
pub async fn text(pool: &PgPool, dataset_id: i64) -> Result<String> {
    let mut all = Vec::new();
    stream(pool, dataset_id, 1 << 20, |c| {
        let (Chunk::Train(b) | Chunk::Validation(b)) = c;
        all.extend_from_slice(&b);
        async { true }
    })
    .await?;
    String::from_utf8(all).map_err(|_| ServiceError::Storage("corpus is not utf-8".into()))
}

/// Loads a ready dataset's two sides whole.
pub async fn corpus(pool: &PgPool, dataset_id: i64) -> Result<Corpus> {
    let (mut train, mut validation) = (Vec::new(), Vec::new());
    stream(pool, dataset_id, 1 << 20, |c| {
        match c {
            Chunk::Train(b) => train.extend_from_slice(&b),
            Chunk::Validation(b) => validation.extend_from_slice(&b),
        }
        async { true }
    })
    .await?;
    let text = |b: Vec<u8>| {
        String::from_utf8(b).map_err(|_| ServiceError::Storage("corpus is not utf-8".into()))
    };
    Ok(Corpus {
        train: text(train)?,
        validation: text(validation)?,
    })
}

//! Dataset text for workers: the training and validation corpora exactly as
//! `poet dataset export --split` writes them (`poet_ingest::corpus_text` owns the format and
//! the split rule).

use sqlx::PgPool;

use crate::error::{Result, ServiceError};

/// Training and validation text of a dataset.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// Training text.
    pub train: String,
    /// Validation text.
    pub validation: String,
}

/// Loads a ready dataset's text.
pub async fn corpus(pool: &PgPool, dataset_id: i64) -> Result<Corpus> {
    let ready: Option<i64> =
        sqlx::query_scalar("select id from datasets where id = $1 and state = 'ready'")
            .bind(dataset_id)
            .fetch_optional(pool)
            .await?;
    if ready.is_none() {
        return Err(ServiceError::NotFound(format!("no dataset {dataset_id}")));
    }
    // The split rule (validation shards, the one flipped poem of tiny datasets) is ingest's.
    let text = |split| async move {
        poet_ingest::corpus_text(pool, dataset_id, split)
            .await
            .map_err(|e| ServiceError::Storage(e.to_string()))
    };
    Ok(Corpus {
        train: text(poet_ingest::Split::Train).await?,
        validation: text(poet_ingest::Split::Validation).await?,
    })
}

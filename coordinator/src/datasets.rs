//! Dataset text for workers. The corpus of a dataset version is each poem's stored framed
//! text (`++++\n` + poem + `\n`) in the dataset's export order (`dedupe_key`); poems on the
//! dataset's validation shards (with the one `split_flip` poem moved across, see
//! `sql/migrations/0001_datasets.sql`) form the validation text, the rest the training text.

use sqlx::{PgPool, Row};

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
    let rows = sqlx::query(
        "select p.text,
                (p.shard = any(d.validation_shards)) <> (p.dedupe_key = coalesce(d.split_flip, '')) as val
         from poems p join datasets d on d.id = p.dataset_id
         where p.dataset_id = $1 order by p.dedupe_key",
    )
    .bind(dataset_id)
    .fetch_all(pool)
    .await?;
    let mut c = Corpus {
        train: String::new(),
        validation: String::new(),
    };
    for r in rows {
        let text: &str = r.get("text");
        let out = if r.get::<bool, _>("val") {
            &mut c.validation
        } else {
            &mut c.train
        };
        out.push_str(text);
    }
    Ok(c)
}

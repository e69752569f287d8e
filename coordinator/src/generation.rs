//! Generation requests: validated and queued here, sampled by a worker (which leases them
//! like runs, beside its training: each lease mints a random `lease_id` that the completion
//! must name, so a worker whose lease expired cannot complete the job), and judged here
//! against the training corpus with the word 4-gram plagiarism check. The 4-gram set of each
//! dataset version is built once, kept as an artifact and cached in memory.
//!
//! Every generation also stores its quality report ([`poet_core::quality::Report`], issue
//! 21): the poems' real-word share and shape beside the corpus's own figures. Those figures
//! are computed once per dataset version and kept on its row (`datasets.quality`); the job
//! hands the corpus's line length and lines per stanza to the worker, whose sampler pulls
//! line and stanza breaks towards them.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use poet_core::ngrams::{self, NgramSet, Thresholds};
use poet_core::quality::{self, Quality, Vocabulary, defaults};
use poet_proto::v1;
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Row};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::artifacts::Artifacts;
use crate::error::{Result, ServiceError};
use crate::history::ts;
use crate::queue::CheckpointRow;

/// Validated generation parameters, stored as JSON with the request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GenParams {
    /// "best", "latest" or "epoch:N".
    pub checkpoint: String,
    /// Temperatures (0 = greedy).
    pub temperatures: Vec<f64>,
    /// Characters per stream.
    pub chars: i32,
    /// Streams per temperature.
    pub poems: i32,
    /// Seed.
    pub seed: u64,
    /// Opening text.
    pub prime: String,
    /// "carry" or "window".
    #[serde(default = "carry")]
    pub mode: String,
    /// Nucleus cut in (0, 1]. Requests stored before it existed were sampled without one.
    #[serde(default = "one")]
    pub top_p: f64,
    /// Top-k cut (0 = none).
    #[serde(default)]
    pub top_k: i32,
    /// Most times a line may stand in a poem (0 = no cap).
    #[serde(default)]
    pub max_line_repeats: i32,
    /// Pull in nats of breaks towards the corpus's shape (0 = none).
    #[serde(default)]
    pub shape_boost: f64,
}

fn carry() -> String {
    "carry".into()
}

fn one() -> f64 {
    1.0
}

impl GenParams {
    /// Applies defaults and checks ranges; errors name the field.
    pub fn from_request(r: &v1::GenerateRequest) -> Result<GenParams> {
        let temperatures = if r.temperatures.is_empty() {
            vec![poet_core::quality::defaults::TEMPERATURE]
        } else {
            r.temperatures.clone()
        };
        if temperatures.len() > 16 {
            return Err(ServiceError::Invalid(
                "temperatures: at most 16 values".into(),
            ));
        }
        for t in &temperatures {
            if !t.is_finite() || *t < 0.0 || *t > 10.0 {
                return Err(ServiceError::Invalid(format!(
                    "temperatures: {t} is not in [0, 10]"
                )));
            }
        }
        let chars = if r.chars == 0 { 1000 } else { r.chars };
        if !(1..=100_000).contains(&chars) {
            return Err(ServiceError::Invalid(format!(
                "chars: {chars} is out of range 1..=100000"
            )));
        }
        let poems = if r.poems == 0 { 1 } else { r.poems };
        if !(1..=256).contains(&poems) {
            return Err(ServiceError::Invalid(format!(
                "poems: {poems} is out of range 1..=256"
            )));
        }
        let total = temperatures.len() * poems as usize * chars as usize;
        if total > crate::limits::MAX_GENERATION_CHARS {
            return Err(ServiceError::Invalid(format!(
                "chars: {} temperatures x {poems} poems x {chars} chars = {total} characters is over the limit of {} per request",
                temperatures.len(),
                crate::limits::MAX_GENERATION_CHARS
            )));
        }
        if r.prime.chars().count() > 10_000 {
            return Err(ServiceError::Invalid(
                "prime: longer than 10000 characters".into(),
            ));
        }
        crate::limits::check_chars("checkpoint", &r.checkpoint, crate::limits::MAX_NAME_CHARS)?;
        let checkpoint = if r.checkpoint.is_empty() {
            "best".to_string()
        } else {
            r.checkpoint.clone()
        };
        parse_selector(&checkpoint)?;
        let mode = match r.mode.as_str() {
            "" | "carry" => "carry",
            "window" => "window",
            other => {
                crate::limits::check_chars("mode", other, crate::limits::MAX_NAME_CHARS)?;
                return Err(ServiceError::Invalid(format!(
                    "mode: '{other}' is not carry or window"
                )));
            }
        };
        let top_p = r.top_p.unwrap_or(defaults::TOP_P);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(ServiceError::Invalid(format!(
                "top_p: {top_p} is not in (0, 1]"
            )));
        }
        let top_k = r.top_k.unwrap_or(defaults::TOP_K as i32);
        if !(0..=MAX_TOP_K).contains(&top_k) {
            return Err(ServiceError::Invalid(format!(
                "top_k: {top_k} is not in 0..={MAX_TOP_K} (0 = every char)"
            )));
        }
        let max_line_repeats = r
            .max_line_repeats
            .unwrap_or(defaults::MAX_LINE_REPEATS as i32);
        if !(0..=MAX_LINE_REPEATS).contains(&max_line_repeats) {
            return Err(ServiceError::Invalid(format!(
                "max_line_repeats: {max_line_repeats} is not in 0..={MAX_LINE_REPEATS} (0 = no cap)"
            )));
        }
        let shape_boost = r.shape_boost.unwrap_or(defaults::SHAPE_BOOST);
        if !(shape_boost.is_finite() && (0.0..=defaults::MAX_SHAPE_BOOST).contains(&shape_boost)) {
            return Err(ServiceError::Invalid(format!(
                "shape_boost: {shape_boost} is not in [0, {}]",
                defaults::MAX_SHAPE_BOOST
            )));
        }
        Ok(GenParams {
            checkpoint,
            temperatures,
            chars,
            poems,
            seed: r.seed,
            prime: r.prime.clone(),
            mode: mode.into(),
            top_p,
            top_k,
            max_line_repeats,
            shape_boost,
        })
    }
}

/// The largest top-k accepted: more than any character vocabulary.
const MAX_TOP_K: i32 = 100_000;
/// The largest repeat cap accepted.
const MAX_LINE_REPEATS: i32 = 1_000;

enum Selector {
    Best,
    Latest,
    Epoch(i32),
}

fn parse_selector(s: &str) -> Result<Selector> {
    match s {
        "best" => Ok(Selector::Best),
        "latest" => Ok(Selector::Latest),
        other => other
            .strip_prefix("epoch:")
            .and_then(|n| n.parse::<i32>().ok())
            .filter(|n| *n >= 1)
            .map(Selector::Epoch)
            .ok_or_else(|| {
                ServiceError::Invalid(format!(
                    "checkpoint: '{other}' is not best, latest or epoch:N"
                ))
            }),
    }
}

/// Picks the checkpoint a selector names.
pub async fn pick_checkpoint(pool: &PgPool, run_id: i64, selector: &str) -> Result<CheckpointRow> {
    crate::history::require_run(pool, run_id).await?;
    let (sql, epoch) = match parse_selector(selector)? {
        Selector::Best => (
            "select * from checkpoints where run_id = $1 and live order by val_loss, epoch limit 1",
            0,
        ),
        Selector::Latest => (
            "select * from checkpoints where run_id = $1 and live order by epoch desc limit 1",
            0,
        ),
        Selector::Epoch(n) => (
            "select * from checkpoints where run_id = $1 and live and epoch = $2",
            n,
        ),
    };
    let row: Option<CheckpointRow> = sqlx::query_as(sql)
        .bind(run_id)
        .bind(epoch)
        .fetch_optional(pool)
        .await?;
    row.ok_or_else(|| match epoch {
        0 => ServiceError::FailedPrecondition(format!("run {run_id} has no checkpoint yet")),
        n => ServiceError::NotFound(format!("run {run_id} has no kept checkpoint for epoch {n}")),
    })
}

/// The advisory lock that makes "count the unfinished generations, then queue one" atomic
/// across coordinator replicas.
const QUEUE_LOCK: i64 = 0x706f_6574_6765_6e71; // "poetgenq"

/// Queues a generation unless `max_unfinished` are already queued or running
/// (RESOURCE_EXHAUSTED); returns its id. Every client shares one client token, so the bound
/// is shared by all callers: there is no finer identity to count by.
pub async fn request(
    pool: &PgPool,
    run_id: i64,
    params: &GenParams,
    max_unfinished: i64,
) -> Result<i64> {
    let ckpt = pick_checkpoint(pool, run_id, &params.checkpoint).await?;
    let mut tx = pool.begin().await?;
    sqlx::query("select pg_advisory_xact_lock($1)")
        .bind(QUEUE_LOCK)
        .execute(&mut *tx)
        .await?;
    let unfinished: i64 =
        sqlx::query_scalar("select count(*) from generations where state in ('queued', 'running')")
            .fetch_one(&mut *tx)
            .await?;
    if unfinished >= max_unfinished {
        return Err(ServiceError::Busy(format!(
            "generations: {unfinished} are queued or running, the most this coordinator accepts (--max-queued-generations); retry when some have finished"
        )));
    }
    let id: i64 = sqlx::query_scalar(
        "insert into generations (run_id, checkpoint_id, params) values ($1, $2, $3) returning id",
    )
    .bind(run_id)
    .bind(ckpt.id)
    .bind(serde_json::to_value(params).expect("params serialise"))
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// Leases the oldest queued generation to a worker under a fresh lease id.
pub async fn claim(
    pool: &PgPool,
    corpora: &CorpusCache,
    worker_id: i64,
    lease_ttl: chrono::Duration,
    now: DateTime<Utc>,
) -> Result<Option<v1::GenerationJob>> {
    let lease_id = Uuid::new_v4();
    let row = sqlx::query(
        "with next as (select id from generations where state = 'queued' order by id limit 1 for update skip locked)
         update generations g set state = 'running', worker_id = $1, lease_expires_at = $2,
             lease_id = $3, attempts = g.attempts + 1
         from next where g.id = next.id
         returning g.id, g.params, g.checkpoint_id, g.run_id",
    )
    .bind(worker_id)
    .bind(now + lease_ttl)
    .bind(lease_id)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let params: GenParams = serde_json::from_value(row.get("params"))
        .map_err(|e| ServiceError::Storage(e.to_string()))?;
    let ckpt: CheckpointRow = sqlx::query_as("select * from checkpoints where id = $1")
        .bind(row.get::<i64, _>("checkpoint_id"))
        .fetch_one(pool)
        .await?;
    let run = sqlx::query("select config::text as config, dataset_id from runs where id = $1")
        .bind(row.get::<i64, _>("run_id"))
        .fetch_one(pool)
        .await?;
    let config: String = run.get("config");
    // The shape the sampler aims at. Without it the job is still worth sampling (no pull).
    let shape = match corpora.get(pool, run.get("dataset_id")).await {
        Ok(c) => c.figures.shape.clone(),
        Err(e) => {
            tracing::warn!(error = %e, "corpus figures unavailable; sampling without a shape target");
            Default::default()
        }
    };
    Ok(Some(v1::GenerationJob {
        generation_id: row.get("id"),
        checkpoint: Some(ckpt.into()),
        config_json: config,
        temperatures: params.temperatures,
        chars: params.chars,
        poems: params.poems,
        seed: params.seed,
        prime: params.prime,
        lease_id: lease_id.to_string(),
        mode: params.mode,
        top_p: params.top_p,
        top_k: params.top_k,
        max_line_repeats: params.max_line_repeats,
        shape_boost: params.shape_boost,
        line_chars: shape.mean_line_chars,
        stanza_lines: shape.lines_per_stanza,
    }))
}

/// Requeues generations whose worker vanished (failed after 3 attempts).
pub async fn reap(pool: &PgPool, now: DateTime<Utc>) -> Result<u64> {
    let n = sqlx::query(
        "update generations set
             state = case when attempts >= 3 then 'failed' else 'queued' end,
             error = case when attempts >= 3 then 'no worker finished it in 3 attempts' else error end,
             finished_at = case when attempts >= 3 then $1 else null end,
             worker_id = null, lease_expires_at = null, lease_id = null
         where state = 'running' and lease_expires_at < $1",
    )
    .bind(now)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(n)
}

/// In-memory cache of each dataset's 4-gram set, backed by an artifact, and of its
/// [`CorpusQuality`] (the two things a generation is judged against).
#[derive(Debug, Default, Clone)]
pub struct NgramCache {
    sets: Arc<Mutex<HashMap<i64, Arc<NgramSet>>>>,
    /// The corpus figures and words, also needed when a job is leased (its shape target).
    pub corpora: CorpusCache,
}

impl NgramCache {
    /// The 4-gram set of a dataset's whole corpus (both splits): built once per version.
    pub async fn get(
        &self,
        pool: &PgPool,
        artifacts: &Artifacts,
        dataset_id: i64,
    ) -> Result<Arc<NgramSet>> {
        let mut sets = self.sets.lock().await;
        if let Some(s) = sets.get(&dataset_id) {
            return Ok(s.clone());
        }
        let key = Artifacts::ngrams_key(dataset_id);
        let stored = artifacts
            .get(&key)
            .await
            .map_err(|e| ServiceError::Storage(e.to_string()))?;
        let set = match stored.map(|b| NgramSet::from_bytes(&b)) {
            Some(Ok(set)) => set,
            other => {
                if let Some(Err(e)) = other {
                    tracing::warn!(dataset_id, error = %e, "rebuilding corrupt 4-gram artifact");
                }
                let text = crate::datasets::text(pool, dataset_id).await?;
                let set = tokio::task::spawn_blocking(move || NgramSet::from_corpus(&text))
                    .await
                    .expect("join");
                artifacts
                    .put(&key, set.to_bytes().into())
                    .await
                    .map_err(|e| ServiceError::Storage(e.to_string()))?;
                set
            }
        };
        let set = Arc::new(set);
        sets.insert(dataset_id, set.clone());
        Ok(set)
    }
}

/// A dataset's corpus as generations are judged against it: its own figures (kept on the
/// dataset row once computed) and its words (rebuilt from the text once per process).
#[derive(Debug)]
pub struct CorpusQuality {
    /// The corpus's figures.
    pub figures: Quality,
    /// Its distinct words.
    pub vocabulary: Vocabulary,
}

/// In-memory cache of each dataset's [`CorpusQuality`].
#[derive(Debug, Default, Clone)]
pub struct CorpusCache {
    corpora: Arc<Mutex<HashMap<i64, Arc<CorpusQuality>>>>,
}

impl CorpusCache {
    /// The corpus figures and words of a dataset: measured once per version and stored on its
    /// row, so other readers (and later processes) find them there.
    pub async fn get(&self, pool: &PgPool, dataset_id: i64) -> Result<Arc<CorpusQuality>> {
        let mut corpora = self.corpora.lock().await;
        if let Some(c) = corpora.get(&dataset_id) {
            return Ok(c.clone());
        }
        let stored: Option<serde_json::Value> =
            sqlx::query_scalar("select quality from datasets where id = $1")
                .bind(dataset_id)
                .fetch_optional(pool)
                .await?
                .flatten();
        let stored = stored.and_then(|v| serde_json::from_value::<Quality>(v).ok());
        let text = crate::datasets::text(pool, dataset_id).await?;
        let fresh = stored.is_none();
        let (figures, vocabulary) = tokio::task::spawn_blocking(move || match stored {
            Some(f) => (f, Vocabulary::from_corpus(&text)),
            None => quality::corpus_figures(&text),
        })
        .await
        .expect("join");
        if fresh {
            sqlx::query("update datasets set quality = $2 where id = $1")
                .bind(dataset_id)
                .bind(serde_json::to_value(&figures).expect("figures serialise"))
                .execute(pool)
                .await?;
        }
        let c = Arc::new(CorpusQuality {
            figures,
            vocabulary,
        });
        corpora.insert(dataset_id, c.clone());
        Ok(c)
    }
}

fn figures_proto(q: &Quality) -> v1::PoemFigures {
    v1::PoemFigures {
        words: q.words as i64,
        real_word_share: q.real_word_share,
        poems: q.shape.poems as i32,
        lines: q.shape.lines as i64,
        mean_line_chars: q.shape.mean_line_chars,
        lines_per_stanza: q.shape.lines_per_stanza,
        stanzas_per_poem: q.shape.stanzas_per_poem,
        repeated_lines: q.shape.repeated_lines as i32,
    }
}

/// A stored quality report as the API shows it.
pub fn quality_proto(r: &quality::Report) -> v1::QualityReport {
    v1::QualityReport {
        generated: Some(figures_proto(&r.generated)),
        corpus: Some(figures_proto(&r.corpus)),
        shared_4grams: r.shared_4grams,
        longest_copied_run: r.longest_copied_run as i32,
    }
}

fn report_proto(r: &ngrams::Report) -> v1::PlagiarismReport {
    v1::PlagiarismReport {
        ngrams: r.ngrams as i64,
        shared: r.shared.clone(),
        shared_fraction: r.shared_fraction,
        longest_copied_run: r.longest_copied_run as i32,
        flagged: r.flagged,
    }
}

/// The refusal of a completion under a lease that is not the job's current one.
fn fenced(generation_id: i64, worker_id: i64) -> ServiceError {
    ServiceError::FailedPrecondition(format!(
        "generation {generation_id} is not leased to worker {worker_id} under this lease id (it expired, was leased again or finished); drop the job"
    ))
}

/// Ends a generation's lease as done (with its overall report) or failed (with the worker's
/// error), fenced: only while `lease_id` is its current lease, which the judging of the poems
/// may have outlived.
async fn finish(
    conn: &mut sqlx::PgConnection,
    req: &v1::CompleteGenerationRequest,
    lease_id: Uuid,
    outcome: std::result::Result<(&ngrams::Report, &quality::Report), &str>,
    now: DateTime<Utc>,
) -> Result<()> {
    let (state, overall, quality, error) = match outcome {
        Ok((o, q)) => (
            "done",
            Some(serde_json::to_value(o).expect("report serialises")),
            Some(serde_json::to_value(q).expect("report serialises")),
            None,
        ),
        Err(e) => ("failed", None, None, Some(e)),
    };
    let n = sqlx::query(
        "update generations set state = $3, overall = $4, error = $5, finished_at = $6,
             quality = $7, lease_id = null, lease_expires_at = null
         where id = $1 and state = 'running' and lease_id = $2",
    )
    .bind(req.generation_id)
    .bind(lease_id)
    .bind(state)
    .bind(overall)
    .bind(error)
    .bind(now)
    .bind(quality)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if n == 0 {
        return Err(fenced(req.generation_id, req.worker_id));
    }
    Ok(())
}

/// Stores a worker's sampled streams (split into poems and judged), or its error, if the
/// request names the job's current lease (the worker is authenticated by the caller).
pub async fn complete(
    pool: &PgPool,
    artifacts: &Artifacts,
    cache: &NgramCache,
    req: &v1::CompleteGenerationRequest,
    now: DateTime<Utc>,
) -> Result<()> {
    let lease_id = Uuid::parse_str(&req.lease_id)
        .map_err(|_| ServiceError::Invalid("lease_id: not a lease id".into()))?;
    let row = sqlx::query("select g.state, g.worker_id, g.lease_id, g.params, r.dataset_id from generations g join runs r on r.id = g.run_id where g.id = $1")
        .bind(req.generation_id)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("no generation {}", req.generation_id)))?;
    if row.get::<String, _>("state") != "running"
        || row.get::<Option<i64>, _>("worker_id") != Some(req.worker_id)
        || row.get::<Option<Uuid>, _>("lease_id") != Some(lease_id)
    {
        return Err(fenced(req.generation_id, req.worker_id));
    }
    if !req.error.is_empty() {
        let error = crate::limits::truncate_chars(&req.error, crate::limits::MAX_ERROR_CHARS);
        let mut conn = pool.acquire().await?;
        return finish(&mut conn, req, lease_id, Err(error), now).await;
    }
    // No more text than the job asked for is stored.
    let params: GenParams = serde_json::from_value(row.get("params"))
        .map_err(|e| ServiceError::Storage(e.to_string()))?;
    let streams = params.temperatures.len() * params.poems as usize;
    let most = streams * params.chars as usize;
    let sent: usize = req.streams.iter().map(|s| s.text.chars().count()).sum();
    if req.streams.len() > streams || sent > most {
        return Err(ServiceError::Invalid(format!(
            "streams: {} streams of {sent} characters in all, the job asked for {streams} of {} each",
            req.streams.len(),
            params.chars
        )));
    }
    let set = cache.get(pool, artifacts, row.get("dataset_id")).await?;
    let corpus = cache.corpora.get(pool, row.get("dataset_id")).await?;
    let thresholds = Thresholds::default();
    let poems: Vec<(f64, String)> = req
        .streams
        .iter()
        .flat_map(|s| {
            poet_core::split_poems(&s.text)
                .into_iter()
                .map(move |p| (s.temperature, p))
        })
        .collect();
    let (poems, reports, overall, quality) = tokio::task::spawn_blocking(move || {
        let reports: Vec<ngrams::Report> = poems
            .iter()
            .map(|(_, p)| ngrams::check(p, &set, &thresholds))
            .collect();
        let refs: Vec<&str> = poems.iter().map(|(_, p)| p.as_str()).collect();
        let overall = ngrams::check_all(&refs, &set, &thresholds);
        let quality = quality::Report {
            generated: quality::measure(&refs, &corpus.vocabulary),
            corpus: corpus.figures.clone(),
            shared_4grams: overall.shared_fraction,
            longest_copied_run: overall.longest_copied_run,
        };
        (poems, reports, overall, quality)
    })
    .await
    .expect("join");
    let mut tx = pool.begin().await?;
    // The poems go in only under the row's lock, taken by the fenced update.
    finish(&mut tx, req, lease_id, Ok((&overall, &quality)), now).await?;
    for (i, ((t, text), report)) in poems.iter().zip(&reports).enumerate() {
        sqlx::query("insert into generated_poems (generation_id, idx, temperature, text, report) values ($1, $2, $3, $4, $5)")
            .bind(req.generation_id)
            .bind(i as i32)
            .bind(t)
            .bind(text)
            .bind(serde_json::to_value(report).expect("report serialises"))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Generations with their poems (`id = Some` for one, else by run; run 0 = all).
pub async fn load(pool: &PgPool, id: Option<i64>, run_id: i64) -> Result<Vec<v1::Generation>> {
    let gens = sqlx::query(
        "select g.id, g.run_id, g.checkpoint_id, c.epoch, g.state, g.params::text as params, g.error, g.overall, g.quality, g.created_at
         from generations g join checkpoints c on c.id = g.checkpoint_id
         where ($1::bigint is null or g.id = $1) and ($2 = 0 or g.run_id = $2)
         order by g.id desc limit 200",
    )
    .bind(id)
    .bind(run_id)
    .fetch_all(pool)
    .await?;
    let ids: Vec<i64> = gens.iter().map(|g| g.get("id")).collect();
    let poems = sqlx::query(
        "select generation_id, idx, temperature, text, report from generated_poems where generation_id = any($1) order by generation_id, idx",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let mut by_gen: HashMap<i64, Vec<v1::Poem>> = HashMap::new();
    for p in poems {
        let report: Option<ngrams::Report> = serde_json::from_value(p.get("report")).ok();
        by_gen
            .entry(p.get("generation_id"))
            .or_default()
            .push(v1::Poem {
                index: p.get("idx"),
                temperature: p.get("temperature"),
                text: p.get("text"),
                report: report.as_ref().map(report_proto),
            });
    }
    Ok(gens
        .into_iter()
        .map(|g| {
            let id: i64 = g.get("id");
            let overall: Option<serde_json::Value> = g.get("overall");
            let quality: Option<serde_json::Value> = g.get("quality");
            v1::Generation {
                id,
                run_id: g.get("run_id"),
                checkpoint_id: g.get("checkpoint_id"),
                epoch: g.get("epoch"),
                state: g.get("state"),
                params_json: g.get("params"),
                error: g.get::<Option<String>, _>("error").unwrap_or_default(),
                poems: by_gen.remove(&id).unwrap_or_default(),
                overall: overall
                    .and_then(|o| serde_json::from_value::<ngrams::Report>(o).ok())
                    .as_ref()
                    .map(report_proto),
                created_at: Some(ts(g.get("created_at"))),
                quality: quality
                    .and_then(|q| serde_json::from_value::<quality::Report>(q).ok())
                    .as_ref()
                    .map(quality_proto),
            }
        })
        .collect())
}

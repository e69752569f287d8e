//! Sweep submission: parse and validate a spec (all checks in `poet_core::sweep`), resolve
//! its dataset, expand it, and store the sweep and its runs in one transaction, so a bad spec
//! stores nothing. Runs are unique by config hash (config + dataset content): a config that
//! already exists, from this sweep or another, is attached to the sweep instead of being
//! trained again, and the reply lists it.
//!
//! Each new run row also stores what it needs from a worker (the spec's `[resources]`) and
//! its estimated training memory (`poet_core::resources::estimate_memory_bytes` on the
//! dataset's vocabulary), which the claim compares with each worker's capacity. Runs that no
//! worker seen in the last hour can hold are still stored; the reply warns about them
//! ([`no_fit_warnings`]) and `poet sweeps show` says why per run ([`no_fit_reason`]).

use poet_core::sweep::{ExpandOptions, SpecFormat, SweepSpec};
use sqlx::PgPool;

use crate::error::{Result, ServiceError};
use crate::history::{RunRow, SweepRow};
use crate::limits;

/// A submission's outcome.
#[derive(Debug)]
pub struct Submitted {
    /// The stored sweep (None on a dry run).
    pub sweep: Option<SweepRow>,
    /// Runs created.
    pub created: Vec<RunRow>,
    /// Runs that already existed with the same config.
    pub existing: Vec<RunRow>,
    /// Configs produced twice by the spec.
    pub duplicates_in_spec: usize,
    /// On a dry run: the configs that would be created.
    pub planned: Vec<String>,
    /// Queued runs of the sweep that no recently seen worker can hold, one line per reason.
    pub warnings: Vec<String>,
}

/// A dataset version resolved from a spec.
#[derive(Debug, Clone)]
pub struct DatasetPick {
    /// Id.
    pub id: i64,
    /// Content hash (part of every run hash).
    pub content_hash: String,
    /// Characters in its vocabulary (for the memory estimate).
    pub vocab: usize,
}

/// Resolves a sweep's dataset reference to its ready version (the latest when unpinned).
pub async fn resolve_dataset(
    pool: &PgPool,
    r: &poet_core::sweep::DatasetRef,
) -> Result<DatasetPick> {
    let d = poet_sql::datasets::find(pool, r).await?.ok_or_else(|| {
        ServiceError::Invalid(format!(
            "dataset: no dataset '{r}' (list them with `poet datasets list`)"
        ))
    })?;
    Ok(DatasetPick {
        id: d.id,
        content_hash: d.content_hash,
        vocab: match d.vocab.chars().count() {
            0 => poet_core::resources::DEFAULT_VOCAB,
            n => n,
        },
    })
}

/// Validates, expands and stores a sweep.
#[tracing::instrument(name = "coordinator.sweeps.submit", skip(pool, spec_text))]
pub async fn submit(
    pool: &PgPool,
    spec_text: &str,
    format: &str,
    name_override: &str,
    dry_run: bool,
    max_runs: usize,
) -> Result<Submitted> {
    limits::check_bytes("spec", spec_text, limits::MAX_SPEC_BYTES)?;
    let format: SpecFormat = if format.is_empty() {
        SpecFormat::Toml
    } else {
        format
            .parse()
            .map_err(|e: poet_core::sweep::SpecError| ServiceError::Invalid(e.to_string()))?
    };
    let spec =
        SweepSpec::parse(spec_text, format).map_err(|e| ServiceError::Invalid(e.to_string()))?;
    let expansion = spec
        .expand(&ExpandOptions { max_runs })
        .map_err(|e| ServiceError::Invalid(e.to_string()))?;
    let dataset = resolve_dataset(pool, &spec.dataset).await?;
    let name = if !name_override.is_empty() {
        name_override.to_string()
    } else {
        spec.name
            .clone()
            .unwrap_or_else(|| format!("sweep-{}", chrono::Utc::now().format("%Y%m%d-%H%M%S")))
    };
    // The request's name, else the spec's own `name`.
    limits::check_chars("name", &name, limits::MAX_NAME_CHARS)?;
    let configs: Vec<String> = expansion
        .configs
        .iter()
        .map(|c| c.canonical_json())
        .collect();
    let hashes: Vec<String> = expansion
        .configs
        .iter()
        .map(|c| c.run_hash(&dataset.content_hash))
        .collect();
    let epochs: Vec<i32> = expansion.configs.iter().map(|c| c.epochs as i32).collect();
    let estimates: Vec<i64> = expansion
        .configs
        .iter()
        .map(|c| poet_core::resources::estimate_memory_bytes(c, dataset.vocab))
        .collect();
    let needs = spec.resources();

    if dry_run {
        let existing: Vec<RunRow> = sqlx::query_as(&format!(
            "{} where r.config_hash = any($1) order by r.id",
            RunRow::SELECT
        ))
        .bind(&hashes)
        .fetch_all(pool)
        .await?;
        let known: std::collections::HashSet<&str> =
            existing.iter().map(|r| r.config_hash.as_str()).collect();
        let planned = configs
            .iter()
            .zip(&hashes)
            .filter(|(_, h)| !known.contains(h.as_str()))
            .map(|(c, _)| c.clone())
            .collect();
        return Ok(Submitted {
            sweep: None,
            created: vec![],
            existing,
            duplicates_in_spec: expansion.duplicates,
            planned,
            warnings: vec![],
        });
    }

    let mut tx = pool.begin().await?;
    let sweep_id: i64 = sqlx::query_scalar(
        "insert into sweeps (name, dataset_id, spec, spec_format, priority, adaptive, max_concurrent)
         values ($1, $2, $3, $4, $5, $6, $7) returning id",
    )
    .bind(&name)
    .bind(dataset.id)
    .bind(spec_text)
    .bind(format.to_string())
    .bind(spec.priority)
    .bind(spec.plan().adaptive())
    .bind(spec.plan().max_concurrent.map(|m| m as i32))
    .fetch_one(&mut *tx)
    .await?;
    let created_ids: Vec<i64> = sqlx::query_scalar(
        "insert into runs (sweep_id, dataset_id, config, config_hash, priority, max_attempts, epochs_total,
             est_memory_bytes, need_gpu, min_gpu_memory_bytes, min_memory_bytes, need_labels)
         select $1, $2, t.c::jsonb, t.h, $3, $4, t.e, t.m, $9, $10, $11, $12
         from unnest($5::text[], $6::text[], $7::int[], $8::bigint[]) with ordinality as t(c, h, e, m, n)
         order by t.n
         on conflict (config_hash) do nothing
         returning id",
    )
    .bind(sweep_id)
    .bind(dataset.id)
    .bind(spec.priority)
    .bind(spec.max_attempts)
    .bind(&configs)
    .bind(&hashes)
    .bind(&epochs)
    .bind(&estimates)
    .bind(needs.need_gpu())
    .bind(needs.min_gpu_memory_bytes)
    .bind(needs.min_memory_bytes)
    .bind(sqlx::types::Json(&needs.labels))
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query(
        "insert into sweep_runs (sweep_id, run_id) select $1, id from runs where config_hash = any($2)
         on conflict do nothing",
    )
    .bind(sweep_id)
    .bind(&hashes)
    .execute(&mut *tx)
    .await?;
    let all: Vec<RunRow> = sqlx::query_as(&format!(
        "{} where r.config_hash = any($1) order by r.id",
        RunRow::SELECT
    ))
    .bind(&hashes)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let created_set: std::collections::HashSet<i64> = created_ids.into_iter().collect();
    let (created, existing): (Vec<RunRow>, Vec<RunRow>) =
        all.into_iter().partition(|r| created_set.contains(&r.id));
    // Read back through the one sweep statement: its runs by state, shared ones included.
    let sweep: SweepRow = crate::history::select_sweeps(Some(sweep_id), 1, 0)
        .fetch_one(pool)
        .await?;
    let all_ids: Vec<i64> = created.iter().chain(&existing).map(|r| r.id).collect();
    let warnings = no_fit_warnings(pool, &all_ids).await?;
    tracing::info!(
        sweep_id = sweep.id,
        created = created.len(),
        existing = existing.len(),
        "sweep submitted"
    );
    Ok(Submitted {
        sweep: Some(sweep),
        created,
        existing,
        duplicates_in_spec: expansion.duplicates,
        planned: vec![],
        warnings,
    })
}

/// Fills `no_fit` of the queued runs among `runs` that no recently seen worker can hold
/// ([`no_fit_reasons`]; one query, none when no run is queued).
pub async fn fill_no_fit(pool: &PgPool, runs: &mut [poet_proto::v1::Run]) -> Result<()> {
    let queued: Vec<i64> = runs
        .iter()
        .filter(|r| r.state == poet_proto::v1::RunState::Queued as i32)
        .map(|r| r.id)
        .collect();
    if queued.is_empty() {
        return Ok(());
    }
    let mut no_fit: std::collections::HashMap<i64, String> =
        no_fit_reasons(pool, &queued).await?.into_iter().collect();
    for r in runs {
        if let Some(why) = no_fit.remove(&r.id) {
            r.no_fit = why;
        }
    }
    Ok(())
}

/// The reasons queued runs among `run_ids` cannot be placed, by run id: runs that no worker
/// seen in the last hour can hold (`poet_run_fits`, the claim's own test). Runs not queued
/// are left out: they were placed, or never will be.
pub async fn no_fit_reasons(pool: &PgPool, run_ids: &[i64]) -> Result<Vec<(i64, String)>> {
    let rows: Vec<(i64, Option<bool>, i64, i64, serde_json::Value, i64)> = sqlx::query_as(
        "select r.id, r.need_gpu, r.min_gpu_memory_bytes, r.min_memory_bytes, r.need_labels,
             r.est_memory_bytes
         from runs r
         where r.id = any($1) and r.state = 'queued' and not exists (
             select 1 from workers w where w.last_seen_at > now() - interval '1 hour'
                 and poet_run_fits(r.need_gpu, r.min_gpu_memory_bytes, r.min_memory_bytes,
                     r.need_labels, r.est_memory_bytes, w.device <> 'cpu', w.gpu_memory_bytes,
                     w.memory_bytes, w.labels))
         order by r.id",
    )
    .bind(run_ids)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, gpu, min_gpu, min_mem, labels, est)| {
            (id, no_fit_reason(gpu, min_gpu, min_mem, &labels, est))
        })
        .collect())
}

/// "no worker fits: needs 9.1 GB GPU, labels zone=a": what a run needs, for a run that no
/// worker can hold.
pub fn no_fit_reason(
    need_gpu: Option<bool>,
    min_gpu_memory_bytes: i64,
    min_memory_bytes: i64,
    labels: &serde_json::Value,
    est_memory_bytes: i64,
) -> String {
    use poet_core::resources::format_gb;
    let mut needs = Vec::new();
    match need_gpu {
        Some(true) => needs.push(format!(
            "{} GPU",
            format_gb(min_gpu_memory_bytes.max(est_memory_bytes))
        )),
        Some(false) => needs.push(format!("{} on a CPU worker", format_gb(est_memory_bytes))),
        None => needs.push(format!(
            "{} (GPU or host memory)",
            format_gb(est_memory_bytes)
        )),
    }
    if min_memory_bytes > 0 {
        needs.push(format!("{} host memory", format_gb(min_memory_bytes)));
    }
    if let Some(m) = labels.as_object().filter(|m| !m.is_empty()) {
        let pairs: Vec<String> = m
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect();
        needs.push(format!("labels {}", pairs.join(",")));
    }
    format!("no worker fits: needs {}", needs.join(", "))
}

/// The submit reply's warnings: one line per distinct reason, with how many runs it covers.
async fn no_fit_warnings(pool: &PgPool, run_ids: &[i64]) -> Result<Vec<String>> {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for (_, reason) in no_fit_reasons(pool, run_ids).await? {
        *counts.entry(reason).or_default() += 1;
    }
    Ok(counts
        .into_iter()
        .map(|(reason, n)| {
            let runs = if n == 1 { "run" } else { "runs" };
            format!("{n} {runs}: {reason}")
        })
        .collect())
}

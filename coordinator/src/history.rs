//! Run-history queries: sweeps, runs (filtered, ordered, paginated), one run in full,
//! workers and datasets, and the tags and notes users leave on runs and sweeps. Each answer
//! is a fixed number of queries (no N+1), on indexed columns, and rows convert to `poet.v1`
//! messages here (the web API and the CLI turn those into `poet_proto::views`), but for a
//! dataset: the CLI reads datasets from Postgres itself, so a dataset row becomes the view
//! here ([`dataset_view`]) and gRPC converts from that.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use poet_core::filter::{self, Cursor, Expr, Field, Filter, Order, Param, SortType, SortValue};
use poet_proto::{v1, views};
use poet_sql::datasets::DatasetInfo;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::{FromRow, PgPool, Row};

use crate::error::{Result, ServiceError};
use crate::queue::CheckpointRow;

/// A run row with its config as text.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RunRow {
    /// Id.
    pub id: i64,
    /// Creating sweep.
    pub sweep_id: i64,
    /// Dataset.
    pub dataset_id: i64,
    /// Config JSON text.
    pub config_text: String,
    /// Config hash.
    pub config_hash: String,
    /// State name.
    pub state: String,
    /// Priority.
    pub priority: i32,
    /// Attempt (lease count).
    pub attempt: i32,
    /// Max failed attempts.
    pub max_attempts: i32,
    /// Epochs configured.
    pub epochs_total: i32,
    /// Epochs reported.
    pub epochs_done: i32,
    /// Lease holder.
    pub lease_owner: Option<i64>,
    /// Pending cancel.
    pub cancel_requested: bool,
    /// Best validation loss.
    pub best_val_loss: Option<f64>,
    /// Its epoch.
    pub best_epoch: Option<i32>,
    /// Latest train loss.
    pub last_train_loss: Option<f64>,
    /// Latest validation loss.
    pub last_val_loss: Option<f64>,
    /// Error text.
    pub error: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// First started.
    pub started_at: Option<DateTime<Utc>>,
    /// Finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// Why its sweep's scheduler paused or stopped it.
    pub halt_reason: Option<String>,
    /// The run it was forked from.
    pub parent_run_id: Option<i64>,
    /// The checkpoint it was forked from.
    pub parent_checkpoint_id: Option<i64>,
    /// Training seconds (the sum of its epochs' durations).
    pub total_duration_s: Option<f64>,
    /// The last epoch's characters per second.
    pub last_chars_per_sec: Option<f64>,
}

/// The columns [`RunRow`] reads (alias `r`), as a literal so that a statement can add its own.
macro_rules! run_columns {
    () => {
        "r.id, r.sweep_id, r.dataset_id, r.config::text as config_text, r.config_hash, r.state,
        r.priority, r.attempt, r.max_attempts, r.epochs_total, r.epochs_done, r.lease_owner, r.cancel_requested,
        r.best_val_loss, r.best_epoch, r.last_train_loss, r.last_val_loss, r.error, r.created_at, r.started_at,
        r.finished_at, r.halt_reason, r.parent_run_id, r.parent_checkpoint_id, r.total_duration_s,
        r.last_chars_per_sec"
    };
}

impl RunRow {
    /// The select list every run query uses (alias `r`).
    pub const SELECT: &'static str = concat!("select ", run_columns!(), " from runs r");
}

/// A sweep row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SweepRow {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Dataset.
    pub dataset_id: i64,
    /// Spec text.
    pub spec: String,
    /// Priority.
    pub priority: i32,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Runs attached.
    pub runs: i32,
    /// Paused by a user.
    pub paused: bool,
    /// Cap on its running runs.
    pub max_concurrent: Option<i32>,
    /// When its scheduler finished it.
    pub finished_at: Option<DateTime<Utc>>,
    /// Its runs by state, in the order of `poet_core::filter::STATES` (the statement's array).
    pub counts: Vec<i32>,
    /// Lowest validation loss of its runs.
    pub best_val_loss: Option<f64>,
    /// The run that reached it (the lowest id among equals).
    pub best_run_id: Option<i64>,
}

/// Converts a timestamp.
pub fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

fn ots(t: Option<DateTime<Utc>>) -> Option<prost_types::Timestamp> {
    t.map(ts)
}

impl From<RunRow> for v1::Run {
    fn from(r: RunRow) -> v1::Run {
        let state = v1::RunState::from_db_name(&r.state).unwrap_or(v1::RunState::Unspecified);
        v1::Run {
            id: r.id,
            sweep_id: r.sweep_id,
            dataset_id: r.dataset_id,
            config_json: r.config_text,
            config_hash: r.config_hash,
            state: state as i32,
            priority: r.priority,
            attempt: r.attempt,
            max_attempts: r.max_attempts,
            epochs_done: r.epochs_done,
            epochs_total: r.epochs_total,
            best_val_loss: r.best_val_loss.unwrap_or(f64::NAN),
            best_epoch: r.best_epoch.unwrap_or(0),
            worker_id: r.lease_owner.unwrap_or(0),
            error: r.error.unwrap_or_default(),
            cancel_requested: r.cancel_requested,
            created_at: Some(ts(r.created_at)),
            started_at: ots(r.started_at),
            finished_at: ots(r.finished_at),
            last_train_loss: r.last_train_loss.unwrap_or(f64::NAN),
            last_val_loss: r.last_val_loss.unwrap_or(f64::NAN),
            halt_reason: r.halt_reason.unwrap_or_default(),
            parent_run_id: r.parent_run_id.unwrap_or(0),
            parent_checkpoint_id: r.parent_checkpoint_id.unwrap_or(0),
            tags: vec![],
            notes: vec![],
            duration_s: r.total_duration_s.unwrap_or(f64::NAN),
            chars_per_sec: r.last_chars_per_sec.unwrap_or(f64::NAN),
            // Filled by ListRuns for queued runs (`crate::sweeps::no_fit_reasons`).
            no_fit: String::new(),
        }
    }
}

impl From<SweepRow> for v1::Sweep {
    fn from(s: SweepRow) -> v1::Sweep {
        v1::Sweep {
            id: s.id,
            name: s.name,
            dataset_id: s.dataset_id,
            spec: s.spec,
            priority: s.priority,
            runs: s.runs,
            created_at: Some(ts(s.created_at)),
            paused: s.paused,
            max_concurrent: s.max_concurrent.unwrap_or(0),
            finished_at: ots(s.finished_at),
            tags: vec![],
            notes: vec![],
            counts: filter::STATES
                .iter()
                .zip(s.counts)
                .filter(|(_, n)| *n > 0)
                .map(|(k, n)| (k.to_string(), n))
                .collect(),
            best_val_loss: s.best_val_loss.unwrap_or(f64::NAN),
            best_run_id: s.best_run_id.unwrap_or(0),
        }
    }
}

impl From<CheckpointRow> for v1::Checkpoint {
    fn from(c: CheckpointRow) -> v1::Checkpoint {
        v1::Checkpoint {
            id: c.id,
            run_id: c.run_id,
            epoch: c.epoch,
            size: c.size,
            sha256: c.sha256,
            val_loss: c.val_loss,
            created_at: Some(ts(c.created_at)),
        }
    }
}

/// The one sweep statement: one sweep (`$1` its id) or a page of sweeps (`$1` null), newest
/// first, `$2` at most, `$3` skipped, each with its attached runs by state and its best run,
/// aggregated in one grouped pass over those sweeps' runs. A constant, bound, never assembled
/// with `format!` (issue 18). gRPC `ListSweeps`/`GetSweep`, the control actions, a
/// submission's answer and the web API all read a sweep through it ([`select_sweeps`]). Its
/// price (ListSweeps of 10 sweeps x 1,000 runs in a 10,000-run table, Postgres execution
/// time, 2-core VM under load 7-10): 11-24 ms, against 1.4 ms for the count of `sweep_runs`
/// it replaced (which had no counts by state nor best run; the web list computed them with a
/// GROUP BY of its own), and 21-41 ms for a lateral aggregate per sweep (a hash join with the
/// whole runs table for each sweep). One sweep of 1,000 runs: 2.6 ms, as the two queries
/// GetSweep made before.
pub const SWEEP_SELECT: &str = "with s as (select * from sweeps s
             where ($1::bigint is null or s.id = $1) order by s.id desc limit $2 offset $3),
         c as (select sr.sweep_id, count(*)::int as runs,
             array[count(*) filter (where r.state = 'queued'), count(*) filter (where r.state = 'running'),
                 count(*) filter (where r.state = 'paused'), count(*) filter (where r.state = 'stopped'),
                 count(*) filter (where r.state = 'succeeded'), count(*) filter (where r.state = 'failed'),
                 count(*) filter (where r.state = 'cancelled')]::int[] as counts,
             min(r.best_val_loss) as best_val_loss,
             (array_agg(r.id order by r.best_val_loss, r.id) filter (where r.best_val_loss is not null))[1]
                 as best_run_id
             from sweep_runs sr join runs r on r.id = sr.run_id
             where sr.sweep_id in (select id from s) group by sr.sweep_id)
         select s.id, s.name, s.dataset_id, s.spec, s.priority, s.created_at, coalesce(c.runs, 0) as runs,
             s.paused, s.max_concurrent, s.finished_at,
             coalesce(c.counts, array[0, 0, 0, 0, 0, 0, 0]) as counts, c.best_val_loss, c.best_run_id
         from s left join c on c.sweep_id = s.id order by s.id desc";

/// [`SWEEP_SELECT`] for sweep `id` (one row at most), or for a page (`None`: `limit` rows
/// after `offset`).
pub fn select_sweeps<'q>(
    id: Option<i64>,
    limit: i64,
    offset: i64,
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, SweepRow, sqlx::postgres::PgArguments> {
    sqlx::query_as(SWEEP_SELECT)
        .bind(id)
        .bind(limit)
        .bind(offset)
}

/// One sweep, its tags and notes, by id.
pub async fn sweep(pool: &PgPool, id: i64) -> Result<v1::Sweep> {
    let row: SweepRow = select_sweeps(Some(id), 1, 0)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("no sweep {id}")))?;
    let mut sweeps = vec![row.into()];
    annotate_sweeps(pool, &mut sweeps).await?;
    Ok(sweeps.remove(0))
}

/// A requested page size: 50 when unset, at most 1,000.
fn page_size(requested: i32) -> i64 {
    if requested <= 0 {
        50
    } else {
        requested.min(1000) as i64
    }
}

fn page(page_size_requested: i32, page_token: &str) -> Result<(i64, i64)> {
    let size = page_size(page_size_requested);
    let offset = if page_token.is_empty() {
        0
    } else {
        page_token
            .parse::<i64>()
            .ok()
            .filter(|o| *o >= 0)
            .ok_or_else(|| {
                ServiceError::Invalid(format!(
                    "page_token: '{page_token}' is not a token from a previous page"
                ))
            })?
    };
    Ok((size, offset))
}

fn next_token(got: usize, size: i64, offset: i64) -> String {
    if got as i64 > size {
        (offset + size).to_string()
    } else {
        String::new()
    }
}

/// Sweeps, newest first, with their tags and notes: one page.
pub async fn list_sweeps(
    pool: &PgPool,
    page_size: i32,
    page_token: &str,
) -> Result<(Vec<v1::Sweep>, String)> {
    let (size, offset) = page(page_size, page_token)?;
    let mut rows: Vec<SweepRow> = select_sweeps(None, size + 1, offset)
        .fetch_all(pool)
        .await?;
    let token = next_token(rows.len(), size, offset);
    rows.truncate(size as usize);
    let mut sweeps: Vec<v1::Sweep> = rows.into_iter().map(Into::into).collect();
    annotate_sweeps(pool, &mut sweeps).await?;
    Ok((sweeps, token))
}

/// One sweep, its counts by state and its best run.
pub async fn get_sweep(pool: &PgPool, id: i64) -> Result<v1::GetSweepResponse> {
    let sweep = sweep(pool, id).await?;
    let best: Option<RunRow> = if sweep.best_run_id == 0 {
        None
    } else {
        sqlx::query_as(&format!("{} where r.id = $1", RunRow::SELECT))
            .bind(sweep.best_run_id)
            .fetch_optional(pool)
            .await?
    };
    // Epochs from the runs' summary column (one indexed pass over the sweep's runs); hours
    // need every epoch row, so they are summed only for a sweep with a worker-hour budget
    // (GetSweep of a 1,000-run, 100,000-epoch sweep: 5 ms, against 70 ms for the epoch scan).
    let spent = sqlx::query(
        "select coalesce(sum(r.epochs_done), 0)::bigint as epochs, s.spec_format
         from sweeps s left join runs r on r.sweep_id = s.id where s.id = $1 group by s.spec_format",
    )
    .bind(id)
    .fetch_one(pool)
    .await?;
    let plan_json =
        crate::scheduler::plan_json(&sweep.spec, &spent.get::<String, _>("spec_format"));
    let hours_spent: f64 = if plan_json.contains("\"worker_hours\"") {
        sqlx::query_scalar(
            "select coalesce(sum(e.duration_s), 0) / 3600 from runs r join epochs e on e.run_id = r.id
             where r.sweep_id = $1",
        )
        .bind(id)
        .fetch_one(pool)
        .await?
    } else {
        0.0
    };
    let mut best: Vec<v1::Run> = best.into_iter().map(Into::into).collect();
    annotate_runs(pool, &mut best).await?;
    Ok(v1::GetSweepResponse {
        counts: sweep.counts.clone(),
        sweep: Some(sweep),
        best_run: best.pop(),
        decisions: crate::scheduler::decisions(pool, id).await?,
        plan_json,
        epochs_spent: spent.get("epochs"),
        hours_spent,
    })
}

/// Every run attached to a sweep (created or shared), by id, with tags, notes and `no_fit`
/// (as `ListRuns` by sweep answers them): the runs of `GET /api/v1/sweeps/{id}`.
pub async fn sweep_runs(pool: &PgPool, id: i64) -> Result<Vec<v1::Run>> {
    let rows: Vec<RunRow> = sqlx::query_as(&format!(
        "{} join sweep_runs sr on sr.run_id = r.id where sr.sweep_id = $1 order by r.id",
        RunRow::SELECT
    ))
    .bind(id)
    .fetch_all(pool)
    .await?;
    let mut runs: Vec<v1::Run> = rows.into_iter().map(Into::into).collect();
    annotate_runs(pool, &mut runs).await?;
    crate::sweeps::fill_no_fit(pool, &mut runs).await?;
    Ok(runs)
}

/// A request's filter: its `filter` expression and its typed fields (sweep, state, dataset,
/// config pairs), joined by `and`.
fn request_filter(req: &v1::ListRunsRequest) -> Result<Filter> {
    let mut f =
        Filter::parse(&req.filter).map_err(|e| ServiceError::Invalid(format!("filter: {e}")))?;
    if req.sweep_id != 0 {
        f = f.and(Expr::eq(Field::Sweep, Param::Int(req.sweep_id)));
    }
    let state = v1::RunState::try_from(req.state).unwrap_or(v1::RunState::Unspecified);
    if state != v1::RunState::Unspecified {
        f = f.and(Expr::eq(
            Field::State,
            Param::Text(state.db_name().to_string()),
        ));
    }
    if req.dataset_id != 0 {
        f = f.and(Expr::eq(Field::Dataset, Param::Int(req.dataset_id)));
    }
    let mut keys: Vec<_> = req.config.iter().collect();
    keys.sort();
    for (k, v) in keys {
        if !poet_core::config::KEYS.contains(&k.as_str()) {
            return Err(ServiceError::Invalid(format!(
                "config.{k}: unknown config key"
            )));
        }
        // Values are JSON text ("2", "\"seq\""); anything else is the string itself.
        let value: serde_json::Value =
            serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.clone()));
        f = f.and(Expr::eq(Field::Config(k.clone()), Param::Json(value)));
    }
    Ok(f)
}

/// A compiled filter's parameters as the arguments of one statement, in order (`$1`, `$2`,
/// ...), for `sqlx::query_with` and its `_as`/`_scalar` kin: the one place a [`Param`] meets
/// sqlx (the history queries, the loadgen's EXPLAIN, the filter tests).
pub fn arguments(params: Vec<Param>) -> PgArguments {
    use sqlx::Arguments;
    let mut args = PgArguments::default();
    for p in params {
        let added = match p {
            Param::Int(v) => args.add(v),
            Param::Float(v) => args.add(v),
            Param::Text(v) => args.add(v),
            Param::Time(v) => args.add(v),
            Param::Json(v) => args.add(v),
        };
        added.expect("encoding a plain value into Postgres arguments cannot fail");
    }
    args
}

/// The `sort_key` column of a row, as a page token carries it.
fn sort_value(row: &PgRow, ty: SortType) -> Result<SortValue> {
    let v = match ty {
        SortType::Int => row
            .try_get::<Option<i64>, _>("sort_key")?
            .map(SortValue::Int),
        SortType::Float => row
            .try_get::<Option<f64>, _>("sort_key")?
            .map(SortValue::Float),
        SortType::Text => row
            .try_get::<Option<String>, _>("sort_key")?
            .map(SortValue::Text),
        SortType::Time => row
            .try_get::<Option<DateTime<Utc>>, _>("sort_key")?
            .map(SortValue::Time),
        SortType::Json => row
            .try_get::<Option<serde_json::Value>, _>("sort_key")?
            .map(SortValue::Json),
    };
    Ok(v.unwrap_or(SortValue::Null))
}

/// Runs matching a request's filter (see [`poet_core::filter`]), in its order, one keyset
/// page at a time: one statement, every value bound. The next page token carries the last
/// row's sort value and id.
#[tracing::instrument(name = "coordinator.history.list_runs", skip_all)]
pub async fn list_runs(pool: &PgPool, req: &v1::ListRunsRequest) -> Result<(Vec<v1::Run>, String)> {
    let size = page_size(req.page_size);
    let filter = request_filter(req)?;
    let order =
        Order::parse(&req.order_by).map_err(|e| ServiceError::Invalid(format!("order_by: {e}")))?;
    let after = if req.page_token.is_empty() {
        None
    } else {
        Some(
            filter::decode_token(&req.page_token, &filter, &order)
                .map_err(|e| ServiceError::Invalid(format!("page_token: {e}")))?,
        )
    };
    let mut c = filter::compile(&filter, &order, after.as_ref());
    let limit = c.params.push(Param::Int(size + 1));
    let sql = format!(
        "select {}, {} as sort_key from runs r where {} order by {} limit {limit}",
        run_columns!(),
        c.sort_key,
        c.where_sql,
        c.order_sql
    );
    let rows = sqlx::query_with(&sql, arguments(c.params.into_vec()))
        .fetch_all(pool)
        .await?;
    // The row past the page only says that there is a next one.
    let more = rows.len() as i64 > size;
    let page = &rows[..rows.len().min(size as usize)];
    let token = match (more, page.last()) {
        (true, Some(last)) => filter::encode_token(
            &filter,
            &order,
            &Cursor {
                value: sort_value(last, c.sort_type)?,
                id: last.try_get("id")?,
            },
        ),
        _ => String::new(),
    };
    let mut runs = page
        .iter()
        .map(|r| RunRow::from_row(r).map(v1::Run::from))
        .collect::<Result<Vec<_>, _>>()?;
    annotate_runs(pool, &mut runs).await?;
    Ok((runs, token))
}

/// The config keys of the runs matching a request's filter, sorted: the config columns of
/// an export, known before its first row is written (one statement, every value bound).
pub async fn config_keys(pool: &PgPool, req: &v1::ListRunsRequest) -> Result<Vec<String>> {
    let filter = request_filter(req)?;
    let order = Order::parse("").map_err(|e| ServiceError::Invalid(format!("order_by: {e}")))?;
    let c = filter::compile(&filter, &order, None);
    let sql = format!(
        "select distinct k from runs r cross join lateral jsonb_object_keys(r.config) k
         where {} order by k",
        c.where_sql
    );
    Ok(sqlx::query_with(&sql, arguments(c.params.into_vec()))
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect())
}

/// NotFound unless run `id` exists.
pub async fn require_run(pool: &PgPool, id: i64) -> Result<()> {
    let exists: Option<i64> = sqlx::query_scalar("select id from runs where id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?;
    exists
        .map(|_| ())
        .ok_or_else(|| ServiceError::NotFound(format!("no run {id}")))
}

/// One run with attempts, epochs, checkpoints, tags and notes: six queries.
pub async fn get_run(pool: &PgPool, id: i64) -> Result<v1::GetRunResponse> {
    let run: RunRow = sqlx::query_as(&format!("{} where r.id = $1", RunRow::SELECT))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("no run {id}")))?;
    let attempts = sqlx::query(
        "select a.attempt, a.worker_id, w.host, a.started_at, a.ended_at, a.outcome, a.detail, a.resumed_from_epoch
         from run_attempts a join workers w on w.id = a.worker_id where a.run_id = $1 order by a.attempt",
    )
    .bind(id)
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|r| v1::Attempt {
        attempt: r.get("attempt"),
        worker_id: r.get("worker_id"),
        worker_host: r.get("host"),
        started_at: Some(ts(r.get("started_at"))),
        ended_at: ots(r.get("ended_at")),
        outcome: r.get::<Option<String>, _>("outcome").unwrap_or_default(),
        detail: r.get::<Option<String>, _>("detail").unwrap_or_default(),
        resumed_from_epoch: r.get("resumed_from_epoch"),
    })
    .collect();
    let epochs = sqlx::query(
        "select epoch, attempt, train_loss, val_loss, duration_s, chars_per_sec, metrics::text as metrics, reported_at
         from epochs where run_id = $1 order by epoch",
    )
    .bind(id)
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|r| v1::Epoch {
        epoch: r.get("epoch"),
        attempt: r.get("attempt"),
        train_loss: r.get("train_loss"),
        val_loss: r.get("val_loss"),
        duration_s: r.get("duration_s"),
        chars_per_sec: r.get("chars_per_sec"),
        metrics_json: r.get("metrics"),
        reported_at: Some(ts(r.get("reported_at"))),
    })
    .collect();
    let checkpoints: Vec<CheckpointRow> =
        sqlx::query_as("select * from checkpoints where run_id = $1 and live order by epoch")
            .bind(id)
            .fetch_all(pool)
            .await?;
    let best = checkpoints
        .iter()
        .min_by(|a, b| {
            a.val_loss
                .total_cmp(&b.val_loss)
                .then(a.epoch.cmp(&b.epoch))
        })
        .map(|c| c.id)
        .unwrap_or(0);
    let mut run = [v1::Run::from(run)];
    annotate_runs(pool, &mut run).await?;
    let [run] = run;
    Ok(v1::GetRunResponse {
        run: Some(run),
        attempts,
        epochs,
        checkpoints: checkpoints.into_iter().map(Into::into).collect(),
        best_checkpoint_id: best,
    })
}

/// Workers, most recently seen first, each with the run it trains (its lowest-id running
/// lease) and that run's progress: the one query of gRPC `ListWorkers` and
/// `GET /api/v1/workers` (they used to be two, which could name different current runs).
pub async fn list_workers(pool: &PgPool, include_stale: bool) -> Result<Vec<v1::Worker>> {
    let rows = sqlx::query(
        "select w.id, w.host, w.device, w.gpu_name, w.gpu_memory_bytes, w.version, w.last_seen_at, w.registered_at,
            w.cpu_threads, w.memory_bytes, w.labels,
            extract(epoch from now() - w.last_seen_at)::float8 as ago, r.id as run_id, r.epochs_done, r.epochs_total,
            -- the throughput of its last reported epoch
            (select e.chars_per_sec from
                 (select a.run_id, a.attempt, a.started_at from run_attempts a where a.worker_id = w.id
                  order by a.started_at desc limit 3) a
                 cross join lateral (select e.chars_per_sec from epochs e
                     where e.run_id = a.run_id and e.attempt = a.attempt order by e.epoch desc limit 1) e
             order by a.started_at desc limit 1) as chars_per_sec
         from workers w left join lateral
            (select id, epochs_done, epochs_total from runs where lease_owner = w.id and state = 'running' order by id limit 1) r on true
         where $1 or w.last_seen_at > now() - interval '1 hour'
         order by w.last_seen_at desc, w.id",
    )
    .bind(include_stale)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| v1::Worker {
            id: r.get("id"),
            host: r.get("host"),
            device: r.get("device"),
            gpu_name: r.get("gpu_name"),
            gpu_memory_bytes: r.get("gpu_memory_bytes"),
            current_run_id: r.get::<Option<i64>, _>("run_id").unwrap_or(0),
            last_seen_at: Some(ts(r.get("last_seen_at"))),
            registered_at: Some(ts(r.get("registered_at"))),
            version: r.get("version"),
            current_epoch: r.get::<Option<i32>, _>("epochs_done").unwrap_or(0),
            current_epochs_total: r.get::<Option<i32>, _>("epochs_total").unwrap_or(0),
            seen_seconds_ago: r.get("ago"),
            cpu_threads: r.get("cpu_threads"),
            memory_bytes: r.get("memory_bytes"),
            labels: serde_json::from_value(r.get("labels")).unwrap_or_default(),
            chars_per_sec: r.get::<Option<f64>, _>("chars_per_sec").unwrap_or(0.0),
        })
        .collect())
}

/// A dataset row as the one dataset view (`poet_proto::views::Dataset`), which the web API
/// and `poet datasets --json` print and gRPC converts from. The stored counts are read into
/// their typed shape here (a key an older ingest did not write is 0).
pub fn dataset_view(d: DatasetInfo) -> views::Dataset {
    let counts = serde_json::from_value(d.counts).unwrap_or_else(|e| {
        tracing::warn!(dataset_id = d.id, error = %e, "dataset counts do not parse");
        views::DatasetCounts::default()
    });
    views::Dataset {
        vocab_size: d.vocab.chars().count(),
        id: d.id,
        name: d.name,
        version: d.version,
        content_hash: d.content_hash,
        params_hash: d.params_hash,
        poems: d.poems,
        chars: d.chars,
        vocab: d.vocab,
        shards: d.shards,
        validation_shards: d.validation_shards,
        params: d.params,
        counts,
        created_at: Some(d.created_at),
    }
}

/// Ready dataset versions (all, or those named `name`), newest first.
pub async fn list_datasets(pool: &PgPool, name: &str) -> Result<Vec<DatasetInfo>> {
    let mut all = poet_sql::datasets::list_datasets(pool)
        .await
        .map_err(|e| match e {
            poet_sql::datasets::DatasetError::Db(e) => ServiceError::from(e),
            other => ServiceError::Storage(other.to_string()),
        })?;
    all.retain(|d| name.is_empty() || d.name == name);
    all.sort_by_key(|d| std::cmp::Reverse((d.created_at, d.id)));
    Ok(all)
}

/// One ready dataset by id.
pub async fn get_dataset(pool: &PgPool, id: i64) -> Result<DatasetInfo> {
    poet_sql::datasets::get(pool, id)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("no dataset {id}")))
}

/// What tags and notes are left on: a run or a sweep. Each names its own fixed tables, so
/// the statements below are the same text for both but for those names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A run (`run_tags`, `run_notes`).
    Run,
    /// A sweep (`sweep_tags`, `sweep_notes`).
    Sweep,
}

impl Target {
    /// (owner table, tags table, notes table, key column, word for messages).
    fn tables(
        self,
    ) -> (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
    ) {
        match self {
            Target::Run => ("runs", "run_tags", "run_notes", "run_id", "run"),
            Target::Sweep => ("sweeps", "sweep_tags", "sweep_notes", "sweep_id", "sweep"),
        }
    }

    async fn require(self, pool: &PgPool, id: i64) -> Result<()> {
        let (owner, .., word) = self.tables();
        let exists: Option<i64> =
            sqlx::query_scalar(&format!("select id from {owner} where id = $1"))
                .bind(id)
                .fetch_optional(pool)
                .await?;
        exists
            .map(|_| ())
            .ok_or_else(|| ServiceError::NotFound(format!("no {word} {id}")))
    }
}

/// Who the caller is, as stored with a tag or note: the issued token's name, else the role of
/// the static token it presented (`client` with authentication off, loopback only).
pub async fn author(pool: &PgPool, caller: Option<&crate::auth::Caller>) -> Result<String> {
    let Some(c) = caller else {
        return Ok(crate::auth::Role::Client.as_str().to_string());
    };
    if let Some(id) = c.token_id {
        let name: Option<String> = sqlx::query_scalar("select name from api_tokens where id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?;
        if let Some(name) = name {
            return Ok(name);
        }
    }
    Ok(c.role.as_str().to_string())
}

fn check_tags(tags: &[String]) -> Result<()> {
    if tags.is_empty() {
        return Err(ServiceError::Invalid("tags: give at least one tag".into()));
    }
    if tags.len() > crate::limits::MAX_TAGS_PER_REQUEST {
        return Err(ServiceError::Invalid(format!(
            "tags: {} tags is over the limit of {} per request",
            tags.len(),
            crate::limits::MAX_TAGS_PER_REQUEST
        )));
    }
    tags.iter().try_for_each(|t| crate::limits::check_tag(t))
}

/// Adds `tags` to run or sweep `id` (one already there keeps its first author and time);
/// answers its tags and notes after.
pub async fn tag(
    pool: &PgPool,
    target: Target,
    id: i64,
    tags: &[String],
    author: &str,
) -> Result<v1::Annotations> {
    check_tags(tags)?;
    target.require(pool, id).await?;
    let (_, table, _, key, _) = target.tables();
    sqlx::query(&format!(
        "insert into {table} ({key}, tag, author) select $1, t, $3 from unnest($2::text[]) t
         on conflict do nothing"
    ))
    .bind(id)
    .bind(tags)
    .bind(author)
    .execute(pool)
    .await?;
    tracing::info!(id, ?target, ?tags, author, "tagged");
    one(pool, target, id).await
}

/// Removes `tags` from run or sweep `id`; NotFound, naming it, for a tag it does not have
/// (and then nothing is removed).
pub async fn untag(
    pool: &PgPool,
    target: Target,
    id: i64,
    tags: &[String],
) -> Result<v1::Annotations> {
    check_tags(tags)?;
    target.require(pool, id).await?;
    let (_, table, _, key, word) = target.tables();
    let mut tx = pool.begin().await?;
    let removed: Vec<String> = sqlx::query_scalar(&format!(
        "delete from {table} where {key} = $1 and tag = any($2) returning tag"
    ))
    .bind(id)
    .bind(tags)
    .fetch_all(&mut *tx)
    .await?;
    if let Some(missing) = tags.iter().find(|t| !removed.contains(t)) {
        return Err(ServiceError::NotFound(format!(
            "{word} {id} has no tag {missing:?}"
        )));
    }
    tx.commit().await?;
    one(pool, target, id).await
}

/// Leaves a note on run or sweep `id`; answers its tags and notes after.
pub async fn note(
    pool: &PgPool,
    target: Target,
    id: i64,
    text: &str,
    author: &str,
) -> Result<v1::Annotations> {
    crate::limits::check_note(text)?;
    target.require(pool, id).await?;
    let (_, _, table, key, _) = target.tables();
    sqlx::query(&format!(
        "insert into {table} ({key}, text, author) values ($1, $2, $3)"
    ))
    .bind(id)
    .bind(text)
    .bind(author)
    .execute(pool)
    .await?;
    one(pool, target, id).await
}

async fn one(pool: &PgPool, target: Target, id: i64) -> Result<v1::Annotations> {
    Ok(annotations(pool, target, &[id])
        .await?
        .remove(&id)
        .unwrap_or_default())
}

/// The tags and notes of every run or sweep in `ids` (two queries; those without any are
/// absent from the map).
pub async fn annotations(
    pool: &PgPool,
    target: Target,
    ids: &[i64],
) -> Result<HashMap<i64, v1::Annotations>> {
    let mut out: HashMap<i64, v1::Annotations> = HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let (_, tags, notes, key, _) = target.tables();
    let rows = sqlx::query(&format!(
        "select {key} as id, tag from {tags} where {key} = any($1) order by {key}, tag"
    ))
    .bind(ids)
    .fetch_all(pool)
    .await?;
    for r in rows {
        out.entry(r.get("id")).or_default().tags.push(r.get("tag"));
    }
    let rows = sqlx::query(&format!(
        "select {key} as id, text, author, created_at from {notes} where {key} = any($1)
         order by {key}, id"
    ))
    .bind(ids)
    .fetch_all(pool)
    .await?;
    for r in rows {
        out.entry(r.get("id")).or_default().notes.push(v1::Note {
            text: r.get("text"),
            author: r.get("author"),
            at: Some(ts(r.get("created_at"))),
        });
    }
    Ok(out)
}

/// Fills the tags and notes of `runs` (two queries whatever their number).
pub async fn annotate_runs(pool: &PgPool, runs: &mut [v1::Run]) -> Result<()> {
    let ids: Vec<i64> = runs.iter().map(|r| r.id).collect();
    let mut all = annotations(pool, Target::Run, &ids).await?;
    for r in runs {
        if let Some(a) = all.remove(&r.id) {
            (r.tags, r.notes) = (a.tags, a.notes);
        }
    }
    Ok(())
}

/// Fills the tags and notes of `sweeps` (two queries whatever their number).
pub async fn annotate_sweeps(pool: &PgPool, sweeps: &mut [v1::Sweep]) -> Result<()> {
    let ids: Vec<i64> = sweeps.iter().map(|s| s.id).collect();
    let mut all = annotations(pool, Target::Sweep, &ids).await?;
    for s in sweeps {
        if let Some(a) = all.remove(&s.id) {
            (s.tags, s.notes) = (a.tags, a.notes);
        }
    }
    Ok(())
}

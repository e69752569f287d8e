//! The dashboard's JSON API (`/api/v1/...`): read-only views of sweeps, runs, workers and
//! datasets, shaped for the pages (and for scripts). Each handler is a fixed number of
//! queries whatever the size of the sweep; loss curves are thinned to [`MAX_POINTS`] points
//! per run so a 1,000-run sweep stays a few megabytes at most.

use axum::extract::{Query, State};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use poet_proto::v1;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;

use super::{ApiError, Id, WebState};
use crate::auth::Caller;
use crate::error::ServiceError;
use crate::history::{RunRow, Target};

/// Most points kept per run and series in `/sweeps/{id}/curves` (the first and the last epoch
/// are always kept, with evenly spaced ones between).
pub const MAX_POINTS: usize = 200;

/// Most sweeps listed on `/sweeps`.
const MAX_SWEEPS: i32 = 500;

impl ApiError {
    /// The answer to a service error: the status [`ServiceError::http_status`] gives (409 for
    /// a conflict, 413 for too large, 503 when the database is out of reach) and the client's
    /// message; database and storage details are logged, never sent.
    pub fn service(e: ServiceError) -> Self {
        e.log_hidden();
        ApiError {
            status: e.http_status(),
            message: e.to_string(),
        }
    }
}

/// Runs by state: the one counts view (`poet_proto::views::Counts`).
pub type Counts = poet_proto::views::Counts;

/// A sweep as listed: the one sweep view (`poet_proto::views::Sweep`), as `poet sweeps list
/// --json` prints it too.
pub type SweepSummary = poet_proto::views::Sweep;

/// `GET /api/v1/sweeps`: newest first, with counts and the best loss (the one sweep
/// statement, `crate::history::SWEEP_SELECT`, as gRPC `ListSweeps`), at most [`MAX_SWEEPS`].
pub async fn list_sweeps(State(st): State<WebState>) -> Result<Json<Vec<SweepSummary>>, ApiError> {
    let (sweeps, _) = crate::history::list_sweeps(&st.pool, MAX_SWEEPS, "").await?;
    Ok(Json(sweeps.into_iter().map(Into::into).collect()))
}

/// A run as shown in tables: the one run view (`poet_proto::views::Run`) that `poet --json`
/// prints too: its config parsed, absent values null (not NaN, 0 or "").
pub type RunJson = poet_proto::views::Run;

/// A `RunRow` read here as the run view, with its tags and notes.
async fn run_views(st: &WebState, rows: Vec<RunRow>) -> Result<Vec<RunJson>, ApiError> {
    let mut runs: Vec<v1::Run> = rows.into_iter().map(Into::into).collect();
    crate::history::annotate_runs(&st.pool, &mut runs).await?;
    Ok(runs.into_iter().map(Into::into).collect())
}

/// Query of `/api/v1/runs`: the fields of `ListRuns`, as text so that a bad value is a JSON
/// error like every other (axum's own rejection is plain text).
#[derive(Debug, Deserialize)]
pub struct RunsQuery {
    /// A filter expression (`poet_core::filter`); empty: every run.
    #[serde(default)]
    pub filter: String,
    /// An order (`best_val_loss`, `-config.units`, ...); empty: newest first.
    #[serde(default)]
    pub order_by: String,
    /// At most this many (default 50, max 1000).
    #[serde(default)]
    pub page_size: String,
    /// `next_page_token` of the previous page.
    #[serde(default)]
    pub page_token: String,
}

/// A page of `GET /api/v1/runs`.
#[derive(Debug, Serialize, Deserialize)]
pub struct RunsPage {
    /// The runs, in the requested order.
    pub runs: Vec<RunJson>,
    /// The next page's `page_token`; empty on the last page.
    pub next_page_token: String,
}

/// `GET /api/v1/runs?filter=...&order_by=...&page_size=...&page_token=...`: runs matching a
/// filter, one page (one query; the same code as gRPC `ListRuns`). A malformed filter, order
/// or token is 400 with the column-pointing message.
pub async fn list_runs(
    State(st): State<WebState>,
    Query(q): Query<RunsQuery>,
) -> Result<Json<RunsPage>, ApiError> {
    let page_size = if q.page_size.is_empty() {
        0
    } else {
        q.page_size
            .parse::<i32>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                ServiceError::Invalid(format!(
                    "page_size: '{}' is not a positive whole number",
                    q.page_size
                ))
            })?
    };
    let req = v1::ListRunsRequest {
        filter: q.filter,
        order_by: q.order_by,
        page_size,
        page_token: q.page_token,
        ..Default::default()
    };
    let (rows, next) = crate::history::list_runs(&st.pool, &req).await?;
    Ok(Json(RunsPage {
        runs: rows.into_iter().map(Into::into).collect(),
        next_page_token: next,
    }))
}

/// `GET /api/v1/sweeps/{id}`: the one sweep detail view (`poet_proto::views::SweepDetail`),
/// as `poet sweeps show --json` prints it too.
pub type SweepDetail = poet_proto::views::SweepDetail;

/// One decision of a sweep's scheduler or a user's action (`poet_proto::views::Decision`).
pub type DecisionJson = poet_proto::views::Decision;

fn not_found(what: &str, id: i64) -> ApiError {
    ApiError::not_found(format!("no {what} {id}"))
}

/// `GET /api/v1/sweeps/{id}`: the sweep and all its runs (gRPC `GetSweep`'s reads, and one
/// for the runs).
pub async fn get_sweep(
    State(st): State<WebState>,
    Id(id): Id,
) -> Result<Json<SweepDetail>, ApiError> {
    let s = crate::history::get_sweep(&st.pool, id).await?;
    let runs = crate::history::sweep_runs(&st.pool, id).await?;
    Ok(Json(SweepDetail::new(s, runs)))
}

/// One run's losses per epoch, as parallel arrays (compact for 1,000 runs).
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Curve {
    /// Run id.
    pub run_id: i64,
    /// Epoch numbers kept.
    pub epochs: Vec<i32>,
    /// Train loss at those epochs.
    pub train: Vec<f64>,
    /// Validation loss at those epochs.
    pub val: Vec<f64>,
    /// Seconds from the run's start to each of those epochs' reports (the summed epoch
    /// durations where the start is unknown): the wall-time x axis, as the run page draws it.
    pub wall_s: Vec<f64>,
    /// Characters trained on up to each of those epochs (chars/s x seconds, summed over every
    /// epoch, thinned or not): the characters-seen x axis.
    pub chars: Vec<f64>,
    /// Whether points were dropped to stay under [`MAX_POINTS`].
    pub thinned: bool,
}

/// `GET /api/v1/sweeps/{id}/curves`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Curves {
    /// Sweep id.
    pub sweep_id: i64,
    /// One per run that reported at least one epoch, by run id.
    pub curves: Vec<Curve>,
}

/// `GET /api/v1/sweeps/{id}/curves`: every epoch of every run of the sweep (one query, plus
/// one to tell an empty sweep from an unknown id).
pub async fn sweep_curves(
    State(st): State<WebState>,
    Id(id): Id,
) -> Result<Json<Curves>, ApiError> {
    let exists: Option<i64> = sqlx::query_scalar("select id from sweeps where id = $1")
        .bind(id)
        .fetch_optional(&st.pool)
        .await?;
    exists.ok_or_else(|| not_found("sweep", id))?;
    // One row per run with its epochs as arrays: far fewer rows to decode than one per epoch.
    // The x axes other than the epoch are sums over the run's epochs so far, taken before
    // thinning (a thinned curve still says how far it got).
    let rows = sqlx::query(
        "select e.run_id, array_agg(e.epoch order by e.epoch) as epochs,
            array_agg(e.train_loss order by e.epoch) as train, array_agg(e.val_loss order by e.epoch) as val,
            array_agg(e.wall_s order by e.epoch) as wall_s, array_agg(e.chars order by e.epoch) as chars
         from (select e.run_id, e.epoch, e.train_loss, e.val_loss,
                   coalesce(case when e.reported_at >= r.started_at
                                 then extract(epoch from e.reported_at - r.started_at)::float8 end,
                            sum(e.duration_s) over w) as wall_s,
                   sum(e.chars_per_sec * e.duration_s) over w as chars
               from epochs e join sweep_runs sr on sr.run_id = e.run_id join runs r on r.id = e.run_id
               where sr.sweep_id = $1
               window w as (partition by e.run_id order by e.epoch)) e
         group by e.run_id order by e.run_id",
    )
    .bind(id)
    .fetch_all(&st.pool)
    .await?;
    let mut curves: Vec<Curve> = rows
        .iter()
        .map(|r| Curve {
            run_id: r.get("run_id"),
            epochs: r.get("epochs"),
            train: r.get("train"),
            val: r.get("val"),
            wall_s: r.get("wall_s"),
            chars: r.get("chars"),
            thinned: false,
        })
        .collect();
    for c in &mut curves {
        thin(c, MAX_POINTS);
    }
    Ok(Json(Curves {
        sweep_id: id,
        curves,
    }))
}

/// Keeps at most `max` points: the first, the last and evenly spaced ones between.
pub fn thin(c: &mut Curve, max: usize) {
    let n = c.epochs.len();
    if n <= max || max < 2 {
        return;
    }
    let keep: Vec<usize> = (0..max).map(|i| i * (n - 1) / (max - 1)).collect();
    c.epochs = keep.iter().map(|&i| c.epochs[i]).collect();
    c.train = keep.iter().map(|&i| c.train[i]).collect();
    c.val = keep.iter().map(|&i| c.val[i]).collect();
    c.wall_s = keep.iter().map(|&i| c.wall_s[i]).collect();
    c.chars = keep.iter().map(|&i| c.chars[i]).collect();
    c.thinned = true;
}

fn time(t: Option<prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
}

/// A piece of a poem: copied pieces are covered by a 4-gram found in the training corpus.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Segment {
    /// The text, verbatim.
    pub text: String,
    /// Inside a shared 4-gram.
    pub copied: bool,
}

/// A generated poem with its plagiarism report.
#[derive(Debug, Serialize, Deserialize)]
pub struct PoemJson {
    /// Position.
    pub index: i32,
    /// Temperature.
    pub temperature: f64,
    /// Text.
    pub text: String,
    /// The text cut into copied and original pieces (for highlighting).
    pub segments: Vec<Segment>,
    /// Report (null when the check did not run).
    pub report: Option<ReportJson>,
}

/// The 4-gram plagiarism report.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReportJson {
    /// Distinct 4-grams.
    pub ngrams: i64,
    /// Those found in the corpus.
    pub shared: Vec<String>,
    /// shared / ngrams.
    pub shared_fraction: f64,
    /// Longest copied run of words.
    pub longest_copied_run: i32,
    /// Over a threshold.
    pub flagged: bool,
}

impl From<v1::PlagiarismReport> for ReportJson {
    fn from(r: v1::PlagiarismReport) -> Self {
        ReportJson {
            ngrams: r.ngrams,
            shared: r.shared,
            shared_fraction: r.shared_fraction,
            longest_copied_run: r.longest_copied_run,
            flagged: r.flagged,
        }
    }
}

/// A generation request and its poems.
#[derive(Debug, Serialize, Deserialize)]
pub struct GenerationJson {
    /// Id.
    pub id: i64,
    /// Checkpoint epoch sampled from.
    pub epoch: i32,
    /// queued, running, done or failed.
    pub state: String,
    /// Parameters.
    pub params: Value,
    /// Error when failed.
    pub error: String,
    /// Poems when done.
    pub poems: Vec<PoemJson>,
    /// Report over all poems.
    pub overall: Option<ReportJson>,
    /// Created.
    pub created_at: Option<DateTime<Utc>>,
    /// The poems' quality beside the training corpus's (null until done, and for
    /// generations finished before reports were stored).
    #[serde(default)]
    pub quality: Option<QualityJson>,
}

/// A generation's quality report: the poems' figures beside the training corpus's.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct QualityJson {
    /// All the generation's poems, measured against the corpus's words.
    pub generated: FiguresJson,
    /// The training corpus itself.
    pub corpus: FiguresJson,
    /// Share of the poems' distinct word 4-grams found in the corpus.
    pub shared_4grams: f64,
    /// Longest run of words copied from the corpus.
    pub longest_copied_run: i32,
}

/// Shape and wordiness of a set of poems.
#[derive(Debug, Serialize, Deserialize, PartialEq, Default)]
pub struct FiguresJson {
    /// Words.
    pub words: i64,
    /// Fraction of the words found in the training corpus.
    pub real_word_share: f64,
    /// Poems with a non-empty line.
    pub poems: i32,
    /// Non-empty lines.
    pub lines: i64,
    /// Mean chars per non-empty line.
    pub mean_line_chars: f64,
    /// Mean non-empty lines per stanza.
    pub lines_per_stanza: f64,
    /// Mean stanzas per poem.
    pub stanzas_per_poem: f64,
    /// Lines standing more than twice in one poem.
    pub repeated_lines: i32,
}

impl From<v1::PoemFigures> for FiguresJson {
    fn from(f: v1::PoemFigures) -> Self {
        FiguresJson {
            words: f.words,
            real_word_share: f.real_word_share,
            poems: f.poems,
            lines: f.lines,
            mean_line_chars: f.mean_line_chars,
            lines_per_stanza: f.lines_per_stanza,
            stanzas_per_poem: f.stanzas_per_poem,
            repeated_lines: f.repeated_lines,
        }
    }
}

impl From<v1::QualityReport> for QualityJson {
    fn from(q: v1::QualityReport) -> Self {
        QualityJson {
            generated: q.generated.map(Into::into).unwrap_or_default(),
            corpus: q.corpus.map(Into::into).unwrap_or_default(),
            shared_4grams: q.shared_4grams,
            longest_copied_run: q.longest_copied_run,
        }
    }
}

/// `GET /api/v1/runs/{id}`: the one run detail view (`poet_proto::views::RunDetail`, as
/// `poet runs show --json` prints it), and the run's generations.
#[derive(Debug, Serialize, Deserialize)]
pub struct RunDetail {
    /// The run, its leases, epochs and checkpoints (their fields inline).
    #[serde(flatten)]
    pub detail: poet_proto::views::RunDetail,
    /// Generations, newest first (at most 200).
    pub generations: Vec<GenerationJson>,
}

/// `GET /api/v1/runs/{id}`: six queries whatever the run's size.
pub async fn get_run(State(st): State<WebState>, Id(id): Id) -> Result<Json<RunDetail>, ApiError> {
    let full = crate::history::get_run(&st.pool, id).await?;
    let gens = crate::generation::load(&st.pool, None, id).await?;
    Ok(Json(RunDetail {
        detail: full.into(),
        generations: gens
            .into_iter()
            .map(|g| GenerationJson {
                id: g.id,
                epoch: g.epoch,
                state: g.state,
                params: serde_json::from_str(&g.params_json).unwrap_or(Value::Null),
                error: g.error,
                poems: g
                    .poems
                    .into_iter()
                    .map(|p| PoemJson {
                        segments: super::highlight::segments(
                            &p.text,
                            p.report
                                .as_ref()
                                .map(|r| r.shared.as_slice())
                                .unwrap_or_default(),
                        ),
                        index: p.index,
                        temperature: p.temperature,
                        text: p.text,
                        report: p.report.map(Into::into),
                    })
                    .collect(),
                overall: g.overall.map(Into::into),
                created_at: time(g.created_at),
                quality: g.quality.map(Into::into),
            })
            .collect(),
    }))
}

/// A worker process: the one worker view (`poet_proto::views::Worker`), as `poet workers
/// --json` prints it too.
pub type WorkerJson = poet_proto::views::Worker;

/// Query of `/api/v1/workers`.
#[derive(Debug, Deserialize)]
pub struct WorkersQuery {
    /// Also list workers not seen for an hour.
    #[serde(default)]
    pub include_stale: bool,
}

/// `GET /api/v1/workers[?include_stale=true]`: most recently seen first (one query).
pub async fn list_workers(
    State(st): State<WebState>,
    Query(q): Query<WorkersQuery>,
) -> Result<Json<Vec<WorkerJson>>, ApiError> {
    let workers = crate::history::list_workers(&st.pool, q.include_stale).await?;
    Ok(Json(workers.into_iter().map(Into::into).collect()))
}

/// A ready dataset version: the one dataset view (`poet_proto::views::Dataset`), as `poet
/// datasets list --json` prints it too.
pub type DatasetJson = poet_proto::views::Dataset;

/// `GET /api/v1/datasets`: ready versions, newest first (one query).
pub async fn list_datasets(State(st): State<WebState>) -> Result<Json<Vec<DatasetJson>>, ApiError> {
    let ds = crate::history::list_datasets(&st.pool, "").await?;
    Ok(Json(
        ds.into_iter().map(crate::history::dataset_view).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinning_keeps_the_ends_and_the_bound() {
        let n = 1000;
        let mut c = Curve {
            run_id: 1,
            epochs: (1..=n).collect(),
            train: (1..=n).map(f64::from).collect(),
            val: (1..=n).map(f64::from).collect(),
            wall_s: (1..=n).map(f64::from).collect(),
            chars: (1..=n).map(|i| f64::from(i) * 10.0).collect(),
            thinned: false,
        };
        thin(&mut c, 200);
        assert_eq!(c.epochs.len(), 200);
        assert_eq!((c.epochs[0], *c.epochs.last().unwrap()), (1, n));
        assert!(c.thinned && c.epochs.windows(2).all(|w| w[0] < w[1]));
        // Every series keeps the same epochs.
        let kept: Vec<f64> = c.epochs.iter().map(|&e| f64::from(e)).collect();
        assert_eq!((&c.wall_s, &c.val), (&kept, &kept));
        assert_eq!(c.chars, kept.iter().map(|e| e * 10.0).collect::<Vec<_>>());
        let mut small = Curve {
            run_id: 1,
            epochs: vec![1, 2],
            train: vec![1.0, 2.0],
            val: vec![1.0, 2.0],
            wall_s: vec![1.0, 2.0],
            chars: vec![1.0, 2.0],
            thinned: false,
        };
        thin(&mut small, 200);
        assert!(!small.thinned && small.epochs.len() == 2);
    }
}

/// `POST /api/v1/runs/{id}/extend` and `/sweeps/{id}/priority` bodies, and the others' (`{}`).
/// Every control endpoint takes a JSON body, so a cross-site form cannot post to it.
#[derive(Debug, Default, Deserialize)]
pub struct ControlBody {
    /// Epochs to add (extend).
    #[serde(default)]
    pub epochs: i32,
    /// New priority (priority).
    #[serde(default)]
    pub priority: i32,
    /// Checkpoint to fork from (fork; 0 = the best).
    #[serde(default)]
    pub checkpoint_id: i64,
    /// Config keys to change (fork).
    #[serde(default)]
    pub overrides: serde_json::Map<String, Value>,
}

/// `POST /api/v1/runs/{id}/{action}`: retry, extend or fork. Answers the run touched (the new
/// one for a fork).
pub async fn run_control(
    State(st): State<WebState>,
    axum::extract::Path((id, action)): axum::extract::Path<(i64, String)>,
    Json(body): Json<ControlBody>,
) -> Result<Json<RunJson>, ApiError> {
    let now = Utc::now();
    let run = match action.as_str() {
        "retry" => crate::control::retry_run(&st.pool, id, now).await,
        "extend" => crate::control::extend_run(&st.pool, id, body.epochs, now).await,
        "fork" => {
            crate::control::fork_run(
                &st.pool,
                id,
                body.checkpoint_id,
                &Value::Object(body.overrides).to_string(),
                now,
            )
            .await
        }
        other => {
            return Err(ApiError::not_found(format!(
                "no run action {other:?} (retry, extend or fork)"
            )));
        }
    }
    .map_err(ApiError::service)?;
    Ok(Json(run_views(&st, vec![run]).await?.remove(0)))
}

/// `POST /api/v1/sweeps/{id}/{action}`: pause, resume or priority. Answers the sweep.
pub async fn sweep_control(
    State(st): State<WebState>,
    axum::extract::Path((id, action)): axum::extract::Path<(i64, String)>,
    Json(body): Json<ControlBody>,
) -> Result<Json<SweepDetail>, ApiError> {
    let now = Utc::now();
    match action.as_str() {
        "pause" => crate::control::set_paused(&st.pool, id, true, now).await,
        "resume" => crate::control::set_paused(&st.pool, id, false, now).await,
        "priority" => crate::control::set_priority(&st.pool, id, body.priority, now).await,
        other => {
            return Err(ApiError::not_found(format!(
                "no sweep action {other:?} (pause, resume or priority)"
            )));
        }
    }
    .map_err(ApiError::service)?;
    get_sweep(State(st), Id(id)).await
}

/// Body of `POST`/`DELETE /api/v1/{runs,sweeps}/{id}/tags`.
#[derive(Debug, Deserialize)]
pub struct TagsBody {
    /// The tags to add or remove.
    pub tags: Vec<String>,
}

/// Body of `POST /api/v1/{runs,sweeps}/{id}/notes`.
#[derive(Debug, Deserialize)]
pub struct NoteBody {
    /// The note.
    pub text: String,
}

type Annotated = Result<Json<poet_proto::views::Annotations>, ApiError>;

async fn tag_as(
    st: &WebState,
    caller: &Caller,
    target: Target,
    id: i64,
    tags: &[String],
    add: bool,
) -> Annotated {
    let a = if add {
        let author = crate::history::author(&st.pool, Some(caller)).await?;
        crate::history::tag(&st.pool, target, id, tags, &author).await
    } else {
        crate::history::untag(&st.pool, target, id, tags).await
    }
    .map_err(ApiError::service)?;
    Ok(Json(a.into()))
}

async fn note_as(st: &WebState, caller: &Caller, target: Target, id: i64, text: &str) -> Annotated {
    let author = crate::history::author(&st.pool, Some(caller)).await?;
    let a = crate::history::note(&st.pool, target, id, text, &author)
        .await
        .map_err(ApiError::service)?;
    Ok(Json(a.into()))
}

/// `POST /api/v1/runs/{id}/tags` `{"tags": [...]}` (client role): answers the run's tags and notes.
pub async fn tag_run(
    State(st): State<WebState>,
    Extension(caller): Extension<Caller>,
    Id(id): Id,
    Json(b): Json<TagsBody>,
) -> Annotated {
    tag_as(&st, &caller, Target::Run, id, &b.tags, true).await
}

/// `DELETE /api/v1/runs/{id}/tags` `{"tags": [...]}` (client role).
pub async fn untag_run(
    State(st): State<WebState>,
    Extension(caller): Extension<Caller>,
    Id(id): Id,
    Json(b): Json<TagsBody>,
) -> Annotated {
    tag_as(&st, &caller, Target::Run, id, &b.tags, false).await
}

/// `POST /api/v1/runs/{id}/notes` `{"text": "..."}` (client role).
pub async fn note_run(
    State(st): State<WebState>,
    Extension(caller): Extension<Caller>,
    Id(id): Id,
    Json(b): Json<NoteBody>,
) -> Annotated {
    note_as(&st, &caller, Target::Run, id, &b.text).await
}

/// `POST /api/v1/sweeps/{id}/tags` `{"tags": [...]}` (client role).
pub async fn tag_sweep(
    State(st): State<WebState>,
    Extension(caller): Extension<Caller>,
    Id(id): Id,
    Json(b): Json<TagsBody>,
) -> Annotated {
    tag_as(&st, &caller, Target::Sweep, id, &b.tags, true).await
}

/// `DELETE /api/v1/sweeps/{id}/tags` `{"tags": [...]}` (client role).
pub async fn untag_sweep(
    State(st): State<WebState>,
    Extension(caller): Extension<Caller>,
    Id(id): Id,
    Json(b): Json<TagsBody>,
) -> Annotated {
    tag_as(&st, &caller, Target::Sweep, id, &b.tags, false).await
}

/// `POST /api/v1/sweeps/{id}/notes` `{"text": "..."}` (client role).
pub async fn note_sweep(
    State(st): State<WebState>,
    Extension(caller): Extension<Caller>,
    Id(id): Id,
    Json(b): Json<NoteBody>,
) -> Annotated {
    note_as(&st, &caller, Target::Sweep, id, &b.text).await
}

/// Query of `/api/v1/runs/export`.
#[derive(Debug, Deserialize)]
pub struct ExportQuery {
    /// `csv` (default) or `jsonl`.
    #[serde(default)]
    pub format: String,
    /// A filter expression; empty: every run.
    #[serde(default)]
    pub filter: String,
    /// An order; empty: newest first.
    #[serde(default)]
    pub order_by: String,
}

/// Runs per page read while exporting: one statement each, so memory stays one page.
const EXPORT_PAGE: i32 = 1000;

/// `GET /api/v1/runs/export?format=csv|jsonl&filter=...&order_by=...`: every matching run, one
/// row each (`poet_proto::views::export`: the rows `poet runs export` writes), streamed a page
/// of 1,000 runs at a time. A bad filter, order or format is a 400 before the first byte.
pub async fn export_runs(
    State(st): State<WebState>,
    Query(q): Query<ExportQuery>,
) -> Result<axum::response::Response, ApiError> {
    use poet_proto::views::export::{Format, Writer, run_columns, run_row};
    let format = match q.format.as_str() {
        "" => Format::Csv,
        f => Format::parse(f)
            .ok_or_else(|| ServiceError::Invalid(format!("format: '{f}' is not csv or jsonl")))?,
    };
    let mut req = v1::ListRunsRequest {
        filter: q.filter,
        order_by: q.order_by,
        page_size: EXPORT_PAGE,
        ..Default::default()
    };
    let keys = crate::history::config_keys(&st.pool, &req).await?;
    let (first, next) = crate::history::list_runs(&st.pool, &req).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(2);
    tokio::spawn(async move {
        let mut w = match Writer::new(Vec::new(), format, run_columns(&keys)) {
            Ok(w) => w,
            Err(e) => return drop(tx.send(Err(e)).await),
        };
        let (mut page, mut next) = (first, next);
        loop {
            for r in page {
                if let Err(e) = w.row(run_row(&r.into(), &keys)) {
                    return drop(tx.send(Err(e)).await);
                }
            }
            if tx.send(Ok(std::mem::take(w.get_mut()))).await.is_err() || next.is_empty() {
                return;
            }
            req.page_token = next;
            match crate::history::list_runs(&st.pool, &req).await {
                Ok((p, n)) => (page, next) = (p, n),
                Err(e) => {
                    e.log_hidden();
                    let _ = tx.send(Err(std::io::Error::other("export stopped"))).await;
                    return;
                }
            }
        }
    });
    let body = axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let ctype = match format {
        Format::Csv => "text/csv; charset=utf-8",
        Format::Jsonl => "application/x-ndjson",
    };
    Ok(axum::response::Response::builder()
        .header(axum::http::header::CONTENT_TYPE, ctype)
        .body(body)
        .expect("static headers"))
}

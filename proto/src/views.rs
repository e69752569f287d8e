//! The JSON read model: one serde struct per thing the history answers (runs, sweeps and
//! their decisions, workers, datasets, notes), shared by the coordinator's web API
//! (`/api/v1/...`) and the CLI's `--json`, so that the two print the same fields with the same
//! meaning. gRPC messages stay the wire format; a view is built from the message
//! (`From<v1::Run>`, `From<v1::Sweep>`, [`SweepDetail::new`]), on the server for the web API and
//! on the client for the CLI. A dataset goes the other way: the CLI reads datasets from
//! Postgres itself, so the view is built from the row (the coordinator's `history::dataset_view`)
//! and gRPC converts from the view (`From<Dataset> for v1::Dataset`).
//!
//! Conventions, where the proto's zero values would mislead in JSON: an absent loss is `null`,
//! not NaN (JSON has no NaN); an absent id (no worker, no parent) is `null`, not 0; an absent
//! text (no error) is `null`, not `""`; times are RFC 3339 strings. The web API's `RunJson`,
//! the CLI's hand-built run JSON and `v1::Run` used to disagree (the web left out
//! `config_hash` and `parent_checkpoint_id`, the CLI `started_at` and printed 0 and `""` for
//! absent values): this shape is their union, with the web's nulls. The sweep views are the
//! union of the web's `SweepSummary`/`SweepDetail` and the CLI's hand-built sweep JSON in the
//! same way, and the dataset view that of the web's `DatasetJson` and the CLI's row.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::v1;

/// A protobuf timestamp as a UTC time.
pub fn time(t: Option<&prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

fn nonzero<T: Default + PartialEq>(v: T) -> Option<T> {
    (v != T::default()).then_some(v)
}

/// A note left on a run or a sweep.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Note {
    /// The text.
    pub text: String,
    /// Who wrote it: the issued token's name, or the role of a static token.
    pub author: String,
    /// When.
    pub at: Option<DateTime<Utc>>,
}

impl From<v1::Note> for Note {
    fn from(n: v1::Note) -> Note {
        Note {
            at: time(n.at.as_ref()),
            text: n.text,
            author: n.author,
        }
    }
}

/// A run as listed: its config parsed, absent values null.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Run {
    /// Id.
    pub id: i64,
    /// Sweep that created it.
    pub sweep_id: i64,
    /// Dataset.
    pub dataset_id: i64,
    /// Training config (schema: `poet_core::config::TrainConfig`).
    pub config: Value,
    /// sha256 of the canonical config JSON; equal configs are one run.
    pub config_hash: String,
    /// queued, running, paused, stopped, succeeded, failed or cancelled.
    pub state: String,
    /// Priority.
    pub priority: i32,
    /// Lease count.
    pub attempt: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// Epochs reported.
    pub epochs_done: i32,
    /// Epochs configured.
    pub epochs_total: i32,
    /// Lowest validation loss.
    pub best_val_loss: Option<f64>,
    /// Its epoch.
    pub best_epoch: Option<i32>,
    /// Latest train loss.
    pub last_train_loss: Option<f64>,
    /// Latest validation loss.
    pub last_val_loss: Option<f64>,
    /// Training seconds (the sum of its epochs' durations).
    pub duration_s: Option<f64>,
    /// The last epoch's characters per second.
    pub chars_per_sec: Option<f64>,
    /// Worker holding the lease.
    pub worker_id: Option<i64>,
    /// Why it failed or was cancelled.
    pub error: Option<String>,
    /// A cancel is pending.
    pub cancel_requested: bool,
    /// Created.
    pub created_at: Option<DateTime<Utc>>,
    /// First started.
    pub started_at: Option<DateTime<Utc>>,
    /// Finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// Why its sweep's scheduler paused or stopped it.
    pub halt_reason: Option<String>,
    /// The run it was forked from.
    pub parent_run_id: Option<i64>,
    /// The parent's checkpoint it started from.
    pub parent_checkpoint_id: Option<i64>,
    /// Its tags, sorted.
    pub tags: Vec<String>,
    /// Its notes, oldest first.
    pub notes: Vec<Note>,
    /// While queued: why no registered worker can hold it ("no worker fits: needs 9.1 GB
    /// GPU"); null when one can.
    pub no_fit: Option<String>,
}

impl From<v1::Run> for Run {
    fn from(r: v1::Run) -> Run {
        let state = v1::RunState::try_from(r.state)
            .map(|s| s.db_name())
            .unwrap_or("unknown");
        Run {
            id: r.id,
            sweep_id: r.sweep_id,
            dataset_id: r.dataset_id,
            config: serde_json::from_str(&r.config_json).unwrap_or(Value::Null),
            config_hash: r.config_hash,
            state: state.to_string(),
            priority: r.priority,
            attempt: r.attempt,
            max_attempts: r.max_attempts,
            epochs_done: r.epochs_done,
            epochs_total: r.epochs_total,
            best_val_loss: finite(r.best_val_loss),
            best_epoch: finite(r.best_val_loss).map(|_| r.best_epoch),
            last_train_loss: finite(r.last_train_loss),
            last_val_loss: finite(r.last_val_loss),
            duration_s: finite(r.duration_s),
            chars_per_sec: finite(r.chars_per_sec),
            worker_id: nonzero(r.worker_id),
            error: nonzero(r.error),
            cancel_requested: r.cancel_requested,
            created_at: time(r.created_at.as_ref()),
            started_at: time(r.started_at.as_ref()),
            finished_at: time(r.finished_at.as_ref()),
            halt_reason: nonzero(r.halt_reason),
            parent_run_id: nonzero(r.parent_run_id),
            parent_checkpoint_id: nonzero(r.parent_checkpoint_id),
            tags: r.tags,
            notes: r.notes.into_iter().map(Into::into).collect(),
            no_fit: nonzero(r.no_fit),
        }
    }
}

/// One lease of a run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Attempt {
    /// 1-based attempt.
    pub attempt: i32,
    /// Worker id.
    pub worker_id: i64,
    /// Its host.
    pub worker_host: String,
    /// Lease granted.
    pub started_at: Option<DateTime<Utc>>,
    /// Ended (null while it lives).
    pub ended_at: Option<DateTime<Utc>>,
    /// completed, failed, lease_expired, released, cancelled, or "" while running.
    pub outcome: String,
    /// Error message or reaper note.
    pub detail: String,
    /// Epoch it resumed from (0 = scratch).
    pub resumed_from_epoch: i32,
}

impl From<v1::Attempt> for Attempt {
    fn from(a: v1::Attempt) -> Attempt {
        Attempt {
            attempt: a.attempt,
            worker_id: a.worker_id,
            worker_host: a.worker_host,
            started_at: time(a.started_at.as_ref()),
            ended_at: time(a.ended_at.as_ref()),
            outcome: a.outcome,
            detail: a.detail,
            resumed_from_epoch: a.resumed_from_epoch,
        }
    }
}

/// One epoch report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Epoch {
    /// 1-based epoch.
    pub epoch: i32,
    /// Attempt that trained it.
    pub attempt: i32,
    /// Mean train loss, nats/char.
    pub train_loss: f64,
    /// Validation loss, nats/char.
    pub val_loss: f64,
    /// Seconds.
    pub duration_s: f64,
    /// Throughput.
    pub chars_per_sec: f64,
    /// Anything else the worker measured.
    pub metrics: Value,
    /// Stored at.
    pub reported_at: Option<DateTime<Utc>>,
}

impl From<v1::Epoch> for Epoch {
    fn from(e: v1::Epoch) -> Epoch {
        Epoch {
            epoch: e.epoch,
            attempt: e.attempt,
            train_loss: e.train_loss,
            val_loss: e.val_loss,
            duration_s: e.duration_s,
            chars_per_sec: e.chars_per_sec,
            metrics: serde_json::from_str(&e.metrics_json).unwrap_or(Value::Null),
            reported_at: time(e.reported_at.as_ref()),
        }
    }
}

/// A kept checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Checkpoint {
    /// Id.
    pub id: i64,
    /// Epoch.
    pub epoch: i32,
    /// Bytes.
    pub size: i64,
    /// sha256 hex.
    pub sha256: String,
    /// Validation loss at that epoch.
    pub val_loss: f64,
    /// Whether it is the run's best.
    pub best: bool,
    /// Stored at.
    pub created_at: Option<DateTime<Utc>>,
}

/// A run in full (`poet runs show --json`; `GET /api/v1/runs/{id}` adds the run's
/// generations): the run, its leases, every epoch and its kept checkpoints.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunDetail {
    /// The run.
    pub run: Run,
    /// Its leases, in order.
    pub attempts: Vec<Attempt>,
    /// Every epoch report, in order.
    pub epochs: Vec<Epoch>,
    /// Kept checkpoints.
    pub checkpoints: Vec<Checkpoint>,
    /// The kept checkpoint with the lowest validation loss (null when none).
    pub best_checkpoint_id: Option<i64>,
}

impl From<v1::GetRunResponse> for RunDetail {
    fn from(r: v1::GetRunResponse) -> RunDetail {
        let best = r.best_checkpoint_id;
        RunDetail {
            run: r.run.unwrap_or_default().into(),
            attempts: r.attempts.into_iter().map(Into::into).collect(),
            epochs: r.epochs.into_iter().map(Into::into).collect(),
            checkpoints: r
                .checkpoints
                .into_iter()
                .map(|c| Checkpoint {
                    best: best != 0 && c.id == best,
                    id: c.id,
                    epoch: c.epoch,
                    size: c.size,
                    sha256: c.sha256,
                    val_loss: c.val_loss,
                    created_at: time(c.created_at.as_ref()),
                })
                .collect(),
            best_checkpoint_id: nonzero(best),
        }
    }
}

/// A worker process, as `GET /api/v1/workers` and `poet workers --json` show it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Worker {
    /// Id.
    pub id: i64,
    /// Host name.
    pub host: String,
    /// cpu, cuda:0, ...
    pub device: String,
    /// GPU model ("" on CPU).
    pub gpu_name: String,
    /// GPU memory, bytes.
    pub gpu_memory_bytes: i64,
    /// Software version.
    pub version: String,
    /// Run it trains now.
    pub current_run_id: Option<i64>,
    /// That run's epochs reported.
    pub current_epoch: Option<i32>,
    /// That run's epochs configured.
    pub current_epochs_total: Option<i32>,
    /// Last heartbeat or call.
    pub last_seen_at: Option<DateTime<Utc>>,
    /// Seconds since then (by the database clock).
    pub seen_seconds_ago: f64,
    /// First registration.
    pub registered_at: Option<DateTime<Utc>>,
    /// Threads it trains with (0: not announced).
    pub cpu_threads: i32,
    /// Host memory, bytes (0: not announced).
    pub memory_bytes: i64,
    /// Its `--label key=value` pairs.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Throughput of the last epoch it reported, characters per second (null: none yet).
    pub chars_per_sec: Option<f64>,
}

impl From<v1::Worker> for Worker {
    fn from(w: v1::Worker) -> Worker {
        let busy = w.current_run_id != 0;
        Worker {
            id: w.id,
            host: w.host,
            device: w.device,
            gpu_name: w.gpu_name,
            gpu_memory_bytes: w.gpu_memory_bytes,
            version: w.version,
            current_run_id: busy.then_some(w.current_run_id),
            current_epoch: busy.then_some(w.current_epoch),
            current_epochs_total: busy.then_some(w.current_epochs_total),
            last_seen_at: time(w.last_seen_at.as_ref()),
            seen_seconds_ago: w.seen_seconds_ago,
            registered_at: time(w.registered_at.as_ref()),
            cpu_threads: w.cpu_threads,
            memory_bytes: w.memory_bytes,
            labels: w.labels.into_iter().collect(),
            chars_per_sec: (w.chars_per_sec > 0.0).then_some(w.chars_per_sec),
        }
    }
}

/// Runs by state: the seven states of the queue.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Counts {
    /// Waiting for a worker.
    pub queued: i64,
    /// Leased and training.
    pub running: i64,
    /// Waiting at a rung for a promotion.
    pub paused: i64,
    /// Stopped early by the sweep's scheduler.
    pub stopped: i64,
    /// Finished every epoch.
    pub succeeded: i64,
    /// Gave up.
    pub failed: i64,
    /// Cancelled by a user.
    pub cancelled: i64,
}

impl Counts {
    /// From the proto's counts by state name (a state left out is 0).
    pub fn from_map<'a>(m: impl IntoIterator<Item = (&'a String, &'a i32)>) -> Counts {
        let mut c = Counts::default();
        for (state, &n) in m {
            let n = i64::from(n);
            match state.as_str() {
                "queued" => c.queued += n,
                "running" => c.running += n,
                "paused" => c.paused += n,
                "stopped" => c.stopped += n,
                "succeeded" => c.succeeded += n,
                "failed" => c.failed += n,
                "cancelled" => c.cancelled += n,
                _ => {}
            }
        }
        c
    }
}

/// A sweep as listed (`GET /api/v1/sweeps`, `poet sweeps list --json`): its settings, its
/// runs by state and its best run. The spec and everything per run is in [`SweepDetail`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Sweep {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Dataset it trains on.
    pub dataset_id: i64,
    /// Default priority of its runs.
    pub priority: i32,
    /// Paused by a user: its runs are not leased.
    pub paused: bool,
    /// At most this many of its runs train at once (null: no limit).
    pub max_concurrent: Option<i32>,
    /// Created.
    pub created_at: Option<DateTime<Utc>>,
    /// When its scheduler had nothing left to run (null while it goes on).
    pub finished_at: Option<DateTime<Utc>>,
    /// Runs attached (created or shared with another sweep). Named `run_count`, not `runs`:
    /// the detail's `runs` is the list of them.
    pub run_count: i64,
    /// Its runs by state.
    pub counts: Counts,
    /// Lowest validation loss of any of its runs (null when none reported one yet).
    pub best_val_loss: Option<f64>,
    /// The run that reached it.
    pub best_run_id: Option<i64>,
    /// Its tags, sorted.
    pub tags: Vec<String>,
    /// Its notes, oldest first.
    pub notes: Vec<Note>,
}

impl From<v1::Sweep> for Sweep {
    fn from(s: v1::Sweep) -> Sweep {
        Sweep {
            id: s.id,
            counts: Counts::from_map(&s.counts),
            name: s.name,
            dataset_id: s.dataset_id,
            priority: s.priority,
            paused: s.paused,
            max_concurrent: nonzero(s.max_concurrent),
            created_at: time(s.created_at.as_ref()),
            finished_at: time(s.finished_at.as_ref()),
            run_count: i64::from(s.runs),
            best_val_loss: finite(s.best_val_loss),
            best_run_id: finite(s.best_val_loss).and_then(|_| nonzero(s.best_run_id)),
            tags: s.tags,
            notes: s.notes.into_iter().map(Into::into).collect(),
        }
    }
}

/// One decision of a sweep's scheduler, or a user's action on the sweep or one of its runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Decision {
    /// Id (decisions are numbered in the order taken).
    pub id: i64,
    /// The sweep.
    pub sweep_id: i64,
    /// The run (null for sweep-wide decisions).
    pub run_id: Option<i64>,
    /// Epoch it was taken at (0 when none).
    pub epoch: i32,
    /// stop, pause, promote, propose, budget, finish, retry, extend, fork, pause_sweep,
    /// resume_sweep or priority.
    pub kind: String,
    /// In words.
    pub reason: String,
    /// The numbers behind it.
    pub detail: Value,
    /// When.
    pub created_at: Option<DateTime<Utc>>,
}

impl From<v1::Decision> for Decision {
    fn from(d: v1::Decision) -> Decision {
        Decision {
            id: d.id,
            sweep_id: d.sweep_id,
            run_id: nonzero(d.run_id),
            epoch: d.epoch,
            kind: d.kind,
            reason: d.reason,
            detail: serde_json::from_str(&d.detail_json).unwrap_or(Value::Null),
            created_at: time(d.created_at.as_ref()),
        }
    }
}

/// A sweep in full (`GET /api/v1/sweeps/{id}`, `poet sweeps show --json`): the listed
/// [`Sweep`]'s fields, then its spec and plan, what it spent of its budget, its scheduler's
/// decisions and every run. The rungs the dashboard and `poet sweeps show` draw are computed
/// from `plan` and `runs` (each run's `epochs_done` and `state`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SweepDetail {
    /// The sweep as listed (its fields inline).
    #[serde(flatten)]
    pub sweep: Sweep,
    /// The spec as submitted.
    pub spec: String,
    /// Search, stopping rule, budget, max_concurrent (`poet_core::plan::Plan`).
    pub plan: Value,
    /// Epochs trained by its runs so far.
    pub epochs_spent: i64,
    /// Hours trained by its runs so far (the sum of epoch durations); 0 unless the plan has a
    /// worker-hour budget (the sum reads every epoch row).
    pub hours_spent: f64,
    /// Config keys whose values differ between its runs (the swept hyperparameters), sorted.
    pub varying: Vec<String>,
    /// The run with the lowest validation loss (null when none reported one yet).
    pub best_run: Option<Run>,
    /// Every decision of its scheduler and every run-control action, oldest first.
    pub decisions: Vec<Decision>,
    /// Every run, by id.
    pub runs: Vec<Run>,
}

impl SweepDetail {
    /// From `GetSweep`'s answer and the sweep's runs (`ListRuns` by sweep, or one query).
    pub fn new(s: v1::GetSweepResponse, runs: Vec<v1::Run>) -> SweepDetail {
        let sweep = s.sweep.unwrap_or_default();
        let spec = sweep.spec.clone();
        let runs: Vec<Run> = runs.into_iter().map(Into::into).collect();
        SweepDetail {
            sweep: sweep.into(),
            spec,
            plan: serde_json::from_str(&s.plan_json).unwrap_or(Value::Null),
            epochs_spent: s.epochs_spent,
            hours_spent: s.hours_spent,
            varying: varying_keys(runs.iter().map(|r| &r.config)),
            best_run: s.best_run.map(Into::into),
            decisions: s.decisions.into_iter().map(Into::into).collect(),
            runs,
        }
    }
}

/// Line counts of an ingest, stage by stage (`poet_ingest`'s `Counts`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LineCounts {
    /// Non-blank lines (NDJSON) or documents (bulk, scroll) read.
    pub read: i64,
    /// Blank lines skipped.
    pub blank: i64,
    /// Unusable lines.
    pub malformed: i64,
    /// Valid documents.
    pub docs: i64,
    /// Documents without the `--tag`.
    pub other_tag: i64,
    /// Documents whose content is missing or only whitespace.
    pub empty: i64,
    /// Documents the filter judged prose.
    pub not_poems: i64,
    /// Poems already seen.
    pub duplicates: i64,
    /// Poems stored.
    pub kept: i64,
}

/// What an ingest did with its input: the shape `datasets.counts` is stored in.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct DatasetCounts {
    /// Per-stage line counts.
    pub lines: LineCounts,
    /// Input bytes read (the compressed size for gzip).
    pub input_bytes: i64,
    /// Documents the filter judged prose, by its reason.
    pub not_poems_by_reason: std::collections::BTreeMap<String, i64>,
}

/// A ready dataset version (`GET /api/v1/datasets`, `poet datasets list|show --json`, gRPC
/// `ListDatasets`, which converts from this view).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Dataset {
    /// Id (what runs reference).
    pub id: i64,
    /// Name.
    pub name: String,
    /// Version within the name (1, 2, ...).
    pub version: i32,
    /// sha256 of the framed corpus in export order.
    pub content_hash: String,
    /// sha256 of the parameters.
    pub params_hash: String,
    /// Poems kept.
    pub poems: i64,
    /// Characters of the framed corpus.
    pub chars: i64,
    /// Distinct characters, sorted.
    pub vocab: String,
    /// Their number.
    pub vocab_size: usize,
    /// Shards poems are hashed into.
    pub shards: i32,
    /// Shards held out for validation.
    pub validation_shards: Vec<i32>,
    /// The ingest's parameters: mapping, tag, filter, shards, validation_fraction (the
    /// ingest's own settings, as stored).
    pub params: Value,
    /// What the ingest did with its input.
    pub counts: DatasetCounts,
    /// Visible since.
    pub created_at: Option<DateTime<Utc>>,
}

fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

impl From<Dataset> for v1::Dataset {
    fn from(d: Dataset) -> v1::Dataset {
        let c = d.counts;
        let l = c.lines;
        v1::Dataset {
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
            params_json: d.params.to_string(),
            counts: Some(v1::DatasetCounts {
                lines: Some(v1::LineCounts {
                    read: l.read,
                    blank: l.blank,
                    malformed: l.malformed,
                    docs: l.docs,
                    other_tag: l.other_tag,
                    empty: l.empty,
                    not_poems: l.not_poems,
                    duplicates: l.duplicates,
                    kept: l.kept,
                }),
                input_bytes: c.input_bytes,
                not_poems_by_reason: c.not_poems_by_reason.into_iter().collect(),
            }),
            created_at: d.created_at.map(ts),
        }
    }
}

/// The config keys that do not hold one value across all configs (a key some configs lack
/// varies too), sorted: the swept hyperparameters. The dashboard's sweep page (`varying`) and
/// the CLI's tables and comparisons use this one definition.
pub fn varying_keys<'a>(configs: impl IntoIterator<Item = &'a Value>) -> Vec<String> {
    let objects: Vec<_> = configs.into_iter().filter_map(Value::as_object).collect();
    let keys: BTreeSet<&String> = objects.iter().flat_map(|c| c.keys()).collect();
    keys.into_iter()
        .filter(|k| {
            objects
                .windows(2)
                .any(|w| w[0].get(k.as_str()) != w[1].get(k.as_str()))
        })
        .cloned()
        .collect()
}

/// A run's or sweep's tags and notes, as `POST`/`DELETE .../tags` and `.../notes` answer them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Annotations {
    /// Tags, sorted.
    pub tags: Vec<String>,
    /// Notes, oldest first.
    pub notes: Vec<Note>,
}

impl From<v1::Annotations> for Annotations {
    fn from(a: v1::Annotations) -> Annotations {
        Annotations {
            tags: a.tags,
            notes: a.notes.into_iter().map(Into::into).collect(),
        }
    }
}

/// The rows of `poet runs export` and `GET /api/v1/runs/export`: one per run (or one per
/// epoch), as named columns, written as CSV (the `csv` crate's quoting) or JSON lines. The
/// CLI and the web API write the same rows through this one definition.
pub mod export {
    use std::collections::BTreeSet;
    use std::io::Write;

    use serde_json::{Map, Value};

    use super::Run;
    use crate::v1;

    /// CSV or JSON lines.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Format {
        /// Comma-separated, a header row first (RFC 4180 quoting).
        Csv,
        /// One JSON object per line.
        Jsonl,
    }

    impl Format {
        /// `csv`, `jsonl` (or `ndjson`, `json`); None for anything else.
        pub fn parse(s: &str) -> Option<Format> {
            match s.to_ascii_lowercase().as_str() {
                "csv" => Some(Format::Csv),
                "jsonl" | "ndjson" | "json" => Some(Format::Jsonl),
                _ => None,
            }
        }

        /// The format a file name's extension names (`.csv`, `.jsonl`, `.ndjson`, `.json`).
        pub fn from_path(path: &str) -> Option<Format> {
            Format::parse(path.rsplit_once('.')?.1)
        }
    }

    /// The summary columns after the config columns of a run row.
    pub const SUMMARY: &[&str] = &[
        "best_val_loss",
        "best_epoch",
        "last_val_loss",
        "min_val_loss",
        "last_train_loss",
        "epochs_done",
        "epochs_total",
        "duration_s",
        "chars_per_sec",
    ];

    /// The union of the runs' config keys, sorted: one `config.<key>` column each.
    pub fn config_keys<'a>(runs: impl IntoIterator<Item = &'a Run>) -> Vec<String> {
        let keys: BTreeSet<&String> = runs
            .into_iter()
            .filter_map(|r| r.config.as_object())
            .flat_map(|o| o.keys())
            .collect();
        keys.into_iter().cloned().collect()
    }

    /// The columns of a run row: id, sweep, state, dataset, the config keys, the summaries,
    /// tags (joined by `;` in CSV, an array in JSON lines).
    pub fn run_columns(config_keys: &[String]) -> Vec<String> {
        let mut cols: Vec<String> = ["id", "sweep_id", "state", "dataset_id"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        cols.extend(config_keys.iter().map(|k| format!("config.{k}")));
        cols.extend(SUMMARY.iter().map(|s| s.to_string()));
        cols.extend(["created_at", "finished_at", "tags"].map(String::from));
        cols
    }

    fn opt<T: Into<Value>>(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }

    /// A run's row, column by column (the order of [`run_columns`]).
    pub fn run_row(r: &Run, config_keys: &[String]) -> Vec<Value> {
        let mut row = vec![
            r.id.into(),
            r.sweep_id.into(),
            r.state.clone().into(),
            r.dataset_id.into(),
        ];
        row.extend(
            config_keys
                .iter()
                .map(|k| r.config.get(k).cloned().unwrap_or(Value::Null)),
        );
        row.extend([
            opt(r.best_val_loss),
            opt(r.best_epoch),
            opt(r.last_val_loss),
            opt(r.best_val_loss),
            opt(r.last_train_loss),
            r.epochs_done.into(),
            r.epochs_total.into(),
            opt(r.duration_s),
            opt(r.chars_per_sec),
            opt(r.created_at.map(|t| t.to_rfc3339())),
            opt(r.finished_at.map(|t| t.to_rfc3339())),
            Value::Array(r.tags.iter().cloned().map(Value::String).collect()),
        ]);
        row
    }

    /// The union of the epochs' metrics keys, sorted.
    pub fn metrics_keys<'a>(epochs: impl IntoIterator<Item = &'a v1::Epoch>) -> Vec<String> {
        let keys: BTreeSet<String> = epochs
            .into_iter()
            .filter_map(|e| serde_json::from_str::<Map<String, Value>>(&e.metrics_json).ok())
            .flat_map(|m| m.into_iter().map(|(k, _)| k))
            .collect();
        keys.into_iter().collect()
    }

    /// The columns of an epoch row: run id, epoch, attempt, losses, duration, throughput,
    /// then `metrics.<key>` for every metrics key.
    pub fn epoch_columns(metrics_keys: &[String]) -> Vec<String> {
        let mut cols: Vec<String> = [
            "run_id",
            "epoch",
            "attempt",
            "train_loss",
            "val_loss",
            "duration_s",
            "chars_per_sec",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        cols.extend(metrics_keys.iter().map(|k| format!("metrics.{k}")));
        cols
    }

    /// One epoch's row (the order of [`epoch_columns`]).
    pub fn epoch_row(run_id: i64, e: &v1::Epoch, metrics_keys: &[String]) -> Vec<Value> {
        let metrics: Map<String, Value> = serde_json::from_str(&e.metrics_json).unwrap_or_default();
        let f = |v: f64| if v.is_finite() { v.into() } else { Value::Null };
        let mut row = vec![
            run_id.into(),
            e.epoch.into(),
            e.attempt.into(),
            f(e.train_loss),
            f(e.val_loss),
            f(e.duration_s),
            f(e.chars_per_sec),
        ];
        row.extend(
            metrics_keys
                .iter()
                .map(|k| metrics.get(k).cloned().unwrap_or(Value::Null)),
        );
        row
    }

    /// A CSV cell: empty for null, strings bare, a list joined by `;`, JSON otherwise.
    fn cell(v: &Value) -> String {
        match v {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            Value::Array(xs) if xs.iter().all(Value::is_string) => xs
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(";"),
            other => other.to_string(),
        }
    }

    /// Writes rows under `columns` in `format` (the header first for CSV).
    pub struct Writer<W: Write> {
        format: Format,
        columns: Vec<String>,
        out: W,
    }

    impl<W: Write> Writer<W> {
        /// A writer of rows with these columns; writes the CSV header now.
        pub fn new(out: W, format: Format, columns: Vec<String>) -> std::io::Result<Self> {
            let mut w = Writer {
                format,
                columns,
                out,
            };
            if format == Format::Csv {
                let header = w.columns.clone();
                w.csv_record(header.iter().map(String::as_str))?;
            }
            Ok(w)
        }

        /// One CSV record, quoted by the `csv` crate (a fresh writer per record, so that the
        /// output can be taken between rows while streaming).
        fn csv_record<'a>(&mut self, cells: impl Iterator<Item = &'a str>) -> std::io::Result<()> {
            let mut c = csv::Writer::from_writer(Vec::new());
            c.write_record(cells)?;
            let bytes = c.into_inner().map_err(|e| e.into_error())?;
            self.out.write_all(&bytes)
        }

        /// One row, its values in the order of the columns.
        pub fn row(&mut self, values: Vec<Value>) -> std::io::Result<()> {
            match self.format {
                Format::Csv => {
                    let cells: Vec<String> = values.iter().map(cell).collect();
                    self.csv_record(cells.iter().map(String::as_str))
                }
                Format::Jsonl => {
                    let obj: Map<String, Value> =
                        self.columns.iter().cloned().zip(values).collect();
                    serde_json::to_writer(&mut self.out, &obj)?;
                    self.out.write_all(b"\n")
                }
            }
        }

        /// The output so far (a streaming caller takes the bytes written between rows).
        pub fn get_mut(&mut self) -> &mut W {
            &mut self.out
        }

        /// Flushes and gives the output back.
        pub fn finish(mut self) -> std::io::Result<W> {
            self.out.flush()?;
            Ok(self.out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn varying_keys_are_the_swept_ones() {
        let cs = [
            json!({"lr": 0.1, "units": 8, "seed": 1}),
            json!({"lr": 0.2, "units": 8, "seed": 1}),
            json!({"lr": 0.2, "units": 8}),
        ];
        assert_eq!(
            varying_keys(&cs),
            vec!["lr".to_string(), "seed".to_string()]
        );
        assert!(varying_keys(&[json!({"a": 1})]).is_empty());
        assert!(varying_keys(&[json!({"a": 1}), json!({"a": 1})]).is_empty());
    }

    #[test]
    fn absent_values_are_null_not_zero_or_nan() {
        let r = Run::from(v1::Run {
            id: 3,
            state: v1::RunState::Queued as i32,
            config_json: "{\"units\": 8}".into(),
            best_val_loss: f64::NAN,
            last_train_loss: f64::NAN,
            last_val_loss: f64::NAN,
            ..Default::default()
        });
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["state"], "queued");
        assert_eq!(v["config"]["units"], 8);
        for k in [
            "best_val_loss",
            "best_epoch",
            "worker_id",
            "error",
            "parent_run_id",
            "started_at",
        ] {
            assert!(v[k].is_null(), "{k}: {v}");
        }
        assert_eq!(v["tags"], json!([]));
    }

    #[test]
    fn a_sweep_counts_every_state_and_leaves_absent_values_null() {
        let s = Sweep::from(v1::Sweep {
            id: 4,
            runs: 3,
            counts: [("running".to_string(), 2), ("failed".to_string(), 1)].into(),
            best_val_loss: f64::NAN,
            best_run_id: 0,
            ..Default::default()
        });
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["run_count"], 3);
        assert_eq!(
            v["counts"],
            json!({"queued": 0, "running": 2, "paused": 0, "stopped": 0,
            "succeeded": 0, "failed": 1, "cancelled": 0})
        );
        for k in [
            "best_val_loss",
            "best_run_id",
            "max_concurrent",
            "finished_at",
        ] {
            assert!(v[k].is_null(), "{k}: {v}");
        }
        let d = SweepDetail::new(
            v1::GetSweepResponse {
                sweep: Some(v1::Sweep {
                    id: 4,
                    spec: "[grid]".into(),
                    ..Default::default()
                }),
                decisions: vec![v1::Decision {
                    id: 1,
                    sweep_id: 4,
                    kind: "pause_sweep".into(),
                    detail_json: "{\"rule\": \"user\"}".into(),
                    ..Default::default()
                }],
                plan_json: "{\"search\": \"grid\"}".into(),
                ..Default::default()
            },
            vec![
                v1::Run {
                    id: 1,
                    config_json: "{\"units\": 8}".into(),
                    ..Default::default()
                },
                v1::Run {
                    id: 2,
                    config_json: "{\"units\": 16}".into(),
                    ..Default::default()
                },
            ],
        );
        let v = serde_json::to_value(&d).unwrap();
        // The listed sweep's fields inline, beside the detail's.
        assert_eq!(
            (v["id"].clone(), v["spec"].clone()),
            (json!(4), json!("[grid]"))
        );
        assert_eq!(v["runs"].as_array().unwrap().len(), 2);
        assert_eq!(v["varying"], json!(["units"]));
        assert_eq!(v["plan"]["search"], "grid");
        assert!(v["decisions"][0]["run_id"].is_null());
        assert_eq!(v["decisions"][0]["detail"]["rule"], "user");
        assert!(v["best_run"].is_null());
        let back: SweepDetail = serde_json::from_value(v).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn a_run_detail_marks_its_best_checkpoint_and_nulls_the_absent_one() {
        let ck = |id| v1::Checkpoint {
            id,
            ..Default::default()
        };
        let d = RunDetail::from(v1::GetRunResponse {
            run: Some(v1::Run::default()),
            epochs: vec![v1::Epoch {
                epoch: 1,
                metrics_json: "{\"lr\": 0.002}".into(),
                ..Default::default()
            }],
            checkpoints: vec![ck(5), ck(6)],
            best_checkpoint_id: 6,
            ..Default::default()
        });
        let best: Vec<bool> = d.checkpoints.iter().map(|c| c.best).collect();
        assert_eq!((best, d.best_checkpoint_id), (vec![false, true], Some(6)));
        assert_eq!(d.epochs[0].metrics["lr"], 0.002);
        let none = RunDetail::from(v1::GetRunResponse {
            checkpoints: vec![ck(5)],
            ..Default::default()
        });
        assert!(none.best_checkpoint_id.is_none() && !none.checkpoints[0].best);
    }

    #[test]
    fn dataset_counts_are_typed_on_the_wire() {
        let counts: DatasetCounts = serde_json::from_value(json!({
            "lines": {"read": 5, "kept": 2},
            "input_bytes": 300,
            "not_poems_by_reason": {"hard_wrapped": 1}
        }))
        .unwrap();
        assert_eq!(
            (counts.lines.read, counts.lines.blank),
            (5, 0),
            "absent keys are 0"
        );
        let d = Dataset {
            id: 1,
            name: "tiny".into(),
            version: 2,
            content_hash: "h".into(),
            params_hash: "p".into(),
            poems: 2,
            chars: 10,
            vocab: "ab".into(),
            vocab_size: 2,
            shards: 4,
            validation_shards: vec![0],
            params: json!({"shards": 4}),
            counts,
            created_at: None,
        };
        let p = v1::Dataset::from(d);
        let c = p.counts.unwrap();
        assert_eq!((c.lines.unwrap().kept, c.input_bytes), (2, 300));
        assert_eq!(c.not_poems_by_reason["hard_wrapped"], 1);
        assert_eq!(p.params_json, "{\"shards\":4}");
        assert_eq!(p.params_hash, "p");
    }

    #[test]
    fn csv_quotes_what_needs_it_and_reads_back() {
        use export::*;
        let r = Run::from(v1::Run {
            id: 7,
            state: v1::RunState::Succeeded as i32,
            config_json: json!({"units": 8, "formulation": "a,\"b\"\nc"}).to_string(),
            best_val_loss: 1.5,
            last_train_loss: f64::NAN,
            last_val_loss: 1.75,
            duration_s: f64::NAN,
            chars_per_sec: f64::NAN,
            tags: vec!["x".into(), "y z".into()],
            ..Default::default()
        });
        let keys = config_keys([&r]);
        assert_eq!(keys, ["formulation", "units"]);
        let mut w = Writer::new(vec![], Format::Csv, run_columns(&keys)).unwrap();
        w.row(run_row(&r, &keys)).unwrap();
        let bytes = w.finish().unwrap();
        let mut rd = csv::Reader::from_reader(bytes.as_slice());
        let header: Vec<String> = rd.headers().unwrap().iter().map(String::from).collect();
        assert_eq!(header, run_columns(&keys));
        let rec = rd.records().next().unwrap().unwrap();
        let get = |c: &str| {
            rec.get(header.iter().position(|h| h == c).unwrap())
                .unwrap()
        };
        assert_eq!(get("config.formulation"), "a,\"b\"\nc");
        assert_eq!(get("best_val_loss"), "1.5");
        assert_eq!(get("last_train_loss"), "");
        assert_eq!(get("tags"), "x;y z");
        let mut w = Writer::new(vec![], Format::Jsonl, run_columns(&keys)).unwrap();
        w.row(run_row(&r, &keys)).unwrap();
        let line: Value = serde_json::from_slice(&w.finish().unwrap()).unwrap();
        assert_eq!(line["tags"], json!(["x", "y z"]));
        assert_eq!(line["config.units"], 8);
        assert!(line["last_train_loss"].is_null());
        assert_eq!(Format::from_path("out/runs.CSV"), Some(Format::Csv));
        assert_eq!(Format::from_path("runs.jsonl"), Some(Format::Jsonl));
        assert_eq!(Format::from_path("runs"), None);
    }
}

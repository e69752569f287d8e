//! The consumers of the pipeline: [`ingest`] (dedupe and COPY into a new dataset version, in
//! one transaction) and [`explain`] (the filter's distribution, no database).
//!
//! Ingest, step by step:
//! 1. take a transaction-scoped advisory lock on the dataset name, pick version = max + 1,
//!    insert the dataset row as `loading` and create the dataset's own poems table
//!    (`poems_<id>`, no index yet: `poems` is partitioned by dataset, migration `0005`);
//! 2. stream batches from the pool: rejects go to `ingest_rejects` (and the rejects file); each
//!    poem's dedupe key is looked up in an in-memory map (key → smallest source id so far).
//!    A new key, or a copy with a smaller source id than the stored one, is COPYed; any other
//!    copy only counts as a duplicate. One COPY streams the rows in sends of
//!    [`COPY_SEND_BYTES`] while the pool keeps parsing; rejects wait in a spool (memory, then a
//!    temporary file) and are COPYed after it;
//! 3. hash the corpus in export order (from the winners' text hashes kept in the map), size
//!    the split, and compare with existing versions: an identical (name, content hash, params
//!    hash) version means roll back (the new table goes with it) and report it;
//! 4. otherwise delete the copies that lost to a smaller source id (rare: only when the larger
//!    id came first in the input, so the kept copy never depends on input order), build the
//!    primary key in one sorted pass, attach the table to `poems`, mark the row `ready` and
//!    commit.
//!
//! Building the key after the load, and (under `wal_level = minimal`) not WAL-logging a table
//! created in the same transaction, is what Postgres's "Populating a Database" advises; it
//! halves the server's COPY work (see the migration's comment and `BENCHMARKS.md`).
//!
//! Any error (or `max_errors` exceeded) rolls the transaction back: nothing is left behind.
//!
//! Duplicates are decided by text, not by id: a line repeated with the same `_id` is a
//! duplicate because its text is; the same `_id` with a different text (an edited post dumped
//! twice) keeps both texts, under the same source id.

use std::collections::{HashMap, HashSet};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Postgres, Transaction};

use crate::dump::expand_inputs;
use crate::pipeline::Pipeline;
use crate::process::{
    Batch, CorpusChars, Counts, Filtered, PoemChars, Reject, Settings, StageTimes,
};
use crate::summary::{Explanation, SUMMARY_REJECTS, Summary, Timings};
use crate::{IngestError, IngestOptions};

/// The poems COPY is fed in sends of about this many bytes.
pub const COPY_SEND_BYTES: usize = 1 << 20;

/// Rejects kept in memory (as COPY rows) before spilling to a temporary file.
const REJECT_SPOOL_BYTES: usize = 4 << 20;

/// The copy of a poem that is kept: the one with the smallest source id.
struct Winner {
    source_id: Box<str>,
    /// sha256 of its framed text (for the content hash).
    text_hash: [u8; 32],
    /// Its characters (for the corpus's size and vocabulary).
    chars: PoemChars,
}

/// Writes rejects to the optional JSON-lines file.
struct RejectsFile {
    path: String,
    out: Option<std::io::BufWriter<std::fs::File>>,
}

impl RejectsFile {
    fn open(opts: &IngestOptions) -> Result<Self, IngestError> {
        let path = opts
            .rejects_file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let out = match &opts.rejects_file {
            Some(p) => Some(std::io::BufWriter::new(
                std::fs::File::create(p).map_err(|e| IngestError::output(path.clone(), e))?,
            )),
            None => None,
        };
        Ok(RejectsFile { path, out })
    }

    fn write(&mut self, r: &impl serde::Serialize) -> Result<(), IngestError> {
        if let Some(out) = &mut self.out {
            serde_json::to_writer(&mut *out, r)
                .map_err(std::io::Error::from)
                .and_then(|_| out.write_all(b"\n"))
                .map_err(|e| IngestError::output(self.path.clone(), e))?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), IngestError> {
        if let Some(out) = &mut self.out {
            out.flush()
                .map_err(|e| IngestError::output(self.path.clone(), e))?;
        }
        Ok(())
    }
}

/// Counts, rejects and limits shared by ingest and explain.
struct Tally {
    counts: Counts,
    times: StageTimes,
    first_rejects: Vec<Reject>,
    rejects_file: RejectsFile,
    max_errors: Option<u64>,
}

impl Tally {
    fn new(opts: &IngestOptions) -> Result<Self, IngestError> {
        Ok(Tally {
            counts: Counts::default(),
            times: StageTimes::default(),
            first_rejects: Vec::new(),
            rejects_file: RejectsFile::open(opts)?,
            max_errors: opts.max_errors,
        })
    }

    /// Takes a batch's counts, rejects and filtered documents (written to the rejects file);
    /// fails past `max_errors`.
    fn take(&mut self, batch: &mut Batch) -> Result<(Vec<Reject>, Vec<Filtered>), IngestError> {
        self.counts.add(&batch.counts);
        self.times.add(&batch.times);
        let filtered = std::mem::take(&mut batch.filtered);
        for f in &filtered {
            self.rejects_file.write(&RejectLine::Filtered(f))?;
        }
        let rejects = std::mem::take(&mut batch.rejects);
        for r in &rejects {
            self.rejects_file.write(&RejectLine::Malformed(r))?;
            if self.first_rejects.len() < SUMMARY_REJECTS {
                self.first_rejects.push(r.clone());
            }
        }
        if let (Some(limit), Some(last)) = (self.max_errors, rejects.last())
            && self.counts.malformed > limit
        {
            self.rejects_file.finish()?;
            return Err(IngestError::TooManyErrors {
                limit,
                last: format!("{}:{}: {}", last.file, last.line, last.reason),
            });
        }
        Ok((rejects, filtered))
    }
}

/// A line of the rejects file: a malformed line or a filtered document, told apart by `kind`.
#[derive(serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum RejectLine<'a> {
    Malformed(&'a Reject),
    Filtered(&'a Filtered),
}

/// A progress bar on stderr (only on a terminal, and not with `--no-progress`): percent done
/// and ETA when the inputs' total size is known (files), bytes and rate when it is not (stdin).
/// The position is raw bytes read (compressed bytes for gzip), so the percent is exact.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    last: Instant,
}

impl Progress {
    fn new(wanted: bool, total: Option<u64>) -> Self {
        let last = Instant::now();
        if !wanted || !std::io::stderr().is_terminal() {
            return Progress { bar: None, last };
        }
        let (bar, template) = match total {
            Some(n) => (
                indicatif::ProgressBar::new(n),
                "{bar:30} {percent:>3}% {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
            ),
            None => (
                indicatif::ProgressBar::new_spinner(),
                "{spinner} {bytes} read, {bytes_per_sec} {msg}",
            ),
        };
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(4));
        Progress {
            bar: Some(bar),
            last,
        }
    }

    fn tick(&mut self, bytes: u64, c: &Counts) {
        let Some(bar) = &self.bar else { return };
        bar.set_position(bytes);
        if self.last.elapsed() >= Duration::from_millis(250) {
            self.last = Instant::now();
            bar.set_message(format!(
                "{} docs, {} poems, {} malformed",
                c.docs,
                c.docs.saturating_sub(c.other_tag + c.empty + c.not_poems),
                c.malformed
            ));
        }
    }

    fn done(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Counts of filtered documents by verdict, in rule order.
#[derive(Default)]
struct ByVerdict(std::collections::BTreeMap<crate::filter::Verdict, u64>);

impl ByVerdict {
    fn add(&mut self, filtered: &[Filtered]) {
        for f in filtered {
            *self.0.entry(f.verdict).or_default() += 1;
        }
    }

    fn list(&self) -> Vec<(String, u64)> {
        self.0
            .iter()
            .map(|(v, n)| (v.name().to_string(), *n))
            .collect()
    }
}

/// The warning for an input most of whose lines are malformed (it is probably not a dump).
fn malformed_warning(c: &Counts) -> Option<String> {
    (c.read > 0 && c.malformed * 2 > c.read).then(|| {
        format!(
            "{} of {} lines ({:.0}%) were malformed: is this an Elasticsearch dump? (see the rejects)",
            c.malformed,
            c.read,
            100.0 * c.malformed as f64 / c.read as f64
        )
    })
}

/// The error for inputs that yielded no poem: what was read and what the input looks like.
fn no_poems(
    inputs: &[crate::dump::Input],
    heads: &[crate::dump::Head],
    c: &Counts,
    by_verdict: &ByVerdict,
    first_reject: Option<&Reject>,
) -> IngestError {
    let names: Vec<String> = inputs.iter().map(|i| i.name()).collect();
    let mut detail = format!(
        "read {} bytes, {} lines: {} malformed, {} documents",
        heads.iter().map(|h| h.bytes).sum::<u64>(),
        c.read + c.blank,
        c.malformed,
        c.docs
    );
    if c.docs > 0 {
        let reasons: Vec<String> = by_verdict
            .list()
            .into_iter()
            .map(|(r, n)| format!("{n} {r}"))
            .collect();
        detail += &format!(
            " ({} without the tag, {} left out by the filter: {})",
            c.other_tag,
            c.empty + c.not_poems,
            if reasons.is_empty() {
                "none".to_string()
            } else {
                reasons.join(", ")
            }
        );
    }
    let looks: Vec<String> = heads
        .iter()
        .take(3)
        .map(|h| {
            format!(
                "{} looks like {}",
                h.name,
                crate::dump::looks_like(&h.head, h.bytes)
            )
        })
        .collect();
    if !looks.is_empty() {
        detail += &format!("; {}", looks.join("; "));
    }
    if let Some(r) = first_reject {
        detail += &format!(
            "; first malformed line: {}:{}: {}",
            r.file, r.line, r.reason
        );
    }
    IngestError::NoPoems {
        inputs: names.join(", "),
        detail,
    }
}

fn params_of(opts: &IngestOptions) -> (serde_json::Value, String) {
    let params = json!({
        "mapping": opts.mapping,
        "tag": opts.tag.as_ref().map(|t| t.to_lowercase()),
        "filter": opts.filter,
        "shards": opts.shards,
        "validation_fraction": opts.validation_fraction,
    });
    // serde_json maps are sorted (no preserve_order): the text is canonical.
    let hash = hex::encode(Sha256::digest(params.to_string().as_bytes()));
    (params, hash)
}

fn settings_of(opts: &IngestOptions, dataset_id: i64, keep_measures: bool) -> Settings {
    Settings {
        mapping: opts.mapping.clone(),
        tag: opts.tag.as_ref().map(|t| t.to_lowercase()),
        filter: opts.filter.clone(),
        shards: opts.shards,
        dataset_id,
        keep_measures,
        wanted: opts.mapping.top_level_keys(),
        max_line_bytes: opts.max_line_bytes,
    }
}

/// Reads the dumps and prints nothing: returns the distribution of the filter's measures
/// over every non-empty document (with the tag), for choosing thresholds. No database.
pub async fn explain(opts: &IngestOptions) -> Result<Explanation, IngestError> {
    opts.validate()?;
    let inputs = expand_inputs(&opts.inputs)?;
    let mut tally = Tally::new(opts)?;
    let mut exp = Explanation::new(opts.filter.clone());
    let total = crate::dump::total_size(&inputs);
    let mut pipeline = Pipeline::start(
        inputs,
        opts.format,
        settings_of(opts, 0, true),
        opts.limits(),
    );
    let mut progress = Progress::new(opts.progress && !opts.no_progress, total);
    while let Some(batch) = pipeline.next().await {
        let mut batch = batch?;
        tally.take(&mut batch)?;
        for (m, v) in &batch.measures {
            exp.add(m, *v);
        }
        exp.add_samples(std::mem::take(&mut batch.samples));
        progress.tick(
            pipeline.bytes.load(std::sync::atomic::Ordering::Relaxed),
            &tally.counts,
        );
    }
    progress.done();
    tally.rejects_file.finish()?;
    exp.counts = tally.counts;
    exp.rejects = tally.first_rejects;
    exp.warnings.extend(malformed_warning(&exp.counts));
    if !exp
        .verdicts
        .iter()
        .any(|(v, n)| *v == crate::filter::Verdict::Poem && *n > 0)
    {
        exp.warnings
            .push("no document is a poem: an ingest of these inputs would fail".into());
    }
    Ok(exp)
}

/// Ingests the dumps into a new version of dataset `opts.name`, or finds that an identical
/// version exists (then nothing is written and `created` is false). The steps of the module
/// doc, one function each: [`begin_version`], [`load`], [`Corpus::of`], [`finish_version`].
pub async fn ingest(pool: &PgPool, opts: &IngestOptions) -> Result<Summary, IngestError> {
    let start = Instant::now();
    opts.validate()?;
    let inputs = expand_inputs(&opts.inputs)?;
    let (params, params_hash) = params_of(opts);
    let validation_shards = opts.validation_shards();
    let mut tally = Tally::new(opts)?;

    let mut tx = pool.begin().await?;
    let (dataset_id, version) =
        begin_version(&mut tx, opts, &params, &params_hash, &validation_shards).await?;
    let loaded = load(&mut tx, opts, &inputs, dataset_id, &mut tally).await?;
    if loaded.dedupe.winners.is_empty() {
        // Pointing ingest at the wrong file must not look like success: nothing is stored.
        tx.rollback().await?;
        return Err(no_poems(
            &inputs,
            &loaded.heads,
            &tally.counts,
            &loaded.by_verdict,
            tally.first_rejects.first(),
        ));
    }

    let finalize_start = Instant::now();
    let corpus = Corpus::of(loaded.dedupe, opts, &validation_shards);
    tally.counts.kept = corpus.poems;
    let existing: Option<(i64, i32)> = sqlx::query_as(
        "select id, version from datasets
         where name = $1 and content_hash = $2 and params_hash = $3 and state = 'ready'",
    )
    .bind(&opts.name)
    .bind(&corpus.content_hash)
    .bind(&params_hash)
    .fetch_optional(&mut *tx)
    .await?;

    let mut summary = Summary {
        dataset_id,
        name: opts.name.clone(),
        version,
        created: existing.is_none(),
        counts: tally.counts,
        chars: corpus.chars.total(),
        vocab_size: corpus.vocab.chars().count(),
        content_hash: corpus.content_hash.clone(),
        params_hash,
        shards: opts.shards,
        train_poems: corpus.poems - corpus.validation_poems,
        validation_poems: corpus.validation_poems,
        input_bytes: loaded.input_bytes,
        rejects: tally.first_rejects,
        not_poems_by_reason: loaded.by_verdict.list(),
        warnings: malformed_warning(&tally.counts).into_iter().collect(),
        timings: Timings::default(),
    };
    if let Some((id, existing_version)) = existing {
        tx.rollback().await?;
        summary.dataset_id = id;
        summary.version = existing_version;
    } else {
        finish_version(tx, dataset_id, &corpus, &summary).await?;
    }
    let times = tally.times;
    summary.timings = Timings {
        parse_s: times.parse.as_secs_f64(),
        html_s: times.html.as_secs_f64(),
        filter_s: times.filter.as_secs_f64(),
        key_s: times.key.as_secs_f64(),
        copy_s: loaded.copy_time.as_secs_f64(),
        finalize_s: finalize_start.elapsed().as_secs_f64(),
        total_s: start.elapsed().as_secs_f64(),
    };
    tracing::info!(
        dataset = %summary.reference(),
        created = summary.created,
        kept = summary.counts.kept,
        duplicates = summary.counts.duplicates,
        malformed = summary.counts.malformed,
        "ingest.done"
    );
    for w in &summary.warnings {
        tracing::warn!(dataset = %summary.reference(), "{w}");
    }
    Ok(summary)
}

/// Step 1: under a transaction-scoped advisory lock on the name, the next version's row
/// (`loading`) and its own poems table, with no index while loading. Returns (id, version).
async fn begin_version(
    tx: &mut Transaction<'_, Postgres>,
    opts: &IngestOptions,
    params: &serde_json::Value,
    params_hash: &str,
    validation_shards: &[i32],
) -> Result<(i64, i32), IngestError> {
    sqlx::query("select pg_advisory_xact_lock(hashtextextended('poet.dataset:' || $1, 0))")
        .bind(&opts.name)
        .execute(&mut **tx)
        .await?;
    let (dataset_id, version): (i64, i32) = sqlx::query_as(
        "insert into datasets (name, version, content_hash, params_hash, params, shards, validation_shards, state)
         select $1, coalesce(max(version), 0) + 1, '', $2, $3, $4, $5, 'loading' from datasets where name = $1
         returning id, version",
    )
    .bind(&opts.name)
    .bind(params_hash)
    .bind(params)
    .bind(opts.shards as i32)
    .bind(validation_shards)
    .fetch_one(&mut **tx)
    .await?;
    // The check lets the attach skip its scan. DDL and table names take no bind parameters,
    // so this table's statements format its name and bounds from `dataset_id`: an i64 this
    // transaction got from `returning id`, never text from a dump.
    let table = poet_sql::poems_partition(dataset_id);
    sqlx::query(&format!(
        "create table {table} (like poems including defaults including constraints,
                               check (dataset_id = {dataset_id}))"
    ))
    .execute(&mut **tx)
    .await?;
    Ok((dataset_id, version))
}

/// What step 2 leaves behind.
struct Loaded {
    dedupe: Dedupe,
    by_verdict: ByVerdict,
    copy_time: Duration,
    input_bytes: u64,
    heads: Vec<crate::dump::Head>,
}

/// Step 2: streams the pool's batches into one COPY of the dataset's table (the copies
/// [`Dedupe`] keeps), and the rejects after it.
async fn load(
    tx: &mut Transaction<'_, Postgres>,
    opts: &IngestOptions,
    inputs: &[crate::dump::Input],
    dataset_id: i64,
    tally: &mut Tally,
) -> Result<Loaded, IngestError> {
    let table = poet_sql::poems_partition(dataset_id);
    let mut pipeline = Pipeline::start(
        inputs.to_vec(),
        opts.format,
        settings_of(opts, dataset_id, false),
        opts.limits(),
    );
    let total = crate::dump::total_size(inputs);
    let mut progress = Progress::new(opts.progress && !opts.no_progress, total);
    let mut by_verdict = ByVerdict::default();
    let mut dedupe = Dedupe::default();
    let mut copy_buf: Vec<u8> = Vec::with_capacity(COPY_SEND_BYTES + (1 << 20));
    copy_buf.extend_from_slice(crate::process::COPY_BINARY_HEADER);
    let mut spool = RejectSpool::default();
    let mut copy_time = Duration::ZERO;
    // One COPY for the whole load, fed in bounded sends: Postgres works while the pool parses.
    let mut copy = tx
        .copy_in_raw(&format!(
            "copy {table} (dataset_id, dedupe_key, shard, source_id, text, meta) from stdin with (format binary)"
        ))
        .await?;
    while let Some(batch) = pipeline.next().await {
        let mut batch = batch?;
        let (rejects, filtered) = tally.take(&mut batch)?;
        for r in &rejects {
            spool.push(dataset_id, r)?;
        }
        by_verdict.add(&filtered);
        for f in &filtered {
            spool.push_filtered(dataset_id, f)?;
        }
        for poem in std::mem::take(&mut batch.poems) {
            let row = poem.row.clone();
            match dedupe.offer(poem) {
                Offer::Keep => copy_buf.extend_from_slice(&batch.rows[row]),
                Offer::Duplicate { keep } => {
                    tally.counts.duplicates += 1;
                    if keep {
                        copy_buf.extend_from_slice(&batch.rows[row]);
                    }
                }
            }
        }
        if copy_buf.len() >= COPY_SEND_BYTES {
            let t = Instant::now();
            copy.send(copy_buf.as_slice()).await?;
            copy_buf.clear();
            copy_time += t.elapsed();
        }
        progress.tick(
            pipeline.bytes.load(std::sync::atomic::Ordering::Relaxed),
            &tally.counts,
        );
    }
    progress.done();
    let t = Instant::now();
    copy_buf.extend_from_slice(crate::process::COPY_BINARY_TRAILER);
    copy.send(copy_buf.as_slice()).await?;
    copy.finish().await?;
    drop(copy_buf);
    spool.load(tx).await?;
    copy_time += t.elapsed();
    tally.rejects_file.finish()?;
    Ok(Loaded {
        dedupe,
        by_verdict,
        copy_time,
        input_bytes: pipeline.bytes.load(std::sync::atomic::Ordering::Relaxed),
        heads: pipeline.heads(),
    })
}

/// Step 2's dedupe: dedupe key → the copy kept so far (the smallest source id), and the keys
/// whose stored row may have a loser beside it.
#[derive(Default)]
struct Dedupe {
    winners: HashMap<[u8; 32], Winner>,
    superseded: HashSet<[u8; 32]>,
}

/// What to do with a poem offered to [`Dedupe`].
#[derive(Debug, PartialEq, Eq)]
enum Offer {
    /// A new text: store it.
    Keep,
    /// A copy of a text seen before; stored only when its source id is smaller than the kept
    /// copy's (the loser is deleted in step 4).
    Duplicate { keep: bool },
}

impl Dedupe {
    fn offer(&mut self, poem: crate::process::PoemRow) -> Offer {
        let winner = Winner {
            source_id: poem.source_id,
            text_hash: poem.text_hash,
            chars: poem.chars,
        };
        match self.winners.get_mut(&poem.key) {
            None => {
                self.winners.insert(poem.key, winner);
                Offer::Keep
            }
            Some(current) => {
                let keep = *winner.source_id < *current.source_id;
                if keep {
                    *current = winner;
                    self.superseded.insert(poem.key);
                }
                Offer::Duplicate { keep }
            }
        }
    }
}

/// Step 3: the corpus's facts from the winners, in export (dedupe key) order, with no second
/// pass over the stored texts.
struct Corpus {
    content_hash: String,
    poems: u64,
    validation_poems: u64,
    /// Set when every poem fell on one side of the split: the key moved to the other side.
    split_flip: Option<String>,
    chars: CorpusChars,
    vocab: String,
    /// The copies that lost to a smaller source id, as (key, winner's source id).
    superseded: (Vec<String>, Vec<String>),
}

impl Corpus {
    fn of(dedupe: Dedupe, opts: &IngestOptions, validation_shards: &[i32]) -> Corpus {
        let Dedupe {
            winners,
            superseded,
        } = dedupe;
        let superseded = superseded
            .iter()
            .map(|k| (hex::encode(k), winners[k].source_id.to_string()))
            .unzip();
        let mut chars = CorpusChars::default();
        for w in winners.values() {
            chars.add(&w.chars);
        }
        let mut order: Vec<([u8; 32], [u8; 32])> =
            winners.into_iter().map(|(k, w)| (k, w.text_hash)).collect();
        order.sort_unstable_by_key(|a| a.0);
        let mut hasher = Sha256::new();
        let mut valid = 0u64;
        let n_valid_shards = validation_shards.len() as u32;
        for (key, text_hash) in &order {
            hasher.update(text_hash);
            // validation shards are 0..n
            if crate::process::shard_of(key, opts.shards) < n_valid_shards {
                valid += 1;
            }
        }
        let poems = order.len() as u64;
        let split_flip =
            (poems >= 2 && opts.validation_fraction > 0.0 && (valid == 0 || valid == poems))
                .then(|| hex::encode(order[0].0));
        if split_flip.is_some() {
            valid = if valid == 0 { 1 } else { poems - 1 };
        }
        let vocab = chars.vocab();
        Corpus {
            content_hash: hex::encode(hasher.finalize()),
            poems,
            validation_poems: valid,
            split_flip,
            chars,
            vocab,
            superseded,
        }
    }
}

/// Step 4: deletes the copies that lost to a smaller source id, builds the primary key in one
/// sorted pass, attaches the table to `poems`, marks the row `ready` and commits.
async fn finish_version(
    mut tx: Transaction<'_, Postgres>,
    dataset_id: i64,
    corpus: &Corpus,
    summary: &Summary,
) -> Result<(), IngestError> {
    let table = poet_sql::poems_partition(dataset_id);
    let (superseded_keys, superseded_ids) = &corpus.superseded;
    if !superseded_keys.is_empty() {
        // No index and no statistics yet: left alone, the planner sorts the whole table
        // for a merge join and JIT-compiles it (0.23 s on the benchmark's 224k poems); a
        // hash of the few superseded keys probed by one scan takes 0.10 s.
        for setting in ["set local jit = off", "set local enable_mergejoin = off"] {
            sqlx::query(setting).execute(&mut *tx).await?;
        }
        sqlx::query(&format!(
            "delete from {table} p using unnest($1::text[], $2::text[]) as w(k, s)
             where p.dedupe_key = w.k and p.source_id <> w.s"
        ))
        .bind(superseded_keys)
        .bind(superseded_ids)
        .execute(&mut *tx)
        .await?;
        sqlx::query("set local enable_mergejoin = on")
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(&format!(
        "alter table {table} add primary key (dataset_id, dedupe_key)"
    ))
    .execute(&mut *tx)
    .await?;
    sqlx::query(&format!(
        "alter table poems attach partition {table} for values in ({dataset_id})"
    ))
    .execute(&mut *tx)
    .await?;
    let by_reason: serde_json::Map<String, serde_json::Value> = summary
        .not_poems_by_reason
        .iter()
        .map(|(r, n)| (r.clone(), (*n).into()))
        .collect();
    let counts = json!({
        "lines": summary.counts,
        "input_bytes": summary.input_bytes,
        "not_poems_by_reason": by_reason,
    });
    sqlx::query(
        "update datasets set state = 'ready', content_hash = $2, counts = $3, poems = $4, chars = $5,
                vocab = $6, split_flip = $7
         where id = $1",
    )
    .bind(dataset_id)
    .bind(&corpus.content_hash)
    .bind(&counts)
    .bind(corpus.poems as i64)
    .bind(corpus.chars.total() as i64)
    .bind(&corpus.vocab)
    .bind(&corpus.split_flip)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Rejects waiting for the poems COPY to end (the connection is busy until then), as COPY
/// rows: in memory up to [`REJECT_SPOOL_BYTES`], then in an anonymous temporary file, so a
/// dump of garbage does not grow memory.
#[derive(Default)]
struct RejectSpool {
    buf: Vec<u8>,
    file: Option<std::fs::File>,
}

impl RejectSpool {
    fn push(&mut self, dataset_id: i64, r: &Reject) -> Result<(), IngestError> {
        self.row(
            dataset_id,
            &r.file,
            r.line,
            &r.reason,
            "malformed",
            None,
            None,
        )
    }

    fn push_filtered(&mut self, dataset_id: i64, f: &Filtered) -> Result<(), IngestError> {
        let mut measures = serde_json::to_value(f.features.rounded()).unwrap_or_default();
        if let Some(m) = measures.as_object_mut() {
            m.insert("why".into(), f.why.clone().into());
        }
        self.row(
            dataset_id,
            &f.file,
            f.line,
            f.verdict.name(),
            "filtered",
            f.source_id.as_deref(),
            Some(&measures.to_string()),
        )
    }

    /// One COPY text row of `ingest_rejects` (`\N` is NULL).
    #[allow(clippy::too_many_arguments)]
    fn row(
        &mut self,
        dataset_id: i64,
        file: &str,
        line: u64,
        reason: &str,
        kind: &str,
        source_id: Option<&str>,
        measures: Option<&str>,
    ) -> Result<(), IngestError> {
        use crate::process::copy_escape;
        self.buf
            .extend_from_slice(dataset_id.to_string().as_bytes());
        for (i, field) in [
            Some(file),
            None,
            Some(reason),
            Some(kind),
            source_id,
            measures,
        ]
        .into_iter()
        .enumerate()
        {
            self.buf.push(b'\t');
            match (i, field) {
                (1, _) => self.buf.extend_from_slice(line.to_string().as_bytes()),
                (_, Some(f)) => copy_escape(&mut self.buf, &f.replace('\0', "")),
                (_, None) => self.buf.extend_from_slice(b"\\N"),
            }
        }
        self.buf.push(b'\n');
        if self.buf.len() >= REJECT_SPOOL_BYTES {
            let spill = |e: std::io::Error| IngestError::output("rejects spool", e);
            if self.file.is_none() {
                self.file = Some(tempfile::tempfile().map_err(spill)?);
            }
            let f = self.file.as_mut().expect("just set");
            f.write_all(&self.buf).map_err(spill)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// COPYs every spooled reject into `ingest_rejects`.
    async fn load(
        mut self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    ) -> Result<(), IngestError> {
        use std::io::{Read, Seek};
        if self.buf.is_empty() && self.file.is_none() {
            return Ok(());
        }
        let mut copy = tx
            .copy_in_raw(
                "copy ingest_rejects (dataset_id, file, line, reason, kind, source_id, measures) from stdin",
            )
            .await?;
        if let Some(mut f) = self.file.take() {
            let spill = |e: std::io::Error| IngestError::output("rejects spool", e);
            f.rewind().map_err(spill)?;
            let mut chunk = vec![0u8; 1 << 20];
            loop {
                let n = f.read(&mut chunk).map_err(spill)?;
                if n == 0 {
                    break;
                }
                copy.send(&chunk[..n]).await?;
            }
        }
        if !self.buf.is_empty() {
            copy.send(self.buf.as_slice()).await?;
        }
        copy.finish().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::PoemRow;

    fn poem(text: &str, source_id: &str) -> PoemRow {
        PoemRow {
            key: crate::process::dedupe_key(text),
            source_id: source_id.into(),
            text_hash: Sha256::digest(text.as_bytes()).into(),
            row: 0..0,
            chars: PoemChars {
                count: text.chars().count() as u32,
                ..PoemChars::default()
            },
        }
    }

    #[test]
    fn dedupe_keeps_the_copy_with_the_smallest_source_id() {
        let mut d = Dedupe::default();
        assert_eq!(d.offer(poem("the sea\nis wide", "b")), Offer::Keep);
        // Same text after normalisation, larger id: a duplicate, not stored.
        assert_eq!(
            d.offer(poem("The  sea\nis wide ", "c")),
            Offer::Duplicate { keep: false }
        );
        assert!(d.superseded.is_empty());
        // Smaller id: stored, and the stored "b" row becomes a loser to delete in step 4.
        assert_eq!(
            d.offer(poem("the sea is wide", "a")),
            Offer::Duplicate { keep: true }
        );
        assert_eq!(d.superseded.len(), 1);
        assert_eq!(d.offer(poem("another\npoem", "z")), Offer::Keep);
        assert_eq!(d.winners.len(), 2);
        let key = crate::process::dedupe_key("the sea is wide");
        assert_eq!(&*d.winners[&key].source_id, "a");
    }

    #[test]
    fn the_corpus_hash_does_not_depend_on_input_order() {
        let opts = IngestOptions::new(vec!["a.ndjson".into()], "d");
        let shards = opts.validation_shards();
        let texts = [
            ("one\npoem", "1"),
            ("two\npoems", "2"),
            ("three\npoems", "3"),
        ];
        let corpus = |order: &[usize]| {
            let mut d = Dedupe::default();
            for &i in order {
                d.offer(poem(texts[i].0, texts[i].1));
            }
            Corpus::of(d, &opts, &shards)
        };
        let (a, b) = (corpus(&[0, 1, 2]), corpus(&[2, 0, 1]));
        assert_eq!(a.content_hash, b.content_hash);
        assert_eq!((a.poems, a.validation_poems), (b.poems, b.validation_poems));
        assert_eq!(a.poems, 3);
        assert_ne!(a.content_hash, corpus(&[0, 1]).content_hash);
    }
}

//! What an ingest reports ([`Summary`]: JSON for `--json`, a table for people) and what
//! `--explain` prints ([`Explanation`]: the distribution of the filter's measures).

use std::fmt;

use serde::Serialize;

use crate::filter::{FilterKind, FilterParams, Measures, Verdict};
use crate::process::{Counts, Reject, Sample};

/// Samples of each verdict `--explain` shows.
pub const EXPLAIN_SAMPLES: usize = 3;

/// How many rejects a summary carries (all of them go to the table and the rejects file).
pub const SUMMARY_REJECTS: usize = 20;

/// Seconds spent per stage. Worker stages are summed over the worker threads (CPU-seconds);
/// `copy` and `finalize` are wall time of the consumer.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Timings {
    /// JSON parsing and field mapping.
    pub parse_s: f64,
    /// HTML to text.
    pub html_s: f64,
    /// Measuring and judging.
    pub filter_s: f64,
    /// Dedupe key, shard and COPY row encoding.
    pub key_s: f64,
    /// Waiting on COPY (and reject inserts) to Postgres.
    pub copy_s: f64,
    /// Dropping duplicate copies, hashing, the split and commit.
    pub finalize_s: f64,
    /// End to end.
    pub total_s: f64,
}

/// The result of an ingest.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Dataset id (of the existing version when `created` is false).
    pub dataset_id: i64,
    /// Dataset name.
    pub name: String,
    /// Dataset version.
    pub version: i32,
    /// False when an identical version already existed (nothing was written).
    pub created: bool,
    /// What happened to every line.
    pub counts: Counts,
    /// Characters of the framed corpus.
    pub chars: u64,
    /// Distinct characters of the framed corpus.
    pub vocab_size: usize,
    /// See `datasets.content_hash`.
    pub content_hash: String,
    /// See `datasets.params_hash`.
    pub params_hash: String,
    /// Number of shards.
    pub shards: u32,
    /// Poems in the training split.
    pub train_poems: u64,
    /// Poems in the validation split.
    pub validation_poems: u64,
    /// Input bytes read (compressed size for gzip).
    pub input_bytes: u64,
    /// The first rejects (see [`SUMMARY_REJECTS`]).
    pub rejects: Vec<Reject>,
    /// Documents left out by the filter, by reason (`hard_wrapped`, `empty`, ...).
    pub not_poems_by_reason: Vec<(String, u64)>,
    /// What looks wrong with the input though the ingest went through (printed on stderr).
    pub warnings: Vec<String>,
    /// Where the time went.
    pub timings: Timings,
}

impl Summary {
    /// `name@version`.
    pub fn reference(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.created {
            writeln!(
                f,
                "created {} (dataset {})",
                self.reference(),
                self.dataset_id
            )?;
        } else {
            writeln!(
                f,
                "already exists as {} (dataset {}); nothing written",
                self.reference(),
                self.dataset_id
            )?;
        }
        let c = &self.counts;
        let rows: [(&str, u64); 10] = [
            ("lines read", c.read),
            ("blank lines", c.blank),
            ("malformed", c.malformed),
            ("documents", c.docs),
            ("without tag", c.other_tag),
            ("empty", c.empty),
            ("not poems", c.not_poems),
            ("duplicates", c.duplicates),
            ("kept", c.kept),
            ("characters", self.chars),
        ];
        for (k, v) in rows {
            writeln!(f, "  {k:<14} {v:>12}")?;
            if k == "not poems" && !self.not_poems_by_reason.is_empty() {
                let by: Vec<String> = self
                    .not_poems_by_reason
                    .iter()
                    .map(|(r, n)| format!("{r} {n}"))
                    .collect();
                writeln!(f, "  {:<14} {}", "  by reason", by.join(", "))?;
            }
        }
        writeln!(f, "  {:<14} {:>12}", "vocabulary", self.vocab_size)?;
        writeln!(
            f,
            "  {:<14} {:>12} / {} ({} shards)",
            "train / valid", self.train_poems, self.validation_poems, self.shards
        )?;
        writeln!(f, "  {:<14} {}", "content hash", self.content_hash)?;
        let t = &self.timings;
        let mb = self.input_bytes as f64 / 1e6;
        writeln!(
            f,
            "  {:<14} {:.1} MB in {:.2} s ({:.1} MB/s, {:.0} docs/s)",
            "throughput",
            mb,
            t.total_s,
            mb / t.total_s.max(1e-9),
            c.read as f64 / t.total_s.max(1e-9)
        )?;
        writeln!(
            f,
            "  {:<14} parse {:.2}, html {:.2}, filter {:.2}, key {:.2} (cpu-s); copy {:.2}, finalize {:.2} (s)",
            "stages", t.parse_s, t.html_s, t.filter_s, t.key_s, t.copy_s, t.finalize_s
        )?;
        if !self.rejects.is_empty() {
            writeln!(
                f,
                "  rejects{}:",
                if c.malformed as usize > self.rejects.len() {
                    " (first)"
                } else {
                    ""
                }
            )?;
            for r in &self.rejects {
                writeln!(f, "    {}:{}: {}", r.file, r.line, r.reason)?;
            }
        }
        Ok(())
    }
}

/// Buckets of a histogram: `width`-wide, the last one open-ended.
#[derive(Clone, Debug, Serialize)]
pub struct Histogram {
    /// What is measured.
    pub measure: &'static str,
    /// Bucket width.
    pub width: f64,
    /// Counts of documents the rule keeps, per bucket.
    pub poems: Vec<u64>,
    /// Counts of documents the rule drops, per bucket.
    pub others: Vec<u64>,
}

impl Histogram {
    fn new(measure: &'static str, width: f64, buckets: usize) -> Self {
        Histogram {
            measure,
            width,
            poems: vec![0; buckets],
            others: vec![0; buckets],
        }
    }

    fn add(&mut self, v: f64, poem: bool) {
        let i = ((v / self.width) as usize).min(self.poems.len() - 1);
        if poem {
            self.poems[i] += 1;
        } else {
            self.others[i] += 1;
        }
    }
}

/// The distribution of the filter's measures over a dump, for picking thresholds.
#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    /// The thresholds the verdicts below used.
    pub filter: FilterParams,
    /// Counts (duplicates are not detected here: no database).
    pub counts: Counts,
    /// Non-empty documents by verdict.
    pub verdicts: Vec<(Verdict, u64)>,
    /// Mean words per line.
    pub words_per_line: Histogram,
    /// Non-blank lines.
    pub lines: Histogram,
    /// Longest line in characters.
    pub max_line_chars: Histogram,
    /// Documents the density rule would keep if `max_words_per_line` were each value (other
    /// thresholds as given).
    pub kept_by_max_words_per_line: Vec<(f64, u64)>,
    /// A few documents of each verdict, kept and left out, with their measures and reason.
    pub samples: Vec<Sample>,
    /// The first rejects.
    pub rejects: Vec<Reject>,
    /// What looks wrong with the input.
    pub warnings: Vec<String>,
}

impl Explanation {
    pub(crate) fn new(filter: FilterParams) -> Self {
        Explanation {
            filter,
            counts: Counts::default(),
            verdicts: Vec::new(),
            words_per_line: Histogram::new("mean words per line", 1.0, 40),
            lines: Histogram::new("lines", 2.0, 40),
            max_line_chars: Histogram::new("longest line (chars)", 20.0, 40),
            kept_by_max_words_per_line: (4..=30).map(|w| (f64::from(w), 0)).collect(),
            samples: Vec::new(),
            rejects: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Keeps up to [`EXPLAIN_SAMPLES`] samples of each verdict.
    pub(crate) fn add_samples(&mut self, samples: Vec<Sample>) {
        for s in samples {
            if self
                .samples
                .iter()
                .filter(|k| k.doc.verdict == s.doc.verdict)
                .count()
                < EXPLAIN_SAMPLES
            {
                self.samples.push(s);
            }
        }
    }

    pub(crate) fn add(&mut self, m: &Measures, v: Verdict) {
        let poem = v == Verdict::Poem;
        self.words_per_line.add(m.words_per_line(), poem);
        self.lines.add(f64::from(m.lines), poem);
        self.max_line_chars.add(f64::from(m.max_line_chars), poem);
        match self.verdicts.iter_mut().find(|(k, _)| *k == v) {
            Some((_, n)) => *n += 1,
            None => self.verdicts.push((v, 1)),
        }
        for (w, n) in &mut self.kept_by_max_words_per_line {
            let f = FilterParams {
                kind: FilterKind::Density,
                max_words_per_line: *w,
                ..self.filter.clone()
            };
            if f.verdict(m) == Verdict::Poem {
                *n += 1;
            }
        }
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.filter;
        match p.kind {
            FilterKind::Verse => writeln!(
                f,
                "filter: verse (min lines {}; rules {})",
                p.min_lines,
                serde_json::to_string(&p.verse).unwrap_or_default()
            )?,
            FilterKind::Density => writeln!(
                f,
                "filter: density (min lines {}, max words per line {}, max line chars {})",
                p.min_lines, p.max_words_per_line, p.max_line_chars
            )?,
        }
        let c = &self.counts;
        writeln!(
            f,
            "read {} lines: {} malformed, {} documents ({} without tag, {} empty)",
            c.read, c.malformed, c.docs, c.other_tag, c.empty
        )?;
        for (v, n) in &self.verdicts {
            let name = serde_json::to_value(v)
                .ok()
                .and_then(|j| j.as_str().map(str::to_string))
                .unwrap_or_default();
            writeln!(f, "  {name:<14} {n:>8}")?;
        }
        for h in [&self.words_per_line, &self.lines, &self.max_line_chars] {
            writeln!(f, "\n{} (poem | other):", h.measure)?;
            let max = h
                .poems
                .iter()
                .chain(&h.others)
                .copied()
                .max()
                .unwrap_or(1)
                .max(1);
            let last = h.poems.len() - 1;
            for i in 0..=last {
                if h.poems[i] + h.others[i] == 0 {
                    continue;
                }
                let lo = i as f64 * h.width;
                let label = if i == last {
                    format!("{lo:>6}+     ")
                } else {
                    format!("{lo:>6}..{:<6}", lo + h.width)
                };
                let bar =
                    |n: u64, ch: char| ch.to_string().repeat(((n * 30).div_ceil(max)) as usize);
                writeln!(
                    f,
                    "  {label} {:>7} {:<30} | {:>7} {}",
                    h.poems[i],
                    bar(h.poems[i], '#'),
                    h.others[i],
                    bar(h.others[i], '.')
                )?;
            }
        }
        for (title, kept) in [("kept", true), ("left out", false)] {
            writeln!(
                f,
                "\n{title} (samples, up to {EXPLAIN_SAMPLES} per verdict):"
            )?;
            let mut any = false;
            for s in self
                .samples
                .iter()
                .filter(|s| (s.doc.verdict == Verdict::Poem) == kept)
            {
                let d = &s.doc;
                any = true;
                writeln!(
                    f,
                    "  {}:{} {} {}",
                    d.file,
                    d.line,
                    d.source_id.as_deref().unwrap_or("-"),
                    d.why
                )?;
                let x = &d.features;
                writeln!(
                    f,
                    "      lines {}, words/line {:.1}, longest {} chars, inner sentence ends/line {:.2}, sentence-ending lines {:.0}%, open-ended lines {:.0}%, lower-case continuations {:.0}%, early breaks {:.0}%, single-line stanzas {:.0}%, list items {:.0}%",
                    x.lines,
                    x.words_per_line,
                    x.max_line_chars,
                    x.inner_sentences,
                    x.sentence_ends * 100.0,
                    x.open_ends * 100.0,
                    x.lower_continuations * 100.0,
                    x.early_breaks * 100.0,
                    x.single_line_stanzas * 100.0,
                    x.list_items * 100.0
                )?;
                for l in &s.opening {
                    writeln!(f, "      | {l}")?;
                }
            }
            if !any {
                writeln!(f, "  (none)")?;
            }
        }
        writeln!(f, "\nkept by the density rule if max words per line were:")?;
        for (w, n) in &self.kept_by_max_words_per_line {
            writeln!(f, "  {w:>4} {n:>8}")?;
        }
        for r in &self.rejects {
            writeln!(f, "reject {}:{}: {}", r.file, r.line, r.reason)?;
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        Ok(())
    }
}

//! `poet ingest`: Elasticsearch dumps of WordPress posts to a named, versioned, deduplicated
//! poem dataset in Postgres, and the dataset commands (`list`, `show`, `export`) and the
//! train/validation corpora training runs read.
//!
//! # Layout
//! - [`dump`]: inputs (files, folders, stdin, gzip) and the NDJSON, `_bulk` and scroll formats.
//! - [`mapping`]: where a post's fields live in `_source` ([`FieldMapping`]).
//! - [`html`]: WordPress HTML renderings to canonical poem text.
//! - [`filter`]: what tells poems from prose: the `verse` rules (default) and the seed's
//!   newline-density rule (`--filter density`), each verdict with its reason ([`FilterParams`]).
//! - [`process`]: the per-document work of the worker pool (dedupe key, shard, COPY row).
//! - `pipeline`: reader thread → worker threads → the async aggregator, with bounded channels.
//! - [`ingest()`](ingest()) / [`explain()`](explain()): the two consumers of the pipeline.
//! - [`dataset`]: listing, lookup, export and the train/validation split.
//! - [`summary`]: what an ingest or an explain reports ([`Summary`], [`Explanation`]).
//! - `fuzzing`: invariants checked by the cargo-fuzz targets in `ingest/fuzz/` and by
//!   proptests.
//!
//! # Memory
//! The pipeline keeps memory flat whatever the dump's size: chunks of ~1 MiB move through
//! channels of `2 × workers` slots, rows are COPYed in sends of 1 MiB, rejects spill to a
//! temporary file past 4 MiB, and only the dedupe map (~150 bytes per distinct poem: 32-byte
//! key, source id, text hash, character set) grows with the dump (~35 MB for the benchmark's
//! 224,000 poems). What one hostile input can add is capped: a line of NDJSON or `_bulk` over
//! `--max-line-bytes` (default 16 MiB) is skipped as one reject without being held whole; a
//! scroll page over `--max-page-bytes` (default 256 MiB) likewise; a gzip stream that expands
//! more than `--max-gzip-ratio` times (default 200, checked past 64 MiB out) is refused as a
//! likely gzip bomb. Peak memory is therefore about `workers × 2 × (1 MiB + line cap)` plus the
//! dedupe map (91 MB peak RSS in the 500 MB benchmark).

use std::path::PathBuf;

pub mod dataset;
pub mod dump;
mod error;
pub mod filter;
#[doc(hidden)]
pub mod fuzzing;
pub mod html;
mod ingest;
pub mod mapping;
mod pipeline;
pub mod process;
pub mod summary;

pub use dataset::{RejectCount, RejectRow, reject_counts, rejects};
pub use dump::{DumpFormat, Limits};
pub use error::{ErrorKind, IngestError};
pub use filter::FilterParams;
pub use ingest::{explain, ingest};
pub use mapping::FieldMapping;
pub use summary::{Explanation, Summary};

/// Default of `--shards`.
const DEFAULT_SHARDS: u32 = 64;
/// Default of `--validation-fraction`.
const DEFAULT_VALIDATION_FRACTION: f64 = 0.1;

/// Everything `poet ingest` and `poet ingest --explain` take.
#[derive(Clone, Debug, PartialEq, clap::Args)]
pub struct IngestOptions {
    /// Dump files or folders of them; `-` reads stdin. Plain or gzip (detected).
    #[arg(required = true, value_name = "PATH")]
    pub inputs: Vec<PathBuf>,
    /// Dataset name; each new ingest under a name is the next version (`poetry@2`).
    #[arg(long, env = "POET_DATASET", default_value = "poetry")]
    pub name: String,
    /// Dump format; detected per file from its content when not given.
    #[arg(long, env = "POET_INGEST_FORMAT", value_enum)]
    pub format: Option<DumpFormat>,
    /// Where the post fields live in `_source`.
    #[command(flatten)]
    pub mapping: FieldMapping,
    /// Keep only posts with this tag (name or slug, case-insensitive).
    #[arg(long, env = "POET_INGEST_TAG")]
    pub tag: Option<String>,
    /// Poem-or-prose thresholds.
    #[command(flatten)]
    pub filter: FilterParams,
    /// Number of shards poems are hashed into (the unit of the train/validation split).
    #[arg(long, env = "POET_INGEST_SHARDS", default_value_t = DEFAULT_SHARDS)]
    pub shards: u32,
    /// Fraction of shards held out for validation (rounded up to whole shards).
    #[arg(long, env = "POET_INGEST_VALIDATION_FRACTION", default_value_t = DEFAULT_VALIDATION_FRACTION)]
    pub validation_fraction: f64,
    /// Abort (writing nothing) when more than this many lines are malformed.
    #[arg(long, env = "POET_INGEST_MAX_ERRORS")]
    pub max_errors: Option<u64>,
    /// Also write every rejected line as JSON lines (`file`, `line`, `reason`) here.
    #[arg(long, env = "POET_INGEST_REJECTS_FILE")]
    pub rejects_file: Option<PathBuf>,
    /// Show a progress bar on stderr (only when stderr is a terminal): percent done and ETA
    /// when the inputs are files.
    #[arg(
        long,
        env = "POET_INGEST_PROGRESS",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub progress: bool,
    /// No progress bar (the same as `--progress false`).
    #[arg(long)]
    pub no_progress: bool,
    /// Longest NDJSON or `_bulk` line read; a longer one is skipped as one reject.
    #[arg(long, env = "POET_INGEST_MAX_LINE_BYTES", default_value_t = Limits::default().max_line_bytes)]
    pub max_line_bytes: u64,
    /// Largest scroll page (one search response) read; a larger one is skipped as one reject.
    #[arg(long, env = "POET_INGEST_MAX_PAGE_BYTES", default_value_t = Limits::default().max_page_bytes)]
    pub max_page_bytes: u64,
    /// Most a gzip input may expand (decompressed / compressed bytes, checked past 64 MiB of
    /// output); more is refused as a likely gzip bomb.
    #[arg(long, env = "POET_INGEST_MAX_GZIP_RATIO", default_value_t = Limits::default().max_gzip_ratio)]
    pub max_gzip_ratio: f64,
}

impl IngestOptions {
    /// Options with the flags' defaults for the given inputs and name (for callers outside
    /// clap), except that the progress bar is off.
    pub fn new(inputs: Vec<PathBuf>, name: impl Into<String>) -> Self {
        IngestOptions {
            inputs,
            name: name.into(),
            format: None,
            mapping: FieldMapping::default(),
            tag: None,
            filter: FilterParams::default(),
            shards: DEFAULT_SHARDS,
            validation_fraction: DEFAULT_VALIDATION_FRACTION,
            max_errors: None,
            rejects_file: None,
            progress: false,
            no_progress: false,
            max_line_bytes: Limits::default().max_line_bytes,
            max_page_bytes: Limits::default().max_page_bytes,
            max_gzip_ratio: Limits::default().max_gzip_ratio,
        }
    }

    /// The caps on what one input may make the reader hold.
    pub fn limits(&self) -> Limits {
        Limits {
            max_line_bytes: self.max_line_bytes,
            max_page_bytes: self.max_page_bytes,
            max_gzip_ratio: self.max_gzip_ratio,
        }
    }

    /// Checks the options before any work (the CLI calls this at startup too).
    pub fn validate(&self) -> Result<(), IngestError> {
        let bad = |m: String| Err(IngestError::InvalidOptions(m));
        if !poet_core::sweep::valid_dataset_name(&self.name) {
            return bad(format!(
                "dataset name '{}' must be 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit",
                self.name
            ));
        }
        if !(1..=4096).contains(&self.shards) {
            return bad(format!(
                "shards must be between 1 and 4096, got {}",
                self.shards
            ));
        }
        if !(0.0..1.0).contains(&self.validation_fraction) {
            return bad(format!(
                "validation fraction must be in [0, 1), got {}",
                self.validation_fraction
            ));
        }
        if self.inputs.is_empty() {
            return bad("no inputs given".into());
        }
        if self.mapping.content.is_empty() {
            return bad("no content field given".into());
        }
        if self.max_line_bytes < 1024 || self.max_page_bytes < 1024 {
            return bad(format!(
                "max line bytes and max page bytes must be at least 1024, got {} and {}",
                self.max_line_bytes, self.max_page_bytes
            ));
        }
        if !(self.max_gzip_ratio.is_finite() && self.max_gzip_ratio >= 2.0) {
            return bad(format!(
                "max gzip ratio must be at least 2, got {}",
                self.max_gzip_ratio
            ));
        }
        self.filter.validate().map_err(IngestError::InvalidOptions)
    }

    /// The shards whose poems form the validation split: `0..ceil(shards × fraction)`.
    pub fn validation_shards(&self) -> Vec<i32> {
        let n = (f64::from(self.shards) * self.validation_fraction).ceil() as i32;
        (0..n.min(self.shards as i32)).collect()
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, FromArgMatches, Parser};

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        opts: IngestOptions,
    }

    /// [`IngestOptions::new`] and the flags agree (the flattened [`FieldMapping`] and
    /// [`FilterParams`] included): the inputs alone parse to it, but for the progress bar. The
    /// environment is switched off, so a `POET_*` variable where the tests run cannot matter.
    #[test]
    fn new_is_what_no_flags_parse_to() {
        let cmd = Cli::command().mut_args(|a| a.env(None::<&'static str>));
        let matches = cmd
            .try_get_matches_from(["poet", "a.ndjson"])
            .expect("parse");
        let mut parsed = Cli::from_arg_matches(&matches).expect("options").opts;
        assert!(parsed.progress, "the CLI shows progress by default");
        parsed.progress = false;
        assert_eq!(
            parsed,
            IngestOptions::new(vec!["a.ndjson".into()], "poetry")
        );
    }

    #[test]
    fn clap_args_flatten_and_parse() {
        Cli::command().debug_assert();
        let cli = Cli::parse_from([
            "poet",
            "--name",
            "wp",
            "--tag",
            "poetry",
            "--max-words-per-line",
            "9",
            "--content-field",
            "body,post_content",
            "--format",
            "bulk",
            "--shards",
            "16",
            "--max-errors",
            "3",
            "--filter",
            "density",
            "--no-progress",
            "--max-line-bytes",
            "4096",
            "a.ndjson",
            "-",
        ]);
        let o = cli.opts;
        assert_eq!(o.inputs, [PathBuf::from("a.ndjson"), PathBuf::from("-")]);
        assert_eq!(
            (o.name.as_str(), o.tag.as_deref(), o.format),
            ("wp", Some("poetry"), Some(DumpFormat::Bulk))
        );
        assert_eq!(o.filter.max_words_per_line, 9.0);
        assert_eq!(o.filter.min_lines, FilterParams::default().min_lines);
        assert_eq!(o.mapping.content, ["body", "post_content"]);
        assert_eq!(o.mapping.title, FieldMapping::default().title);
        assert_eq!((o.shards, o.max_errors), (16, Some(3)));
        assert_eq!(o.filter.kind, filter::FilterKind::Density);
        assert!(o.no_progress && o.progress);
        assert_eq!(o.limits().max_line_bytes, 4096);
        assert_eq!(o.limits().max_page_bytes, Limits::default().max_page_bytes);
        assert!(o.validate().is_ok());
        let defaults = Cli::parse_from(["poet", "a.ndjson"]).opts;
        assert_eq!(defaults.filter, FilterParams::default());
        assert_eq!(defaults.filter.kind, filter::FilterKind::Verse);
        // --progress (and POET_INGEST_PROGRESS, read by the same parser) takes any boolish word.
        for (word, on) in [
            ("0", false),
            ("off", false),
            ("no", false),
            ("1", true),
            ("yes", true),
        ] {
            let o = Cli::parse_from(["poet", "--progress", word, "a.ndjson"]).opts;
            assert_eq!(o.progress, on, "{word}");
        }
        let mut bad = defaults.clone();
        bad.max_gzip_ratio = 1.0;
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("max gzip ratio")
        );
    }

    #[test]
    fn validation_shards_round_up() {
        let mut o = IngestOptions::new(vec![PathBuf::from("-")], "x");
        assert_eq!(o.validation_shards(), (0..7).collect::<Vec<_>>());
        o.shards = 1;
        assert_eq!(o.validation_shards(), [0]);
        o.validation_fraction = 0.0;
        assert!(o.validation_shards().is_empty());
    }
}

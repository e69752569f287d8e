//! `poet ingest`: Elasticsearch dumps of WordPress posts to a named, versioned, deduplicated
//! poem dataset in Postgres, and the dataset commands (`list`, `show`, `export`) and the
//! train/validation corpora training runs read.
//!
//! # Layout
//! - [`dump`]: inputs (files, folders, stdin, gzip) and the NDJSON, `_bulk` and scroll formats.
//! - [`mapping`]: where a post's fields live in `_source` ([`FieldMapping`]).
//! - [`html`]: WordPress HTML renderings to canonical poem text.
//! - [`filter`]: the newline-density rule that tells poems from prose ([`FilterParams`]).
//! - [`process`]: the per-document work of the worker pool (dedupe key, shard, COPY row).
//! - `pipeline`: reader thread → worker threads → the async aggregator, with bounded channels.
//! - [`ingest()`](ingest()) / [`explain()`](explain()): the two consumers of the pipeline.
//! - [`dataset`]: listing, lookup, export and the train/validation split.
//! - [`summary`]: what an ingest or an explain reports ([`Summary`], [`Explanation`]).
//! - `fuzzing`: invariants checked by the cargo-fuzz targets in `ingest/fuzz/` and by
//!   proptests.
//!
//! The pipeline keeps memory flat: chunks of ~1 MiB move through channels of a few slots, rows
//! are COPYed in batches of a few MiB, and only the dedupe map (32-byte key and source id per
//! distinct poem) grows with the dump.

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

pub use dataset::{
    DatasetInfo, ExportSummary, Split, corpus_text, export, export_split, find_dataset,
    list_datasets,
};
pub use dump::DumpFormat;
pub use error::IngestError;
pub use filter::FilterParams;
pub use ingest::{explain, ingest};
pub use mapping::FieldMapping;
pub use summary::{Explanation, Summary};

/// Everything `poet ingest` and `poet ingest --explain` take.
#[derive(Clone, Debug, clap::Args)]
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
    #[arg(long, env = "POET_INGEST_SHARDS", default_value_t = 64)]
    pub shards: u32,
    /// Fraction of shards held out for validation (rounded up to whole shards).
    #[arg(long, env = "POET_INGEST_VALIDATION_FRACTION", default_value_t = 0.1)]
    pub validation_fraction: f64,
    /// Abort (writing nothing) when more than this many lines are malformed.
    #[arg(long, env = "POET_INGEST_MAX_ERRORS")]
    pub max_errors: Option<u64>,
    /// Also write every rejected line as JSON lines (`file`, `line`, `reason`) here.
    #[arg(long, env = "POET_INGEST_REJECTS_FILE")]
    pub rejects_file: Option<PathBuf>,
    /// Show a progress line on stderr (only when stderr is a terminal).
    #[arg(long, env = "POET_INGEST_PROGRESS", default_value_t = true, action = clap::ArgAction::Set)]
    pub progress: bool,
}

impl IngestOptions {
    /// Options with the defaults for the given inputs and name (for callers outside clap).
    pub fn new(inputs: Vec<PathBuf>, name: impl Into<String>) -> Self {
        IngestOptions {
            inputs,
            name: name.into(),
            format: None,
            mapping: FieldMapping::default(),
            tag: None,
            filter: FilterParams::default(),
            shards: 64,
            validation_fraction: 0.1,
            max_errors: None,
            rejects_file: None,
            progress: false,
        }
    }

    /// Checks the options before any work (the CLI calls this at startup too).
    pub fn validate(&self) -> Result<(), IngestError> {
        let bad = |m: String| Err(IngestError::InvalidOptions(m));
        if !dataset::valid_name(&self.name) {
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
    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        opts: IngestOptions,
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
        assert!(o.validate().is_ok());
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

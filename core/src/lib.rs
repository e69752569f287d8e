//! Pure logic shared by the coordinator, the worker, ingest and the CLI. No I/O, no async,
//! no libtorch: everything here is unit-tested in place.
//!
//! # Layout
//! - [`config`]: the training configuration of one run, its validation and its hash.
//! - [`sweep`]: sweep specs (TOML/YAML/JSON) and their deterministic expansion into configs.
//! - [`ngrams`]: word 4-grams and the plagiarism report of generated poems.

pub mod config;
pub mod ngrams;
pub mod sweep;

/// The line that opens every poem in a framed corpus, as in the reference experiment.
pub const FRAME: &str = "++++\n";

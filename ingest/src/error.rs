//! The crate's error type: what the CLI prints when an ingest or a dataset command fails.
//!
//! Messages are lowercase, name the input or dataset at fault, and never carry SQL; the
//! database error stays reachable through `source()` for logs.

/// Why an ingest, explain or dataset command failed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// An input could not be opened or read (`dump.ndjson.gz: not a gzip stream`).
    #[error("{input}: {message}")]
    Input {
        /// The path as given (or `-` for stdin).
        input: String,
        /// What is wrong with it.
        message: String,
    },
    /// More malformed lines than `max_errors` allows; nothing was written.
    #[error("too many malformed lines: more than {limit} (last: {last})")]
    TooManyErrors {
        /// The limit given.
        limit: u64,
        /// `file:line: reason` of the reject that crossed it.
        last: String,
    },
    /// The inputs yielded no poem (a wrong file, an empty one, all prose): nothing was stored.
    #[error("no poems in {inputs}: {detail}; nothing stored")]
    NoPoems {
        /// The inputs, as given.
        inputs: String,
        /// What was read and what the input looks like.
        detail: String,
    },
    /// Options that cannot work together.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// `NAME[@VERSION]` that is not well formed.
    #[error("invalid dataset reference '{0}' (expected NAME or NAME@VERSION)")]
    BadReference(String),
    /// No ready dataset by that name (and version).
    #[error("no such dataset '{0}'")]
    NoSuchDataset(String),
    /// An output (export file, rejects file) could not be written.
    #[error("{path}: {message}")]
    Output {
        /// Where it was being written.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The database failed; details stay in the source for logs.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// A worker thread died (a bug): the ingest was abandoned.
    #[error("internal error: {0}")]
    Internal(String),
}

impl IngestError {
    pub(crate) fn input(input: impl Into<String>, message: impl std::fmt::Display) -> Self {
        IngestError::Input {
            input: input.into(),
            message: message.to_string(),
        }
    }
}

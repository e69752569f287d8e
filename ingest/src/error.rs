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
        /// The failure itself, so callers can tell a closed pipe by its kind.
        #[source]
        source: std::io::Error,
    },
    /// The database failed; details stay in the source for logs.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// A worker thread died (a bug): the ingest was abandoned.
    #[error("internal error: {0}")]
    Internal(String),
}

/// What kind of failure an [`IngestError`] is: what a caller picks an exit code or a status
/// by, so it never has to read the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The inputs, options or a dataset reference are wrong (fix the command).
    Invalid,
    /// The named dataset does not exist.
    NotFound,
    /// The database is out of reach (down, restarting, out of connections): try again later.
    Unavailable,
    /// An output could not be written.
    Output,
    /// Anything else: a database error or a bug.
    Internal,
}

impl IngestError {
    /// The kind of this failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            IngestError::Input { .. }
            | IngestError::TooManyErrors { .. }
            | IngestError::NoPoems { .. }
            | IngestError::InvalidOptions(_)
            | IngestError::BadReference(_) => ErrorKind::Invalid,
            IngestError::NoSuchDataset(_) => ErrorKind::NotFound,
            IngestError::Database(e) if poet_sql::is_unavailable(e) => ErrorKind::Unavailable,
            IngestError::Output { .. } => ErrorKind::Output,
            IngestError::Database(_) | IngestError::Internal(_) => ErrorKind::Internal,
        }
    }

    /// An output that could not be written (keeps `e` as the source).
    pub(crate) fn output(path: impl Into<String>, e: std::io::Error) -> Self {
        IngestError::Output {
            path: path.into(),
            message: crate::dump::io_message(&e),
            source: e,
        }
    }

    pub(crate) fn input(input: impl Into<String>, message: impl std::fmt::Display) -> Self {
        IngestError::Input {
            input: input.into(),
            message: message.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_come_from_the_variant_not_the_message() {
        assert_eq!(
            IngestError::NoSuchDataset("poetry@9".into()).kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            IngestError::BadReference("a@b@c".into()).kind(),
            ErrorKind::Invalid
        );
        assert_eq!(
            IngestError::Database(sqlx::Error::PoolTimedOut).kind(),
            ErrorKind::Unavailable
        );
        assert_eq!(
            IngestError::Database(sqlx::Error::RowNotFound).kind(),
            ErrorKind::Internal
        );
        let pipe = IngestError::output("export", std::io::ErrorKind::BrokenPipe.into());
        assert_eq!(pipe.kind(), ErrorKind::Output);
        let source = std::error::Error::source(&pipe)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .map(std::io::Error::kind);
        assert_eq!(source, Some(std::io::ErrorKind::BrokenPipe));
    }
}

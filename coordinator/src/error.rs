//! The coordinator's failures and the one place they are mapped to what clients see: gRPC
//! status codes ([`ServiceError::code`]) and the dashboard API's HTTP statuses
//! ([`ServiceError::http_status`]). Clients never see SQL text or internal paths: database
//! and storage errors are logged here ([`ServiceError::log_hidden`]) and answered as
//! `internal`, or as `unavailable` when the database is out of reach.

use axum::http::StatusCode;
use tonic::{Code, Status};

/// What can go wrong serving a request.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request is malformed or a value is out of range; names the field.
    #[error("{0}")]
    Invalid(String),
    /// The named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The caller may not act for what it named (a worker id without its secret).
    #[error("{0}")]
    PermissionDenied(String),
    /// The caller's lease is no longer current (fenced), or the run is not in a state that
    /// allows the call.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A conflicting write (e.g. a different report for an epoch already stored).
    #[error("{0}")]
    Conflict(String),
    /// A size limit was exceeded.
    #[error("{0}")]
    TooLarge(String),
    /// A bound on work in flight or queued was reached (concurrent uploads or downloads,
    /// queued generations); retry once some has finished.
    #[error("{0}")]
    Busy(String),
    /// The database could not be reached; retry later.
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// Any other database error.
    #[error("internal error")]
    Database(#[source] sqlx::Error),
    /// Object store or I/O failure.
    #[error("internal error")]
    Storage(String),
}

impl From<sqlx::Error> for ServiceError {
    fn from(e: sqlx::Error) -> Self {
        if poet_sql::is_unavailable(&e) {
            ServiceError::Unavailable(e)
        } else {
            ServiceError::Database(e)
        }
    }
}

impl ServiceError {
    /// The gRPC code a client gets.
    pub fn code(&self) -> Code {
        match self {
            ServiceError::Invalid(_) => Code::InvalidArgument,
            ServiceError::NotFound(_) => Code::NotFound,
            ServiceError::PermissionDenied(_) => Code::PermissionDenied,
            ServiceError::FailedPrecondition(_) => Code::FailedPrecondition,
            ServiceError::Conflict(_) => Code::AlreadyExists,
            ServiceError::TooLarge(_) | ServiceError::Busy(_) => Code::ResourceExhausted,
            ServiceError::Unavailable(_) => Code::Unavailable,
            ServiceError::Database(_) | ServiceError::Storage(_) => Code::Internal,
        }
    }

    /// The HTTP status the dashboard's JSON API answers with. Mapped from the variant, not
    /// through [`code`](Self::code): gRPC has no 409 or 413, so a conflict or an oversized
    /// request would otherwise read as a server fault.
    pub fn http_status(&self) -> StatusCode {
        match self {
            ServiceError::Invalid(_) => StatusCode::BAD_REQUEST,
            ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
            ServiceError::PermissionDenied(_) => StatusCode::FORBIDDEN,
            // Work in flight is at its bound: try again later.
            ServiceError::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
            // The thing exists but its state refuses the call (retry a running run): the
            // client can act on that, like a write conflict.
            ServiceError::FailedPrecondition(_) | ServiceError::Conflict(_) => StatusCode::CONFLICT,
            ServiceError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ServiceError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ServiceError::Database(_) | ServiceError::Storage(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// Logs what the client is not told (database and storage details); every mapping to a
    /// client answer calls this once.
    pub fn log_hidden(&self) {
        match self {
            ServiceError::Unavailable(inner) => {
                tracing::warn!(error = %inner, "database unavailable");
            }
            ServiceError::Database(inner) => tracing::error!(error = %inner, "database error"),
            ServiceError::Storage(detail) => tracing::error!(error = %detail, "storage error"),
            _ => {}
        }
    }
}

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Status {
        e.log_hidden();
        Status::new(e.code(), e.to_string())
    }
}

/// Result alias for service internals.
pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// The standard refusal for a write under a lease that is not current.
pub fn fenced(run_id: i64) -> ServiceError {
    ServiceError::FailedPrecondition(format!(
        "lease for run {run_id} is not current (the run was re-leased, cancelled or finished); stop working on it"
    ))
}

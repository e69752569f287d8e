//! The one mapping from coordinator failures to gRPC status codes. Clients never see SQL
//! text or internal paths: database errors are logged here and answered as `internal`.

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
        match &e {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
                ServiceError::Unavailable(e)
            }
            sqlx::Error::Database(db) => match db.code().as_deref() {
                // admin_shutdown, cannot_connect_now, too_many_connections
                Some("57P01") | Some("57P03") | Some("53300") => ServiceError::Unavailable(e),
                _ => ServiceError::Database(e),
            },
            _ => ServiceError::Database(e),
        }
    }
}

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Status {
        let code = match &e {
            ServiceError::Invalid(_) => Code::InvalidArgument,
            ServiceError::NotFound(_) => Code::NotFound,
            ServiceError::PermissionDenied(_) => Code::PermissionDenied,
            ServiceError::FailedPrecondition(_) => Code::FailedPrecondition,
            ServiceError::Conflict(_) => Code::AlreadyExists,
            ServiceError::TooLarge(_) | ServiceError::Busy(_) => Code::ResourceExhausted,
            ServiceError::Unavailable(inner) => {
                tracing::warn!(error = %inner, "database unavailable");
                Code::Unavailable
            }
            ServiceError::Database(inner) => {
                tracing::error!(error = %inner, "database error");
                Code::Internal
            }
            ServiceError::Storage(detail) => {
                tracing::error!(error = %detail, "storage error");
                Code::Internal
            }
        };
        Status::new(code, e.to_string())
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

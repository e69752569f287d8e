//! Retrying calls to the coordinator: which failures are worth another try, and the calls
//! made under a lease, which are retried only while the lease can still be alive.

use super::{RunSlot, StopReason};
use poet_core::retry::Backoff;
use std::future::Future;
use std::time::Duration;
use tonic::{Code, Status};
use tracing::debug;

/// Transport-level failures worth retrying; everything else is an answer.
pub(super) fn retryable(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable
            | Code::Unknown
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Aborted
            | Code::ResourceExhausted
            | Code::Internal
    )
}

/// Why a call under a lease was given up.
#[derive(Debug, thiserror::Error)]
pub(super) enum CallError {
    #[error("lease fenced")]
    Fenced,
    #[error("lease expired while retrying: {0}")]
    Expired(Status),
    #[error("run stopped")]
    Stopped(StopReason),
    #[error("refused: {0}")]
    Refused(Status),
}

impl CallError {
    pub(super) fn stop_reason(&self) -> StopReason {
        match self {
            CallError::Fenced => StopReason::Fenced,
            CallError::Stopped(r) => *r,
            // A refused report (bad request) leaves the run unreportable; stop it like an
            // expired lease so the coordinator's reaper can requeue it.
            CallError::Expired(_) | CallError::Refused(_) => StopReason::Expired,
        }
    }
}

/// Calls `f` until it succeeds, retrying transport errors with jittered backoff while the
/// lease can still be alive (last success within `ttl`).
pub(super) async fn with_retry<T, F, Fut>(
    slot: &RunSlot,
    ttl: Duration,
    mut f: F,
) -> Result<T, CallError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, Status>>,
{
    let mut backoff = Backoff::worker();
    loop {
        // A halted run still makes its last calls (checkpoint upload, completion).
        if let Some(why) = slot.stop_reason()
            && why != StopReason::Halted
        {
            return Err(CallError::Stopped(why));
        }
        match f().await {
            Ok(r) => {
                slot.touch();
                return Ok(r.into_inner());
            }
            Err(s) if s.code() == Code::FailedPrecondition => return Err(CallError::Fenced),
            Err(s) if retryable(&s) => {
                if slot.expired(ttl) {
                    return Err(CallError::Expired(s));
                }
                let delay = backoff.next_delay();
                debug!(error = %s, ?delay, "retrying");
                tokio::time::sleep(delay).await;
            }
            Err(s) => return Err(CallError::Refused(s)),
        }
    }
}

//! gRPC service implementations over one shared state.

mod client;
mod worker;

pub use worker::CHUNK;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::Notify;

use crate::artifacts::Artifacts;
use crate::batch::Batcher;
use crate::config::CoordinatorConfig;
use crate::error::ServiceError;
use crate::generation::NgramCache;
use crate::metrics::Metrics;
use crate::queue::{Claimed, EpochReport, LeaseRef, Queue};

/// State shared by both services (cheap to clone).
#[derive(Clone)]
pub struct Shared {
    pub(crate) pool: PgPool,
    pub(crate) queue: Queue,
    /// The hot queue operations, batched across concurrent RPCs.
    pub(crate) batches: Batches,
    pub(crate) artifacts: Artifacts,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) cfg: Arc<CoordinatorConfig>,
    /// Woken by Postgres NOTIFY when a run becomes queued (on any replica).
    pub(crate) runs_queued: Arc<Notify>,
    /// Woken when a generation becomes queued.
    pub(crate) generations_queued: Arc<Notify>,
    /// Ids of generations that finished (done or failed), from Postgres NOTIFY on any
    /// replica, for the clients waiting on them; `None` after the listener reconnected (any
    /// may have finished meanwhile).
    pub(crate) generations_finished: tokio::sync::broadcast::Sender<Option<i64>>,
    pub(crate) ngrams: NgramCache,
    /// Dataset descriptions by id (immutable once ready).
    pub(crate) datasets:
        Arc<tokio::sync::Mutex<std::collections::HashMap<i64, poet_proto::v1::Dataset>>>,
    /// Whether each run this replica leased belongs to an adaptive sweep, so that the reports
    /// of a plain sweep's runs skip the scheduler without a query (a run leased elsewhere is
    /// looked up). Entries go when the run is handed back or given up.
    pub(crate) adaptive_runs: Arc<std::sync::Mutex<std::collections::HashMap<i64, bool>>>,
    /// Checkpoint uploads in flight, so that one lease or worker cannot hold them all.
    pub(crate) uploads: Arc<crate::limits::Uploads>,
    /// Places for dataset downloads (`--max-dataset-downloads`): each holds a cursor.
    pub(crate) downloads: Arc<tokio::sync::Semaphore>,
    /// What each dataset's download header announces, computed by one streamed pass on first
    /// use (a dataset version never changes).
    pub(crate) dataset_digests:
        Arc<tokio::sync::Mutex<std::collections::HashMap<i64, crate::datasets::Digest>>>,
    /// Secret hashes (hex sha256) of worker ids whose secret a call has proved on this
    /// replica, so that leasing needs no extra query. A worker's secret never changes.
    pub(crate) worker_secrets: Arc<std::sync::Mutex<std::collections::HashMap<i64, String>>>,
}

type Answer<T> = Result<T, ServiceError>;

/// Lease, report and complete, each batched across concurrent RPCs ([`crate::batch`]).
#[derive(Clone)]
pub struct Batches {
    claim: Batcher<crate::queue::ClaimRequest, Answer<Option<Claimed>>>,
    report: Batcher<(LeaseRef, EpochReport), Answer<bool>>,
    complete: Batcher<(LeaseRef, DateTime<Utc>), Answer<()>>,
}

/// What a caller gets when the flushing task is gone (the runtime is shutting down).
fn gone<T>() -> Answer<T> {
    Err(ServiceError::Unavailable(sqlx::Error::PoolClosed))
}

impl Batches {
    /// Spawns the three flushing tasks over `queue`.
    pub fn spawn(queue: &Queue) -> Self {
        let q = queue.clone();
        let claim = Batcher::spawn(move |reqs: Vec<crate::queue::ClaimRequest>| {
            let q = q.clone();
            async move { q.claim_batch_for(&reqs).await }
        });
        let q = queue.clone();
        let report = Batcher::spawn(move |items: Vec<(LeaseRef, EpochReport)>| {
            let q = q.clone();
            async move { q.report_epochs(&items).await }
        });
        let q = queue.clone();
        let complete = Batcher::spawn(move |items: Vec<(LeaseRef, DateTime<Utc>)>| {
            let q = q.clone();
            async move { q.complete_batch(&items).await }
        });
        Batches {
            claim,
            report,
            complete,
        }
    }

    /// [`Queue::claim_for`], batched.
    pub async fn claim(
        &self,
        worker_id: i64,
        capacity: std::sync::Arc<crate::queue::Capacity>,
        now: DateTime<Utc>,
    ) -> Answer<Option<Claimed>> {
        self.claim
            .call((worker_id, capacity, now))
            .await
            .unwrap_or_else(gone)
    }

    /// [`Queue::report_epoch`], batched.
    pub async fn report_epoch(&self, lease: LeaseRef, report: EpochReport) -> Answer<bool> {
        self.report.call((lease, report)).await.unwrap_or_else(gone)
    }

    /// [`Queue::complete`], batched.
    pub async fn complete(&self, lease: LeaseRef, now: DateTime<Utc>) -> Answer<()> {
        self.complete.call((lease, now)).await.unwrap_or_else(gone)
    }
}

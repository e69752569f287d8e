//! gRPC service implementations over one shared state.

mod client;
mod worker;

pub use worker::CHUNK;

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::Notify;

use crate::artifacts::Artifacts;
use crate::config::CoordinatorConfig;
use crate::generation::NgramCache;
use crate::metrics::Metrics;
use crate::queue::Queue;

/// State shared by both services (cheap to clone).
#[derive(Clone)]
pub struct Shared {
    pub(crate) pool: PgPool,
    pub(crate) queue: Queue,
    pub(crate) artifacts: Artifacts,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) cfg: Arc<CoordinatorConfig>,
    /// Woken by Postgres NOTIFY when a run becomes queued (on any replica).
    pub(crate) runs_queued: Arc<Notify>,
    /// Woken when a generation becomes queued.
    pub(crate) generations_queued: Arc<Notify>,
    pub(crate) ngrams: NgramCache,
    /// Dataset descriptions by id (immutable once ready).
    pub(crate) datasets:
        Arc<tokio::sync::Mutex<std::collections::HashMap<i64, poet_proto::v1::Dataset>>>,
}

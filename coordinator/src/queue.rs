//! The durable job queue of training runs in Postgres.
//!
//! A run moves `queued → running → succeeded | failed | cancelled` (CHECK constraints in
//! `sql/migrations/0002_queue.sql`). Claiming is one `FOR UPDATE SKIP LOCKED` CTE, highest
//! priority then oldest first, so any number of coordinator replicas never lease a run twice.
//! Every lease mints a fresh `lease_id`; every worker write names it and is refused
//! (FAILED_PRECONDITION) once the run was re-leased, cancelled or finished: fencing. The
//! reaper requeues runs whose lease expired (or fails them after `max_attempts`). A requeued
//! run resumes from its latest checkpoint: epochs reported after that checkpoint belonged to
//! a lost attempt with no state to continue from, so the claim discards them, which keeps each
//! run's epochs 1..E contiguous and unique.
//!
//! # A heterogeneous fleet and fair share
//!
//! Every run row carries what it needs (GPU or not, memory minimums, labels, and poet's
//! estimate of its training memory, `poet_core::resources`), stored at submit. A worker's
//! claim binds what the worker announced at Register ([`Capacity`]) and the claim's WHERE
//! keeps only the runs it can hold (`poet_run_fits` in `sql/migrations/0013_fleet_resources.sql`:
//! a GPU worker's GPU memory, a CPU worker's host memory), inside the same one statement: no
//! run is leased to a worker that cannot hold it and later handed back. Concurrent claims
//! are batched ([`Queue::claim_batch_for`]) into one statement whatever the mix of workers
//! (`claim.sql`): the distinct capacities are bound as arrays, each kind lists the runs it
//! can hold, and the kinds pick in turn, each skipping what an earlier one took. Until
//! 2026-12-07 a batch cost one statement per kind of worker, and a fleet of 4 kinds ran at
//! 0.66× the cycles per second of a plain one (1.06× since; BENCHMARKS.md, queue section):
//! each statement is planned, run and committed on its own, and the fixed cost of a
//! statement is most of a claim's. The statement picks before it locks (a pick cannot be chosen after
//! `skip locked` in SQL without locking every candidate), so a pick that another
//! transaction holds is reported back and those requests are claimed again without it.
//!
//! At equal priority, sweeps take turns: round-robin by running count. Each sweep's queued
//! runs (that fit) get turns `running + 1, running + 2, …` and the claim takes the lowest turns
//! first, so the sweep with the fewest runs in flight goes next and a batch of n claims is
//! spread across sweeps as n single claims would be. Why this and not weighted shares: it
//! needs no state beyond what the queue has (the running count, read through the partial
//! index `runs_running_by_sweep`), it cannot starve a sweep, and `priority` already is the
//! knob for "this sweep matters more". The price: each kind reads up to as many runs of every
//! sweep with queued runs (a skip scan finds those sweeps) as it and the kinds before it
//! claim, instead of one index probe; measured in BENCHMARKS.md (coordinator section, mixed
//! fleet).
//!
//! Claims, epoch reports and completions also come in batch forms (`claim_batch`,
//! `report_epochs`, `complete_batch`): one statement for many requests, each still answered
//! on its own. The service feeds them through [`crate::batch`] under load.
//!
//! Every function takes `now` so tests move time instead of sleeping.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Postgres, Row, Transaction};
use uuid::Uuid;

use crate::error::{Result, ServiceError, fenced};

/// What a worker announced it can hold; a claim only takes runs that fit in it. A zero memory
/// means "not announced", which the claim does not check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Capacity {
    /// Whether the worker trains on a GPU (its device is not `cpu`).
    pub gpu: bool,
    /// The GPU's memory in bytes (0 on CPU or when unknown).
    pub gpu_memory_bytes: i64,
    /// Host memory in bytes.
    pub memory_bytes: i64,
    /// Its `--label key=value` pairs.
    pub labels: BTreeMap<String, String>,
}

impl Capacity {
    /// The labels as the JSON object the claim compares with (`need_labels <@ labels`).
    fn labels_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.labels).expect("a string map serialises")
    }
}

/// How long a replica trusts the capacity it cached for a worker id before reading it again
/// (a worker that re-registers elsewhere with new labels is seen here within this).
const CAPACITY_TTL: Duration = Duration::from_secs(30);

/// Announced capacities by worker id, with when each was cached.
type CapacityCache = Mutex<HashMap<i64, (Arc<Capacity>, Instant)>>;

/// One claim request: the worker, its capacity, and the time it claims at.
pub type ClaimRequest = (i64, Arc<Capacity>, DateTime<Utc>);

/// The lease a worker presents with every write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRef {
    /// Run id.
    pub run_id: i64,
    /// The lease id minted at claim.
    pub lease_id: Uuid,
}

/// A checkpoint row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CheckpointRow {
    /// Id.
    pub id: i64,
    /// Run.
    pub run_id: i64,
    /// Epoch it was taken after.
    pub epoch: i32,
    /// Attempt that wrote it.
    pub attempt: i32,
    /// Object-store key.
    pub key: String,
    /// Bytes.
    pub size: i64,
    /// sha256 hex.
    pub sha256: String,
    /// Validation loss of its epoch.
    pub val_loss: f64,
    /// Whether the blob is still kept.
    pub live: bool,
    /// When stored.
    pub created_at: DateTime<Utc>,
}

/// What a worker gets when it claims a run.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The lease.
    pub lease: LeaseRef,
    /// Attempt number of this lease.
    pub attempt: i32,
    /// Resolved config JSON.
    pub config: String,
    /// Dataset id.
    pub dataset_id: i64,
    /// Checkpoint to resume from.
    pub resume_from: Option<CheckpointRow>,
    /// Epoch rows discarded because no checkpoint covered them.
    pub discarded_epochs: u64,
    /// Whether its sweep's reports go through the scheduler ([`crate::scheduler`]).
    pub adaptive: bool,
}

/// One epoch report.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochReport {
    /// 1-based epoch.
    pub epoch: i32,
    /// Mean train loss, nats/char.
    pub train_loss: f64,
    /// Validation loss, nats/char.
    pub val_loss: f64,
    /// Seconds.
    pub duration_s: f64,
    /// Throughput.
    pub chars_per_sec: f64,
    /// Extra metrics JSON.
    pub metrics: serde_json::Value,
}

impl EpochReport {
    /// Refuses a loss, duration or throughput that is not a finite non-negative number.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("train_loss", self.train_loss),
            ("val_loss", self.val_loss),
            ("duration_s", self.duration_s),
            ("chars_per_sec", self.chars_per_sec),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(ServiceError::Invalid(format!(
                    "epoch.{name}: {v} is not a finite non-negative number"
                )));
            }
        }
        Ok(())
    }
}

/// The heartbeat's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    /// Lease extended.
    Extended,
    /// The run was cancelled: stop.
    Cancel,
}

/// How a worker gives a run up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// Graceful shutdown: requeue now, not a failure.
    Release,
    /// A failed attempt: retried until max_attempts.
    Retry,
    /// Retrying cannot help.
    Permanent,
}

/// Counts from a cancel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cancelled {
    /// Queued runs cancelled at once.
    pub cancelled: i32,
    /// Running runs told to stop at their next heartbeat.
    pub requested: i32,
}

/// A run the reaper moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaped {
    /// Run id.
    pub run_id: i64,
    /// New state: queued, failed or cancelled.
    pub state: String,
}

/// The claim statement: a batch of requests of any mix of capacities (see the file).
/// `{chunk}` is [`CLAIM_CHUNK`].
static CLAIM_SQL: LazyLock<String> =
    LazyLock::new(|| include_str!("claim.sql").replace("{chunk}", &CLAIM_CHUNK.to_string()));

/// Most requests one claim statement takes; a larger batch is claimed in chunks. The
/// statement names it as a constant bound so that the planner's estimate stays small (an
/// estimate past `jit_above_cost` made Postgres JIT-compile the claim: 250 ms a statement).
const CLAIM_CHUNK: usize = 128;

/// How many times a claim is tried again for the requests left without a run because
/// another transaction held their picks (`skip locked`), each time without those runs.
const CLAIM_RETRIES: usize = 3;

/// Connections of a queue's claim pool ([`Queue::new`]): one claim flush is in flight at a
/// time (`crate::batch`), and the unbatched callers (tests) rarely overlap.
const CLAIM_CONNECTIONS: u32 = 4;

/// The queue over a pool.
#[derive(Debug, Clone)]
pub struct Queue {
    pool: PgPool,
    /// The connections the claim statement runs on: `pool`'s, with `plan_cache_mode =
    /// force_generic_plan`. The claim is written for one generic plan (see `claim.sql`), but
    /// Postgres's own choice planned it again in 883 of 1,414 claims of the 128-worker
    /// benchmark (2.1 ms a plan, against 5 ms to run it); forced, in 6 of 1,670 (once a
    /// connection). The rest of poet's statements keep Postgres's choice: a history filter's
    /// best plan can depend on its values.
    claim_pool: PgPool,
    lease_ttl: chrono::Duration,
    /// Workers' announced capacities by id, so that a lease needs no extra query; entries
    /// live [`CAPACITY_TTL`] and are replaced when the worker registers on this replica.
    capacities: Arc<CapacityCache>,
}

fn ttl_after(now: DateTime<Utc>, ttl: chrono::Duration) -> DateTime<Utc> {
    now + ttl
}

impl Queue {
    /// A queue whose leases live `lease_ttl` without a heartbeat. Must be called inside a
    /// Tokio runtime: the claim pool is made here, and connects when first used.
    pub fn new(pool: PgPool, lease_ttl: std::time::Duration) -> Self {
        let claim_options = (*pool.connect_options())
            .clone()
            .options([("plan_cache_mode", "force_generic_plan")]);
        let claim_pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(CLAIM_CONNECTIONS)
            .acquire_timeout(pool.options().get_acquire_timeout())
            .connect_lazy_with(claim_options);
        Queue {
            pool,
            claim_pool,
            lease_ttl: chrono::Duration::from_std(lease_ttl).expect("ttl fits"),
            capacities: Arc::default(),
        }
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes the claim pool's connections (the main pool is its owner's to close).
    pub async fn close(&self) {
        self.claim_pool.close().await;
    }

    /// Lease lifetime.
    pub fn lease_ttl(&self) -> chrono::Duration {
        self.lease_ttl
    }

    /// Remembers what worker `worker_id` announced (at Register).
    pub fn set_capacity(&self, worker_id: i64, capacity: Capacity) {
        let mut known = self.capacities.lock().expect("capacities lock");
        if known.len() > 100_000 {
            known.clear();
        }
        known.insert(worker_id, (Arc::new(capacity), Instant::now()));
    }

    /// What worker `worker_id` announced: cached, else read from its row (NotFound when no
    /// such worker).
    pub async fn capacity(&self, worker_id: i64) -> Result<Arc<Capacity>> {
        if let Some((c, at)) = self
            .capacities
            .lock()
            .expect("capacities lock")
            .get(&worker_id)
            && at.elapsed() < CAPACITY_TTL
        {
            return Ok(c.clone());
        }
        let row = sqlx::query(
            "select device, gpu_memory_bytes, memory_bytes, labels from workers where id = $1",
        )
        .bind(worker_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| {
            ServiceError::NotFound(format!("no worker {worker_id}; call Register first"))
        })?;
        let labels: serde_json::Value = row.get("labels");
        let capacity = Capacity {
            gpu: row.get::<String, _>("device") != "cpu",
            gpu_memory_bytes: row.get("gpu_memory_bytes"),
            memory_bytes: row.get("memory_bytes"),
            labels: serde_json::from_value(labels).unwrap_or_default(),
        };
        self.set_capacity(worker_id, capacity);
        Ok(self.capacities.lock().expect("capacities lock")[&worker_id]
            .0
            .clone())
    }

    /// Claims the next run for `worker_id` as a worker that announced nothing (a CPU worker
    /// of unknown memory, no labels): runs that need a GPU or labels are not its.
    pub async fn claim(&self, worker_id: i64, now: DateTime<Utc>) -> Result<Option<Claimed>> {
        self.claim_for(worker_id, Arc::default(), now).await
    }

    /// Claims the next run that a worker of `capacity` can hold, if any is queued.
    pub async fn claim_for(
        &self,
        worker_id: i64,
        capacity: Arc<Capacity>,
        now: DateTime<Utc>,
    ) -> Result<Option<Claimed>> {
        self.claim_batch_for(&[(worker_id, capacity, now)])
            .await
            .pop()
            .expect("one answer per request")
    }

    /// [`Queue::claim_batch_for`] for workers that announced nothing (see [`Queue::claim`]).
    pub async fn claim_batch(&self, reqs: &[(i64, DateTime<Utc>)]) -> Vec<Result<Option<Claimed>>> {
        let none: Arc<Capacity> = Arc::default();
        let reqs: Vec<ClaimRequest> = reqs.iter().map(|&(w, t)| (w, none.clone(), t)).collect();
        self.claim_batch_for(&reqs).await
    }

    /// Claims runs for many requests of any mix of capacities: one statement (per
    /// [`CLAIM_CHUNK`] requests), each request answered on its own, in its place.
    #[tracing::instrument(name = "coordinator.queue.claim", skip_all, fields(n = reqs.len()))]
    pub async fn claim_batch_for(&self, reqs: &[ClaimRequest]) -> Vec<Result<Option<Claimed>>> {
        let mut out = Vec::with_capacity(reqs.len());
        for chunk in reqs.chunks(CLAIM_CHUNK) {
            out.extend(self.claim_chunk(chunk).await);
        }
        out
    }

    /// Claims runs for up to [`CLAIM_CHUNK`] requests in one statement: claim (skipping
    /// locked rows), pick each resume checkpoint, discard epochs past it, open the attempts.
    /// A request gets `None` when no queued run fits it. One bad request (an unknown worker)
    /// fails the whole statement; the requests are then claimed one by one on the same
    /// connection, so each gets its own answer.
    async fn claim_chunk(&self, reqs: &[ClaimRequest]) -> Vec<Result<Option<Claimed>>> {
        let mut conn = match self.claim_pool.acquire().await {
            Ok(c) => c,
            Err(e) => {
                let why = format!("no database connection: {e}");
                return reqs
                    .iter()
                    .map(|_| {
                        Err(ServiceError::Unavailable(sqlx::Error::Protocol(
                            why.clone(),
                        )))
                    })
                    .collect();
            }
        };
        match self.claim_retrying(&mut conn, reqs).await {
            Ok(claimed) => claimed.into_iter().map(Ok).collect(),
            Err(e) if reqs.len() == 1 => vec![Err(e)],
            Err(_) => {
                // The same connection: by the time it runs the next statement, the failed
                // one has rolled back and released its row locks, which `skip locked` would
                // otherwise skip (and answer "no run") on another connection.
                let mut out = Vec::with_capacity(reqs.len());
                for r in reqs {
                    out.push(
                        self.claim_retrying(&mut conn, std::slice::from_ref(r))
                            .await
                            .map(|mut c| c.pop().flatten()),
                    );
                }
                out
            }
        }
    }

    /// [`Queue::claim_rows`], again for the requests left without a run while another
    /// transaction held some of their picks, each time without those runs (the statement
    /// decides its picks before it locks them, so it cannot skip past them itself).
    async fn claim_retrying(
        &self,
        conn: &mut PgConnection,
        reqs: &[ClaimRequest],
    ) -> Result<Vec<Option<Claimed>>> {
        let mut out: Vec<Option<Claimed>> = vec![None; reqs.len()];
        let mut pending: Vec<usize> = (0..reqs.len()).collect();
        let mut lost: Vec<i64> = Vec::new();
        for _ in 0..=CLAIM_RETRIES {
            let part: Vec<&ClaimRequest> = pending.iter().map(|&i| &reqs[i]).collect();
            let (claimed, now_lost) = self.claim_rows(conn, &part, &lost).await?;
            for (i, c) in pending.iter().zip(claimed) {
                out[*i] = c;
            }
            pending.retain(|&i| out[i].is_none());
            if now_lost.is_empty() || pending.is_empty() {
                break;
            }
            lost.extend(now_lost);
        }
        Ok(out)
    }

    /// `sql` (the claim statement, or a statement wrapping it) bound for `reqs`, less `skip`.
    fn claim_query<'q>(
        &self,
        sql: &'q str,
        reqs: &[&ClaimRequest],
        skip: &[i64],
    ) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
        // The distinct capacities, in order of first request; each request's kind (1-based).
        let mut kinds: Vec<&Capacity> = Vec::new();
        let mut kind_of: Vec<i32> = Vec::with_capacity(reqs.len());
        for r in reqs {
            let k = match kinds.iter().position(|c| **c == *r.1) {
                Some(k) => k,
                None => {
                    kinds.push(&r.1);
                    kinds.len() - 1
                }
            };
            kind_of.push(k as i32 + 1);
        }
        let lease_ids: Vec<Uuid> = reqs.iter().map(|_| Uuid::new_v4()).collect();
        let workers: Vec<i64> = reqs.iter().map(|r| r.0).collect();
        let nows: Vec<DateTime<Utc>> = reqs.iter().map(|r| r.2).collect();
        let expiries: Vec<DateTime<Utc>> =
            nows.iter().map(|n| ttl_after(*n, self.lease_ttl)).collect();
        sqlx::query(sql)
            .bind(lease_ids)
            .bind(workers)
            .bind(expiries)
            .bind(nows)
            .bind(kind_of)
            .bind(kinds.iter().map(|c| c.gpu).collect::<Vec<_>>())
            .bind(kinds.iter().map(|c| c.gpu_memory_bytes).collect::<Vec<_>>())
            .bind(kinds.iter().map(|c| c.memory_bytes).collect::<Vec<_>>())
            .bind(kinds.iter().map(|c| c.labels_json()).collect::<Vec<_>>())
            .bind(skip.to_vec())
    }

    /// The claim's `EXPLAIN (ANALYZE, BUFFERS)` for `reqs`, run and rolled back on a claim
    /// connection: what a claim of them would read, and nothing leased. For benchmarks and
    /// for the tests that bound what a claim reads.
    pub async fn explain_claim(&self, reqs: &[ClaimRequest]) -> Result<String> {
        let sql = format!("explain (analyze, buffers, costs off) {}", *CLAIM_SQL);
        let reqs: Vec<&ClaimRequest> = reqs.iter().collect();
        let mut tx = self.claim_pool.begin().await?;
        let lines: Vec<String> = self
            .claim_query(&sql, &reqs, &[])
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        tx.rollback().await?;
        Ok(lines.join("\n"))
    }

    /// The claim statement and the lookups its rows need: the claimed run of each request
    /// (or `None`), and the picks it lost to other transactions' locks.
    async fn claim_rows(
        &self,
        conn: &mut PgConnection,
        reqs: &[&ClaimRequest],
        skip: &[i64],
    ) -> Result<(Vec<Option<Claimed>>, Vec<i64>)> {
        let rows = self
            .claim_query(&CLAIM_SQL, reqs, skip)
            .fetch_all(&mut *conn)
            .await?;
        let mut out: Vec<Option<Claimed>> = vec![None; reqs.len()];
        let mut lost = Vec::new();
        for row in rows {
            lost = row.get("lost");
            // The one row of nulls when nothing was claimed.
            let Some(n) = row.get::<Option<i64>, _>("n") else {
                continue;
            };
            let run_id: i64 = row.get("id");
            let discarded: i64 = row.get("discarded");
            if discarded > 0 {
                // Data-modifying CTEs do not see each other's effects: recompute the summary now.
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                refresh_run_stats(&mut tx, run_id).await?;
                tx.commit().await?;
            }
            let resume = match row.get::<Option<i64>, _>("ck_id") {
                Some(id) => Some(
                    sqlx::query_as("select * from checkpoints where id = $1")
                        .bind(id)
                        .fetch_one(&mut *conn)
                        .await?,
                ),
                None => None,
            };
            out[n as usize - 1] = Some(Claimed {
                lease: LeaseRef {
                    run_id,
                    lease_id: row.get("lease_id"),
                },
                attempt: row.get("attempt"),
                config: row.get("config"),
                dataset_id: row.get("dataset_id"),
                resume_from: resume,
                discarded_epochs: discarded as u64,
                adaptive: row.get("adaptive"),
            });
        }
        Ok((out, lost))
    }

    /// Extends a lease. A run with a pending cancel is cancelled here and the worker told so.
    #[tracing::instrument(name = "coordinator.queue.heartbeat", skip(self))]
    pub async fn heartbeat(&self, lease: LeaseRef, now: DateTime<Utc>) -> Result<Beat> {
        let row = sqlx::query(
            "update runs set lease_expires_at = $3
             where id = $1 and lease_id = $2 and state = 'running'
             returning cancel_requested",
        )
        .bind(lease.run_id)
        .bind(lease.lease_id)
        .bind(ttl_after(now, self.lease_ttl))
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) if r.get::<bool, _>("cancel_requested") => {
                self.finish(lease, "cancelled", "cancelled", None, now)
                    .await?;
                Ok(Beat::Cancel)
            }
            Some(_) => Ok(Beat::Extended),
            None => {
                // Cancelled while the worker was between heartbeats: say so plainly.
                let outcome: Option<Option<String>> =
                    sqlx::query_scalar("select outcome from run_attempts where lease_id = $1")
                        .bind(lease.lease_id)
                        .fetch_optional(&self.pool)
                        .await?;
                match outcome {
                    Some(Some(o)) if o == "cancelled" => Ok(Beat::Cancel),
                    _ => Err(fenced(lease.run_id)),
                }
            }
        }
    }

    /// Locks the run and checks the lease; returns (attempt, epochs_done, epochs_total).
    async fn check_lease(
        tx: &mut Transaction<'_, Postgres>,
        lease: LeaseRef,
    ) -> Result<(i32, i32, i32)> {
        let row = sqlx::query(
            "select state, lease_id, attempt, epochs_done, epochs_total from runs where id = $1 for update",
        )
        .bind(lease.run_id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("no run {}", lease.run_id)))?;
        let state: String = row.get("state");
        let current: Option<Uuid> = row.get("lease_id");
        if state != "running" || current != Some(lease.lease_id) {
            return Err(fenced(lease.run_id));
        }
        Ok((
            row.get("attempt"),
            row.get("epochs_done"),
            row.get("epochs_total"),
        ))
    }

    /// Stores an epoch report. Returns false for a retry of a report already stored;
    /// refuses a different report for a stored epoch, and a gap.
    #[tracing::instrument(name = "coordinator.queue.report_epoch", skip(self, report), fields(epoch = report.epoch))]
    pub async fn report_epoch(&self, lease: LeaseRef, report: &EpochReport) -> Result<bool> {
        report.validate()?;
        if self.store_next_epochs(&[(lease, report)]).await?[0] {
            return Ok(true);
        }
        self.report_epoch_slow(lease, report).await
    }

    /// [`Queue::report_epoch`] for many reports: one statement stores every report that is the
    /// next epoch under a live lease (one per run); each of the others (a retry, a conflict,
    /// a fenced worker, a second report for the same run) then takes the single path.
    #[tracing::instrument(name = "coordinator.queue.report_epochs", skip_all, fields(n = items.len()))]
    pub async fn report_epochs(&self, items: &[(LeaseRef, EpochReport)]) -> Vec<Result<bool>> {
        let mut out: Vec<Option<Result<bool>>> = items
            .iter()
            .map(|(_, r)| r.validate().err().map(Err))
            .collect();
        let mut runs = std::collections::HashSet::new();
        let fast: Vec<usize> = (0..items.len())
            .filter(|&i| out[i].is_none() && runs.insert(items[i].0.run_id))
            .collect();
        let batch: Vec<(LeaseRef, &EpochReport)> =
            fast.iter().map(|&i| (items[i].0, &items[i].1)).collect();
        // Reports the fast statement already tried (and did not store) go straight to the slow
        // path; the rest (a second report for a run, or all of them if the statement failed)
        // take the whole single path.
        let mut tried = vec![false; items.len()];
        if let Ok(stored) = self.store_next_epochs(&batch).await {
            for (&i, stored) in fast.iter().zip(stored) {
                tried[i] = true;
                if stored {
                    out[i] = Some(Ok(true));
                }
            }
        }
        let mut results = Vec::with_capacity(items.len());
        for (i, o) in out.into_iter().enumerate() {
            let (lease, report) = (items[i].0, &items[i].1);
            results.push(match o {
                Some(r) => r,
                None if tried[i] => self.report_epoch_slow(lease, report).await,
                None => self.report_epoch(lease, report).await,
            });
        }
        results
    }

    /// The fast path, one statement: stores each report that is the next epoch of its run
    /// under the lease it names. Run ids must be distinct. Says which were stored.
    async fn store_next_epochs(&self, items: &[(LeaseRef, &EpochReport)]) -> Result<Vec<bool>> {
        let run_ids: Vec<i64> = items.iter().map(|(l, _)| l.run_id).collect();
        let lease_ids: Vec<Uuid> = items.iter().map(|(l, _)| l.lease_id).collect();
        let epochs: Vec<i32> = items.iter().map(|(_, r)| r.epoch).collect();
        let col =
            |f: fn(&EpochReport) -> f64| -> Vec<f64> { items.iter().map(|(_, r)| f(r)).collect() };
        let metrics: Vec<&serde_json::Value> = items.iter().map(|(_, r)| &r.metrics).collect();
        let stored: Vec<i64> = sqlx::query_scalar(
            "with req as (
                 select * from unnest($1::bigint[], $2::uuid[], $3::int[], $4::float8[], $5::float8[],
                     $6::float8[], $7::float8[], $8::jsonb[])
                     as t(run_id, lease_id, epoch, train_loss, val_loss, duration_s, chars_per_sec, metrics)
             ), r as (
                 select runs.id, runs.attempt, req.* from runs join req on req.run_id = runs.id
                 where runs.lease_id = req.lease_id and runs.state = 'running'
                     and runs.epochs_done + 1 = req.epoch and req.epoch <= runs.epochs_total
                     and (runs.halt_at is null or req.epoch <= runs.halt_at)
                 order by runs.id
                 for update of runs
             ), ins as (
                 insert into epochs (run_id, epoch, attempt, train_loss, val_loss, duration_s, chars_per_sec, metrics)
                 select r.id, r.epoch, r.attempt, r.train_loss, r.val_loss, r.duration_s, r.chars_per_sec, r.metrics from r
                 on conflict do nothing
                 returning run_id, epoch, train_loss, val_loss, duration_s, chars_per_sec, metrics
             )
             update runs set epochs_done = ins.epoch, last_train_loss = ins.train_loss, last_val_loss = ins.val_loss,
                 total_duration_s = coalesce(runs.total_duration_s, 0) + ins.duration_s,
                 last_chars_per_sec = ins.chars_per_sec, last_metrics = ins.metrics,
                 best_epoch = case when runs.best_val_loss is null or ins.val_loss < runs.best_val_loss
                     then ins.epoch else runs.best_epoch end,
                 best_val_loss = least(coalesce(runs.best_val_loss, ins.val_loss), ins.val_loss)
             from ins where runs.id = ins.run_id
             returning runs.id",
        )
        .bind(&run_ids)
        .bind(&lease_ids)
        .bind(&epochs)
        .bind(col(|r| r.train_loss))
        .bind(col(|r| r.val_loss))
        .bind(col(|r| r.duration_s))
        .bind(col(|r| r.chars_per_sec))
        .bind(&metrics)
        .fetch_all(&self.pool)
        .await?;
        Ok(run_ids.iter().map(|id| stored.contains(id)).collect())
    }

    /// Says precisely why a report was not the next epoch (fenced, retry, conflict, gap,
    /// range), storing it if it has become the next one.
    async fn report_epoch_slow(&self, lease: LeaseRef, report: &EpochReport) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let (attempt, done, total) = Self::check_lease(&mut tx, lease).await?;
        if report.epoch < 1 || report.epoch > total {
            return Err(ServiceError::Invalid(format!(
                "epoch.epoch: {} is out of range 1..={total}",
                report.epoch
            )));
        }
        if report.epoch <= done {
            let existing = sqlx::query(
                "select attempt, train_loss, val_loss from epochs where run_id = $1 and epoch = $2",
            )
            .bind(lease.run_id)
            .bind(report.epoch)
            .fetch_one(&mut *tx)
            .await?;
            let same = existing.get::<i32, _>("attempt") == attempt
                && existing.get::<f64, _>("train_loss") == report.train_loss
                && existing.get::<f64, _>("val_loss") == report.val_loss;
            tx.commit().await?;
            return if same {
                Ok(false)
            } else {
                Err(ServiceError::Conflict(format!(
                    "epoch {} of run {} is already stored with different values",
                    report.epoch, lease.run_id
                )))
            };
        }
        let halt_at: Option<i32> = sqlx::query_scalar("select halt_at from runs where id = $1")
            .bind(lease.run_id)
            .fetch_one(&mut *tx)
            .await?;
        if let Some(h) = halt_at.filter(|h| report.epoch > *h) {
            return Err(ServiceError::FailedPrecondition(format!(
                "run {} was halted at epoch {h} by its sweep's scheduler; hand it back with CompleteRun",
                lease.run_id
            )));
        }
        if report.epoch != done + 1 {
            return Err(ServiceError::FailedPrecondition(format!(
                "epoch {} reported before epoch {} of run {}",
                report.epoch,
                done + 1,
                lease.run_id
            )));
        }
        sqlx::query(
            "insert into epochs (run_id, epoch, attempt, train_loss, val_loss, duration_s, chars_per_sec, metrics)
             values ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(lease.run_id)
        .bind(report.epoch)
        .bind(attempt)
        .bind(report.train_loss)
        .bind(report.val_loss)
        .bind(report.duration_s)
        .bind(report.chars_per_sec)
        .bind(&report.metrics)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "update runs set epochs_done = $2, last_train_loss = $3, last_val_loss = $4,
                 best_epoch = case when best_val_loss is null or $4 < best_val_loss then $2 else best_epoch end,
                 best_val_loss = least(coalesce(best_val_loss, $4), $4),
                 total_duration_s = coalesce(total_duration_s, 0) + $5, last_chars_per_sec = $6,
                 last_metrics = $7
             where id = $1",
        )
        .bind(lease.run_id)
        .bind(report.epoch)
        .bind(report.train_loss)
        .bind(report.val_loss)
        .bind(report.duration_s)
        .bind(report.chars_per_sec)
        .bind(&report.metrics)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Checks, before any byte is stored, that a checkpoint for `epoch` may be uploaded.
    /// Returns the attempt number (part of the key) and the worker holding the lease.
    pub async fn check_checkpoint(&self, lease: LeaseRef, epoch: i32) -> Result<(i32, i64)> {
        let mut tx = self.pool.begin().await?;
        let (attempt, done, _) = Self::check_lease(&mut tx, lease).await?;
        let owner: i64 = sqlx::query_scalar("select lease_owner from runs where id = $1")
            .bind(lease.run_id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        if epoch < 1 || epoch > done {
            return Err(ServiceError::FailedPrecondition(format!(
                "checkpoint for epoch {epoch} of run {} before its epoch report (epochs reported: {done})",
                lease.run_id
            )));
        }
        Ok((attempt, owner))
    }

    /// Records a durable checkpoint blob (fenced), then applies retention. Returns the row
    /// and the keys whose blobs the caller must delete (retention, or a duplicate upload).
    #[tracing::instrument(name = "coordinator.queue.commit_checkpoint", skip(self, key, sha256))]
    #[allow(clippy::too_many_arguments)] // every argument is one fact of the upload; a struct would only rename them
    pub async fn commit_checkpoint(
        &self,
        lease: LeaseRef,
        epoch: i32,
        key: &str,
        size: i64,
        sha256: &str,
        keep_last: u32,
        now: DateTime<Utc>,
    ) -> Result<(CheckpointRow, Vec<String>)> {
        let mut tx = self.pool.begin().await?;
        let (attempt, done, _) = Self::check_lease(&mut tx, lease).await?;
        if epoch < 1 || epoch > done {
            return Err(ServiceError::FailedPrecondition(format!(
                "checkpoint for unreported epoch {epoch}"
            )));
        }
        let existing: Option<CheckpointRow> =
            sqlx::query_as("select * from checkpoints where run_id = $1 and epoch = $2")
                .bind(lease.run_id)
                .bind(epoch)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(e) = existing {
            tx.commit().await?;
            if e.sha256 == sha256 {
                let extra = if e.key != key {
                    vec![key.to_string()]
                } else {
                    vec![]
                };
                return Ok((e, extra));
            }
            return Err(ServiceError::Conflict(format!(
                "a different checkpoint for epoch {epoch} of run {} is already stored",
                lease.run_id
            )));
        }
        let val_loss: f64 =
            sqlx::query_scalar("select val_loss from epochs where run_id = $1 and epoch = $2")
                .bind(lease.run_id)
                .bind(epoch)
                .fetch_one(&mut *tx)
                .await?;
        let row: CheckpointRow = sqlx::query_as(
            "insert into checkpoints (run_id, epoch, attempt, key, size, sha256, val_loss, created_at)
             values ($1, $2, $3, $4, $5, $6, $7, $8) returning *",
        )
        .bind(lease.run_id)
        .bind(epoch)
        .bind(attempt)
        .bind(key)
        .bind(size)
        .bind(sha256)
        .bind(val_loss)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        // Retention: keep the best (lowest val loss) and the last `keep_last`.
        let dropped: Vec<String> = sqlx::query_scalar(
            "update checkpoints set live = false
             where run_id = $1 and live
               and id not in (select id from checkpoints where run_id = $1 and live order by epoch desc limit $2)
               and id <> (select id from checkpoints where run_id = $1 and live order by val_loss, epoch limit 1)
             returning key",
        )
        .bind(lease.run_id)
        .bind(keep_last.max(1) as i64)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((row, dropped))
    }

    /// Finishes a run successfully; every epoch must be reported.
    #[tracing::instrument(name = "coordinator.queue.complete", skip(self))]
    pub async fn complete(&self, lease: LeaseRef, now: DateTime<Utc>) -> Result<()> {
        if self.complete_fast(&[(lease, now)]).await?[0] {
            return Ok(());
        }
        self.complete_refused(lease, now).await
    }

    /// [`Queue::complete`] for many leases: one statement completes every run whose lease is
    /// live and whose epochs are all reported; each of the others is told why not.
    #[tracing::instrument(name = "coordinator.queue.complete_batch", skip_all, fields(n = items.len()))]
    pub async fn complete_batch(&self, items: &[(LeaseRef, DateTime<Utc>)]) -> Vec<Result<()>> {
        let done = self.complete_fast(items).await;
        let mut results = Vec::with_capacity(items.len());
        for (i, &(lease, now)) in items.iter().enumerate() {
            results.push(match &done {
                Ok(done) if done[i] => Ok(()),
                Ok(_) => self.complete_refused(lease, now).await,
                Err(_) => self.complete(lease, now).await,
            });
        }
        results
    }

    /// One statement: completes each run whose lease is live and whose epochs are all
    /// reported. Says which were completed.
    async fn complete_fast(&self, items: &[(LeaseRef, DateTime<Utc>)]) -> Result<Vec<bool>> {
        let run_ids: Vec<i64> = items.iter().map(|(l, _)| l.run_id).collect();
        let lease_ids: Vec<Uuid> = items.iter().map(|(l, _)| l.lease_id).collect();
        let nows: Vec<DateTime<Utc>> = items.iter().map(|(_, n)| *n).collect();
        let done: Vec<Uuid> = sqlx::query_scalar(
            "with req as (
                 select * from unnest($1::bigint[], $2::uuid[], $3::timestamptz[]) as t(run_id, lease_id, now)
             ), l as (
                 select runs.id, req.lease_id, req.now from runs join req on req.run_id = runs.id
                 where runs.lease_id = req.lease_id and runs.state = 'running'
                     and runs.epochs_done >= runs.epochs_total
                 order by runs.id
                 for update of runs
             ), r as (
                 update runs set state = 'succeeded', lease_id = null, lease_owner = null, lease_expires_at = null,
                     cancel_requested = false, finished_at = l.now
                 from l where runs.id = l.id
                 returning l.lease_id, l.now
             ), a as (
                 update run_attempts set ended_at = r.now, outcome = 'completed'
                 from r where run_attempts.lease_id = r.lease_id
             )
             select lease_id from r",
        )
        .bind(&run_ids)
        .bind(&lease_ids)
        .bind(&nows)
        .fetch_all(&self.pool)
        .await?;
        Ok(lease_ids.iter().map(|l| done.contains(l)).collect())
    }

    /// A lease that could not complete the fast way: a run its sweep's scheduler halted (it
    /// moves to `paused` or `stopped`), else why not: fenced, or epochs still missing.
    async fn complete_refused(&self, lease: LeaseRef, now: DateTime<Utc>) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let (_, done, total) = Self::check_lease(&mut tx, lease).await?;
        let halt = sqlx::query("select halt_at, halt_state, halt_reason from runs where id = $1")
            .bind(lease.run_id)
            .fetch_one(&mut *tx)
            .await?;
        if let Some(at) = halt
            .get::<Option<i32>, _>("halt_at")
            .filter(|at| done >= *at)
        {
            let state: String = halt.get("halt_state");
            let checkpointed: bool = sqlx::query_scalar(
                "select exists (select 1 from checkpoints where run_id = $1 and epoch = $2 and live)",
            )
            .bind(lease.run_id)
            .bind(at)
            .fetch_one(&mut *tx)
            .await?;
            if state == "paused" && !checkpointed {
                return Err(ServiceError::FailedPrecondition(format!(
                    "run {} was paused at epoch {at}; upload that epoch's checkpoint before handing it back",
                    lease.run_id
                )));
            }
            let reason: Option<String> = halt.get("halt_reason");
            end_lease(&mut tx, lease, &state, "completed", reason.as_deref(), now).await?;
            sqlx::query("update runs set halt_at = null, halt_state = null where id = $1")
                .bind(lease.run_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(());
        }
        Err(ServiceError::FailedPrecondition(format!(
            "run {} has {done} of {total} epochs reported; report every epoch before completing",
            lease.run_id
        )))
    }

    /// Ends a lease with a terminal or queued state (used by heartbeat-cancel).
    async fn finish(
        &self,
        lease: LeaseRef,
        state: &str,
        outcome: &str,
        detail: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        Self::check_lease(&mut tx, lease).await?;
        end_lease(&mut tx, lease, state, outcome, detail, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A worker gives a run up.
    #[tracing::instrument(name = "coordinator.queue.fail", skip(self, reason))]
    pub async fn fail(
        &self,
        lease: LeaseRef,
        reason: &str,
        how: GiveUp,
        now: DateTime<Utc>,
    ) -> Result<String> {
        let mut tx = self.pool.begin().await?;
        Self::check_lease(&mut tx, lease).await?;
        let row =
            sqlx::query("select failures, max_attempts, cancel_requested from runs where id = $1")
                .bind(lease.run_id)
                .fetch_one(&mut *tx)
                .await?;
        let failures: i32 = row.get("failures");
        let max: i32 = row.get("max_attempts");
        let (state, outcome) = match how {
            _ if row.get::<bool, _>("cancel_requested") => ("cancelled", "cancelled"),
            GiveUp::Release => ("queued", "released"),
            GiveUp::Permanent => ("failed", "failed"),
            GiveUp::Retry if failures + 1 >= max => ("failed", "failed"),
            GiveUp::Retry => ("queued", "failed"),
        };
        if how != GiveUp::Release {
            sqlx::query("update runs set failures = failures + 1 where id = $1")
                .bind(lease.run_id)
                .execute(&mut *tx)
                .await?;
        }
        let error = match state {
            "failed" if how == GiveUp::Retry => {
                Some(format!("{reason} (attempt {} of {max})", failures + 1))
            }
            "failed" => Some(reason.to_string()),
            _ => None,
        };
        end_lease(&mut tx, lease, state, outcome, Some(reason), now).await?;
        if let Some(e) = error {
            sqlx::query("update runs set error = $2 where id = $1")
                .bind(lease.run_id)
                .bind(e)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(state.to_string())
    }

    /// Requeues (or fails, or cancels) every run whose lease expired before `now`. Safe to
    /// run on every replica at once: rows are taken with SKIP LOCKED.
    #[tracing::instrument(name = "coordinator.queue.reap", skip(self))]
    pub async fn reap(&self, now: DateTime<Utc>) -> Result<Vec<Reaped>> {
        // A run its sweep's scheduler halted, whose worker died after storing the checkpoint
        // of the halting epoch but before handing it back: the decision applies now.
        let halted = sqlx::query(
            "with expired as (
                 select id from runs r where state = 'running' and lease_expires_at < $1
                     and halt_at is not null
                     and exists (select 1 from checkpoints c where c.run_id = r.id and c.epoch = r.halt_at and c.live)
                 for update skip locked
             ), upd as (
                 update runs r set state = r.halt_state,
                     finished_at = case when r.halt_state = 'stopped' then $1 end,
                     lease_id = null, lease_owner = null, lease_expires_at = null,
                     halt_at = null, halt_state = null
                 from expired where r.id = expired.id
                 returning r.id, r.attempt, r.state
             ), att as (
                 update run_attempts a set ended_at = $1, outcome = 'lease_expired',
                     detail = 'lease expired after the sweep scheduler halted the run; its decision applied'
                 from upd where a.run_id = upd.id and a.attempt = upd.attempt and a.ended_at is null
             )
             select id, state from upd order by id",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let rows = sqlx::query(
            "with expired as (
                 select id from runs where state = 'running' and lease_expires_at < $1
                 for update skip locked
             ), upd as (
                 update runs r set
                     failures = r.failures + case when r.cancel_requested then 0 else 1 end,
                     state = case when r.cancel_requested then 'cancelled'
                                  when r.failures + 1 >= r.max_attempts then 'failed'
                                  else 'queued' end,
                     error = case when r.cancel_requested then r.error
                                  when r.failures + 1 >= r.max_attempts then
                                      format('lease expired on attempt %s: %s of %s attempts failed',
                                             r.attempt, r.failures + 1, r.max_attempts)
                                  else r.error end,
                     finished_at = case when r.cancel_requested or r.failures + 1 >= r.max_attempts
                                        then $1 else null end,
                     lease_id = null, lease_owner = null, lease_expires_at = null
                 from expired where r.id = expired.id
                 returning r.id, r.attempt, r.state
             ), att as (
                 update run_attempts a set ended_at = $1,
                     outcome = case when upd.state = 'cancelled' then 'cancelled' else 'lease_expired' end,
                     detail = 'no heartbeat before the lease expired'
                 from upd where a.run_id = upd.id and a.attempt = upd.attempt and a.ended_at is null
             )
             select id, state from upd order by id",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        Ok(halted
            .into_iter()
            .chain(rows)
            .map(|r| Reaped {
                run_id: r.get("id"),
                state: r.get("state"),
            })
            .collect())
    }

    /// Cancels one run.
    pub async fn cancel_run(
        &self,
        run_id: i64,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Cancelled> {
        self.cancel_where(CancelScope::Run, run_id, reason, now)
            .await
    }

    /// Cancels every unfinished run created by a sweep.
    pub async fn cancel_sweep(
        &self,
        sweep_id: i64,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Cancelled> {
        self.cancel_where(CancelScope::Sweep, sweep_id, reason, now)
            .await
    }

    /// Cancels the unfinished runs `scope` covers after checking that run or sweep `id`
    /// exists.
    async fn cancel_where(
        &self,
        scope: CancelScope,
        id: i64,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Cancelled> {
        // Copied into every run the cancel touches (up to a sweep's size).
        crate::limits::check_chars("reason", reason, crate::limits::MAX_REASON_CHARS)?;
        // Only this match picks SQL text: a table name or column cannot be a bind parameter,
        // so each scope has its own fixed statement and condition; `id` is always bound.
        let (what, exists_sql, cond) = match scope {
            CancelScope::Run => ("run", "select id from runs where id = $1", "id = $1"),
            CancelScope::Sweep => (
                "sweep",
                "select id from sweeps where id = $1",
                "sweep_id = $1",
            ),
        };
        let exists: Option<i64> = sqlx::query_scalar(exists_sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        if exists.is_none() {
            return Err(ServiceError::NotFound(format!("no {what} {id}")));
        }
        let reason = if reason.is_empty() {
            "cancelled by user"
        } else {
            reason
        };
        // Rows are locked in id order, as the batched reports and completions lock theirs, so
        // a sweep-wide cancel cannot deadlock with a batch.
        let sql = format!(
            "with locked as (
                 select id from runs
                 where {cond} and state in ('queued', 'running', 'paused') and not cancel_requested
                 order by id for update
             )
             update runs r set
                 state = case when r.state = 'running' then r.state else 'cancelled' end,
                 cancel_requested = (r.state = 'running'),
                 finished_at = case when r.state = 'running' then r.finished_at else $3 end,
                 error = $2
             from locked
             where r.id = locked.id and r.state in ('queued', 'running', 'paused') and not r.cancel_requested
             returning r.state"
        );
        let states: Vec<String> = sqlx::query_scalar(&sql)
            .bind(id)
            .bind(reason)
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        let mut c = Cancelled::default();
        for s in states {
            if s == "cancelled" {
                c.cancelled += 1;
            } else {
                c.requested += 1;
            }
        }
        Ok(c)
    }
}

/// Ends the current lease of a locked, running run.
async fn end_lease(
    tx: &mut Transaction<'_, Postgres>,
    lease: LeaseRef,
    state: &str,
    outcome: &str,
    detail: Option<&str>,
    now: DateTime<Utc>,
) -> Result<()> {
    let terminal = matches!(state, "succeeded" | "failed" | "cancelled" | "stopped");
    sqlx::query(
        "update runs set state = $2, lease_id = null, lease_owner = null, lease_expires_at = null,
             cancel_requested = false, finished_at = case when $3 then $4 else null end
         where id = $1",
    )
    .bind(lease.run_id)
    .bind(state)
    .bind(terminal)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "update run_attempts set ended_at = $2, outcome = $3, detail = $4 where lease_id = $1",
    )
    .bind(lease.lease_id)
    .bind(now)
    .bind(outcome)
    .bind(detail)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Recomputes a run's epoch summary columns from its epoch rows.
pub(crate) async fn refresh_run_stats(
    tx: &mut Transaction<'_, Postgres>,
    run_id: i64,
) -> Result<()> {
    sqlx::query(
        "update runs r set
             epochs_done = coalesce((select max(epoch) from epochs where run_id = $1), 0),
             best_val_loss = (select min(val_loss) from epochs where run_id = $1),
             best_epoch = (select epoch from epochs where run_id = $1 order by val_loss, epoch limit 1),
             last_train_loss = (select train_loss from epochs where run_id = $1 order by epoch desc limit 1),
             last_val_loss = (select val_loss from epochs where run_id = $1 order by epoch desc limit 1),
             total_duration_s = (select sum(duration_s) from epochs where run_id = $1),
             last_chars_per_sec = (select chars_per_sec from epochs where run_id = $1 order by epoch desc limit 1),
             last_metrics = (select metrics from epochs where run_id = $1 order by epoch desc limit 1)
         where r.id = $1",
    )
    .bind(run_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// What a cancel covers: one run, or every run of one sweep.
#[derive(Debug, Clone, Copy)]
enum CancelScope {
    Run,
    Sweep,
}

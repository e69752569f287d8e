//! The queue's guarantees, driven directly with a controllable clock.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use poet_coordinator::error::ServiceError;
use poet_coordinator::queue::{Beat, EpochReport, GiveUp, LeaseRef, Queue};
use poet_sql::testing::fresh_db;

use crate::helpers::{POEMS, seed_dataset, spec};

/// A fresh database with a sweep of `runs` runs of `epochs` epochs and one worker: the pool, a
/// queue over it and the worker's id.
pub(crate) async fn setup(runs: usize, epochs: u32) -> (sqlx::PgPool, Queue, i64) {
    let db = fresh_db().await;
    seed_dataset(&db.pool, "tiny", POEMS).await;
    let s = poet_coordinator::sweeps::submit(
        &db.pool,
        &spec("tiny", runs, epochs),
        "toml",
        "",
        false,
        1000,
    )
    .await
    .unwrap();
    assert_eq!(s.created.len(), runs);
    let worker: i64 =
        sqlx::query_scalar("insert into workers (host, device) values ('w', 'cpu') returning id")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    (
        db.pool.clone(),
        Queue::new(db.pool, Duration::from_secs(10)),
        worker,
    )
}

/// An epoch report with this train loss (validation 0.1 higher).
pub(crate) fn report(epoch: i32, loss: f64) -> EpochReport {
    EpochReport {
        epoch,
        train_loss: loss,
        val_loss: loss + 0.1,
        duration_s: 1.0,
        chars_per_sec: 100.0,
        metrics: serde_json::json!({}),
    }
}

#[tokio::test]
async fn concurrent_claims_lease_every_run_exactly_once() {
    let (_pool, q, worker) = setup(40, 1).await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let q = q.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(c) = q.claim(worker, Utc::now()).await.unwrap() {
                got.push(c.lease.run_id);
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 40, "every run leased");
    assert_eq!(unique.len(), 40, "no run leased twice");
}

#[tokio::test]
async fn expired_lease_requeues_and_resumes_from_latest_checkpoint() {
    let (pool, q, worker) = setup(1, 4).await;
    let t0 = Utc::now();
    let c1 = q.claim(worker, t0).await.unwrap().unwrap();
    assert_eq!(c1.attempt, 1);
    assert!(c1.resume_from.is_none());
    for e in 1..=3 {
        assert!(
            q.report_epoch(c1.lease, &report(e, 3.0 - e as f64 * 0.1))
                .await
                .unwrap()
        );
    }
    // Checkpoints for epochs 1 and 2 only: epoch 3's was lost with the worker.
    for e in 1..=2 {
        q.commit_checkpoint(c1.lease, e, &format!("k{e}"), 10, &"a".repeat(64), 2, t0)
            .await
            .unwrap();
    }
    // Not yet expired.
    assert!(q.reap(t0 + TimeDelta::seconds(5)).await.unwrap().is_empty());
    let reaped = q.reap(t0 + TimeDelta::seconds(11)).await.unwrap();
    assert_eq!(reaped.len(), 1);
    assert_eq!(reaped[0].state, "queued");
    let c2 = q
        .claim(worker, t0 + TimeDelta::seconds(12))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c2.attempt, 2);
    assert_eq!(
        c2.resume_from.as_ref().unwrap().epoch,
        2,
        "resumes from the latest checkpoint"
    );
    assert_eq!(c2.discarded_epochs, 1, "epoch 3 had no checkpoint");
    let epochs: Vec<i32> =
        sqlx::query_scalar("select epoch from epochs where run_id = $1 order by epoch")
            .bind(c2.lease.run_id)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(epochs, vec![1, 2]);
    // The old lease is fenced out of every write.
    let fenced = q.report_epoch(c1.lease, &report(3, 1.0)).await.unwrap_err();
    assert!(
        matches!(fenced, ServiceError::FailedPrecondition(_)),
        "{fenced}"
    );
    assert!(matches!(
        q.heartbeat(c1.lease, t0).await.unwrap_err(),
        ServiceError::FailedPrecondition(_)
    ));
    assert!(matches!(
        q.complete(c1.lease, t0).await.unwrap_err(),
        ServiceError::FailedPrecondition(_)
    ));
    // The new holder continues at epoch 3 and finishes.
    for e in 3..=4 {
        assert!(q.report_epoch(c2.lease, &report(e, 2.0)).await.unwrap());
    }
    q.complete(c2.lease, t0 + TimeDelta::seconds(13))
        .await
        .unwrap();
    let (state, attempts): (String, i64) = sqlx::query_as(
        "select r.state, (select count(*) from run_attempts a where a.run_id = r.id) from runs r where r.id = $1",
    )
    .bind(c2.lease.run_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((state.as_str(), attempts), ("succeeded", 2));
}

#[tokio::test]
async fn max_attempts_exhausted_fails_with_reason() {
    let (pool, q, worker) = setup(1, 2).await; // spec sets max_attempts = 2
    let mut now = Utc::now();
    for attempt in 1..=2 {
        let c = q.claim(worker, now).await.unwrap().expect("claimable");
        assert_eq!(c.attempt, attempt);
        now += TimeDelta::seconds(11);
        q.reap(now).await.unwrap();
    }
    assert!(q.claim(worker, now).await.unwrap().is_none());
    let (state, error): (String, String) = sqlx::query_as("select state, error from runs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(state, "failed");
    assert!(
        error.contains("lease expired") && error.contains("2 of 2"),
        "{error}"
    );
}

#[tokio::test]
async fn epoch_reports_are_idempotent_and_conflicts_refused() {
    let (_pool, q, worker) = setup(1, 3).await;
    let c = q.claim(worker, Utc::now()).await.unwrap().unwrap();
    assert!(q.report_epoch(c.lease, &report(1, 2.0)).await.unwrap());
    assert!(
        !q.report_epoch(c.lease, &report(1, 2.0)).await.unwrap(),
        "a retry is a no-op"
    );
    let conflict = q.report_epoch(c.lease, &report(1, 1.5)).await.unwrap_err();
    assert!(matches!(conflict, ServiceError::Conflict(_)), "{conflict}");
    let gap = q.report_epoch(c.lease, &report(3, 1.0)).await.unwrap_err();
    assert!(matches!(gap, ServiceError::FailedPrecondition(_)), "{gap}");
    let nan = q
        .report_epoch(c.lease, &report(2, f64::NAN))
        .await
        .unwrap_err();
    assert!(matches!(nan, ServiceError::Invalid(_)), "{nan}");
    // Completing early is refused.
    assert!(matches!(
        q.complete(c.lease, Utc::now()).await.unwrap_err(),
        ServiceError::FailedPrecondition(_)
    ));
}

#[tokio::test]
async fn cancel_queued_never_starts_and_running_stops_at_heartbeat() {
    let (pool, q, worker) = setup(2, 2).await;
    let now = Utc::now();
    let c = q.claim(worker, now).await.unwrap().unwrap();
    let sweep_id: i64 = sqlx::query_scalar("select id from sweeps")
        .fetch_one(&pool)
        .await
        .unwrap();
    let counts = q.cancel_sweep(sweep_id, "enough", now).await.unwrap();
    assert_eq!((counts.cancelled, counts.requested), (1, 1));
    assert!(
        q.claim(worker, now).await.unwrap().is_none(),
        "the queued run never starts"
    );
    assert_eq!(q.heartbeat(c.lease, now).await.unwrap(), Beat::Cancel);
    // Asking again (a retried heartbeat) still says cancel; writes are fenced.
    assert_eq!(q.heartbeat(c.lease, now).await.unwrap(), Beat::Cancel);
    assert!(q.report_epoch(c.lease, &report(1, 1.0)).await.is_err());
    let states: Vec<String> = sqlx::query_scalar("select state from runs order by id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(states, vec!["cancelled", "cancelled"]);
}

#[tokio::test]
async fn release_requeues_without_counting_a_failure() {
    let (pool, q, worker) = setup(1, 2).await;
    let now = Utc::now();
    for _ in 0..3 {
        let c = q.claim(worker, now).await.unwrap().unwrap();
        assert_eq!(
            q.fail(c.lease, "sigterm", GiveUp::Release, now)
                .await
                .unwrap(),
            "queued"
        );
    }
    let (state, failures): (String, i32) = sqlx::query_as("select state, failures from runs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!((state.as_str(), failures), ("queued", 0));
    let c = q.claim(worker, now).await.unwrap().unwrap();
    assert_eq!(
        q.fail(c.lease, "bad config", GiveUp::Permanent, now)
            .await
            .unwrap(),
        "failed"
    );
}

#[tokio::test]
async fn a_batch_claim_gives_each_request_its_own_run_in_claim_order() {
    let (pool, q, worker) = setup(5, 1).await;
    let urgent: i64 = sqlx::query_scalar(
        "update runs set priority = 5 where id = (select max(id) from runs) returning id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let now = Utc::now();
    let first: Vec<_> = q
        .claim_batch(&[(worker, now); 3])
        .await
        .into_iter()
        .map(|c| c.unwrap())
        .collect();
    let ids: Vec<i64> = first
        .iter()
        .map(|c| c.as_ref().unwrap().lease.run_id)
        .collect();
    assert_eq!(ids[0], urgent, "highest priority first: {ids:?}");
    assert!(ids[1] < ids[2], "then oldest first: {ids:?}");
    let leases: HashSet<_> = first
        .iter()
        .map(|c| c.as_ref().unwrap().lease.lease_id)
        .collect();
    assert_eq!(leases.len(), 3, "one lease each");
    let attempts: i64 = sqlx::query_scalar(
        "select count(*) from run_attempts a join runs r on r.lease_id = a.lease_id and r.id = a.run_id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(attempts, 3, "an attempt row per lease");
    // Two runs are left: a batch of three gets them, and the third request gets nothing.
    let rest: Vec<_> = q
        .claim_batch(&[(worker, now); 3])
        .await
        .into_iter()
        .map(|c| c.unwrap())
        .collect();
    assert!(
        rest[0].is_some() && rest[1].is_some() && rest[2].is_none(),
        "{rest:?}"
    );
    let all: HashSet<i64> = first
        .iter()
        .chain(&rest)
        .flatten()
        .map(|c| c.lease.run_id)
        .collect();
    assert_eq!(all.len(), 5, "no run leased twice");
}

#[tokio::test]
async fn a_batch_claim_beside_an_unknown_worker_answers_each_request() {
    let (pool, q, worker) = setup(3, 1).await;
    let now = Utc::now();
    let out = q
        .claim_batch(&[(worker, now), (worker + 1000, now), (worker, now)])
        .await;
    assert!(matches!(out[0], Ok(Some(_))), "{:?}", out[0]);
    assert!(
        matches!(out[1], Err(ServiceError::Database(_))),
        "{:?}",
        out[1]
    );
    assert!(matches!(out[2], Ok(Some(_))), "{:?}", out[2]);
    let running: i64 = sqlx::query_scalar("select count(*) from runs where state = 'running'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        running, 2,
        "one run per known worker, none for the unknown one"
    );
}

/// Claims three runs one by one.
async fn three_leases(q: &Queue, worker: i64) -> [LeaseRef; 3] {
    let mut leases = Vec::new();
    for _ in 0..3 {
        leases.push(q.claim(worker, Utc::now()).await.unwrap().unwrap().lease);
    }
    leases.try_into().unwrap()
}

/// A lease on the same run that is not the current one (a fenced writer's).
fn stale(lease: LeaseRef) -> LeaseRef {
    LeaseRef {
        run_id: lease.run_id,
        lease_id: uuid::Uuid::new_v4(),
    }
}

#[tokio::test]
async fn batched_reports_each_get_the_single_path_answer() {
    let (pool, q, worker) = setup(3, 3).await;
    let [a, b, c] = three_leases(&q, worker).await;
    assert!(q.report_epoch(a, &report(1, 2.0)).await.unwrap());
    let stale = stale(c);
    let items = vec![
        (a, report(1, 2.0)),      // a retry of a stored report
        (b, report(1, 2.0)),      // the next epoch
        (b, report(2, 1.9)),      // a second report for the same run in one batch
        (c, report(2, 1.0)),      // a gap
        (stale, report(1, 1.0)),  // a fenced worker
        (a, report(2, f64::NAN)), // not a number
        (a, report(1, 1.5)),      // a conflicting retry
    ];
    let out = q.report_epochs(&items).await;
    assert!(matches!(out[0], Ok(false)), "{:?}", out[0]);
    assert!(matches!(out[1], Ok(true)), "{:?}", out[1]);
    assert!(matches!(out[2], Ok(true)), "{:?}", out[2]);
    assert!(
        matches!(out[3], Err(ServiceError::FailedPrecondition(_))),
        "{:?}",
        out[3]
    );
    assert!(
        matches!(out[4], Err(ServiceError::FailedPrecondition(_))),
        "{:?}",
        out[4]
    );
    assert!(
        matches!(out[5], Err(ServiceError::Invalid(_))),
        "{:?}",
        out[5]
    );
    assert!(
        matches!(out[6], Err(ServiceError::Conflict(_))),
        "{:?}",
        out[6]
    );
    let stored: Vec<(i64, i32)> =
        sqlx::query_as("select run_id, epoch from epochs order by run_id, epoch")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(stored, vec![(a.run_id, 1), (b.run_id, 1), (b.run_id, 2)]);
    let (done, best): (i32, f64) =
        sqlx::query_as("select epochs_done, best_val_loss from runs where id = $1")
            .bind(b.run_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((done, best), (2, 2.0), "run summary follows its epochs");
}

#[tokio::test]
async fn batched_completions_each_get_their_own_answer() {
    let (pool, q, worker) = setup(3, 1).await;
    let now = Utc::now();
    let [a, b, c] = three_leases(&q, worker).await;
    for l in [a, b] {
        assert!(q.report_epoch(l, &report(1, 2.0)).await.unwrap());
    }
    let stale = stale(b);
    let out = q.complete_batch(&[(a, now), (stale, now), (c, now)]).await;
    assert!(out[0].is_ok(), "{:?}", out[0]);
    assert!(
        matches!(out[1], Err(ServiceError::FailedPrecondition(_))),
        "{:?}",
        out[1]
    );
    let missing = format!("{:?}", out[2]);
    assert!(missing.contains("0 of 1"), "{missing}");
    let states: Vec<String> = sqlx::query_scalar("select state from runs order by id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(states, ["succeeded", "running", "running"]);
    let outcome: Option<String> =
        sqlx::query_scalar("select outcome from run_attempts where lease_id = $1")
            .bind(a.lease_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(outcome.as_deref(), Some("completed"));
}

#[tokio::test]
async fn concurrent_batched_leases_answer_each_caller_even_beside_an_unknown_worker() {
    let (_pool, q, worker) = setup(30, 1).await;
    let batches = poet_coordinator::service::Batches::spawn(&q);
    let mut tasks = Vec::new();
    for i in 0..31 {
        let b = batches.clone();
        // One caller names a worker that does not exist: it alone is refused.
        let id = if i == 7 { worker + 1000 } else { worker };
        tasks.push(tokio::spawn(async move {
            (id, b.claim(id, Default::default(), Utc::now()).await)
        }));
    }
    let mut runs = HashSet::new();
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            (id, Ok(Some(c))) if id == worker => assert!(runs.insert(c.lease.run_id)),
            (id, Err(ServiceError::Database(_))) if id != worker => refused += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!((runs.len(), refused), (30, 1));
}

//! A heterogeneous fleet (issue 20): runs go only to workers that can hold them, sweeps of
//! equal priority take turns, and runs no worker can hold are reported.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use poet_coordinator::queue::{Capacity, Queue};
use poet_sql::testing::fresh_db;
use sqlx::PgPool;

use crate::helpers::{POEMS, seed_dataset, spec};

const GB: i64 = 1_000_000_000;

/// A fresh database with the tiny dataset, and a queue over it.
async fn setup() -> (PgPool, Queue) {
    let db = fresh_db().await;
    seed_dataset(&db.pool, "tiny", POEMS).await;
    (
        db.pool.clone(),
        Queue::new(db.pool, Duration::from_secs(10)),
    )
}

/// Submits `spec` plus a `[resources]` table; returns the new run ids and the warnings.
async fn submit(pool: &PgPool, text: &str, resources: &str) -> (Vec<i64>, Vec<String>) {
    let text = if resources.is_empty() {
        text.to_string()
    } else {
        format!("{text}\n[resources]\n{resources}\n")
    };
    let s = poet_coordinator::sweeps::submit(pool, &text, "toml", "", false, 1000)
        .await
        .unwrap();
    (s.created.iter().map(|r| r.id).collect(), s.warnings)
}

/// `n` runs of a tiny model; `tag` keeps their configs apart from other sweeps'.
fn tiny(n: usize, tag: u32) -> String {
    spec("tiny", n, 1).replace("epochs = 1", &format!("epochs = 1\nmax_batches = {tag}"))
}

/// A worker row with this capacity, and the capacity.
async fn worker(pool: &PgPool, cap: Capacity) -> (i64, Arc<Capacity>) {
    let id: i64 = sqlx::query_scalar(
        "insert into workers (host, device, gpu_memory_bytes, memory_bytes, labels)
         values ('w', $1, $2, $3, $4) returning id",
    )
    .bind(if cap.gpu { "cuda:0" } else { "cpu" })
    .bind(cap.gpu_memory_bytes)
    .bind(cap.memory_bytes)
    .bind(serde_json::to_value(&cap.labels).unwrap())
    .fetch_one(pool)
    .await
    .unwrap();
    (id, Arc::new(cap))
}

fn cpu(memory_gb: i64) -> Capacity {
    Capacity {
        memory_bytes: memory_gb * GB,
        ..Capacity::default()
    }
}

fn gpu(gpu_gb: i64) -> Capacity {
    Capacity {
        gpu: true,
        gpu_memory_bytes: gpu_gb * GB,
        memory_bytes: 64 * GB,
        ..Capacity::default()
    }
}

fn labelled(mut c: Capacity, pairs: &[(&str, &str)]) -> Capacity {
    c.labels = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<BTreeMap<_, _>>();
    c
}

/// Claims until the queue has nothing for this worker; the run ids in claim order.
async fn drain(q: &Queue, (id, cap): &(i64, Arc<Capacity>)) -> Vec<i64> {
    let mut got = Vec::new();
    while let Some(c) = q.claim_for(*id, cap.clone(), Utc::now()).await.unwrap() {
        got.push(c.lease.run_id);
    }
    got
}

#[tokio::test]
async fn a_gpu_only_run_is_never_leased_to_a_cpu_worker() {
    let (pool, q) = setup().await;
    let (gpu_runs, _) = submit(&pool, &tiny(3, 1), "gpu = true").await;
    let (any_runs, _) = submit(&pool, &tiny(2, 2), "").await;
    let (cpu_runs, _) = submit(&pool, &tiny(2, 3), "gpu = false").await;
    let c = worker(&pool, cpu(16)).await;
    let g = worker(&pool, gpu(24)).await;
    let mut by_cpu = drain(&q, &c).await;
    by_cpu.sort();
    let mut want: Vec<i64> = any_runs.iter().chain(&cpu_runs).copied().collect();
    want.sort();
    assert_eq!(
        by_cpu, want,
        "the CPU worker takes every run but the GPU ones"
    );
    let mut by_gpu = drain(&q, &g).await;
    by_gpu.sort();
    assert_eq!(by_gpu, gpu_runs, "the GPU ones wait for the GPU worker");
}

#[tokio::test]
async fn a_run_too_big_for_a_worker_is_skipped_and_goes_to_one_that_fits() {
    let (pool, q) = setup().await;
    // Submitted first, so first in claim order: ~50 GB by the estimate.
    let big = spec("tiny", 1, 1).replace(
        "units = 8\nseq_len = 16",
        "units = 2048\nseq_len = 2000\nbatch_size = 256",
    );
    let (big_runs, _) = submit(&pool, &big, "").await;
    let est: i64 = sqlx::query_scalar("select est_memory_bytes from runs where id = $1")
        .bind(big_runs[0])
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(est > 24 * GB && est < 200 * GB, "estimate {est}");
    let (small_runs, _) = submit(&pool, &tiny(1, 1), "").await;
    let small_cpu = worker(&pool, cpu(8)).await;
    let small_gpu = worker(&pool, gpu(24)).await;
    let big_gpu = worker(&pool, gpu(200)).await;
    assert_eq!(drain(&q, &small_gpu).await, small_runs, "skips the big run");
    assert_eq!(drain(&q, &small_cpu).await, Vec::<i64>::new());
    assert_eq!(drain(&q, &big_gpu).await, big_runs);
    // A spec's own minimum counts as well as the estimate.
    let (min_runs, _) = submit(&pool, &tiny(1, 2), "min_gpu_memory_gb = 40").await;
    assert!(drain(&q, &small_gpu).await.is_empty());
    assert_eq!(drain(&q, &big_gpu).await, min_runs);
}

#[tokio::test]
async fn labels_must_all_match() {
    let (pool, q) = setup().await;
    let (runs, _) = submit(
        &pool,
        &tiny(2, 1),
        "labels = { zone = \"a\", disk = \"ssd\" }",
    )
    .await;
    let none = worker(&pool, cpu(16)).await;
    let other_zone = worker(&pool, labelled(cpu(16), &[("zone", "b"), ("disk", "ssd")])).await;
    let half = worker(&pool, labelled(cpu(16), &[("zone", "a")])).await;
    let all = worker(
        &pool,
        labelled(cpu(16), &[("zone", "a"), ("disk", "ssd"), ("rack", "7")]),
    )
    .await;
    for w in [&none, &other_zone, &half] {
        assert!(
            drain(&q, w).await.is_empty(),
            "worker {} has not the labels",
            w.0
        );
    }
    let mut got = drain(&q, &all).await;
    got.sort();
    assert_eq!(got, runs);
}

#[tokio::test]
async fn submit_warns_about_runs_no_worker_can_hold() {
    let (pool, _q) = setup().await;
    worker(&pool, cpu(16)).await;
    worker(&pool, labelled(gpu(8), &[("zone", "a")])).await;
    let (_, fine) = submit(&pool, &tiny(2, 1), "").await;
    assert!(fine.is_empty(), "{fine:?}");
    let (_, w) = submit(&pool, &tiny(3, 2), "min_gpu_memory_gb = 9.1").await;
    assert_eq!(
        w,
        vec!["3 runs: no worker fits: needs 9.1 GB GPU".to_string()]
    );
    let (runs, w) = submit(&pool, &tiny(1, 3), "labels = { zone = \"b\" }").await;
    assert_eq!(w.len(), 1);
    assert!(
        w[0].starts_with("1 run: no worker fits: needs") && w[0].ends_with("labels zone=b"),
        "{w:?}"
    );
    // The same reason per run, for `poet sweeps show`.
    let reasons = poet_coordinator::sweeps::no_fit_reasons(&pool, &runs)
        .await
        .unwrap();
    assert_eq!(reasons.len(), 1);
    assert_eq!(reasons[0].0, runs[0]);
    assert!(reasons[0].1.contains("labels zone=b"));
    // A worker that fits arrives: nothing to report any more.
    worker(&pool, labelled(cpu(16), &[("zone", "b")])).await;
    assert!(
        poet_coordinator::sweeps::no_fit_reasons(&pool, &runs)
            .await
            .unwrap()
            .is_empty()
    );
}

/// The sweep of each run id.
async fn sweep_of(pool: &PgPool, runs: &[i64]) -> Vec<i64> {
    let by_run: HashMap<i64, i64> =
        sqlx::query_as::<_, (i64, i64)>("select id, sweep_id from runs where id = any($1)")
            .bind(runs)
            .fetch_all(pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    runs.iter().map(|r| by_run[r]).collect()
}

#[tokio::test]
async fn two_sweeps_of_equal_priority_take_turns() {
    let (pool, q) = setup().await;
    // The first sweep is large and older: by age alone it would take every lease.
    submit(&pool, &tiny(20, 1), "").await;
    submit(&pool, &tiny(6, 2), "").await;
    let w = worker(&pool, cpu(16)).await;
    let mut got = Vec::new();
    for _ in 0..6 {
        let c = q
            .claim_for(w.0, w.1.clone(), Utc::now())
            .await
            .unwrap()
            .unwrap();
        got.push(c.lease.run_id);
    }
    let sweeps = sweep_of(&pool, &got).await;
    let (a, b) = (sweeps[0], sweeps[1]);
    assert_ne!(a, b);
    assert_eq!(sweeps, vec![a, b, a, b, a, b], "runs {got:?}");
    // A batch spreads the same way: 3 + 3 more.
    let batch: Vec<_> = (0..6).map(|_| (w.0, w.1.clone(), Utc::now())).collect();
    let claimed: Vec<i64> = q
        .claim_batch_for(&batch)
        .await
        .into_iter()
        .map(|c| c.unwrap().unwrap().lease.run_id)
        .collect();
    let sweeps = sweep_of(&pool, &claimed).await;
    let from_a = sweeps.iter().filter(|s| **s == a).count();
    assert_eq!((from_a, sweeps.len() - from_a), (3, 3), "{sweeps:?}");
    // Once the small sweep is drained, the large one takes every turn.
    let rest = drain(&q, &w).await;
    assert_eq!(rest.len(), 20 - 6);
    assert!(sweep_of(&pool, &rest).await.iter().all(|s| *s == a));
}

#[tokio::test]
async fn mixed_claimers_lease_every_run_exactly_once_and_only_where_it_fits() {
    let (pool, q) = setup().await;
    let (gpu_runs, _) = submit(&pool, &tiny(15, 1), "gpu = true").await;
    let (zone_runs, _) = submit(&pool, &tiny(15, 2), "labels = { zone = \"a\" }").await;
    let (any_runs, _) = submit(&pool, &tiny(15, 3), "").await;
    let kinds = [
        gpu(24),
        cpu(16),
        labelled(cpu(16), &[("zone", "a")]),
        labelled(gpu(24), &[("zone", "a")]),
    ];
    let mut workers = Vec::new();
    for i in 0..16 {
        workers.push(worker(&pool, kinds[i % kinds.len()].clone()).await);
    }
    let batches = poet_coordinator::service::Batches::spawn(&q);
    let mut tasks = Vec::new();
    for (i, w) in workers.into_iter().enumerate() {
        let (q, b) = (q.clone(), batches.clone());
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                // Half the claimers go through the batcher, half straight to the queue.
                let c = if i % 2 == 0 {
                    b.claim(w.0, w.1.clone(), Utc::now()).await.unwrap()
                } else {
                    q.claim_for(w.0, w.1.clone(), Utc::now()).await.unwrap()
                };
                match c {
                    Some(c) => got.push(c.lease.run_id),
                    None => break,
                }
            }
            (w.1, got)
        }));
    }
    let (gpu_set, zone_set): (HashSet<i64>, HashSet<i64>) = (
        gpu_runs.iter().copied().collect(),
        zone_runs.iter().copied().collect(),
    );
    let mut seen = HashSet::new();
    for t in tasks {
        let (cap, got) = t.await.unwrap();
        for r in got {
            assert!(seen.insert(r), "run {r} leased twice");
            assert!(!gpu_set.contains(&r) || cap.gpu, "GPU run {r} on {cap:?}");
            assert!(
                !zone_set.contains(&r) || cap.labels.get("zone").map(String::as_str) == Some("a"),
                "zone run {r} on {cap:?}"
            );
        }
    }
    let all: HashSet<i64> = gpu_runs
        .iter()
        .chain(&zone_runs)
        .chain(&any_runs)
        .copied()
        .collect();
    assert_eq!(seen, all, "every run leased");
}

/// What a run needs, as the claim reads it from its row.
struct Needs {
    gpu: Option<bool>,
    min_gpu_gb: i64,
    min_memory_gb: i64,
    labels: &'static [(&'static str, &'static str)],
    est_gb: i64,
}

const ANY: Needs = Needs {
    gpu: None,
    min_gpu_gb: 0,
    min_memory_gb: 0,
    labels: &[],
    est_gb: 1,
};

/// The fit rules as a table of run needs and worker capacities, each asserted against
/// `poet_run_fits` and against the claim itself (one run queued, one worker claiming), so a
/// rewrite of either for speed keeps the answers.
#[tokio::test]
async fn the_fit_rules_hold_in_the_function_and_in_the_claim() {
    let (pool, q) = setup().await;
    let (runs, _) = submit(&pool, &tiny(1, 1), "").await;
    let run = runs[0];
    let unknown = Capacity::default();
    let zone_a = &[("zone", "a")][..];
    let cases: Vec<(Needs, Capacity, bool)> = vec![
        (ANY, cpu(8), true),
        (ANY, unknown.clone(), true),
        (ANY, labelled(gpu(24), &[("zone", "b")]), true),
        (
            Needs {
                gpu: Some(true),
                ..ANY
            },
            cpu(64),
            false,
        ),
        (
            Needs {
                gpu: Some(true),
                ..ANY
            },
            gpu(8),
            true,
        ),
        (
            Needs {
                gpu: Some(false),
                ..ANY
            },
            gpu(24),
            false,
        ),
        (
            Needs {
                gpu: Some(false),
                ..ANY
            },
            cpu(8),
            true,
        ),
        (
            Needs {
                labels: zone_a,
                ..ANY
            },
            cpu(16),
            false,
        ),
        (
            Needs {
                labels: zone_a,
                ..ANY
            },
            labelled(cpu(16), zone_a),
            true,
        ),
        (
            Needs {
                labels: zone_a,
                ..ANY
            },
            labelled(cpu(16), &[("zone", "b")]),
            false,
        ),
        (
            Needs {
                labels: zone_a,
                ..ANY
            },
            labelled(gpu(24), &[("zone", "a"), ("disk", "ssd")]),
            true,
        ),
        (
            Needs {
                labels: &[("zone", "a"), ("disk", "ssd")],
                ..ANY
            },
            labelled(cpu(16), zone_a),
            false,
        ),
        (
            Needs {
                min_memory_gb: 32,
                ..ANY
            },
            cpu(16),
            false,
        ),
        (
            Needs {
                min_memory_gb: 32,
                ..ANY
            },
            cpu(64),
            true,
        ),
        (
            Needs {
                min_memory_gb: 32,
                ..ANY
            },
            unknown.clone(),
            true,
        ),
        (
            Needs {
                min_memory_gb: 32,
                ..ANY
            },
            gpu(24),
            true,
        ),
        (Needs { est_gb: 20, ..ANY }, gpu(16), false),
        (Needs { est_gb: 20, ..ANY }, gpu(24), true),
        (Needs { est_gb: 20, ..ANY }, gpu(0), true),
        (Needs { est_gb: 20, ..ANY }, cpu(16), false),
        (Needs { est_gb: 20, ..ANY }, cpu(32), true),
        (Needs { est_gb: 20, ..ANY }, unknown.clone(), true),
        (
            Needs {
                min_gpu_gb: 40,
                ..ANY
            },
            gpu(24),
            false,
        ),
        (
            Needs {
                min_gpu_gb: 40,
                ..ANY
            },
            gpu(48),
            true,
        ),
        // A GPU minimum binds GPU workers only; a CPU worker checks the estimate.
        (
            Needs {
                min_gpu_gb: 40,
                ..ANY
            },
            cpu(8),
            true,
        ),
    ];
    for (i, (needs, cap, fits)) in cases.into_iter().enumerate() {
        let labels: BTreeMap<&str, &str> = needs.labels.iter().copied().collect();
        sqlx::query(
            "update runs set state = 'queued', lease_id = null, lease_owner = null,
                 lease_expires_at = null, need_gpu = $2, min_gpu_memory_bytes = $3,
                 min_memory_bytes = $4, need_labels = $5, est_memory_bytes = $6
             where id = $1",
        )
        .bind(run)
        .bind(needs.gpu)
        .bind(needs.min_gpu_gb * GB)
        .bind(needs.min_memory_gb * GB)
        .bind(serde_json::to_value(&labels).unwrap())
        .bind(needs.est_gb * GB)
        .execute(&pool)
        .await
        .unwrap();
        let by_function: bool = sqlx::query_scalar(
            "select poet_run_fits(need_gpu, min_gpu_memory_bytes, min_memory_bytes,
                 need_labels, est_memory_bytes, $2, $3, $4, $5)
             from runs where id = $1",
        )
        .bind(run)
        .bind(cap.gpu)
        .bind(cap.gpu_memory_bytes)
        .bind(cap.memory_bytes)
        .bind(serde_json::to_value(&cap.labels).unwrap())
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(by_function, fits, "case {i}: poet_run_fits, {cap:?}");
        let w = worker(&pool, cap).await;
        let claimed = q.claim_for(w.0, w.1.clone(), Utc::now()).await.unwrap();
        assert_eq!(
            claimed.map(|c| c.lease.run_id),
            fits.then_some(run),
            "case {i}: the claim, {:?}",
            w.1
        );
    }
}

/// One claim statement serves a batch of several kinds of workers at once: every request
/// that some queued run fits gets one, no run twice, each where it fits, and a capped sweep
/// (`max_concurrent`) gets no more runs in flight across the kinds than its cap.
#[tokio::test]
async fn one_batch_of_mixed_kinds_leases_each_run_once_where_it_fits_within_a_cap() {
    let (pool, q) = setup().await;
    let (gpu_runs, _) = submit(&pool, &tiny(4, 1), "gpu = true").await;
    let (zone_runs, _) = submit(&pool, &tiny(4, 2), "labels = { zone = \"a\" }").await;
    let (any_runs, _) = submit(&pool, &tiny(6, 3), "").await;
    sqlx::query(
        "update sweeps set max_concurrent = 2 where id = (select sweep_id from runs where id = $1)",
    )
    .bind(any_runs[0])
    .execute(&pool)
    .await
    .unwrap();
    let kinds = [
        gpu(24),
        cpu(16),
        labelled(cpu(16), &[("zone", "a")]),
        cpu(8),
    ];
    let mut batch = Vec::new();
    for i in 0..8 {
        let w = worker(&pool, kinds[i % kinds.len()].clone()).await;
        batch.push((w.0, w.1, Utc::now()));
    }
    let answers = q.claim_batch_for(&batch).await;
    let (gpu_set, zone_set, any_set): (HashSet<i64>, HashSet<i64>, HashSet<i64>) = (
        gpu_runs.iter().copied().collect(),
        zone_runs.iter().copied().collect(),
        any_runs.iter().copied().collect(),
    );
    let mut seen = HashSet::new();
    for ((_, cap, _), answer) in batch.iter().zip(answers) {
        let got = answer.unwrap().map(|c| c.lease.run_id);
        if let Some(r) = got {
            assert!(seen.insert(r), "run {r} leased twice");
            assert!(!gpu_set.contains(&r) || cap.gpu, "GPU run {r} on {cap:?}");
            assert!(
                !zone_set.contains(&r) || !cap.labels.is_empty(),
                "zone run {r} on {cap:?}"
            );
        }
        // A GPU or zone=a worker has a sweep of its own with runs to spare.
        if cap.gpu || !cap.labels.is_empty() {
            assert!(got.is_some(), "{cap:?} got nothing");
        }
    }
    let in_flight = seen.iter().filter(|r| any_set.contains(r)).count();
    assert_eq!(in_flight, 2, "the capped sweep runs {in_flight} (cap 2)");
}

/// A run another transaction holds locked is passed over, not waited for and not answered
/// with "no run": the claim picks before it locks, so it claims again without the lost pick.
#[tokio::test]
async fn a_run_locked_elsewhere_is_passed_over_for_the_next() {
    let (pool, q) = setup().await;
    let (runs, _) = submit(&pool, &tiny(3, 1), "").await;
    let w = worker(&pool, cpu(16)).await;
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("select id from runs where id = $1 for update")
        .bind(runs[0])
        .execute(&mut *holder)
        .await
        .unwrap();
    let got = q.claim_for(w.0, w.1.clone(), Utc::now()).await.unwrap();
    assert_eq!(got.map(|c| c.lease.run_id), Some(runs[1]));
    // A batch the same: the two free runs, none the held one.
    let batch: Vec<_> = (0..3).map(|_| (w.0, w.1.clone(), Utc::now())).collect();
    let got: Vec<Option<i64>> = q
        .claim_batch_for(&batch)
        .await
        .into_iter()
        .map(|c| c.unwrap().map(|c| c.lease.run_id))
        .collect();
    assert_eq!(got, vec![Some(runs[2]), None, None]);
    holder.rollback().await.unwrap();
    assert_eq!(drain(&q, &w).await, vec![runs[0]]);
}

/// The first "Buffers:" figure of an `EXPLAIN (ANALYZE, BUFFERS)`: the top node's, which
/// counts every node under it.
fn buffers(plan: &str) -> u64 {
    let line = plan
        .lines()
        .find(|l| l.trim_start().starts_with("Buffers:"))
        .unwrap_or_else(|| panic!("no Buffers line in:\n{plan}"));
    line.split_whitespace()
        .filter_map(|w| w.split_once('=').map(|(_, n)| n.parse::<u64>().unwrap()))
        .sum()
}

/// A claim reads the runs it takes, not a sweep's history. Here sweep B's 5,000 finished runs
/// come before its 5,000 queued ones in every index that orders a sweep's runs by id; a claim
/// of one run reads about a hundred buffers whatever their number. Until 2026-12-07 the claim
/// found the sweeps with queued runs through such an index (`runs_by_sweep`), reading a heap
/// tuple for each finished run on the way, at every claim (in the 128-worker benchmark, 2-3 ms
/// a sweep after 15,000 claims; here, 2,449 buffers against 139).
#[tokio::test]
async fn a_claim_reads_no_finished_runs() {
    let (pool, q) = setup().await;
    let (a, _) = submit(&pool, &tiny(2, 1), "").await;
    let (b, _) = submit(&pool, &tiny(1, 2), "").await;
    sqlx::query(
        "insert into runs (sweep_id, dataset_id, config, config_hash, epochs_total)
         select r.sweep_id, r.dataset_id, r.config, md5(g::text), r.epochs_total
         from runs r, generate_series(1, 9999) g where r.id = $1",
    )
    .bind(b[0])
    .execute(&pool)
    .await
    .unwrap();
    // Statistics from while every run was queued (as a queue's are after a large submit):
    // the planner then prices a walk of any index of a sweep's runs as finding queued runs
    // at once.
    sqlx::raw_sql("analyze runs").execute(&pool).await.unwrap();
    // Sweep B's first 5,000 runs finished; its other 5,000 and sweep A's 2 queued.
    sqlx::query(
        "update runs set state = 'succeeded', finished_at = now()
         where sweep_id = (select sweep_id from runs where id = $1) and id < $1 + 5000",
    )
    .bind(b[0])
    .execute(&pool)
    .await
    .unwrap();
    let w = worker(&pool, cpu(16)).await;
    // The first claim after the update steps over the finished runs' old versions in the
    // queue's index once, and marks them dead there; vacuum would remove them.
    q.explain_claim(&[(w.0, w.1.clone(), Utc::now())])
        .await
        .unwrap();
    let plan = q
        .explain_claim(&[(w.0, w.1.clone(), Utc::now())])
        .await
        .unwrap();
    assert!(
        plan.lines()
            .any(|l| l.contains("Update on runs") && l.contains("rows=1 loops=1")),
        "the claim took no run:\n{plan}"
    );
    let read = buffers(&plan);
    assert!(
        read < 400,
        "a claim of one run read {read} buffers:\n{plan}"
    );
    // Explained, not leased: the claim was rolled back.
    let running: i64 = sqlx::query_scalar("select count(*) from runs where state = 'running'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(running, 0);
    // Claimed for real: queued runs only, the two sweeps in turn.
    let batch: Vec<_> = (0..4).map(|_| (w.0, w.1.clone(), Utc::now())).collect();
    let got: Vec<i64> = q
        .claim_batch_for(&batch)
        .await
        .into_iter()
        .map(|c| c.unwrap().expect("a run").lease.run_id)
        .collect();
    assert_eq!(
        got.iter().filter(|id| a.contains(id)).count(),
        2,
        "claimed {got:?}, sweep A {a:?}"
    );
    assert!(
        got.iter().all(|id| a.contains(id) || *id >= b[0] + 5000),
        "claimed a finished run: {got:?}"
    );
}

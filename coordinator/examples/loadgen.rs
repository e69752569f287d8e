//! Coordinator load benchmark (a documented command, not a test):
//!
//! ```text
//! ./poet.sh bench-coordinator            # or:
//! cargo run --release -p poet-coordinator --example loadgen -- [--seconds 8] [--concurrency 1,16,128]
//!     [--epochs 1,3] [--db-pool N] [--no-history | --only-history]
//! ```
//!
//! Simulated workers (no training) run `LeaseRun → ReportEpoch × N → CompleteRun` cycles over
//! real gRPC against a real coordinator and Postgres, at several concurrencies; beside them, in
//! the same run, the bare SQL loop (the same claim / epoch insert / complete statements with no
//! gRPC and no coordinator) on the same database. Then the history queries at 10,000 runs and
//! 1,000,000 epoch rows, and `ListRuns` filters (issue 19) on the same rows: on indexed fields
//! (reference p99 < 50 ms; tags count as indexed) and on any config or metrics key (< 200 ms),
//! then the `EXPLAIN (ANALYZE)` plans of the tag filters and of `ListSweeps`. Prints each
//! figure beside its reference.
//!
//! A mixed fleet (issue 20) is one more level at the highest concurrency: four kinds of
//! workers (GPU 24 GB zone=a, GPU 16 GB, CPU 16 GB zone=a, CPU 8 GB) over four sweeps of equal
//! priority (GPU-only, zone=a only, a 2 GB estimate, a 0.5 GB one), so every claim goes
//! through the resource check, the kinds' picks in the one claim statement and the sweeps'
//! turns. Reference: ≥ 2,000 cycles/s at 128 workers, and within 10 % of the plain level of
//! the same run (its `ratio` column is to that level, not to bare SQL). `--no-mixed` skips it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use poet_coordinator::CoordinatorConfig;
use poet_proto::v1;
use poet_proto::v1::worker_service_client::WorkerServiceClient;
use sqlx::PgPool;
use tokio::sync::Mutex;

struct Args {
    seconds: f64,
    concurrency: Vec<usize>,
    epochs: Vec<i32>,
    history: bool,
    /// Skip the load levels (history and filter queries only).
    load: bool,
    /// Run the mixed-fleet level.
    mixed: bool,
    db_pool: u32,
}

fn parse_args() -> Args {
    let mut a = Args {
        seconds: 8.0,
        concurrency: vec![1, 16, 128],
        epochs: vec![1, 3],
        history: true,
        load: true,
        mixed: true,
        db_pool: CoordinatorConfig::default().db_pool,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let v = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--seconds" => a.seconds = v.parse().expect("--seconds N"),
            "--concurrency" => {
                a.concurrency = v
                    .split(',')
                    .map(|x| x.parse().expect("list of numbers"))
                    .collect()
            }
            "--epochs" => {
                a.epochs = v
                    .split(',')
                    .map(|x| x.parse().expect("list of numbers"))
                    .collect()
            }
            "--db-pool" => a.db_pool = v.parse().expect("--db-pool N"),
            "--no-history" => {
                a.history = false;
                i += 1;
                continue;
            }
            "--no-mixed" => {
                a.mixed = false;
                i += 1;
                continue;
            }
            "--only-history" => {
                a.load = false;
                i += 1;
                continue;
            }
            other => panic!("unknown flag {other}"),
        }
        i += 2;
    }
    a
}

/// `n` queued runs of `epochs` epochs: all in sweep 1, or with `mixed` spread over sweeps
/// 1..=4 with the mixed fleet's requirements (GPU only; zone=a only; a 2 GB estimate; 0.5 GB).
/// Inserted as they are: an update after the insert (this bench's way until 2026-12-07) left
/// every row a dead version and every index a second entry per row, which the plain level's
/// table did not carry and which every claim and completion then paid for.
async fn seed_runs(pool: &PgPool, n: i64, epochs: i32, mixed: bool) {
    sqlx::query(
        "truncate epochs, run_attempts, checkpoints, sweep_runs, runs restart identity cascade",
    )
    .execute(pool)
    .await
    .unwrap();
    let epochs_total = epochs.max(1);
    sqlx::query(
        "insert into runs (sweep_id, dataset_id, config, config_hash, epochs_total,
             need_gpu, need_labels, est_memory_bytes)
         select case when $3 then 1 + g % 4 else 1 end, 1, '{}'::jsonb, md5(g::text || random()::text), $2,
             case when $3 and g % 4 = 0 then true end,
             case when $3 and g % 4 = 1 then '{\"zone\": \"a\"}'::jsonb else '{}' end,
             case when $3 and g % 4 = 2 then 2000000000 when $3 then 500000000 else 0 end
         from generate_series(1, $1) g",
    )
    .bind(n)
    .bind(epochs_total)
    .bind(mixed)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("analyze runs").execute(pool).await.unwrap();
}

/// The mixed fleet's worker `i`: GPU 24 GB zone=a, GPU 16 GB, CPU 16 GB zone=a, CPU 8 GB.
fn mixed_worker(i: usize) -> v1::RegisterRequest {
    let gb = 1_000_000_000i64;
    let (device, gpu_memory_bytes, memory_bytes, zone) = match i % 4 {
        0 => ("cuda:0", 24 * gb, 64 * gb, true),
        1 => ("cuda:0", 16 * gb, 64 * gb, false),
        2 => ("cpu", 0, 16 * gb, true),
        _ => ("cpu", 0, 8 * gb, false),
    };
    v1::RegisterRequest {
        host: format!("sim-{i}"),
        device: device.into(),
        gpu_memory_bytes,
        memory_bytes,
        labels: if zone {
            [("zone".to_string(), "a".to_string())].into()
        } else {
            Default::default()
        },
        ..Default::default()
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

struct Outcome {
    cycles_per_s: f64,
    report_p50_ms: f64,
    report_p99_ms: f64,
}

async fn grpc_level(
    addr: &str,
    pool: &PgPool,
    concurrency: usize,
    epochs: i32,
    seconds: f64,
    mixed: bool,
) -> Outcome {
    seed_runs(pool, 200_000, epochs, mixed).await;
    let channel = tonic::transport::Endpoint::from_shared(addr.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let cycles = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));
    let mut tasks = Vec::new();
    for i in 0..concurrency {
        let mut w = WorkerServiceClient::new(channel.clone());
        let (stop, cycles, latencies) = (stop.clone(), cycles.clone(), latencies.clone());
        tasks.push(tokio::spawn(async move {
            let me = w
                .register(if mixed {
                    mixed_worker(i)
                } else {
                    v1::RegisterRequest {
                        host: format!("sim-{i}"),
                        device: "cpu".into(),
                        ..Default::default()
                    }
                })
                .await
                .unwrap()
                .into_inner();
            let mut mine = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let lease = w
                    .lease_run(v1::LeaseRunRequest {
                        worker_id: me.worker_id,
                        wait_ms: 0,
                        worker_secret: me.worker_secret.clone(),
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .lease;
                let Some(lease) = lease else { break };
                let l = lease.lease.unwrap();
                for e in 1..=epochs {
                    let t = Instant::now();
                    w.report_epoch(v1::ReportEpochRequest {
                        lease: Some(l.clone()),
                        epoch: Some(v1::Epoch {
                            epoch: e,
                            train_loss: 1.0,
                            val_loss: 1.1,
                            duration_s: 1.0,
                            chars_per_sec: 1.0,
                            ..Default::default()
                        }),
                    })
                    .await
                    .unwrap();
                    mine.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                w.complete_run(v1::CompleteRunRequest { lease: Some(l) })
                    .await
                    .unwrap();
                cycles.fetch_add(1, Ordering::Relaxed);
            }
            latencies.lock().await.extend(mine);
        }));
    }
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let n = cycles.load(Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    for t in tasks {
        t.await.unwrap();
    }
    let mut l = latencies.lock().await.clone();
    l.sort_by(f64::total_cmp);
    Outcome {
        cycles_per_s: n as f64 / elapsed,
        report_p50_ms: pct(&l, 0.5),
        report_p99_ms: pct(&l, 0.99),
    }
}

/// The same work in bare SQL: claim (one CTE), epoch inserts, complete; one transaction each.
async fn sql_level(pool: &PgPool, concurrency: usize, epochs: i32, seconds: f64) -> f64 {
    seed_runs(pool, 200_000, epochs, false).await;
    let worker: i64 = sqlx::query_scalar(
        "insert into workers (host, device) values ('bare', 'cpu') returning id",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let cycles = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (pool, stop, cycles) = (pool.clone(), stop.clone(), cycles.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                // The first queued run of the lowest sweep (the seeded runs are one sweep's),
                // through runs_queued_by_sweep: the queue's one index of queued runs.
                let id: Option<i64> = sqlx::query_scalar(
                    "with next as (select id from runs where state = 'queued' order by sweep_id, priority desc, id limit 1 for update skip locked)
                     update runs r set state = 'running', attempt = r.attempt + 1, lease_id = gen_random_uuid(), lease_owner = $1,
                        lease_expires_at = now() + interval '30 s', started_at = now()
                     from next where r.id = next.id returning r.id",
                )
                .bind(worker)
                .fetch_optional(&pool)
                .await
                .unwrap();
                let Some(id) = id else { break };
                for e in 1..=epochs.max(1) {
                    sqlx::query("insert into epochs (run_id, epoch, attempt, train_loss, val_loss, duration_s, chars_per_sec) values ($1, $2, 1, 1, 1.1, 1, 1)")
                        .bind(id)
                        .bind(e)
                        .execute(&pool)
                        .await
                        .unwrap();
                }
                sqlx::query(
                    "update runs set state = 'succeeded', lease_id = null, lease_owner = null, lease_expires_at = null, finished_at = now(), epochs_done = epochs_total where id = $1",
                )
                .bind(id)
                .execute(&pool)
                .await
                .unwrap();
                cycles.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let n = cycles.load(Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    for t in tasks {
        t.await.unwrap();
    }
    n as f64 / elapsed
}

async fn history(addr: &str, pool: &PgPool) {
    println!("\nhistory queries at 10,000 runs and 1,000,000 epoch rows");
    sqlx::query(
        "truncate epochs, run_attempts, checkpoints, sweep_runs, runs restart identity cascade",
    )
    .execute(pool)
    .await
    .unwrap();
    let t = Instant::now();
    // Run r's epoch e: val loss 1 + (r % 997) / 1000 + 1 / e, so its summaries (the same
    // formulas at e = 100) are written directly instead of aggregated from the epochs. Every
    // tenth run failed; configs vary over six keys.
    sqlx::query(
        "insert into runs (sweep_id, dataset_id, config, config_hash, epochs_total, state, epochs_done,
             best_val_loss, best_epoch, last_val_loss, last_train_loss, total_duration_s, last_chars_per_sec,
             last_metrics, started_at, finished_at)
         select 1 + (g % 10), 1,
             jsonb_build_object('layers', 1 + g % 3, 'units', 64 * (1 + g % 4),
                 'formulation', case when g % 2 = 0 then 'seq' else 'keras' end, 'dropout', (g % 5) * 0.1,
                 'learning_rate', 0.0005 * (1 + g % 4), 'seed', g),
             md5(g::text), 100, case when g % 10 = 0 then 'failed' else 'succeeded' end, 100,
             1.01 + (g % 997) / 1000.0, 100, 1.01 + (g % 997) / 1000.0, 0.96 + (g % 997) / 1000.0,
             100 * (0.5 + (g % 7) * 0.1), 900 + g % 200,
             jsonb_build_object('val_bpc', (1.01 + (g % 997) / 1000.0) * 1.4427),
             now() - interval '1 day', now()
         from generate_series(1, 10000) g",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("insert into sweep_runs (sweep_id, run_id) select sweep_id, id from runs")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query(
        "insert into epochs (run_id, epoch, attempt, train_loss, val_loss, duration_s, chars_per_sec, metrics)
         select r, e, 1, 0.95 + (r % 997) / 1000.0 + 1.0 / e, 1 + (r % 997) / 1000.0 + 1.0 / e,
             0.5 + (r % 7) * 0.1, 900 + r % 200,
             jsonb_build_object('val_bpc', (1 + (r % 997) / 1000.0 + 1.0 / e) * 1.4427)
         from generate_series(1, 10000) r, generate_series(1, 100) e",
    )
    .execute(pool)
    .await
    .unwrap();
    // Tags: `baseline` on 1 run in 100, `keep` on 1 in 50, `noisy` on 1 in 3 (so a rare tag
    // and a common one, as a team tags its runs).
    sqlx::query(
        "insert into run_tags (run_id, tag, author)
         select g, 'baseline', 'bench' from generate_series(1, 10000) g where g % 100 = 0
         union all select g, 'keep', 'bench' from generate_series(1, 10000) g where g % 50 = 7
         union all select g, 'noisy', 'bench' from generate_series(1, 10000) g where g % 3 = 1",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("analyze").execute(pool).await.unwrap();
    println!("  seeded in {:.1} s", t.elapsed().as_secs_f64());
    let mut c = v1::poet_client::PoetClient::connect(addr.to_string())
        .await
        .unwrap()
        .max_decoding_message_size(64 << 20);
    let time = |name: &'static str| (name, Vec::<f64>::new());
    let mut rows = vec![
        time("ListRuns best_val_loss, 50"),
        time("ListRuns sweep+filter"),
        time("GetRun (100 epochs)"),
        time("GetSweep (1,000 runs)"),
        time("ListSweeps"),
    ];
    for i in 0..50i64 {
        let t = Instant::now();
        c.list_runs(v1::ListRunsRequest {
            order_by: "best_val_loss".into(),
            page_size: 50,
            ..Default::default()
        })
        .await
        .unwrap();
        rows[0].1.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        let mut f = std::collections::HashMap::new();
        f.insert("layers".to_string(), "2".to_string());
        c.list_runs(v1::ListRunsRequest {
            sweep_id: 1 + i % 10,
            config: f,
            page_size: 50,
            ..Default::default()
        })
        .await
        .unwrap();
        rows[1].1.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        c.get_run(v1::GetRunRequest { run_id: 1 + i * 97 })
            .await
            .unwrap();
        rows[2].1.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        c.get_sweep(v1::GetSweepRequest {
            sweep_id: 1 + i % 10,
        })
        .await
        .unwrap();
        rows[3].1.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        c.list_sweeps(v1::ListSweepsRequest::default())
            .await
            .unwrap();
        rows[4].1.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "  {:<28} {:>9} {:>9}   reference",
        "query", "p50 ms", "p99 ms"
    );
    for (name, mut l) in rows {
        l.sort_by(f64::total_cmp);
        println!(
            "  {:<28} {:>9.2} {:>9.2}   < 50 ms",
            name,
            pct(&l, 0.5),
            pct(&l, 0.99)
        );
    }
    filters(&mut c).await;
    explain_tags(pool).await;
    explain_list_sweeps(pool).await;
}

/// `ListRuns` with filters and orders (issue 19), 50 runs a page, on the rows `history`
/// seeded: 50 calls each.
async fn filters(c: &mut v1::poet_client::PoetClient<tonic::transport::Channel>) {
    let req = |filter: &str, order: &str| v1::ListRunsRequest {
        filter: filter.into(),
        order_by: order.into(),
        page_size: 50,
        ..Default::default()
    };
    // The second page of a long listing: keyset, so as fast as the first.
    let mut second = req("state = 'succeeded'", "best_val_loss");
    second.page_token = c
        .list_runs(second.clone())
        .await
        .unwrap()
        .into_inner()
        .next_page_token;
    assert!(!second.page_token.is_empty());
    let indexed = 50.0;
    let any_key = 200.0;
    let queries = [
        (
            "state = 'failed' and best_val_loss < 1.3",
            "best_val_loss",
            indexed,
            None,
        ),
        (
            "layers = 2 and formulation = 'seq'",
            "created",
            indexed,
            None,
        ),
        (
            "sweep = 3 and best_val_loss < 1.5",
            "-best_val_loss",
            indexed,
            None,
        ),
        (
            "state = 'succeeded' (page 2)",
            "best_val_loss",
            indexed,
            Some(second),
        ),
        (
            "units >= 128 and dropout < 0.25",
            "-config.units",
            any_key,
            None,
        ),
        (
            "learning_rate > 0.001 or not formulation = 'seq'",
            "learning_rate",
            any_key,
            None,
        ),
        ("metrics.val_bpc < 1.6", "-metrics.val_bpc", any_key, None),
        (
            "duration_s > 60 and chars_per_sec >= 1000",
            "-duration_s",
            any_key,
            None,
        ),
        (
            "last_val_loss >= 1.5 and created_at > '2000-01-01'",
            "last_val_loss",
            any_key,
            None,
        ),
        // Tags (`run_tags`, an index on (tag, run_id)): a rare one, a list, a common one
        // with a range.
        ("tag = 'baseline'", "best_val_loss", indexed, None),
        ("tags in ('baseline', 'keep')", "-created_at", indexed, None),
        (
            "tag = 'noisy' and best_val_loss < 1.2",
            "best_val_loss",
            indexed,
            None,
        ),
    ];
    println!("\nListRuns filters (issue 19), 50 a page, same rows");
    println!(
        "  {:<50} {:<17} {:>7} {:>7}   reference",
        "filter", "order", "p50 ms", "p99 ms"
    );
    for (filter, order, reference, prepared) in queries {
        let r = prepared.unwrap_or_else(|| req(filter, order));
        let mut l = Vec::new();
        let mut n = 0;
        for _ in 0..50 {
            let t = Instant::now();
            n = c
                .list_runs(r.clone())
                .await
                .unwrap()
                .into_inner()
                .runs
                .len();
            l.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        assert!(n > 0, "{filter}: no rows");
        l.sort_by(f64::total_cmp);
        println!(
            "  {:<50} {:<17} {:>7.2} {:>7.2}   < {reference} ms",
            filter,
            order,
            pct(&l, 0.5),
            pct(&l, 0.99)
        );
    }
}

/// The plans Postgres picks for the tag filters, as `ListRuns` sends them (the same compiled
/// filter, order and limit), run with `EXPLAIN (ANALYZE)` on the seeded rows: the plan's node
/// lines, to show which index serves the filter.
async fn explain_tags(pool: &PgPool) {
    use poet_core::filter::{Filter, Order, Param, compile};
    println!("\nEXPLAIN (ANALYZE) of the tag filters, 51 rows (a page of 50 and one more)");
    for (filter, order) in [
        ("tag = 'baseline'", "best_val_loss"),
        ("tags in ('baseline', 'keep')", "-created_at"),
    ] {
        let f = Filter::parse(filter).unwrap();
        let o = Order::parse(order).unwrap();
        let mut c = compile(&f, &o, None);
        let limit = c.params.push(Param::Int(51));
        let sql = format!(
            "explain (analyze, costs off, summary on) select r.*, {} as sort_key from runs r where {} order by {} limit {limit}",
            c.sort_key, c.where_sql, c.order_sql
        );
        let q = sqlx::query_scalar_with::<_, String, _>(
            &sql,
            poet_coordinator::history::arguments(c.params.into_vec()),
        );
        println!("  {filter}  (order {order})");
        for line in q.fetch_all(pool).await.unwrap() {
            println!("    {line}");
        }
    }
}

/// The plan of `ListSweeps`'s one statement ([`poet_coordinator::history::SWEEP_SELECT`], the
/// first page of 50 and one more) on the seeded rows: where its time goes.
async fn explain_list_sweeps(pool: &PgPool) {
    println!("\nEXPLAIN (ANALYZE) of ListSweeps (10 sweeps of 1,000 runs)");
    let sql = format!(
        "explain (analyze, costs off, summary on) {}",
        poet_coordinator::history::SWEEP_SELECT
    );
    let q = sqlx::query_scalar::<_, String>(&sql)
        .bind(None::<i64>)
        .bind(51i64)
        .bind(0i64);
    for line in q.fetch_all(pool).await.unwrap() {
        println!("    {line}");
    }
}

/// Where a mixed claim's time goes: `Queue::explain_claim` of 32 requests (8 of each kind of
/// the mixed fleet, registered over gRPC like the simulated workers) on what the mixed level
/// left queued, rolled back. One line per CTE: when its last row was out (ms, cumulative
/// within the statement) and its rows.
async fn explain_mixed_claim(addr: &str, pool: &PgPool) {
    let queue = poet_coordinator::queue::Queue::new(pool.clone(), Duration::from_secs(30));
    let mut w = WorkerServiceClient::connect(addr.to_string())
        .await
        .unwrap();
    let mut reqs = Vec::new();
    for kind in 0..4 {
        let id = w
            .register(mixed_worker(kind))
            .await
            .unwrap()
            .into_inner()
            .worker_id;
        // Read back from its row, as a replica that did not take the Register does.
        let cap = queue.capacity(id).await.unwrap();
        reqs.extend((0..8).map(|_| (id, cap.clone(), chrono::Utc::now())));
    }
    let plan = queue.explain_claim(&reqs).await.unwrap();
    println!("\nEXPLAIN (ANALYZE, BUFFERS) of a mixed claim of 32 (4 kinds x 8), rolled back");
    let lines: Vec<&str> = plan.lines().collect();
    let mut ctes = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim_start();
        if let Some(name) = t.strip_prefix("CTE ") {
            let next = lines.get(i + 1).copied().unwrap_or_default();
            let at = next
                .split("actual time=")
                .nth(1)
                .and_then(|a| a.split_once(' '))
                .map(|(times, rest)| {
                    let end = times.split("..").nth(1).unwrap_or(times);
                    let rows = rest.split_whitespace().next().unwrap_or("");
                    format!("{name} {end} ({rows})")
                });
            ctes.push(at.unwrap_or_else(|| name.to_string()));
        } else if t.starts_with("Execution Time") || t.starts_with("Planning Time") {
            println!("    {t}");
        }
    }
    if let Some(b) = lines
        .iter()
        .find(|l| l.trim_start().starts_with("Buffers:"))
    {
        println!("    {}", b.trim_start());
    }
    println!("    {}", ctes.join(", "));
    queue.close().await;
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let db = poet_sql::testing::fresh_db().await;
    // Sweep 1..10 and dataset 1 for the seeded rows.
    sqlx::query(
        "insert into datasets (name, version, content_hash, params_hash, params, counts, poems, chars, vocab, shards, validation_shards, state)
         values ('bench', 1, 'h', 'p', '{}', '{}', 0, 0, '', 1, '{0}', 'ready')",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query("insert into sweeps (name, dataset_id, spec, spec_format) select 'bench-' || g, 1, '', 'toml' from generate_series(1, 10) g")
        .execute(&db.pool)
        .await
        .unwrap();
    let artifacts = tempfile::tempdir().unwrap();
    let cfg = CoordinatorConfig {
        database_url: Some(db.url.clone()),
        artifacts: Some(artifacts.path().display().to_string()),
        db_pool: args.db_pool,
        reaper_interval_s: 5.0,
        ..Default::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(poet_coordinator::run(cfg, listener, std::future::pending()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let bare = sqlx::postgres::PgPoolOptions::new()
        .max_connections(64)
        .connect(&db.url)
        .await
        .unwrap();

    println!(
        "coordinator load: {} s per level, {} cores",
        args.seconds,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!(
        "{:>7} {:>6} {:>14} {:>14} {:>7} {:>10} {:>10}   targets",
        "epochs", "conc", "grpc cycles/s", "bare SQL c/s", "ratio", "rep p50 ms", "rep p99 ms"
    );
    let levels: &[i32] = if args.load { &args.epochs } else { &[] };
    let top = args.concurrency.iter().copied().max().unwrap_or(128);
    // The plain level at the top concurrency, per epochs: the mixed fleet's reference.
    let mut plain_top = std::collections::HashMap::new();
    for &epochs in levels {
        for &c in &args.concurrency {
            let g = grpc_level(&addr, &db.pool, c, epochs, args.seconds, false).await;
            if c == top {
                plain_top.insert(epochs, g.cycles_per_s);
            }
            let s = sql_level(&bare, c, epochs, args.seconds).await;
            println!(
                "{:>7} {:>6} {:>14.0} {:>14.0} {:>7.2} {:>10.2} {:>10.2}   >= 2000 c/s, ratio >= 0.5, p99 < 50 ms at 128",
                epochs,
                c,
                g.cycles_per_s,
                s,
                g.cycles_per_s / s,
                g.report_p50_ms,
                g.report_p99_ms
            );
        }
    }
    let mixed: &[i32] = if args.load && args.mixed {
        &args.epochs
    } else {
        &[]
    };
    for &epochs in mixed {
        let g = grpc_level(&addr, &db.pool, top, epochs, args.seconds, true).await;
        // Its ratio is to the plain gRPC level above (same epochs and workers), not to bare SQL.
        let ratio = plain_top
            .get(&epochs)
            .map_or("-".to_string(), |p| format!("{:.2}", g.cycles_per_s / p));
        println!(
            "{:>7} {:>6} {:>14.0} {:>14} {:>7} {:>10.2} {:>10.2}   mixed fleet (4 kinds, 4 sweeps; ratio to plain): >= 2000 c/s at 128, ratio >= 0.9",
            epochs, top, g.cycles_per_s, "-", ratio, g.report_p50_ms, g.report_p99_ms
        );
    }
    if !mixed.is_empty() {
        explain_mixed_claim(&addr, &db.pool).await;
    }
    if args.history {
        history(&addr, &db.pool).await;
    }
    // A million epoch rows: do not leave them on the test cluster.
    db.pool.close().await;
    poet_sql::testing::drop_db(&db.name).await;
}

//! End to end with every real part: Postgres, a coordinator serving gRPC on a socket, real
//! `poet-worker` processes training with libtorch on the CPU, and the `poet` binary (which has
//! no libtorch) asking for poems.
//!
//! Needs `poet-worker` built beside `poet` (`./poet.sh test` builds both) or POET_WORKER_BIN.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use poet_coordinator::CoordinatorConfig;
use poet_coordinator::testing::{Client, TestCoordinator};
use poet_proto::v1;

fn worker_bin() -> PathBuf {
    let p = std::env::var_os("POET_WORKER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_BIN_EXE_poet"))
                .parent()
                .expect("bin dir")
                .join("poet-worker")
        });
    assert!(
        p.is_file(),
        "{} is missing: build it first (`./poet.sh test` does; or `cargo build -p poet-worker` with libtorch), or set POET_WORKER_BIN",
        p.display()
    );
    p
}

struct Stack {
    coordinator: TestCoordinator,
    cache: tempfile::TempDir,
    workers: Vec<Child>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        for w in &mut self.workers {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

impl Stack {
    fn spawn_worker(&mut self) -> usize {
        let log = std::fs::File::create(
            self.cache
                .path()
                .join(format!("worker-{}.log", self.workers.len())),
        )
        .unwrap();
        let child = Command::new(worker_bin())
            .args([
                "--device",
                "cpu",
                "--threads",
                "1",
                "run",
                "--coordinator",
                &self.coordinator.url(),
                "--cache-dir",
            ])
            .arg(self.cache.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn poet-worker");
        self.workers.push(child);
        self.workers.len() - 1
    }

    fn client(&self) -> Client {
        self.coordinator.client()
    }

    async fn wait_until(&self, what: &str, timeout: Duration, sql: &str) {
        let t = Instant::now();
        loop {
            let ok: bool = sqlx::query_scalar(sql)
                .fetch_one(&self.coordinator.db.pool)
                .await
                .unwrap();
            if ok {
                return;
            }
            if t.elapsed() > timeout {
                let logs: String = (0..self.workers.len())
                    .map(|i| {
                        std::fs::read_to_string(self.cache.path().join(format!("worker-{i}.log")))
                            .unwrap_or_default()
                    })
                    .collect::<Vec<_>>()
                    .join("\n---\n");
                panic!(
                    "timed out waiting for {what}; worker logs:\n{}",
                    &logs[logs.len().saturating_sub(4000)..]
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

const CORPUS: &[&str] = &[
    "the kettle hums a tune of steam\nthe window holds a winter dream\nand on the sill the sparrows wait\nfor crumbs beside the garden gate",
    "a train goes by at half past nine\nits windows lit along the line\nand every face a little moon\nthat sets behind the hill too soon",
    "my father mended boots at night\nbeneath a single yellow light\nthe hammer tapped a patient beat\nfor roads he walked on other feet",
    "the sea came in and took the sand\nand gave it back to other land\nthe gulls kept count of what was lost\nand never said what all it cost",
    "in april rain the lilacs lean\ntoward the grass so newly green\nthe blackbird sings from the wet wall\nas if it owned the sky and all",
    "the city sleeps in sodium light\nthe buses hum into the night\na baker starts his ovens slow\nwhile streets are quiet down below",
];

async fn stack(lease_ttl: f64) -> Stack {
    let cfg = CoordinatorConfig {
        lease_ttl_s: lease_ttl,
        heartbeat_interval_s: lease_ttl / 4.0,
        reaper_interval_s: 0.3,
        ..Default::default()
    };
    let coordinator = TestCoordinator::start(cfg, None).await;
    let db = &coordinator.db;
    let id: i64 = sqlx::query_scalar(
        "insert into datasets (name, version, content_hash, params_hash, params, counts, poems, chars, vocab, shards, validation_shards, state)
         values ('tiny', 1, 'tiny-hash', 'p', '{}', '{}', $1, 0, '', 6, '{0}', 'ready') returning id",
    )
    .bind(CORPUS.len() as i64)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    sqlx::query("select poems_partition($1)")
        .bind(id)
        .execute(&db.pool)
        .await
        .unwrap();
    for (i, p) in CORPUS.iter().enumerate() {
        sqlx::query("insert into poems (dataset_id, shard, source_id, dedupe_key, text) values ($1, $2, $3, $4, $5)")
            .bind(id)
            .bind(i as i32)
            .bind(format!("s{i}"))
            .bind(format!("k{i}"))
            .bind(format!("++++\n{p}\n"))
            .execute(&db.pool)
            .await
            .unwrap();
    }
    Stack {
        coordinator,
        cache: tempfile::tempdir().unwrap(),
        workers: vec![],
    }
}

fn spec(grid: &str, epochs: u32) -> String {
    format!(
        "dataset = \"tiny\"\n[base]\nunits = 16\nseq_len = 24\nbatch_size = 8\nlearning_rate = 0.01\nepochs = {epochs}\nformulation = \"seq\"\nseed = 3\n[grid]\n{grid}\n"
    )
}

fn blobs(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(blobs(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_train_a_sweep_and_poet_generates_without_libtorch() {
    let mut s = stack(10.0).await;
    // Both workers are waiting before the runs exist, so a fast one cannot take both runs.
    s.spawn_worker();
    s.spawn_worker();
    s.wait_until(
        "both workers to register",
        Duration::from_secs(120),
        "select count(*) = 2 from workers",
    )
    .await;
    s.client()
        .submit_sweep(v1::SubmitSweepRequest {
            spec: spec("layers = [1, 2]", 3),
            ..Default::default()
        })
        .await
        .unwrap();
    s.wait_until(
        "both runs to succeed",
        Duration::from_secs(240),
        "select count(*) = 2 from runs where state = 'succeeded'",
    )
    .await;

    // Every epoch reported once, in order, by one attempt; a checkpoint stored for each.
    let rows: Vec<(i64, i32, i32)> =
        sqlx::query_as("select run_id, epoch, attempt from epochs order by run_id, epoch")
            .fetch_all(&s.coordinator.db.pool)
            .await
            .unwrap();
    assert_eq!(
        rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        vec![1, 2, 3, 1, 2, 3]
    );
    let ckpts: i64 = sqlx::query_scalar("select count(*) from checkpoints")
        .fetch_one(&s.coordinator.db.pool)
        .await
        .unwrap();
    assert_eq!(ckpts, 6, "a checkpoint per epoch");
    let live: Vec<String> = sqlx::query_scalar("select key from checkpoints where live")
        .fetch_all(&s.coordinator.db.pool)
        .await
        .unwrap();
    let on_disk = blobs(s.coordinator.artifacts.path());
    for k in &live {
        assert!(
            on_disk.iter().any(|p| p.ends_with(k)),
            "live checkpoint {k} has no blob"
        );
    }
    let workers_used: i64 =
        sqlx::query_scalar("select count(distinct worker_id) from run_attempts")
            .fetch_one(&s.coordinator.db.pool)
            .await
            .unwrap();
    assert_eq!(workers_used, 2, "both workers trained");
    let losses: Vec<f64> =
        sqlx::query_scalar("select train_loss from epochs where run_id = 1 order by epoch")
            .fetch_all(&s.coordinator.db.pool)
            .await
            .unwrap();
    assert!(
        losses[2] < losses[0],
        "training lowers the loss: {losses:?}"
    );

    // `poet` (no libtorch) asks; a worker samples; the coordinator judges and stores.
    let addr = s.coordinator.url();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_poet"))
            .args([
                "generate",
                "--run",
                "1",
                "--temperature",
                "0,0.8",
                "--chars",
                "200",
                "--seed",
                "5",
                "--json",
                "--wait",
                "120",
            ])
            .env("POET_COORDINATOR", addr)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let g: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(g["state"], "done");
    assert!(!g["poems"].as_array().unwrap().is_empty(), "{g}");
    assert!(g["poems"][0]["report"]["ngrams"].is_number(), "{g}");
    assert!(g["overall"]["shared_fraction"].is_number());
    let stored: i64 = sqlx::query_scalar("select count(*) from generated_poems")
        .fetch_one(&s.coordinator.db.pool)
        .await
        .unwrap();
    assert_eq!(stored as usize, g["poems"].as_array().unwrap().len());

    // Its quality report: the stored poems measured against the stored corpus, beside the
    // corpus's own figures (also kept on the dataset row), the 4-gram figures the overall
    // report's.
    let pool = &s.coordinator.db.pool;
    let poems: Vec<String> = sqlx::query_scalar(
        "select text from generated_poems where generation_id = $1 order by idx",
    )
    .bind(g["id"].as_i64().unwrap())
    .fetch_all(pool)
    .await
    .unwrap();
    let dataset: i64 = sqlx::query_scalar("select dataset_id from runs where id = 1")
        .fetch_one(pool)
        .await
        .unwrap();
    let corpus = poet_coordinator::datasets::text(pool, dataset)
        .await
        .unwrap();
    let (figures, words) = poet_core::quality::corpus_figures(&corpus);
    let refs: Vec<&str> = poems.iter().map(String::as_str).collect();
    let want = poet_core::quality::Report {
        generated: poet_core::quality::measure(&refs, &words),
        corpus: figures.clone(),
        shared_4grams: g["overall"]["shared_fraction"].as_f64().unwrap(),
        longest_copied_run: g["overall"]["longest_copied_run"].as_u64().unwrap() as usize,
    };
    let q = &g["quality"];
    let close = |a: &serde_json::Value, b: f64| (a.as_f64().unwrap() - b).abs() < 1e-9;
    for (side, f) in [("generated", &want.generated), ("corpus", &want.corpus)] {
        let got = &q[side];
        assert_eq!(got["words"].as_u64(), Some(f.words as u64), "{side} {q}");
        assert!(
            close(&got["real_word_share"], f.real_word_share),
            "{side} {q}"
        );
        assert_eq!(
            got["lines"].as_u64(),
            Some(f.shape.lines as u64),
            "{side} {q}"
        );
        assert!(
            close(&got["mean_line_chars"], f.shape.mean_line_chars),
            "{side} {q}"
        );
        assert!(
            close(&got["lines_per_stanza"], f.shape.lines_per_stanza),
            "{side} {q}"
        );
        assert!(
            close(&got["stanzas_per_poem"], f.shape.stanzas_per_poem),
            "{side} {q}"
        );
        assert_eq!(
            got["repeated_lines"].as_u64(),
            Some(f.shape.repeated_lines as u64)
        );
    }
    assert!(
        want.generated.words > 0 && want.corpus.shape.lines > 0,
        "{q}"
    );
    assert_eq!(q["corpus"]["real_word_share"], 1.0);
    assert!(close(&q["shared_4grams"], want.shared_4grams));
    let on_row: serde_json::Value =
        sqlx::query_scalar("select quality from datasets where id = $1")
            .bind(dataset)
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(on_row, serde_json::to_value(&figures).unwrap());

    // `poet poems show` prints the same figures in its table, generated beside corpus.
    let addr = s.coordinator.url();
    let id = g["id"].to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_poet"))
            .args(["poems", "show", &id])
            .env("POET_COORDINATOR", addr)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&want.table()),
        "{text}\nwant:\n{}",
        want.table()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_s_run_is_resumed_and_finished_by_the_other() {
    let mut s = stack(3.0).await;
    s.client()
        .submit_sweep(v1::SubmitSweepRequest {
            spec: spec("layers = [2]", 60),
            ..Default::default()
        })
        .await
        .unwrap();
    let first = s.spawn_worker();
    s.wait_until(
        "a checkpoint at epoch 2",
        Duration::from_secs(120),
        "select exists (select 1 from checkpoints where epoch >= 2)",
    )
    .await;
    s.workers[first].kill().unwrap();
    s.workers[first].wait().unwrap();
    s.spawn_worker();
    s.wait_until(
        "the run to succeed",
        Duration::from_secs(240),
        "select count(*) = 1 from runs where state = 'succeeded'",
    )
    .await;

    let epochs: Vec<(i32, i32)> =
        sqlx::query_as("select epoch, attempt from epochs order by epoch")
            .fetch_all(&s.coordinator.db.pool)
            .await
            .unwrap();
    assert_eq!(
        epochs.iter().map(|e| e.0).collect::<Vec<_>>(),
        (1..=60).collect::<Vec<_>>(),
        "contiguous, no duplicates"
    );
    let attempts: Vec<(i32, i32, Option<String>)> = sqlx::query_as(
        "select attempt, resumed_from_epoch, outcome from run_attempts order by attempt",
    )
    .fetch_all(&s.coordinator.db.pool)
    .await
    .unwrap();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[0].2.as_deref(), Some("lease_expired"));
    assert_eq!(attempts[1].2.as_deref(), Some("completed"));
    let resumed = attempts[1].1;
    assert!(
        resumed >= 2,
        "resumed from its checkpoint, not from scratch: {attempts:?}"
    );
    assert!(
        epochs
            .iter()
            .all(|(e, a)| if *e <= resumed { *a == 1 } else { *a == 2 }),
        "{epochs:?}"
    );
    // The loss curve continues: the first resumed epoch is better than epoch 1.
    let loss: Vec<f64> = sqlx::query_scalar("select train_loss from epochs order by epoch")
        .fetch_all(&s.coordinator.db.pool)
        .await
        .unwrap();
    assert!(
        resumed < 60,
        "the first worker was killed before it finished: {attempts:?}"
    );
    assert!(loss[resumed as usize] < loss[0], "{loss:?}");
}

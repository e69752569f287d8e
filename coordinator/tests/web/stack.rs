//! A coordinator with `--http-listen` on a fresh database, and a sweep with runs at
//! different stages (epochs reported through the worker API, a checkpoint, a judged
//! generation with a poem copied from the corpus).

use std::net::SocketAddr;

use poet_coordinator::CoordinatorConfig;
use poet_coordinator::testing::{Client, Registered, TestCoordinator, Worker, lease_run};
use poet_proto::v1;
use poet_sql::testing::TestDb;
use sha2::{Digest, Sha256};

pub const CLIENT_TOKEN: &str = "client-7c1e9a4f2b8d6035e4a1c9f7b2d80e6a";
pub const WORKER_TOKEN: &str = "worker-3b9f0d2e7a6c4185f0e2d9c3a7b61f48";

/// A test coordinator (`poet_coordinator::testing`) that also serves the dashboard.
pub struct Stack {
    coordinator: TestCoordinator,
    pub http: SocketAddr,
}

/// A port nobody listens on now (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Stack {
    /// A coordinator on a fresh database; with `tokens`, both roles need theirs.
    pub async fn spawn(tokens: bool) -> Stack {
        // Port 0: the test support binds it and reports the port (a port chosen free and
        // bound later was taken in between once, on CI).
        let cfg = CoordinatorConfig {
            lease_ttl_s: 300.0,
            heartbeat_interval_s: 1.0,
            reaper_interval_s: 0.5,
            http_listen: Some("127.0.0.1:0".parse().unwrap()),
            db_pool: 8,
            ..Default::default()
        };
        let tokens = tokens.then_some((CLIENT_TOKEN, WORKER_TOKEN));
        let coordinator = TestCoordinator::start(cfg, tokens).await;
        let http = coordinator.http.expect("the dashboard's address");
        Stack { coordinator, http }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub fn db(&self) -> &TestDb {
        &self.coordinator.db
    }

    /// The client API, with the client token when tokens are on.
    pub fn client(&self) -> Client {
        self.coordinator.client()
    }

    /// A channel to the gRPC address, without any token.
    pub async fn channel(&self) -> tonic::transport::Channel {
        self.coordinator.channel()
    }

    /// The worker API, with the worker token when tokens are on.
    pub fn worker(&self) -> Worker {
        self.coordinator.worker()
    }

    pub async fn stop(self) {
        self.coordinator.stop().await
    }
}

pub const POEMS: &[&str] = &[
    "the lamp is low and the kettle sings\nof rain that taps on the window wings",
    "a heron waits by the silver reed\nand counts the fish it does not need",
    "under the hill the old roads sleep\nwith promises they did not keep",
    "my grandmother folded the evening light\ninto a drawer and said good night",
];

/// Inserts a ready dataset with the parameters, counts (in the shape the ingest stores) and
/// vocabulary the pages show; returns its id.
pub async fn seed_dataset(pool: &sqlx::PgPool, name: &str) -> i64 {
    let id = poet_sql::testing::seed_dataset(pool, name, POEMS)
        .await
        .unwrap();
    sqlx::query(
        "update datasets set params = '{\"min_lines\": 2, \"max_chars\": 4000}',
             counts = '{\"lines\": {\"read\": 6, \"docs\": 6, \"kept\": 4, \"duplicates\": 2},
                 \"input_bytes\": 900, \"not_poems_by_reason\": {\"hard_wrapped\": 1}}', chars = 250,
             vocab = 'abcdefghijklmnopqrstuvwxyz'
         where id = $1",
    )
    .bind(id)
    .execute(pool)
    .await
    .unwrap();
    id
}

/// What [`seed`] made.
pub struct Seeded {
    pub sweep_id: i64,
    /// Runs by id, in id order.
    pub runs: Vec<i64>,
    /// The leases the simulated workers hold, by run (index as `runs`).
    pub leases: Vec<v1::Lease>,
    pub worker_ids: Vec<i64>,
}

pub fn epoch(n: i32, run: usize) -> v1::Epoch {
    // Decreasing losses, a different level per run so the lines are told apart.
    let base = 3.2 - 0.25 * run as f64;
    let val = base / (1.0 + 0.35 * n as f64) + 0.6;
    v1::Epoch {
        epoch: n,
        train_loss: val - 0.08,
        val_loss: val,
        duration_s: 1.5,
        chars_per_sec: 52_000.0,
        metrics_json: r#"{"lr": 0.002}"#.into(),
        ..Default::default()
    }
}

/// A sweep over `units` (`runs` values) of 6 epochs on dataset "tiny": each run leased by its
/// own worker and reporting `epochs_for(i)` epochs; run 0 gets a checkpoint and a judged
/// generation (one poem copied from the corpus, one original).
pub async fn seed(s: &Stack, runs: usize, epochs_for: impl Fn(usize) -> i32) -> Seeded {
    seed_dataset(&s.db().pool, "tiny").await;
    let mut client = s.client();
    let units: Vec<String> = (0..runs).map(|i| (8 * (i + 1)).to_string()).collect();
    let spec = format!(
        "dataset = \"tiny\"\nmax_attempts = 2\n[base]\nlayers = 1\nseq_len = 16\nepochs = 6\n[grid]\nunits = [{}]\n",
        units.join(", ")
    );
    let sub = client
        .submit_sweep(v1::SubmitSweepRequest {
            spec,
            name: "units-sweep".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let sweep_id = sub.sweep.unwrap().id;
    let mut w = s.worker();
    let mut leases = vec![];
    let mut workers = vec![];
    for i in 0..runs {
        let r = w
            .register(v1::RegisterRequest {
                host: format!("gpu-host-{i}"),
                device: "cuda:0".into(),
                gpu_name: "NVIDIA H100".into(),
                gpu_memory_bytes: 80 << 30,
                version: "0.1.0".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let worker = Registered {
            id: r.worker_id,
            secret: r.worker_secret.parse().unwrap(),
        };
        let l = lease_run(&mut w, worker, 1000).await.unwrap();
        leases.push(l.lease.unwrap());
        workers.push(worker);
    }
    leases.sort_by_key(|l| l.run_id);
    for (i, l) in leases.iter().enumerate() {
        for n in 1..=epochs_for(i) {
            w.report_epoch(v1::ReportEpochRequest {
                lease: Some(l.clone()),
                epoch: Some(epoch(n, i)),
            })
            .await
            .unwrap();
        }
    }
    // Run 0: a checkpoint and a judged generation.
    let l = &leases[0];
    let data = b"pretend checkpoint".to_vec();
    let last = epochs_for(0);
    let msgs = vec![
        v1::UploadCheckpointRequest {
            part: Some(v1::upload_checkpoint_request::Part::Header(
                v1::CheckpointHeader {
                    lease: Some(l.clone()),
                    epoch: last,
                    size: data.len() as i64,
                    sha256: hex::encode(Sha256::digest(&data)),
                },
            )),
        },
        v1::UploadCheckpointRequest {
            part: Some(v1::upload_checkpoint_request::Part::Data(data)),
        },
    ];
    w.upload_checkpoint(futures::stream::iter(msgs))
        .await
        .unwrap();
    client
        .generate(v1::GenerateRequest {
            run_id: l.run_id,
            temperatures: vec![0.5, 1.0],
            seed: 7,
            ..Default::default()
        })
        .await
        .unwrap();
    let gen_worker = workers[0];
    let job = w
        .lease_generation(v1::LeaseGenerationRequest {
            worker_id: gen_worker.id,
            wait_ms: 2000,
            worker_secret: gen_worker.secret(),
        })
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    w.complete_generation(v1::CompleteGenerationRequest {
        worker_id: gen_worker.id,
        lease_id: job.lease_id.clone(),
        worker_secret: gen_worker.secret(),
        generation_id: job.generation_id,
        streams: vec![
            v1::SampledStream {
                temperature: 0.5,
                text: "Under the hill the old roads sleep,\nbeside a quiet sea\n++++\n".into(),
            },
            v1::SampledStream {
                temperature: 1.0,
                text: "violet engines hum beneath\nthe quiet orchard of my teeth\n++++\n".into(),
            },
        ],
        error: String::new(),
    })
    .await
    .unwrap();
    Seeded {
        sweep_id,
        runs: leases.iter().map(|l| l.run_id).collect(),
        leases,
        worker_ids: workers.iter().map(|w| w.id).collect(),
    }
}

/// Submits `spec`; the new sweep's id.
pub async fn submit(s: &Stack, spec: String) -> i64 {
    s.client()
        .submit_sweep(v1::SubmitSweepRequest {
            spec,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .sweep
        .unwrap()
        .id
}

//! Spawning a real coordinator on a fresh database, and seeding datasets.

use std::net::SocketAddr;

use poet_coordinator::CoordinatorConfig;
use poet_proto::v1::poet_client::PoetClient;
use poet_proto::v1::worker_service_client::WorkerServiceClient;
use poet_sql::testing::{TestDb, fresh_db};
use tonic::transport::Channel;

pub struct TestCoordinator {
    pub addr: SocketAddr,
    pub db: TestDb,
    pub artifacts: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<Result<(), poet_coordinator::CoordinatorError>>>,
}

impl TestCoordinator {
    pub async fn client(&self) -> PoetClient<Channel> {
        PoetClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    pub async fn worker(&self) -> WorkerServiceClient<Channel> {
        WorkerServiceClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap().unwrap();
        }
    }
}

pub fn fast_config() -> CoordinatorConfig {
    CoordinatorConfig {
        lease_ttl_s: 30.0,
        heartbeat_interval_s: 1.0,
        reaper_interval_s: 0.2,
        ..Default::default()
    }
}

/// A coordinator on a fresh database (or `db` if given) with `cfg` (database and artifacts filled in).
pub async fn spawn_with(db: Option<TestDb>, mut cfg: CoordinatorConfig) -> TestCoordinator {
    let db = match db {
        Some(d) => d,
        None => fresh_db().await,
    };
    let artifacts = tempfile::tempdir().unwrap();
    cfg.database_url = Some(db.url.clone());
    if cfg.artifacts.is_none() {
        cfg.artifacts = Some(artifacts.path().display().to_string());
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(poet_coordinator::run(cfg, listener, async move {
        let _ = rx.await;
    }));
    // Ready when the health service answers.
    for _ in 0..100 {
        if let Ok(ch) = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
        {
            let mut h = tonic_health::pb::health_client::HealthClient::new(ch);
            if h.check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .is_ok()
            {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    TestCoordinator {
        addr,
        db,
        artifacts,
        stop: Some(tx),
        handle: Some(handle),
    }
}

pub async fn spawn() -> TestCoordinator {
    spawn_with(None, fast_config()).await
}

/// Inserts a ready dataset named `name` with the given poems (unframed); returns its id.
pub async fn seed_dataset(pool: &sqlx::PgPool, name: &str, poems: &[&str]) -> i64 {
    poet_sql::testing::seed_dataset(pool, name, poems)
        .await
        .unwrap()
}

pub const POEMS: &[&str] = &[
    "the lamp is low and the kettle sings\nof rain that taps on the window wings",
    "a heron waits by the silver reed\nand counts the fish it does not need",
    "under the hill the old roads sleep\nwith promises they did not keep",
    "my grandmother folded the evening light\ninto a drawer and said good night",
    "salt on the wind and tar on the pier\nthe boats come home at the end of the year",
];

/// A sweep spec over `dataset` with `n` distinct runs of `epochs` epochs.
pub fn spec(dataset: &str, n: usize, epochs: u32) -> String {
    let seeds: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    format!(
        "dataset = \"{dataset}\"\nmax_attempts = 2\n[base]\nlayers = 1\nunits = 8\nseq_len = 16\nepochs = {epochs}\n[grid]\nseed = [{}]\n",
        seeds.join(", ")
    )
}

pub async fn register(w: &mut WorkerServiceClient<Channel>, host: &str) -> i64 {
    w.register(poet_proto::v1::RegisterRequest {
        host: host.into(),
        device: "cpu".into(),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .worker_id
}

/// Leases the next run (waiting up to a second); panics when none is queued.
pub async fn lease_one(
    w: &mut WorkerServiceClient<Channel>,
    worker_id: i64,
) -> poet_proto::v1::Lease {
    w.lease_run(poet_proto::v1::LeaseRunRequest {
        worker_id,
        wait_ms: 1000,
    })
    .await
    .unwrap()
    .into_inner()
    .lease
    .expect("a queued run")
    .lease
    .expect("lease")
}

/// Seeds the `tiny` dataset, queues `runs` runs of `epochs` epochs, registers a worker and
/// leases one run to it: the client, the worker's client, its id and the lease.
pub async fn leased_run(
    c: &TestCoordinator,
    runs: usize,
    epochs: u32,
) -> (
    PoetClient<Channel>,
    WorkerServiceClient<Channel>,
    i64,
    poet_proto::v1::Lease,
) {
    seed_dataset(&c.db.pool, "tiny", POEMS).await;
    let mut client = c.client().await;
    client
        .submit_sweep(poet_proto::v1::SubmitSweepRequest {
            spec: spec("tiny", runs, epochs),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut w = c.worker().await;
    let wid = register(&mut w, "h").await;
    let lease = lease_one(&mut w, wid).await;
    (client, w, wid, lease)
}

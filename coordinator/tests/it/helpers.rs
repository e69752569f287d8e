//! A real coordinator on a fresh database (`poet_coordinator::testing`), and seeding datasets.

use poet_coordinator::CoordinatorConfig;
pub use poet_coordinator::testing::{
    Client, Registered, TestCoordinator, Worker, fast_config, lease_run, register,
};
use poet_sql::testing::TestDb;

/// A coordinator on a fresh database (or `db` if given) with `cfg`.
pub async fn spawn_with(db: Option<TestDb>, cfg: CoordinatorConfig) -> TestCoordinator {
    match db {
        Some(db) => TestCoordinator::start_on(db, cfg, None).await,
        None => TestCoordinator::start(cfg, None).await,
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

/// Leases the next run (waiting up to a second); panics when none is queued.
pub async fn lease_one(w: &mut Worker, worker: Registered) -> poet_proto::v1::Lease {
    lease_run(w, worker, 1000)
        .await
        .expect("a queued run")
        .lease
        .expect("lease")
}

/// Seeds the `tiny` dataset, queues `runs` runs of `epochs` epochs, registers a worker and
/// leases one run to it: the client, the worker's client, the worker and the lease.
pub async fn leased_run(
    c: &TestCoordinator,
    runs: usize,
    epochs: u32,
) -> (Client, Worker, Registered, poet_proto::v1::Lease) {
    seed_dataset(&c.db.pool, "tiny", POEMS).await;
    let mut client = c.client();
    client
        .submit_sweep(poet_proto::v1::SubmitSweepRequest {
            spec: spec("tiny", runs, epochs),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut w = c.worker();
    let wid = register(&mut w, "h").await;
    let lease = lease_one(&mut w, wid).await;
    (client, w, wid, lease)
}

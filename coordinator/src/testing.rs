//! A real coordinator for tests: [`server::run`](crate::server::run) on a free loopback port
//! over a fresh database of the shared test cluster (`poet_sql::testing`), with clients that
//! carry its tokens. Used by this crate's tests, the worker agent's and the dashboard's.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use poet_sql::testing::{TestDb, fresh_db};
use tonic::transport::Channel;

use crate::{CoordinatorConfig, CoordinatorError};

pub use poet_proto::client::Bearer;

/// The client API of a test coordinator, with its client token when it has one.
pub type Client = poet_proto::client::Client;

/// The worker API of a test coordinator, with its worker token when it has one.
pub type Worker = poet_proto::client::Worker;

/// Timings for tests: heartbeats every second, the reaper every 200 ms, and a lease lifetime
/// (30 s) no test reaches, so a lease expires only where a test moves the reaper's clock.
pub fn fast_config() -> CoordinatorConfig {
    CoordinatorConfig {
        lease_ttl_s: 30.0,
        heartbeat_interval_s: 1.0,
        reaper_interval_s: 0.2,
        ..Default::default()
    }
}

/// A coordinator serving until [`stop`](TestCoordinator::stop)ped.
pub struct TestCoordinator {
    /// Where gRPC is served.
    pub addr: SocketAddr,
    /// The dashboard's address, when the config set `http_listen`.
    pub http: Option<SocketAddr>,
    /// Its database, for seeding and for asserting outcomes.
    pub db: TestDb,
    /// Its artifact store (checkpoint blobs), removed on drop.
    pub artifacts: tempfile::TempDir,
    /// The (client, worker) tokens the test's clients call with.
    tokens: (Option<String>, Option<String>),
    stop: tokio::sync::oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<Result<(), CoordinatorError>>,
}

impl TestCoordinator {
    /// Starts one on a fresh database with `cfg` (its database and, unless set, its artifact
    /// store are filled in). `tokens` = (client, worker) turns authentication on; tokens set
    /// in `cfg` itself are required by the server but not sent by [`client`](Self::client).
    pub async fn start(cfg: CoordinatorConfig, tokens: Option<(&str, &str)>) -> Self {
        Self::start_on(fresh_db().await, cfg, tokens).await
    }

    /// [`start`](Self::start) on an existing database (a second replica of the same queue).
    pub async fn start_on(
        db: TestDb,
        mut cfg: CoordinatorConfig,
        tokens: Option<(&str, &str)>,
    ) -> Self {
        let artifacts = tempfile::tempdir().expect("temporary artifact folder");
        cfg.database_url = Some(db.url.clone());
        if cfg.artifacts.is_none() {
            cfg.artifacts = Some(artifacts.path().display().to_string());
        }
        if let Some((client, worker)) = tokens {
            cfg.client_token = Some(client.to_string());
            cfg.worker_token = Some(worker.to_string());
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("bound address");
        // A dashboard on port 0 is bound here and handed over, so the test knows its port
        // and nothing can take the port between choosing and binding it.
        let web_listener = match cfg.http_listen {
            Some(a) if a.port() == 0 => Some(
                tokio::net::TcpListener::bind(a)
                    .await
                    .expect("bind the dashboard's port"),
            ),
            _ => None,
        };
        let http = match &web_listener {
            Some(l) => Some(l.local_addr().expect("bound address")),
            None => cfg.http_listen,
        };
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(crate::server::run_with(
            cfg,
            listener,
            web_listener,
            async move {
                let _ = rx.await;
            },
        ));
        let mut c = TestCoordinator {
            addr,
            http,
            db,
            artifacts,
            tokens: (
                tokens.map(|t| t.0.to_string()),
                tokens.map(|t| t.1.to_string()),
            ),
            stop,
            handle,
        };
        c.wait_serving().await;
        c
    }

    /// Waits until the health service answers `SERVING` (after migrations, the artifact store
    /// and the dashboard have started); panics, with the coordinator's error, if it exits, or
    /// if 60 s pass.
    async fn wait_serving(&mut self) {
        use tonic_health::pb::health_check_response::ServingStatus;
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut health = HealthClient::new(self.channel());
            let answer = health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await;
            match answer {
                Ok(r) if r.get_ref().status == ServingStatus::Serving as i32 => return,
                _ if self.handle.is_finished() => {
                    let why = match (&mut self.handle).await {
                        Ok(Ok(())) => "without an error".to_string(),
                        Ok(Err(e)) => format!("with: {e}"),
                        Err(e) => format!("by a panic: {e}"),
                    };
                    panic!("the test coordinator exited {why}")
                }
                other if Instant::now() > deadline => {
                    panic!("the test coordinator never served: {other:?}")
                }
                _ => tokio::time::sleep(Duration::from_millis(25)).await,
            }
        }
    }

    /// Its gRPC URL, for a worker agent or the CLI.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client of its client API, with the client token when tokens are on.
    pub fn client(&self) -> Client {
        poet_proto::client::Connect::new(self.url(), self.tokens.0.as_deref())
            .client(self.channel())
            .expect("ascii token")
    }

    /// A client of its worker API, for a test that stands in for a worker.
    pub fn worker(&self) -> Worker {
        poet_proto::client::Connect::new(self.url(), self.tokens.1.as_deref())
            .worker(self.channel())
            .expect("ascii token")
    }

    /// A lazy channel to its gRPC address, for a client with a token of the test's choosing.
    pub fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .expect("valid URL")
            .connect_lazy()
    }

    /// Stops it and checks that it stopped cleanly.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.handle
            .await
            .expect("coordinator task")
            .expect("clean stop");
    }
}

/// A registered worker: its id and the secret its later calls carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered {
    /// Worker id.
    pub id: i64,
    /// The secret `Register` returned with it.
    pub secret: uuid::Uuid,
}

impl Registered {
    /// The secret as sent on the wire.
    pub fn secret(&self) -> String {
        self.secret.to_string()
    }
}

/// Registers a CPU worker named `host` through `w`.
pub async fn register(w: &mut Worker, host: &str) -> Registered {
    let r = w
        .register(poet_proto::v1::RegisterRequest {
            host: host.into(),
            device: "cpu".into(),
            ..Default::default()
        })
        .await
        .expect("register")
        .into_inner();
    Registered {
        id: r.worker_id,
        secret: r
            .worker_secret
            .parse()
            .expect("the worker secret is a uuid"),
    }
}

/// Leases the next run for `worker` through `w`, waiting up to `wait_ms` for one; `None`
/// when none was queued.
pub async fn lease_run(
    w: &mut Worker,
    worker: Registered,
    wait_ms: i64,
) -> Option<poet_proto::v1::RunLease> {
    w.lease_run(poet_proto::v1::LeaseRunRequest {
        worker_id: worker.id,
        wait_ms,
        worker_secret: worker.secret(),
    })
    .await
    .expect("lease_run")
    .into_inner()
    .lease
}

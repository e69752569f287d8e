//! Tiny corpora and configs shared by the tests, and a real coordinator for the agent's.

use poet_coordinator::CoordinatorConfig;
use poet_core::config::{Formulation, TrainConfig};
use poet_proto::v1::poet_client::PoetClient;
use poet_proto::v1::worker_service_client::WorkerServiceClient;
use poet_sql::testing::{TestDb, fresh_db};
use std::net::SocketAddr;
use tonic::Status;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// A few hundred chars of `++++`-framed poems.
pub fn corpus() -> String {
    let mut s = String::new();
    for _ in 0..2 {
        for p in POEMS {
            s.push_str("++++\n");
            s.push_str(p);
            s.push('\n');
        }
    }
    s
}

/// Train and validation text of [`corpus`].
pub fn texts() -> (String, String) {
    let c = corpus();
    let cut = c.len() * 4 / 5;
    (c[..cut].to_string(), c[cut..].to_string())
}

/// Torch's random generator is process-global and tests run on parallel threads: every test
/// that trains holds this so that seeded runs stay exactly reproducible.
pub fn torch_rng() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A 2 x 16 model on 16-char sequences, fast enough for many epochs in a test.
pub fn tiny(formulation: Formulation) -> TrainConfig {
    tch::set_num_threads(1);
    TrainConfig {
        layers: 2,
        units: 16,
        dropout: 0.1,
        recurrent_dropout: 0.1,
        seq_len: 16,
        step: 3,
        batch_size: 16,
        learning_rate: 0.01,
        grad_clip: 5.0,
        epochs: 4,
        formulation,
        embedding: 0,
        seed: 7,
        max_batches: 0,
    }
}

/// The four poems of [`corpus`], unframed, for seeding a coordinator's dataset.
pub const POEMS: [&str; 4] = [
    "the cat sat on the mat\nthe mat was warm",
    "roses are red\nviolets are blue\nsugar is sweet",
    "the sea is wide\nthe sky is blue\nand so are you",
    "a dog ran far\nover the hill\nand then sat still",
];

/// Adds `authorization: Bearer <token>` to a test client's calls when a token is set.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    fn new(token: Option<&str>) -> Self {
        Bearer(token.map(|t| format!("Bearer {t}").parse().unwrap()))
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(h) = &self.0 {
            req.metadata_mut().insert("authorization", h.clone());
        }
        Ok(req)
    }
}

/// The client API of a test coordinator, with its client token when it has one.
pub type Client = PoetClient<InterceptedService<Channel, Bearer>>;

/// The worker API of a test coordinator, with its worker token when it has one.
pub type Worker = WorkerServiceClient<InterceptedService<Channel, Bearer>>;

/// A real coordinator (`poet_coordinator::run`) on a fresh database, serving on a free
/// loopback port; a trimmed copy of the coordinator tests' `spawn_with`.
pub struct Coordinator {
    /// Where it serves.
    pub addr: SocketAddr,
    /// Its database, for seeding and for asserting outcomes.
    pub db: TestDb,
    /// Its artifact store (checkpoint blobs), removed on drop.
    pub artifacts: tempfile::TempDir,
    /// The (client, worker) tokens the test's clients call with, when tokens are on.
    tokens: Option<(String, String)>,
    /// Resolves the coordinator's shutdown future.
    stop: tokio::sync::oneshot::Sender<()>,
    /// The serving task.
    handle: tokio::task::JoinHandle<Result<(), poet_coordinator::CoordinatorError>>,
}

impl Coordinator {
    /// Starts one with `cfg`'s timings; `tokens` = (client, worker) turns authentication on.
    pub async fn start(mut cfg: CoordinatorConfig, tokens: Option<(&str, &str)>) -> Self {
        let db = fresh_db().await;
        let artifacts = tempfile::tempdir().unwrap();
        cfg.database_url = Some(db.url.clone());
        cfg.artifacts = Some(artifacts.path().display().to_string());
        cfg.client_token = tokens.map(|t| t.0.to_string());
        cfg.worker_token = tokens.map(|t| t.1.to_string());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(poet_coordinator::run(cfg, listener, async move {
            let _ = rx.await;
        }));
        let c = Coordinator {
            addr,
            db,
            artifacts,
            tokens: tokens.map(|(c, w)| (c.to_string(), w.to_string())),
            stop,
            handle,
        };
        // Ready once the client API answers (the listener is bound already; this waits out
        // the coordinator's own start: migrations, artifact store).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let mut client = c.client();
            let probe = client
                .list_workers(poet_proto::v1::ListWorkersRequest::default())
                .await;
            match probe {
                Ok(_) => break,
                Err(e) if c.handle.is_finished() || std::time::Instant::now() > deadline => {
                    panic!("coordinator never answered: {e}")
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
        c
    }

    /// Its URL, for a worker agent.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client of its client API.
    pub fn client(&self) -> Client {
        let token = self.tokens.as_ref().map(|t| t.0.as_str());
        PoetClient::with_interceptor(self.channel(), Bearer::new(token))
    }

    /// A client of its worker API, for a test that stands in for another worker.
    pub fn worker(&self) -> Worker {
        let token = self.tokens.as_ref().map(|t| t.1.as_str());
        WorkerServiceClient::with_interceptor(self.channel(), Bearer::new(token))
    }

    fn channel(&self) -> Channel {
        Channel::from_shared(self.url()).unwrap().connect_lazy()
    }

    /// Stops it and checks that it stopped cleanly.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.handle.await.unwrap().unwrap();
    }
}

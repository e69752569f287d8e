//! Wiring: connect (migrations applied), open the artifact store, start the reaper and the
//! NOTIFY listener, and serve both gRPC services plus health and reflection on the listener
//! given, until `shutdown` resolves.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use poet_core::retry::Backoff;
use poet_proto::v1::poet_server::PoetServer;
use poet_proto::v1::worker_service_server::WorkerServiceServer;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use crate::artifacts::Artifacts;
use crate::auth::{Role, Tokens};
use crate::config::CoordinatorConfig;
use crate::metrics::Metrics;
use crate::queue::Queue;
use crate::service::{Batches, Shared};

/// Largest gRPC message accepted (checkpoint chunks are 1 MiB).
pub const MAX_MESSAGE_BYTES: usize = poet_proto::client::MAX_REQUEST_BYTES;

/// Why the coordinator could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Database unusable.
    #[error(transparent)]
    Db(#[from] poet_sql::DbError),
    /// Artifact store unusable.
    #[error(transparent)]
    Storage(#[from] crate::artifacts::StorageError),
    /// TLS files or the transport failed.
    #[error("{0}")]
    Transport(String),
}

/// Runs the coordinator on `listener` until `shutdown` resolves; the dashboard, when
/// `cfg.http_listen` is set, on a listener bound to that address.
pub async fn run(
    cfg: CoordinatorConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), CoordinatorError> {
    run_with(cfg, listener, None, shutdown).await
}

/// [`run`], with the dashboard on `web_listener` when one is given (a test binds port 0 and
/// keeps the port: choosing a "free" port and binding it later races every other process on
/// the machine). The dashboard's address rules ([`crate::web::check_address`]) still apply.
pub async fn run_with(
    cfg: CoordinatorConfig,
    listener: TcpListener,
    web_listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), CoordinatorError> {
    let addr = listener
        .local_addr()
        .map_err(|e| CoordinatorError::Transport(e.to_string()))?;
    cfg.validate(addr)?;
    let url = {
        let explicit = cfg.database_url.clone();
        tokio::task::spawn_blocking(move || poet_sql::resolve_url(explicit.as_deref()))
            .await
            .expect("join")?
    };
    let pool = poet_sql::connect_with(
        &url,
        &poet_sql::ConnectOptions {
            max_connections: cfg.db_pool,
            connect_timeout: Duration::from_secs(10),
        },
    )
    .await?;
    let artifacts_spec = cfg.artifacts.clone().unwrap_or_else(|| {
        poet_sql::cluster::poet_home()
            .join("artifacts")
            .display()
            .to_string()
    });
    let artifacts = Artifacts::open(&artifacts_spec)?;
    let tls = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(c), Some(k)) => {
            let read = |p: &std::path::Path| {
                std::fs::read(p)
                    .map_err(|e| CoordinatorError::Transport(format!("{}: {e}", p.display())))
            };
            let tls = ServerTlsConfig::new().identity(Identity::from_pem(read(c)?, read(k)?));
            Some(match &cfg.tls_client_ca {
                // mTLS: a client without a certificate from this CA fails the handshake.
                Some(ca) => tls.client_ca_root(tonic::transport::Certificate::from_pem(read(ca)?)),
                None => tls,
            })
        }
        _ => None,
    };
    let queue = Queue::new(pool.clone(), cfg.lease_ttl());
    let shared = Shared {
        pool: pool.clone(),
        queue: queue.clone(),
        batches: Batches::spawn(&queue),
        artifacts,
        metrics: Arc::new(Metrics::default()),
        cfg: Arc::new(cfg.clone()),
        runs_queued: Arc::new(Notify::new()),
        generations_queued: Arc::new(Notify::new()),
        generations_finished: tokio::sync::broadcast::channel(1024).0,
        ngrams: Default::default(),
        datasets: Default::default(),
        adaptive_runs: Default::default(),
        uploads: Default::default(),
        worker_secrets: Default::default(),
        downloads: Arc::new(tokio::sync::Semaphore::new(cfg.max_dataset_downloads)),
        dataset_digests: Default::default(),
    };
    let tokens = Tokens::new(cfg.client_token.clone(), cfg.worker_token.clone());
    let mut background = tokio::task::JoinSet::new();
    if tokens.enabled() {
        // Issued tokens are accepted from the first request on, not after the first refresh.
        if let Err(e) = tokens.refresh(&pool).await {
            tracing::warn!(error = %e, "issued tokens not loaded yet");
        }
        background.spawn(tokens.clone().keep_fresh(pool.clone()));
    }
    background.spawn(reaper(shared.clone()));
    background.spawn(listen_notifications(
        pool.clone(),
        shared.runs_queued.clone(),
        shared.generations_queued.clone(),
        shared.generations_finished.clone(),
    ));
    if let Some(maddr) = cfg.metrics_listen {
        let ml = TcpListener::bind(maddr)
            .await
            .map_err(|e| CoordinatorError::Transport(format!("metrics address {maddr}: {e}")))?;
        tracing::info!(addr = %ml.local_addr().map_err(|e| CoordinatorError::Transport(e.to_string()))?, "metrics listening");
        background.spawn(crate::metrics::serve(
            ml,
            shared.metrics.clone(),
            pool.clone(),
        ));
    }

    // The dashboard stops gracefully (in-flight requests finish) once gRPC has returned.
    let (web_stop, web_stopped) = tokio::sync::oneshot::channel::<()>();
    let web_listener = match (web_listener, cfg.http_listen) {
        (Some(hl), _) => {
            let haddr = hl
                .local_addr()
                .map_err(|e| CoordinatorError::Transport(e.to_string()))?;
            crate::web::check_address(haddr, &cfg)?;
            Some(hl)
        }
        (None, Some(haddr)) => Some(crate::web::bind(haddr, &cfg).await?),
        (None, None) => None,
    };
    let web = match web_listener {
        Some(hl) => {
            let state = crate::web::WebState::new(pool.clone(), tokens.clone());
            Some(tokio::spawn(crate::web::serve(hl, state, async move {
                let _ = web_stopped.await;
            })))
        }
        None => None,
    };

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<PoetServer<Shared>>().await;
    health_reporter
        .set_serving::<WorkerServiceServer<Shared>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(poet_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| CoordinatorError::Transport(e.to_string()))?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(poet_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| CoordinatorError::Transport(e.to_string()))?;

    let poet = PoetServer::new(shared.clone())
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(poet_proto::client::MAX_RESPONSE_BYTES);
    let worker = WorkerServiceServer::new(shared.clone())
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);

    let mut builder = Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(20)))
        .tcp_nodelay(true);
    if let Some(tls) = tls {
        builder = builder
            .tls_config(tls)
            .map_err(|e| CoordinatorError::Transport(format!("tls: {e}")))?;
    }
    tracing::info!(%addr, database = %poet_sql::redact(&url), artifacts = %shared.artifacts.describe(),
        auth = tokens.enabled(), "coordinator serving");
    let result = builder
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(tonic::service::interceptor::InterceptedService::new(
            poet,
            tokens.interceptor(Role::Client),
        ))
        .add_service(tonic::service::interceptor::InterceptedService::new(
            worker,
            tokens.interceptor(Role::Worker),
        ))
        .serve_with_incoming_shutdown(
            // TCP_NODELAY on accepted sockets: without it small replies wait ~40 ms for delayed ACKs.
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
        .map_err(|e| CoordinatorError::Transport(e.to_string()));
    let _ = web_stop.send(());
    if let Some(web) = web
        && tokio::time::timeout(Duration::from_secs(5), web)
            .await
            .is_err()
    {
        tracing::warn!("dashboard requests still open after 5 s; dropping them");
    }
    background.abort_all();
    queue.close().await;
    pool.close().await;
    result
}

/// Requeues expired leases periodically; every replica runs one (SKIP LOCKED makes it safe).
async fn reaper(shared: Shared) {
    let every = Duration::from_secs_f64(shared.cfg.reaper_interval_s);
    let mut last_orphan_sweep = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(every).await;
        if last_orphan_sweep.elapsed() >= crate::retention::ORPHAN_SWEEP_EVERY {
            last_orphan_sweep = tokio::time::Instant::now();
            if let Err(e) = crate::retention::sweep_orphans(
                &shared.pool,
                &shared.artifacts,
                crate::retention::ORPHAN_GRACE,
            )
            .await
            {
                tracing::warn!(error = %e, "orphan sweep failed");
            }
        }
        match shared.queue.reap(Utc::now()).await {
            Ok(moved) => {
                for r in &moved {
                    tracing::warn!(run_id = r.run_id, new_state = %r.state, "lease expired");
                }
                shared
                    .metrics
                    .expiries
                    .fetch_add(moved.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(error = %e, "reaper pass failed"),
        }
        if let Err(e) = crate::generation::reap(&shared.pool, Utc::now()).await {
            tracing::warn!(error = %e, "generation reaper pass failed");
        }
        // Adaptive sweeps whose last run ended without a hand-back (lease expiry, cancel).
        if let Err(e) = crate::scheduler::settle_idle(&shared.pool, Utc::now()).await {
            tracing::warn!(error = %e, "sweep settle pass failed");
        }
    }
}

/// Forwards Postgres NOTIFY to in-process waiters, reconnecting after failures.
async fn listen_notifications(
    pool: PgPool,
    runs: Arc<Notify>,
    gens: Arc<Notify>,
    finished: tokio::sync::broadcast::Sender<Option<i64>>,
) {
    // Every replica reconnects after a Postgres restart: jittered, so they do not all at once.
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_millis(6400));
    loop {
        let listener = async {
            let mut l = PgListener::connect_with(&pool).await?;
            l.listen_all([
                "poet_runs_queued",
                "poet_generations_queued",
                "poet_generations_finished",
            ])
            .await?;
            Ok::<_, sqlx::Error>(l)
        }
        .await;
        match listener {
            Ok(mut l) => {
                backoff.reset();
                // Wake everyone once: anything queued or finished while we were disconnected.
                runs.notify_waiters();
                gens.notify_waiters();
                let _ = finished.send(None);
                loop {
                    match l.recv().await {
                        Ok(n) if n.channel() == "poet_runs_queued" => runs.notify_waiters(),
                        Ok(n) if n.channel() == "poet_generations_finished" => {
                            // No receiver is fine: nobody is waiting.
                            let _ = finished.send(n.payload().parse().ok());
                        }
                        Ok(_) => gens.notify_waiters(),
                        Err(e) => {
                            tracing::warn!(error = %e, "notification listener lost");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "notification listener cannot connect"),
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

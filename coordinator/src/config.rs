//! Coordinator configuration: every flag also reads a `POET_*` environment variable.
//! Validated at startup; tokens are never printed (Debug redacts them).
//!
//! Defaults live in one place, [`CoordinatorConfig::default`]: the flags' `default_value_t`
//! read it (so `--help` shows the same numbers), and so does `poet up`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// How the coordinator runs.
#[derive(Clone, PartialEq, clap::Args)]
pub struct CoordinatorConfig {
    /// Address to serve gRPC on.
    #[arg(long, env = "POET_LISTEN", default_value_t = CoordinatorConfig::default().listen)]
    pub listen: SocketAddr,
    /// Postgres URL; unset = the private cluster.
    #[arg(long = "database-url", env = "POET_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Where checkpoints and other artifacts are stored: a folder, or `s3://bucket/prefix`
    /// (needs the `s3` build feature and AWS_* variables). Default: `<poet home>/artifacts`.
    #[arg(long, env = "POET_ARTIFACTS")]
    pub artifacts: Option<String>,
    /// Bearer token for the `client` role (submit, query, cancel, generate).
    #[arg(long, env = "POET_CLIENT_TOKEN", hide_env_values = true)]
    pub client_token: Option<String>,
    /// Bearer token for the `worker` role (register, lease, report, upload, download).
    #[arg(long, env = "POET_WORKER_TOKEN", hide_env_values = true)]
    pub worker_token: Option<String>,
    /// PEM certificate chain: serve TLS (with --tls-key).
    #[arg(long, env = "POET_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "POET_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate: require every gRPC client (workers, the CLI) to present a
    /// certificate it signed (mTLS). Needs --tls-cert.
    #[arg(long, env = "POET_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// Lease lifetime without a heartbeat, seconds.
    #[arg(long = "lease-ttl", env = "POET_LEASE_TTL", default_value_t = CoordinatorConfig::default().lease_ttl_s)]
    pub lease_ttl_s: f64,
    /// Heartbeat interval told to workers, seconds.
    #[arg(
        long = "heartbeat-interval",
        env = "POET_HEARTBEAT_INTERVAL",
        default_value_t = CoordinatorConfig::default().heartbeat_interval_s
    )]
    pub heartbeat_interval_s: f64,
    /// How often the reaper looks for expired leases, seconds.
    #[arg(
        long = "reaper-interval",
        env = "POET_REAPER_INTERVAL",
        default_value_t = CoordinatorConfig::default().reaper_interval_s
    )]
    pub reaper_interval_s: f64,
    /// Keep the best checkpoint and this many latest per run; older ones are deleted.
    #[arg(long, env = "POET_KEEP_LAST_CHECKPOINTS", default_value_t = CoordinatorConfig::default().keep_last_checkpoints)]
    pub keep_last_checkpoints: u32,
    /// Largest sweep (runs after expansion) accepted.
    #[arg(long, env = "POET_MAX_SWEEP_RUNS", default_value_t = CoordinatorConfig::default().max_sweep_runs)]
    pub max_sweep_runs: usize,
    /// Largest checkpoint accepted, bytes.
    #[arg(long, env = "POET_MAX_CHECKPOINT_BYTES", default_value_t = CoordinatorConfig::default().max_checkpoint_bytes)]
    pub max_checkpoint_bytes: u64,
    /// Serve Prometheus metrics on this address (`/metrics`).
    #[arg(long, env = "POET_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Serve the web dashboard and its JSON API on this address (read-only; needs the client
    /// token when tokens are set).
    #[arg(long, env = "POET_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,
    /// Database pool size.
    #[arg(long, env = "POET_DB_POOL", default_value_t = CoordinatorConfig::default().db_pool)]
    pub db_pool: u32,
    /// Dataset downloads served at once; each streams from its own database cursor (a pool
    /// connection). Beyond it a download is refused at once with RESOURCE_EXHAUSTED and the
    /// worker retries: a queue here would only hold more connections and streams open.
    #[arg(long, env = "POET_MAX_DATASET_DOWNLOADS", default_value_t = 4)]
    pub max_dataset_downloads: usize,
    /// Generations queued or running at once, over all clients (they share the client token,
    /// so there is no finer identity to count by); beyond it `Generate` is refused with
    /// RESOURCE_EXHAUSTED.
    #[arg(long, env = "POET_MAX_QUEUED_GENERATIONS", default_value_t = 64)]
    pub max_queued_generations: i64,
}

impl std::fmt::Debug for CoordinatorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hide = |t: &Option<String>| t.as_ref().map(|_| "<set>");
        f.debug_struct("CoordinatorConfig")
            .field("listen", &self.listen)
            .field(
                "database_url",
                &self.database_url.as_deref().map(poet_sql::redact),
            )
            .field("artifacts", &self.artifacts)
            .field("client_token", &hide(&self.client_token))
            .field("worker_token", &hide(&self.worker_token))
            .field("tls_cert", &self.tls_cert)
            .field("lease_ttl_s", &self.lease_ttl_s)
            .field("heartbeat_interval_s", &self.heartbeat_interval_s)
            .finish_non_exhaustive()
    }
}

/// The flags' defaults (every `default_value_t` above reads this; a flag without one
/// defaults to `None`).
impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 50051)),
            database_url: None,
            artifacts: None,
            client_token: None,
            worker_token: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            lease_ttl_s: 30.0,
            heartbeat_interval_s: 5.0,
            reaper_interval_s: 2.0,
            keep_last_checkpoints: 2,
            max_sweep_runs: poet_core::sweep::DEFAULT_MAX_RUNS,
            max_checkpoint_bytes: 4 << 30,
            metrics_listen: None,
            http_listen: None,
            db_pool: 32,
            max_dataset_downloads: 4,
            max_queued_generations: 64,
        }
    }
}

/// A configuration the coordinator refuses to start with.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl CoordinatorConfig {
    /// Lease lifetime.
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_secs_f64(self.lease_ttl_s)
    }

    /// Heartbeat interval.
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_secs_f64(self.heartbeat_interval_s)
    }

    /// Checks the values and the security rule for `addr`, the address actually bound.
    pub fn validate(&self, addr: SocketAddr) -> Result<(), ConfigError> {
        let pos = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(ConfigError(format!(
                    "--{name} must be a positive number of seconds, got {v}"
                )))
            }
        };
        pos("lease-ttl", self.lease_ttl_s)?;
        pos("heartbeat-interval", self.heartbeat_interval_s)?;
        pos("reaper-interval", self.reaper_interval_s)?;
        if self.heartbeat_interval_s * 2.0 > self.lease_ttl_s {
            return Err(ConfigError(format!(
                "--heartbeat-interval ({}) must be at most half of --lease-ttl ({}) so one lost heartbeat does not lose the lease",
                self.heartbeat_interval_s, self.lease_ttl_s
            )));
        }
        if self.max_queued_generations < 1 {
            return Err(ConfigError(
                "--max-queued-generations must be at least 1".into(),
            ));
        }
        if self.max_dataset_downloads == 0 {
            return Err(ConfigError(
                "--max-dataset-downloads must be at least 1".into(),
            ));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError(
                "--tls-cert and --tls-key must be given together".into(),
            ));
        }
        if self.tls_client_ca.is_some() && self.tls_cert.is_none() {
            return Err(ConfigError(
                "--tls-client-ca (mTLS) needs TLS: set --tls-cert and --tls-key too".into(),
            ));
        }
        for (name, t) in [
            ("POET_CLIENT_TOKEN", &self.client_token),
            ("POET_WORKER_TOKEN", &self.worker_token),
        ] {
            if let Some(t) = t {
                poet_core::secret::check_token(name, t).map_err(ConfigError)?;
            }
        }
        if let (Some(c), Some(w)) = (&self.client_token, &self.worker_token)
            && c == w
        {
            return Err(ConfigError(
                "the client and worker tokens must differ".into(),
            ));
        }
        let tokens = self.client_token.is_some() && self.worker_token.is_some();
        if !addr.ip().is_loopback() && !tokens {
            return Err(ConfigError(format!(
                "refusing to serve {addr} without tokens: set POET_CLIENT_TOKEN and POET_WORKER_TOKEN, or listen on 127.0.0.1"
            )));
        }
        // /metrics has no token of its own: off loopback it is for a cluster with tokens and a
        // network policy (deploy/k8s/base), never an open port on a shared network.
        if let Some(m) = self.metrics_listen
            && !m.ip().is_loopback()
            && !tokens
        {
            return Err(ConfigError(format!(
                "refusing to serve metrics on {m} without tokens: listen on 127.0.0.1, or set POET_CLIENT_TOKEN and POET_WORKER_TOKEN and keep the port on a private network"
            )));
        }
        if self.client_token.is_some() != self.worker_token.is_some() {
            return Err(ConfigError(
                "set both POET_CLIENT_TOKEN and POET_WORKER_TOKEN, or neither".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Args, FromArgMatches};

    /// `Default` and the flags agree: no flags parse to `CoordinatorConfig::default()`. The
    /// environment is switched off here, so a `POET_*` variable where the tests run cannot
    /// make a difference.
    #[test]
    fn default_is_what_no_flags_parse_to() {
        let cmd = CoordinatorConfig::augment_args(clap::Command::new("coordinator"))
            .mut_args(|a| a.env(None::<&'static str>));
        let matches = cmd
            .try_get_matches_from(["coordinator"])
            .expect("no flags parse");
        let parsed = CoordinatorConfig::from_arg_matches(&matches).expect("config");
        assert_eq!(parsed, CoordinatorConfig::default());
    }
}

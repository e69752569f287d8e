//! poet's Postgres layer: the schema (migrations in `sql/migrations/`), connecting with
//! migrations applied, and the private cluster used when no database URL is configured.
//!
//! # Layout
//! - [`MIGRATOR`] and [`connect`]: every service applies migrations at start; sqlx's migrator
//!   holds a Postgres advisory lock while it runs, so replicas starting together are safe.
//! - [`datasets`]: the read side of datasets (list, find, export, the split) for every reader.
//! - [`cluster`]: `initdb`/`pg_ctl` management of the private cluster.
//! - `testing` (feature `test-util`, and this crate's own tests): a real Postgres for tests,
//!   with a fresh database per test.
//!
//! # Queries
//! poet's SQL (in every crate) is runtime `sqlx::query`, not the checked `query!` macros, on
//! purpose: building needs no database and there is no `.sqlx/` offline cache to commit and
//! keep in step with the migrations. What the macros would check at build time, the tests
//! check instead: every query runs in the integration tests against a real Postgres with the
//! migrations applied ([`MIGRATOR`]; `testing` gives each test a fresh database).
//!
//! Values are always bind parameters (`$1`). `format!` builds SQL only from constants (a shared
//! column list or `select`), from a table name or condition a `match` picks from a fixed set,
//! or, where Postgres takes no parameters (DDL, `alter role … password`), from names, integer
//! ids and hex passwords the code made itself.

pub mod cluster;
pub mod datasets;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// The schema, embedded at compile time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The table that holds dataset `dataset_id`'s poems: `poems` is partitioned by dataset, one
/// table per dataset version (migration `0005`). Ingest creates it, loads it, builds its key
/// and attaches it; other writers call the SQL function `poems_partition(id)` first.
pub fn poems_partition(dataset_id: i64) -> String {
    format!("poems_{dataset_id}")
}

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The server did not accept a connection.
    #[error(
        "cannot connect to database {url}: {reason} (check POET_DATABASE_URL, or unset it to use the private cluster)"
    )]
    Connect {
        /// The URL with its password hidden.
        url: String,
        /// Short cause.
        reason: String,
    },
    /// Migrations failed.
    #[error("cannot apply migrations to {url}: {reason}")]
    Migrate {
        /// The URL with its password hidden.
        url: String,
        /// Short cause.
        reason: String,
    },
    /// The private cluster failed.
    #[error(transparent)]
    Cluster(#[from] cluster::ClusterError),
}

/// `url` with any password replaced by `***`, safe to log: the one in the user info
/// (`user:secret@`) and a `password=` query parameter (SECURITY.md, finding 12).
pub fn redact(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let base = match base.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
                None => base.to_string(),
            },
            None => base.to_string(),
        },
        None => base.to_string(),
    };
    match query {
        None => base,
        Some(q) => {
            let params: Vec<String> = q
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_string(),
                })
                .collect();
            format!("{base}?{}", params.join("&"))
        }
    }
}

/// Options for [`connect_with`].
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Pool size.
    pub max_connections: u32,
    /// How long to keep retrying the first connection (a server that is still starting).
    pub connect_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            max_connections: 16,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Connects to `url` and applies migrations.
pub async fn connect(url: &str) -> Result<PgPool, DbError> {
    connect_with(url, &ConnectOptions::default()).await
}

/// Connects with options and applies migrations.
///
/// Every connection runs with `jit = off`. poet's statements are short (a claim, an epoch
/// report, a page of history); Postgres compiles a statement whose estimated cost passes
/// `jit_above_cost` (100,000 by default), and when an early draft of the mixed-fleet claim
/// was estimated above it, compiling cost 250-370 ms per claim against ~1 ms to run it
/// (BENCHMARKS.md, "Mixed fleet"). The claim's estimate is kept low since, but a larger queue
/// or a new statement could cross the threshold again; with JIT off none can.
pub async fn connect_with(url: &str, opts: &ConnectOptions) -> Result<PgPool, DbError> {
    let shown = redact(url);
    let options = url
        .parse::<sqlx::postgres::PgConnectOptions>()
        .map_err(|e| DbError::Connect {
            url: shown.clone(),
            reason: short_reason(&e),
        })?
        .options([("jit", "off")]);
    let pool = PgPoolOptions::new()
        .max_connections(opts.max_connections)
        .acquire_timeout(opts.connect_timeout)
        .connect_with(options)
        .await
        .map_err(|e| DbError::Connect {
            url: shown.clone(),
            reason: short_reason(&e),
        })?;
    MIGRATOR.run(&pool).await.map_err(|e| DbError::Migrate {
        url: shown,
        reason: e.to_string(),
    })?;
    Ok(pool)
}

/// Whether `e` says the database is out of reach (down, restarting, out of connections)
/// rather than that the statement was wrong: worth retrying later, and what clients should be
/// told as "unavailable". Decided by type and SQLSTATE, never by message text.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            // Class 08: connection exception; admin_shutdown, crash_shutdown,
            // cannot_connect_now; too_many_connections.
            c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

fn short_reason(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Io(io) => io.to_string(),
        sqlx::Error::PoolTimedOut => "timed out".into(),
        sqlx::Error::Configuration(c) => format!("bad url: {c}"),
        other => other.to_string(),
    }
}

/// Where the database is: `POET_DATABASE_URL` if given, else the private cluster (started
/// if needed).
pub fn resolve_url(explicit: Option<&str>) -> Result<String, DbError> {
    match explicit {
        Some(u) if !u.is_empty() => Ok(u.to_string()),
        _ => Ok(cluster::PrivateCluster::default_location()
            .ensure_running()?
            .url()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_are_told_apart_from_bad_statements_by_type() {
        assert!(is_unavailable(&sqlx::Error::PoolTimedOut));
        assert!(is_unavailable(&sqlx::Error::PoolClosed));
        assert!(is_unavailable(&sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused
        ))));
        assert!(!is_unavailable(&sqlx::Error::RowNotFound));
        assert!(!is_unavailable(&sqlx::Error::ColumnNotFound("x".into())));
    }

    #[test]
    fn redact_hides_password_only() {
        assert_eq!(
            redact("postgres://u:secret@h:5/db"),
            "postgres://u:***@h:5/db"
        );
        assert_eq!(redact("postgres://u@h:5/db"), "postgres://u@h:5/db");
        assert_eq!(redact("nonsense"), "nonsense");
        assert_eq!(
            redact("postgres://u@h:5/db?sslmode=require&password=secret&x=1"),
            "postgres://u@h:5/db?sslmode=require&password=***&x=1"
        );
        assert_eq!(
            redact("postgres://u:a@h/db?PASSWORD=b"),
            "postgres://u:***@h/db?PASSWORD=***"
        );
    }
}

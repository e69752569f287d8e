//! A real Postgres for tests: one cluster per machine (reused across test processes and
//! runs), a fresh database per test with migrations applied.
//!
//! `POET_TEST_DATABASE_URL` (a server URL whose user may `CREATE DATABASE`) skips the
//! private test cluster; `./poet.sh test` uses the private one under `$TMPDIR/poet-test-postgres`.

use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::OnceCell;

use crate::cluster::PrivateCluster;

/// A fresh database.
#[derive(Debug, Clone)]
pub struct TestDb {
    /// Pool on the database, migrations applied.
    pub pool: PgPool,
    /// Its URL, for services started by the test.
    pub url: String,
    /// Its name.
    pub name: String,
}

static SERVER: OnceCell<String> = OnceCell::const_new();

/// URL of the test server's maintenance database (`postgres`).
pub async fn server_url() -> String {
    SERVER
        .get_or_init(|| async {
            if let Ok(u) = std::env::var("POET_TEST_DATABASE_URL") {
                return u;
            }
            // Named apart from `poet-test-pg`, the trust-authenticated cluster of poet before
            // SECURITY.md, so that older checkouts on the same machine keep their own.
            let root = std::env::temp_dir().join("poet-test-postgres");
            let info =
                tokio::task::spawn_blocking(move || PrivateCluster::at(root).ensure_running())
                    .await
                    .expect("join")
                    .unwrap_or_else(|e| panic!("test postgres: {e}"));
            let url = info.url_for("postgres");
            drop_stale_databases(&url).await;
            url
        })
        .await
        .clone()
}

/// `name` quoted as an SQL identifier. `create`/`drop database` take no bind parameters, so
/// the database names (ours, `t_<secs>_<hex>`, or listed by the server) are formatted in.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Test databases older than this are dropped when a test process first uses the cluster.
const STALE_AFTER_S: u64 = 3600;

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The private cluster outlives test runs, and every test makes a database: drop the ones an
/// earlier process made over an hour ago (`t_<unix seconds>_<id>`; the older `t_<uuid>` names
/// too), at most 300 per process. Best effort: a database still in use is left alone.
async fn drop_stale_databases(server: &str) {
    let Ok(mut conn) = PgConnection::connect(server).await else {
        return;
    };
    let names: Vec<String> =
        sqlx::query_scalar("select datname from pg_database where datname like 't\\_%'")
            .fetch_all(&mut conn)
            .await
            .unwrap_or_default();
    let cutoff = now_s().saturating_sub(STALE_AFTER_S);
    let stale = names.into_iter().filter(|n| {
        let mut parts = n.split('_').skip(1);
        match (parts.next(), parts.next()) {
            (Some(secs), Some(_)) => secs.parse::<u64>().is_ok_and(|t| t < cutoff),
            (Some(id), None) => id.len() == 32,
            _ => false,
        }
    });
    for name in stale.take(300) {
        let _ = sqlx::query(&format!("drop database if exists {}", ident(&name)))
            .execute(&mut conn)
            .await;
    }
    conn.close().await.ok();
}

/// Drops a test database (its pools must be closed), e.g. at the end of a benchmark that
/// filled it.
pub async fn drop_db(name: &str) {
    let server = server_url().await;
    if let Ok(mut conn) = PgConnection::connect(&server).await {
        let _ = sqlx::query(&format!(
            "drop database if exists {} with (force)",
            ident(name)
        ))
        .execute(&mut conn)
        .await;
        conn.close().await.ok();
    }
}

/// The URL of database `name` on the test server.
pub async fn database_url(name: &str) -> String {
    let server = server_url().await;
    let base = server.rsplit_once('/').map(|(b, _)| b).unwrap_or(&server);
    format!("{base}/{name}")
}

/// Creates an empty database (no migrations) and returns its URL.
pub async fn empty_db() -> (String, String) {
    let server = server_url().await;
    // The creation time in the name lets a later process drop it (`drop_stale_databases`).
    let name = format!(
        "t_{}_{}",
        now_s(),
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    // 50 ms doubling up to 3.2 s, jittered: many test processes start at once.
    let mut backoff = poet_core::retry::Backoff::new(
        std::time::Duration::from_millis(50),
        std::time::Duration::from_millis(3200),
    );
    let mut attempt = 0;
    let mut conn = loop {
        match PgConnection::connect(&server).await {
            Ok(c) => break c,
            Err(e) if attempt < 8 => {
                attempt += 1;
                tracing::debug!(error = %e, "test postgres not ready");
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Err(e) => panic!("cannot reach test postgres at {server}: {e}"),
        }
    };
    sqlx::query(&format!("create database {}", ident(&name)))
        .execute(&mut conn)
        .await
        .expect("create database");
    conn.close().await.ok();
    (database_url(&name).await, name)
}

/// A fresh database with migrations applied.
pub async fn fresh_db() -> TestDb {
    let (url, name) = empty_db().await;
    let pool = crate::connect(&url)
        .await
        .expect("connect to fresh test database");
    TestDb { pool, url, name }
}

/// Inserts a ready dataset `name` (version 1) holding `poems` (unframed), spread over 4 shards
/// with shard 0 held out for validation; returns its id. For tests that need a dataset
/// without running an ingest.
pub async fn seed_dataset(pool: &PgPool, name: &str, poems: &[&str]) -> Result<i64, sqlx::Error> {
    let id: i64 = sqlx::query_scalar(
        "insert into datasets (name, version, content_hash, params_hash, params, counts, poems, chars, vocab, shards, validation_shards, state)
         values ($1, 1, md5($1 || random()::text), 'p', '{}', '{}', $2, 0, '', 4, '{0}', 'ready') returning id",
    )
    .bind(name)
    .bind(poems.len() as i64)
    .fetch_one(pool)
    .await?;
    sqlx::query("select poems_partition($1)")
        .bind(id)
        .execute(pool)
        .await?;
    for (i, p) in poems.iter().enumerate() {
        sqlx::query("insert into poems (dataset_id, shard, source_id, dedupe_key, text) values ($1, $2, $3, $4, $5)")
            .bind(id)
            .bind((i % 4) as i32)
            .bind(format!("src-{i}"))
            .bind(format!("key-{i}"))
            .bind(format!("++++\n{p}\n"))
            .execute(pool)
            .await?;
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn exists(conn: &mut PgConnection, name: &str) -> bool {
        sqlx::query_scalar::<_, bool>(
            "select exists (select 1 from pg_database where datname = $1)",
        )
        .bind(name)
        .fetch_one(conn)
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn test_databases_older_than_an_hour_are_dropped_and_new_ones_kept() {
        let server = server_url().await;
        let (_, fresh) = empty_db().await;
        let old = format!("t_{}_{}", now_s() - 2 * STALE_AFTER_S, "0123456789ab");
        let mut conn = PgConnection::connect(&server).await.unwrap();
        sqlx::query(&format!("create database {}", ident(&old)))
            .execute(&mut conn)
            .await
            .unwrap();
        drop_stale_databases(&server).await;
        assert!(!exists(&mut conn, &old).await, "{old} is stale");
        assert!(exists(&mut conn, &fresh).await, "{fresh} is new");
        drop_db(&fresh).await;
        assert!(!exists(&mut conn, &fresh).await);
    }
}

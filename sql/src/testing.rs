//! A real Postgres for tests: one cluster per machine (reused across test processes and
//! runs), a fresh database per test with migrations applied.
//!
//! `POET_TEST_DATABASE_URL` (a server URL whose user may `CREATE DATABASE`) skips the
//! private test cluster; `make test` uses the private one under `$TMPDIR/poet-test-pg`.

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
            let root = std::env::temp_dir().join("poet-test-pg");
            let info =
                tokio::task::spawn_blocking(move || PrivateCluster::at(root).ensure_running())
                    .await
                    .expect("join")
                    .unwrap_or_else(|e| panic!("test postgres: {e}"));
            format!("postgres://poet@127.0.0.1:{}/postgres", info.port)
        })
        .await
        .clone()
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
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut attempt = 0;
    let mut conn = loop {
        match PgConnection::connect(&server).await {
            Ok(c) => break c,
            Err(e) if attempt < 8 => {
                attempt += 1;
                tracing::debug!(error = %e, "test postgres not ready");
                tokio::time::sleep(crate::backoff(attempt)).await;
            }
            Err(e) => panic!("cannot reach test postgres at {server}: {e}"),
        }
    };
    sqlx::query(&format!("create database {name}"))
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

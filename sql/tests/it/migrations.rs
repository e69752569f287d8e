//! The schema applies to an empty database, re-applies as a no-op, and survives two
//! services migrating the same empty database at once.

use poet_sql::testing;

async fn table_names(pool: &sqlx::PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "select table_name::text from information_schema.tables where table_schema = 'public' order by 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn migrations_apply_to_empty_database_and_reapply_as_noop() {
    let db = testing::fresh_db().await;
    let tables = table_names(&db.pool).await;
    for t in [
        "datasets",
        "poems",
        "sweeps",
        "runs",
        "epochs",
        "checkpoints",
        "workers",
        "generations",
        "generated_poems",
    ] {
        assert!(
            tables.contains(&t.to_string()),
            "missing table {t}: {tables:?}"
        );
    }
    let applied: i64 = sqlx::query_scalar("select count(*) from _sqlx_migrations")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(applied as usize, poet_sql::MIGRATOR.iter().count());
    // Second connect re-runs the migrator: nothing new.
    let again = poet_sql::connect(&db.url).await.unwrap();
    let applied2: i64 = sqlx::query_scalar("select count(*) from _sqlx_migrations")
        .fetch_one(&again)
        .await
        .unwrap();
    assert_eq!(applied, applied2);
    assert_eq!(tables, table_names(&again).await);
}

#[tokio::test]
async fn concurrent_migrations_leave_one_schema() {
    let (url, _) = testing::empty_db().await;
    let mut handles = Vec::new();
    for _ in 0..4 {
        let u = url.clone();
        handles.push(tokio::spawn(async move {
            poet_sql::connect(&u).await.map(|_| ())
        }));
    }
    for h in handles {
        h.await.unwrap().expect("every concurrent start succeeds");
    }
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let applied: i64 = sqlx::query_scalar("select count(*) from _sqlx_migrations where success")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(applied as usize, poet_sql::MIGRATOR.iter().count());
    assert!(table_names(&pool).await.contains(&"runs".to_string()));
}

#[tokio::test]
async fn run_state_is_enforced_by_the_schema() {
    let db = testing::fresh_db().await;
    let err = sqlx::query("insert into runs (sweep_id, dataset_id, config, config_hash, state, epochs_total) values (1, 1, '{}', 'h', 'bogus', 1)")
        .execute(&db.pool)
        .await
        .unwrap_err();
    // 23514 check_violation or 23503 fk violation both prove the row is refused; check the state check directly.
    let code = err
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.to_string());
    assert!(
        matches!(code.as_deref(), Some("23514") | Some("23503")),
        "{err}"
    );
}

#[tokio::test]
async fn deleting_a_dataset_deletes_its_poems_and_only_its_poems() {
    let db = testing::fresh_db().await;
    let gone = testing::seed_dataset(&db.pool, "gone", &["a poem", "another"])
        .await
        .unwrap();
    let kept = testing::seed_dataset(&db.pool, "kept", &["a third"])
        .await
        .unwrap();
    sqlx::query("delete from datasets where id = $1")
        .bind(gone)
        .execute(&db.pool)
        .await
        .unwrap();
    let left: Vec<i64> = sqlx::query_scalar("select dataset_id from poems")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(left, vec![kept]);
    // Its partition is dropped, not left empty.
    let tables: Vec<Option<String>> =
        sqlx::query_scalar("select to_regclass(t)::text from unnest($1::text[]) t")
            .bind([
                poet_sql::poems_partition(gone),
                poet_sql::poems_partition(kept),
            ])
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(tables, [None, Some(poet_sql::poems_partition(kept))]);
}

/// The migrator over the shipped migrations whose names sort before `before`.
async fn migrations_before(before: &str, dir: &std::path::Path) -> sqlx::migrate::Migrator {
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    for entry in std::fs::read_dir(&shipped).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.as_str() < before {
            std::fs::copy(&path, dir.join(&name)).unwrap();
        }
    }
    sqlx::migrate::Migrator::new(dir).await.unwrap()
}

#[tokio::test]
async fn upgrading_to_0011_fills_the_run_summaries_from_the_epochs() {
    let (url, _) = testing::empty_db().await;
    let old = tempfile::tempdir().unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    migrations_before("0011", old.path())
        .await
        .run(&pool)
        .await
        .unwrap();
    for sql in [
        "insert into datasets (id, name, version, content_hash, params_hash, params, counts, poems, chars, vocab, shards, validation_shards, state)
         values (1, 'a', 1, 'a', 'p', '{}', '{}', 0, 0, '', 1, '{0}', 'ready')",
        "insert into sweeps (id, name, dataset_id, spec, spec_format) values (1, 's', 1, '', 'toml')",
        "insert into runs (id, sweep_id, dataset_id, config, config_hash, epochs_total, epochs_done)
         values (1, 1, 1, '{}', 'h1', 3, 3), (2, 1, 1, '{}', 'h2', 3, 0)",
        "insert into epochs (run_id, epoch, attempt, train_loss, val_loss, duration_s, chars_per_sec, metrics)
         values (1, 1, 1, 2, 2, 1.5, 100, '{\"e\": 1}'), (1, 2, 1, 2, 2, 2.5, 200, '{\"e\": 2}'),
                (1, 3, 1, 2, 2, 0.5, 300, '{\"e\": 3}')",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    let upgraded = poet_sql::connect(&url).await.unwrap();
    type Summary = (i64, Option<f64>, Option<f64>, Option<serde_json::Value>);
    let rows: Vec<Summary> = sqlx::query_as(
        "select id, total_duration_s, last_chars_per_sec, last_metrics from runs order by id",
    )
    .fetch_all(&upgraded)
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![
            (1, Some(4.5), Some(300.0), Some(serde_json::json!({"e": 3}))),
            (2, None, None, None),
        ]
    );
}

#[tokio::test]
async fn upgrading_from_0004_moves_poems_into_per_dataset_partitions() {
    // A database as the schema stood at migration 0004, holding two datasets' poems.
    let (url, _) = testing::empty_db().await;
    let old = tempfile::tempdir().unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let at_0004 = migrations_before("0005", old.path()).await;
    assert_eq!(at_0004.iter().count(), 4);
    at_0004.run(&pool).await.unwrap();
    let mut ids = Vec::new();
    for (name, poems) in [("a", 3), ("b", 2)] {
        let id: i64 = sqlx::query_scalar(
            "insert into datasets (name, version, content_hash, params_hash, params, counts, poems, chars, vocab, shards, validation_shards, state)
             values ($1, 1, $1, 'p', '{}', '{}', $2, 0, '', 4, '{0}', 'ready') returning id",
        )
        .bind(name)
        .bind(poems as i64)
        .fetch_one(&pool)
        .await
        .unwrap();
        for i in 0..poems {
            sqlx::query("insert into poems (dataset_id, shard, source_id, dedupe_key, text, meta) values ($1, $2, $3, $4, $5, '{\"t\": 1}')")
                .bind(id)
                .bind(i)
                .bind(format!("{name}-{i}"))
                .bind(format!("k{i}"))
                .bind(format!("++++\n{name} {i}\n"))
                .execute(&pool)
                .await
                .unwrap();
        }
        ids.push(id);
    }
    let before: Vec<(i64, String, i32, String, String)> = sqlx::query_as(
        "select dataset_id, dedupe_key, shard, source_id, text from poems order by 1, 2",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(before.len(), 5);

    // The service's migrator applies 0005 on top.
    let upgraded = poet_sql::connect(&url).await.unwrap();
    let after: Vec<(i64, String, i32, String, String)> = sqlx::query_as(
        "select dataset_id, dedupe_key, shard, source_id, text from poems order by 1, 2",
    )
    .fetch_all(&upgraded)
    .await
    .unwrap();
    assert_eq!(after, before);
    let partitions: Vec<String> = sqlx::query_scalar(
        "select inhrelid::regclass::text from pg_inherits where inhparent = 'poems'::regclass order by 1",
    )
    .fetch_all(&upgraded)
    .await
    .unwrap();
    assert_eq!(
        partitions,
        ids.iter()
            .map(|&id| poet_sql::poems_partition(id))
            .collect::<Vec<_>>()
    );
    let in_a: i64 = sqlx::query_scalar(&format!(
        "select count(*) from {}",
        poet_sql::poems_partition(ids[0])
    ))
    .fetch_one(&upgraded)
    .await
    .unwrap();
    assert_eq!(in_a, 3);
    // The key still holds: a second copy of a key in a dataset is refused.
    let dup = sqlx::query("insert into poems (dataset_id, shard, source_id, dedupe_key, text) values ($1, 0, 'x', 'k0', 'x')")
        .bind(ids[0])
        .execute(&upgraded)
        .await
        .unwrap_err();
    assert_eq!(
        dup.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("23505"),
        "{dup}"
    );
}

#[tokio::test]
async fn unreachable_url_is_a_one_line_error() {
    let e = poet_sql::connect_with(
        "postgres://poet:hunter2@127.0.0.1:1/poet",
        &poet_sql::ConnectOptions {
            max_connections: 1,
            connect_timeout: std::time::Duration::from_secs(2),
        },
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("cannot connect to database"), "{e}");
    assert!(!e.contains("hunter2"), "password leaked: {e}");
    assert!(!e.contains('\n'), "{e}");
}

/// Every connection poet opens runs without JIT compilation (`sql/src/lib.rs`,
/// `connect_with`): a plain connection to the same database still has the server's default.
#[tokio::test]
async fn poet_connections_run_with_jit_off() {
    let db = testing::fresh_db().await;
    let pool = poet_sql::connect(&db.url).await.unwrap();
    for _ in 0..3 {
        let jit: String = sqlx::query_scalar("show jit")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(jit, "off");
    }
    let plain = sqlx::PgPool::connect(&db.url).await.unwrap();
    let server: String = sqlx::query_scalar("show jit")
        .fetch_one(&plain)
        .await
        .unwrap();
    assert_eq!(server, "on", "the server's default, untouched");
}

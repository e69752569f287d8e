//! The `poet` binary as a user runs it: tables, --json, exit codes and one-line errors,
//! against a real coordinator on a fresh database.

use std::process::{Command, Output};

use poet_coordinator::CoordinatorConfig;
use poet_coordinator::testing::TestCoordinator;

fn poet(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_poet"));
    c.args(args)
        .env_remove("POET_DATABASE_URL")
        .env_remove("POET_COORDINATOR")
        .env("NO_COLOR", "1");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run poet")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn assert_one_line_error(o: &Output, code: i32, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert!(err.contains(needle), "{needle:?} not in: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("stack backtrace"),
        "{err}"
    );
    assert_eq!(
        err.trim_end()
            .lines()
            .filter(|l| l.starts_with("error:"))
            .count(),
        1,
        "{err}"
    );
}

/// A coordinator on a fresh database holding a ready dataset `tiny` (with no poems).
async fn stack() -> TestCoordinator {
    let coordinator = TestCoordinator::start(CoordinatorConfig::default(), None).await;
    let db = &coordinator.db;
    sqlx::query(
        "insert into datasets (name, version, content_hash, params_hash, params, counts, poems, chars, vocab, shards, validation_shards, state)
         values ('tiny', 1, 'h', 'p', '{}', '{}', 2, 10, 'ab', 4, '{0}', 'ready')",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    coordinator
}

async fn run_blocking(args: Vec<String>, env: Vec<(String, String)>) -> Output {
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let e: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        poet(&a, &e)
    })
    .await
    .unwrap()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_runs_tables_json_and_exit_codes() {
    let s = stack().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("sweep.toml");
    std::fs::write(
        &spec,
        "dataset = \"tiny\"\n[base]\nunits = 8\nepochs = 2\n[grid]\nlayers = [1, 2, 3]\n",
    )
    .unwrap();
    let spec_s = spec.display().to_string();
    let env = vec![("POET_COORDINATOR".to_string(), s.url())];

    let o = run_blocking(strings(&["sweep", "submit", &spec_s]), env.clone()).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("3 new run(s)"), "{}", stdout(&o));

    let o = run_blocking(strings(&["runs", "list"]), env.clone()).await;
    let table = stdout(&o);
    assert!(table.starts_with("RUN"), "{table}");
    assert_eq!(table.lines().count(), 4, "{table}");
    assert!(
        table.contains("layers=2") && table.contains("queued"),
        "{table}"
    );

    let o = run_blocking(
        strings(&["runs", "list", "--json", "--where", "layers=2"]),
        env.clone(),
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["config"]["layers"], 2);
    assert_eq!(v[0]["state"], "queued");

    let o = run_blocking(strings(&["runs", "compare", "1", "2"]), env.clone()).await;
    assert!(stdout(&o).contains("* layers"), "{}", stdout(&o));

    // Resubmitting pays nothing twice.
    let o = run_blocking(
        strings(&["sweep", "submit", &spec_s, "--json"]),
        env.clone(),
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (
            v["created"].as_array().unwrap().len(),
            v["existing"].as_array().unwrap().len()
        ),
        (0, 3)
    );

    // Bad spec: exit 2, the field and the file named.
    std::fs::write(&spec, "dataset = \"tiny\"\n[grid]\nlayers = [0]\n").unwrap();
    let o = run_blocking(strings(&["sweep", "submit", &spec_s]), env.clone()).await;
    assert_one_line_error(&o, 2, "layers");
    assert!(stderr(&o).contains("sweep.toml"));

    let o = run_blocking(strings(&["runs", "show", "9999"]), env.clone()).await;
    assert_one_line_error(&o, 3, "no run 9999");

    let o = run_blocking(
        strings(&["generate", "--run", "1", "--wait", "1"]),
        env.clone(),
    )
    .await;
    assert_one_line_error(&o, 5, "no checkpoint");

    let o = run_blocking(strings(&["runs", "cancel", "1"]), env.clone()).await;
    assert!(
        stdout(&o).contains("1 queued run(s) cancelled"),
        "{}",
        stdout(&o)
    );
    let n: i64 = sqlx::query_scalar("select count(*) from runs where state = 'cancelled'")
        .fetch_one(&s.db.pool)
        .await
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn coordinator_down_is_exit_4_with_a_hint() {
    let o = poet(
        &["runs", "list"],
        &[("POET_COORDINATOR", "http://127.0.0.1:1")],
    );
    assert_one_line_error(&o, 4, "cannot reach the coordinator");
    assert!(stderr(&o).contains("poet up"));
}

#[test]
fn port_in_use_is_one_line() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    let o = poet(&["coordinator", "--listen", &addr], &[]);
    assert_one_line_error(&o, 4, "Address already in use");
}

#[test]
fn unreachable_database_is_one_line_and_hides_the_password() {
    let o = poet(
        &["coordinator", "--listen", "127.0.0.1:0"],
        &[(
            "POET_DATABASE_URL",
            "postgres://poet:s3cret-pw@127.0.0.1:1/poet",
        )],
    );
    assert_one_line_error(&o, 4, "cannot connect to database");
    assert!(!stderr(&o).contains("s3cret-pw"), "{}", stderr(&o));
}

#[test]
fn missing_postgres_binaries_say_how_to_install() {
    let home = tempfile::tempdir().unwrap();
    let o = poet(
        &["db", "start"],
        &[
            ("POET_PG_BIN", "/nonexistent"),
            ("POET_HOME", &home.path().display().to_string()),
        ],
    );
    assert_one_line_error(&o, 4, "apt-get install postgresql");
}

#[test]
fn public_address_without_tokens_is_refused() {
    let o = poet(
        &["coordinator", "--listen", "0.0.0.0:0"],
        &[("POET_DATABASE_URL", "postgres://x@127.0.0.1:1/x")],
    );
    assert_one_line_error(&o, 2, "without tokens");
}

#[test]
fn every_command_has_help_with_an_example() {
    for cmd in [
        "db", "up", "down", "ingest", "dataset", "sweep", "runs", "workers", "generate", "poems",
        "words", "plot",
    ] {
        let o = poet(&["help", cmd], &[]);
        assert!(o.status.success(), "{cmd}");
        let _ = stdout(&o);
    }
    let top = stdout(&poet(&["--help"], &[]));
    for cmd in ["sweep", "runs", "generate", "plot", "up"] {
        assert!(top.contains(cmd), "{cmd} missing from --help");
    }
    assert!(top.contains("Example:"), "{top}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_refuses_inputs_without_poems_and_lists_rejects_by_reason() {
    let db = poet_sql::testing::fresh_db().await;
    let env = vec![("POET_DATABASE_URL".to_string(), db.url.clone())];
    let dir = tempfile::tempdir().unwrap();
    // Before: an empty file printed `created poetry@1` and exited 0.
    let empty = dir.path().join("empty.ndjson");
    std::fs::write(&empty, b"").unwrap();
    let o = run_blocking(
        strings(&["ingest", "--no-progress", &empty.display().to_string()]),
        env.clone(),
    )
    .await;
    assert_one_line_error(&o, 2, "looks like an empty file");
    assert!(stderr(&o).contains("nothing stored"), "{}", stderr(&o));

    let mut dump = String::new();
    let poem = "<p>The harbour lights come on at four<br />\nand lean across the water,<br />\na ferry coughs beside the shore,<br />\na gull complains of slaughter.</p>";
    let wrapped = "<p>When the committee finally met, the chairman opened the minutes of<br />\nthe previous session and read them aloud in a voice so level that<br />\nseveral members later claimed to have slept through the entire item<br />\non drainage, which was a pity, because the drainage item contained<br />\nthe only decision of the year.</p>";
    for (id, content) in [("1-p-1", poem), ("1-p-2", wrapped)] {
        dump += &serde_json::json!({"_id": id, "_source": {"content": content}}).to_string();
        dump.push('\n');
    }
    dump += "not json\n";
    let path = dir.path().join("dump.ndjson");
    std::fs::write(&path, dump).unwrap();
    let o = run_blocking(
        strings(&["ingest", "--no-progress", &path.display().to_string()]),
        env.clone(),
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("by reason    hard_wrapped 1"),
        "{}",
        stdout(&o)
    );

    let o = run_blocking(strings(&["dataset", "rejects", "poetry@1"]), env.clone()).await;
    let out = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        out.contains("hard_wrapped") && out.contains("malformed"),
        "{out}"
    );
    let o = run_blocking(
        strings(&[
            "dataset",
            "rejects",
            "poetry@1",
            "--reason",
            "hard_wrapped",
            "--json",
        ]),
        env.clone(),
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let rows = v["rejects"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0]["source_id"].as_str(), rows[0]["line"].as_i64()),
        (Some("1-p-2"), Some(2))
    );
    assert!(
        rows[0]["measures"]["why"]
            .as_str()
            .unwrap()
            .starts_with("hard_wrapped: ")
    );
    let o = run_blocking(
        strings(&["dataset", "rejects", "poetry@1", "--reason", "list"]),
        env.clone(),
    )
    .await;
    assert_one_line_error(&o, 3, "has no rejects with reason 'list'");

    let o = run_blocking(
        strings(&[
            "ingest",
            "--explain",
            "--no-progress",
            &path.display().to_string(),
        ]),
        env,
    )
    .await;
    let out = stdout(&o);
    assert!(
        out.contains("left out (samples") && out.contains("1-p-2"),
        "{out}"
    );
}

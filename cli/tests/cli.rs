//! The `poet` binary as a user runs it: tables, --json, exit codes and one-line errors,
//! against a real coordinator on a fresh database.

use std::process::{Command, Output, Stdio};

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

/// Runs poet with its stdout a pipe whose reader is already gone (`poet ... | head` after
/// `head` exits).
fn poet_into_closed_pipe(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_poet"));
    c.args(args)
        .env_remove("POET_DATABASE_URL")
        .env_remove("POET_COORDINATOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().expect("run poet");
    // Closed before poet has parsed its flags, so its first write fails.
    drop(child.stdout.take());
    child.wait_with_output().expect("wait for poet")
}

fn assert_quiet_success(o: &Output, what: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(0), "{what}: {err}");
    assert!(err.is_empty(), "{what} wrote to stderr: {err}");
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

/// `dir/sweep.toml`: a grid over `layers` (a TOML list) on the dataset `tiny`.
fn grid_spec(dir: &std::path::Path, layers: &str) -> std::path::PathBuf {
    let spec = dir.join("sweep.toml");
    std::fs::write(
        &spec,
        format!("dataset = \"tiny\"\n[base]\nunits = 8\nepochs = 2\n[grid]\nlayers = {layers}\n"),
    )
    .unwrap();
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_runs_tables_json_and_exit_codes() {
    let s = stack().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = grid_spec(dir.path(), "[1, 2, 3]");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_list_filters_orders_and_pages() {
    let s = stack().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = grid_spec(dir.path(), "[1, 2, 3]");
    let env = vec![("POET_COORDINATOR".to_string(), s.url())];
    let o = run_blocking(
        strings(&["sweep", "submit", &spec.display().to_string()]),
        env.clone(),
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));

    let args = [
        "runs",
        "list",
        "--json",
        "--filter",
        "layers >= 2 and formulation = 'keras'",
        "--order-by",
        "-layers",
        "--limit",
        "1",
    ];
    let o = run_blocking(strings(&args), env.clone()).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["config"]["layers"], 3);
    let err = stderr(&o);
    let token = err
        .lines()
        .find_map(|l| l.strip_prefix("next page: --page-token "))
        .unwrap_or_else(|| panic!("no next page token: {err}"))
        .to_string();
    let mut next = strings(&args);
    next.extend(strings(&["--page-token", &token]));
    let o = run_blocking(next, env.clone()).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v[0]["config"]["layers"], 2);
    assert!(
        !stderr(&o).contains("next page"),
        "last page: {}",
        stderr(&o)
    );

    let o = run_blocking(
        strings(&["runs", "list", "--filter", "layers >= and"]),
        env.clone(),
    )
    .await;
    assert_one_line_error(&o, 2, "--filter: expected a value");
    assert!(
        stderr(&o).contains("at column 11\n  layers >= and\n            ^"),
        "{}",
        stderr(&o)
    );
    let o = run_blocking(strings(&["runs", "list", "--order-by", "loss"]), env).await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("unknown field 'loss'"),
        "{}",
        stderr(&o)
    );
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
        "db",
        "up",
        "down",
        "ingest",
        "datasets",
        "dataset",
        "sweeps",
        "sweep",
        "runs",
        "workers",
        "generate",
        "poems",
        "words",
        "plot",
        "completions",
        "man",
    ] {
        let o = poet(&["help", cmd], &[]);
        assert!(o.status.success(), "{cmd}");
        let _ = stdout(&o);
    }
    let top = stdout(&poet(&["--help"], &[]));
    for cmd in ["sweeps", "runs", "generate", "plot", "up", "completions"] {
        assert!(top.contains(cmd), "{cmd} missing from --help");
    }
    // The singular spellings stay, shown as aliases.
    assert!(
        top.contains("[alias: sweep]") && top.contains("[alias: dataset]"),
        "{top}"
    );
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

    // Export: -q keeps stderr for warnings and errors; a closed pipe is a quiet success.
    let corpus = dir.path().join("corpus.txt").display().to_string();
    let o = run_blocking(
        strings(&["datasets", "export", "poetry@1", "-o", &corpus]),
        env.clone(),
    )
    .await;
    assert!(stderr(&o).starts_with("wrote "), "{}", stderr(&o));
    let o = run_blocking(
        strings(&["-q", "datasets", "export", "poetry@1", "-o", &corpus]),
        env.clone(),
    )
    .await;
    assert_quiet_success(&o, "datasets export -q");
    let db_url = db.url.clone();
    let o = tokio::task::spawn_blocking(move || {
        poet_into_closed_pipe(
            &["datasets", "export", "poetry@1"],
            &[("POET_DATABASE_URL", &db_url)],
        )
    })
    .await
    .unwrap();
    assert_quiet_success(&o, "datasets export into a closed pipe");
    let o = run_blocking(strings(&["datasets", "show", "poetry@7"]), env.clone()).await;
    assert_one_line_error(&o, 3, "no such dataset");

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_pipes_colour_and_hostile_text() {
    let s = stack().await;
    let dir = tempfile::tempdir().unwrap();
    let spec_s = grid_spec(dir.path(), "[1, 2]").display().to_string();
    let url = s.url();
    let env = vec![("POET_COORDINATOR".to_string(), url.clone())];
    // A sweep name with a screen-clearing escape and a title-setting OSC.
    let o = run_blocking(
        strings(&[
            "sweeps",
            "submit",
            &spec_s,
            "--name",
            "evil\x1b[2J\x1b]0;pwned\x07name",
        ]),
        env.clone(),
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("(evilname)"), "{}", stdout(&o));

    // POET_JSON takes the usual spellings of a boolean.
    for on in ["1", "true", "yes", "on"] {
        let mut e = env.clone();
        e.push(("POET_JSON".into(), on.into()));
        let o = run_blocking(strings(&["runs", "list"]), e).await;
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|_| panic!("POET_JSON={on}: {}{}", stdout(&o), stderr(&o)));
        assert_eq!(v.as_array().unwrap().len(), 2);
    }
    for off in ["0", "false", "no", "off"] {
        let mut e = env.clone();
        e.push(("POET_JSON".into(), off.into()));
        let o = run_blocking(strings(&["runs", "list"]), e).await;
        assert!(
            stdout(&o).starts_with("RUN"),
            "POET_JSON={off}: {}",
            stderr(&o)
        );
    }
    // The old singular spelling still works.
    let o = run_blocking(strings(&["sweep", "list", "--json"]), env.clone()).await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(
        v[0]["name"], "evil\x1b[2J\x1b]0;pwned\x07name",
        "JSON keeps the data"
    );
    let o = run_blocking(strings(&["sweeps", "list"]), env.clone()).await;
    assert!(!stdout(&o).contains('\x1b'), "{:?}", stdout(&o));

    // Typed flags: a state the queue does not have is refused before any call.
    let o = run_blocking(strings(&["runs", "list", "--state", "done"]), env.clone()).await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("possible values"), "{}", stderr(&o));
    let o = run_blocking(
        strings(&[
            "runs",
            "list",
            "--state",
            "queued",
            "--order-by",
            "best_val_loss",
        ]),
        env.clone(),
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));

    // `poet runs list --json | head`: no panic, no message, success.
    let u = url.clone();
    let o = tokio::task::spawn_blocking(move || {
        poet_into_closed_pipe(&["runs", "list", "--json"], &[("POET_COORDINATOR", &u)])
    })
    .await
    .unwrap();
    assert_quiet_success(&o, "runs list --json into a closed pipe");

    // Colour: never into a pipe by default or with NO_COLOR, on with --color always; the
    // coloured table stays aligned.
    let o = run_blocking(strings(&["runs", "compare", "1", "2"]), env.clone()).await;
    assert!(!stdout(&o).contains('\x1b'), "{:?}", stdout(&o));
    let o = run_blocking(
        strings(&["runs", "compare", "1", "2", "--color", "always"]),
        env.clone(),
    )
    .await;
    let table = stdout(&o);
    assert!(table.contains("\x1b[1;33m* layers\x1b[0m"), "{table:?}");
    let plain = table.replace("\x1b[1;33m", "").replace("\x1b[0m", "");
    let header_col = plain.lines().next().unwrap().find("RUN 1").unwrap();
    let row = plain.lines().find(|l| l.starts_with("* layers")).unwrap();
    let value_col = "* layers".len() + row["* layers".len()..].find(|c: char| c != ' ').unwrap();
    assert_eq!(header_col, value_col, "{plain}");

    // Text from other machines loses its control sequences: a worker's host, a run's error.
    sqlx::query("insert into workers (host, device) values ($1, 'cpu')")
        .bind("host\x1b[31m-red\u{9b}2J")
        .execute(&s.db.pool)
        .await
        .unwrap();
    sqlx::query("update runs set error = $1 where id = 1")
        .bind("boom\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\\nline two\r")
        .execute(&s.db.pool)
        .await
        .unwrap();
    let o = run_blocking(strings(&["workers"]), env.clone()).await;
    assert!(stdout(&o).contains("host-red"), "{:?}", stdout(&o));
    assert!(!stdout(&o).contains('\x1b') && !stdout(&o).contains('\u{9b}'));
    let o = run_blocking(strings(&["runs", "show", "1"]), env.clone()).await;
    assert!(
        stdout(&o).contains("error: boomlink\nline two\n"),
        "{:?}",
        stdout(&o)
    );
    assert!(!stdout(&o).contains('\x1b'), "{:?}", stdout(&o));
}

#[test]
fn poet_json_reaches_commands_that_printed_plain_text() {
    let url = ("POET_DATABASE_URL", "postgres://poet@127.0.0.1:1/poet");
    let o = poet(&["db", "url"], &[url, ("POET_JSON", "1")]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["url"], url.1);
    let o = poet(&["db", "url"], &[url, ("POET_JSON", "off")]);
    assert_eq!(stdout(&o).trim(), url.1);
    let o = poet(&["db", "url"], &[url, ("POET_JSON", "maybe")]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("maybe"), "{}", stderr(&o));
}

#[test]
fn completions_and_the_man_page() {
    let o = poet(&["completions", "bash"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let script = stdout(&o);
    assert!(
        script.contains("_poet()") && script.contains("sweeps"),
        "{script}"
    );
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let o = poet(&["completions", shell], &[]);
        assert!(o.status.success() && !o.stdout.is_empty(), "{shell}");
    }
    let o = poet(&["completions", "tcsh"], &[]);
    assert_eq!(o.status.code(), Some(2));

    let o = poet(&["man"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let page = stdout(&o);
    assert!(
        page.starts_with(".ie") || page.contains(".TH poet"),
        "{page}"
    );
    assert!(page.contains("completions"), "{page}");

    for args in [&["completions", "bash"][..], &["man"], &["--help"]] {
        let o = poet_into_closed_pipe(args, &[]);
        assert_quiet_success(&o, &args.join(" "));
    }
}

/// `poet runs tag|untag|note`, `poet sweeps tag|note`: shown in `runs list` (a TAGS column),
/// `runs show`, `sweeps show` and the JSON; found by `--filter "tag = ..."`; bad input is exit 2
/// and an unknown run or tag exit 3, each naming it. `poet runs export` to CSV and JSON lines,
/// read back, agrees with `runs list --json`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_notes_and_export_read_back() {
    let s = stack().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = grid_spec(dir.path(), "[1, 2, 3]");
    let env = vec![("POET_COORDINATOR".to_string(), s.url())];
    let o = run_blocking(
        strings(&["sweep", "submit", &spec.display().to_string()]),
        env.clone(),
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));

    let o = run_blocking(
        strings(&["runs", "tag", "2", "baseline", "lr,low"]),
        env.clone(),
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("run 2: tags [baseline, lr,low]"),
        "{}",
        stdout(&o)
    );
    let o = run_blocking(
        strings(&["runs", "note", "2", "diverged\nafter warmup"]),
        env.clone(),
    )
    .await;
    assert!(stdout(&o).contains("note by client at "), "{}", stdout(&o));
    let o = run_blocking(
        strings(&["runs", "list", "--json", "--filter", "tag = 'baseline'"]),
        env.clone(),
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v[0]["id"], 2);
    assert_eq!(v[0]["tags"], serde_json::json!(["baseline", "lr,low"]));
    assert_eq!(v[0]["notes"][0]["text"], "diverged\nafter warmup");
    assert_eq!(v[0]["notes"][0]["author"], "client");
    assert!(v[0]["notes"][0]["at"].is_string(), "{v}");
    let table = stdout(&run_blocking(strings(&["runs", "list"]), env.clone()).await);
    assert!(table.lines().next().unwrap().ends_with("TAGS"), "{table}");
    assert!(table.contains("baseline,lr,low"), "{table}");
    let show = stdout(&run_blocking(strings(&["runs", "show", "2"]), env.clone()).await);
    assert!(
        show.contains("tags: baseline, lr,low") && show.contains("  after warmup"),
        "{show}"
    );

    let o = run_blocking(strings(&["runs", "untag", "2", "nope"]), env.clone()).await;
    assert_one_line_error(&o, 3, "run 2 has no tag \"nope\"");
    let o = run_blocking(strings(&["runs", "tag", "2", ""]), env.clone()).await;
    assert_one_line_error(&o, 2, "tag \"\"");
    let o = run_blocking(strings(&["runs", "tag", "99", "x"]), env.clone()).await;
    assert_one_line_error(&o, 3, "no run 99");
    let o = run_blocking(strings(&["runs", "untag", "2", "lr,low"]), env.clone()).await;
    assert!(
        stdout(&o).contains("run 2: tags [baseline]"),
        "{}",
        stdout(&o)
    );

    let o = run_blocking(strings(&["sweeps", "tag", "1", "grid"]), env.clone()).await;
    assert!(o.status.success(), "{}", stderr(&o));
    run_blocking(strings(&["sweeps", "note", "1", "first look"]), env.clone()).await;
    let o = run_blocking(strings(&["sweeps", "show", "1", "--json"]), env.clone()).await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["tags"], serde_json::json!(["grid"]));
    assert_eq!(v["notes"][0]["text"], "first look");
    assert_eq!(v["runs"][1]["tags"], serde_json::json!(["baseline"]));
    let show = stdout(&run_blocking(strings(&["sweeps", "show", "1"]), env.clone()).await);
    assert!(
        show.contains("tags: grid") && show.contains("first look"),
        "{show}"
    );

    // Export: CSV read back with the csv crate, compared with runs list --json.
    let listed = run_blocking(
        strings(&["runs", "list", "--json", "--order-by", "id"]),
        env.clone(),
    )
    .await;
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let listed = listed.as_array().unwrap();
    let csv_path = dir.path().join("runs.csv");
    let o = run_blocking(
        strings(&[
            "runs",
            "export",
            "--order-by",
            "id",
            "-o",
            &csv_path.display().to_string(),
        ]),
        env.clone(),
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("3 row(s) written"), "{}", stderr(&o));
    let mut rd = csv::Reader::from_path(&csv_path).unwrap();
    let header: Vec<String> = rd.headers().unwrap().iter().map(String::from).collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("{name} not in {header:?}"))
    };
    let rows: Vec<csv::StringRecord> = rd.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), listed.len());
    for (row, run) in rows.iter().zip(listed) {
        assert_eq!(row[col("id")], run["id"].to_string());
        assert_eq!(row[col("sweep_id")], run["sweep_id"].to_string());
        assert_eq!(&row[col("state")], run["state"].as_str().unwrap());
        assert_eq!(
            row[col("config.layers")],
            run["config"]["layers"].to_string()
        );
        assert_eq!(row[col("config.units")], run["config"]["units"].to_string());
        assert_eq!(&row[col("best_val_loss")], "", "no epoch yet: empty");
        let tags: Vec<&str> = run["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert_eq!(row[col("tags")], tags.join(";"));
    }
    // JSON lines by extension, with a filter; `-o -` with --format to stdout.
    let jsonl = dir.path().join("runs.jsonl");
    let o = run_blocking(
        strings(&[
            "runs",
            "export",
            "--filter",
            "tag = 'baseline'",
            "-o",
            &jsonl.display().to_string(),
        ]),
        env.clone(),
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&jsonl).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert_eq!(lines[0]["id"], 2);
    assert_eq!(lines[0]["tags"], serde_json::json!(["baseline"]));
    assert_eq!(lines[0]["config.layers"], listed[1]["config"]["layers"]);
    let o = run_blocking(
        strings(&["runs", "export", "-o", "-", "--format", "jsonl", "--epochs"]),
        env.clone(),
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).is_empty(), "no epochs yet: {}", stdout(&o));
    let o = run_blocking(strings(&["runs", "export", "-o", "runs.txt"]), env.clone()).await;
    assert_one_line_error(&o, 2, "say --format csv or jsonl");
    let o = run_blocking(
        strings(&["runs", "export", "-o", "-", "--filter", "tags > 'a'"]),
        env,
    )
    .await;
    assert_one_line_error(&o, 2, "tag compares with =, != or in only");
}

/// The paths of every key in `v` (`counts.lines.kept`, `runs[].config.units`), array items
/// merged: what two printings of one view must share.
fn key_paths(v: &serde_json::Value, at: &str, out: &mut std::collections::BTreeSet<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{at}.{k}");
                out.insert(p.clone());
                key_paths(x, &p, out);
            }
        }
        serde_json::Value::Array(xs) => {
            for x in xs {
                key_paths(x, &format!("{at}[]"), out);
            }
        }
        _ => {}
    }
}

fn keys(v: &serde_json::Value) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    key_paths(v, "", &mut out);
    out
}

/// `poet sweeps list|show --json`, `poet datasets list|show --json` and `poet runs show --json`
/// print the web API's views (`poet_proto::views`): for the same sweep, dataset or run, the
/// same keys, nested ones included, and the same values as `GET /api/v1/sweeps`,
/// `/sweeps/{id}`, `/datasets` and `/runs/{id}` (less its generations).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_and_dataset_json_is_the_web_apis() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let http: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let cfg = CoordinatorConfig {
        http_listen: Some(http),
        ..Default::default()
    };
    let s = TestCoordinator::start(cfg, None).await;
    sqlx::query(
        "insert into datasets (name, version, content_hash, params_hash, params, counts, poems, chars, vocab, shards, validation_shards, state)
         values ('tiny', 1, 'h', 'p', '{\"tag\": null, \"shards\": 4}',
             '{\"lines\": {\"read\": 5, \"docs\": 4, \"not_poems\": 1, \"kept\": 2, \"duplicates\": 1},
               \"input_bytes\": 300, \"not_poems_by_reason\": {\"hard_wrapped\": 1}}',
             2, 10, 'ab', 4, '{0}', 'ready')",
    )
    .execute(&s.db.pool)
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = grid_spec(dir.path(), "[1, 2]");
    let env = vec![
        ("POET_COORDINATOR".to_string(), s.url()),
        ("POET_DATABASE_URL".to_string(), s.db.url.clone()),
    ];
    for args in [
        vec!["sweeps", "submit", spec.to_str().unwrap()],
        vec!["sweeps", "tag", "1", "grid"],
        vec!["sweeps", "note", "1", "first look"],
        vec!["sweeps", "pause", "1"],
        vec!["sweeps", "resume", "1"],
    ] {
        let o = run_blocking(strings(&args), env.clone()).await;
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    }
    // One run with a loss, so the best run and its nested view are printed too.
    let mut w = s.worker();
    let worker = poet_coordinator::testing::register(&mut w, "cpu-host").await;
    let lease = poet_coordinator::testing::lease_run(&mut w, worker, 1000)
        .await
        .expect("a queued run");
    w.report_epoch(poet_proto::v1::ReportEpochRequest {
        lease: lease.lease,
        epoch: Some(poet_proto::v1::Epoch {
            epoch: 1,
            train_loss: 2.5,
            val_loss: 2.25,
            duration_s: 1.0,
            chars_per_sec: 1000.0,
            metrics_json: "{}".into(),
            ..Default::default()
        }),
    })
    .await
    .unwrap();

    let cli = |args: &'static [&'static str]| {
        let env = env.clone();
        async move {
            let o = run_blocking(strings(args), env).await;
            assert!(o.status.success(), "{args:?}: {}", stderr(&o));
            serde_json::from_slice::<serde_json::Value>(&o.stdout).expect("json")
        }
    };
    let web = |path: &'static str| async move {
        let r = reqwest::get(format!("http://{http}/api/v1{path}"))
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        r.json::<serde_json::Value>().await.unwrap()
    };
    let pairs = [
        (
            cli(&["sweeps", "list", "--json"]).await,
            web("/sweeps").await,
        ),
        (
            cli(&["sweeps", "show", "1", "--json"]).await,
            web("/sweeps/1").await,
        ),
        (
            cli(&["datasets", "list", "--json"]).await,
            web("/datasets").await,
        ),
        (
            cli(&["datasets", "show", "tiny", "--json"]).await,
            web("/datasets").await[0].clone(),
        ),
    ];
    for (printed, served) in &pairs {
        assert_eq!(keys(printed), keys(served), "{printed}\n{served}");
        assert_eq!(printed, served);
    }
    // A run in full: the web's adds the run's generations.
    let best = pairs[1].0["best_run_id"].as_i64().unwrap();
    let o = run_blocking(
        strings(&["runs", "show", &best.to_string(), "--json"]),
        env.clone(),
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let printed: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let mut served = reqwest::get(format!("http://{http}/api/v1/runs/{best}"))
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(served["generations"], serde_json::json!([]));
    served.as_object_mut().unwrap().remove("generations");
    assert_eq!(keys(&printed), keys(&served), "{printed}\n{served}");
    assert_eq!(printed, served);
    assert_eq!(printed["epochs"][0]["val_loss"], 2.25);
    assert_eq!(printed["attempts"][0]["worker_host"], "cpu-host");
    // Nothing in them is left empty: the comparison covered the nested views.
    let (sweep, dataset) = (&pairs[1].0, &pairs[3].0);
    assert_eq!(sweep["run_count"], 2);
    assert_eq!(sweep["counts"]["running"], 1);
    assert_eq!(sweep["best_run"]["best_val_loss"], 2.25);
    assert_eq!(sweep["best_run_id"], sweep["best_run"]["id"]);
    assert_eq!(sweep["tags"], serde_json::json!(["grid"]));
    assert_eq!(sweep["notes"][0]["text"], "first look");
    let kinds: Vec<&str> = sweep["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["pause_sweep", "resume_sweep"]);
    assert_eq!(sweep["varying"], serde_json::json!(["layers"]));
    assert_eq!(dataset["counts"]["lines"]["kept"], 2);
    assert_eq!(dataset["counts"]["not_poems_by_reason"]["hard_wrapped"], 1);
    assert_eq!(dataset["vocab_size"], 2);
    assert_eq!(dataset["params_hash"], "p");
    s.stop().await;
}

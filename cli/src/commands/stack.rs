//! The local stack: the private Postgres (`poet db`), the coordinator in the foreground
//! (`poet coordinator`), workers (`poet worker`, `poet train` launch `poet-worker`), and
//! `poet up`/`poet down`, which run them in the background with logs under
//! `<poet home>/logs` and their pids in `<poet home>/stack.json`.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command as Proc, Stdio};
use std::time::Duration;

use poet_sql::cluster::{PrivateCluster, poet_home};
use serde::{Deserialize, Serialize};

use crate::args::{Cli, DbCmd, UpArgs, exit};
use crate::conn::{CliError, CliResult};
use crate::output::{self, outln};

pub async fn db(cli: &Cli, cmd: &DbCmd) -> CliResult {
    let cluster = PrivateCluster::default_location();
    match cmd {
        DbCmd::Start => {
            let info = blocking(move || cluster.ensure_running()).await?;
            if cli.json {
                output::json(&info);
            } else {
                outln!(
                    "postgres running on 127.0.0.1:{} (data {})",
                    info.port,
                    info.data_dir.display()
                );
                outln!("{}", info.shown_url());
            }
        }
        DbCmd::Stop => {
            let was = blocking(move || cluster.stop()).await?;
            print_db_stopped(cli, was);
        }
        DbCmd::Status => {
            let running = {
                let c = cluster.clone();
                tokio::task::spawn_blocking(move || c.is_running())
                    .await
                    .expect("join")
            };
            let info = cluster.info();
            if cli.json {
                output::json(
                    &serde_json::json!({"running": running, "cluster": info, "home": poet_home()}),
                );
            } else {
                match info {
                    Some(i) => {
                        outln!(
                            "private postgres: {}",
                            if running { "running" } else { "stopped" }
                        );
                        outln!(
                            "  data: {}\n  log:  {}\n  url:  {}",
                            i.data_dir.display(),
                            i.log_file.display(),
                            i.shown_url()
                        );
                    }
                    None => outln!(
                        "private postgres: never started (home {})",
                        poet_home().display()
                    ),
                }
                if let Ok(u) = std::env::var("POET_DATABASE_URL") {
                    outln!(
                        "POET_DATABASE_URL is set: poet uses {}",
                        poet_sql::redact(&u)
                    );
                }
            }
        }
        DbCmd::Url => {
            let url = database_url(None).await?;
            if cli.json {
                output::json(&serde_json::json!({ "url": url }));
            } else {
                outln!("{url}");
            }
        }
    }
    Ok(())
}

/// What `db stop` and `down --db` say about the private Postgres.
fn print_db_stopped(cli: &Cli, was_running: bool) {
    if cli.json {
        output::json(&serde_json::json!({ "postgres_was_running": was_running }));
    } else if was_running {
        outln!("postgres stopped");
    } else {
        outln!("postgres was not running");
    }
}

/// POET_DATABASE_URL (or `explicit`), else the private cluster (started if needed).
pub async fn database_url(explicit: Option<String>) -> CliResult<String> {
    let explicit = explicit.or_else(|| std::env::var("POET_DATABASE_URL").ok());
    tokio::task::spawn_blocking(move || poet_sql::resolve_url(explicit.as_deref()))
        .await
        .expect("join")
        .map_err(|e| CliError::new(exit::UNAVAILABLE, e.to_string()))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, poet_sql::cluster::ClusterError> + Send + 'static,
) -> CliResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .expect("join")
        .map_err(|e| CliError::new(exit::UNAVAILABLE, e.to_string()))
}

pub async fn coordinator(cli: &Cli, cfg: poet_coordinator::CoordinatorConfig) -> CliResult {
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
                " (another coordinator? stop it with `poet down`, or choose --listen 127.0.0.1:0)"
            } else {
                ""
            };
            CliError::new(
                exit::UNAVAILABLE,
                format!("cannot listen on {}: {e}{hint}", cfg.listen),
            )
        })?;
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("signal handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
    };
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::fail(e.to_string()))?;
    // With --json, one line on stdout a script can read the port from (`--listen 127.0.0.1:0`).
    if cli.json {
        outln!("{}", serde_json::json!({ "listening": addr.to_string() }));
        output::flush_stdout();
    } else if !cli.quiet {
        eprintln!("coordinator listening on {addr}");
    }
    poet_coordinator::run(cfg, listener, shutdown)
        .await
        .map_err(|e| {
            let code = match e {
                poet_coordinator::CoordinatorError::Config(_) => exit::BAD_INPUT,
                poet_coordinator::CoordinatorError::Db(_) => exit::UNAVAILABLE,
                _ => exit::FAILURE,
            };
            CliError::new(code, e.to_string())
        })
}

/// Finds the `poet-worker` binary: POET_WORKER_BIN, beside this executable, then PATH.
pub fn worker_bin() -> CliResult<PathBuf> {
    if let Some(p) = std::env::var_os("POET_WORKER_BIN") {
        return Ok(PathBuf::from(p));
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        let sibling = dir.join("poet-worker");
        if sibling.is_file() {
            return Ok(sibling);
        }
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        if dir.join("poet-worker").is_file() {
            return Ok(dir.join("poet-worker"));
        }
    }
    Err(CliError::fail(
        "poet-worker not found beside poet or on PATH; build it with `make worker` (it links libtorch) or set POET_WORKER_BIN",
    ))
}

pub async fn worker(cli: &Cli, sub: &str, args: &[String]) -> CliResult {
    let bin = worker_bin()?;
    let mut cmd = tokio::process::Command::new(&bin);
    // `poet worker generate ...` (offline sampling) names its own subcommand.
    let (sub, args) = match args.split_first() {
        Some((first, rest)) if sub == "run" && (first == "generate" || first == "train") => {
            (first.as_str(), rest)
        }
        _ => (sub, args),
    };
    cmd.arg(sub);
    if sub == "run" && !args.iter().any(|a| a == "--help" || a == "-h") {
        cmd.args(["--coordinator", &cli.coordinator]);
    }
    cmd.args(args);
    if cli.json {
        // `poet --json worker generate ...`: the worker's commands that print read it here.
        cmd.env("POET_JSON", "true");
    }
    if std::env::var_os("POET_TOKEN").is_none()
        && let Ok(t) = std::env::var("POET_WORKER_TOKEN")
    {
        cmd.env("POET_TOKEN", t);
    }
    let status = cmd
        .status()
        .await
        .map_err(|e| CliError::fail(format!("{}: {e}", bin.display())))?;
    match status.code() {
        Some(0) => Ok(()),
        Some(c) => Err(CliError::new(
            c.clamp(1, 255) as u8,
            format!("poet-worker {sub} exited with {c}"),
        )),
        None => Err(CliError::fail(format!(
            "poet-worker {sub} was killed by a signal"
        ))),
    }
}

/// What `poet up` started.
#[derive(Debug, Default, Serialize, Deserialize)]
struct StackState {
    coordinator: Option<Managed>,
    workers: Vec<Managed>,
    address: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Managed {
    pid: u32,
    log: PathBuf,
}

fn state_path() -> PathBuf {
    poet_home().join("stack.json")
}

fn load_state() -> StackState {
    std::fs::read_to_string(state_path())
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default()
}

fn save_state(s: &StackState) -> CliResult {
    let p = state_path();
    std::fs::write(&p, serde_json::to_string_pretty(s).expect("serialises"))
        .map_err(|e| CliError::fail(format!("{}: {e}", p.display())))
}

/// Whether `pid` is a live process of ours (`poet` or `poet-worker`).
fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or("Z");
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    state != "Z" && String::from_utf8_lossy(&cmd).contains("poet")
}

fn spawn_logged(
    program: &Path,
    args: &[String],
    env: &[(&str, String)],
    log: &Path,
) -> CliResult<u32> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| CliError::fail(format!("{}: {e}", log.display())))?;
    let err = file
        .try_clone()
        .map_err(|e| CliError::fail(e.to_string()))?;
    let mut cmd = Proc::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .process_group(0);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .spawn()
        .map_err(|e| CliError::fail(format!("{}: {e}", program.display())))?;
    Ok(child.id())
}

async fn healthy(addr: &str) -> bool {
    let Ok(ep) = tonic::transport::Endpoint::from_shared(addr.to_string()) else {
        return false;
    };
    let Ok(ch) = ep.connect_timeout(Duration::from_secs(1)).connect().await else {
        return false;
    };
    let mut h = tonic_health::pb::health_client::HealthClient::new(ch);
    matches!(
        h.check(tonic_health::pb::HealthCheckRequest { service: "poet.v1.Poet".into() }).await,
        Ok(r) if r.get_ref().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    )
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

pub async fn up(cli: &Cli, a: &UpArgs) -> CliResult {
    let home = poet_home();
    let logs = home.join("logs");
    std::fs::create_dir_all(&logs)
        .map_err(|e| CliError::fail(format!("{}: {e}", logs.display())))?;
    let url = database_url(None).await?;
    let mut state = load_state();
    let address = format!("http://{}", a.listen);

    let coordinator_ok =
        state.coordinator.as_ref().is_some_and(|c| alive(c.pid)) && healthy(&state.address).await;
    if !coordinator_ok {
        if healthy(&address).await {
            return Err(CliError::new(
                exit::UNAVAILABLE,
                format!(
                    "a coordinator not started by `poet up` already answers on {address}; stop it or use --listen"
                ),
            ));
        }
        let exe = std::env::current_exe().map_err(|e| CliError::fail(e.to_string()))?;
        let log = logs.join("coordinator.log");
        let heartbeat = (a.lease_ttl / 6.0).max(0.2);
        let args: Vec<String> = vec![
            "coordinator".into(),
            "--listen".into(),
            a.listen.clone(),
            "--lease-ttl".into(),
            a.lease_ttl.to_string(),
            "--heartbeat-interval".into(),
            heartbeat.to_string(),
        ];
        let mut args = args;
        if a.http_listen != "off" {
            args.extend(["--http-listen".to_string(), a.http_listen.clone()]);
        }
        let pid = spawn_logged(&exe, &args, &[("POET_DATABASE_URL", url.clone())], &log)?;
        state.coordinator = Some(Managed {
            pid,
            log: log.clone(),
        });
        state.address = address.clone();
        let mut ready = false;
        for _ in 0..150 {
            if healthy(&address).await {
                ready = true;
                break;
            }
            if !alive(pid) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if !ready {
            return Err(CliError::new(
                exit::UNAVAILABLE,
                format!(
                    "the coordinator did not become healthy; last lines of {}:\n{}",
                    log.display(),
                    tail(&log, 5)
                ),
            ));
        }
    }
    state.workers.retain(|w| alive(w.pid));
    let want = a.workers as usize;
    if state.workers.len() < want {
        let bin = worker_bin()?;
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1) as u32;
        let threads = a.threads.unwrap_or((cores / a.workers.max(1)).max(1));
        let cache = home.join("worker-cache");
        for i in state.workers.len()..want {
            let device = a.device.for_worker(i);
            let log = logs.join(format!("worker-{i}.log"));
            let args: Vec<String> = vec![
                "--device".into(),
                device,
                "--threads".into(),
                threads.to_string(),
                "run".into(),
                "--coordinator".into(),
                state.address.clone(),
                "--cache-dir".into(),
                cache.display().to_string(),
            ];
            let pid = spawn_logged(&bin, &args, &[], &log)?;
            state.workers.push(Managed { pid, log });
        }
    }
    save_state(&state)?;
    if cli.json {
        output::json(
            &serde_json::json!({"coordinator": state.address, "database": poet_sql::redact(&url), "stack": state}),
        );
    } else {
        outln!("poet is up");
        outln!(
            "  coordinator  {}  (pid {}, log {})",
            state.address,
            state.coordinator.as_ref().map(|c| c.pid).unwrap_or(0),
            state
                .coordinator
                .as_ref()
                .map(|c| c.log.display().to_string())
                .unwrap_or_default()
        );
        outln!("  database     {}", poet_sql::redact(&url));
        if a.http_listen != "off" {
            outln!("  dashboard    http://{}", a.http_listen);
        }
        for (i, w) in state.workers.iter().enumerate() {
            outln!("  worker {i}     pid {} (log {})", w.pid, w.log.display());
        }
        outln!("  stop with    poet down   (add --db to stop Postgres too)");
    }
    Ok(())
}

fn signal(pid: u32, sig: &str) {
    let _ = Proc::new("kill")
        .args([sig, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

async fn stop_all(pids: &[u32], grace: Duration) {
    for p in pids {
        signal(*p, "-TERM");
    }
    let deadline = tokio::time::Instant::now() + grace;
    while pids.iter().any(|p| alive(*p)) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for p in pids.iter().filter(|p| alive(**p)) {
        signal(*p, "-KILL");
    }
}

pub async fn down(cli: &Cli, stop_db: bool) -> CliResult {
    let state = load_state();
    let workers: Vec<u32> = state
        .workers
        .iter()
        .map(|w| w.pid)
        .filter(|p| alive(*p))
        .collect();
    // Workers first: on SIGTERM they hand their runs back to the coordinator.
    stop_all(&workers, Duration::from_secs(60)).await;
    let coordinator: Vec<u32> = state
        .coordinator
        .iter()
        .map(|c| c.pid)
        .filter(|p| alive(*p))
        .collect();
    stop_all(&coordinator, Duration::from_secs(20)).await;
    let _ = std::fs::remove_file(state_path());
    let postgres_was_running = if stop_db {
        Some(blocking(|| PrivateCluster::default_location().stop()).await?)
    } else {
        None
    };
    if cli.json {
        output::json(&serde_json::json!({
            "workers_stopped": workers.len(),
            "coordinators_stopped": coordinator.len(),
            "postgres_was_running": postgres_was_running,
        }));
        return Ok(());
    }
    outln!(
        "stopped {} worker(s) and {} coordinator(s)",
        workers.len(),
        coordinator.len()
    );
    if let Some(was) = postgres_was_running {
        print_db_stopped(cli, was);
    }
    Ok(())
}

//! `poet up`/`poet down`: the local stack (the private Postgres, a coordinator and workers)
//! in the background, with logs under `<poet home>/logs` and pids in
//! `<poet home>/stack.json`. Starting and stopping processes is `supervise`'s.

use std::path::{Path, PathBuf};
use std::time::Duration;

use poet_sql::cluster::{PrivateCluster, poet_home};
use serde::{Deserialize, Serialize};

use crate::args::{Cli, UpArgs, exit};
use crate::commands::db::{blocking, database_url, print_db_stopped};
use crate::commands::supervise::{alive, spawn_logged, stop_all};
use crate::commands::worker::worker_bin;
use crate::conn::{CliError, CliResult};
use crate::output::{self, outln};

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

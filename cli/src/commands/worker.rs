//! `poet worker` and `poet train`: find the `poet-worker` binary (it links libtorch; this one
//! does not) and run it with the coordinator address and token passed along.

use std::path::PathBuf;

use crate::args::Cli;
use crate::conn::{CliError, CliResult};

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
        "poet-worker not found beside poet or on PATH; build it with `cargo build -p poet-worker` (it links libtorch; `./poet.sh setup` makes the torch venv) or set POET_WORKER_BIN",
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

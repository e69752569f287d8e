//! Supervising the background processes of `poet up`: start one detached with its output in
//! a log file, ask whether it still runs, stop it (SIGTERM, then SIGKILL after a grace
//! period). Signals go through `rustix`, not `kill(1)`.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command as Proc, Stdio};
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process, test_kill_process};

use crate::conn::{CliError, CliResult};

/// Whether `pid` is a live process of ours (`poet` or `poet-worker`): it takes signals, and
/// its command line names poet (so a recycled pid of another program is not mistaken for it).
pub fn alive(pid: u32) -> bool {
    let Some(p) = pid_of(pid) else { return false };
    if test_kill_process(p).is_err() {
        return false;
    }
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&cmd).contains("poet")
}

fn pid_of(pid: u32) -> Option<Pid> {
    Pid::from_raw(i32::try_from(pid).ok()?)
}

/// Starts `program` in its own process group with stdout and stderr appended to `log`;
/// returns its pid.
pub fn spawn_logged(
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

/// Sends `sig`; a process that is already gone is not an error.
fn signal(pid: u32, sig: Signal) {
    if let Some(p) = pid_of(pid) {
        let _ = kill_process(p, sig);
    }
}

/// SIGTERM to each, then SIGKILL to those still alive after `grace`.
pub async fn stop_all(pids: &[u32], grace: Duration) {
    for p in pids {
        signal(*p, Signal::TERM);
    }
    let deadline = tokio::time::Instant::now() + grace;
    while pids.iter().any(|p| alive(*p)) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for p in pids.iter().filter(|p| alive(**p)) {
        signal(*p, Signal::KILL);
    }
}

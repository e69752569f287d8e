//! The real binaries as child processes. Every child is killed when its handle drops, so a
//! failing test leaves nothing behind; stdout and stderr go to files under the test's temp
//! dir so a failure can print their tails.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};

/// A binary beside the test executable (`target/<profile>/<name>`), or `env` when set.
/// Errors (never skips) when it is missing: the fault tests need the real processes.
pub fn binary(name: &str, env: &str) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    // target/debug/deps/<test>-<hash> → target/debug/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test executable has no target dir")?;
    let p = dir.join(name);
    if !p.exists() {
        bail!(
            "{} not found (set {env}, or build it: `cargo build -p {}`; `./poet.sh test` builds both binaries)",
            p.display(),
            if name == "poet" {
                "poet-cli"
            } else {
                "poet-worker"
            }
        );
    }
    Ok(p)
}

/// The `poet` binary.
pub fn poet_bin() -> Result<PathBuf> {
    binary("poet", "POET_BIN")
}

/// The `poet-worker` binary.
pub fn worker_bin() -> Result<PathBuf> {
    binary("poet-worker", "POET_WORKER_BIN")
}

/// The last `n` lines of a log file, for failure messages.
pub fn tail(path: &Path, n: usize) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn log_files(dir: &Path, stem: &str) -> Result<(PathBuf, std::fs::File, std::fs::File)> {
    std::fs::create_dir_all(dir)?;
    let err = dir.join(format!("{stem}.stderr"));
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{stem}.stdout")))?;
    let errf = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&err)?;
    Ok((err, out, errf))
}

/// How a coordinator process is started.
#[derive(Debug, Clone)]
pub struct CoordinatorSpec {
    /// Database URL.
    pub database_url: String,
    /// Artifacts folder.
    pub artifacts: PathBuf,
    /// Lease TTL, seconds.
    pub lease_ttl_s: f64,
    /// Heartbeat interval, seconds.
    pub heartbeat_s: f64,
    /// Reaper interval, seconds.
    pub reaper_s: f64,
    /// Extra `(name, value)` environment variables (tokens, TLS, POET_LOG).
    pub env: Vec<(String, String)>,
    /// Where logs go.
    pub log_dir: PathBuf,
}

/// A running `poet coordinator`.
pub struct CoordinatorProc {
    /// The process.
    pub child: Child,
    /// The address it bound.
    pub addr: SocketAddr,
    /// Its stderr log.
    pub stderr: PathBuf,
}

impl CoordinatorProc {
    /// Starts one on `listen` (`127.0.0.1:0` for a free port) and waits until it says where
    /// it listens and its gRPC port accepts connections.
    pub async fn start(
        spec: &CoordinatorSpec,
        listen: &str,
        name: &str,
    ) -> Result<CoordinatorProc> {
        let (stderr, out, err) = log_files(&spec.log_dir, name)?;
        let start_len = std::fs::metadata(&stderr).map(|m| m.len()).unwrap_or(0);
        let mut cmd = Command::new(poet_bin()?);
        cmd.arg("coordinator")
            .args(["--listen", listen])
            .args(["--lease-ttl", &spec.lease_ttl_s.to_string()])
            .args(["--heartbeat-interval", &spec.heartbeat_s.to_string()])
            .args(["--reaper-interval", &spec.reaper_s.to_string()])
            .env("POET_DATABASE_URL", &spec.database_url)
            .env("POET_ARTIFACTS", &spec.artifacts)
            .env("POET_HOME", spec.log_dir.join("home"))
            .env("POET_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        let mut child = cmd.spawn().context("spawn poet coordinator")?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = child.try_wait()? {
                bail!(
                    "coordinator exited with {st} before listening:\n{}",
                    tail(&stderr, 30)
                );
            }
            let log = std::fs::read(&stderr).unwrap_or_default();
            let fresh =
                String::from_utf8_lossy(&log[(start_len as usize).min(log.len())..]).to_string();
            // Only whole lines: the log may be read while a line is half written.
            if let Some(line) = fresh
                .split_inclusive('\n')
                .filter(|l| l.ends_with('\n'))
                .find(|l| l.contains("coordinator listening on"))
            {
                let addr: SocketAddr =
                    line.rsplit(' ').next().unwrap_or_default().trim().parse()?;
                // Listening comes before migrations and the health service; wait for a connection.
                if tokio::net::TcpStream::connect(addr).await.is_ok()
                    && fresh.contains("coordinator serving")
                {
                    return Ok(CoordinatorProc {
                        child,
                        addr,
                        stderr,
                    });
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!("coordinator did not start in 30 s:\n{}", tail(&stderr, 30));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL, and reap.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// SIGKILLs this replica and starts a new one from `spec` in its place (a new port, logs
    /// under `name`); the caller points its proxy at the new address.
    pub async fn restart(&mut self, spec: &CoordinatorSpec, name: &str) -> Result<()> {
        self.kill().await;
        *self = CoordinatorProc::start(spec, "127.0.0.1:0", name).await?;
        Ok(())
    }
}

/// A running `poet-worker run`.
pub struct WorkerProc {
    /// The process.
    pub child: Child,
    /// Its stderr log.
    pub stderr: PathBuf,
}

impl WorkerProc {
    /// Starts a CPU worker with one thread against `coordinator` (a URL).
    pub async fn start(
        coordinator: &str,
        cache_dir: &Path,
        log_dir: &Path,
        name: &str,
    ) -> Result<WorkerProc> {
        Self::start_with(coordinator, cache_dir, log_dir, name, &[]).await
    }

    /// [`Self::start`] with more `run` flags (`--label pool=a`, `--metrics-addr ...`).
    pub async fn start_with(
        coordinator: &str,
        cache_dir: &Path,
        log_dir: &Path,
        name: &str,
        extra: &[String],
    ) -> Result<WorkerProc> {
        let (stderr, out, err) = log_files(log_dir, name)?;
        let child = Command::new(worker_bin()?)
            .args([
                "--device",
                "cpu",
                "--threads",
                "1",
                "run",
                "--coordinator",
                coordinator,
                "--cache-dir",
            ])
            .arg(cache_dir)
            .args(extra)
            .env("RUST_LOG", "info")
            .env("POET_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .context("spawn poet-worker")?;
        Ok(WorkerProc { child, stderr })
    }

    /// SIGKILL, and reap.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// SIGTERM (graceful: the worker releases its run), then waits up to `grace`.
    pub async fn terminate(&mut self, grace: Duration) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            self.kill().await;
        }
    }
}

/// The last lines of every coordinator's and worker's log, for a failure message.
pub fn logs<'a>(
    coords: &[CoordinatorProc],
    workers: impl IntoIterator<Item = &'a WorkerProc>,
) -> String {
    let mut s = String::new();
    let paths = coords
        .iter()
        .map(|c| &c.stderr)
        .chain(workers.into_iter().map(|w| &w.stderr));
    for p in paths {
        s += &format!("--- {}\n{}\n", p.display(), tail(p, 15));
    }
    s
}

/// Polls `f` every 100 ms until it returns `Some`, or fails after `within`.
pub async fn wait_for<T, F, Fut>(what: &str, within: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

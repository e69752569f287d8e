//! The private Postgres cluster: what `poet` uses when no database URL is configured.
//!
//! On first use it runs `initdb` into `<poet home>/postgres`, then starts the server with
//! `pg_ctl` on a free loopback port and records the port in `poet-cluster.json`, so later
//! calls (from any process) reuse the running server. A file lock serialises concurrent
//! starts. Postgres refuses to run as root, so under root the cluster is run by the
//! `postgres` system user (Debian's package creates it) and lives under `/var/lib/poet`.

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

/// `postgres` options for the private cluster's write-ahead log: no replicas or archive, so
/// `minimal` (a table created and COPYed in one transaction skips the WAL; ingest relies on
/// it for speed, not for correctness). `bench/ingest/run.sh` starts its server the same way.
pub const WAL_SETTINGS: &str = "-c wal_level=minimal -c max_wal_senders=0";

/// Why the private cluster could not be used. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No initdb/pg_ctl found.
    #[error(
        "postgres server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin or on PATH; install them with `sudo apt-get install postgresql` or set POET_PG_BIN to their folder, or set POET_DATABASE_URL to use an existing server"
    )]
    NoBinaries,
    /// A postgres command failed.
    #[error("{command} failed: {detail}")]
    Command {
        /// The command line that failed.
        command: String,
        /// Its stderr, shortened, or the spawn error.
        detail: String,
    },
    /// A file of the cluster could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ClusterError + '_ {
    move |source| ClusterError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// What `poet db status` reports and later calls reuse.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterInfo {
    /// The data folder.
    pub data_dir: PathBuf,
    /// The TCP port on 127.0.0.1.
    pub port: u16,
    /// Folder of the server binaries used.
    pub bin_dir: PathBuf,
    /// Server log file.
    pub log_file: PathBuf,
    /// Connection URL of the `poet` database.
    pub url: String,
}

/// A private cluster rooted at a data folder.
#[derive(Debug, Clone)]
pub struct PrivateCluster {
    /// Where initdb writes the cluster; also holds the state file and the log.
    root: PathBuf,
    /// Database created for poet inside the cluster.
    database: String,
}

/// True when this process runs as root (Postgres then needs another user).
pub fn running_as_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// poet's home folder: `$POET_HOME`, else `/var/lib/poet` for root, else `$XDG_DATA_HOME/poet`.
pub fn poet_home() -> PathBuf {
    if let Some(h) = std::env::var_os("POET_HOME") {
        return PathBuf::from(h);
    }
    if running_as_root() {
        return PathBuf::from("/var/lib/poet");
    }
    dirs::data_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("poet")
}

/// Finds the folder holding `initdb` and `pg_ctl`: `$POET_PG_BIN`, the newest
/// `/usr/lib/postgresql/*/bin`, then PATH.
pub fn find_pg_bin() -> Result<PathBuf, ClusterError> {
    let has = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Some(d) = std::env::var_os("POET_PG_BIN") {
        let d = PathBuf::from(d);
        return if has(&d) {
            Ok(d)
        } else {
            Err(ClusterError::NoBinaries)
        };
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, d)| has(d))
        .collect();
    versions.sort();
    if let Some((_, d)) = versions.pop() {
        return Ok(d);
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        if has(&dir) {
            // Resolve symlinks so that `postgres` is found beside them.
            let real = fs::canonicalize(dir.join("pg_ctl")).ok();
            return Ok(real
                .and_then(|p| p.parent().map(Path::to_path_buf))
                .unwrap_or(dir));
        }
    }
    Err(ClusterError::NoBinaries)
}

fn free_port() -> Result<u16, ClusterError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(io_err(Path::new("127.0.0.1:0")))?;
    Ok(l.local_addr()
        .map_err(io_err(Path::new("127.0.0.1:0")))?
        .port())
}

impl PrivateCluster {
    /// The default cluster under [`poet_home`].
    pub fn default_location() -> Self {
        Self::at(poet_home().join("postgres"))
    }

    /// A cluster rooted at `root` (created on first start).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        PrivateCluster {
            root: root.into(),
            database: "poet".into(),
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    fn state_file(&self) -> PathBuf {
        self.root.join("poet-cluster.json")
    }

    fn log_file(&self) -> PathBuf {
        self.root.join("postgres.log")
    }

    /// Runs a postgres binary, as the `postgres` user when we are root.
    fn pg(&self, bin_dir: &Path, name: &str, args: &[&str]) -> Result<String, ClusterError> {
        let exe = bin_dir.join(name);
        let mut cmd = if running_as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args).env("LC_ALL", "C").current_dir("/");
        let shown = format!("{} {}", exe.display(), args.join(" "));
        let out = cmd.output().map_err(|e| ClusterError::Command {
            command: shown.clone(),
            detail: e.to_string(),
        })?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let last: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
            let detail = last
                .iter()
                .rev()
                .take(3)
                .rev()
                .cloned()
                .collect::<Vec<_>>()
                .join(" / ");
            return Err(ClusterError::Command {
                command: shown,
                detail,
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn lock(&self) -> Result<fs::File, ClusterError> {
        fs::create_dir_all(&self.root).map_err(io_err(&self.root))?;
        let path = self.root.join(".lock");
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        f.lock().map_err(io_err(&path))?;
        Ok(f)
    }

    /// The recorded state, if the cluster was ever started.
    pub fn info(&self) -> Option<ClusterInfo> {
        let text = fs::read_to_string(self.state_file()).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Whether the server is running now.
    pub fn is_running(&self) -> bool {
        let Some(info) = self.info() else {
            return false;
        };
        self.pg(
            &info.bin_dir,
            "pg_ctl",
            &["status", "-D", &path_str(&self.data_dir())],
        )
        .is_ok()
    }

    /// Starts the cluster if needed (initdb on first use) and returns how to reach it.
    pub fn ensure_running(&self) -> Result<ClusterInfo, ClusterError> {
        let _lock = self.lock()?;
        let bin_dir = find_pg_bin()?;
        let data = self.data_dir();
        if running_as_root() {
            // The postgres user must be able to reach and own the data folder.
            fs::create_dir_all(&data).map_err(io_err(&data))?;
            chown_postgres(&self.root)?;
            chown_postgres(&data)?;
        }
        if !data.join("PG_VERSION").exists() {
            self.initdb(&bin_dir)?;
        }
        if let Some(info) = self.info()
            && self
                .pg(&info.bin_dir, "pg_ctl", &["status", "-D", &path_str(&data)])
                .is_ok()
        {
            return Ok(info);
        }
        let port = free_port()?;
        let log = self.log_file();
        if running_as_root() {
            fs::File::create(&log).map_err(io_err(&log))?;
            chown_postgres(&log)?;
        }
        // Minimal WAL: a private cluster has no replicas or archive, and ingest's table, created
        // and loaded in one transaction, is then not WAL-logged at all (migration 0005).
        let opts = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' {WAL_SETTINGS}"
        );
        self.pg(
            &bin_dir,
            "pg_ctl",
            &[
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                &path_str(&data),
                "-l",
                &path_str(&log),
                "-o",
                &opts,
            ],
        )?;
        let info = ClusterInfo {
            data_dir: data,
            port,
            bin_dir: bin_dir.clone(),
            log_file: log,
            url: format!("postgres://poet@127.0.0.1:{port}/{}", self.database),
        };
        self.create_database(&bin_dir, port)?;
        let state = self.state_file();
        let mut f = fs::File::create(&state).map_err(io_err(&state))?;
        f.write_all(
            serde_json::to_string_pretty(&info)
                .expect("serialises")
                .as_bytes(),
        )
        .map_err(io_err(&state))?;
        Ok(info)
    }

    fn initdb(&self, bin_dir: &Path) -> Result<(), ClusterError> {
        let data = path_str(&self.data_dir());
        self.pg(
            bin_dir,
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "poet",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
        )?;
        // Sized for a laptop or a CI box: many coordinator connections, little memory.
        let conf = self.data_dir().join("postgresql.conf");
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .map_err(io_err(&conf))?;
        f.write_all(b"\n# poet private cluster\nmax_connections = 300\nshared_buffers = 128MB\nfsync = on\n")
            .map_err(io_err(&conf))?;
        Ok(())
    }

    fn create_database(&self, bin_dir: &Path, port: u16) -> Result<(), ClusterError> {
        let port_s = port.to_string();
        let createdb = bin_dir.join("createdb");
        let args = [
            "-h",
            "127.0.0.1",
            "-p",
            &port_s,
            "-U",
            "poet",
            &self.database,
        ];
        match Command::new(&createdb).args(args).output() {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) if String::from_utf8_lossy(&o.stderr).contains("already exists") => Ok(()),
            Ok(o) => Err(ClusterError::Command {
                command: format!("{} {}", createdb.display(), args.join(" ")),
                detail: String::from_utf8_lossy(&o.stderr).trim().to_string(),
            }),
            Err(e) => Err(ClusterError::Command {
                command: createdb.display().to_string(),
                detail: e.to_string(),
            }),
        }
    }

    /// Stops the server if it runs; returns whether it was running.
    pub fn stop(&self) -> Result<bool, ClusterError> {
        let _lock = self.lock()?;
        let Some(info) = self.info() else {
            return Ok(false);
        };
        let data = path_str(&self.data_dir());
        if self
            .pg(&info.bin_dir, "pg_ctl", &["status", "-D", &data])
            .is_err()
        {
            return Ok(false);
        }
        self.pg(
            &info.bin_dir,
            "pg_ctl",
            &["stop", "-w", "-m", "fast", "-D", &data],
        )?;
        Ok(true)
    }
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

fn chown_postgres(p: &Path) -> Result<(), ClusterError> {
    let out = Command::new("chown")
        .arg("postgres:")
        .arg(p)
        .output()
        .map_err(io_err(p))?;
    if !out.status.success() {
        return Err(ClusterError::Command {
            command: format!("chown postgres: {}", p.display()),
            detail: format!(
                "{} (running as root needs the `postgres` system user that Debian's postgresql package creates)",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(())
}

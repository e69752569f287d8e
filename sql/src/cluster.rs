//! The private Postgres cluster: what `poet` uses when no database URL is configured.
//!
//! On first use it runs `initdb` into `<poet home>/postgres`, then starts the server with
//! `pg_ctl` on a free loopback port and records the port in `poet-cluster.json`, so later
//! calls (from any process) reuse the running server. A file lock serialises concurrent
//! starts. Postgres refuses to run as root, so under root the cluster is run by the
//! `postgres` system user (Debian's package creates it) and lives under `/var/lib/poet`.
//!
//! Security (SECURITY.md, findings 1 and 2):
//! - Every connection authenticates with scram-sha-256. The superuser's password is 244 random
//!   bits kept in `password` (mode 0600, owned by whoever runs poet); no Unix socket is
//!   opened. Clusters made by older versions with `--auth=trust` are converted on their next
//!   start.
//! - Under root, the cluster root stays owned by root: only `data/` and `log/` belong to
//!   `postgres`, and root never writes inside them (postgres settings go on the command
//!   line, the server writes its own log). Every file root does write (`.lock`, `password`,
//!   `poet-cluster.json`) lives in the root-owned folder, is refused if it is a symlink, and
//!   is replaced by rename rather than written through; ownership changes use `chown -h`.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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
    /// A file the cluster manages is a symbolic link: someone may be aiming poet's writes
    /// elsewhere (SECURITY.md, finding 2).
    #[error(
        "{path} is a symbolic link; poet refuses to follow it (remove it if you made it yourself)"
    )]
    Symlink {
        /// The link.
        path: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ClusterError + '_ {
    move |source| ClusterError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// What `poet db status` reports and later calls reuse. The state file holds no secret: the
/// password is read from its own 0600 file when the info is loaded.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterInfo {
    /// The data folder.
    pub data_dir: PathBuf,
    /// The TCP port on 127.0.0.1.
    pub port: u16,
    /// Folder of the server binaries used.
    pub bin_dir: PathBuf,
    /// Server log file.
    pub log_file: PathBuf,
    /// The file holding the superuser's password (mode 0600).
    #[serde(default)]
    pub password_file: PathBuf,
    /// The password, loaded from `password_file`; never serialised or printed.
    #[serde(skip)]
    password: String,
}

impl std::fmt::Debug for ClusterInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterInfo")
            .field("data_dir", &self.data_dir)
            .field("port", &self.port)
            .field("log_file", &self.log_file)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl ClusterInfo {
    /// Connection URL of the `poet` database, password included: treat it as a secret.
    pub fn url(&self) -> String {
        self.url_for(DATABASE)
    }

    /// Connection URL of another database of the cluster, password included.
    pub fn url_for(&self, database: &str) -> String {
        self.url_through(&format!("127.0.0.1:{}", self.port), database)
    }

    /// Connection URL through another address that forwards to the cluster (a proxy in the
    /// fault tests), password included.
    pub fn url_through(&self, host_port: &str, database: &str) -> String {
        format!("postgres://{USER}:{}@{host_port}/{database}", self.password)
    }

    /// [`Self::url`] with the password hidden, for display.
    pub fn shown_url(&self) -> String {
        crate::redact(&self.url())
    }
}

/// The cluster's superuser.
const USER: &str = "poet";
/// The database poet uses inside the cluster.
const DATABASE: &str = "poet";
/// What the pg_hba.conf poet writes starts with; a file without it is converted.
const HBA_MARK: &str = "# poet: scram-sha-256 only";
/// The pg_hba.conf poet wants: passwords on loopback TCP, nothing else (no socket is opened).
const HBA: &str = "# poet: scram-sha-256 only (SECURITY.md, finding 1)\n\
host all all 127.0.0.1/32 scram-sha-256\n\
host all all ::1/128 scram-sha-256\n";
/// Server settings, given on the command line so that nothing writes into the data folder.
/// Sized for a laptop or a CI box: many coordinator connections, little memory.
const SERVER_SETTINGS: &str = "-c max_connections=300 -c shared_buffers=128MB -c fsync=on -c password_encryption=scram-sha-256";

/// A private cluster rooted at a folder that holds `data/` (initdb's), `log/`, the state
/// file, the password file and the lock.
#[derive(Debug, Clone)]
pub struct PrivateCluster {
    /// The cluster's folder.
    root: PathBuf,
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
        PrivateCluster { root: root.into() }
    }

    fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    fn state_file(&self) -> PathBuf {
        self.root.join("poet-cluster.json")
    }

    fn log_dir(&self) -> PathBuf {
        self.root.join("log")
    }

    fn log_file(&self) -> PathBuf {
        self.log_dir().join("postgres.log")
    }

    fn password_file(&self) -> PathBuf {
        self.root.join("password")
    }

    /// Runs a postgres binary, as the `postgres` user when we are root.
    fn pg(&self, bin_dir: &Path, name: &str, args: &[&str]) -> Result<String, ClusterError> {
        self.pg_with(bin_dir, name, args, None, None)
    }

    /// [`Self::pg`] with text on stdin (a password, SQL) and optionally `PGPASSWORD` set, so
    /// that no secret appears on a command line.
    fn pg_with(
        &self,
        bin_dir: &Path,
        name: &str,
        args: &[&str],
        stdin: Option<&str>,
        password: Option<&str>,
    ) -> Result<String, ClusterError> {
        run_as_server(&bin_dir.join(name), args, stdin, password)
    }

    /// Makes the cluster folder (owned by whoever runs poet: root under root; 0755 so that
    /// `postgres` can reach `data/` and `log/` under root, 0700 otherwise) and takes the lock.
    fn lock(&self) -> Result<fs::File, ClusterError> {
        refuse_symlink(&self.root)?;
        fs::create_dir_all(&self.root).map_err(io_err(&self.root))?;
        if running_as_root() {
            // Older versions gave this folder to `postgres`; take it back before writing in it.
            chown(&self.root, "root:root")?;
            set_mode(&self.root, 0o755)?;
        } else if fs::metadata(&self.root)
            .map_err(io_err(&self.root))?
            .permissions()
            .mode()
            & 0o077
            != 0
        {
            set_mode(&self.root, 0o700)?;
        }
        let path = self.root.join(".lock");
        let f = open_nofollow(
            &path,
            fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600),
        )?;
        f.lock().map_err(io_err(&path))?;
        Ok(f)
    }

    /// The recorded state, if the cluster was ever started (without its password if the
    /// password file cannot be read).
    pub fn info(&self) -> Option<ClusterInfo> {
        let text = fs::read_to_string(self.state_file()).ok()?;
        let mut info: ClusterInfo = serde_json::from_str(&text).ok()?;
        info.password_file = self.password_file();
        info.password = read_password(&info.password_file).unwrap_or_default();
        Some(info)
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
        let log_dir = self.log_dir();
        for p in [&data, &log_dir, &self.state_file(), &self.password_file()] {
            refuse_symlink(p)?;
        }
        for dir in [&data, &log_dir] {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
            if running_as_root() {
                // Root made these two folders just now or owns their parent: no link can stand
                // in for them, and `-h` never follows one anyway.
                chown(dir, "postgres:")?;
            }
            set_mode(dir, 0o700)?;
        }
        let mut password = read_password(&self.password_file()).ok();
        if !data.join("PG_VERSION").exists() {
            let pw = new_password();
            self.initdb(&bin_dir, &pw)?;
            write_secret(&self.password_file(), &pw)?;
            password = Some(pw);
        }
        let running = self.info().filter(|info| {
            self.pg(&info.bin_dir, "pg_ctl", &["status", "-D", &path_str(&data)])
                .is_ok()
        });
        let port = match &running {
            Some(info) => info.port,
            None => {
                let port = free_port()?;
                self.start(&bin_dir, port)?;
                port
            }
        };
        let password = match password {
            Some(pw) if self.hba_is_ours()? => pw,
            // A cluster from before passwords (trust): give it one, then require it.
            _ => self.convert_from_trust(&bin_dir, port)?,
        };
        let info = ClusterInfo {
            data_dir: data,
            port,
            bin_dir: bin_dir.clone(),
            log_file: self.log_file(),
            password_file: self.password_file(),
            password,
        };
        if running.is_none() {
            self.create_database(&info)?;
            let state = serde_json::to_string_pretty(&info).expect("serialises");
            replace_file(&self.state_file(), state.as_bytes(), 0o644)?;
        }
        Ok(info)
    }

    fn start(&self, bin_dir: &Path, port: u16) -> Result<(), ClusterError> {
        // Minimal WAL: a private cluster has no replicas or archive, and ingest's table, created
        // and loaded in one transaction, is then not WAL-logged at all (migration 0005).
        let opts = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' {SERVER_SETTINGS} {WAL_SETTINGS}"
        );
        self.pg(
            bin_dir,
            "pg_ctl",
            &[
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                &path_str(&self.data_dir()),
                "-l",
                &path_str(&self.log_file()),
                "-o",
                &opts,
            ],
        )?;
        Ok(())
    }

    fn initdb(&self, bin_dir: &Path, password: &str) -> Result<(), ClusterError> {
        let data = path_str(&self.data_dir());
        // initdb reads the password from a file. Under root it runs as `postgres`, which cannot
        // reopen our stdin pipe, so the file is a fresh 0600 one (`O_EXCL`, in the folder root
        // owns) given to `postgres`, removed as soon as initdb is done.
        let pwfile = self
            .root
            .join(format!(".initdb-{}", uuid::Uuid::new_v4().simple()));
        replace_file(&pwfile, format!("{password}\n").as_bytes(), 0o600)?;
        if running_as_root() {
            chown(&pwfile, "postgres:")?;
        }
        let pwflag = format!("--pwfile={}", pwfile.display());
        let made = self.pg(
            bin_dir,
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                USER,
                &pwflag,
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
        );
        let _ = fs::remove_file(&pwfile);
        made?;
        // initdb's own pg_hba.conf also allows replication and Unix-socket lines; poet's is
        // narrower, and marks the cluster as converted.
        self.write_hba()
    }

    /// Whether `pg_hba.conf` is the one poet writes.
    fn hba_is_ours(&self) -> Result<bool, ClusterError> {
        let hba = self.data_dir().join("pg_hba.conf");
        let text = fs::read_to_string(&hba).map_err(io_err(&hba))?;
        Ok(text.starts_with(HBA_MARK))
    }

    /// Writes `pg_hba.conf` as the user that runs the server, so that root never writes into
    /// the folder `postgres` owns.
    fn write_hba(&self) -> Result<(), ClusterError> {
        let hba = self.data_dir().join("pg_hba.conf");
        if running_as_root() {
            run_as_server(Path::new("tee"), &[&path_str(&hba)], Some(HBA), None)?;
        } else {
            replace_file(&hba, HBA.as_bytes(), 0o600)?;
        }
        Ok(())
    }

    /// Converts a cluster made with `--auth=trust` (poet before SECURITY.md): sets a new
    /// random password while trust still lets us in, writes it to the 0600 file, then swaps
    /// in the scram-only `pg_hba.conf` and reloads.
    fn convert_from_trust(&self, bin_dir: &Path, port: u16) -> Result<String, ClusterError> {
        let pw = new_password();
        let port_s = port.to_string();
        // The password travels on stdin, not the command line.
        self.pg_with(
            bin_dir,
            "psql",
            &[
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                &port_s,
                "-U",
                USER,
                "-d",
                "postgres",
            ],
            Some(&format!(
                "set password_encryption = 'scram-sha-256';\nalter role {USER} password '{pw}';\n"
            )),
            read_password(&self.password_file()).ok().as_deref(),
        )?;
        write_secret(&self.password_file(), &pw)?;
        self.write_hba()?;
        self.pg(
            bin_dir,
            "pg_ctl",
            &["reload", "-D", &path_str(&self.data_dir())],
        )?;
        tracing::info!(cluster = %self.root.display(), "private postgres now requires a password (was trust)");
        Ok(pw)
    }

    fn create_database(&self, info: &ClusterInfo) -> Result<(), ClusterError> {
        let port_s = info.port.to_string();
        let createdb = info.bin_dir.join("createdb");
        let args = ["-h", "127.0.0.1", "-p", &port_s, "-U", USER, DATABASE];
        match Command::new(&createdb)
            .args(args)
            .env("PGPASSWORD", &info.password)
            .output()
        {
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

/// Runs `exe` (a postgres binary, or `tee` for a file the server owns) as the user that runs
/// the server: `postgres` under root, else us. `stdin` is written to it and `password` set as
/// `PGPASSWORD`, so that no secret appears on a command line. Returns its stdout.
fn run_as_server(
    exe: &Path,
    args: &[&str],
    stdin: Option<&str>,
    password: Option<&str>,
) -> Result<String, ClusterError> {
    let mut cmd = if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(exe);
        c
    } else {
        Command::new(exe)
    };
    cmd.args(args).env("LC_ALL", "C").current_dir("/");
    if let Some(pw) = password {
        cmd.env("PGPASSWORD", pw);
    }
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let shown = format!("{} {}", exe.display(), args.join(" "));
    let spawn_err = |e: std::io::Error| ClusterError::Command {
        command: shown.clone(),
        detail: e.to_string(),
    };
    let mut child = cmd.spawn().map_err(spawn_err)?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).map_err(spawn_err)?;
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
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

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// Two random UUIDs (v4, 122 random bits each: 244 bits), hex: no quoting needed in SQL, URLs
/// or files.
fn new_password() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Refuses `path` if it is a symbolic link (a missing path is fine).
fn refuse_symlink(path: &Path) -> Result<(), ClusterError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(ClusterError::Symlink {
            path: path.display().to_string(),
        }),
        _ => Ok(()),
    }
}

/// Opens without following a final symbolic link (`O_NOFOLLOW`), naming the path on error.
fn open_nofollow(path: &Path, opts: &mut fs::OpenOptions) -> Result<fs::File, ClusterError> {
    refuse_symlink(path)?;
    opts.custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => ClusterError::Symlink {
                path: path.display().to_string(),
            },
            _ => ClusterError::Io {
                path: path.display().to_string(),
                source: e,
            },
        })
}

fn read_password(path: &Path) -> Result<String, ClusterError> {
    let mut text = String::new();
    open_nofollow(path, fs::OpenOptions::new().read(true))?
        .read_to_string(&mut text)
        .map_err(io_err(path))?;
    Ok(text.trim().to_string())
}

fn write_secret(path: &Path, secret: &str) -> Result<(), ClusterError> {
    replace_file(path, format!("{secret}\n").as_bytes(), 0o600)
}

/// Writes `bytes` to a new file beside `path` (`O_EXCL`, so never through a planted link) with
/// `mode`, then renames it over `path`: a link at `path` is replaced, not followed.
fn replace_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), ClusterError> {
    refuse_symlink(path)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        uuid::Uuid::new_v4().simple()
    ));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    let written = f.write_all(bytes).and_then(|()| f.sync_all());
    drop(f);
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(path)(e));
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<(), ClusterError> {
    refuse_symlink(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err(path))
}

/// `chown -h owner path`: changes the link itself if `path` is one, never its target.
fn chown(p: &Path, owner: &str) -> Result<(), ClusterError> {
    let out = Command::new("chown")
        .args(["-h", owner])
        .arg(p)
        .output()
        .map_err(io_err(p))?;
    if !out.status.success() {
        return Err(ClusterError::Command {
            command: format!("chown -h {owner} {}", p.display()),
            detail: format!(
                "{} (running as root needs the `postgres` system user that Debian's postgresql package creates)",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(())
}

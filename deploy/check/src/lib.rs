//! Static checks of poet's deploy files against the binaries they deploy.
//!
//! Nothing here runs a container or a cluster: the checks read the files under `deploy/`
//! and the sources that define what the binaries accept (`coordinator/src/config.rs`,
//! `worker/src/main.rs`, `sql/src/cluster.rs`, both binaries' `metrics.rs`), and report
//! every disagreement — an env name no binary reads, a port that differs between the Service
//! and the probe, a Secret a Deployment names but no kustomization provides.
//!
//! # Layout
//! - [`Tree`]: the files, as text, loaded once; tests edit a copy with [`Tree::edit`] to show
//!   that each check fails on a broken file.
//! - [`Accepted`]: env names and flags read out of the sources.
//! - [`text`]: env names anywhere, YAML parsing, docs. [`k8s`]: kustomize overlays.
//!   [`compose`], [`systemd`], [`docker`]: one module per kind of file.
//! - [`check_all`]: every check; each `check` function returns the problems it found, one
//!   sentence each, naming the file.

pub mod compose;
pub mod docker;
pub mod k8s;
pub mod systemd;
pub mod text;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use regex::Regex;

/// The gRPC port every deploy file must agree on.
pub const GRPC_PORT: u16 = 50051;
/// The Prometheus metrics port every deploy file must agree on.
pub const METRICS_PORT: u16 = 9464;
/// Shortest stop grace for a worker: it must be able to finish a checkpoint upload.
pub const WORKER_GRACE_S: u64 = 120;

/// Sources read for what the binaries accept, relative to the repository root.
pub const COORDINATOR_CONFIG: &str = "coordinator/src/config.rs";
/// The worker's flags.
pub const WORKER_MAIN: &str = "worker/src/main.rs";
/// `POET_HOME` and `POET_PG_BIN`, read by the coordinator through poet-sql.
pub const SQL_CLUSTER: &str = "sql/src/cluster.rs";
/// Metric names.
pub const METRICS: &str = "coordinator/src/metrics.rs";
/// The worker's metric names.
pub const WORKER_METRICS: &str = "worker/src/metrics.rs";
/// The operations guide.
pub const OPERATIONS_DOC: &str = "docs/operations.md";

/// Deploy files and the sources the checks compare them with, as text keyed by their path
/// relative to the repository root (always with `/`).
#[derive(Debug, Clone)]
pub struct Tree {
    /// Path → contents.
    files: BTreeMap<String, String>,
}

impl Tree {
    /// The repository root: two levels above this crate.
    pub fn repo_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    /// Loads `deploy/` (minus this crate and any `.env` with real secrets), the sources and
    /// the operations guide from the repository.
    pub fn load() -> std::io::Result<Tree> {
        let root = Self::repo_root();
        let mut files = BTreeMap::new();
        walk(&root, &root.join("deploy"), &mut files)?;
        for rel in [
            COORDINATOR_CONFIG,
            WORKER_MAIN,
            SQL_CLUSTER,
            METRICS,
            WORKER_METRICS,
            OPERATIONS_DOC,
        ] {
            let text = std::fs::read_to_string(root.join(rel))
                .map_err(|e| std::io::Error::new(e.kind(), format!("{rel}: {e}")))?;
            files.insert(rel.to_string(), text);
        }
        Ok(Tree { files })
    }

    /// A tree of the given files, for tests of the checks themselves.
    pub fn from_files(files: impl IntoIterator<Item = (String, String)>) -> Tree {
        Tree {
            files: files.into_iter().collect(),
        }
    }

    /// The text of `path`, if present.
    pub fn get(&self, path: &str) -> Option<&str> {
        self.files.get(path).map(String::as_str)
    }

    /// Every path.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    /// Every (path, text) under `prefix`.
    pub fn under<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.files
            .iter()
            .filter(move |(p, _)| p.starts_with(prefix))
            .map(|(p, t)| (p.as_str(), t.as_str()))
    }

    /// A copy with the first `from` in `path` replaced by `to`; panics when `from` is absent,
    /// so a test never passes because its edit silently missed.
    pub fn edit(&self, path: &str, from: &str, to: &str) -> Tree {
        let mut t = self.clone();
        let text = t
            .files
            .get_mut(path)
            .unwrap_or_else(|| panic!("no file {path}"));
        assert!(text.contains(from), "{path} does not contain {from:?}");
        *text = text.replacen(from, to, 1);
        t
    }

    /// A copy with every `from` in `path` replaced by `to`; panics when `from` is absent.
    pub fn edit_all(&self, path: &str, from: &str, to: &str) -> Tree {
        let mut t = self.edit(path, from, to);
        let text = t.files.get_mut(path).expect("edited");
        *text = text.replace(from, to);
        t
    }

    /// A copy without `path`.
    pub fn remove(&self, path: &str) -> Tree {
        let mut t = self.clone();
        assert!(t.files.remove(path).is_some(), "no file {path}");
        t
    }
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let rel = path
            .strip_prefix(root)
            .expect("under root")
            .to_string_lossy()
            .replace('\\', "/");
        let name = entry.file_name().to_string_lossy().into_owned();
        if rel == "deploy/check" || name == "target" || name == ".env" {
            continue;
        }
        if entry.file_type()?.is_dir() {
            walk(root, &path, out)?;
        } else if let Ok(text) = std::fs::read_to_string(&path) {
            out.insert(rel, text);
        }
    }
    Ok(())
}

/// What the binaries accept, read from their sources.
#[derive(Debug, Clone, Default)]
pub struct Accepted {
    /// `POET_*` names the coordinator reads (clap `env = ...`, plus poet-sql's own).
    pub coordinator_env: BTreeSet<String>,
    /// `POET_*` names `poet-worker` reads.
    pub worker_env: BTreeSet<String>,
    /// `--flags` of `poet coordinator`.
    pub coordinator_flags: BTreeSet<String>,
    /// `--flags` of `poet-worker` (every subcommand and the global ones).
    pub worker_flags: BTreeSet<String>,
}

impl Accepted {
    /// Reads the sources in `tree`; a source that is missing or names nothing is a problem.
    pub fn from_tree(tree: &Tree) -> Result<Accepted, String> {
        let src = |p: &str| tree.get(p).ok_or_else(|| format!("{p}: missing"));
        let clap_env = Regex::new(r#"env\s*=\s*"(POET_[A-Z0-9_]+)""#).expect("regex");
        let var_env = Regex::new(r#"var(?:_os)?\(\s*"(POET_[A-Z0-9_]+)"\s*\)"#).expect("regex");
        let names = |re: &Regex, text: &str| -> BTreeSet<String> {
            re.captures_iter(text).map(|c| c[1].to_string()).collect()
        };
        let config = src(COORDINATOR_CONFIG)?;
        let worker = src(WORKER_MAIN)?;
        let mut coordinator_env = names(&clap_env, config);
        coordinator_env.extend(names(&var_env, src(SQL_CLUSTER)?));
        let worker_env = names(&clap_env, worker);
        let a = Accepted {
            coordinator_flags: flags(config),
            worker_flags: flags(worker),
            coordinator_env,
            worker_env,
        };
        for (what, set) in [
            ("coordinator env names", &a.coordinator_env),
            ("worker env names", &a.worker_env),
            ("coordinator flags", &a.coordinator_flags),
            ("worker flags", &a.worker_flags),
        ] {
            if set.is_empty() {
                return Err(format!(
                    "found no {what} in the sources: has their shape changed?"
                ));
            }
        }
        Ok(a)
    }

    /// Every env name either binary reads.
    pub fn any_env(&self) -> BTreeSet<String> {
        self.coordinator_env
            .union(&self.worker_env)
            .cloned()
            .collect()
    }
}

/// `--flag` names of the clap `#[arg(long ...)]` fields in `source`.
fn flags(source: &str) -> BTreeSet<String> {
    let field =
        Regex::new(r"#\[arg\(([^\]]*)\)\]\s*(?:pub\s+)?([a-z_][a-z0-9_]*)\s*:").expect("regex");
    let long_named = Regex::new(r#"long\s*=\s*"([a-z0-9-]+)""#).expect("regex");
    let long_bare = Regex::new(r"(^|[,\s(])long\s*(,|$)").expect("regex");
    let mut out = BTreeSet::new();
    for c in field.captures_iter(source) {
        let args = &c[1];
        if let Some(n) = long_named.captures(args) {
            out.insert(format!("--{}", &n[1]));
        } else if long_bare.is_match(args.trim()) {
            out.insert(format!("--{}", c[2].replace('_', "-")));
        }
    }
    out
}

/// Logical lines of a Dockerfile or a systemd unit, with the 1-based number of the line
/// each starts on: blank lines and comment lines (starting with one of `comment`) dropped,
/// also between continuations, as both formats do; a trailing `\` joins the next line with
/// a space.
pub fn logical_lines(text: &str, comment: &[char]) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with(comment) {
            continue;
        }
        let (start, mut acc) = pending.take().unwrap_or((n + 1, String::new()));
        match line.strip_suffix('\\') {
            Some(cont) => {
                acc.push_str(cont);
                acc.push(' ');
                pending = Some((start, acc));
            }
            None => out.push((start, acc + line)),
        }
    }
    out.extend(pending.map(|(n, acc)| (n, acc.trim_end().to_string())));
    out
}

/// The port of a `host:port` listen address (also `[::]:port`), if it parses.
pub fn listen_port(addr: &str) -> Option<u16> {
    addr.rsplit_once(':')?.1.parse().ok()
}

/// Whether a listen address is loopback-only (the coordinator then needs no tokens).
pub fn is_loopback(addr: &str) -> bool {
    let host = addr
        .rsplit_once(':')
        .map_or(addr, |(h, _)| h)
        .trim_matches(['[', ']']);
    host == "localhost" || host.starts_with("127.") || host == "::1"
}

/// Host and port of a URL such as `http://coordinator:50051` (port defaults by scheme).
pub fn url_host_port(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok()?)),
        None => Some((
            authority.to_string(),
            if scheme == "https" { 443 } else { 80 },
        )),
    }
}

/// Every check over the tree; empty when the deploy files are consistent.
pub fn check_all(tree: &Tree) -> Vec<String> {
    let accepted = match Accepted::from_tree(tree) {
        Ok(a) => a,
        Err(e) => return vec![e],
    };
    let mut problems = Vec::new();
    problems.extend(text::check_yaml_parses(tree));
    problems.extend(text::check_env_names(tree, &accepted));
    problems.extend(text::check_docs(tree));
    problems.extend(k8s::check(tree, &accepted));
    problems.extend(compose::check(tree, &accepted));
    problems.extend(systemd::check(tree, &accepted));
    problems.extend(docker::check(tree, &accepted));
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_come_from_long_args() {
        let src = r#"
            #[arg(long, env = "POET_LISTEN", default_value = "x")]
            pub listen: String,
            #[arg(long = "database-url", env = "POET_DATABASE_URL")]
            pub database_url: Option<String>,
            #[arg(
                long,
                env = "POET_TEMPERATURE",
                value_delimiter = ',',
            )]
            temperature: Vec<f64>,
            #[arg(env = "POET_POSITIONAL")]
            positional: String,
        "#;
        let f = flags(src);
        assert_eq!(
            f.into_iter().collect::<Vec<_>>(),
            ["--database-url", "--listen", "--temperature"]
        );
    }

    #[test]
    fn logical_lines_join_continuations_and_drop_comments() {
        let lines = logical_lines("# c\nRUN a \\\n  # inner\n  b\n\n; x\nK=v\n", &['#', ';']);
        assert_eq!(lines, [(2, "RUN a  b".to_string()), (7, "K=v".to_string())]);
    }

    #[test]
    fn addresses() {
        assert_eq!(listen_port("0.0.0.0:50051"), Some(50051));
        assert_eq!(listen_port("[::]:9464"), Some(9464));
        assert!(is_loopback("127.0.0.1:50051"));
        assert!(is_loopback("[::1]:50051"));
        assert!(!is_loopback("0.0.0.0:50051"));
        assert_eq!(
            url_host_port("http://coordinator:50051"),
            Some(("coordinator".into(), 50051))
        );
        assert_eq!(
            url_host_port("https://c.example.com/x"),
            Some(("c.example.com".into(), 443))
        );
        assert_eq!(
            url_host_port("postgres://u:p@db:5432/poet"),
            Some(("db".into(), 5432))
        );
    }
}

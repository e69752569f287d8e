//! systemd units: parsed as INI, then checked for the right command line, a stop that gives
//! the worker time to hand its run back, secrets from an EnvironmentFile, and hardening
//! that does not hide the GPU.

use std::collections::BTreeMap;

use crate::{
    Accepted, GRPC_PORT, METRICS_PORT, Tree, WORKER_GRACE_S, is_loopback, listen_port,
    url_host_port,
};

/// The coordinator unit.
pub const COORDINATOR_UNIT: &str = "deploy/systemd/poet-coordinator.service";
/// The templated worker unit.
pub const WORKER_UNIT: &str = "deploy/systemd/poet-worker@.service";

/// A unit file: section → key → values in order (keys may repeat).
pub type Unit = BTreeMap<String, BTreeMap<String, Vec<String>>>;

/// Parses systemd's INI dialect: `[Section]`, `Key=Value`, `#`/`;` comments, trailing `\`
/// continuations.
pub fn parse_unit(text: &str) -> Result<Unit, String> {
    let mut unit = Unit::new();
    let mut section: Option<String> = None;
    for (n, full) in crate::logical_lines(text, &['#', ';']) {
        if let Some(name) = full.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = Some(name.to_string());
            unit.entry(name.to_string()).or_default();
            continue;
        }
        let Some(sec) = &section else {
            return Err(format!("line {n}: key outside a section"));
        };
        let Some((k, v)) = full.split_once('=') else {
            return Err(format!("line {n}: not Key=Value: {full}"));
        };
        unit.get_mut(sec)
            .expect("section")
            .entry(k.trim().to_string())
            .or_default()
            .push(v.trim().to_string());
    }
    Ok(unit)
}

/// The last value of `key` in `section`.
fn last<'a>(unit: &'a Unit, section: &str, key: &str) -> Option<&'a str> {
    unit.get(section)?.get(key)?.last().map(String::as_str)
}

/// A systemd time span (`120`, `120s`, `2min`, `1min 30s`) in seconds.
pub fn timespan_s(text: &str) -> Option<u64> {
    let mut total = 0;
    for part in text.split_whitespace() {
        let split = part
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(part.len());
        let (n, unit) = part.split_at(split);
        let n: u64 = n.parse().ok()?;
        total += n * match unit {
            "" | "s" | "sec" => 1,
            "m" | "min" => 60,
            "h" | "hr" => 3600,
            _ => return None,
        };
    }
    Some(total)
}

/// `Environment=` assignments (each value may hold several `K=V`, optionally quoted).
fn environment(unit: &Unit) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for v in unit
        .get("Service")
        .and_then(|s| s.get("Environment"))
        .into_iter()
        .flatten()
    {
        for item in v.split_whitespace() {
            let item = item.trim_matches('"');
            if let Some((k, v)) = item.split_once('=') {
                out.insert(k.to_string(), v.to_string());
            }
        }
    }
    out
}

/// `KEY=VALUE` lines of an env example file.
fn env_file(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// Checks both units and their env examples.
pub fn check(tree: &Tree, accepted: &Accepted) -> Vec<String> {
    let mut problems = Vec::new();
    let load = |path: &str, problems: &mut Vec<String>| match tree.get(path).map(parse_unit) {
        Some(Ok(u)) => Some(u),
        Some(Err(e)) => {
            problems.push(format!("{path}: {e}"));
            None
        }
        None => {
            problems.push(format!("{path}: missing"));
            None
        }
    };
    if let Some(u) = load(COORDINATOR_UNIT, &mut problems) {
        check_common(COORDINATOR_UNIT, &u, &mut problems);
        let example = example_env(tree, COORDINATOR_UNIT, &u, &mut problems);
        let mut env = example.clone();
        env.extend(environment(&u));
        check_command(
            COORDINATOR_UNIT,
            &u,
            &["/poet", "coordinator"],
            &accepted.coordinator_flags,
            &mut problems,
        );
        for n in env.keys().filter(|n| n.starts_with("POET_")) {
            if !accepted.coordinator_env.contains(n) {
                problems.push(format!(
                    "{COORDINATOR_UNIT}: {n} is not read by poet coordinator"
                ));
            }
        }
        let listen = env
            .get("POET_LISTEN")
            .cloned()
            .unwrap_or_else(|| "127.0.0.1:50051".into());
        if listen_port(&listen) != Some(GRPC_PORT) {
            problems.push(format!(
                "{COORDINATOR_UNIT}: POET_LISTEN {listen} is not port {GRPC_PORT}"
            ));
        }
        if !is_loopback(&listen) {
            let (c, w) = (
                example.get("POET_CLIENT_TOKEN"),
                example.get("POET_WORKER_TOKEN"),
            );
            if c.is_none()
                || w.is_none()
                || c == w
                || c.is_some_and(|c| c.len() < 32)
                || w.is_some_and(|w| w.len() < 32)
            {
                problems.push(format!(
                    "{COORDINATOR_UNIT}: listens on {listen}, so its EnvironmentFile example must set POET_CLIENT_TOKEN and POET_WORKER_TOKEN (32+ characters, different)"
                ));
            }
            for n in ["POET_CLIENT_TOKEN", "POET_WORKER_TOKEN"] {
                if environment(&u).contains_key(n) {
                    problems.push(format!("{COORDINATOR_UNIT}: {n} in Environment= is world-readable; keep it in the EnvironmentFile"));
                }
            }
        }
        if let Some(m) = env.get("POET_METRICS_LISTEN")
            && listen_port(m) != Some(METRICS_PORT)
        {
            problems.push(format!(
                "{COORDINATOR_UNIT}: POET_METRICS_LISTEN {m} is not port {METRICS_PORT}"
            ));
        }
    }
    if let Some(u) = load(WORKER_UNIT, &mut problems) {
        check_common(WORKER_UNIT, &u, &mut problems);
        let mut env = example_env(tree, WORKER_UNIT, &u, &mut problems);
        env.extend(environment(&u));
        let args = check_command(
            WORKER_UNIT,
            &u,
            &["/poet-worker", "run"],
            &accepted.worker_flags,
            &mut problems,
        );
        if !args
            .windows(2)
            .any(|w| w[0] == "--device" && w[1] == "cuda:%i")
            && !args.iter().any(|a| a == "--device=cuda:%i")
        {
            problems.push(format!("{WORKER_UNIT}: ExecStart must pass --device cuda:%i (the instance is the GPU index)"));
        }
        for n in env.keys().filter(|n| n.starts_with("POET_")) {
            if !accepted.worker_env.contains(n) {
                problems.push(format!("{WORKER_UNIT}: {n} is not read by poet-worker"));
            }
        }
        match env.get("POET_COORDINATOR").and_then(|u| url_host_port(u)) {
            Some((_, port)) if port == GRPC_PORT => {}
            other => problems.push(format!(
                "{WORKER_UNIT}: POET_COORDINATOR must be a URL on port {GRPC_PORT}, got {other:?}"
            )),
        }
        if !env.contains_key("POET_TOKEN") {
            problems.push(format!(
                "{WORKER_UNIT}: its EnvironmentFile example does not set POET_TOKEN"
            ));
        }
        if !env
            .get("LD_LIBRARY_PATH")
            .is_some_and(|p| p.contains("torch/lib"))
        {
            problems.push(format!(
                "{WORKER_UNIT}: LD_LIBRARY_PATH must name torch's lib/ folder"
            ));
        }
        for (k, bad) in [
            ("PrivateDevices", "yes"),
            ("DevicePolicy", "closed"),
            ("DevicePolicy", "strict"),
            ("MemoryDenyWriteExecute", "yes"),
        ] {
            if last(&u, "Service", k) == Some(bad) {
                problems.push(format!("{WORKER_UNIT}: {k}={bad} breaks CUDA (hides /dev/nvidia* or forbids the driver's JIT)"));
            }
        }
    }
    problems
}

/// What every poet unit needs.
fn check_common(path: &str, u: &Unit, problems: &mut Vec<String>) {
    for (k, want) in [
        ("Restart", "on-failure"),
        ("KillSignal", "SIGTERM"),
        ("NoNewPrivileges", "yes"),
    ] {
        if last(u, "Service", k) != Some(want) {
            problems.push(format!("{path}: {k} must be {want}"));
        }
    }
    match last(u, "Service", "TimeoutStopSec").map(timespan_s) {
        Some(Some(s)) if s >= WORKER_GRACE_S => {}
        other => problems.push(format!(
            "{path}: TimeoutStopSec {other:?} must be at least {WORKER_GRACE_S}s"
        )),
    }
    match last(u, "Service", "User") {
        Some(user) if user != "root" && user != "0" => {}
        other => problems.push(format!(
            "{path}: User={other:?}; run as a dedicated non-root user"
        )),
    }
    if !matches!(
        last(u, "Service", "ProtectSystem"),
        Some("strict" | "full" | "yes")
    ) {
        problems.push(format!("{path}: ProtectSystem is not set"));
    }
    if last(u, "Install", "WantedBy").is_none() {
        problems.push(format!("{path}: no [Install] WantedBy"));
    }
}

/// The ExecStart binary ends with `entry[0]` and its first argument is `entry[1]`; every
/// `--flag` exists. Returns the arguments.
fn check_command(
    path: &str,
    u: &Unit,
    entry: &[&str; 2],
    flags: &std::collections::BTreeSet<String>,
    problems: &mut Vec<String>,
) -> Vec<String> {
    let Some(exec) = last(u, "Service", "ExecStart") else {
        problems.push(format!("{path}: no ExecStart"));
        return Vec::new();
    };
    let words: Vec<String> = exec
        .trim_start_matches(['-', '@', ':', '+', '!'])
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if words.len() < 2
        || !words[0].ends_with(entry[0])
        || !words[0].starts_with('/')
        || words[1] != entry[1]
    {
        problems.push(format!(
            "{path}: ExecStart {exec:?} must run an absolute path ending in {} with `{}`",
            entry[0], entry[1]
        ));
    }
    for w in words.iter().skip(2).filter(|w| w.starts_with("--")) {
        let flag = w.split('=').next().unwrap_or(w);
        if !flags.contains(flag) {
            problems.push(format!(
                "{path}: {flag} is not a flag of {}",
                entry[0].trim_start_matches('/')
            ));
        }
    }
    words
}

/// The example for the unit's EnvironmentFile (`deploy/systemd/<name>.example`): it must
/// exist, so the unit's secrets are documented.
fn example_env(
    tree: &Tree,
    path: &str,
    u: &Unit,
    problems: &mut Vec<String>,
) -> BTreeMap<String, String> {
    let Some(file) = last(u, "Service", "EnvironmentFile") else {
        problems.push(format!(
            "{path}: no EnvironmentFile (tokens must not live in the unit)"
        ));
        return BTreeMap::new();
    };
    let name = file
        .trim_start_matches('-')
        .rsplit('/')
        .next()
        .unwrap_or_default();
    let example = format!("deploy/systemd/{name}.example");
    match tree.get(&example) {
        Some(text) => env_file(text),
        None => {
            problems.push(format!(
                "{path}: EnvironmentFile {file} has no example at {example}"
            ));
            BTreeMap::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sections_repeats_and_continuations() {
        let u = parse_unit("# c\n[Service]\nEnvironment=A=1\nEnvironment=B=2 \\\n  C=3\n; x\n[Install]\nWantedBy=m\n").unwrap();
        assert_eq!(u["Service"]["Environment"], ["A=1", "B=2  C=3"]);
        assert_eq!(last(&u, "Install", "WantedBy"), Some("m"));
        assert!(parse_unit("Key=1\n").is_err());
    }

    #[test]
    fn timespans() {
        assert_eq!(timespan_s("120"), Some(120));
        assert_eq!(timespan_s("2min"), Some(120));
        assert_eq!(timespan_s("1min 30s"), Some(90));
        assert_eq!(timespan_s("forever"), None);
    }
}

//! The single-box Compose file: Postgres, a coordinator reachable with tokens, one worker
//! per GPU with exactly one device reserved, and the ports and secrets agreeing.

use std::collections::{BTreeMap, BTreeSet};

use regex::Regex;
use serde_norway::Value;

use crate::text::{at, scalar, seq_at, str_at, yaml_docs};
use crate::{
    Accepted, GRPC_PORT, METRICS_PORT, Tree, WORKER_GRACE_S, is_loopback, listen_port,
    url_host_port,
};

/// The Compose file.
pub const COMPOSE: &str = "deploy/compose/docker-compose.yml";

/// A Compose duration (`150s`, `2m`, `1m30s`, `1h`) in seconds.
pub fn duration_s(text: &str) -> Option<u64> {
    let re = Regex::new(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$").expect("regex");
    let c = re.captures(text.trim())?;
    if c.get(1).is_none() && c.get(2).is_none() && c.get(3).is_none() {
        return None;
    }
    let n = |i: usize| {
        c.get(i)
            .map_or(0, |m| m.as_str().parse::<u64>().unwrap_or(0))
    };
    Some(n(1) * 3600 + n(2) * 60 + n(3))
}

/// A service's environment (map or `KEY=VALUE` list form).
fn environment(svc: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    match svc.get("environment") {
        Some(Value::Mapping(m)) => {
            for (k, v) in m {
                if let Some(k) = k.as_str() {
                    out.insert(k.to_string(), scalar(v).unwrap_or_default());
                }
            }
        }
        Some(Value::Sequence(s)) => {
            for e in s.iter().filter_map(Value::as_str) {
                let (k, v) = e.split_once('=').unwrap_or((e, ""));
                out.insert(k.to_string(), v.to_string());
            }
        }
        _ => {}
    }
    out
}

/// Whether the service builds or runs the given image.
fn runs(svc: &Value, dockerfile: &str, image: &str) -> bool {
    str_at(svc, &["build", "dockerfile"]).is_some_and(|d| d.ends_with(dockerfile))
        || str_at(svc, &["image"]).is_some_and(|i| i.contains(image))
}

/// The interpolated variable of a `${VAR...}` value, if the whole value is one.
fn interpolated(v: &str) -> Option<String> {
    let re = Regex::new(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)(?:[:?\-+][^}]*)?\}$").expect("regex");
    re.captures(v).map(|c| c[1].to_string())
}

/// Container ports published by a service (`host:container`, `ip:host:container`).
fn published(svc: &Value) -> BTreeSet<u16> {
    seq_at(svc, &["ports"])
        .iter()
        .filter_map(|p| match p {
            Value::Mapping(_) => at(p, &["target"]).and_then(Value::as_u64).map(|n| n as u16),
            other => scalar(other)?
                .rsplit(':')
                .next()?
                .split('/')
                .next()?
                .parse()
                .ok(),
        })
        .collect()
}

/// Every check on the Compose file.
pub fn check(tree: &Tree, accepted: &Accepted) -> Vec<String> {
    let Some(text) = tree.get(COMPOSE) else {
        return vec![format!("{COMPOSE}: missing")];
    };
    let doc = match yaml_docs(text) {
        Ok(mut d) if d.len() == 1 => d.remove(0),
        Ok(_) => return vec![format!("{COMPOSE}: expected one YAML document")],
        Err(e) => return vec![format!("{COMPOSE}: {e}")],
    };
    let mut problems = Vec::new();
    let Some(services) = at(&doc, &["services"]).and_then(Value::as_mapping) else {
        return vec![format!("{COMPOSE}: no services")];
    };
    let named: Vec<(String, &Value)> = services
        .iter()
        .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v)))
        .collect();

    let postgres: Vec<&(String, &Value)> = named
        .iter()
        .filter(|(_, s)| str_at(s, &["image"]).is_some_and(|i| i.starts_with("postgres:")))
        .collect();
    match postgres.as_slice() {
        [(_, pg)] => {
            if !str_at(pg, &["image"]).is_some_and(|i| i.starts_with("postgres:15")) {
                problems.push(format!("{COMPOSE}: Postgres should be postgres:15"));
            }
            let mounts: Vec<String> = seq_at(pg, &["volumes"]).iter().filter_map(scalar).collect();
            if !mounts
                .iter()
                .any(|m| m.ends_with(":/var/lib/postgresql/data"))
            {
                problems.push(format!("{COMPOSE}: Postgres data is not on a volume"));
            }
        }
        _ => problems.push(format!("{COMPOSE}: expected exactly one postgres service")),
    }
    let pg_name = postgres.first().map(|(n, _)| n.clone()).unwrap_or_default();

    let coordinators: Vec<&(String, &Value)> = named
        .iter()
        .filter(|(_, s)| runs(s, "coordinator.Dockerfile", "poet-coordinator"))
        .collect();
    let workers: Vec<&(String, &Value)> = named
        .iter()
        .filter(|(_, s)| runs(s, "worker.Dockerfile", "poet-worker"))
        .collect();
    let [(coord_name, coord)] = coordinators.as_slice() else {
        problems.push(format!(
            "{COMPOSE}: expected exactly one coordinator service"
        ));
        return problems;
    };
    if workers.is_empty() {
        problems.push(format!("{COMPOSE}: no worker service"));
    }

    let ctx = format!("{COMPOSE}: service {coord_name}");
    let env = environment(coord);
    for n in env.keys().filter(|n| n.starts_with("POET_")) {
        if !accepted.coordinator_env.contains(n) {
            problems.push(format!("{ctx}: {n} is not read by poet coordinator"));
        }
    }
    let listen = env
        .get("POET_LISTEN")
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:50051".into());
    if listen_port(&listen) != Some(GRPC_PORT) || is_loopback(&listen) {
        problems.push(format!("{ctx}: POET_LISTEN {listen} must be 0.0.0.0:{GRPC_PORT} for other containers to reach it"));
    }
    let worker_token_var = env.get("POET_WORKER_TOKEN").and_then(|v| interpolated(v));
    if !is_loopback(&listen) {
        for n in ["POET_CLIENT_TOKEN", "POET_WORKER_TOKEN"] {
            if env.get(n).and_then(|v| interpolated(v)).is_none() {
                problems.push(format!(
                    "{ctx}: {n} must be set from the env file (${{VAR}}), not missing or literal"
                ));
            }
        }
        if env.get("POET_CLIENT_TOKEN").and_then(|v| interpolated(v)) == worker_token_var {
            problems.push(format!(
                "{ctx}: both tokens come from the same variable; they must differ"
            ));
        }
    }
    // `${VAR:?message}` may hold any character; judge the URL with a stand-in value.
    let placeholder = Regex::new(r"\$\{[^}]*\}").expect("regex");
    let db_url = env
        .get("POET_DATABASE_URL")
        .map(|u| placeholder.replace_all(u, "x").into_owned());
    match db_url.as_deref().and_then(url_host_port) {
        Some((host, _)) if host == pg_name => {}
        other => problems.push(format!(
            "{ctx}: POET_DATABASE_URL must point at the {pg_name} service, got {other:?}"
        )),
    }
    let ports = published(coord);
    if !ports.contains(&GRPC_PORT) {
        problems.push(format!(
            "{ctx}: does not publish container port {GRPC_PORT}"
        ));
    }
    match env.get("POET_METRICS_LISTEN") {
        Some(m) if listen_port(m) == Some(METRICS_PORT) => {
            if !ports.contains(&METRICS_PORT) {
                problems.push(format!(
                    "{ctx}: does not publish container port {METRICS_PORT}"
                ));
            }
        }
        other => problems.push(format!(
            "{ctx}: POET_METRICS_LISTEN must be on port {METRICS_PORT}, got {other:?}"
        )),
    }
    let health: Vec<String> = seq_at(coord, &["healthcheck", "test"])
        .iter()
        .filter_map(scalar)
        .collect();
    if !health.iter().any(|a| a.contains("grpc_health_probe"))
        || !health
            .iter()
            .any(|a| a.starts_with("-addr") && a.ends_with(&format!(":{GRPC_PORT}")))
    {
        problems.push(format!(
            "{ctx}: healthcheck must run grpc_health_probe against port {GRPC_PORT}"
        ));
    }
    if let Some(a) = env
        .get("POET_ARTIFACTS")
        .filter(|a| !a.starts_with("s3://"))
    {
        let mounts: Vec<String> = seq_at(coord, &["volumes"])
            .iter()
            .filter_map(scalar)
            .collect();
        if !mounts.iter().any(|m| m.ends_with(&format!(":{a}"))) {
            problems.push(format!("{ctx}: POET_ARTIFACTS {a} is not on a volume; checkpoints would die with the container"));
        }
    }

    let mut gpus = BTreeSet::new();
    for (name, w) in &workers {
        let ctx = format!("{COMPOSE}: service {name}");
        let env = environment(w);
        for n in env.keys().filter(|n| n.starts_with("POET_")) {
            if !accepted.worker_env.contains(n) {
                problems.push(format!("{ctx}: {n} is not read by poet-worker"));
            }
        }
        match env.get("POET_COORDINATOR").and_then(|u| url_host_port(u)) {
            Some((host, port)) if &host == coord_name && port == GRPC_PORT => {}
            other => problems.push(format!(
                "{ctx}: POET_COORDINATOR must be http://{coord_name}:{GRPC_PORT}, got {other:?}"
            )),
        }
        let token_var = env.get("POET_TOKEN").and_then(|v| interpolated(v));
        if token_var.is_none() || token_var != worker_token_var {
            problems.push(format!(
                "{ctx}: POET_TOKEN must interpolate the same variable as the coordinator's POET_WORKER_TOKEN ({worker_token_var:?}), got {token_var:?}"
            ));
        }
        if let Some(d) = env.get("POET_DEVICE")
            && d != "cuda:0"
            && d != "auto"
        {
            problems.push(format!(
                "{ctx}: POET_DEVICE {d}: the container sees only its reserved GPU, as cuda:0"
            ));
        }
        let devices = seq_at(w, &["deploy", "resources", "reservations", "devices"]);
        let nvidia: Vec<&Value> = devices
            .iter()
            .filter(|d| str_at(d, &["driver"]).as_deref() == Some("nvidia"))
            .collect();
        match nvidia.as_slice() {
            [d] => {
                let ids: Vec<String> = seq_at(d, &["device_ids"])
                    .iter()
                    .filter_map(scalar)
                    .collect();
                let caps: Vec<String> = seq_at(d, &["capabilities"])
                    .iter()
                    .filter_map(scalar)
                    .collect();
                if ids.len() != 1 || d.get("count").is_some() {
                    problems.push(format!(
                        "{ctx}: reserve exactly one GPU with device_ids: [\"N\"], got {ids:?}"
                    ));
                }
                if !caps.iter().any(|c| c == "gpu") {
                    problems.push(format!(
                        "{ctx}: the nvidia device reservation lacks capabilities: [gpu]"
                    ));
                }
                for id in ids {
                    if !gpus.insert(id.clone()) {
                        problems.push(format!("{ctx}: GPU {id} is reserved by another worker too"));
                    }
                }
            }
            _ => problems.push(format!(
                "{ctx}: needs exactly one nvidia device reservation"
            )),
        }
        match str_at(w, &["stop_grace_period"]).as_deref().map(duration_s) {
            Some(Some(s)) if s >= WORKER_GRACE_S => {}
            other => problems.push(format!(
                "{ctx}: stop_grace_period {other:?} must be at least {WORKER_GRACE_S}s so a stopping worker can finish an upload"
            )),
        }
        if str_at(w, &["stop_signal"]).is_some_and(|s| s != "SIGTERM") {
            problems.push(format!(
                "{ctx}: stop_signal must be SIGTERM (the worker releases its run on it)"
            ));
        }
    }

    // Named volumes used by services are declared.
    let declared: BTreeSet<String> = at(&doc, &["volumes"])
        .and_then(Value::as_mapping)
        .map(|m| {
            m.keys()
                .filter_map(|k| k.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    for (name, s) in &named {
        for v in seq_at(s, &["volumes"]).iter().filter_map(scalar) {
            let src = v.split(':').next().unwrap_or_default();
            if !src.is_empty() && !src.starts_with(['.', '/', '~', '$']) && !declared.contains(src)
            {
                problems.push(format!(
                    "{COMPOSE}: service {name} mounts volume {src}, which is not declared"
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration_s("150s"), Some(150));
        assert_eq!(duration_s("2m"), Some(120));
        assert_eq!(duration_s("1m30s"), Some(90));
        assert_eq!(duration_s("soon"), None);
        assert_eq!(duration_s(""), None);
    }

    #[test]
    fn interpolation() {
        assert_eq!(interpolated("${A:?set it}"), Some("A".into()));
        assert_eq!(interpolated("${A}"), Some("A".into()));
        assert_eq!(interpolated("literal"), None);
        assert_eq!(interpolated("x${A}"), None);
    }
}

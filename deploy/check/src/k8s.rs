//! Kubernetes: renders each kustomize overlay under `deploy/k8s/overlays/` the way
//! `kubectl apply -k` would for the features we use (resources, config-map and secret
//! generators with merge, replicas), then checks the objects against the binaries.
//!
//! A kustomization feature the renderer does not know (patches, components, remote bases)
//! is reported instead of ignored: a check that silently skipped a patch would pass files
//! that deploy something else.

use std::collections::{BTreeMap, BTreeSet};

use serde_norway::{Mapping, Value};

use crate::text::{at, scalar, seq_at, str_at, yaml_docs};
use crate::{
    Accepted, GRPC_PORT, METRICS_PORT, Tree, WORKER_GRACE_S, is_loopback, listen_port,
    url_host_port,
};

/// Overlays live in folders under this one.
pub const OVERLAYS: &str = "deploy/k8s/overlays/";
/// The base every overlay builds on.
pub const BASE: &str = "deploy/k8s/base";

/// One Kubernetes object and the file it came from.
#[derive(Debug, Clone)]
pub struct Obj {
    /// Source file (or the kustomization that generated it).
    pub file: String,
    /// The object.
    pub value: Value,
}

impl Obj {
    /// `kind`.
    pub fn kind(&self) -> String {
        str_at(&self.value, &["kind"]).unwrap_or_default()
    }

    /// `metadata.name`.
    pub fn name(&self) -> String {
        str_at(&self.value, &["metadata", "name"]).unwrap_or_default()
    }
}

const KNOWN_KUSTOMIZE_KEYS: [&str; 12] = [
    "apiVersion",
    "kind",
    "namespace",
    "resources",
    "configMapGenerator",
    "secretGenerator",
    "generatorOptions",
    "images",
    "replicas",
    "labels",
    "commonLabels",
    "commonAnnotations",
];

/// Joins a relative path onto a folder, resolving `.` and `..`.
fn join(dir: &str, rel: &str) -> String {
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for p in rel.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

fn kustomization_path(tree: &Tree, dir: &str) -> Option<String> {
    ["kustomization.yaml", "kustomization.yml", "Kustomization"]
        .iter()
        .map(|f| format!("{dir}/{f}"))
        .find(|p| tree.get(p).is_some())
}

/// Renders the kustomization in `dir` (a path relative to the repository root).
pub fn render(tree: &Tree, dir: &str) -> Result<Vec<Obj>, Vec<String>> {
    let mut objs = Vec::new();
    let mut problems = Vec::new();
    render_into(tree, dir, 0, &mut objs, &mut problems);
    if problems.is_empty() {
        Ok(objs)
    } else {
        Err(problems)
    }
}

fn render_into(
    tree: &Tree,
    dir: &str,
    depth: usize,
    objs: &mut Vec<Obj>,
    problems: &mut Vec<String>,
) {
    let Some(kpath) = kustomization_path(tree, dir) else {
        problems.push(format!("{dir}: no kustomization.yaml"));
        return;
    };
    if depth > 8 {
        problems.push(format!(
            "{kpath}: kustomization nesting too deep (a cycle?)"
        ));
        return;
    }
    let k = match yaml_docs(tree.get(&kpath).unwrap_or_default()) {
        Ok(mut d) if d.len() == 1 => d.remove(0),
        Ok(_) => return problems.push(format!("{kpath}: expected one YAML document")),
        Err(e) => return problems.push(format!("{kpath}: {e}")),
    };
    if let Some(m) = k.as_mapping() {
        for key in m.keys().filter_map(Value::as_str) {
            if !KNOWN_KUSTOMIZE_KEYS.contains(&key) {
                problems.push(format!(
                    "{kpath}: `{key}` is not understood by deploy/check, which would check the files without it; extend deploy/check/src/k8s.rs"
                ));
            }
        }
    }
    for r in seq_at(&k, &["resources"]) {
        let Some(r) = r.as_str() else { continue };
        if r.contains("://") || r.starts_with("github.com/") {
            problems.push(format!("{kpath}: remote resource {r} cannot be checked"));
            continue;
        }
        let p = join(dir, r);
        if kustomization_path(tree, &p).is_some() {
            render_into(tree, &p, depth + 1, objs, problems);
        } else if let Some(text) = tree.get(&p) {
            match yaml_docs(text) {
                Ok(docs) => objs.extend(docs.into_iter().map(|value| Obj {
                    file: p.clone(),
                    value,
                })),
                Err(e) => problems.push(format!("{p}: {e}")),
            }
        } else {
            problems.push(format!("{kpath}: resource {r} not found"));
        }
    }
    for (field, kind) in [
        ("configMapGenerator", "ConfigMap"),
        ("secretGenerator", "Secret"),
    ] {
        for g in seq_at(&k, &[field]) {
            generate(tree, dir, &kpath, g, kind, objs, problems);
        }
    }
    for r in seq_at(&k, &["replicas"]) {
        let (Some(name), Some(count)) = (
            str_at(r, &["name"]),
            at(r, &["count"]).and_then(Value::as_u64),
        ) else {
            problems.push(format!("{kpath}: replicas entry without name and count"));
            continue;
        };
        let mut found = false;
        for o in objs
            .iter_mut()
            .filter(|o| o.name() == name && o.kind() == "Deployment")
        {
            if let Some(spec) = o.value.get_mut("spec").and_then(Value::as_mapping_mut) {
                spec.insert("replicas".into(), Value::from(count));
                found = true;
            }
        }
        if !found {
            problems.push(format!(
                "{kpath}: replicas names {name}, which no Deployment is called"
            ));
        }
    }
}

/// Applies one configMapGenerator/secretGenerator entry.
fn generate(
    tree: &Tree,
    dir: &str,
    kpath: &str,
    g: &Value,
    kind: &str,
    objs: &mut Vec<Obj>,
    problems: &mut Vec<String>,
) {
    let Some(name) = str_at(g, &["name"]) else {
        return problems.push(format!("{kpath}: a {kind} generator without a name"));
    };
    let mut data = Mapping::new();
    let mut add_line = |line: &str, from: &str, problems: &mut Vec<String>| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return;
        }
        match line.split_once('=') {
            Some((k, v)) => {
                data.insert(k.trim().into(), v.into());
            }
            None => problems.push(format!("{from}: `{line}` is not KEY=VALUE")),
        }
    };
    for l in seq_at(g, &["literals"]) {
        add_line(&scalar(l).unwrap_or_default(), kpath, problems);
    }
    for e in seq_at(g, &["envs"]) {
        let p = join(dir, e.as_str().unwrap_or_default());
        match tree.get(&p) {
            Some(text) => text.lines().for_each(|l| add_line(l, &p, problems)),
            None => problems.push(format!("{kpath}: env file {p} not found")),
        }
    }
    for f in seq_at(g, &["files"]) {
        let spec = f.as_str().unwrap_or_default();
        let (key, file) = spec
            .split_once('=')
            .unwrap_or((spec.rsplit('/').next().unwrap_or(spec), spec));
        match tree.get(&join(dir, file)) {
            Some(text) => {
                data.insert(key.into(), text.into());
            }
            None => problems.push(format!("{kpath}: file {file} not found")),
        }
    }
    let field = if kind == "Secret" {
        "stringData"
    } else {
        "data"
    };
    let behavior = str_at(g, &["behavior"]).unwrap_or_else(|| "create".into());
    let existing = objs
        .iter_mut()
        .find(|o| o.kind() == kind && o.name() == name);
    match (behavior.as_str(), existing) {
        ("create", Some(_)) => problems.push(format!(
            "{kpath}: {kind} {name} generated twice (use behavior: merge)"
        )),
        ("merge", None) | ("replace", None) => problems.push(format!(
            "{kpath}: {kind} {name} has behavior {behavior} but no base to apply it to"
        )),
        ("merge", Some(o)) => {
            let m = o.value.as_mapping_mut().expect("object");
            let slot = m
                .entry(field.into())
                .or_insert_with(|| Value::Mapping(Mapping::new()));
            if let Some(slot) = slot.as_mapping_mut() {
                slot.extend(data);
            }
        }
        ("replace", Some(o)) => {
            o.value
                .as_mapping_mut()
                .expect("object")
                .insert(field.into(), Value::Mapping(data));
        }
        ("create", None) => {
            let mut m = Mapping::new();
            m.insert("apiVersion".into(), "v1".into());
            m.insert("kind".into(), kind.into());
            let mut meta = Mapping::new();
            meta.insert("name".into(), name.as_str().into());
            m.insert("metadata".into(), Value::Mapping(meta));
            m.insert(field.into(), Value::Mapping(data));
            objs.push(Obj {
                file: kpath.to_string(),
                value: Value::Mapping(m),
            });
        }
        (other, _) => problems.push(format!("{kpath}: unknown generator behavior {other}")),
    }
}

/// Where a container's env value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Src {
    /// A literal or a ConfigMap value.
    Value(String),
    /// A Secret key.
    Secret {
        /// Secret name.
        name: String,
        /// Key in it.
        key: String,
    },
    /// Something else (fieldRef, resourceFieldRef).
    Other,
}

fn find<'a>(objs: &'a [Obj], kind: &str, name: &str) -> Option<&'a Obj> {
    objs.iter().find(|o| o.kind() == kind && o.name() == name)
}

/// The keys of a ConfigMap or Secret with their plain values (`None` for base64 `data` of a
/// Secret, which the checks do not decode).
fn keys_of(o: &Obj) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    for field in ["data", "stringData", "binaryData"] {
        let plain = !(o.kind() == "Secret" && field == "data") && field != "binaryData";
        if let Some(m) = at(&o.value, &[field]).and_then(Value::as_mapping) {
            for (k, v) in m {
                if let Some(k) = k.as_str() {
                    out.insert(k.to_string(), if plain { scalar(v) } else { None });
                }
            }
        }
    }
    out
}

/// A container's environment as the kubelet would build it; missing ConfigMaps, Secrets or
/// keys are problems.
pub fn container_env(
    c: &Value,
    objs: &[Obj],
    ctx: &str,
    problems: &mut Vec<String>,
) -> BTreeMap<String, Src> {
    let mut env = BTreeMap::new();
    for from in seq_at(c, &["envFrom"]) {
        let prefix = str_at(from, &["prefix"]).unwrap_or_default();
        for (field, kind) in [("configMapRef", "ConfigMap"), ("secretRef", "Secret")] {
            let Some(name) = str_at(from, &[field, "name"]) else {
                continue;
            };
            let optional = at(from, &[field, "optional"]).and_then(Value::as_bool) == Some(true);
            match find(objs, kind, &name) {
                Some(o) => {
                    for (k, v) in keys_of(o) {
                        let src = if kind == "Secret" {
                            Src::Secret {
                                name: name.clone(),
                                key: k.clone(),
                            }
                        } else {
                            Src::Value(v.unwrap_or_default())
                        };
                        env.insert(format!("{prefix}{k}"), src);
                    }
                }
                None if !optional => problems.push(format!(
                    "{ctx}: envFrom {kind} {name} is not in the kustomization"
                )),
                None => {}
            }
        }
    }
    for e in seq_at(c, &["env"]) {
        let Some(name) = str_at(e, &["name"]) else {
            continue;
        };
        let src = if let Some(v) = at(e, &["value"]) {
            Src::Value(scalar(v).unwrap_or_default())
        } else if let Some(r) = at(e, &["valueFrom", "secretKeyRef"]) {
            let (sname, key) = (
                str_at(r, &["name"]).unwrap_or_default(),
                str_at(r, &["key"]).unwrap_or_default(),
            );
            let optional = at(r, &["optional"]).and_then(Value::as_bool) == Some(true);
            match find(objs, "Secret", &sname) {
                Some(o) if keys_of(o).contains_key(&key) => {}
                Some(_) if !optional => problems.push(format!(
                    "{ctx}: {name} names key {key} that Secret {sname} lacks"
                )),
                None if !optional => problems.push(format!(
                    "{ctx}: {name} names Secret {sname}, which is not in the kustomization"
                )),
                _ => {}
            }
            Src::Secret { name: sname, key }
        } else if let Some(r) = at(e, &["valueFrom", "configMapKeyRef"]) {
            let (cname, key) = (
                str_at(r, &["name"]).unwrap_or_default(),
                str_at(r, &["key"]).unwrap_or_default(),
            );
            match find(objs, "ConfigMap", &cname).map(keys_of) {
                Some(keys) if keys.contains_key(&key) => {
                    Src::Value(keys[&key].clone().unwrap_or_default())
                }
                Some(_) => {
                    problems.push(format!(
                        "{ctx}: {name} names key {key} that ConfigMap {cname} lacks"
                    ));
                    Src::Other
                }
                None => {
                    problems.push(format!(
                        "{ctx}: {name} names ConfigMap {cname}, which is not in the kustomization"
                    ));
                    Src::Other
                }
            }
        } else {
            Src::Other
        };
        env.insert(name, src);
    }
    env
}

/// The last path segment of an image reference, without tag or digest.
fn image_repo(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    last.split(':').next().unwrap_or(last)
}

/// A container of a workload.
struct Container<'a> {
    workload: &'a Obj,
    pod: &'a Value,
    c: &'a Value,
    ctx: String,
}

fn containers<'a>(objs: &'a [Obj], repo: &str) -> Vec<Container<'a>> {
    let mut out = Vec::new();
    for o in objs
        .iter()
        .filter(|o| ["Deployment", "StatefulSet", "DaemonSet"].contains(&o.kind().as_str()))
    {
        let Some(pod) = at(&o.value, &["spec", "template", "spec"]) else {
            continue;
        };
        for c in seq_at(pod, &["containers"]) {
            if str_at(c, &["image"]).is_some_and(|i| image_repo(&i) == repo) {
                let ctx = format!("{} {} {}", o.file, o.kind(), o.name());
                out.push(Container {
                    workload: o,
                    pod,
                    c,
                    ctx,
                });
            }
        }
    }
    out
}

fn pod_labels(workload: &Obj) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(m) =
        at(&workload.value, &["spec", "template", "metadata", "labels"]).and_then(Value::as_mapping)
    {
        for (k, v) in m {
            if let (Some(k), Some(v)) = (k.as_str(), scalar(v)) {
                out.insert(k.to_string(), v);
            }
        }
    }
    out
}

/// Whether a label selector (a plain map, or `matchLabels`) selects `labels`.
fn selects(selector: Option<&Value>, labels: &BTreeMap<String, String>) -> bool {
    let Some(sel) = selector else { return false };
    let sel = sel.get("matchLabels").unwrap_or(sel);
    let Some(m) = sel.as_mapping() else {
        return false;
    };
    !m.is_empty()
        && m.iter().all(|(k, v)| {
            k.as_str()
                .and_then(|k| labels.get(k))
                .is_some_and(|l| scalar(v).as_deref() == Some(l.as_str()))
        })
}

/// Whether a probe checks the gRPC health service on `port`: a kubelet `grpc` probe, or an
/// exec of grpc_health_probe at that port.
fn grpc_probe_on(probe: Option<&Value>, port: u16) -> bool {
    let Some(p) = probe else { return false };
    if let Some(g) = p.get("grpc") {
        return at(g, &["port"]).and_then(Value::as_u64) == Some(port as u64);
    }
    let cmd: Vec<String> = seq_at(p, &["exec", "command"])
        .iter()
        .filter_map(scalar)
        .collect();
    cmd.first()
        .is_some_and(|c| c.ends_with("grpc_health_probe"))
        && cmd
            .iter()
            .any(|a| a.starts_with("-addr") && a.ends_with(&format!(":{port}")))
}

fn container_ports(c: &Value) -> BTreeMap<String, u64> {
    seq_at(c, &["ports"])
        .iter()
        .filter_map(|p| {
            Some((
                str_at(p, &["name"]).unwrap_or_default(),
                at(p, &["containerPort"])?.as_u64()?,
            ))
        })
        .collect()
}

/// Resolves a Service targetPort (number or container port name) to a number.
fn target_number(
    target: Option<&Value>,
    port: Option<u64>,
    named: &BTreeMap<String, u64>,
) -> Option<u64> {
    match target {
        None => port,
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok().or_else(|| named.get(s).copied()),
        _ => None,
    }
}

fn seconds(v: Option<&Value>) -> Option<u64> {
    v.and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
}

/// Every check on `deploy/k8s`: the base renders, and every overlay is complete and agrees
/// with the binaries.
pub fn check(tree: &Tree, accepted: &Accepted) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(p) = render(tree, BASE) {
        problems.extend(p);
    }
    let overlays: BTreeSet<String> = tree
        .paths()
        .filter_map(|p| p.strip_prefix(OVERLAYS))
        .filter_map(|rest| rest.split_once('/'))
        .filter(|(_, file)| file.starts_with("kustomization."))
        .map(|(dir, _)| format!("{OVERLAYS}{dir}"))
        .collect();
    if overlays.is_empty() {
        problems.push(format!("{OVERLAYS}: no overlay with a kustomization.yaml"));
    }
    for dir in overlays {
        match render(tree, &dir) {
            Ok(objs) => problems.extend(check_overlay(&dir, &objs, accepted)),
            Err(p) => problems.extend(p),
        }
    }
    problems
}

/// The checks on one rendered overlay.
pub fn check_overlay(dir: &str, objs: &[Obj], accepted: &Accepted) -> Vec<String> {
    let mut problems = Vec::new();
    let coordinators = containers(objs, "poet-coordinator");
    let workers = containers(objs, "poet-worker");
    if coordinators.is_empty() {
        problems.push(format!(
            "{dir}: no workload runs the poet-coordinator image"
        ));
    }
    if workers.is_empty() {
        problems.push(format!("{dir}: no workload runs the poet-worker image"));
    }
    check_volume_refs(objs, &mut problems);

    let mut worker_token_src = None;
    for co in &coordinators {
        let ctx = &co.ctx;
        let env = container_env(co.c, objs, ctx, &mut problems);
        check_names(
            ctx,
            &env,
            &accepted.coordinator_env,
            "poet coordinator",
            &mut problems,
        );
        check_entrypoint(
            ctx,
            co.c,
            &["poet", "coordinator"],
            &accepted.coordinator_flags,
            &mut problems,
        );
        check_non_root(ctx, co.pod, co.c, &mut problems);
        let replicas = at(&co.workload.value, &["spec", "replicas"])
            .and_then(Value::as_u64)
            .unwrap_or(1);
        if replicas < 2 {
            problems.push(format!("{ctx}: {replicas} coordinator replica(s); run at least 2 so one can restart while the other serves"));
        }
        let ports = container_ports(co.c);
        for want in [GRPC_PORT, METRICS_PORT] {
            if !ports.values().any(|p| *p == want as u64) {
                problems.push(format!("{ctx}: no containerPort {want}"));
            }
        }
        for probe in ["readinessProbe", "livenessProbe"] {
            if !grpc_probe_on(co.c.get(probe), GRPC_PORT) {
                problems.push(format!(
                    "{ctx}: {probe} must use the gRPC health service on port {GRPC_PORT}"
                ));
            }
        }
        if co.c.get("startupProbe").is_some() && !grpc_probe_on(co.c.get("startupProbe"), GRPC_PORT)
        {
            problems.push(format!(
                "{ctx}: startupProbe must use the gRPC health service on port {GRPC_PORT}"
            ));
        }
        let value = |n: &str| match env.get(n) {
            Some(Src::Value(v)) => Some(v.clone()),
            _ => None,
        };
        // An unset POET_LISTEN is 127.0.0.1:50051: unreachable from any other pod.
        let listen = value("POET_LISTEN").unwrap_or_else(|| "127.0.0.1:50051".into());
        if listen_port(&listen) != Some(GRPC_PORT) {
            problems.push(format!(
                "{ctx}: POET_LISTEN {listen} is not port {GRPC_PORT}"
            ));
        }
        if is_loopback(&listen) {
            problems.push(format!(
                "{ctx}: POET_LISTEN {listen} is loopback, so no other pod can reach it"
            ));
        } else {
            let client = env.get("POET_CLIENT_TOKEN");
            let worker = env.get("POET_WORKER_TOKEN");
            for (n, s) in [("POET_CLIENT_TOKEN", client), ("POET_WORKER_TOKEN", worker)] {
                if !matches!(s, Some(Src::Secret { .. })) {
                    problems.push(format!(
                        "{ctx}: listens on {listen} but {n} does not come from a Secret (the coordinator refuses to start without both tokens)"
                    ));
                }
            }
            if client.is_some() && client == worker {
                problems.push(format!("{ctx}: POET_CLIENT_TOKEN and POET_WORKER_TOKEN come from the same Secret key; they must differ"));
            }
            check_token_values(ctx, objs, client, worker, &mut problems);
            worker_token_src = worker.cloned();
        }
        match value("POET_METRICS_LISTEN") {
            Some(m) if listen_port(&m) == Some(METRICS_PORT) && !is_loopback(&m) => {}
            Some(m) => problems.push(format!("{ctx}: POET_METRICS_LISTEN {m} must be a non-loopback address on port {METRICS_PORT}")),
            None => problems.push(format!("{ctx}: POET_METRICS_LISTEN is not set, so nothing serves /metrics")),
        }
        if !matches!(env.get("POET_DATABASE_URL"), Some(Src::Secret { .. })) {
            problems.push(format!(
                "{ctx}: POET_DATABASE_URL must come from a Secret (unset, the coordinator would start a private Postgres per pod)"
            ));
        }
        match value("POET_ARTIFACTS") {
            Some(a) if a.starts_with("s3://") => {}
            _ if matches!(env.get("POET_ARTIFACTS"), Some(Src::Secret { .. })) => {}
            other => problems.push(format!(
                "{ctx}: POET_ARTIFACTS is {other:?}; replicas need one shared store (s3://bucket/prefix), not a folder per pod"
            )),
        }
        for secret_only in ["AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID"] {
            if matches!(env.get(secret_only), Some(Src::Value(_))) {
                problems.push(format!(
                    "{ctx}: {secret_only} is a literal; take it from a Secret"
                ));
            }
        }
        if let (Some(hb), Some(ttl)) = (value("POET_HEARTBEAT_INTERVAL"), value("POET_LEASE_TTL")) {
            match (hb.parse::<f64>(), ttl.parse::<f64>()) {
                (Ok(hb), Ok(ttl)) if hb * 2.0 <= ttl => {}
                _ => problems.push(format!(
                    "{ctx}: POET_HEARTBEAT_INTERVAL {hb} must be at most half of POET_LEASE_TTL {ttl} (the coordinator refuses otherwise)"
                )),
            }
        }
        check_service_and_pdb(dir, co, replicas, &ports, objs, &mut problems);
    }

    for w in &workers {
        let ctx = &w.ctx;
        let env = container_env(w.c, objs, ctx, &mut problems);
        check_names(
            ctx,
            &env,
            &accepted.worker_env,
            "poet-worker",
            &mut problems,
        );
        check_entrypoint(
            ctx,
            w.c,
            &["poet-worker", "run"],
            &accepted.worker_flags,
            &mut problems,
        );
        check_non_root(ctx, w.pod, w.c, &mut problems);
        let gpus = at(w.c, &["resources", "limits", "nvidia.com/gpu"]).and_then(scalar);
        if gpus.as_deref() != Some("1") {
            problems.push(format!("{ctx}: limits nvidia.com/gpu is {gpus:?}; one worker process per GPU means exactly 1"));
        }
        let grace = seconds(w.pod.get("terminationGracePeriodSeconds")).unwrap_or(30);
        if grace < WORKER_GRACE_S {
            problems.push(format!(
                "{ctx}: terminationGracePeriodSeconds {grace} < {WORKER_GRACE_S}: a worker stopping mid-upload would be killed"
            ));
        }
        match env.get("POET_COORDINATOR") {
            Some(Src::Value(url)) => {
                match url_host_port(url) {
                    Some((host, port)) => {
                        let service = host.split('.').next().unwrap_or_default();
                        if port != GRPC_PORT {
                            problems.push(format!(
                                "{ctx}: POET_COORDINATOR {url} is not port {GRPC_PORT}"
                            ));
                        }
                        if find(objs, "Service", service).is_none() {
                            problems.push(format!("{ctx}: POET_COORDINATOR {url} names no Service in the kustomization"));
                        }
                    }
                    None => problems.push(format!("{ctx}: POET_COORDINATOR {url} is not a URL")),
                }
            }
            _ => problems.push(format!("{ctx}: POET_COORDINATOR is not set to a URL")),
        }
        match (env.get("POET_TOKEN"), &worker_token_src) {
            (Some(t @ Src::Secret { .. }), Some(c)) if t == c => {}
            (Some(Src::Secret { .. }), None) => {}
            (t, c) => problems.push(format!(
                "{ctx}: POET_TOKEN ({t:?}) must come from the same Secret key as the coordinator's POET_WORKER_TOKEN ({c:?})"
            )),
        }
        if let Some(Src::Value(d)) = env.get("POET_DEVICE")
            && d != "cuda:0"
            && d != "auto"
        {
            problems.push(format!(
                "{ctx}: POET_DEVICE {d}: a pod sees only its assigned GPU, as cuda:0"
            ));
        }
    }
    check_service_monitors(objs, &mut problems);
    problems
}

fn check_names(
    ctx: &str,
    env: &BTreeMap<String, Src>,
    known: &BTreeSet<String>,
    binary: &str,
    problems: &mut Vec<String>,
) {
    for n in env.keys().filter(|n| n.starts_with("POET_")) {
        if !known.contains(n) {
            problems.push(format!("{ctx}: {n} is not read by {binary}"));
        }
    }
}

/// `command` (if set) must keep the image's entrypoint; every `--flag` in command/args must
/// be one the binary has.
fn check_entrypoint(
    ctx: &str,
    c: &Value,
    entry: &[&str],
    flags: &BTreeSet<String>,
    problems: &mut Vec<String>,
) {
    let command: Vec<String> = seq_at(c, &["command"]).iter().filter_map(scalar).collect();
    if !command.is_empty()
        && !command.starts_with(&entry.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    {
        problems.push(format!(
            "{ctx}: command {command:?} does not run `{}`",
            entry.join(" ")
        ));
    }
    let args: Vec<String> = seq_at(c, &["args"]).iter().filter_map(scalar).collect();
    for a in command.iter().chain(&args).filter(|a| a.starts_with("--")) {
        let flag = a.split('=').next().unwrap_or(a);
        if !flags.contains(flag) {
            problems.push(format!(
                "{ctx}: {flag} is not a flag of `{}`",
                entry.join(" ")
            ));
        }
    }
}

fn check_non_root(ctx: &str, pod: &Value, c: &Value, problems: &mut Vec<String>) {
    let non_root = |v: &Value| at(v, &["securityContext", "runAsNonRoot"]).and_then(Value::as_bool);
    if non_root(c).or(non_root(pod)) != Some(true) {
        problems.push(format!("{ctx}: securityContext.runAsNonRoot is not true"));
    }
    if at(c, &["securityContext", "allowPrivilegeEscalation"]).and_then(Value::as_bool)
        != Some(false)
    {
        problems.push(format!(
            "{ctx}: securityContext.allowPrivilegeEscalation is not false"
        ));
    }
}

/// Placeholder token values in the kustomization follow the coordinator's rules too.
fn check_token_values(
    ctx: &str,
    objs: &[Obj],
    client: Option<&Src>,
    worker: Option<&Src>,
    problems: &mut Vec<String>,
) {
    let value = |s: Option<&Src>| match s {
        Some(Src::Secret { name, key }) => {
            find(objs, "Secret", name).and_then(|o| keys_of(o).remove(key).flatten())
        }
        _ => None,
    };
    let (c, w) = (value(client), value(worker));
    for (n, v) in [("client", &c), ("worker", &w)] {
        if let Some(v) = v
            && v.len() < 32
        {
            problems.push(format!(
                "{ctx}: the {n} token in the Secret is shorter than 32 characters"
            ));
        }
    }
    if c.is_some() && c == w {
        problems.push(format!(
            "{ctx}: the client and worker tokens in the Secret are equal"
        ));
    }
}

fn check_service_and_pdb(
    dir: &str,
    co: &Container<'_>,
    replicas: u64,
    ports: &BTreeMap<String, u64>,
    objs: &[Obj],
    problems: &mut Vec<String>,
) {
    let labels = pod_labels(co.workload);
    let services: Vec<&Obj> = objs
        .iter()
        .filter(|o| o.kind() == "Service" && selects(at(&o.value, &["spec", "selector"]), &labels))
        .collect();
    if services.is_empty() {
        problems.push(format!(
            "{}: no Service selects the coordinator pods",
            co.ctx
        ));
    }
    for s in services {
        let ctx = format!("{} Service {}", s.file, s.name());
        let mut found = BTreeSet::new();
        for p in seq_at(&s.value, &["spec", "ports"]) {
            let port = at(p, &["port"]).and_then(Value::as_u64);
            let target = target_number(p.get("targetPort"), port, ports);
            if port != target {
                problems.push(format!(
                    "{ctx}: port {port:?} forwards to {target:?}; keep them equal"
                ));
            }
            match target {
                Some(t) if ports.values().any(|c| *c == t) => {
                    found.insert(t);
                }
                _ => problems.push(format!(
                    "{ctx}: port {port:?} targets no coordinator containerPort"
                )),
            }
        }
        for want in [GRPC_PORT as u64, METRICS_PORT as u64] {
            if !found.contains(&want) {
                problems.push(format!("{ctx}: does not expose port {want}"));
            }
        }
    }
    let pdbs: Vec<&Obj> = objs
        .iter()
        .filter(|o| {
            o.kind() == "PodDisruptionBudget"
                && selects(at(&o.value, &["spec", "selector"]), &labels)
        })
        .collect();
    if pdbs.is_empty() {
        problems.push(format!(
            "{dir}: no PodDisruptionBudget selects the coordinator pods"
        ));
    }
    for p in pdbs {
        if let Some(min) = at(&p.value, &["spec", "minAvailable"]).and_then(Value::as_u64)
            && (min < 1 || min >= replicas)
        {
            problems.push(format!(
                "{} PodDisruptionBudget {}: minAvailable {min} with {replicas} replicas either protects nothing or blocks every drain",
                p.file,
                p.name()
            ));
        }
    }
}

fn check_service_monitors(objs: &[Obj], problems: &mut Vec<String>) {
    for m in objs.iter().filter(|o| o.kind() == "ServiceMonitor") {
        let ctx = format!("{} ServiceMonitor {}", m.file, m.name());
        let sel = at(&m.value, &["spec", "selector"]);
        let targets: Vec<&Obj> = objs
            .iter()
            .filter(|s| {
                let labels: BTreeMap<String, String> = at(&s.value, &["metadata", "labels"])
                    .and_then(Value::as_mapping)
                    .map(|l| {
                        l.iter()
                            .filter_map(|(k, v)| Some((k.as_str()?.to_string(), scalar(v)?)))
                            .collect()
                    })
                    .unwrap_or_default();
                s.kind() == "Service" && selects(sel, &labels)
            })
            .collect();
        if targets.is_empty() {
            problems.push(format!("{ctx}: selects no Service"));
        }
        for e in seq_at(&m.value, &["spec", "endpoints"]) {
            let port = str_at(e, &["port"]).unwrap_or_default();
            for s in &targets {
                let number = seq_at(&s.value, &["spec", "ports"])
                    .iter()
                    .find(|p| str_at(p, &["name"]).as_deref() == Some(port.as_str()))
                    .and_then(|p| at(p, &["port"]).and_then(Value::as_u64));
                if number != Some(METRICS_PORT as u64) {
                    problems.push(format!("{ctx}: endpoint port {port:?} is {number:?} on Service {}, not {METRICS_PORT}", s.name()));
                }
            }
            if str_at(e, &["path"]).is_some_and(|p| p != "/metrics") {
                problems.push(format!(
                    "{ctx}: the coordinator serves metrics only at /metrics"
                ));
            }
        }
    }
}

/// Whether a cert-manager `Certificate` in the kustomization writes the Secret `name`.
fn certificate_writes(objs: &[Obj], name: &str) -> bool {
    objs.iter().any(|o| {
        str_at(&o.value, &["kind"]).as_deref() == Some("Certificate")
            && str_at(&o.value, &["spec", "secretName"]).as_deref() == Some(name)
    })
}

fn check_volume_refs(objs: &[Obj], problems: &mut Vec<String>) {
    for o in objs {
        let Some(pod) = at(&o.value, &["spec", "template", "spec"]) else {
            continue;
        };
        for v in seq_at(pod, &["volumes"]) {
            let refs = [
                (
                    "Secret",
                    str_at(v, &["secret", "secretName"]),
                    at(v, &["secret", "optional"]),
                ),
                (
                    "ConfigMap",
                    str_at(v, &["configMap", "name"]),
                    at(v, &["configMap", "optional"]),
                ),
            ];
            for (kind, name, optional) in refs {
                if let Some(name) = name
                    && optional.and_then(Value::as_bool) != Some(true)
                    && find(objs, kind, &name).is_none()
                    && !(kind == "Secret" && certificate_writes(objs, &name))
                {
                    problems.push(format!(
                        "{} {}: volume uses {kind} {name}, which is not in the kustomization",
                        o.file,
                        o.name()
                    ));
                }
            }
        }
    }
}

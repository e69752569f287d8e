//! Dockerfiles, read line by line: stages, the build command, the runtime user, ports,
//! entrypoint, health check, and for the worker where libtorch is found at run time.

use std::collections::BTreeMap;

use regex::Regex;

use crate::{Accepted, GRPC_PORT, METRICS_PORT, Tree, listen_port};

/// The coordinator image.
pub const COORDINATOR: &str = "deploy/docker/coordinator.Dockerfile";
/// The worker image.
pub const WORKER: &str = "deploy/docker/worker.Dockerfile";

/// One instruction: keyword (upper case) and its arguments, continuations joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instr {
    /// `FROM`, `RUN`, ...
    pub keyword: String,
    /// The rest of the instruction.
    pub args: String,
}

/// A build stage.
#[derive(Debug, Clone, Default)]
pub struct Stage {
    /// The `FROM` image, build args substituted.
    pub from: String,
    /// `AS` name, if any.
    pub name: Option<String>,
    /// Instructions after `FROM`.
    pub instrs: Vec<Instr>,
    /// Global `ARG` defaults, which a bare `ARG NAME` in the stage brings in.
    pub globals: BTreeMap<String, String>,
}

/// Splits a Dockerfile into instructions: comment lines dropped (also inside
/// continuations, as Docker does), `\` continuations joined.
pub fn instructions(text: &str) -> Vec<Instr> {
    crate::logical_lines(text, &['#'])
        .into_iter()
        .map(|(_, full)| {
            let (k, a) = full.split_once(char::is_whitespace).unwrap_or((&full, ""));
            Instr {
                keyword: k.to_uppercase(),
                args: a.trim().to_string(),
            }
        })
        .collect()
}

/// `ARG`/`ENV` assignments of one instruction (`K=V K2="V 2"`, or `ARG K`).
fn assignments(args: &str) -> Vec<(String, Option<String>)> {
    let re = Regex::new(r#"([A-Za-z_][A-Za-z0-9_]*)(?:=("[^"]*"|\S*))?"#).expect("regex");
    re.captures_iter(args)
        .map(|c| {
            (
                c[1].to_string(),
                c.get(2).map(|v| v.as_str().trim_matches('"').to_string()),
            )
        })
        .collect()
}

/// Substitutes `${VAR}` and `$VAR` from `vars`.
fn substitute(text: &str, vars: &BTreeMap<String, String>) -> String {
    let re =
        Regex::new(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)").expect("regex");
    re.replace_all(text, |c: &regex::Captures<'_>| {
        let name = c.get(1).or(c.get(2)).expect("group").as_str();
        vars.get(name).cloned().unwrap_or_else(|| c[0].to_string())
    })
    .into_owned()
}

/// The stages, with global `ARG` defaults substituted into `FROM` and stage-local `ARG`s
/// (which redeclare a global) kept in each stage.
pub fn stages(text: &str) -> Vec<Stage> {
    let mut global = BTreeMap::new();
    let mut out: Vec<Stage> = Vec::new();
    for i in instructions(text) {
        match (i.keyword.as_str(), out.last_mut()) {
            ("ARG", None) => {
                for (k, v) in assignments(&i.args) {
                    if let Some(v) = v {
                        global.insert(k, v);
                    }
                }
            }
            ("FROM", _) => {
                let words: Vec<&str> = i
                    .args
                    .split_whitespace()
                    .filter(|w| !w.starts_with("--"))
                    .collect();
                let from = substitute(words.first().copied().unwrap_or_default(), &global);
                let name = match words.as_slice() {
                    [_, as_, n] if as_.eq_ignore_ascii_case("as") => Some(n.to_string()),
                    _ => None,
                };
                out.push(Stage {
                    from,
                    name,
                    instrs: Vec::new(),
                    globals: global.clone(),
                });
            }
            (_, Some(stage)) => stage.instrs.push(i),
            (_, None) => {}
        }
    }
    out
}

/// The `ENV` values of a stage and the stages it builds on (`FROM <stage>`).
fn env_of(all: &[Stage], stage: &Stage) -> BTreeMap<String, String> {
    let mut env = match all
        .iter()
        .find(|s| s.name.as_deref() == Some(stage.from.as_str()))
    {
        Some(parent) if !std::ptr::eq(parent, stage) => env_of(all, parent),
        _ => BTreeMap::new(),
    };
    let mut args = BTreeMap::new();
    for i in &stage.instrs {
        let is_env = i.keyword == "ENV";
        if is_env || i.keyword == "ARG" {
            for (k, v) in assignments(&i.args) {
                let v = v.map(|v| {
                    substitute(&v, &args.clone().into_iter().chain(env.clone()).collect())
                });
                if is_env {
                    env.insert(k, v.unwrap_or_default());
                } else if let Some(v) = v.or_else(|| stage.globals.get(&k).cloned()) {
                    args.insert(k, v);
                }
            }
        }
    }
    env
}

/// A stage and the stages it builds on (`FROM <stage>`), nearest first.
fn ancestry<'a>(all: &'a [Stage], stage: &'a Stage) -> Vec<&'a Stage> {
    let mut chain = vec![stage];
    while let Some(parent) = all
        .iter()
        .find(|s| s.name.as_deref() == Some(chain.last().expect("nonempty").from.as_str()))
    {
        if chain.iter().any(|c| std::ptr::eq(*c, parent)) {
            break;
        }
        chain.push(parent);
    }
    chain
}

/// An exec-form JSON array (`["a", "b"]`), if the arguments are one.
fn exec_form(args: &str) -> Option<Vec<String>> {
    let inner = args.trim().strip_prefix('[')?.strip_suffix(']')?;
    inner
        .split(',')
        .map(|w| Some(w.trim().strip_prefix('"')?.strip_suffix('"')?.to_string()))
        .collect()
}

fn last_args<'a>(stage: &'a Stage, keyword: &str) -> Option<&'a str> {
    stage
        .instrs
        .iter()
        .rev()
        .find(|i| i.keyword == keyword)
        .map(|i| i.args.as_str())
}

/// Checks both Dockerfiles.
pub fn check(tree: &Tree, accepted: &Accepted) -> Vec<String> {
    let mut problems = Vec::new();
    match tree.get(COORDINATOR) {
        Some(text) => check_coordinator(text, accepted, &mut problems),
        None => problems.push(format!("{COORDINATOR}: missing")),
    }
    match tree.get(WORKER) {
        Some(text) => check_worker(text, accepted, &mut problems),
        None => problems.push(format!("{WORKER}: missing")),
    }
    problems
}

/// Checks shared by both images' final stage; returns its ENV.
fn check_runtime(
    path: &str,
    all: &[Stage],
    final_: &Stage,
    entry: &[&str],
    known: &std::collections::BTreeSet<String>,
    problems: &mut Vec<String>,
) -> BTreeMap<String, String> {
    if all.len() < 2 {
        problems.push(format!("{path}: expected a multi-stage build"));
    }
    match last_args(final_, "USER") {
        Some(u) if !matches!(u.split(':').next(), Some("root" | "0")) => {}
        other => problems.push(format!(
            "{path}: the final stage must set a non-root USER, got {other:?}"
        )),
    }
    let want: Vec<String> = entry.iter().map(|s| s.to_string()).collect();
    match last_args(final_, "ENTRYPOINT").and_then(exec_form) {
        Some(e) if e == want => {}
        other => problems.push(format!(
            "{path}: ENTRYPOINT must be {want:?} in exec form, got {other:?}"
        )),
    }
    if final_.instrs.iter().any(|i| i.keyword == "CMD") {
        problems.push(format!(
            "{path}: CMD would append arguments to the entrypoint; leave them to the deployer"
        ));
    }
    let env = env_of(all, final_);
    for n in env.keys().filter(|n| n.starts_with("POET_")) {
        if !known.contains(n) {
            problems.push(format!("{path}: ENV {n} is not read by {}", entry[0]));
        }
    }
    env
}

fn check_coordinator(text: &str, accepted: &Accepted, problems: &mut Vec<String>) {
    let p = COORDINATOR;
    let all = stages(text);
    let Some(final_) = all.last() else {
        return problems.push(format!("{p}: no FROM"));
    };
    if !final_.from.starts_with("debian:bookworm-slim") {
        problems.push(format!(
            "{p}: the runtime stage should be debian:bookworm-slim, got {}",
            final_.from
        ));
    }
    let builds = all.iter().any(|s| {
        Regex::new(r"^rust:1\.9\d+(\.\d+)?-slim-bookworm$")
            .expect("regex")
            .is_match(&s.from)
            && s.instrs.iter().any(|i| {
                i.keyword == "RUN"
                    && i.args.contains("cargo build")
                    && i.args.contains("--release")
                    && i.args.contains("-p poet-cli")
            })
    });
    if !builds {
        problems.push(format!(
            "{p}: no rust:1.9x-slim-bookworm stage runs `cargo build --release -p poet-cli`"
        ));
    }
    if !final_
        .instrs
        .iter()
        .any(|i| i.keyword == "RUN" && i.args.contains("ca-certificates"))
    {
        problems.push(format!(
            "{p}: the runtime stage does not install ca-certificates (S3 over TLS needs them)"
        ));
    }
    if text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .any(|l| l.contains("torch"))
    {
        problems.push(format!(
            "{p}: the coordinator image must not involve libtorch"
        ));
    }
    let env = check_runtime(
        p,
        &all,
        final_,
        &["poet", "coordinator"],
        &accepted.coordinator_env,
        problems,
    );
    let exposed: Vec<u16> = final_
        .instrs
        .iter()
        .filter(|i| i.keyword == "EXPOSE")
        .flat_map(|i| {
            i.args
                .split_whitespace()
                .filter_map(|w| w.split('/').next()?.parse().ok())
                .collect::<Vec<_>>()
        })
        .collect();
    for want in [GRPC_PORT, METRICS_PORT] {
        if !exposed.contains(&want) {
            problems.push(format!("{p}: does not EXPOSE {want}"));
        }
    }
    for (n, port) in [
        ("POET_LISTEN", GRPC_PORT),
        ("POET_METRICS_LISTEN", METRICS_PORT),
    ] {
        if env.get(n).and_then(|a| listen_port(a)) != Some(port) {
            problems.push(format!(
                "{p}: ENV {n} must listen on port {port}, got {:?}",
                env.get(n)
            ));
        }
    }
    match last_args(final_, "HEALTHCHECK") {
        Some(h) if h.contains("grpc_health_probe") && h.contains(&format!(":{GRPC_PORT}\"")) => {
            let copied = final_.instrs.iter().any(|i| {
                i.keyword == "COPY"
                    && i.args.contains("--from=")
                    && i.args
                        .split_whitespace()
                        .last()
                        .is_some_and(|d| d.ends_with("/grpc_health_probe"))
            });
            if !copied {
                problems.push(format!("{p}: HEALTHCHECK runs grpc_health_probe but the runtime stage never copies it in"));
            }
        }
        other => problems.push(format!(
            "{p}: HEALTHCHECK must run grpc_health_probe against port {GRPC_PORT}, got {other:?}"
        )),
    }
}

fn check_worker(text: &str, accepted: &Accepted, problems: &mut Vec<String>) {
    let p = WORKER;
    let all = stages(text);
    let Some(final_) = all.last() else {
        return problems.push(format!("{p}: no FROM"));
    };
    let env = check_runtime(
        p,
        &all,
        final_,
        &["poet-worker", "run"],
        &accepted.worker_env,
        problems,
    );
    if last_args(final_, "STOPSIGNAL") != Some("SIGTERM") {
        problems.push(format!(
            "{p}: STOPSIGNAL must be SIGTERM (the worker releases its run on it)"
        ));
    }
    let Some(build) = all.iter().find(|s| {
        s.instrs.iter().any(|i| {
            i.keyword == "RUN"
                && i.args.contains("cargo build")
                && i.args.contains("-p poet-worker")
        })
    }) else {
        return problems.push(format!("{p}: no stage runs `cargo build -p poet-worker`"));
    };
    let build_env = env_of(&all, build);
    let use_pytorch = build_env
        .get("LIBTORCH_USE_PYTORCH")
        .is_some_and(|v| v == "1")
        || build
            .instrs
            .iter()
            .any(|i| i.keyword == "RUN" && i.args.contains("LIBTORCH_USE_PYTORCH=1"));
    if !use_pytorch {
        problems.push(format!(
            "{p}: the build stage must set LIBTORCH_USE_PYTORCH=1"
        ));
    }
    if !text.contains("torch==2.11.0")
        && !text.contains("TORCH_VERSION=2.11.0")
        && !all
            .iter()
            .any(|s| s.from.starts_with("pytorch/pytorch:2.11.0"))
    {
        problems.push(format!(
            "{p}: does not pin torch 2.11.0 (tch 0.24 needs libtorch 2.11)"
        ));
    }
    // The RPATH baked in at link time points into the build stage's torch; the runtime
    // stage must build on the same torch install so that path, and LD_LIBRARY_PATH, hold.
    let torch_of = |stage: &Stage| -> Option<String> {
        ancestry(&all, stage).into_iter().find_map(|s| {
            let pip = s.instrs.iter().any(|i| {
                i.keyword == "RUN" && i.args.contains("pip install") && i.args.contains("torch")
            });
            (pip || s.from.starts_with("pytorch/pytorch:"))
                .then(|| s.name.clone().unwrap_or_else(|| s.from.clone()))
        })
    };
    match (torch_of(build), torch_of(final_)) {
        (Some(b), Some(r)) if b == r => {}
        (b, r) => problems.push(format!(
            "{p}: the build stage takes torch from {b:?} and the runtime from {r:?}; both must build on the same torch stage so it sits at the same path in both"
        )),
    }
    match env.get("LD_LIBRARY_PATH") {
        Some(path)
            if path
                .split(':')
                .any(|d| d.ends_with("site-packages/torch/lib") || d.ends_with("torch/lib")) =>
        {
            let venv = Regex::new(r"-m venv (\S+)").expect("regex");
            let venvs: Vec<String> = venv.captures_iter(text).map(|c| c[1].to_string()).collect();
            if !venvs.is_empty()
                && !path
                    .split(':')
                    .any(|d| venvs.iter().any(|v| d.starts_with(&format!("{v}/"))))
            {
                problems.push(format!("{p}: LD_LIBRARY_PATH {path} is outside the venv torch is installed in ({venvs:?})"));
            }
            if path.contains('$') {
                problems.push(format!(
                    "{p}: LD_LIBRARY_PATH {path} has an unresolved variable"
                ));
            }
        }
        other => problems.push(format!(
            "{p}: the runtime stage must set LD_LIBRARY_PATH to torch's lib/ folder, got {other:?}"
        )),
    }
    if env
        .get("NVIDIA_VISIBLE_DEVICES")
        .is_some_and(|v| v == "all")
    {
        problems.push(format!(
            "{p}: NVIDIA_VISIBLE_DEVICES=all would expose every GPU of a node to each pod"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_substitute_global_args_and_join_lines() {
        let s = stages(
            "ARG V=1.2\n# c\nFROM img:${V} AS a\nRUN x \\\n # inner\n  y\nFROM a\nENV K=v \\\n    L=\"w x\"\n",
        );
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].from, "img:1.2");
        assert_eq!(s[0].name.as_deref(), Some("a"));
        assert_eq!(s[0].instrs[0].args, "x  y");
        let env = env_of(&s, &s[1]);
        assert_eq!(env["L"], "w x");
        assert_eq!(
            ancestry(&s, &s[1]).last().map(|s| s.from.as_str()),
            Some("img:1.2")
        );
    }

    #[test]
    fn exec_forms() {
        assert_eq!(
            exec_form(r#"["poet", "coordinator"]"#),
            Some(vec!["poet".into(), "coordinator".into()])
        );
        assert_eq!(exec_form("poet coordinator"), None);
    }
}

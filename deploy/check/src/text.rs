//! Checks that read files as text: every YAML parses, every `POET_*` name anywhere in the
//! deploy files is one a binary reads, and the operations guide names the real metrics.
//! Also the YAML helpers the other modules share.

use std::collections::BTreeSet;

use regex::Regex;
use serde::Deserialize;
use serde_norway::Value;

use crate::{Accepted, Tree};

/// Every document of a (multi-document) YAML text, merge keys (`<<`) applied, empty
/// documents dropped.
pub fn yaml_docs(text: &str) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for doc in serde_norway::Deserializer::from_str(text) {
        let mut v = Value::deserialize(doc).map_err(|e| e.to_string())?;
        v.apply_merge().map_err(|e| e.to_string())?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

/// Whether `path` is a YAML file.
pub fn is_yaml(path: &str) -> bool {
    path.ends_with(".yaml") || path.ends_with(".yml")
}

/// The value at `keys` below `v`.
pub fn at<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().try_fold(v, |v, k| v.get(*k))
}

/// A scalar as text: strings as they are, numbers and booleans printed.
pub fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The string at `keys`, if it is a scalar.
pub fn str_at(v: &Value, keys: &[&str]) -> Option<String> {
    at(v, keys).and_then(scalar)
}

/// The sequence at `keys` (empty when absent).
pub fn seq_at<'a>(v: &'a Value, keys: &[&str]) -> &'a [Value] {
    at(v, keys)
        .and_then(Value::as_sequence)
        .map_or(&[], Vec::as_slice)
}

/// Every YAML file under `deploy/` parses.
pub fn check_yaml_parses(tree: &Tree) -> Vec<String> {
    let mut problems = Vec::new();
    let mut count = 0;
    for (path, text) in tree.under("deploy/") {
        if is_yaml(path) {
            count += 1;
            if let Err(e) = yaml_docs(text) {
                problems.push(format!("{path}: does not parse as YAML: {e}"));
            }
        }
    }
    if count == 0 {
        problems.push("deploy/: no YAML files found".into());
    }
    problems
}

/// Every `POET_*` word in a deploy file or the operations guide is read by a binary.
pub fn check_env_names(tree: &Tree, accepted: &Accepted) -> Vec<String> {
    let word = Regex::new(r"\bPOET_[A-Z0-9_]*[A-Z0-9]\b").expect("regex");
    let known = accepted.any_env();
    let mut problems = Vec::new();
    let files = tree.under("deploy/").chain(
        tree.get(crate::OPERATIONS_DOC)
            .map(|t| (crate::OPERATIONS_DOC, t)),
    );
    for (path, text) in files {
        let mut seen = BTreeSet::new();
        for m in word.find_iter(text) {
            if !known.contains(m.as_str()) && seen.insert(m.as_str()) {
                problems.push(format!(
                    "{path}: {} is not an env name poet or poet-worker reads (see {} and {})",
                    m.as_str(),
                    crate::COORDINATOR_CONFIG,
                    crate::WORKER_MAIN
                ));
            }
        }
    }
    problems
}

/// The operations guide names every metric the coordinator and the worker export and no
/// metric they do not.
pub fn check_docs(tree: &Tree) -> Vec<String> {
    let doc_path = crate::OPERATIONS_DOC;
    let sources = [crate::METRICS, crate::WORKER_METRICS];
    let (Some(doc), Some(metrics)) = (
        tree.get(doc_path),
        sources
            .iter()
            .map(|p| tree.get(p))
            .collect::<Option<Vec<&str>>>(),
    ) else {
        return vec![format!(
            "{doc_path}, {} or {} is missing",
            sources[0], sources[1]
        )];
    };
    let metrics = metrics.join("\n");
    let metrics = metrics.as_str();
    let name = Regex::new(r"\bpoet_[a-z_]*[a-z]\b").expect("regex");
    // prometheus-client appends `_total` to counters and the unit (`_seconds`) to a metric
    // registered with one; histograms add `_bucket`, `_sum` and `_count`.
    let suffixes = ["_bucket", "_sum", "_count"];
    let base = |n: &str| {
        let n = suffixes.iter().find_map(|s| n.strip_suffix(s)).unwrap_or(n);
        let n = n.strip_suffix("_seconds").unwrap_or(n);
        n.strip_suffix("_total").unwrap_or(n).to_string()
    };
    let exported: BTreeSet<String> = name.find_iter(metrics).map(|m| base(m.as_str())).collect();
    let mut problems = Vec::new();
    for m in &exported {
        if !doc.contains(m.as_str()) {
            problems.push(format!("{doc_path}: does not mention the metric {m}"));
        }
    }
    // Metric-looking names in the guide (counters, the histogram) must exist.
    let metric_like =
        Regex::new(r"\bpoet_[a-z_]*(_total|_ms|_seconds|_bucket|_sum|_count)\b").expect("regex");
    for m in metric_like.find_iter(doc) {
        if !exported.contains(&base(m.as_str())) {
            problems.push(format!(
                "{doc_path}: names a metric {} that neither {} nor {} exports",
                m.as_str(),
                sources[0],
                sources[1]
            ));
        }
    }
    problems
}

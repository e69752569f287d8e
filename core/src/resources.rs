//! What a run needs from the worker that trains it: the sweep spec's `[resources]` table and
//! poet's estimate of the memory a training config takes.
//!
//! The coordinator stores both on every run row at submit; its claim hands a run only to a
//! worker whose announced capacity holds it (`poet_run_fits` in
//! `sql/migrations/0013_fleet_resources.sql`): on a GPU worker the run trains on the GPU, so
//! the estimate is compared with the GPU's memory; on a CPU worker with host memory.

use std::collections::BTreeMap;

use crate::config::{Formulation, TrainConfig};
use crate::sweep::{Doc, SpecError};

/// Bytes in a GB as the spec and the messages write it (10^9, as GPU vendors count).
pub const GB: f64 = 1e9;

/// The largest memory a spec may ask for, in GB (a sanity bound, not a hardware fact).
const MAX_GB: f64 = 1e6;

/// Most labels one spec or worker may carry, and the longest key or value.
pub const MAX_LABELS: usize = 32;
/// Longest label key or value, in characters.
pub const MAX_LABEL_CHARS: usize = 64;

/// A sweep's `[resources]` table: what every run of the sweep needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    /// `gpu = true`: only a GPU worker; `false`: only a CPU worker; unset: either (a
    /// `min_gpu_memory_gb` implies `true`).
    pub gpu: Option<bool>,
    /// GPU memory the worker must have, in bytes (0 = no minimum).
    pub min_gpu_memory_bytes: i64,
    /// Host memory the worker must have, in bytes (0 = no minimum).
    pub min_memory_bytes: i64,
    /// Labels the worker must carry with these exact values (`labels = { zone = "a" }`).
    pub labels: BTreeMap<String, String>,
}

impl Resources {
    /// Parses and checks the `[resources]` table; errors name the field
    /// (`resources.min_gpu_memory_gb`).
    pub(crate) fn parse(doc: Doc) -> Result<Resources, SpecError> {
        let mut r = Resources::default();
        for (key, v) in crate::sweep::table(doc, "resources")? {
            let path = format!("resources.{key}");
            match key.as_str() {
                "gpu" => match v {
                    Doc::Bool(b) => r.gpu = Some(b),
                    other => {
                        return Err(SpecError::new(
                            path,
                            format!("expected true or false, found {}", other.type_name()),
                        ));
                    }
                },
                "min_gpu_memory_gb" => r.min_gpu_memory_bytes = gb(&v, &path)?,
                "min_memory_gb" => r.min_memory_bytes = gb(&v, &path)?,
                "labels" => {
                    for (k, lv) in crate::sweep::table(v, &path)? {
                        let lpath = format!("{path}.{k}");
                        let lv = crate::sweep::string(lv, &lpath)?;
                        check_label(&k, &lv).map_err(|m| SpecError::new(lpath, m))?;
                        r.labels.insert(k, lv);
                    }
                    if r.labels.len() > MAX_LABELS {
                        return Err(SpecError::new(
                            path,
                            format!("{} labels, at most {MAX_LABELS}", r.labels.len()),
                        ));
                    }
                }
                _ => {
                    return Err(SpecError::new(
                        path,
                        "unknown key (expected gpu, min_gpu_memory_gb, min_memory_gb or labels)",
                    ));
                }
            }
        }
        if r.gpu == Some(false) && r.min_gpu_memory_bytes > 0 {
            return Err(SpecError::new(
                "resources.min_gpu_memory_gb",
                "set while gpu = false: a CPU worker has no GPU memory",
            ));
        }
        Ok(r)
    }

    /// Whether a run needs a GPU (`Some(true)`), a CPU worker (`Some(false)`) or either.
    pub fn need_gpu(&self) -> Option<bool> {
        match self.gpu {
            None if self.min_gpu_memory_bytes > 0 => Some(true),
            g => g,
        }
    }

    /// The labels as the JSON object the run row stores.
    pub fn labels_json(&self) -> String {
        serde_json::to_string(&self.labels).expect("a string map serialises")
    }
}

/// A memory size in GB: a positive number, integer or float.
fn gb(v: &Doc, path: &str) -> Result<i64, SpecError> {
    let x = match v {
        Doc::Int(i) => *i as f64,
        Doc::Float(f) => *f,
        other => {
            return Err(SpecError::new(
                path,
                format!("expected a number of GB, found {}", other.type_name()),
            ));
        }
    };
    if !x.is_finite() || x <= 0.0 || x > MAX_GB {
        return Err(SpecError::new(
            path,
            format!("{x} is out of range (0, {MAX_GB}] GB"),
        ));
    }
    Ok((x * GB).round() as i64)
}

/// Checks one label: a key of letters, digits, `_ - . /`, and a value without control
/// characters, each 1..=64 characters. The worker's `--label` and the spec share this.
pub fn check_label(key: &str, value: &str) -> Result<(), String> {
    let key_ok = !key.is_empty()
        && key.chars().count() <= MAX_LABEL_CHARS
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c));
    if !key_ok {
        return Err(format!(
            "label key '{key}' must be 1..={MAX_LABEL_CHARS} letters, digits or _ - . /"
        ));
    }
    if value.chars().count() > MAX_LABEL_CHARS || value.chars().any(char::is_control) {
        return Err(format!(
            "label {key}: the value must be at most {MAX_LABEL_CHARS} characters, none a control character"
        ));
    }
    Ok(())
}

/// Parses a worker's `key=value` label flag.
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("label '{s}' is not key=value"))?;
    check_label(k, v)?;
    Ok((k.to_string(), v.to_string()))
}

/// Vocabulary size assumed when the dataset's is not known yet (printable ASCII plus a few).
pub const DEFAULT_VOCAB: usize = 100;

/// Fixed runtime memory beside the tensors: the libtorch/CUDA context and allocator slack.
pub const RUNTIME_OVERHEAD_BYTES: i64 = 512 << 20;

/// Floats kept per time step, layer and unit for the backward pass. ATen's CPU LSTM loop
/// saves the pre-projected input and the recurrent product (4 each), the gate activations
/// (4), the cell state, its tanh, the hidden output and the dropout-masked input: about 16.
/// cuDNN keeps fewer (its reserve space is about 6), so on a GPU the estimate is high.
const FLOATS_PER_CELL: u64 = 16;

/// Estimated peak memory, in bytes, of training `cfg` on a vocabulary of `vocab` characters,
/// in float32:
///
/// ```text
/// P    = Σ_layers 4·u·(in + u + 2) + u·V + V (+ V·E with an embedding)
///        in = E (embedding) or V (one-hot) for the first layer, u after
/// mem  = 16·P                                  weights, gradients, Adam's m and v
///      + 4·b·s·(16·L·u + in₀)                  activations kept for backward, and the inputs
///      + 4·2·b·V·(s for `seq`, 1 for `keras`)   logits and their gradient
///      + 512 MiB                               runtime (CUDA context, allocator slack)
/// ```
///
/// with `b` = batch_size, `s` = seq_len, `L` = layers, `u` = units, `V` = vocab,
/// `E` = embedding. It is an estimate for placement, deliberately on the high side of what
/// torch allocates (see `FLOATS_PER_CELL`); docs/operations.md explains how to read it. The
/// reference config (3 × 300, batch 128, seq 300, V ≈ 100) comes to about 2.8 GB; a CPU
/// worker training it was measured at ≈ 3 GB RSS (docs/operations.md, Workers).
pub fn estimate_memory_bytes(cfg: &TrainConfig, vocab: usize) -> i64 {
    let (l, u, v) = (cfg.layers as u64, cfg.units as u64, vocab.max(1) as u64);
    let (b, s, e) = (
        cfg.batch_size as u64,
        cfg.seq_len as u64,
        cfg.embedding as u64,
    );
    let in0 = if e > 0 { e } else { v };
    let mut params = if e > 0 { v * e } else { 0 };
    for layer in 0..l {
        let input = if layer == 0 { in0 } else { u };
        params += 4 * u * (input + u + 2);
    }
    params += u * v + v;
    let activations = 4 * b * s * (FLOATS_PER_CELL * l * u + in0);
    let logit_steps = match cfg.formulation {
        Formulation::Seq => s,
        Formulation::Keras => 1,
    };
    let logits = 4 * 2 * b * v * logit_steps;
    let bytes = 16 * params + activations + logits;
    i64::try_from(bytes)
        .unwrap_or(i64::MAX)
        .saturating_add(RUNTIME_OVERHEAD_BYTES)
}

/// `bytes` as "9.1 GB".
pub fn format_gb(bytes: i64) -> String {
    format!("{:.1} GB", bytes as f64 / GB)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::{SpecFormat, SweepSpec};

    fn spec(resources: &str) -> Result<SweepSpec, SpecError> {
        SweepSpec::parse(
            &format!("dataset = \"poetry\"\n[resources]\n{resources}\n"),
            SpecFormat::Toml,
        )
    }

    #[test]
    fn resources_parse_with_units_and_labels() {
        let s = spec(
            "gpu = true\nmin_gpu_memory_gb = 9.5\nmin_memory_gb = 2\nlabels = { zone = \"a\" }",
        )
        .unwrap();
        let r = s.resources();
        assert_eq!(r.need_gpu(), Some(true));
        assert_eq!(r.min_gpu_memory_bytes, 9_500_000_000);
        assert_eq!(r.min_memory_bytes, 2_000_000_000);
        assert_eq!(r.labels_json(), r#"{"zone":"a"}"#);
        // No table: no needs.
        let none = SweepSpec::parse("dataset = \"poetry\"", SpecFormat::Toml).unwrap();
        assert_eq!(none.resources(), &Resources::default());
        assert_eq!(none.resources().need_gpu(), None);
        // A GPU memory minimum implies a GPU.
        assert_eq!(
            spec("min_gpu_memory_gb = 4")
                .unwrap()
                .resources()
                .need_gpu(),
            Some(true)
        );
    }

    #[test]
    fn bad_resources_name_the_field() {
        for (text, field, msg) in [
            ("gpu = 1", "resources.gpu", "expected true or false"),
            (
                "min_gpu_memory_gb = -1",
                "resources.min_gpu_memory_gb",
                "out of range",
            ),
            (
                "min_memory_gb = \"8G\"",
                "resources.min_memory_gb",
                "expected a number",
            ),
            ("cores = 4", "resources.cores", "unknown key"),
            (
                "labels = { zone = 1 }",
                "resources.labels.zone",
                "expected a string",
            ),
            (
                "labels = { \"a b\" = \"x\" }",
                "resources.labels.a b",
                "label key",
            ),
            (
                "gpu = false\nmin_gpu_memory_gb = 4",
                "resources.min_gpu_memory_gb",
                "gpu = false",
            ),
        ] {
            let e = spec(text).unwrap_err();
            assert_eq!(e.field, field, "{text}: {e}");
            assert!(e.message.contains(msg), "{text}: {e}");
        }
    }

    #[test]
    fn worker_labels_parse() {
        assert_eq!(parse_label("zone=a").unwrap(), ("zone".into(), "a".into()));
        assert_eq!(parse_label("k=").unwrap(), ("k".into(), "".into()));
        assert!(parse_label("zone").unwrap_err().contains("key=value"));
        assert!(parse_label("=a").unwrap_err().contains("label key"));
    }

    #[test]
    fn estimate_follows_the_documented_formula() {
        let reference = TrainConfig::default();
        let (b, s, l, u, v) = (128u64, 300u64, 3u64, 300u64, 100u64);
        let params = 4 * u * (v + u + 2) + 2 * 4 * u * (u + u + 2) + u * v + v;
        let want = 16 * params + 4 * b * s * (16 * l * u + v) + 8 * b * v + (512 << 20);
        assert_eq!(estimate_memory_bytes(&reference, 100), want as i64);
        assert_eq!(format_gb(want as i64), "2.8 GB");
        // More of anything costs more; the seq formulation keeps logits for every step.
        let mut big = reference.clone();
        big.units = 1024;
        assert!(estimate_memory_bytes(&big, 100) > estimate_memory_bytes(&reference, 100));
        let mut seq = reference.clone();
        seq.formulation = Formulation::Seq;
        assert_eq!(
            estimate_memory_bytes(&seq, 100) - estimate_memory_bytes(&reference, 100),
            (8 * b * v * (s - 1)) as i64
        );
        // A tiny test model is dominated by the runtime overhead.
        let tiny = TrainConfig {
            layers: 1,
            units: 8,
            seq_len: 16,
            batch_size: 4,
            ..TrainConfig::default()
        };
        assert!(estimate_memory_bytes(&tiny, 30) < RUNTIME_OVERHEAD_BYTES + (1 << 20));
    }
}

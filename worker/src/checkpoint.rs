//! The checkpoint format: one [safetensors] file holding the weights and the Adam state, with
//! the run's metadata as JSON inside the safetensors header. One blob is what the coordinator
//! stores and what `poet-worker generate --checkpoint` reads; any safetensors reader opens it.
//!
//! Layout (format `poet-checkpoint`, version 1):
//! - 8 bytes: little-endian u64 `N`, the header length;
//! - `N` bytes: JSON `{"__metadata__": {"poet": "<Metadata JSON>"}, "<tensor>": {"dtype":
//!   "F32", "shape": [...], "data_offsets": [begin, end]}, ...}`, space-padded to a multiple
//!   of 8;
//! - the tensor bytes, little-endian f32, row-major, in header order.
//!
//! Tensor names: `model/<param>` (weights, see [`crate::model::PoetModel::parameters`]),
//! `adam.m/<param>` and `adam.v/<param>` (Adam moments). [`Metadata`] carries the format
//! version, the epoch completed, the Adam step, the vocabulary, the full [`TrainConfig`] (the
//! cell type and the learning-rate schedule among its keys), the schedule's state, how
//! randomness is seeded (so that resume at an epoch boundary needs no RNG state), and the
//! loss history. Values are stored bit for bit: a round trip reproduces every weight and
//! moment exactly.
//!
//! [safetensors]: https://huggingface.co/docs/safetensors

use crate::model::PoetModel;
use crate::optim::{self, AdamState, ScheduleState};
use crate::vocab::Vocab;
use poet_core::config::TrainConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tch::{Device, Kind, Tensor};

/// The `format` string of every poet checkpoint.
pub const FORMAT: &str = "poet-checkpoint";
/// The current format version.
pub const VERSION: u32 = 1;
/// How randomness is derived from the config seed; stored for readers, fixed by the code.
pub const SEED_SCHEDULE: &str = "init: torch manual_seed(seed); epoch e (1-based): torch \
manual_seed(seed + e) before its first batch (dropout masks), example shuffle ChaCha8(seed + e)";

/// Everything about a checkpoint except its tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// Always [`FORMAT`]; refuses other safetensors files.
    pub format: String,
    /// Format version, [`VERSION`] when written by this code.
    pub version: u32,
    /// Epochs completed (1-based number of the last one trained).
    pub epoch: u32,
    /// Adam updates applied so far.
    pub adam_step: i64,
    /// Adam hyperparameters in force (the update rule is fixed by the code).
    pub adam: AdamHyper,
    /// The vocabulary, characters in id order.
    pub vocab: String,
    /// The run's full training config.
    pub config: TrainConfig,
    /// How randomness is seeded, [`SEED_SCHEDULE`].
    pub seed_schedule: String,
    /// One record per completed epoch, oldest first.
    pub history: Vec<EpochRecord>,
    /// Version of the worker that wrote it.
    pub written_by: String,
    /// Where the learning-rate schedule stands (the `plateau` state; absent in checkpoints
    /// written before schedules existed, which were all `constant`).
    #[serde(default)]
    pub schedule: ScheduleState,
}

/// Adam's hyperparameters as recorded in a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdamHyper {
    /// Learning rate.
    pub lr: f64,
    /// First moment decay.
    pub beta1: f64,
    /// Second moment decay.
    pub beta2: f64,
    /// Denominator guard.
    pub eps: f64,
}

/// The numbers of one completed epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: u32,
    /// Mean training loss, nats per char.
    pub train_loss: f64,
    /// Validation loss, nats per char.
    pub val_loss: f64,
    /// Wall-clock seconds of training.
    pub duration_s: f64,
    /// Input characters through the network per second.
    pub chars_per_sec: f64,
}

/// A decoded checkpoint.
#[derive(Debug)]
pub struct Checkpoint {
    /// The metadata.
    pub meta: Metadata,
    /// Model weights by parameter name, on the CPU.
    pub weights: Vec<(String, Tensor)>,
    /// Adam moments and step, on the CPU.
    pub adam: AdamState,
}

/// Why bytes are not a usable checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Not a safetensors file, or a broken one.
    #[error("malformed checkpoint: {0}")]
    Malformed(String),
    /// A safetensors file but not a poet checkpoint of a known version.
    #[error("unsupported checkpoint: {0}")]
    Unsupported(String),
    /// Decodes, but its tensors do not fit its own config.
    #[error("inconsistent checkpoint: {0}")]
    Inconsistent(String),
}

fn malformed(s: impl Into<String>) -> CheckpointError {
    CheckpointError::Malformed(s.into())
}

#[derive(Serialize, Deserialize)]
struct TensorInfo {
    dtype: String,
    shape: Vec<i64>,
    data_offsets: [usize; 2],
}

impl Checkpoint {
    /// Encodes into the safetensors layout described in the module docs.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut named: Vec<(String, &Tensor)> = Vec::new();
        named.extend(self.weights.iter().map(|(n, t)| (format!("model/{n}"), t)));
        named.extend(self.adam.m.iter().map(|(n, t)| (format!("adam.m/{n}"), t)));
        named.extend(self.adam.v.iter().map(|(n, t)| (format!("adam.v/{n}"), t)));
        let mut header = serde_json::Map::new();
        let meta = serde_json::to_string(&self.meta).expect("metadata serialises");
        header.insert("__metadata__".into(), serde_json::json!({ "poet": meta }));
        let mut data = Vec::new();
        for (name, t) in &named {
            let t = t.to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
            let numel = t.numel();
            let mut buf = vec![0u8; numel * 4];
            t.copy_data_u8(&mut buf, numel);
            let begin = data.len();
            data.extend_from_slice(&buf);
            let info = TensorInfo {
                dtype: "F32".into(),
                shape: t.size(),
                data_offsets: [begin, data.len()],
            };
            header.insert(
                name.clone(),
                serde_json::to_value(info).expect("info serialises"),
            );
        }
        let mut header = serde_json::to_vec(&header).expect("header serialises");
        while !header.len().is_multiple_of(8) {
            header.push(b' ');
        }
        let mut out = Vec::with_capacity(8 + header.len() + data.len());
        out.extend_from_slice(&(header.len() as u64).to_le_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&data);
        out
    }

    /// Decodes and verifies: a well-formed safetensors layout, a known format version, a
    /// valid config, and for every weight an Adam `m` and `v` of the same shape.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CheckpointError> {
        let n = u64::from_le_bytes(
            bytes
                .get(..8)
                .ok_or_else(|| malformed("shorter than 8 bytes"))?
                .try_into()
                .expect("8 bytes"),
        );
        let n = usize::try_from(n).map_err(|_| malformed("header length overflows"))?;
        let header_end = 8usize
            .checked_add(n)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| malformed("header length past end"))?;
        let header: BTreeMap<String, serde_json::Value> =
            serde_json::from_slice(&bytes[8..header_end])
                .map_err(|e| malformed(format!("header: {e}")))?;
        let data = &bytes[header_end..];
        let meta_json = header
            .get("__metadata__")
            .and_then(|m| m.get("poet"))
            .and_then(|m| m.as_str())
            .ok_or_else(|| CheckpointError::Unsupported("no poet metadata".into()))?;
        let meta: Metadata = serde_json::from_str(meta_json)
            .map_err(|e| CheckpointError::Unsupported(format!("metadata: {e}")))?;
        if meta.format != FORMAT || meta.version != VERSION {
            return Err(CheckpointError::Unsupported(format!(
                "{} version {}",
                meta.format, meta.version
            )));
        }
        meta.config
            .validate()
            .map_err(|e| CheckpointError::Inconsistent(format!("config: {e}")))?;
        if meta.vocab.is_empty() {
            return Err(CheckpointError::Inconsistent("empty vocabulary".into()));
        }
        let (mut weights, mut m, mut v) = (Vec::new(), Vec::new(), Vec::new());
        for (name, value) in &header {
            if name == "__metadata__" {
                continue;
            }
            let info: TensorInfo = serde_json::from_value(value.clone())
                .map_err(|e| malformed(format!("tensor {name}: {e}")))?;
            if info.dtype != "F32" {
                return Err(CheckpointError::Unsupported(format!(
                    "tensor {name}: dtype {}",
                    info.dtype
                )));
            }
            let [b, e] = info.data_offsets;
            let bytes = tensor_bytes(&info.shape).ok_or_else(|| {
                malformed(format!(
                    "tensor {name}: shape {:?} is negative or too large",
                    info.shape
                ))
            })?;
            if b > e || e > data.len() || e - b != bytes {
                return Err(malformed(format!("tensor {name}: bad offsets or shape")));
            }
            let t = Tensor::from_data_size(&data[b..e], &info.shape, Kind::Float);
            let (kind, param) = name
                .split_once('/')
                .ok_or_else(|| malformed(format!("tensor name {name}")))?;
            let slot = match kind {
                "model" => &mut weights,
                "adam.m" => &mut m,
                "adam.v" => &mut v,
                _ => return Err(malformed(format!("tensor name {name}"))),
            };
            slot.push((param.to_string(), t));
        }
        for (name, w) in &weights {
            for (which, moments) in [("m", &m), ("v", &v)] {
                let found = moments
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, t)| t.size());
                if found.as_ref() != Some(&w.size()) {
                    return Err(CheckpointError::Inconsistent(format!(
                        "adam {which} of {name} missing or misshapen"
                    )));
                }
            }
        }
        if weights.is_empty() || m.len() != weights.len() || v.len() != weights.len() {
            return Err(CheckpointError::Inconsistent("tensor sets differ".into()));
        }
        let adam = AdamState {
            step: meta.adam_step,
            m,
            v,
        };
        Ok(Checkpoint {
            meta,
            weights,
            adam,
        })
    }

    /// The vocabulary stored in the checkpoint.
    pub fn vocab(&self) -> Vocab {
        Vocab::from_chars(self.meta.vocab.chars().collect())
    }

    /// A model of the checkpoint's config on `device` holding its weights.
    pub fn model(&self, device: Device) -> Result<PoetModel, CheckpointError> {
        let mut model =
            PoetModel::zeroed(&self.meta.config, self.meta.vocab.chars().count(), device);
        model
            .load(&self.weights)
            .map_err(CheckpointError::Inconsistent)?;
        Ok(model)
    }
}

/// Bytes of an f32 tensor of `shape`; `None` for a negative dimension or a size that
/// overflows (a crafted header must not wrap around to a small, matching size).
fn tensor_bytes(shape: &[i64]) -> Option<usize> {
    shape
        .iter()
        .try_fold(4usize, |acc, &d| acc.checked_mul(usize::try_from(d).ok()?))
}

/// Adam hyperparameters for `lr` with the fixed betas and epsilon of [`crate::optim`].
pub fn adam_hyper(lr: f64) -> AdamHyper {
    AdamHyper {
        lr,
        beta1: optim::BETA1,
        beta2: optim::BETA2,
        eps: optim::EPS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A checkpoint whose header is valid but for one tensor of `shape` and `offsets`.
    fn crafted(shape: serde_json::Value, offsets: [usize; 2], data: usize) -> Vec<u8> {
        let meta = Metadata {
            format: FORMAT.into(),
            version: VERSION,
            epoch: 1,
            adam_step: 0,
            adam: adam_hyper(0.01),
            vocab: "ab".into(),
            config: TrainConfig::default(),
            seed_schedule: SEED_SCHEDULE.into(),
            history: vec![],
            written_by: "test".into(),
            schedule: ScheduleState::default(),
        };
        let header = serde_json::json!({
            "__metadata__": {"poet": serde_json::to_string(&meta).unwrap()},
            "model/w": {"dtype": "F32", "shape": shape, "data_offsets": offsets},
        });
        let header = serde_json::to_vec(&header).unwrap();
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(&header);
        out.extend(std::iter::repeat_n(0u8, data));
        out
    }

    fn refusal(bytes: &[u8]) -> String {
        match Checkpoint::from_bytes(bytes) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("a crafted checkpoint was accepted"),
        }
    }

    #[test]
    fn overflowing_shapes_are_refused_not_wrapped() {
        // 2^62 * 2^62 elements: the product overflows i64 (and usize); wrapped, it is 0,
        // which the empty data range would match.
        let e = refusal(&crafted(
            serde_json::json!([1i64 << 62, 1i64 << 62]),
            [0, 0],
            0,
        ));
        assert!(e.contains("model/w") && e.contains("too large"), "{e}");
        // 2^62 elements fit in i64, their 4-byte size does not.
        let e = refusal(&crafted(serde_json::json!([1i64 << 62]), [0, 0], 0));
        assert!(e.contains("too large"), "{e}");
        // Two negative dimensions multiply to a positive count that matches the data.
        let e = refusal(&crafted(serde_json::json!([-1, -4]), [0, 16], 16));
        assert!(e.contains("negative"), "{e}");
    }

    #[test]
    fn tensor_sizes_are_checked() {
        assert_eq!(tensor_bytes(&[2, 3]), Some(24));
        assert_eq!(tensor_bytes(&[]), Some(4));
        assert_eq!(tensor_bytes(&[0, i64::MAX]), Some(0));
        assert_eq!(tensor_bytes(&[i64::MAX, 2]), None);
        assert_eq!(tensor_bytes(&[3, -1]), None);
    }
}

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
//! The `safetensors` crate (the version tch already builds) writes and parses the layout: it
//! lays the tensors out in name order and checks a file before we read it (offsets that tile
//! the data, sizes that match shapes, no overflow). Checkpoints written before it, by a
//! hand-rolled writer that laid tensors out weights first, are the same format with another
//! order and load bit-exactly (`tests/it/train.rs`, `legacy_checkpoints_load_bit_exactly`,
//! on a checkpoint that writer produced, `tests/fixtures/checkpoint-v1-handwritten.safetensors`).
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
use safetensors::{Dtype, SafeTensorError, SafeTensors};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
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

/// The safetensors reader's refusal in words (its `Display` is its `Debug`).
fn describe(e: SafeTensorError) -> String {
    match e {
        SafeTensorError::HeaderTooSmall => "shorter than 8 bytes".into(),
        SafeTensorError::HeaderTooLarge | SafeTensorError::InvalidHeaderLength => {
            "header length too large or past the end".into()
        }
        SafeTensorError::InvalidHeader
        | SafeTensorError::InvalidHeaderStart
        | SafeTensorError::InvalidHeaderDeserialization => {
            "header is not a safetensors JSON header (a shape must be non-negative integers)".into()
        }
        SafeTensorError::InvalidOffset(name) => {
            format!("tensor {name}: offsets do not tile the data")
        }
        SafeTensorError::TensorInvalidInfo => "a tensor's bytes do not match its shape".into(),
        SafeTensorError::ValidationOverflow => {
            "a tensor's shape is too large: its size overflows".into()
        }
        SafeTensorError::MetadataIncompleteBuffer => {
            "the data's length differs from the header's tensors".into()
        }
        e => format!("{e:?}"),
    }
}

/// One f32 tensor's bytes as the safetensors writer takes them.
struct F32View {
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl safetensors::View for &F32View {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }

    fn data_len(&self) -> usize {
        self.data.len()
    }
}

impl Checkpoint {
    /// Encodes into the safetensors layout described in the module docs.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut named: Vec<(String, &Tensor)> = Vec::new();
        named.extend(self.weights.iter().map(|(n, t)| (format!("model/{n}"), t)));
        named.extend(self.adam.m.iter().map(|(n, t)| (format!("adam.m/{n}"), t)));
        named.extend(self.adam.v.iter().map(|(n, t)| (format!("adam.v/{n}"), t)));
        let views: Vec<(String, F32View)> = named
            .into_iter()
            .map(|(name, t)| {
                let t = t.to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
                let numel = t.numel();
                let mut data = vec![0u8; numel * 4];
                t.copy_data_u8(&mut data, numel);
                let shape = t.size().iter().map(|&d| d as usize).collect();
                (name, F32View { shape, data })
            })
            .collect();
        let meta = serde_json::to_string(&self.meta).expect("metadata serialises");
        let info = Some(HashMap::from([("poet".to_string(), meta)]));
        safetensors::serialize(views.iter().map(|(n, v)| (n.as_str(), v)), &info)
            .expect("f32 tensors with consistent shapes serialise")
    }

    /// Decodes and verifies: a well-formed safetensors layout (the crate checks the header,
    /// that offsets tile the data exactly, and each tensor's size against its shape without
    /// overflow), a known format version, a valid config, and for every weight an Adam `m`
    /// and `v` of the same shape. Reads checkpoints of either writer (module docs).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CheckpointError> {
        let (n, header) = SafeTensors::read_metadata(bytes).map_err(|e| malformed(describe(e)))?;
        let data = &bytes[8 + n..];
        let meta_json = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get("poet"))
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
        // Name order, whatever order the writer laid the tensors out in.
        let tensors: BTreeMap<String, _> = header.tensors().into_iter().collect();
        for (name, info) in &tensors {
            if info.dtype != Dtype::F32 {
                return Err(CheckpointError::Unsupported(format!(
                    "tensor {name}: dtype {:?}",
                    info.dtype
                )));
            }
            let (b, e) = info.data_offsets;
            let shape: Vec<i64> = info
                .shape
                .iter()
                .map(|&d| i64::try_from(d))
                .collect::<Result<_, _>>()
                .map_err(|_| {
                    malformed(format!("tensor {name}: shape {:?} too large", info.shape))
                })?;
            let t = Tensor::from_data_size(&data[b..e], &shape, Kind::Float);
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
        assert!(e.contains("malformed") && e.contains("overflows"), "{e}");
        // 2^62 elements fit in i64, their 4-byte size does not.
        let e = refusal(&crafted(serde_json::json!([1i64 << 62]), [0, 0], 0));
        assert!(e.contains("overflows"), "{e}");
        // Two negative dimensions multiply to a positive count that matches the data.
        let e = refusal(&crafted(serde_json::json!([-1, -4]), [0, 16], 16));
        assert!(e.contains("non-negative"), "{e}");
        // Offsets that leave a gap, and a size that does not match the shape.
        let e = refusal(&crafted(serde_json::json!([2]), [4, 12], 12));
        assert!(e.contains("model/w") && e.contains("tile"), "{e}");
        let e = refusal(&crafted(serde_json::json!([3]), [0, 8], 8));
        assert!(e.contains("do not match its shape"), "{e}");
    }
}

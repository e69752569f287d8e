//! The training configuration of one run: every hyperparameter the worker understands.
//!
//! A sweep resolves to one [`TrainConfig`] per run; the coordinator stores it as JSON and the
//! worker trains exactly what it says. Validation lives here so that the coordinator refuses a
//! bad value before anything is stored and the worker never sees one.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How training examples are cut from the corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Formulation {
    /// The reference experiment's: windows of `seq_len` chars every `step` chars, each
    /// predicting only the next char.
    #[default]
    Keras,
    /// char-rnn style: every position of a chunk predicts its next char.
    Seq,
}

/// Hyperparameters of one training run. Unknown keys are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Stacked LSTM layers (reference: 3).
    pub layers: u32,
    /// Hidden units per layer (reference: 300).
    pub units: u32,
    /// Dropout on each layer's inputs and before the dense layer (reference: 0.2).
    pub dropout: f64,
    /// Dropout on the recurrent (hidden-to-hidden) connections (reference: 0.2).
    pub recurrent_dropout: f64,
    /// Characters of context per example (reference: 300).
    pub seq_len: u32,
    /// Stride between window starts in the `keras` formulation (reference: 3).
    pub step: u32,
    /// Examples per batch.
    pub batch_size: u32,
    /// Adam learning rate.
    pub learning_rate: f64,
    /// Clip the gradient norm to this value; 0 disables clipping.
    pub grad_clip: f64,
    /// Epochs to train.
    pub epochs: u32,
    /// How examples are formed.
    pub formulation: Formulation,
    /// Input embedding width; 0 means one-hot inputs over the vocabulary (the reference).
    pub embedding: u32,
    /// Seed of every random choice of the run (init, dropout masks, shuffling).
    pub seed: u64,
    /// Cap on batches per epoch (0 = the whole corpus); for smoke tests and benchmarks.
    pub max_batches: u32,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            layers: 3,
            units: 300,
            dropout: 0.2,
            recurrent_dropout: 0.2,
            seq_len: 300,
            step: 3,
            batch_size: 128,
            learning_rate: 0.001,
            grad_clip: 5.0,
            epochs: 10,
            formulation: Formulation::Keras,
            embedding: 0,
            seed: 42,
            max_batches: 0,
        }
    }
}

/// A config value out of range; names the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    /// The offending key.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    /// A new error for `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Every key of [`TrainConfig`], in declaration order.
pub const KEYS: &[&str] = &[
    "layers",
    "units",
    "dropout",
    "recurrent_dropout",
    "seq_len",
    "step",
    "batch_size",
    "learning_rate",
    "grad_clip",
    "epochs",
    "formulation",
    "embedding",
    "seed",
    "max_batches",
];

fn int_range(field: &str, v: u32, lo: u32, hi: u32) -> Result<(), ConfigError> {
    if v < lo || v > hi {
        return Err(ConfigError::new(
            field,
            format!("{v} is out of range {lo}..={hi}"),
        ));
    }
    Ok(())
}

fn float_range(
    field: &str,
    v: f64,
    lo: f64,
    hi: f64,
    hi_inclusive: bool,
) -> Result<(), ConfigError> {
    if !v.is_finite() {
        return Err(ConfigError::new(
            field,
            format!("{v} is not a finite number"),
        ));
    }
    let above = if hi_inclusive { v > hi } else { v >= hi };
    if v < lo || above {
        let close = if hi_inclusive { "]" } else { ")" };
        return Err(ConfigError::new(
            field,
            format!("{v} is out of range [{lo}, {hi}{close}"),
        ));
    }
    Ok(())
}

impl TrainConfig {
    /// Checks every value; the error names the first bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        int_range("layers", self.layers, 1, 16)?;
        int_range("units", self.units, 1, 8192)?;
        float_range("dropout", self.dropout, 0.0, 1.0, false)?;
        float_range("recurrent_dropout", self.recurrent_dropout, 0.0, 1.0, false)?;
        int_range("seq_len", self.seq_len, 1, 100_000)?;
        int_range("step", self.step, 1, 100_000)?;
        int_range("batch_size", self.batch_size, 1, 65_536)?;
        float_range(
            "learning_rate",
            self.learning_rate,
            f64::MIN_POSITIVE,
            10.0,
            true,
        )?;
        float_range("grad_clip", self.grad_clip, 0.0, 1e6, true)?;
        int_range("epochs", self.epochs, 1, 100_000)?;
        int_range("embedding", self.embedding, 0, 8192)?;
        Ok(())
    }

    /// Parses JSON (unknown keys refused) and validates.
    pub fn from_json(s: &str) -> Result<Self, ConfigError> {
        let c: TrainConfig =
            serde_json::from_str(s).map_err(|e| ConfigError::new("config", e.to_string()))?;
        c.validate()?;
        Ok(c)
    }

    /// Canonical JSON: keys in declaration order, no whitespace. Stable across releases as long
    /// as fields are only appended.
    pub fn canonical_json(&self) -> String {
        serde_json::to_string(self).expect("config serialises")
    }

    /// The run identity: sha256 over the dataset's content hash and the canonical config.
    pub fn run_hash(&self, dataset_content_hash: &str) -> String {
        let mut h = Sha256::new();
        h.update(dataset_content_hash.as_bytes());
        h.update(b"\n");
        h.update(self.canonical_json().as_bytes());
        hex::encode(h.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_reference_model_and_valid() {
        let c = TrainConfig::default();
        assert_eq!((c.layers, c.units, c.seq_len, c.step), (3, 300, 300, 3));
        assert_eq!(c.formulation, Formulation::Keras);
        c.validate().unwrap();
    }

    #[test]
    fn unknown_key_is_refused_with_its_name() {
        let e = TrainConfig::from_json(r#"{"layerz": 2}"#).unwrap_err();
        assert!(e.to_string().contains("layerz"), "{e}");
    }

    #[test]
    fn out_of_range_names_the_field() {
        let e = TrainConfig::from_json(r#"{"dropout": 1.5}"#).unwrap_err();
        assert_eq!(e.field, "dropout");
        let e = TrainConfig::from_json(r#"{"layers": 0}"#).unwrap_err();
        assert_eq!(e.field, "layers");
        let c = TrainConfig {
            learning_rate: f64::NAN,
            ..Default::default()
        };
        assert_eq!(c.validate().unwrap_err().field, "learning_rate");
    }

    #[test]
    fn hash_depends_on_config_and_dataset() {
        let a = TrainConfig::default();
        let b = TrainConfig {
            layers: 2,
            ..Default::default()
        };
        assert_eq!(a.run_hash("d1"), a.clone().run_hash("d1"));
        assert_ne!(a.run_hash("d1"), b.run_hash("d1"));
        assert_ne!(a.run_hash("d1"), a.run_hash("d2"));
    }

    #[test]
    fn keys_list_matches_serialised_fields() {
        let v = serde_json::to_value(TrainConfig::default()).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        let mut want = KEYS.to_vec();
        want.sort();
        let mut got = keys.clone();
        got.sort();
        assert_eq!(got, want);
    }
}

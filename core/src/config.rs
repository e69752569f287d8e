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

/// The recurrent cell of every layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Cell {
    /// The reference experiment's LSTM (4 gates, a cell state beside `h`).
    #[default]
    Lstm,
    /// A GRU (PyTorch's gate order r, z, n; `h` only): 3/4 of the LSTM's weights and work.
    Gru,
}

/// How the learning rate moves during a run (after the optional linear warm-up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    /// `learning_rate` throughout (the reference).
    #[default]
    Constant,
    /// Half a cosine from `learning_rate` down to `lr_min` over the run's batches
    /// (`epochs` x batches per epoch), per batch.
    Cosine,
    /// Multiply by `plateau_factor` (not below `lr_min`) after `plateau_patience` epochs in a
    /// row whose validation loss did not beat the best so far; decided per epoch.
    Plateau,
}

/// Hyperparameters of one training run. Unknown keys are refused.
///
/// Keys added after the first release (`cell` onward) are left out of the JSON while they
/// hold their default, so the canonical JSON, and with it the run hash, of a config that
/// does not use them is the one it had before they existed: stored runs stay deduplicated.
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
    /// The recurrent cell (`lstm`, the reference, or `gru`).
    #[serde(skip_serializing_if = "is_default")]
    pub cell: Cell,
    /// The learning-rate schedule (`constant`, `cosine` or `plateau`).
    #[serde(skip_serializing_if = "is_default")]
    pub lr_schedule: LrSchedule,
    /// Batches over which the rate rises linearly from `learning_rate / warmup_steps` to
    /// `learning_rate` before the schedule starts (0 = none).
    #[serde(skip_serializing_if = "is_default")]
    pub warmup_steps: u32,
    /// Floor of the schedule: where `cosine` ends and below which `plateau` never cuts.
    #[serde(skip_serializing_if = "is_default")]
    pub lr_min: f64,
    /// `plateau`: the factor each cut multiplies the rate by.
    #[serde(skip_serializing_if = "is_default_plateau_factor")]
    pub plateau_factor: f64,
    /// `plateau`: epochs without a new best validation loss before a cut.
    #[serde(skip_serializing_if = "is_default_plateau_patience")]
    pub plateau_patience: u32,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

fn is_default_plateau_factor(v: &f64) -> bool {
    v.to_bits() == DEFAULT_PLATEAU_FACTOR.to_bits()
}

fn is_default_plateau_patience(v: &u32) -> bool {
    *v == DEFAULT_PLATEAU_PATIENCE
}

/// Default `plateau_factor`: halve the rate (PyTorch's `ReduceLROnPlateau` uses 0.1, which
/// on our short runs cut too deep to recover from one noisy epoch).
pub const DEFAULT_PLATEAU_FACTOR: f64 = 0.5;
/// Default `plateau_patience`: cut after one epoch without improvement (runs are short).
pub const DEFAULT_PLATEAU_PATIENCE: u32 = 1;

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
            cell: Cell::Lstm,
            lr_schedule: LrSchedule::Constant,
            warmup_steps: 0,
            lr_min: 0.0,
            plateau_factor: DEFAULT_PLATEAU_FACTOR,
            plateau_patience: DEFAULT_PLATEAU_PATIENCE,
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
    "cell",
    "lr_schedule",
    "warmup_steps",
    "lr_min",
    "plateau_factor",
    "plateau_patience",
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
    /// The value a stored config holds for `key` when it omits the key: the fields written
    /// only when they differ from their default (so that configs written before the field
    /// existed keep their hash) mean that default. `None` for keys always written or unknown.
    pub fn implied(key: &str) -> Option<serde_json::Value> {
        let d = TrainConfig::default();
        match key {
            "cell" => serde_json::to_value(d.cell),
            "lr_schedule" => serde_json::to_value(d.lr_schedule),
            "warmup_steps" => serde_json::to_value(d.warmup_steps),
            "lr_min" => serde_json::to_value(d.lr_min),
            "plateau_factor" => serde_json::to_value(d.plateau_factor),
            "plateau_patience" => serde_json::to_value(d.plateau_patience),
            _ => return None,
        }
        .ok()
    }

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
        int_range("warmup_steps", self.warmup_steps, 0, 10_000_000)?;
        float_range("lr_min", self.lr_min, 0.0, self.learning_rate, true)?;
        if self.plateau_factor <= 0.0 {
            return Err(ConfigError::new(
                "plateau_factor",
                format!("{} must be above 0", self.plateau_factor),
            ));
        }
        float_range("plateau_factor", self.plateau_factor, 0.0, 1.0, false)?;
        int_range("plateau_patience", self.plateau_patience, 0, 10_000)?;
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

/// [`recommend`] feeds the first layer through a learned embedding instead of one-hot rows
/// when the model is 256 units or wider, or, for the narrow 128-unit model of a small corpus,
/// from this vocabulary size on. Measured with `bench/poems/vocab.sh` (BENCHMARKS.md, "One-hot
/// vs embedding inputs"), the recommended 2 x 256 config side by side with both inputs on the
/// 1 MB corpus: at 97 characters the embedding ended 0.08 nats lower after 15 minutes (1.651
/// against 1.728) and 0.09-0.12 lower after 3 minutes (two seeds), 4 % faster; at 836
/// characters it trained 1.6x faster and ended 1.3 nats lower after 3 minutes (two seeds).
/// The one measurement of a 2 x 128 model (the demo's recipe, 289 characters, 16 epochs)
/// went the other way, 0.11 nats worse with the embedding, so the narrow model keeps one-hot
/// inputs below this size, where its input projection (`4·units x vocab` multiply-adds per
/// character) costs less than one layer's recurrence (`8·units²`).
pub const EMBEDDING_MIN_VOCAB: usize = 256;

/// Width of the embedding [`recommend`] picks when it picks one.
pub const RECOMMENDED_EMBEDDING: u32 = 64;

/// Input characters per second that [`recommend`] assumes a 2 x 256 `seq` model trains at,
/// batch 64, on two quiet CPU cores: about half of the bench/worker figure for 3 x 300
/// (29 k chars/s, BENCHMARKS.md) scaled by the smaller model's work (~2x less), leaving room
/// for validation passes and other work on the machine. Used only to size the epoch budget;
/// [`recommend_at`] takes a measured rate instead.
pub const RECOMMEND_CHARS_PER_SEC: f64 = 25_000.0;

/// A sensible config for `corpus_chars` characters of training text over `vocab` distinct
/// characters and a budget of `minutes` of training on two CPU cores (what the poems
/// benchmark trains; `cargo run -p poet-core --example poems -- recommend CORPUS MINUTES`
/// prints it).
///
/// Why these values:
/// - `seq` formulation: every position is a training target; on the 1 MB corpus `seq`
///   reached the `keras` formulation's best validation loss in 1/40 of its time
///   (BENCHMARKS.md, "Training and sampling (CPU)");
/// - two layers, their width from the corpus size: 128 units below 100 k chars (a small
///   corpus overfits a wide model within minutes), 256 up to ~3 M chars, 384 above;
/// - Adam at 0.01 with up to 100 warm-up batches and a cosine decay to a tenth of that
///   over the run's planned batches: a high early rate learns the common words fast, the
///   warm-up keeps its first updates from blowing up a fresh model, and the decay lets the
///   last epochs settle instead of bouncing at the high rate. Measured side by side on the
///   1 MB corpus (2 x 256, 1 thread each, 7 minutes): validation loss 1.92 at 0.01 against
///   2.18 at 0.003 after the same 6 epochs (BENCHMARKS.md, "The recipe's learning rate");
///   2 x 128 on the demo's corpus kept improving up to 0.02-0.03;
/// - dropout 0.1 (0.2 for corpora under 100 k chars), no recurrent dropout (its weight-drop
///   costs a multiply per batch and short runs do not overfit enough to need it);
/// - a learned 64-wide embedding, except for the 128-unit model below
///   [`EMBEDDING_MIN_VOCAB`] characters (one-hot there);
/// - epochs sized so the planned batches fit the budget at [`RECOMMEND_CHARS_PER_SEC`];
///   when one pass over the corpus does not fit, `max_batches` cuts each epoch so that
///   there are still about 8 epochs (8 validations and checkpoints) in the budget.
///
/// The learning rate and the embedding rule are measured; the widths and dropout are still
/// reasoned defaults, not yet tuned by measurement.
pub fn recommend(corpus_chars: u64, vocab: usize, minutes: f64) -> TrainConfig {
    recommend_at(corpus_chars, vocab, minutes, RECOMMEND_CHARS_PER_SEC)
}

/// [`recommend`] for a machine measured to train a 2 x 256 `seq` model at `chars_per_sec`
/// input characters per second (the poems benchmark measures it first, so that on a loaded
/// machine the epochs and the cosine decay still fit the budget). Non-positive or non-finite
/// rates fall back to [`RECOMMEND_CHARS_PER_SEC`].
pub fn recommend_at(
    corpus_chars: u64,
    vocab: usize,
    minutes: f64,
    chars_per_sec: f64,
) -> TrainConfig {
    let measured = if chars_per_sec.is_finite() && chars_per_sec > 0.0 {
        chars_per_sec
    } else {
        RECOMMEND_CHARS_PER_SEC
    };
    let small = corpus_chars < 100_000;
    let units = if small {
        128
    } else if corpus_chars < 3_000_000 {
        256
    } else {
        384
    };
    // The throughput assumption is for 256 units; cost per char grows with units squared.
    let rate = measured * (256.0 / f64::from(units)).powi(2);
    let budget_chars = (minutes.max(0.0) * 60.0 * rate).max(1.0);
    let (seq_len, batch_size) = (100u32, 64u32);
    let chars_per_batch = f64::from(seq_len * batch_size);
    let budget_batches = (budget_chars / chars_per_batch).max(1.0);
    let batches_per_epoch = (corpus_chars as f64 / chars_per_batch).max(1.0);
    let (epochs, max_batches) = if budget_batches >= 8.0 * batches_per_epoch {
        ((budget_batches / batches_per_epoch).floor(), 0.0)
    } else {
        let per_epoch = (budget_batches / 8.0).ceil().min(batches_per_epoch);
        ((budget_batches / per_epoch).floor().max(1.0), per_epoch)
    };
    let epochs = epochs.clamp(1.0, 100_000.0) as u32;
    let warmup_steps = (100.0f64).min(budget_batches / 10.0).floor() as u32;
    TrainConfig {
        layers: 2,
        units,
        dropout: if small { 0.2 } else { 0.1 },
        recurrent_dropout: 0.0,
        seq_len,
        step: 3,
        batch_size,
        learning_rate: 0.01,
        grad_clip: 5.0,
        epochs,
        formulation: Formulation::Seq,
        embedding: if units >= 256 || vocab >= EMBEDDING_MIN_VOCAB {
            RECOMMENDED_EMBEDDING
        } else {
            0
        },
        seed: 42,
        max_batches: max_batches as u32,
        cell: Cell::Lstm,
        lr_schedule: LrSchedule::Cosine,
        warmup_steps,
        lr_min: 0.001,
        plateau_factor: DEFAULT_PLATEAU_FACTOR,
        plateau_patience: DEFAULT_PLATEAU_PATIENCE,
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
    fn an_omitted_key_implies_its_default() {
        let written = serde_json::to_value(TrainConfig::default()).unwrap();
        for key in [
            "cell",
            "lr_schedule",
            "warmup_steps",
            "lr_min",
            "plateau_factor",
            "plateau_patience",
        ] {
            assert!(written.get(key).is_none(), "{key} is written");
            let implied = TrainConfig::implied(key).unwrap();
            let back: TrainConfig =
                serde_json::from_value(serde_json::json!({ key: implied })).unwrap();
            assert_eq!(back, TrainConfig::default(), "{key}");
        }
        assert_eq!(TrainConfig::implied("cell").unwrap(), "lstm");
        assert_eq!(TrainConfig::implied("units"), None, "always written");
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
        // Keys at their default may be left out; a config off every default shows them all.
        let c = TrainConfig {
            cell: Cell::Gru,
            lr_schedule: LrSchedule::Plateau,
            warmup_steps: 5,
            lr_min: 0.0001,
            plateau_factor: 0.25,
            plateau_patience: 3,
            ..Default::default()
        };
        let v = serde_json::to_value(c).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        let mut want = KEYS.to_vec();
        want.sort();
        let mut got = keys.clone();
        got.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn keys_added_later_keep_the_old_canonical_json_at_their_defaults() {
        // The canonical JSON of the default config as it was before `cell` and the schedule
        // keys existed: stored run hashes must not move.
        let old = r#"{"layers":3,"units":300,"dropout":0.2,"recurrent_dropout":0.2,"seq_len":300,"step":3,"batch_size":128,"learning_rate":0.001,"grad_clip":5.0,"epochs":10,"formulation":"keras","embedding":0,"seed":42,"max_batches":0}"#;
        assert_eq!(TrainConfig::default().canonical_json(), old);
        let gru = TrainConfig {
            cell: Cell::Gru,
            ..Default::default()
        };
        assert!(gru.canonical_json().ends_with(r#""cell":"gru"}"#));
        assert_eq!(TrainConfig::from_json(&gru.canonical_json()).unwrap(), gru);
    }

    #[test]
    fn schedule_keys_are_validated_by_name() {
        let e = TrainConfig::from_json(r#"{"lr_schedule": "linear"}"#).unwrap_err();
        assert!(e.to_string().contains("linear"), "{e}");
        let e = TrainConfig::from_json(r#"{"cell": "rnn"}"#).unwrap_err();
        assert!(e.to_string().contains("rnn"), "{e}");
        let e = TrainConfig::from_json(r#"{"plateau_factor": 1.0}"#).unwrap_err();
        assert_eq!(e.field, "plateau_factor");
        let e = TrainConfig::from_json(r#"{"plateau_factor": 0.0}"#).unwrap_err();
        assert_eq!(e.field, "plateau_factor");
        let e = TrainConfig::from_json(r#"{"lr_min": 0.5, "learning_rate": 0.01}"#).unwrap_err();
        assert_eq!(e.field, "lr_min");
        let e = TrainConfig::from_json(r#"{"lr_min": -1e-3}"#).unwrap_err();
        assert_eq!(e.field, "lr_min");
        let e = TrainConfig::from_json(r#"{"plateau_patience": 20000}"#).unwrap_err();
        assert_eq!(e.field, "plateau_patience");
        let ok = TrainConfig::from_json(
            r#"{"cell": "gru", "lr_schedule": "plateau", "warmup_steps": 10, "lr_min": 1e-4}"#,
        )
        .unwrap();
        assert_eq!((ok.cell, ok.lr_schedule), (Cell::Gru, LrSchedule::Plateau));
    }

    #[test]
    fn recommend_sizes_the_model_and_the_epochs_to_the_corpus_and_budget() {
        // The poems benchmark's case: ~1 MB, a small vocabulary, 15 minutes.
        let c = recommend(1_000_000, 90, 15.0);
        c.validate().unwrap();
        assert_eq!(
            (c.layers, c.units, c.seq_len, c.batch_size),
            (2, 256, 100, 64)
        );
        assert_eq!(c.formulation, Formulation::Seq);
        assert_eq!(
            (c.lr_schedule, c.embedding),
            (LrSchedule::Cosine, RECOMMENDED_EMBEDDING)
        );
        // 15 min x 25 k chars/s = 22.5 M chars = 3,515 batches of 6,400 chars; an epoch is
        // 156 batches: 22 whole epochs, no cap.
        assert_eq!((c.epochs, c.max_batches), (22, 0));
        assert_eq!(c.warmup_steps, 100);
        // A tiny corpus gets a smaller, more regularised model.
        let c = recommend(40_000, 60, 3.0);
        c.validate().unwrap();
        assert_eq!(c.units, 128);
        assert!(c.dropout > 0.1);
        assert_eq!(c.max_batches, 0);
        // A corpus too large for one pass in the budget: epochs cut to fit, about 8 of them.
        let c = recommend(100_000_000, 90, 10.0);
        c.validate().unwrap();
        assert_eq!(c.units, 384);
        assert!(c.max_batches > 0);
        assert!((7..=9).contains(&c.epochs), "{}", c.epochs);
        let planned = f64::from(c.epochs * c.max_batches * c.batch_size * c.seq_len);
        let budget = 10.0 * 60.0 * RECOMMEND_CHARS_PER_SEC * (256.0f64 / 384.0).powi(2);
        assert!(
            (planned - budget).abs() / budget < 0.15,
            "{planned} vs {budget}"
        );
        // The 256-unit model always learns an embedding; the small corpus's 128-unit one
        // only from a large vocabulary on.
        assert_eq!(
            recommend(1_000_000, 90, 15.0).embedding,
            RECOMMENDED_EMBEDDING
        );
        assert_eq!(
            recommend(50_000, EMBEDDING_MIN_VOCAB - 1, 15.0).embedding,
            0
        );
        assert_eq!(
            recommend(50_000, EMBEDDING_MIN_VOCAB, 15.0).embedding,
            RECOMMENDED_EMBEDDING
        );
        // A slow machine (measured) gets the same model and fewer, shorter epochs.
        let slow = recommend_at(1_000_000, 90, 15.0, 1_000.0);
        slow.validate().unwrap();
        assert_eq!(slow.units, 256);
        // 900 k chars = 140 batches: 18-batch epochs, 7 whole ones.
        assert_eq!((slow.epochs, slow.max_batches), (7, 18));
        assert_eq!(
            recommend_at(1_000_000, 90, 15.0, f64::NAN),
            recommend(1_000_000, 90, 15.0)
        );
        // A zero budget still gives a valid one-epoch config.
        let c = recommend(1_000_000, 90, 0.0);
        c.validate().unwrap();
        assert_eq!(c.epochs, 1);
    }
}

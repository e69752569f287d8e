//! Generation: many sampled streams from one model at once (one batch row per stream), and
//! splitting sampled text into poems.
//!
//! Every stream starts from the reference seed window ([`seed_text`]: `"++++\n"` repeated and
//! cut to exactly `seq_len` chars), then the optional prime, then samples `chars` characters.
//! Two ways to condition each new character ([`SampleMode`]):
//! - `Carry` (default): run the stack once over seed + prime, then step one character at a
//!   time carrying the LSTM state: O(1) per char, through [`crate::model::Stepper`] (one
//!   matmul per layer per step, no one-hot) for a few rows, or one fused multi-layer LSTM
//!   call per step from [`FUSED_MIN_ROWS`] rows on. For `seq` models this is how they are
//!   meant to be run; `keras` models were trained from a zero state on exactly `seq_len`
//!   chars, so past that length they see longer contexts than in training (they cope well,
//!   since the state forgets).
//! - `Window`: the reference Keras sampler: every char re-runs the model from a zero state
//!   over the last `seq_len` chars. Faithful for `keras` models, `seq_len` times the work.
//!
//! Randomness comes from ChaCha8(seed) with one stream per row, never from torch's global
//! generator, so sampling beside a training thread neither disturbs it nor is disturbed, and
//! the same seed and checkpoint give the same text regardless of what else runs. Temperature
//! 0 takes the argmax; other temperatures sample from `softmax(logits / t)` computed in f64,
//! so tiny temperatures approach the argmax without overflow.

use crate::model::{PoetModel, State};
use crate::vocab::Vocab;
use poet_core::config::TrainConfig;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

/// From this many rows on, carried-state steps go through one multi-layer `Tensor::lstm`
/// call (oneDNN's fused kernel is faster there); below it the [`crate::model::Stepper`]
/// (oneDNN's per-call weight reordering dominates at a row or two). Measured on CPU:
/// `bench/worker/RESULTS.md`.
pub const FUSED_MIN_ROWS: usize = 8;

/// How each new character is conditioned; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SampleMode {
    /// Carry the LSTM state from char to char.
    #[default]
    Carry,
    /// Re-run the last `seq_len` chars from a zero state for every char.
    Window,
}

/// What to sample.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleRequest {
    /// One group of streams per temperature (0 = greedy).
    pub temperatures: Vec<f64>,
    /// Characters to sample per stream.
    pub chars: usize,
    /// Streams per temperature.
    pub streams_per_temperature: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// Text after the seed window; characters outside the vocabulary are dropped.
    pub prime: String,
    /// How to condition each new character.
    pub mode: SampleMode,
}

/// One sampled stream.
#[derive(Debug, Clone, PartialEq)]
pub struct SampledStream {
    /// Temperature it was drawn at.
    pub temperature: f64,
    /// The sampled characters (after the seed window and prime).
    pub text: String,
}

/// Why a request cannot be sampled.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SampleError {
    /// A temperature is negative or not finite.
    #[error("temperature {0} must be a finite number >= 0")]
    Temperature(f64),
    /// The model and vocabulary disagree.
    #[error("vocabulary has {vocab} chars, model {model}")]
    VocabMismatch {
        /// Vocabulary size.
        vocab: usize,
        /// Model output width.
        model: usize,
    },
    /// Seed window and prime hold no known character at all.
    #[error("no known character to start from")]
    EmptyContext,
}

/// The reference seed window: the frame `"++++\n"` repeated, cut to exactly `seq_len` chars.
pub fn seed_text(seq_len: usize) -> String {
    poet_core::FRAME.chars().cycle().take(seq_len).collect()
}

/// Samples `streams_per_temperature` streams per temperature, all as rows of one batch, in
/// job order (every stream of the first temperature, then the next).
pub fn sample(
    model: &PoetModel,
    vocab: &Vocab,
    cfg: &TrainConfig,
    req: &SampleRequest,
) -> Result<Vec<SampledStream>, SampleError> {
    if let Some(&t) = req
        .temperatures
        .iter()
        .find(|t| !t.is_finite() || **t < 0.0)
    {
        return Err(SampleError::Temperature(t));
    }
    if vocab.len() != model.vocab_size() {
        return Err(SampleError::VocabMismatch {
            vocab: vocab.len(),
            model: model.vocab_size(),
        });
    }
    let temps: Vec<f64> = req
        .temperatures
        .iter()
        .flat_map(|&t| std::iter::repeat_n(t, req.streams_per_temperature))
        .collect();
    let rows = temps.len();
    if rows == 0 {
        return Ok(Vec::new());
    }
    let seq_len = cfg.seq_len as usize;
    let (mut context, _) = vocab.encode_lossy(&seed_text(seq_len));
    let (prime, dropped) = vocab.encode_lossy(&req.prime);
    if dropped > 0 {
        tracing::warn!(
            dropped,
            "prime characters outside the vocabulary were dropped"
        );
    }
    context.extend(prime);
    if context.is_empty() {
        return Err(SampleError::EmptyContext);
    }
    let device = model.device();
    let mut rngs: Vec<ChaCha8Rng> = (0..rows).map(|r| row_rng(req.seed, r)).collect();
    let mut out: Vec<Vec<i64>> = vec![Vec::with_capacity(req.chars); rows];
    tch::no_grad(|| {
        // Every row starts from the same seed + prime: run that context once, at batch 1,
        // and give each row a copy of the resulting state and scores.
        let ctx = Tensor::from_slice(&context).view([1, -1]).to_device(device);
        let (hidden, one) = model.forward(&ctx, None, false);
        let widen = |t: &Tensor| t.repeat([1, rows as i64, 1]);
        let mut state = State {
            h: one.h.iter().map(widen).collect(),
            c: one.c.iter().map(widen).collect(),
        };
        let mut logits = model
            .logits(&hidden.select(1, -1), false)
            .repeat([rows as i64, 1]);
        let stepper = model.stepper();
        // Window mode keeps each row's last seq_len chars.
        let mut windows: Vec<Vec<i64>> =
            vec![context[context.len().saturating_sub(seq_len)..].to_vec(); rows];
        for i in 0..req.chars {
            let scores = Vec::<f32>::try_from(
                logits
                    .to_device(Device::Cpu)
                    .to_kind(Kind::Float)
                    .flatten(0, -1),
            )
            .expect("float logits");
            let next: Vec<i64> = scores
                .chunks(vocab.len())
                .zip(&temps)
                .zip(&mut rngs)
                .map(|((row, &t), rng)| pick(row, t, rng))
                .collect();
            for (o, &c) in out.iter_mut().zip(&next) {
                o.push(c);
            }
            if i + 1 == req.chars {
                break;
            }
            match req.mode {
                SampleMode::Carry if rows >= FUSED_MIN_ROWS => {
                    let x = Tensor::from_slice(&next)
                        .view([rows as i64, 1])
                        .to_device(device);
                    let (h, s) = model.forward_eval_fused(&x, &state);
                    state = s;
                    logits = model.logits(&h.select(1, -1), false);
                }
                SampleMode::Carry => {
                    let x = Tensor::from_slice(&next).to_device(device);
                    logits = stepper.step(&x, &mut state);
                }
                SampleMode::Window => {
                    for (w, &c) in windows.iter_mut().zip(&next) {
                        w.push(c);
                        if w.len() > seq_len {
                            w.remove(0);
                        }
                    }
                    let flat: Vec<i64> = windows.concat();
                    let x = Tensor::from_slice(&flat)
                        .view([rows as i64, -1])
                        .to_device(device);
                    let (h, _) = model.forward(&x, None, false);
                    logits = model.logits(&h.select(1, -1), false);
                }
            }
        }
    });
    Ok(temps
        .into_iter()
        .zip(out)
        .map(|(temperature, ids)| SampledStream {
            temperature,
            text: vocab.decode(&ids),
        })
        .collect())
}

/// Row `row`'s generator: stream `row` of ChaCha8 seeded with `seed`.
fn row_rng(seed: u64, row: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(row as u64);
    rng
}

/// The next id from one row of scores: argmax at temperature 0, else a draw from
/// `softmax(scores / t)`.
fn pick(scores: &[f32], t: f64, rng: &mut ChaCha8Rng) -> i64 {
    let (argmax, max) = scores
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &s)| {
            if s > best.1 { (i, s) } else { best }
        });
    if t == 0.0 {
        return argmax as i64;
    }
    let weights: Vec<f64> = scores
        .iter()
        .map(|&s| ((f64::from(s) - f64::from(max)) / t).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let mut u = rng.r#gen::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if u < *w {
            return i as i64;
        }
        u -= w;
    }
    argmax as i64
}

/// Splits sampled text into poems on `++++`, trimmed, empty fragments dropped: the rule the
/// coordinator applies too, shared from `poet_core`.
pub use poet_core::split_poems;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_window_is_exactly_seq_len() {
        assert_eq!(seed_text(12), "++++\n++++\n++");
        assert_eq!(seed_text(300).chars().count(), 300);
        assert_eq!(seed_text(0), "");
    }

    #[test]
    fn split_on_frames() {
        let t = "tail of one\n++++\n  roses are red\n\n++++\n++++\nlast one";
        assert_eq!(
            split_poems(t),
            vec!["tail of one", "roses are red", "last one"]
        );
        assert!(split_poems("++++\n ++++").is_empty());
    }

    #[test]
    fn zero_temperature_is_argmax_and_tiny_approaches_it() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let row = [0.1f32, 2.0, 1.9, -3.0];
        assert_eq!(pick(&row, 0.0, &mut rng), 1);
        for _ in 0..100 {
            assert_eq!(pick(&row, 1e-4, &mut rng), 1);
        }
        let big = [1000.0f32, 999.0];
        assert_eq!(pick(&big, 1e-9, &mut rng), 0);
    }

    /// rand's `gen::<f64>` and the ChaCha8 stream are pinned (Cargo.toml): the same seed must
    /// keep giving the same poems. If this fails after a dependency change, the change alters
    /// every sample a stored seed means; pin back, or accept it deliberately and update here.
    #[test]
    fn sampler_draws_are_pinned() {
        let mut rng = row_rng(42, 1);
        let draws: Vec<f64> = (0..4).map(|_| rng.r#gen::<f64>()).collect();
        assert_eq!(
            draws,
            [
                0.7167916525047883,
                0.16691033976292213,
                0.48241492362471194,
                0.8462661931917854
            ]
        );
        let mut rng = row_rng(7, 0);
        let picks: Vec<i64> = (0..12)
            .map(|_| pick(&[0.0, 0.5, 1.0, 1.5, -1.0], 1.0, &mut rng))
            .collect();
        assert_eq!(picks, [1, 1, 3, 3, 3, 2, 0, 3, 2, 4, 1, 2]);
    }
}

//! Cutting an encoded corpus into training examples, for both formulations of
//! [`Formulation`], and into shuffled batches.
//!
//! An example starts at offset `s` of the encoded text and reads `seq_len` input characters
//! `ids[s..s+seq_len]`:
//! - `keras`: starts every `step` chars; the target is the single next char `ids[s+seq_len]`
//!   (the reference experiment: the loss is taken on the last position only).
//! - `seq` (char-rnn): starts every `seq_len` chars, so chunks of `seq_len + 1` chars share
//!   their boundary char; every position predicts its next char, `ids[s+1..=s+seq_len]`.
//!
//! Every example starts from a zero LSTM state (the state is reset per batch, never carried
//! between batches): that makes examples independent, so shuffling them is sound and an epoch
//! is reproducible from `seed + epoch` alone, which is what exact resume needs. The cost is
//! that `seq` models never see context older than `seq_len` chars during training.

use poet_core::config::{Formulation, TrainConfig};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use tch::{Device, Kind, Tensor};

/// One batch, ready for the model.
#[derive(Debug)]
pub struct Batch {
    /// Input ids, `[batch, seq_len]`, int64.
    pub inputs: Tensor,
    /// Target ids: `[batch]` for `keras`, `[batch, seq_len]` for `seq`.
    pub targets: Tensor,
    /// Number of predicted characters (the loss is a mean over these).
    pub targets_count: usize,
    /// Number of input characters fed through the network (`batch * seq_len`).
    pub input_chars: usize,
}

/// The start offsets of every example of `formulation` in a text of `n` ids, in text order.
pub fn example_starts(n: usize, cfg: &TrainConfig) -> Vec<usize> {
    let seq_len = cfg.seq_len as usize;
    let stride = match cfg.formulation {
        Formulation::Keras => cfg.step as usize,
        Formulation::Seq => seq_len,
    };
    (0..)
        .step_by(stride)
        .take_while(|s| s + seq_len < n)
        .collect()
}

/// The order in which epoch `epoch` visits `count` examples: a shuffle seeded from
/// `seed + epoch`, so a resumed run visits exactly what an uninterrupted one would.
pub fn epoch_order(count: usize, seed: u64, epoch: u32) -> Vec<usize> {
    let mut order: Vec<usize> = (0..count).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed.wrapping_add(u64::from(epoch)));
    order.shuffle(&mut rng);
    order
}

/// Builds the batch of the examples starting at `starts` of `ids`, on `device`.
pub fn make_batch(ids: &[i64], starts: &[usize], cfg: &TrainConfig, device: Device) -> Batch {
    let t = cfg.seq_len as usize;
    let b = starts.len();
    let mut inputs = Vec::with_capacity(b * t);
    for &s in starts {
        inputs.extend_from_slice(&ids[s..s + t]);
    }
    let (targets, targets_count) = match cfg.formulation {
        Formulation::Keras => {
            let tg: Vec<i64> = starts.iter().map(|&s| ids[s + t]).collect();
            (Tensor::from_slice(&tg), b)
        }
        Formulation::Seq => {
            let mut tg = Vec::with_capacity(b * t);
            for &s in starts {
                tg.extend_from_slice(&ids[s + 1..s + t + 1]);
            }
            (Tensor::from_slice(&tg).view([b as i64, t as i64]), b * t)
        }
    };
    let inputs = Tensor::from_slice(&inputs).view([b as i64, t as i64]);
    Batch {
        inputs: inputs.to_device(device),
        targets: targets.to_kind(Kind::Int64).to_device(device),
        targets_count,
        input_chars: b * t,
    }
}

/// Characters of context before the first scored prediction of a validation window: every
/// validated character is predicted from a zero state after between `VAL_CONTEXT + 1` and
/// `VAL_CONTEXT + VAL_BLOCK` characters of the text before it, whatever the run's
/// formulation or `seq_len` (see [`eval_windows`]). A validation text shorter than
/// `2 * VAL_CONTEXT + 1` characters (test fixtures) uses half its length instead: the measure
/// then still depends only on the dataset, so the runs on it stay comparable.
pub const VAL_CONTEXT: usize = 100;
/// Characters scored per validation window.
pub const VAL_BLOCK: usize = 100;

/// The validation windows over a text of `n` ids: the context `c` (see [`VAL_CONTEXT`]) and
/// `(start, scored)` pairs. A window reads inputs `ids[start .. start + c + scored]` and is
/// scored on its last `scored` targets, `ids[start + c + 1 ..= start + c + scored]`. Windows
/// start every `VAL_BLOCK` ids, so every id from `c + 1` to `n - 1` is scored exactly once;
/// only the last window may score fewer than `VAL_BLOCK`. No window when `n < 3`.
pub fn eval_windows(n: usize) -> (usize, Vec<(usize, usize)>) {
    let c = VAL_CONTEXT.min(n.saturating_sub(1) / 2);
    let windows = (0..)
        .step_by(VAL_BLOCK)
        .take_while(|s| n >= 3 && s + c + 1 < n)
        .map(|s| (s, VAL_BLOCK.min(n - 1 - s - c)))
        .collect();
    (c, windows)
}

/// Splits example `starts` into batches of `batch_size`, keeping at most `max_batches`
/// (0 = all). The last batch may be smaller.
pub fn batch_starts(starts: &[usize], batch_size: usize, max_batches: usize) -> Vec<&[usize]> {
    let mut batches: Vec<&[usize]> = starts.chunks(batch_size).collect();
    if max_batches > 0 {
        batches.truncate(max_batches);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(formulation: Formulation, seq_len: u32, step: u32) -> TrainConfig {
        TrainConfig {
            formulation,
            seq_len,
            step,
            ..Default::default()
        }
    }

    #[test]
    fn eval_windows_score_every_char_after_the_context_once() {
        assert!(eval_windows(2).1.is_empty());
        let n = 2 * VAL_CONTEXT + 2 * VAL_BLOCK + 38;
        let (c, w) = eval_windows(n);
        assert_eq!(c, VAL_CONTEXT);
        assert_eq!(
            w,
            vec![
                (0, VAL_BLOCK),
                (VAL_BLOCK, VAL_BLOCK),
                (2 * VAL_BLOCK, VAL_BLOCK),
                (3 * VAL_BLOCK, 37)
            ]
        );
        let scored: Vec<usize> = w.iter().flat_map(|&(s, k)| s + c + 1..=s + c + k).collect();
        assert_eq!(scored, (c + 1..n).collect::<Vec<_>>());
        // A short text (a test fixture) keeps half of itself as context.
        let (c, w) = eval_windows(41);
        assert_eq!((c, w), (20, vec![(0, 20)]));
    }

    #[test]
    fn keras_windows_step_and_predict_the_next_char() {
        // text "abcdefg" as ids 0..7; windows of 3 every 2: abc->d, cde->f (efg has no next).
        let ids: Vec<i64> = (0..7).collect();
        let c = cfg(Formulation::Keras, 3, 2);
        let starts = example_starts(ids.len(), &c);
        assert_eq!(starts, vec![0, 2]);
        let b = make_batch(&ids, &starts, &c, Device::Cpu);
        assert_eq!(
            Vec::<i64>::try_from(b.inputs.flatten(0, -1)).unwrap(),
            vec![0, 1, 2, 2, 3, 4]
        );
        assert_eq!(Vec::<i64>::try_from(&b.targets).unwrap(), vec![3, 5]);
        assert_eq!((b.targets_count, b.input_chars), (2, 6));
    }

    #[test]
    fn seq_chunks_predict_every_next_char() {
        // chunks of seq_len+1 = 4 sharing the boundary: abcd, defg; "g" alone is not a chunk.
        let ids: Vec<i64> = (0..8).collect();
        let c = cfg(Formulation::Seq, 3, 99);
        let starts = example_starts(ids.len(), &c);
        assert_eq!(starts, vec![0, 3]);
        let b = make_batch(&ids, &starts, &c, Device::Cpu);
        assert_eq!(b.inputs.size(), vec![2, 3]);
        assert_eq!(
            Vec::<i64>::try_from(b.inputs.flatten(0, -1)).unwrap(),
            vec![0, 1, 2, 3, 4, 5]
        );
        assert_eq!(
            Vec::<i64>::try_from(b.targets.flatten(0, -1)).unwrap(),
            vec![1, 2, 3, 4, 5, 6]
        );
        assert_eq!(b.targets_count, 6);
    }

    #[test]
    fn shuffle_depends_on_seed_plus_epoch_only() {
        let a = epoch_order(50, 7, 1);
        assert_eq!(a, epoch_order(50, 7, 1));
        assert_eq!(a, epoch_order(50, 6, 2));
        assert_ne!(a, epoch_order(50, 7, 2));
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
    }

    /// rand's `shuffle` and the ChaCha8 stream are pinned (Cargo.toml): a resumed run must
    /// visit its examples in the order the interrupted one would have. If this fails after a
    /// dependency change, the change reorders every epoch of every stored run.
    #[test]
    fn shuffle_is_pinned() {
        assert_eq!(
            epoch_order(16, 42, 3),
            [3, 2, 8, 4, 11, 10, 0, 9, 5, 15, 12, 6, 13, 14, 7, 1]
        );
    }

    #[test]
    fn batches_are_capped() {
        let s: Vec<usize> = (0..10).collect();
        assert_eq!(batch_starts(&s, 4, 0).len(), 3);
        assert_eq!(batch_starts(&s, 4, 2), vec![&s[0..4], &s[4..8]]);
    }
}

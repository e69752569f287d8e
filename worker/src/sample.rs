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
//! Besides the temperature, each draw is shaped by [`Sampling`] (issue 21: at low
//! temperatures the plain sampler rarely ends a line, lines ran 1.2-1.9x the corpus's length,
//! and 0.2 looped on one line):
//! - `top_k` / `top_p` cut the tail of the tempered distribution (the chars that make
//!   non-words) before the draw;
//! - `max_line_repeats` forbids the newline that would end a line whose text already ended
//!   that many lines of the current poem, so no line stands more than that many times in a
//!   poem (the sampler has to go on and say something else);
//! - `shape_boost` pulls line and stanza breaks towards the corpus's mean line length
//!   (`line_chars`) and, on an empty line, its lines per stanza (`stanza_lines`). The pull is
//!   `p = boost * clamp((n - target) / target, -1, 2)` nats: a line at its target length is
//!   left alone, a long one is pushed to end, a short one held.
//!   - A line past its target ends **at a word boundary**: a share `1 - e^-p` of the space's
//!     weight moves to `\n`, so the newline takes the place of a space the model was about
//!     to write, never the middle of a word. (The first version added `p` to the newline's
//!     score everywhere. At low temperatures that broke words in two, or, with the gap to
//!     the likeliest char divided by T, rarely won at all: lines stayed 1.3-1.7x too long at
//!     0.2-0.5, BENCHMARKS.md.)
//!   - A short line, and a stanza break, get `p` added to the newline's logit before the
//!     temperature divides it, so the pull keeps its weight against the model's own
//!     preference at every temperature. (Added after dividing, as first written, a stanza
//!     pull of 3 nats lost to the model's preference, 5x larger at 0.2, and stanzas ran
//!     1.7-1.9x the corpus's.)
//!
//!   The coordinator fills both targets from the training corpus's own figures.
//! - With the shape pull on, a line the model begins with `+` is completed to the frame
//!   `++++` and ended: the frame is the protocol between poems, not text, and a sampled `++`
//!   or `+++` line cut poems into fragments that were "poems" of their own (the demo printed
//!   poems reading `+++` and `++`).
//!
//! [`Sampling::default`] is the setting measured best by `bench/poems/sampling.sh`
//! (BENCHMARKS.md, "Sampling that keeps a poem's shape"); [`Sampling::off`] is plain
//! temperature sampling, the reference's.
//!
//! Randomness comes from ChaCha8(seed) with one stream per row, never from torch's global
//! generator, so sampling beside a training thread neither disturbs it nor is disturbed, and
//! the same seed and checkpoint give the same text regardless of what else runs. Temperature
//! 0 takes the argmax; other temperatures sample from `softmax(logits / t)` computed in f64,
//! so tiny temperatures approach the argmax without overflow.

use std::collections::HashMap;

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

impl SampleMode {
    /// The mode a name means: `carry` or `window` (the names the CLI and gRPC use).
    pub fn parse(name: &str) -> Option<SampleMode> {
        match name {
            "carry" => Some(SampleMode::Carry),
            "window" => Some(SampleMode::Window),
            _ => None,
        }
    }
}

/// How each draw is shaped besides the temperature; see the module docs.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// Nucleus: draw from the smallest set of likeliest chars whose probability reaches this,
    /// in (0, 1]; 1 keeps every char.
    pub top_p: f64,
    /// Draw from the `top_k` likeliest chars only; 0 keeps every char.
    pub top_k: usize,
    /// A line may stand at most this many times in one poem (0 = no cap): the newline that
    /// would end it once more is forbidden.
    pub max_line_repeats: usize,
    /// Strength, in nats, of the pull of `\n` towards the target shape (0 = none).
    pub shape_boost: f64,
    /// Target mean line length in chars (0 = no line pull); the corpus's figure.
    pub line_chars: f64,
    /// Target non-empty lines per stanza (0 = no stanza pull); the corpus's figure.
    pub stanza_lines: f64,
}

impl Sampling {
    /// Plain temperature sampling: no cut, no cap, no pull (the reference's sampler).
    pub fn off() -> Sampling {
        Sampling {
            top_p: 1.0,
            top_k: 0,
            max_line_repeats: 0,
            shape_boost: 0.0,
            line_chars: 0.0,
            stanza_lines: 0.0,
        }
    }

    /// These settings aimed at a corpus with `line_chars` chars per line and `stanza_lines`
    /// lines per stanza.
    pub fn towards(self, line_chars: f64, stanza_lines: f64) -> Sampling {
        Sampling {
            line_chars,
            stanza_lines,
            ..self
        }
    }

    /// Checks every field; the error names it.
    pub fn validate(&self) -> Result<(), SampleError> {
        let bad =
            |field: &'static str, message: String| Err(SampleError::Invalid { field, message });
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", format!("{} is not in (0, 1]", self.top_p));
        }
        if !(self.shape_boost.is_finite() && (0.0..=MAX_SHAPE_BOOST).contains(&self.shape_boost)) {
            return bad(
                "shape_boost",
                format!("{} is not in [0, {MAX_SHAPE_BOOST}]", self.shape_boost),
            );
        }
        for (field, v) in [
            ("line_chars", self.line_chars),
            ("stanza_lines", self.stanza_lines),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(field, format!("{v} must be a finite number >= 0"));
            }
        }
        Ok(())
    }
}

impl Default for Sampling {
    /// The measured defaults (BENCHMARKS.md, "Sampling that keeps a poem's shape"), with no
    /// shape target: callers that know the corpus set it with [`Sampling::towards`].
    fn default() -> Sampling {
        Sampling {
            top_p: DEFAULT_TOP_P,
            top_k: DEFAULT_TOP_K,
            max_line_repeats: DEFAULT_MAX_LINE_REPEATS,
            shape_boost: DEFAULT_SHAPE_BOOST,
            line_chars: 0.0,
            stanza_lines: 0.0,
        }
    }
}

pub use poet_core::quality::defaults::{
    MAX_LINE_REPEATS as DEFAULT_MAX_LINE_REPEATS, MAX_SHAPE_BOOST,
    SHAPE_BOOST as DEFAULT_SHAPE_BOOST, TOP_K as DEFAULT_TOP_K, TOP_P as DEFAULT_TOP_P,
};

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
    /// How each draw is shaped besides the temperature.
    pub sampling: Sampling,
}

impl SampleRequest {
    /// The request a coordinator's generation job describes. Fields an older coordinator
    /// leaves unset (empty mode, top_p 0) mean the plain sampler it knew.
    pub fn of_job(job: &poet_proto::v1::GenerationJob) -> Result<SampleRequest, String> {
        let mode = match job.mode.as_str() {
            "" => SampleMode::Carry,
            m => {
                SampleMode::parse(m).ok_or_else(|| format!("mode: '{m}' is not carry or window"))?
            }
        };
        Ok(SampleRequest {
            temperatures: job.temperatures.clone(),
            chars: job.chars.max(0) as usize,
            streams_per_temperature: job.poems.max(0) as usize,
            seed: job.seed,
            prime: job.prime.clone(),
            mode,
            sampling: Sampling {
                top_p: if job.top_p == 0.0 { 1.0 } else { job.top_p },
                top_k: job.top_k.max(0) as usize,
                max_line_repeats: job.max_line_repeats.max(0) as usize,
                shape_boost: job.shape_boost,
                line_chars: job.line_chars,
                stanza_lines: job.stanza_lines,
            },
        })
    }
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
    /// A [`Sampling`] field is out of range.
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
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
    req.sampling.validate()?;
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
    let breaks = vocab.id('\n').map(|i| Breaks {
        newline: i as usize,
        space: vocab.id(' ').map(|i| i as usize),
        plus: vocab.id('+').map(|i| i as usize),
    });
    let mut shapes = vec![RowShape::default(); rows];
    for c in req.prime.chars().filter(|c| vocab.id(*c).is_some()) {
        shapes.iter_mut().for_each(|s| s.push(c));
    }
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
                .zip(&shapes)
                .map(|(((row, &t), rng), shape)| {
                    let nudge = breaks.map(|b| (b, shape.nudge(&req.sampling)));
                    pick(row, t, nudge, &req.sampling, rng)
                })
                .collect();
            for ((o, shape), &c) in out.iter_mut().zip(&mut shapes).zip(&next) {
                o.push(c);
                shape.push(vocab.char(c));
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

/// How the shape rules move one draw: [`RowShape::nudge`] makes it, [`pick`] applies it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Nudge {
    /// Added to the newline's logit before the temperature; minus infinity forbids it.
    add: f64,
    /// The share of the space's weight moved to the newline (a long line ends where a word
    /// does), in [0, 1).
    transfer: f64,
    /// The char the frame being written needs next, taken without a draw.
    force: Option<Forced>,
}

/// The next char of a frame line (`++++` then the newline).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Forced {
    Plus,
    Newline,
}

impl Nudge {
    const NONE: Nudge = Nudge {
        add: 0.0,
        transfer: 0.0,
        force: None,
    };

    fn is_none(&self) -> bool {
        *self == Nudge::NONE
    }
}

/// The ids the shape rules move: the newline's, and the space's whose weight a long line's
/// newline takes.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Breaks {
    newline: usize,
    space: Option<usize>,
    plus: Option<usize>,
}

/// One row's place in its poem: what the newline pull and the repeat cap look at.
#[derive(Debug, Clone, Default)]
struct RowShape {
    /// The line being written.
    line: String,
    /// How often each (trimmed) line has ended in the current poem.
    lines: HashMap<String, usize>,
    /// Non-empty lines ended in the current stanza.
    stanza_lines: usize,
}

impl RowShape {
    fn push(&mut self, c: char) {
        if c != '\n' {
            self.line.push(c);
            return;
        }
        match self.line.trim() {
            "" => self.stanza_lines = 0,
            t if t == poet_core::FRAME.trim_end() => {
                self.lines.clear();
                self.stanza_lines = 0;
            }
            t => {
                *self.lines.entry(t.to_string()).or_default() += 1;
                self.stanza_lines += 1;
            }
        }
        self.line.clear();
    }

    /// How the shape rules move the next draw: the newline forbidden where it would end a
    /// line a third time (under the default cap), else the shape pull.
    fn nudge(&self, s: &Sampling) -> Nudge {
        let line = self.line.trim();
        let add = |add: f64| Nudge { add, ..Nudge::NONE };
        let frame = poet_core::FRAME.trim_end();
        if s.shape_boost > 0.0 && !self.line.is_empty() && frame.starts_with(self.line.as_str()) {
            let next = if self.line.len() < frame.len() {
                Forced::Plus
            } else {
                Forced::Newline
            };
            return Nudge {
                force: Some(next),
                ..Nudge::NONE
            };
        }
        if line.is_empty() {
            // A newline here ends the stanza.
            return match self.stanza_lines {
                0 => Nudge::NONE,
                n => add(pull(n as f64, s.stanza_lines, s.shape_boost)),
            };
        }
        if line.starts_with('+') {
            // The frame between poems is the model's to write.
            return Nudge::NONE;
        }
        if s.max_line_repeats > 0
            && self
                .lines
                .get(line)
                .is_some_and(|&n| n >= s.max_line_repeats)
        {
            return add(f64::NEG_INFINITY);
        }
        match pull(line.chars().count() as f64, s.line_chars, s.shape_boost) {
            p if p > 0.0 => Nudge {
                transfer: 1.0 - (-p).exp(),
                ..Nudge::NONE
            },
            p => add(p),
        }
    }
}

/// `boost * clamp((n - target) / target, -1, 2)`; 0 without a target.
fn pull(n: f64, target: f64, boost: f64) -> f64 {
    if target <= 0.0 || boost == 0.0 {
        return 0.0;
    }
    boost * ((n - target) / target).clamp(-1.0, 2.0)
}

/// The next id from one row of scores: argmax at temperature 0 (of the scores plus the
/// nudge), else a draw from `softmax((scores + nudge) / t)` cut to `top_k` and `top_p`. The
/// nudge adds to the newline's logit (minus infinity forbids it) and moves a share of
/// the space's weight to the newline (at temperature 0: a space becomes the newline when the
/// share is at least a half). Without nudge and cut the arithmetic is the plain sampler's,
/// so old seeds keep their text.
fn pick(
    scores: &[f32],
    t: f64,
    nudge: Option<(Breaks, Nudge)>,
    s: &Sampling,
    rng: &mut ChaCha8Rng,
) -> i64 {
    let (breaks, nudge) = match nudge {
        Some((b, n)) if !n.is_none() => (Some(b), n),
        _ => (None, Nudge::NONE),
    };
    match (breaks, nudge.force) {
        (Some(b), Some(Forced::Newline)) => return b.newline as i64,
        (Some(Breaks { plus: Some(p), .. }), Some(Forced::Plus)) => return p as i64,
        _ => {}
    }
    let bias = |i: usize| match breaks {
        Some(b) if b.newline == i => nudge.add,
        _ => 0.0,
    };
    // The space whose weight the newline takes, with the share.
    let transfer = breaks.and_then(|b| {
        b.space
            .filter(|_| nudge.transfer > 0.0)
            .map(|sp| (sp, b.newline, nudge.transfer))
    });
    let argmax = |v: &mut dyn Iterator<Item = f64>| {
        v.enumerate()
            .fold((0, f64::NEG_INFINITY), |best, (i, x)| {
                if x > best.1 { (i, x) } else { best }
            })
            .0 as i64
    };
    if t == 0.0 {
        let best = argmax(
            &mut scores
                .iter()
                .enumerate()
                .map(|(i, &x)| f64::from(x) + bias(i)),
        );
        return match transfer {
            Some((sp, nl, share)) if best == sp as i64 && share >= 0.5 => nl as i64,
            _ => best,
        };
    }
    let max = scores.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    let logw: Vec<f64> = scores
        .iter()
        .enumerate()
        .map(|(i, &x)| (f64::from(x) - f64::from(max) + bias(i)) / t)
        .collect();
    let top = logw.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x));
    if !top.is_finite() {
        return argmax(&mut scores.iter().map(|&x| f64::from(x)));
    }
    let mut weights: Vec<f64> = logw.iter().map(|&l| (l - top).exp()).collect();
    if let Some((sp, nl, share)) = transfer {
        let moved = weights[sp] * share;
        weights[sp] -= moved;
        weights[nl] += moved;
    }
    let best = argmax(&mut weights.iter().copied());
    if (s.top_k > 0 && s.top_k < weights.len()) || s.top_p < 1.0 {
        let mut order: Vec<usize> = (0..weights.len()).collect();
        order.sort_by(|&a, &b| weights[b].total_cmp(&weights[a]).then(a.cmp(&b)));
        let total: f64 = weights.iter().sum();
        let mut keep = vec![false; weights.len()];
        let mut kept = 0.0;
        for (rank, &i) in order.iter().enumerate() {
            if s.top_k > 0 && rank >= s.top_k {
                break;
            }
            keep[i] = true;
            kept += weights[i];
            if kept >= s.top_p * total {
                break;
            }
        }
        for (w, k) in weights.iter_mut().zip(keep) {
            if !k {
                *w = 0.0;
            }
        }
    }
    let total: f64 = weights.iter().sum();
    let mut u = rng.r#gen::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if u < *w {
            return i as i64;
        }
        u -= w;
    }
    best
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
        let off = Sampling::off();
        assert_eq!(pick(&row, 0.0, None, &off, &mut rng), 1);
        for _ in 0..100 {
            assert_eq!(pick(&row, 1e-4, None, &off, &mut rng), 1);
        }
        let big = [1000.0f32, 999.0];
        assert_eq!(pick(&big, 1e-9, None, &off, &mut rng), 0);
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
            .map(|_| {
                pick(
                    &[0.0, 0.5, 1.0, 1.5, -1.0],
                    1.0,
                    None,
                    &Sampling::off(),
                    &mut rng,
                )
            })
            .collect();
        assert_eq!(picks, [1, 1, 3, 3, 3, 2, 0, 3, 2, 4, 1, 2]);
    }

    /// A nudge that adds `nats` to char `id`'s log-weight.
    fn add(id: usize, nats: f64) -> Option<(Breaks, Nudge)> {
        Some((
            Breaks {
                newline: id,
                space: None,
                plus: None,
            },
            Nudge {
                add: nats,
                ..Nudge::NONE
            },
        ))
    }

    fn draws(row: &[f32], t: f64, nudge: Option<(Breaks, Nudge)>, s: &Sampling) -> Vec<usize> {
        let mut rng = row_rng(3, 0);
        let mut counts = vec![0; row.len()];
        for _ in 0..2000 {
            counts[pick(row, t, nudge, s, &mut rng) as usize] += 1;
        }
        counts
    }

    #[test]
    fn top_k_and_top_p_draw_only_from_the_head() {
        // Softmax of these at t = 1: 0.64, 0.24, 0.09, 0.03.
        let row = [3.0f32, 2.0, 1.0, 0.0];
        let all = draws(&row, 1.0, None, &Sampling::off());
        assert!(all.iter().all(|&n| n > 0), "{all:?}");
        let k2 = draws(
            &row,
            1.0,
            None,
            &Sampling {
                top_k: 2,
                ..Sampling::off()
            },
        );
        assert_eq!((k2[2], k2[3]), (0, 0), "{k2:?}");
        assert!(k2[0] > k2[1] && k2[1] > 0, "{k2:?}");
        // 0.64 + 0.24 = 0.88 reaches 0.8: the nucleus is the first two.
        let p = draws(
            &row,
            1.0,
            None,
            &Sampling {
                top_p: 0.8,
                ..Sampling::off()
            },
        );
        assert_eq!((p[2], p[3]), (0, 0), "{p:?}");
        // 0.5 is reached by the first alone.
        let p = draws(
            &row,
            1.0,
            None,
            &Sampling {
                top_p: 0.5,
                ..Sampling::off()
            },
        );
        assert_eq!(p, [2000, 0, 0, 0]);
    }

    #[test]
    fn a_nudge_moves_one_char_and_minus_infinity_forbids_it() {
        let row = [3.0f32, 2.0, 1.0, 0.0];
        let off = Sampling::off();
        assert_eq!(draws(&row, 1.0, add(0, f64::NEG_INFINITY), &off)[0], 0);
        let mut rng = row_rng(1, 0);
        // Greedy follows the nudge too.
        assert_eq!(pick(&row, 0.0, add(3, 3.5), &off, &mut rng), 3);
        assert_eq!(
            pick(&row, 0.0, add(0, f64::NEG_INFINITY), &off, &mut rng),
            1
        );
        let plain = draws(&row, 1.0, None, &off);
        let pushed = draws(&row, 1.0, add(3, 3.0), &off);
        assert!(pushed[3] > 5 * plain[3], "{plain:?} {pushed:?}");
    }

    #[test]
    fn the_newline_bias_caps_repeats_and_pulls_towards_the_shape() {
        let s = Sampling {
            max_line_repeats: 2,
            shape_boost: 2.0,
            ..Sampling::off()
        }
        .towards(10.0, 4.0);
        let mut r = RowShape::default();
        let feed = |r: &mut RowShape, t: &str| t.chars().for_each(|c| r.push(c));
        feed(&mut r, "the sind\nthe sind\nthe sind");
        assert_eq!(
            r.nudge(&s).add,
            f64::NEG_INFINITY,
            "a third ending is forbidden"
        );
        feed(&mut r, " the sand");
        // 17 chars against 10: pushed to end where a word ends: 1 - e^-(2 * 0.7) of the
        // space's weight goes to the newline, nothing is added mid-word.
        let long = r.nudge(&s);
        assert_eq!(long.add, 0.0);
        assert!((long.transfer - (1.0 - (-1.4f64).exp())).abs() < 1e-9);
        feed(&mut r, "\n");
        // An empty line after 3 lines of a 4-line target: held, 2 * -0.25.
        assert!((r.nudge(&s).add + 0.5).abs() < 1e-9);
        feed(&mut r, "\n++++\nthe sind");
        assert!(r.nudge(&s).add < 0.0, "a new poem forgets the old lines");
        assert_eq!(r.nudge(&s).transfer, 0.0, "a short line is held");
        feed(&mut r, "\n+++");
        assert_eq!(
            r.nudge(&s).force,
            Some(Forced::Plus),
            "a frame is completed"
        );
        feed(&mut r, "+");
        assert_eq!(r.nudge(&s).force, Some(Forced::Newline), "and ended");
        feed(&mut r, "\n");
        assert!(RowShape::default().nudge(&s).is_none());
        let plain = Sampling::off();
        r.push('+');
        assert!(
            r.nudge(&plain).is_none(),
            "the plain sampler leaves frames alone"
        );
        // Forced chars are taken without a draw.
        let breaks = Breaks {
            newline: 0,
            space: None,
            plus: Some(2),
        };
        let force = |f: Forced| {
            Some((
                breaks,
                Nudge {
                    force: Some(f),
                    ..Nudge::NONE
                },
            ))
        };
        let row = [0.0f32, 9.0, -9.0];
        let mut rng = row_rng(1, 0);
        assert_eq!(pick(&row, 1.0, force(Forced::Plus), &plain, &mut rng), 2);
        assert_eq!(pick(&row, 1.0, force(Forced::Newline), &plain, &mut rng), 0);
    }

    #[test]
    fn a_long_line_ends_where_a_space_would_have_stood() {
        // Chars: 0 = 'a', 1 = ' ', 2 = '\n'. The model wants a space a third of the time.
        let row = [1.0f32, 0.3, -4.0];
        let off = Sampling::off();
        let breaks = Breaks {
            newline: 2,
            space: Some(1),
            plus: None,
        };
        let moved = |share: f64| {
            Some((
                breaks,
                Nudge {
                    transfer: share,
                    ..Nudge::NONE
                },
            ))
        };
        let plain = draws(&row, 1.0, None, &off);
        let half = draws(&row, 1.0, moved(0.5), &off);
        // The letter keeps its share: no word is cut; half the spaces became newlines.
        let near = |a: usize, b: usize| (a as f64 - b as f64).abs() < 0.15 * b as f64;
        assert!(near(half[0], plain[0]), "{plain:?} {half:?}");
        assert!(near(half[1], plain[1] / 2), "{plain:?} {half:?}");
        assert!(half[2] > 5 * plain[2], "{plain:?} {half:?}");
        // Greedy: a space becomes the newline from a share of one half on.
        let space_first = [0.0f32, 1.0, -4.0];
        let mut rng = row_rng(1, 0);
        assert_eq!(pick(&space_first, 0.0, moved(0.6), &off, &mut rng), 2);
        assert_eq!(pick(&space_first, 0.0, moved(0.4), &off, &mut rng), 1);
        assert_eq!(pick(&row, 0.0, moved(0.9), &off, &mut rng), 0);
    }

    #[test]
    fn sampling_fields_are_validated_by_name() {
        let bad = |s: Sampling| match s.validate() {
            Err(SampleError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            bad(Sampling {
                top_p: 0.0,
                ..Sampling::default()
            }),
            "top_p"
        );
        assert_eq!(
            bad(Sampling {
                top_p: 1.5,
                ..Sampling::default()
            }),
            "top_p"
        );
        assert_eq!(
            bad(Sampling {
                top_p: f64::NAN,
                ..Sampling::default()
            }),
            "top_p"
        );
        assert_eq!(
            bad(Sampling {
                shape_boost: -1.0,
                ..Sampling::default()
            }),
            "shape_boost"
        );
        assert_eq!(
            bad(Sampling::default().towards(f64::INFINITY, 1.0)),
            "line_chars"
        );
        assert_eq!(bad(Sampling::default().towards(1.0, -1.0)), "stanza_lines");
        assert!(Sampling::default().validate().is_ok());
        assert!(Sampling::off().validate().is_ok());
    }
}

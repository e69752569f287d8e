//! Adam, written out over the model's named parameters so that its whole state (first and
//! second moments, step count) can be saved in a checkpoint and restored bit for bit; tch's
//! built-in optimizers keep that state inside libtorch where it cannot be read back.
//!
//! The update is PyTorch's `torch.optim.Adam` (no weight decay, no AMSGrad) with Keras's
//! default epsilon 1e-7 (the reference experiment's). Gradient clipping rescales all
//! gradients together when their global L2 norm exceeds the limit (`clip_grad_norm_`);
//! note that Keras's `clipnorm` clips each tensor separately.
//!
//! [`LrScheduler`] sets Adam's rate before every update from the config's `lr_schedule`,
//! `warmup_steps` and `lr_min`. The rate of update `t` is a pure function of `t`, the planned
//! number of updates and, for `plateau`, a small state ([`ScheduleState`]) that changes only at
//! epoch ends and travels in checkpoints, so a resumed run takes exactly the rates an
//! uninterrupted one would.

use poet_core::config::{LrSchedule, TrainConfig};
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// First moment decay.
pub const BETA1: f64 = 0.9;
/// Second moment decay.
pub const BETA2: f64 = 0.999;
/// Denominator guard (Keras's default).
pub const EPS: f64 = 1e-7;

/// Adam over a fixed, named list of parameters.
#[derive(Debug)]
pub struct Adam {
    /// Learning rate.
    lr: f64,
    /// Parameter names, in the order of every other vector here.
    names: Vec<String>,
    /// The parameters (shallow handles onto the model's variables).
    params: Vec<Tensor>,
    /// First moments.
    m: Vec<Tensor>,
    /// Second moments.
    v: Vec<Tensor>,
    /// Updates applied so far (drives the bias correction).
    step: i64,
}

/// The saved form of [`Adam`]: what a checkpoint holds.
#[derive(Debug)]
pub struct AdamState {
    /// Updates applied so far.
    pub step: i64,
    /// First moment per parameter name.
    pub m: Vec<(String, Tensor)>,
    /// Second moment per parameter name.
    pub v: Vec<(String, Tensor)>,
}

impl Adam {
    /// Fresh state (zero moments, step 0) for `params` as given by
    /// [`crate::model::PoetModel::parameters`].
    pub fn new(params: Vec<(String, Tensor)>, lr: f64) -> Self {
        let (names, params): (Vec<String>, Vec<Tensor>) = params.into_iter().unzip();
        let m = params.iter().map(Tensor::zeros_like).collect();
        let v = params.iter().map(Tensor::zeros_like).collect();
        Adam {
            lr,
            names,
            params,
            m,
            v,
            step: 0,
        }
    }

    /// The learning rate of the next updates.
    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// The learning rate in force.
    pub fn lr(&self) -> f64 {
        self.lr
    }

    /// Updates applied so far.
    pub fn step_count(&self) -> i64 {
        self.step
    }

    /// Clears every gradient before a backward pass.
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.zero_grad();
        }
    }

    /// Global L2 norm of the gradients; when `max_norm > 0` and the norm exceeds it, scales
    /// every gradient by `max_norm / norm`. Returns the norm before clipping.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> f64 {
        let grads: Vec<Tensor> = self
            .params
            .iter()
            .map(Tensor::grad)
            .filter(Tensor::defined)
            .collect();
        if grads.is_empty() {
            return 0.0;
        }
        let norms: Vec<Tensor> = grads.iter().map(|g| g.norm()).collect();
        let total = f64::try_from(Tensor::stack(&norms, 0).norm()).unwrap_or(f64::NAN);
        if max_norm > 0.0 && total > max_norm {
            let scale = max_norm / (total + 1e-6);
            tch::no_grad(|| {
                for mut g in grads {
                    let _ = g.g_mul_scalar_(scale);
                }
            });
        }
        total
    }

    /// One Adam update from the current gradients.
    pub fn step(&mut self) {
        self.step += 1;
        let t = self.step as i32;
        let bc1 = 1.0 - BETA1.powi(t);
        let bc2 = 1.0 - BETA2.powi(t);
        let step_size = self.lr / bc1;
        let bc2_sqrt = bc2.sqrt();
        tch::no_grad(|| {
            for ((p, m), v) in self.params.iter_mut().zip(&mut self.m).zip(&mut self.v) {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let _ = m.lerp_(&g, 1.0 - BETA1);
                let _ = v.lerp_(&(&g * &g), 1.0 - BETA2);
                let denom = v.sqrt() / bc2_sqrt + EPS;
                let _ = p.g_sub_(&(&*m / denom * step_size));
            }
        });
    }

    /// Copies of the moments and the step, for a checkpoint.
    pub fn state(&self) -> AdamState {
        let named = |ts: &[Tensor]| {
            self.names
                .iter()
                .cloned()
                .zip(ts.iter().map(Tensor::copy))
                .collect()
        };
        AdamState {
            step: self.step,
            m: named(&self.m),
            v: named(&self.v),
        }
    }

    /// Restores moments and step saved by [`Adam::state`]; every parameter must be present
    /// with its shape.
    pub fn load_state(&mut self, state: &AdamState) -> Result<(), String> {
        for (which, dst, src) in [("m", &mut self.m, &state.m), ("v", &mut self.v, &state.v)] {
            for (name, d) in self.names.iter().zip(dst.iter_mut()) {
                let s = src
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, t)| t)
                    .ok_or_else(|| format!("adam {which} for {name} missing"))?;
                if s.size() != d.size() {
                    return Err(format!(
                        "adam {which} for {name}: shape {:?}, want {:?}",
                        s.size(),
                        d.size()
                    ));
                }
                tch::no_grad(|| d.copy_(s));
            }
        }
        self.step = state.step;
        Ok(())
    }
}

/// What a `plateau` schedule has learnt from the validation losses so far; all a checkpoint
/// needs to continue the schedule exactly (the other schedules are functions of the step).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScheduleState {
    /// The rate after the cuts so far; `None` before the first cut (the config's rate).
    pub plateau_lr: Option<f64>,
    /// The best validation loss seen; `None` before the first finite one.
    pub best_val_loss: Option<f64>,
    /// Epochs in a row since the best that did not beat it.
    pub bad_epochs: u32,
}

/// The learning rate of every update of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct LrScheduler {
    /// Which schedule.
    kind: LrSchedule,
    /// The peak rate (`learning_rate`).
    base: f64,
    /// The floor (`lr_min`).
    min: f64,
    /// Updates of linear warm-up.
    warmup: i64,
    /// Updates the run plans in all (`epochs` x batches per epoch): where `cosine` ends.
    total: i64,
    /// `plateau`: multiplier per cut and epochs of patience.
    factor: f64,
    /// `plateau`: epochs without a new best before a cut.
    patience: u32,
    /// The plateau state (checkpointed).
    state: ScheduleState,
}

impl LrScheduler {
    /// The schedule of `cfg` for a run of `total_steps` updates, starting from `state`
    /// (default for a new run, the checkpoint's on resume).
    pub fn new(cfg: &TrainConfig, total_steps: i64, state: ScheduleState) -> Self {
        LrScheduler {
            kind: cfg.lr_schedule,
            base: cfg.learning_rate,
            min: cfg.lr_min,
            warmup: i64::from(cfg.warmup_steps),
            total: total_steps.max(1),
            factor: cfg.plateau_factor,
            patience: cfg.plateau_patience,
            state,
        }
    }

    /// The rate of update `step` (1-based: the first update is step 1).
    pub fn lr_at(&self, step: i64) -> f64 {
        let scheduled = match self.kind {
            LrSchedule::Constant => self.base,
            LrSchedule::Plateau => self.state.plateau_lr.unwrap_or(self.base),
            LrSchedule::Cosine => {
                // The decay starts after the warm-up and reaches `min` at the last update.
                let span = (self.total - self.warmup).max(1) as f64;
                let p = ((step - self.warmup).max(0) as f64 / span).min(1.0);
                self.min + (self.base - self.min) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
            }
        };
        if step <= self.warmup {
            scheduled * step.max(1) as f64 / self.warmup as f64
        } else {
            scheduled
        }
    }

    /// Takes an epoch's validation loss into account (`plateau` only; a NaN loss, from a
    /// validation text too short to measure, changes nothing). Returns whether the rate was
    /// cut.
    pub fn end_epoch(&mut self, val_loss: f64) -> bool {
        if self.kind != LrSchedule::Plateau || !val_loss.is_finite() {
            return false;
        }
        let s = &mut self.state;
        if s.best_val_loss.is_none_or(|b| val_loss < b) {
            s.best_val_loss = Some(val_loss);
            s.bad_epochs = 0;
            return false;
        }
        s.bad_epochs += 1;
        if s.bad_epochs <= self.patience {
            return false;
        }
        let now = s.plateau_lr.unwrap_or(self.base);
        let cut = (now * self.factor).max(self.min);
        s.bad_epochs = 0;
        if cut < now {
            s.plateau_lr = Some(cut);
            true
        } else {
            false
        }
    }

    /// The state to checkpoint.
    pub fn state(&self) -> &ScheduleState {
        &self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(kind: LrSchedule, warmup: u32) -> TrainConfig {
        TrainConfig {
            learning_rate: 0.01,
            lr_min: 0.001,
            lr_schedule: kind,
            warmup_steps: warmup,
            plateau_factor: 0.5,
            plateau_patience: 1,
            ..Default::default()
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn constant_is_constant_after_a_linear_warmup() {
        let s = LrScheduler::new(&cfg(LrSchedule::Constant, 4), 100, ScheduleState::default());
        let got: Vec<f64> = (1..=6).map(|t| s.lr_at(t)).collect();
        let want = [0.0025, 0.005, 0.0075, 0.01, 0.01, 0.01];
        assert!(got.iter().zip(want).all(|(a, b)| close(*a, b)), "{got:?}");
        let s = LrScheduler::new(&cfg(LrSchedule::Constant, 0), 100, ScheduleState::default());
        assert!(close(s.lr_at(1), 0.01) && close(s.lr_at(100), 0.01));
    }

    #[test]
    fn cosine_goes_from_the_peak_to_the_floor_over_the_planned_steps() {
        // 10 warm-up steps, then 100 steps of decay.
        let s = LrScheduler::new(&cfg(LrSchedule::Cosine, 10), 110, ScheduleState::default());
        assert!(close(s.lr_at(5), 0.005));
        assert!(close(s.lr_at(10), 0.01), "the warm-up ends at the peak");
        assert!(s.lr_at(11) < 0.01 && s.lr_at(11) > 0.0099);
        // Half way: the mean of peak and floor.
        assert!(close(s.lr_at(60), 0.0055), "{}", s.lr_at(60));
        assert!(
            close(s.lr_at(110), 0.001),
            "the last planned update is at the floor"
        );
        assert!(
            close(s.lr_at(500), 0.001),
            "past the plan it stays at the floor"
        );
        let mut prev = f64::INFINITY;
        for t in 10..=110 {
            assert!(s.lr_at(t) <= prev);
            prev = s.lr_at(t);
        }
    }

    #[test]
    fn plateau_cuts_after_patience_and_stops_at_the_floor() {
        let mut s = LrScheduler::new(&cfg(LrSchedule::Plateau, 0), 100, ScheduleState::default());
        assert!(!s.end_epoch(2.0)); // best
        assert!(!s.end_epoch(1.5)); // best
        assert!(!s.end_epoch(1.6)); // 1 bad epoch: within patience
        assert!(close(s.lr_at(50), 0.01));
        assert!(s.end_epoch(1.55)); // 2 bad epochs: cut
        assert!(close(s.lr_at(50), 0.005));
        assert!(!s.end_epoch(f64::NAN), "a NaN loss changes nothing");
        assert!(!s.end_epoch(1.4)); // new best resets the count
        assert_eq!(s.state().bad_epochs, 0);
        assert_eq!(s.state().best_val_loss, Some(1.4));
        for _ in 0..20 {
            s.end_epoch(1.9);
        }
        assert!(
            close(s.lr_at(50), 0.001),
            "never below lr_min: {}",
            s.lr_at(50)
        );
        // The state alone continues the schedule.
        let resumed = LrScheduler::new(&cfg(LrSchedule::Plateau, 0), 100, s.state().clone());
        assert_eq!(resumed, s);
        // Other schedules ignore the losses.
        let mut c = LrScheduler::new(&cfg(LrSchedule::Constant, 0), 100, ScheduleState::default());
        for l in [1.0, 2.0, 3.0, 4.0] {
            assert!(!c.end_epoch(l));
        }
        assert!(close(c.lr_at(5), 0.01));
    }
}

//! Adam, written out over the model's named parameters so that its whole state (first and
//! second moments, step count) can be saved in a checkpoint and restored bit for bit; tch's
//! built-in optimizers keep that state inside libtorch where it cannot be read back.
//!
//! The update is PyTorch's `torch.optim.Adam` (no weight decay, no AMSGrad) with Keras's
//! default epsilon 1e-7 (the reference experiment's). Gradient clipping rescales all
//! gradients together when their global L2 norm exceeds the limit (`clip_grad_norm_`);
//! note that Keras's `clipnorm` clips each tensor separately.

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

//! [`PoetModel`]: the stacked-LSTM character model of the reference experiment, with every
//! size and dropout rate taken from [`TrainConfig`]. It owns the weights (a tch `VarStore`)
//! and the forward pass; the training loop, the optimizer and all I/O live elsewhere.
//!
//! Shape: inputs (one-hot over the vocabulary, or a learned embedding when
//! `embedding > 0`) -> `layers` x LSTM(`units`) -> Dropout(`dropout`) -> Dense(vocab).
//! Initialisation follows Keras: Glorot-uniform input kernels, orthogonal recurrent kernels,
//! zero biases except the forget gate's (1.0), Glorot-uniform dense kernel.
//!
//! `cell = "gru"` swaps every LSTM layer for a GRU (PyTorch's `torch.gru` equations and gate
//! order r, z, n; 3 gates instead of 4, no cell state), initialised the same way but for the
//! forget-gate bias, which a GRU does not have. Dropout, weight-drop, the fused eval call and
//! the [`Stepper`] all work the same for both; the LSTM stays the reference. A GRU's [`State`]
//! carries `h` only (`c` is empty).
//!
//! Dropout, exactly:
//! - `dropout` on every LSTM layer's input is Keras's: one Bernoulli mask per sequence,
//!   shared by every time step and every gate (variational), scaled by `1/(1-p)`.
//! - `recurrent_dropout` is implemented as *weight-drop*: each LSTM call gets
//!   `w_hh * m` where `m` zeroes whole columns of the hidden-to-hidden matrix (one mask of
//!   `units` per layer per batch, scaled by `1/(1-p)`). Dropping column `j` of `w_hh` is the
//!   same as dropping unit `j` of `h_{t-1}` at every step, so this is Keras's variational
//!   recurrent dropout with the mask shared across the batch instead of drawn per sequence.
//!   Keeping the mask on the weights lets every layer run as one `Tensor::lstm` call (the
//!   fused cuDNN kernel on GPU, ATen's pre-projected loop on CPU); the cost is one
//!   `[4·units, units]` multiply per layer per batch, nothing per step. On GPU the weights
//!   reach cuDNN as one flat buffer ([`kernel_params`]), the copy cuDNN would otherwise make
//!   itself, with a warning, on every call.
//! - `dropout` before the dense layer is plain element-wise dropout, as Keras's `Dropout`.
//!
//! In eval mode (validation, sampling) no dropout is applied.

use poet_core::config::{Cell, Formulation, TrainConfig};
use tch::nn::{self, Init};
use tch::{Device, Kind, Tensor};

/// The weights of one recurrent layer, in PyTorch's layout and gate order: LSTM (i, f, g, o),
/// `G = 4`; GRU (r, z, n), `G = 3`.
#[derive(Debug)]
struct RnnLayer {
    /// `[G·H, I]` input-to-hidden kernel.
    w_ih: Tensor,
    /// `[G·H, H]` hidden-to-hidden kernel; the target of weight-drop.
    w_hh: Tensor,
    /// `[G·H]` input bias (an LSTM's forget gate slice starts at 1.0).
    b_ih: Tensor,
    /// `[G·H]` recurrent bias (zero at init; kept for the kernel's signature and PyTorch
    /// parity, and a GRU needs it apart: its `n` gate scales it by `r`).
    b_hh: Tensor,
}

/// Recurrent state of every layer: `h` and, for an LSTM, `c`, each `[1, batch, units]` per
/// layer.
#[derive(Debug)]
pub struct State {
    /// Hidden outputs, one per layer.
    pub h: Vec<Tensor>,
    /// Cell states, one per layer; empty for a GRU.
    pub c: Vec<Tensor>,
}

/// The character LSTM of one run.
#[derive(Debug)]
pub struct PoetModel {
    /// Owns every trainable tensor; the optimizer and checkpoints go through it.
    vs: nn::VarStore,
    /// Input embedding `[vocab, embedding]`, when the config asks for one.
    embedding: Option<Tensor>,
    /// The recurrent cell of every layer.
    cell: Cell,
    /// The stacked layers, bottom first.
    layers: Vec<RnnLayer>,
    /// Dense kernel `[vocab, units]`.
    dense_w: Tensor,
    /// Dense bias `[vocab]`.
    dense_b: Tensor,
    /// Vocabulary size: the one-hot width and the output width.
    vocab: i64,
    /// Hidden units per layer.
    units: i64,
    /// Input dropout and pre-dense dropout rate.
    dropout: f64,
    /// Recurrent (weight-drop) rate.
    recurrent_dropout: f64,
    /// Which positions the training loss reads; decides what `forward_logits` returns.
    formulation: Formulation,
}

fn glorot_uniform(fan_in: i64, fan_out: i64) -> Init {
    let limit = (6.0 / (fan_in + fan_out) as f64).sqrt();
    Init::Uniform {
        lo: -limit,
        up: limit,
    }
}

impl PoetModel {
    /// A freshly initialised model for `cfg` over `vocab` characters. Initialisation draws
    /// from torch's global generator: seed it (`tch::manual_seed`) first for a reproducible
    /// start.
    pub fn new(cfg: &TrainConfig, vocab: usize, device: Device) -> Self {
        Self::build(cfg, vocab, device, true)
    }

    /// A model of the right shape with zero weights, for loading a checkpoint into. It draws
    /// nothing from torch's generator, so loading a model (e.g. for a generation job) beside
    /// a running trainer leaves the trainer's random stream untouched.
    pub fn zeroed(cfg: &TrainConfig, vocab: usize, device: Device) -> Self {
        Self::build(cfg, vocab, device, false)
    }

    fn build(cfg: &TrainConfig, vocab: usize, device: Device, random: bool) -> Self {
        let init = |i: Init| if random { i } else { Init::Const(0.0) };
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let v = vocab as i64;
        let h = i64::from(cfg.units);
        let e = i64::from(cfg.embedding);
        let embedding = (e > 0).then(|| {
            root.var(
                "embedding",
                &[v, e],
                init(Init::Uniform {
                    lo: -0.05,
                    up: 0.05,
                }),
            )
        });
        let gates = gate_count(cfg.cell);
        let mut layers = Vec::new();
        for l in 0..cfg.layers {
            // Parameter names keep the `lstm.` prefix for both cells: checkpoints and the
            // PyTorch reference know the stack by it, and the cell type is in the config.
            let p = &root / "lstm" / l;
            let input = if l > 0 {
                h
            } else if e > 0 {
                e
            } else {
                v
            };
            let g = gates * h;
            let w_ih = p.var("w_ih", &[g, input], init(glorot_uniform(input, g)));
            let w_hh = p.var("w_hh", &[g, h], init(Init::Orthogonal { gain: 1.0 }));
            let b_ih = p.var("b_ih", &[g], Init::Const(0.0));
            if cfg.cell == Cell::Lstm {
                tch::no_grad(|| {
                    let _ = b_ih.narrow(0, h, h).fill_(1.0);
                });
            }
            let b_hh = p.var("b_hh", &[g], Init::Const(0.0));
            layers.push(RnnLayer {
                w_ih,
                w_hh,
                b_ih,
                b_hh,
            });
        }
        let dense_w = (&root / "dense").var("weight", &[v, h], init(glorot_uniform(h, v)));
        let dense_b = (&root / "dense").var("bias", &[v], Init::Const(0.0));
        PoetModel {
            vs,
            embedding,
            cell: cfg.cell,
            layers,
            dense_w,
            dense_b,
            vocab: v,
            units: h,
            dropout: cfg.dropout,
            recurrent_dropout: cfg.recurrent_dropout,
            formulation: cfg.formulation,
        }
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// The recurrent cell of every layer.
    pub fn cell(&self) -> Cell {
        self.cell
    }

    /// Vocabulary size the model was built for.
    pub fn vocab_size(&self) -> usize {
        self.vocab as usize
    }

    /// Every trainable tensor with its stable name (`lstm.0.w_hh`, `dense.bias`, ...), sorted
    /// by name: the order the optimizer and checkpoints use.
    pub fn parameters(&self) -> Vec<(String, Tensor)> {
        let mut vars: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        vars
    }

    /// Total number of trainable scalars.
    pub fn parameter_count(&self) -> i64 {
        self.parameters()
            .iter()
            .map(|(_, t)| t.numel() as i64)
            .sum()
    }

    /// A zero state for `batch` sequences.
    pub fn zero_state(&self, batch: i64) -> State {
        let z = || Tensor::zeros([1, batch, self.units], (Kind::Float, self.device()));
        State {
            h: self.layers.iter().map(|_| z()).collect(),
            c: match self.cell {
                Cell::Lstm => self.layers.iter().map(|_| z()).collect(),
                Cell::Gru => Vec::new(),
            },
        }
    }

    /// Runs the LSTM stack over `inputs` (`[batch, time]` ids) from `state` (zero when
    /// `None`); returns the top layer's outputs `[batch, time, units]` and the final state.
    /// `train` turns every dropout on.
    pub fn forward(&self, inputs: &Tensor, state: Option<&State>, train: bool) -> (Tensor, State) {
        let (b, _t) = inputs.size2().expect("inputs are [batch, time]");
        let zero;
        let state = match state {
            Some(s) => s,
            None => {
                zero = self.zero_state(b);
                &zero
            }
        };
        let mut x = self.input(inputs);
        let mut hs = Vec::with_capacity(self.layers.len());
        let mut cs = Vec::with_capacity(self.layers.len());
        for (l, layer) in self.layers.iter().enumerate() {
            if train && self.dropout > 0.0 {
                let mask = variational_mask(&[b, 1, x.size()[2]], self.dropout, x.device());
                x = &x * &mask;
            }
            let w_hh = if train && self.recurrent_dropout > 0.0 {
                &layer.w_hh * variational_mask(&[1, self.units], self.recurrent_dropout, x.device())
            } else {
                layer.w_hh.shallow_clone()
            };
            let params = kernel_params(&[&layer.w_ih, &w_hh, &layer.b_ih, &layer.b_hh]);
            let params: Vec<&Tensor> = params.iter().collect();
            match self.cell {
                Cell::Lstm => {
                    let (out, h, c) = x.lstm(
                        &[&state.h[l], &state.c[l]],
                        &params,
                        true,
                        1,
                        0.0,
                        train,
                        false,
                        true,
                    );
                    x = out;
                    hs.push(h);
                    cs.push(c);
                }
                Cell::Gru => {
                    let (out, h) = x.gru(&state.h[l], &params, true, 1, 0.0, train, false, true);
                    x = out;
                    hs.push(h);
                }
            }
        }
        (x, State { h: hs, c: cs })
    }

    /// The bottom layer's input for `ids`: one-hot rows, or embedding rows.
    fn input(&self, ids: &Tensor) -> Tensor {
        match &self.embedding {
            Some(emb) => Tensor::embedding(emb, ids, -1, false, false),
            None => ids.one_hot(self.vocab).to_kind(Kind::Float),
        }
    }

    /// Eval-mode forward of every layer in one `Tensor::lstm` (or `gru`) call: without dropout the
    /// layers need nothing between them, and one multi-layer call is what oneDNN (CPU) and
    /// cuDNN (GPU) run fastest at larger batches. Same results as `forward(.., false)` up to
    /// float rounding.
    pub fn forward_eval_fused(&self, inputs: &Tensor, state: &State) -> (Tensor, State) {
        let n = self.layers.len() as i64;
        let h = Tensor::cat(&state.h, 0);
        let params: Vec<&Tensor> = self
            .layers
            .iter()
            .flat_map(|l| [&l.w_ih, &l.w_hh, &l.b_ih, &l.b_hh])
            .collect();
        let params = kernel_params(&params);
        let params: Vec<&Tensor> = params.iter().collect();
        let x = self.input(inputs);
        match self.cell {
            Cell::Lstm => {
                let c = Tensor::cat(&state.c, 0);
                let (out, h, c) = x.lstm(&[&h, &c], &params, true, n, 0.0, false, false, true);
                (
                    out,
                    State {
                        h: h.chunk(n, 0),
                        c: c.chunk(n, 0),
                    },
                )
            }
            Cell::Gru => {
                let (out, h) = x.gru(&h, &params, true, n, 0.0, false, false, true);
                (
                    out,
                    State {
                        h: h.chunk(n, 0),
                        c: Vec::new(),
                    },
                )
            }
        }
    }

    /// Dropout (in train mode) then the dense layer: unnormalised next-char scores
    /// `[..., vocab]` for hidden outputs `[..., units]`.
    pub fn logits(&self, hidden: &Tensor, train: bool) -> Tensor {
        let hidden = hidden.dropout(self.dropout, train && self.dropout > 0.0);
        hidden.linear(&self.dense_w, Some(&self.dense_b))
    }

    /// Scores at the positions the formulation trains on: `[batch, vocab]` for the last
    /// position (`keras`) or `[batch, time, vocab]` for every position (`seq`). Only the
    /// positions used go through the dense layer.
    pub fn forward_logits(&self, inputs: &Tensor, train: bool) -> Tensor {
        let (out, _) = self.forward(inputs, None, train);
        match self.formulation {
            Formulation::Keras => self.logits(&out.select(1, -1), train),
            Formulation::Seq => self.logits(&out, train),
        }
    }

    /// Mean cross-entropy (nats per predicted char) of `inputs` against `targets` shaped as
    /// [`crate::data::Batch`] makes them.
    pub fn loss(&self, inputs: &Tensor, targets: &Tensor, train: bool) -> Tensor {
        let logits = self.forward_logits(inputs, train);
        logits
            .view([-1, self.vocab])
            .log_softmax(-1, Kind::Float)
            .nll_loss(&targets.view([-1]))
    }

    /// Replaces the value of every parameter named in `tensors` (checkpoint restore); each
    /// model parameter must be present with the same shape.
    pub fn load(&mut self, tensors: &[(String, Tensor)]) -> Result<(), String> {
        let by_name: std::collections::HashMap<&str, &Tensor> =
            tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        tch::no_grad(|| {
            for (name, mut var) in self.parameters() {
                let src = by_name
                    .get(name.as_str())
                    .ok_or_else(|| format!("missing tensor {name}"))?;
                if src.size() != var.size() {
                    return Err(format!(
                        "tensor {name}: shape {:?}, model wants {:?}",
                        src.size(),
                        var.size()
                    ));
                }
                var.copy_(src);
            }
            Ok(())
        })
    }
}

/// The model laid out for stepping one character at a time in eval mode (sampling): per
/// layer one pre-transposed `[I+H, 4H]` kernel so each step is one matmul, and for the
/// bottom layer the input kernel folded into a `[vocab, 4H]` lookup table (a one-hot or
/// embedded input times `w_ih` is a row of that table), so no one-hot is ever built. The math
/// is the LSTM's; results equal [`PoetModel::forward`] up to float rounding.
///
/// For a GRU the input and hidden halves stay apart (its `n` gate scales only the hidden
/// half, bias included, by `r`): the bottom table holds `x·w_ih + b_ih` (`[vocab, 3H]`),
/// each upper layer keeps `w_ih^T`, `w_hh^T` and both biases, so a step is two matmuls per
/// layer.
#[derive(Debug)]
pub struct Stepper {
    /// The recurrent cell.
    cell: Cell,
    /// Bottom layer: input contribution per character id, `[vocab, G·H]`, biases included
    /// (the LSTM's both, the GRU's input bias only).
    table: Tensor,
    /// Bottom layer: `w_hh^T`, `[H, G·H]`.
    w_hh0_t: Tensor,
    /// Bottom layer, GRU only: `b_hh` (`[3H]`; undefined for an LSTM, which folds it into
    /// `table`).
    b_hh0: Option<Tensor>,
    /// Upper layers. LSTM: `[w_ih | w_hh]^T`, `[2H, 4H]`, and the summed biases `[4H]`.
    /// GRU: see `upper_gru`.
    upper: Vec<(Tensor, Tensor)>,
    /// Upper layers of a GRU: `w_ih^T`, `b_ih`, `w_hh^T`, `b_hh`.
    upper_gru: Vec<[Tensor; 4]>,
    /// Dense `weight^T`, `[H, vocab]`.
    dense_t: Tensor,
    /// Dense bias.
    dense_b: Tensor,
}

impl PoetModel {
    /// Copies the weights into the [`Stepper`] layout (once per sampling call).
    pub fn stepper(&self) -> Stepper {
        tch::no_grad(|| {
            let l0 = &self.layers[0];
            let input_rows = match &self.embedding {
                Some(emb) => emb.matmul(&l0.w_ih.tr()),
                None => l0.w_ih.tr(),
            };
            let gru = self.cell == Cell::Gru;
            let table = if gru {
                (input_rows + &l0.b_ih).contiguous()
            } else {
                (input_rows + &l0.b_ih + &l0.b_hh).contiguous()
            };
            let (upper, upper_gru) = if gru {
                let t = |w: &Tensor| w.tr().contiguous();
                let layers = self.layers[1..]
                    .iter()
                    .map(|l| [t(&l.w_ih), l.b_ih.copy(), t(&l.w_hh), l.b_hh.copy()])
                    .collect();
                (Vec::new(), layers)
            } else {
                let layers = self.layers[1..]
                    .iter()
                    .map(|l| {
                        (
                            Tensor::cat(&[&l.w_ih, &l.w_hh], 1).tr().contiguous(),
                            &l.b_ih + &l.b_hh,
                        )
                    })
                    .collect();
                (layers, Vec::new())
            };
            Stepper {
                cell: self.cell,
                table,
                w_hh0_t: l0.w_hh.tr().contiguous(),
                b_hh0: gru.then(|| l0.b_hh.copy()),
                upper,
                upper_gru,
                dense_t: self.dense_w.tr().contiguous(),
                dense_b: self.dense_b.copy(),
            }
        })
    }
}

impl Stepper {
    /// Feeds one character per row (`ids`: `[batch]`), updating `state` in place; returns
    /// the next-character scores `[batch, vocab]`. Call under `tch::no_grad`.
    pub fn step(&self, ids: &Tensor, state: &mut State) -> Tensor {
        if self.cell == Cell::Gru {
            return self.step_gru(ids, state);
        }
        let h0 = state.h[0].squeeze_dim(0);
        let gates = self.table.index_select(0, ids).addmm(&h0, &self.w_hh0_t);
        let mut x = cell(&gates, &mut state.h[0], &mut state.c[0]);
        for (l, (w, b)) in self.upper.iter().enumerate() {
            let h = state.h[l + 1].squeeze_dim(0);
            let gates = b.addmm(&Tensor::cat(&[&x, &h], 1), w);
            x = cell(&gates, &mut state.h[l + 1], &mut state.c[l + 1]);
        }
        self.dense_b.addmm(&x, &self.dense_t)
    }
}

impl Stepper {
    fn step_gru(&self, ids: &Tensor, state: &mut State) -> Tensor {
        let b_hh0 = self.b_hh0.as_ref().expect("a GRU stepper has b_hh0");
        let h0 = state.h[0].squeeze_dim(0);
        let xi = self.table.index_select(0, ids);
        let hh = b_hh0.addmm(&h0, &self.w_hh0_t);
        let mut x = gru_cell(&xi, &hh, &mut state.h[0]);
        for (l, [w_ih_t, b_ih, w_hh_t, b_hh]) in self.upper_gru.iter().enumerate() {
            let h = state.h[l + 1].squeeze_dim(0);
            let xi = b_ih.addmm(&x, w_ih_t);
            let hh = b_hh.addmm(&h, w_hh_t);
            x = gru_cell(&xi, &hh, &mut state.h[l + 1]);
        }
        self.dense_b.addmm(&x, &self.dense_t)
    }
}

/// Gates per cell: the row blocks of `w_ih`, `w_hh` and the biases.
fn gate_count(cell: Cell) -> i64 {
    match cell {
        Cell::Lstm => 4,
        Cell::Gru => 3,
    }
}

/// One GRU update (PyTorch's equations) from the input part `xi = x·w_ih + b_ih` and the
/// hidden part `hh = h·w_hh + b_hh` (`[batch, 3H]` each, order r, z, n); stores the new `h`
/// (`[1, batch, H]`) and returns it as `[batch, H]`.
fn gru_cell(xi: &Tensor, hh: &Tensor, h: &mut Tensor) -> Tensor {
    let x = xi.chunk(3, 1);
    let y = hh.chunk(3, 1);
    let r = (&x[0] + &y[0]).sigmoid();
    let z = (&x[1] + &y[1]).sigmoid();
    let n = (&x[2] + r * &y[2]).tanh();
    let h_old = h.squeeze_dim(0);
    // h' = (1 - z) * n + z * h
    let h_new = &n + z * (h_old - &n);
    *h = h_new.unsqueeze(0);
    h_new
}

/// One LSTM cell update from pre-activation `gates` (`[batch, 4H]`, order i, f, g, o); stores
/// the new `h`, `c` (`[1, batch, H]`) and returns `h` as `[batch, H]`.
fn cell(gates: &Tensor, h: &mut Tensor, c: &mut Tensor) -> Tensor {
    let g = gates.chunk(4, 1);
    let c_new = g[1].sigmoid() * c.squeeze_dim(0) + g[0].sigmoid() * g[2].tanh();
    let h_new = g[3].sigmoid() * c_new.tanh();
    *c = c_new.unsqueeze(0);
    *h = h_new.unsqueeze(0);
    h_new
}

/// The LSTM parameters (`w_ih, w_hh, b_ih, b_hh` per layer, in order) as the device's kernel
/// wants them. On CUDA: views into one flat buffer, which is cuDNN's weight layout. Handed
/// separate tensors, cuDNN copies them into such a buffer on every call anyway and logs
/// "RNN module weights are not part of single contiguous chunk of memory" each time (in C++
/// libtorch nothing filters repeats; PyTorch's `nn.LSTM` avoids it with
/// `flatten_parameters`, which weight-drop's masked `w_hh` rules out). The `cat` here is
/// that same copy, done in autograd so gradients reach the separate weights. If cuDNN ever
/// wanted another layout, its own pointer check would refuse the buffer and fall back to
/// copying: slower and noisy, never wrong. On the CPU: the tensors as they are (shallow).
pub fn kernel_params(params: &[&Tensor]) -> Vec<Tensor> {
    match params.first().map(|p| p.device()) {
        Some(Device::Cuda(_)) => flat_views(params),
        _ => params.iter().map(|p| p.shallow_clone()).collect(),
    }
}

/// `params` copied into one contiguous buffer, in order, and returned as views of it with
/// their own shapes (differentiable: gradients of the views reach `params`).
pub fn flat_views(params: &[&Tensor]) -> Vec<Tensor> {
    let flat = Tensor::cat(
        &params.iter().map(|p| p.reshape([-1])).collect::<Vec<_>>(),
        0,
    );
    let mut offset = 0;
    params
        .iter()
        .map(|p| {
            let n = p.numel() as i64;
            let view = flat.narrow(0, offset, n).view(p.size().as_slice());
            offset += n;
            view
        })
        .collect()
}

/// A `{0, 1/(1-p)}` mask of `shape`, drawn from torch's global generator.
fn variational_mask(shape: &[i64], p: f64, device: Device) -> Tensor {
    Tensor::empty(shape, (Kind::Float, device)).bernoulli_float_(1.0 - p) / (1.0 - p)
}

//! PoetModel shapes and dropout behaviour.

use crate::helpers::{tiny, torch_rng};
use poet_core::config::{Cell, Formulation};
use poet_worker::model::PoetModel;
use tch::{Device, Kind, Tensor};

fn ids(b: i64, t: i64, vocab: i64) -> Tensor {
    Tensor::arange(b * t, (Kind::Int64, Device::Cpu))
        .remainder(vocab)
        .view([b, t])
}

#[test]
fn output_shapes_follow_the_formulation() {
    let _rng = torch_rng();
    for (formulation, embedding) in [
        (Formulation::Keras, 0),
        (Formulation::Seq, 0),
        (Formulation::Seq, 5),
    ] {
        let cfg = poet_core::config::TrainConfig {
            embedding,
            ..tiny(formulation)
        };
        let m = PoetModel::new(&cfg, 11, Device::Cpu);
        let x = ids(3, 7, 11);
        let (h, state) = m.forward(&x, None, true);
        assert_eq!(h.size(), vec![3, 7, 16]);
        assert_eq!(state.h.len(), 2);
        assert_eq!(state.c[1].size(), vec![1, 3, 16]);
        let logits = m.forward_logits(&x, false);
        match formulation {
            Formulation::Keras => assert_eq!(logits.size(), vec![3, 11]),
            Formulation::Seq => assert_eq!(logits.size(), vec![3, 7, 11]),
        }
    }
}

#[test]
fn forget_gate_bias_starts_at_one() {
    let _rng = torch_rng();
    let m = PoetModel::new(&tiny(Formulation::Seq), 11, Device::Cpu);
    let params = m.parameters();
    let b = &params.iter().find(|(n, _)| n == "lstm.0.b_ih").unwrap().1;
    let v = Vec::<f32>::try_from(b).unwrap();
    assert!(
        v[..16].iter().all(|&x| x == 0.0)
            && v[16..32].iter().all(|&x| x == 1.0)
            && v[32..].iter().all(|&x| x == 0.0)
    );
}

#[test]
fn recurrent_dropout_changes_train_forward_only() {
    let _rng = torch_rng();
    let cfg = poet_core::config::TrainConfig {
        dropout: 0.0,
        recurrent_dropout: 0.5,
        ..tiny(Formulation::Seq)
    };
    tch::manual_seed(1);
    let m = PoetModel::new(&cfg, 11, Device::Cpu);
    let x = ids(2, 9, 11);
    let eval_a = m.forward_logits(&x, false);
    let eval_b = m.forward_logits(&x, false);
    assert!(eval_a.equal(&eval_b), "eval mode must be deterministic");
    tch::manual_seed(2);
    let train = m.forward_logits(&x, true);
    assert!(
        !train.allclose(&eval_a, 1e-6, 1e-6, false),
        "recurrent dropout must change the train-mode forward"
    );
    // The first step sees a zero h_{t-1}, so dropping recurrent weights cannot change it:
    // the difference is in the recurrence, not on the inputs.
    assert!(
        train
            .select(1, 0)
            .allclose(&eval_a.select(1, 0), 1e-6, 1e-6, false)
    );

    let off = poet_core::config::TrainConfig {
        dropout: 0.0,
        recurrent_dropout: 0.0,
        ..cfg
    };
    let m = PoetModel::new(&off, 11, Device::Cpu);
    assert!(
        m.forward_logits(&x, true)
            .allclose(&m.forward_logits(&x, false), 1e-6, 1e-6, false)
    );
}

#[test]
fn stepper_matches_the_full_forward() {
    let _rng = torch_rng();
    for (embedding, cell) in [
        (0, Cell::Lstm),
        (6, Cell::Lstm),
        (0, Cell::Gru),
        (6, Cell::Gru),
    ] {
        let cfg = poet_core::config::TrainConfig {
            embedding,
            layers: 3,
            cell,
            ..tiny(Formulation::Seq)
        };
        tch::manual_seed(3);
        let m = PoetModel::new(&cfg, 11, Device::Cpu);
        let x = ids(2, 6, 11);
        let (full, _) = m.forward(&x, None, false);
        let want = m.logits(&full, false);
        let stepper = m.stepper();
        let mut state = m.zero_state(2);
        tch::no_grad(|| {
            for t in 0..6 {
                let got = stepper.step(&x.select(1, t), &mut state);
                assert!(
                    got.allclose(&want.select(1, t), 1e-5, 1e-5, false),
                    "step {t} embedding {embedding} {cell:?}"
                );
            }
        });
    }
}

#[test]
fn fused_eval_step_matches_the_full_forward() {
    let _rng = torch_rng();
    for cell in [Cell::Lstm, Cell::Gru] {
        let cfg = poet_core::config::TrainConfig {
            layers: 3,
            cell,
            ..tiny(Formulation::Seq)
        };
        tch::manual_seed(4);
        let m = PoetModel::new(&cfg, 11, Device::Cpu);
        let x = ids(9, 5, 11);
        let (full, _) = m.forward(&x, None, false);
        let mut state = m.zero_state(9);
        tch::no_grad(|| {
            for t in 0..5 {
                let (h, s) = m.forward_eval_fused(&x.narrow(1, t, 1), &state);
                state = s;
                assert!(
                    h.select(1, 0)
                        .allclose(&full.select(1, t), 1e-5, 1e-5, false),
                    "step {t} {cell:?}"
                );
            }
        });
    }
}

#[test]
fn gru_has_three_gates_and_no_cell_state() {
    let _rng = torch_rng();
    let cfg = poet_core::config::TrainConfig {
        cell: Cell::Gru,
        ..tiny(Formulation::Seq)
    };
    let lstm = PoetModel::new(&tiny(Formulation::Seq), 11, Device::Cpu);
    let gru = PoetModel::new(&cfg, 11, Device::Cpu);
    assert_eq!(gru.cell(), Cell::Gru);
    let shape = |m: &PoetModel, name: &str| {
        m.parameters()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.size())
            .unwrap()
    };
    assert_eq!(shape(&gru, "lstm.1.w_hh"), vec![48, 16]);
    assert_eq!(shape(&lstm, "lstm.1.w_hh"), vec![64, 16]);
    // No forget-gate bias to start at one: every GRU bias starts at zero.
    let b: f64 = gru
        .parameters()
        .iter()
        .filter(|(n, _)| n.contains(".b_"))
        .map(|(_, t)| t.abs().sum(Kind::Float).double_value(&[]))
        .sum();
    assert_eq!(b, 0.0);
    let s = gru.zero_state(3);
    assert_eq!((s.h.len(), s.c.len()), (2, 0));
    let (out, s) = gru.forward(&ids(3, 4, 11), None, true);
    assert_eq!(out.size(), vec![3, 4, 16]);
    assert_eq!((s.h.len(), s.c.len()), (2, 0));
}

#[test]
fn flat_lstm_params_are_one_buffer_with_the_same_results_and_gradients() {
    let _rng = torch_rng();
    tch::manual_seed(5);
    let (i, h, layers) = (7, 5, 2);
    let params: Vec<Tensor> = (0..layers)
        .flat_map(|l| {
            let input = if l == 0 { i } else { h };
            [
                Tensor::randn([4 * h, input], (Kind::Float, Device::Cpu)),
                Tensor::randn([4 * h, h], (Kind::Float, Device::Cpu)),
                Tensor::randn([4 * h], (Kind::Float, Device::Cpu)),
                Tensor::randn([4 * h], (Kind::Float, Device::Cpu)),
            ]
        })
        .map(|p| p.set_requires_grad(true))
        .collect();
    let refs: Vec<&Tensor> = params.iter().collect();
    let x = Tensor::randn([3, 4, i], (Kind::Float, Device::Cpu));
    let zero = Tensor::zeros([layers, 3, h], (Kind::Float, Device::Cpu));
    let run = |ps: &[&Tensor]| {
        for p in &params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
        let (out, _, _) = x.lstm(&[&zero, &zero], ps, true, layers, 0.0, true, false, true);
        out.square().sum(Kind::Float).backward();
        let grads: Vec<Tensor> = params.iter().map(|p| p.grad().copy()).collect();
        (out.detach(), grads)
    };

    let (want, want_grads) = run(&refs);
    let flat = poet_worker::model::flat_views(&refs);
    // One buffer, in order, no gaps: the layout cuDNN checks for (by data pointer).
    for (a, b) in flat.iter().zip(&flat[1..]) {
        assert_eq!(b.data_ptr() as usize, a.data_ptr() as usize + a.numel() * 4);
    }
    for (v, p) in flat.iter().zip(&params) {
        assert_eq!(v.size(), p.size());
    }
    let (got, got_grads) = run(&flat.iter().collect::<Vec<_>>());
    assert!(got.equal(&want));
    for (g, w) in got_grads.iter().zip(&want_grads) {
        assert!(g.equal(w), "gradients reach the separate weights unchanged");
    }
    // On the CPU the kernel takes the tensors as they are: no copy.
    for (k, p) in poet_worker::model::kernel_params(&refs).iter().zip(&params) {
        assert_eq!(k.data_ptr(), p.data_ptr());
    }
}

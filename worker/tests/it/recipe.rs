//! The training recipe: learning-rate schedules (and their exact resume) and the GRU cell.

use crate::helpers::{run, texts, tiny, torch_rng};
use poet_core::config::{Cell, Formulation, LrSchedule, TrainConfig};
use poet_worker::checkpoint::Checkpoint;
use poet_worker::sample::{SampleMode, SampleRequest, Sampling, sample};
use poet_worker::train::Trainer;
use std::ops::ControlFlow;
use std::sync::atomic::AtomicBool;
use tch::Device;

/// Trains `cfg` straight through, and again as 2 epochs + resume from the checkpoint; the
/// second half must match bit for bit (losses, learning rates, weights, Adam moments).
fn assert_resume_is_exact(cfg: TrainConfig) {
    let (train, val) = texts();
    let mut straight = Trainer::new(cfg.clone(), &train, &val, Device::Cpu).unwrap();
    let all = run(&mut straight);
    let half = TrainConfig {
        epochs: 2,
        ..cfg.clone()
    };
    // The first leg plans for the whole run, as a run resumed under the same config does.
    let mut first = Trainer::new(cfg.clone(), &train, &val, Device::Cpu).unwrap();
    let mut bytes = Vec::new();
    first
        .run(&AtomicBool::new(false), &mut |_| {}, &mut |r| {
            bytes = r.checkpoint;
            if r.epoch == half.epochs {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    let ckpt = Checkpoint::from_bytes(&bytes).unwrap();
    assert_eq!(ckpt.meta.epoch, 2);
    let mut resumed = Trainer::resume(cfg.clone(), &ckpt, &train, &val, Device::Cpu).unwrap();
    let rest = run(&mut resumed);
    assert_eq!(rest.len(), all.len() - 2);
    for (a, b) in all[2..].iter().zip(&rest) {
        assert_eq!(a.lr.to_bits(), b.lr.to_bits(), "epoch {} lr", a.epoch);
        assert_eq!(
            a.train_loss.to_bits(),
            b.train_loss.to_bits(),
            "epoch {}",
            a.epoch
        );
        assert_eq!(
            a.val_loss.to_bits(),
            b.val_loss.to_bits(),
            "epoch {}",
            a.epoch
        );
    }
    let (a, b) = (straight.checkpoint(), resumed.checkpoint());
    assert_eq!(a.meta.schedule, b.meta.schedule);
    for (x, y) in a.weights.iter().zip(&b.weights) {
        assert!(
            x.1.equal(&y.1),
            "{:?}: weight {} differs",
            cfg.lr_schedule,
            x.0
        );
    }
    for (x, y) in a.adam.m.iter().zip(&b.adam.m) {
        assert!(
            x.1.equal(&y.1),
            "{:?}: adam m {} differs",
            cfg.lr_schedule,
            x.0
        );
    }
}

#[test]
fn resume_mid_schedule_is_bit_exact() {
    let _rng = torch_rng();
    // Cosine with a warm-up that spans the resume point (the tiny corpus has a few batches
    // per epoch), and plateau with a patience of 0 so that cuts happen within 4 epochs.
    let cosine = TrainConfig {
        lr_schedule: LrSchedule::Cosine,
        warmup_steps: 12,
        lr_min: 0.001,
        ..tiny(Formulation::Seq)
    };
    assert_resume_is_exact(cosine);
    let plateau = TrainConfig {
        lr_schedule: LrSchedule::Plateau,
        learning_rate: 0.05,
        plateau_patience: 0,
        epochs: 5,
        ..tiny(Formulation::Keras)
    };
    assert_resume_is_exact(plateau);
    let gru = TrainConfig {
        cell: Cell::Gru,
        lr_schedule: LrSchedule::Cosine,
        ..tiny(Formulation::Seq)
    };
    assert_resume_is_exact(gru);
}

#[test]
fn schedules_set_the_rate_of_every_epoch() {
    let _rng = torch_rng();
    let (train, val) = texts();
    let cfg = TrainConfig {
        lr_schedule: LrSchedule::Cosine,
        lr_min: 0.001,
        epochs: 4,
        ..tiny(Formulation::Seq)
    };
    let r = run(&mut Trainer::new(cfg, &train, &val, Device::Cpu).unwrap());
    // The last update of the run is at the floor; rates fall epoch by epoch.
    assert!((r[3].lr - 0.001).abs() < 1e-12, "{}", r[3].lr);
    assert!(
        r.windows(2).all(|w| w[1].lr < w[0].lr),
        "{:?}",
        r.iter().map(|e| e.lr).collect::<Vec<_>>()
    );

    // A rate far too high makes the validation loss stall; plateau halves it each time.
    let cfg = TrainConfig {
        lr_schedule: LrSchedule::Plateau,
        learning_rate: 2.0,
        plateau_patience: 0,
        plateau_factor: 0.5,
        lr_min: 0.001,
        epochs: 8,
        ..tiny(Formulation::Seq)
    };
    let mut t = Trainer::new(cfg, &train, &val, Device::Cpu).unwrap();
    let r = run(&mut t);
    // With patience 0, every epoch that does not beat the best so far halves the next
    // epoch's rate (the floor is not reached in 8 epochs: 2 / 2^7 > 0.001).
    let mut best = f64::INFINITY;
    let mut cuts = 0;
    for w in r.windows(2) {
        let stalled = w[0].val_loss >= best;
        best = best.min(w[0].val_loss);
        let want = if stalled { w[0].lr * 0.5 } else { w[0].lr };
        cuts += usize::from(stalled);
        assert_eq!(
            w[1].lr,
            want,
            "epoch {}: {:?}",
            w[1].epoch,
            r.iter().map(|e| (e.val_loss, e.lr)).collect::<Vec<_>>()
        );
    }
    assert!(
        cuts >= 1,
        "the rate was never cut: {:?}",
        r.iter().map(|e| (e.val_loss, e.lr)).collect::<Vec<_>>()
    );
    let state = t.checkpoint().meta.schedule;
    assert!(state.plateau_lr.unwrap() <= r[7].lr);
    assert_eq!(
        state.best_val_loss,
        Some(r.iter().map(|e| e.val_loss).fold(f64::INFINITY, f64::min))
    );
}

#[test]
fn gru_trains_checkpoints_and_samples() {
    let _rng = torch_rng();
    let (train, val) = texts();
    let cfg = TrainConfig {
        cell: Cell::Gru,
        epochs: 6,
        ..tiny(Formulation::Seq)
    };
    let mut t = Trainer::new(cfg, &train, &val, Device::Cpu).unwrap();
    let r = run(&mut t);
    assert!(
        r[5].train_loss < r[0].train_loss - 0.2 && r[5].val_loss < r[0].val_loss,
        "{:?}",
        r.iter()
            .map(|e| (e.train_loss, e.val_loss))
            .collect::<Vec<_>>()
    );
    let bytes = r.last().unwrap().checkpoint.clone();
    let ckpt = Checkpoint::from_bytes(&bytes).unwrap();
    assert_eq!(ckpt.meta.config.cell, Cell::Gru);
    assert_eq!(ckpt.to_bytes(), bytes);
    let loaded = ckpt.model(Device::Cpu).unwrap();
    assert_eq!(loaded.cell(), Cell::Gru);
    for ((n, a), (_, b)) in loaded.parameters().iter().zip(t.model().parameters()) {
        assert!(a.equal(&b), "{n} differs after the round trip");
    }
    // Sampling from the loaded model gives the trained model's text, on both step paths
    // (the stepper for a few rows, the fused GRU call from 8 rows on).
    let req = |streams| SampleRequest {
        temperatures: vec![0.0, 0.8],
        chars: 60,
        streams_per_temperature: streams,
        seed: 3,
        prime: "the ".into(),
        mode: SampleMode::Carry,
        sampling: Sampling::off(),
    };
    let live = sample(t.model(), t.vocab(), t.config(), &req(1)).unwrap();
    let again = sample(&loaded, &ckpt.vocab(), &ckpt.meta.config, &req(1)).unwrap();
    assert_eq!(live, again);
    assert_eq!(live[0].text.chars().count(), 60);
    let fused = sample(&loaded, &ckpt.vocab(), &ckpt.meta.config, &req(8)).unwrap();
    assert_eq!(
        fused[0].text, live[0].text,
        "greedy text differs between step paths"
    );
    // A GRU checkpoint cannot be resumed as an LSTM.
    let lstm = TrainConfig {
        cell: Cell::Lstm,
        ..ckpt.meta.config.clone()
    };
    let e = Trainer::resume(lstm, &ckpt, &train, &val, Device::Cpu).unwrap_err();
    assert!(e.to_string().contains("another model config"), "{e}");
}

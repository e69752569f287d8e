//! Training, checkpoints and resume.

use crate::helpers::{run, texts, tiny, torch_rng};
use poet_core::config::Formulation;
use poet_worker::checkpoint::Checkpoint;
use poet_worker::train::{Outcome, Trainer};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use tch::Device;

#[test]
fn loss_decreases_on_a_tiny_corpus() {
    let _rng = torch_rng();
    for formulation in [Formulation::Seq, Formulation::Keras] {
        let cfg = poet_core::config::TrainConfig {
            epochs: 6,
            ..tiny(formulation)
        };
        let (train, val) = texts();
        let mut t = Trainer::new(cfg, &train, &val, Device::Cpu).unwrap();
        let r = run(&mut t);
        assert_eq!(r.len(), 6);
        let (first, last) = (&r[0], &r[5]);
        assert!(
            last.train_loss < first.train_loss - 0.2,
            "{formulation:?}: {} -> {}",
            first.train_loss,
            last.train_loss
        );
        assert!(
            last.val_loss < first.val_loss,
            "{formulation:?}: {} -> {}",
            first.val_loss,
            last.val_loss
        );
        assert!(
            r.iter()
                .all(|e| e.chars_per_sec > 0.0 && e.val_loss.is_finite())
        );
    }
}

/// A one-epoch `seq` trainer and the checkpoint its epoch reported.
fn one_epoch() -> (Trainer, Vec<u8>) {
    let cfg = poet_core::config::TrainConfig {
        epochs: 1,
        ..tiny(Formulation::Seq)
    };
    let (train, val) = texts();
    let mut t = Trainer::new(cfg, &train, &val, Device::Cpu).unwrap();
    let bytes = run(&mut t).pop().unwrap().checkpoint;
    (t, bytes)
}

#[test]
fn checkpoint_round_trip_is_bitwise() {
    let _rng = torch_rng();
    let (t, bytes) = one_epoch();
    let c = Checkpoint::from_bytes(&bytes).unwrap();
    assert_eq!(c.meta.epoch, 1);
    assert!(c.meta.adam_step > 0);
    assert_eq!(c.meta.history.len(), 1);
    let live = t.checkpoint();
    assert_eq!(c.meta, live.meta);
    for (a, b) in c.weights.iter().zip(&live.weights) {
        assert_eq!(a.0, b.0);
        assert!(a.1.equal(&b.1), "weight {} differs", a.0);
    }
    for (a, b) in c
        .adam
        .m
        .iter()
        .chain(&c.adam.v)
        .zip(live.adam.m.iter().chain(&live.adam.v))
    {
        assert_eq!(a.0, b.0);
        assert!(a.1.equal(&b.1), "adam moment {} differs", a.0);
    }
    assert_eq!(c.adam.step, live.adam.step);
    assert_eq!(c.to_bytes(), bytes, "re-encoding must give the same bytes");
}

/// CI once failed `checkpoint_round_trip_is_bitwise` because serde_json's default float parser
/// read 136617.67005754123 back as ...125; the workspace enables `float_roundtrip`.
#[test]
fn checkpoint_metadata_floats_round_trip_exactly() {
    let _rng = torch_rng();
    let (_, bytes) = one_epoch();
    let mut c = Checkpoint::from_bytes(&bytes).unwrap();
    let hard = [
        136617.67005754123,
        0.1 + 0.2,
        2.225_073_858_507_201e-308,
        1.0 / 3.0,
        9007199254740993.0,
    ];
    for (i, x) in hard.iter().enumerate() {
        let mut e = c.meta.history[0].clone();
        e.epoch = i as u32 + 2;
        (e.train_loss, e.val_loss, e.duration_s, e.chars_per_sec) = (*x, *x, *x, *x);
        c.meta.history.push(e);
    }
    let back = Checkpoint::from_bytes(&c.to_bytes()).unwrap();
    for (a, b) in back.meta.history.iter().zip(&c.meta.history) {
        assert_eq!(
            a.chars_per_sec.to_bits(),
            b.chars_per_sec.to_bits(),
            "{a:?} vs {b:?}"
        );
        assert_eq!(a.train_loss.to_bits(), b.train_loss.to_bits());
        assert_eq!(a.duration_s.to_bits(), b.duration_s.to_bits());
    }
    assert_eq!(back.meta, c.meta);
}

#[test]
fn corrupt_checkpoints_are_refused() {
    let _rng = torch_rng();
    assert!(Checkpoint::from_bytes(b"short").is_err());
    let cfg = poet_core::config::TrainConfig {
        epochs: 1,
        ..tiny(Formulation::Seq)
    };
    let (train, val) = texts();
    let t = Trainer::new(cfg, &train, &val, Device::Cpu).unwrap();
    let bytes = t.checkpoint().to_bytes();
    assert!(Checkpoint::from_bytes(&bytes[..bytes.len() - 4]).is_err());
}

#[test]
fn resume_matches_an_uninterrupted_run() {
    let _rng = torch_rng();
    let (train, val) = texts();
    let cfg = tiny(Formulation::Keras);
    let mut straight = Trainer::new(cfg.clone(), &train, &val, Device::Cpu).unwrap();
    let all = run(&mut straight);

    let half = poet_core::config::TrainConfig {
        epochs: 2,
        ..cfg.clone()
    };
    let mut first = Trainer::new(half, &train, &val, Device::Cpu).unwrap();
    let bytes = run(&mut first).pop().unwrap().checkpoint;
    let ckpt = Checkpoint::from_bytes(&bytes).unwrap();
    let mut resumed = Trainer::resume(cfg, &ckpt, &train, &val, Device::Cpu).unwrap();
    assert_eq!(resumed.epochs_done(), 2);
    let rest = run(&mut resumed);
    assert_eq!(rest.iter().map(|r| r.epoch).collect::<Vec<_>>(), vec![3, 4]);
    for (a, b) in all[2..].iter().zip(&rest) {
        assert!(
            (a.train_loss - b.train_loss).abs() < 1e-6,
            "train {} vs {}",
            a.train_loss,
            b.train_loss
        );
        assert!(
            (a.val_loss - b.val_loss).abs() < 1e-6,
            "val {} vs {}",
            a.val_loss,
            b.val_loss
        );
    }
    let (a, b) = (straight.checkpoint(), resumed.checkpoint());
    for (x, y) in a.weights.iter().zip(&b.weights) {
        assert!(
            x.1.allclose(&y.1, 1e-6, 1e-6, false),
            "weight {} drifted",
            x.0
        );
    }
}

#[test]
fn cancel_stops_between_batches() {
    let _rng = torch_rng();
    let (train, val) = texts();
    let mut t = Trainer::new(tiny(Formulation::Seq), &train, &val, Device::Cpu).unwrap();
    let cancel = AtomicBool::new(false);
    let mut batches = 0;
    let outcome = t
        .run(
            &cancel,
            &mut |_| {
                batches += 1;
                cancel.store(true, Ordering::Relaxed);
            },
            &mut |_| ControlFlow::Continue(()),
        )
        .unwrap();
    assert_eq!(
        (outcome, batches, t.epochs_done()),
        (Outcome::Cancelled, 1, 0)
    );
}

#[test]
fn text_shorter_than_a_window_is_a_data_error() {
    let _rng = torch_rng();
    let cfg = tiny(Formulation::Seq);
    let e = Trainer::new(cfg, "++++\nab", "", Device::Cpu).unwrap_err();
    assert!(e.is_permanent() && e.to_string().contains("seq_len"), "{e}");
}

/// A checkpoint written by the hand-rolled safetensors writer that preceded the `safetensors`
/// crate (1 x 8 `seq` model after one epoch; tensors laid out weights, then Adam m, then v).
const LEGACY: &[u8] = include_bytes!("../fixtures/checkpoint-v1-handwritten.safetensors");

/// The raw f32 bytes of every tensor of a safetensors file, by name, read with nothing but
/// the format's definition: the reference the decoded tensors must match bit for bit.
fn raw_tensors(bytes: &[u8]) -> std::collections::BTreeMap<String, (Vec<i64>, Vec<u8>)> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    header
        .into_iter()
        .filter(|(k, _)| k != "__metadata__")
        .map(|(k, v)| {
            let shape = v["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_i64().unwrap())
                .collect();
            let [b, e] = [0, 1].map(|i| v["data_offsets"][i].as_u64().unwrap() as usize);
            (k, (shape, data[b..e].to_vec()))
        })
        .collect()
}

fn decoded_tensors(c: &Checkpoint) -> std::collections::BTreeMap<String, (Vec<i64>, Vec<u8>)> {
    let bytes = |t: &tch::Tensor| {
        let mut b = vec![0u8; t.numel() * 4];
        t.copy_data_u8(&mut b, t.numel());
        b
    };
    let mut out = std::collections::BTreeMap::new();
    for (prefix, set) in [
        ("model", &c.weights),
        ("adam.m", &c.adam.m),
        ("adam.v", &c.adam.v),
    ] {
        for (name, t) in set {
            out.insert(format!("{prefix}/{name}"), (t.size(), bytes(t)));
        }
    }
    out
}

#[test]
fn legacy_checkpoints_load_bit_exactly() {
    let c = Checkpoint::from_bytes(LEGACY).unwrap();
    assert_eq!((c.meta.epoch, c.meta.config.units), (1, 8));
    assert!(c.meta.adam_step > 0);
    let raw = raw_tensors(LEGACY);
    assert_eq!(raw.len(), 3 * c.weights.len());
    assert_eq!(decoded_tensors(&c), raw, "every tensor bit for bit");
    // Re-encoded by the crate: a different layout, the same tensors and metadata.
    let again = c.to_bytes();
    assert_ne!(again, LEGACY, "the crate orders tensors by name");
    assert_eq!(raw_tensors(&again), raw);
    let c2 = Checkpoint::from_bytes(&again).unwrap();
    assert_eq!(c2.meta, c.meta);
    // And it still samples and resumes: the model loads.
    c.model(Device::Cpu).unwrap();
}

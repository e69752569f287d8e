//! Tiny corpora and configs shared by the tests (the agent's real coordinator is
//! `poet_coordinator::testing`).

use poet_core::config::{Formulation, TrainConfig};
use poet_worker::train::{EpochReport, Outcome, Trainer};
use std::ops::ControlFlow;
use std::sync::atomic::AtomicBool;

/// A few hundred chars of `++++`-framed poems.
pub fn corpus() -> String {
    let mut s = String::new();
    for _ in 0..2 {
        for p in POEMS {
            s.push_str("++++\n");
            s.push_str(p);
            s.push('\n');
        }
    }
    s
}

/// Train and validation text of [`corpus`].
pub fn texts() -> (String, String) {
    let c = corpus();
    let cut = c.len() * 4 / 5;
    (c[..cut].to_string(), c[cut..].to_string())
}

/// Torch's random generator is process-global and tests run on parallel threads: every test
/// that trains holds this so that seeded runs stay exactly reproducible.
pub fn torch_rng() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A 2 x 16 model on 16-char sequences, fast enough for many epochs in a test.
pub fn tiny(formulation: Formulation) -> TrainConfig {
    tch::set_num_threads(1);
    TrainConfig {
        layers: 2,
        units: 16,
        dropout: 0.1,
        recurrent_dropout: 0.1,
        seq_len: 16,
        step: 3,
        batch_size: 16,
        learning_rate: 0.01,
        grad_clip: 5.0,
        epochs: 4,
        formulation,
        embedding: 0,
        seed: 7,
        max_batches: 0,
        ..Default::default()
    }
}

/// The four poems of [`corpus`], unframed, for seeding a coordinator's dataset.
pub const POEMS: [&str; 4] = [
    "the cat sat on the mat\nthe mat was warm",
    "roses are red\nviolets are blue\nsugar is sweet",
    "the sea is wide\nthe sky is blue\nand so are you",
    "a dog ran far\nover the hill\nand then sat still",
];

/// Trains `t` to its last epoch and returns every epoch's report.
pub fn run(t: &mut Trainer) -> Vec<EpochReport> {
    let mut reports = Vec::new();
    let outcome = t
        .run(&AtomicBool::new(false), &mut |_| {}, &mut |r| {
            reports.push(r);
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(outcome, Outcome::Finished);
    reports
}

//! Tiny corpora and configs shared by the tests.

use poet_core::config::{Formulation, TrainConfig};

/// A few hundred chars of `++++`-framed poems.
pub fn corpus() -> String {
    let poems = [
        "the cat sat on the mat\nthe mat was warm\n",
        "roses are red\nviolets are blue\nsugar is sweet\n",
        "the sea is wide\nthe sky is blue\nand so are you\n",
        "a dog ran far\nover the hill\nand then sat still\n",
    ];
    let mut s = String::new();
    for _ in 0..2 {
        for p in poems {
            s.push_str("++++\n");
            s.push_str(p);
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
    }
}

//! A deterministic corpus (a few KB of generated verse) seeded as a ready dataset, and tiny
//! sweep specs whose epochs take a fraction of a second on one CPU thread.

use rand::{Rng, SeedableRng, rngs::StdRng};

const WORDS: &[&str] = &[
    "the", "lamp", "is", "low", "and", "kettle", "sings", "of", "rain", "that", "taps", "on",
    "window", "heron", "waits", "by", "silver", "reed", "counts", "fish", "under", "hill", "old",
    "roads", "sleep", "with", "promises", "salt", "wind", "tar", "pier", "boats", "come", "home",
    "year", "light", "drawer", "night",
];

/// `n` short poems drawn from a fixed word list with a fixed seed.
pub fn poems(n: usize) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(7);
    (0..n)
        .map(|_| {
            let lines: Vec<String> = (0..4)
                .map(|_| {
                    let k = rng.gen_range(4..8);
                    (0..k)
                        .map(|_| WORDS[rng.gen_range(0..WORDS.len())])
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            lines.join("\n")
        })
        .collect()
}

/// Inserts a ready dataset `name` with [`poems`]`(120)` (about 10 KB); returns its id.
pub async fn seed_dataset(pool: &sqlx::PgPool, name: &str) -> anyhow::Result<i64> {
    let poems = poems(120);
    let refs: Vec<&str> = poems.iter().map(String::as_str).collect();
    Ok(poet_sql::testing::seed_dataset(pool, name, &refs).await?)
}

/// A sweep of `runs` seeds × `epochs` epochs of a tiny model (units 12, seq_len 24, batch 16,
/// `max_batches` per epoch), with attempts enough to survive the chaos.
pub fn sweep_spec(dataset: &str, runs: usize, epochs: u32, max_batches: u32) -> String {
    sweep_spec_seeds(dataset, 1..=runs, epochs, max_batches)
}

/// [`sweep_spec`] over the given seeds. Runs are keyed by their config, so a sweep whose
/// seeds another sweep already has reuses those runs instead of creating new ones: sweeps
/// meant to add work need seeds of their own.
pub fn sweep_spec_seeds(
    dataset: &str,
    seeds: impl IntoIterator<Item = usize>,
    epochs: u32,
    max_batches: u32,
) -> String {
    let seeds: Vec<String> = seeds.into_iter().map(|i| i.to_string()).collect();
    format!(
        "dataset = \"{dataset}\"\nmax_attempts = 50\n[base]\nlayers = 1\nunits = 12\nseq_len = 24\nbatch_size = 16\n\
         learning_rate = 0.01\ndropout = 0.0\nrecurrent_dropout = 0.0\nepochs = {epochs}\nmax_batches = {max_batches}\n\
         [grid]\nseed = [{}]\n",
        seeds.join(", ")
    )
}

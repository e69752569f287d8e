//! Pure logic shared by the coordinator, the worker, ingest and the CLI. No I/O, no async,
//! no libtorch: everything here is unit-tested in place.
//!
//! # Layout
//! - [`config`]: the training configuration of one run, its validation and its hash.
//! - [`filter`]: the run filter language and run orders of `ListRuns`, compiled to SQL with
//!   bound parameters, and keyset page tokens.
//! - [`sweep`]: sweep specs (TOML/YAML/JSON) and their deterministic expansion into configs.
//! - [`plan`]: the adaptive part of a spec: search method, stopping rule, budget, concurrency.
//! - [`schedule`]: early-stopping and promotion decisions (median, ASHA, HyperBand, patience).
//! - [`search`]: TPE, proposing a sweep's next configs from the results so far.
//! - [`replay`]: the scheduler replayed on recorded curves (the replay benchmark).
//! - [`ngrams`]: word 4-grams and the plagiarism report of generated poems.
//! - [`quality`]: real-word share, line and stanza shape, and loops of poems vs their corpus.
//! - [`resources`]: a sweep's `[resources]` needs and the memory estimate of a config.
//! - [`secret`]: what a bearer token must look like to be accepted.
//! - [`retry`]: the one retry delay: exponential backoff with jitter.

pub mod config;
pub mod filter;
pub mod ngrams;
pub mod plan;
pub mod quality;
pub mod replay;
pub mod resources;
pub mod retry;
pub mod schedule;
pub mod search;
pub mod secret;
pub mod sweep;

/// The line that opens every poem in a framed corpus, as in the reference experiment.
pub const FRAME: &str = "++++\n";

/// Splits sampled text into poems: on every `++++`, trimmed, empty fragments dropped.
pub fn split_poems(text: &str) -> Vec<String> {
    text.split("++++")
        .map(|p| p.trim_matches(|c: char| c.is_whitespace()).to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn split_poems_drops_empty_fragments_and_trims() {
        let got = super::split_poems("++++\nroses are red\nviolets\n++++\n\n++++\n  sun  \n++++");
        assert_eq!(
            got,
            vec!["roses are red\nviolets".to_string(), "sun".to_string()]
        );
        assert!(super::split_poems("++++\n++++\n").is_empty());
        assert_eq!(super::split_poems("no frame"), vec!["no frame".to_string()]);
    }
}

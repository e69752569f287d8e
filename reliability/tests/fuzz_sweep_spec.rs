//! A stable-toolchain fuzz loop for the sweep-spec parser: the cargo-fuzz target in
//! `core/fuzz` needs nightly, so this mutates the same seed corpus (byte flips, splices,
//! deletions, and a dictionary of hostile tokens: NaN, infinities, overflowing integers,
//! YAML anchors, deep nesting) and parses every input in all three formats, expanding what
//! parses. Any panic fails the test and prints the input.
//!
//! CI runs a short loop; the long one is ignored:
//! `POET_FUZZ_ITERS=1000000 cargo test --release -p poet-reliability --test fuzz_sweep_spec -- --ignored`

use std::panic::{AssertUnwindSafe, catch_unwind};

use poet_core::sweep::{ExpandOptions, SpecFormat, SweepSpec};
use rand::{Rng, SeedableRng, rngs::StdRng};

const SEEDS: &[&str] = &[
    include_str!("../../core/fuzz/corpus/sweep_spec/grid.toml"),
    include_str!("../../core/fuzz/corpus/sweep_spec/random.yaml"),
    include_str!("../../core/fuzz/corpus/sweep_spec/spec.json"),
    "dataset = \"d\"\n[random]\nsamples = 3\nseed = { int = [0, 1000] }\nunits = { int = [1, 9] }\n",
    "dataset = \"d\"\n[grid]\nformulation = [\"keras\", \"seq\"]\nembedding = [0, 8]\nstep = [1, 3]\n",
];

const TOKENS: &[&str] = &[
    "nan",
    "inf",
    "-inf",
    ".nan",
    ".inf",
    "1e309",
    "-1",
    "0",
    "-0.0",
    "18446744073709551616",
    "9223372036854775807",
    "-9223372036854775808",
    "340282366920938463463374607431768211456",
    "[",
    "]",
    "{",
    "}",
    "\"",
    "'",
    "=",
    ":",
    ",",
    "\n",
    "[grid]",
    "[random]",
    "[base]",
    "samples = ",
    "seed = ",
    "&a [1]",
    "*a",
    "<<: *a",
    "!!binary",
    "~",
    "null",
    "true",
    "{ int = [5, 1] }",
    "{ uniform = [1, 0] }",
    "{ log_uniform = [0, 1] }",
    "{ choice = [] }",
    "[]",
    "\u{0}",
    "é",
    "\u{feff}",
    "dataset = \"x@0\"",
    "dataset = \"x@99999999999999999999\"",
    "epochs = ",
    "units = ",
    "learning_rate = ",
    "max_batches = 4294967296",
    "[[base]]",
    "a.b.c = 1",
];

fn mutate(rng: &mut StdRng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..rng.gen_range(1..6) {
        let pos = if v.is_empty() {
            0
        } else {
            rng.gen_range(0..=v.len())
        };
        match rng.gen_range(0..6) {
            0 if !v.is_empty() => {
                let i = pos.min(v.len() - 1);
                v[i] ^= 1 << rng.gen_range(0..8);
            }
            1 => {
                let t = TOKENS[rng.gen_range(0..TOKENS.len())];
                v.splice(pos..pos, t.bytes());
            }
            2 if !v.is_empty() => {
                let end = (pos + rng.gen_range(1..16)).min(v.len());
                v.drain(pos.min(end)..end);
            }
            3 => {
                let other = SEEDS[rng.gen_range(0..SEEDS.len())].as_bytes();
                let a = rng.gen_range(0..other.len());
                let b = (a + rng.gen_range(1..64)).min(other.len());
                v.splice(pos..pos, other[a..b].iter().copied());
            }
            4 if !v.is_empty() => {
                // Replace a number-ish run with a token.
                let end = (pos + rng.gen_range(1..6)).min(v.len());
                let t = TOKENS[rng.gen_range(0..12)];
                v.splice(pos.min(end)..end, t.bytes());
            }
            _ => {
                let n = rng.gen_range(1..8);
                for _ in 0..n {
                    v.insert(pos.min(v.len()), rng.r#gen());
                }
            }
        }
    }
    v
}

fn check(text: &str) {
    for format in [SpecFormat::Toml, SpecFormat::Yaml, SpecFormat::Json] {
        if let Ok(spec) = SweepSpec::parse(text, format) {
            let opts = ExpandOptions { max_runs: 64 };
            let (a, b) = (spec.expand(&opts), spec.expand(&opts));
            assert_eq!(a.is_ok(), b.is_ok());
            if let (Ok(a), Ok(b)) = (a, b) {
                assert_eq!(a, b, "expansion is deterministic");
                assert!(a.configs.len() <= 64);
                for c in &a.configs {
                    c.validate().expect("expanded configs are valid");
                }
            }
        }
    }
}

/// Runs `iters` mutated inputs; returns (executions, inputs that parsed in some format).
fn fuzz(iters: u64, seed: u64) -> (u64, u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut pool: Vec<Vec<u8>> = SEEDS.iter().map(|s| s.as_bytes().to_vec()).collect();
    let mut parsed = 0;
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for i in 0..iters {
        let base = &pool[rng.gen_range(0..pool.len())];
        let input = mutate(&mut rng, base);
        let text = String::from_utf8_lossy(&input).into_owned();
        if let Err(e) = catch_unwind(AssertUnwindSafe(|| check(&text))) {
            std::panic::set_hook(hook);
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or(e.downcast_ref::<&str>().map(|s| s.to_string()));
            panic!("iteration {i}: the parser panicked ({msg:?}) on {text:?}");
        }
        let ok = [SpecFormat::Toml, SpecFormat::Yaml, SpecFormat::Json]
            .iter()
            .any(|f| SweepSpec::parse(&text, *f).is_ok());
        if ok {
            parsed += 1;
            // Inputs that still parse are good parents: keep a bounded pool of them.
            if pool.len() < 256 && input.len() < 4096 {
                pool.push(input);
            }
        }
    }
    std::panic::set_hook(hook);
    (iters, parsed)
}

#[test]
fn sweep_spec_parser_survives_mutations_short() {
    let (n, parsed) = fuzz(30_000, 1);
    eprintln!("sweep-spec fuzz: {n} executions, {parsed} parsed, 0 crashes");
}

#[test]
#[ignore = "long fuzz loop; see RELIABILITY.md"]
fn sweep_spec_parser_survives_mutations_long() {
    let iters = std::env::var("POET_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let seed = std::env::var("POET_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let t = std::time::Instant::now();
    let (n, parsed) = fuzz(iters, seed);
    eprintln!(
        "sweep-spec fuzz: {n} executions, {parsed} parsed, 0 crashes, {:.1}s",
        t.elapsed().as_secs_f64()
    );
}

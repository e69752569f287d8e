//! Replays poet's sweep scheduler on recorded learning curves (the replay benchmark,
//! `./poet.sh bench-sweeps`): one JSON line per seed, in the trace format the benchmark's
//! report reads.
//!
//! ```text
//! cargo run --release -p poet-core --example replay -- --fixture bench/sweeps/curves.json \
//!     --method asha --search random --seeds 0-9 --workers 4 [--eta 3] [--min-epochs 1]
//!     [--grace 1] [--min-runs 3] [--patience 3] [--min-delta 0.001] [--initial 8]
//! ```
//! `--method`: none, median, asha, hyperband, patience; `--search`: grid, random (both replay
//! the grid in a seeded order), tpe.

use poet_core::replay::{Fixture, Pick, simulate};
use poet_core::schedule::{Patience, Policy, Rule, Rungs};
use poet_core::search::Tpe;
use std::collections::HashMap;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut flags: HashMap<String, String> = HashMap::new();
    for pair in args.chunks(2) {
        let [k, v] = pair else {
            return Err(format!("{} has no value", pair[0]));
        };
        let Some(k) = k.strip_prefix("--") else {
            return Err(format!("expected a --flag, found {k:?}"));
        };
        flags.insert(k.to_string(), v.clone());
    }
    let get = |k: &str, d: &str| flags.get(k).cloned().unwrap_or_else(|| d.to_string());
    let num = |k: &str, d: &str| -> Result<f64, String> {
        get(k, d).parse::<f64>().map_err(|e| format!("--{k}: {e}"))
    };
    let path = flags.get("fixture").ok_or("--fixture is required")?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("--fixture {path}: {e}"))?;
    let fixture: Fixture =
        serde_json::from_str(&text).map_err(|e| format!("--fixture {path}: {e}"))?;
    let max_epochs = fixture.max_epochs();
    let rungs = Rungs {
        min_epochs: num("min-epochs", "1")? as u32,
        eta: num("eta", "3")? as u32,
        max_epochs,
    };
    let method = get("method", "none");
    let rule = match method.as_str() {
        "none" | "patience" => Rule::None,
        "median" => Rule::Median {
            grace_epochs: num("grace", "1")? as u32,
            min_runs: num("min-runs", "3")? as u32,
        },
        "asha" => Rule::Asha(rungs),
        "hyperband" => Rule::Hyperband(rungs),
        m => return Err(format!("--method: unknown {m:?}")),
    };
    let mut policy = Policy {
        rule,
        ..Policy::default()
    };
    if method == "patience" || flags.contains_key("patience") {
        policy.patience = Some(Patience {
            epochs: num("patience", "3")? as u32,
            min_delta: num("min-delta", "0.001")?,
        });
    }
    let search = get("search", "random");
    let pick = match search.as_str() {
        "grid" | "random" => Pick::Shuffled,
        "tpe" => Pick::Tpe(Tpe {
            initial: num("initial", "8")? as u32,
            ..Tpe::default()
        }),
        s => return Err(format!("--search: unknown {s:?}")),
    };
    let workers = num("workers", "4")? as usize;
    let seeds = get("seeds", "0-4");
    let (lo, hi) = seeds
        .split_once('-')
        .map_or(Ok((seeds.clone(), seeds.clone())), |(a, b)| {
            Ok::<_, String>((a.into(), b.into()))
        })?;
    let (lo, hi): (u64, u64) = (
        lo.parse().map_err(|e| format!("--seeds: {e}"))?,
        hi.parse().map_err(|e| format!("--seeds: {e}"))?,
    );
    for seed in lo..=hi {
        let t = simulate(&fixture, &policy, pick, workers, seed)?;
        println!(
            "{}",
            serde_json::json!({"tool": "poet", "method": method, "search": search, "seed": seed,
                "workers": workers, "points": t.points, "epochs": t.epochs, "best": t.best, "runs": t.runs})
        );
    }
    Ok(())
}

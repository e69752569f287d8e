//! The poems benchmark's two pure steps (no libtorch; `bench/poems/run.sh` drives them):
//!
//! ```text
//! cargo run -p poet-core --example poems -- recommend CORPUS MINUTES [CHARS_PER_SEC]  # TOML
//! cargo run -p poet-core --example poems -- report CORPUS GENERATED.json # the goals table
//! ```
//!
//! `recommend` prints [`poet_core::config::recommend`]'s config for the corpus's size and
//! distinct characters (at a measured training rate when one is given, `recommend_at`). `report` reads `poet-worker generate --json` output, cuts each stream
//! into poems at frame lines (the last, unfinished poem of a stream is dropped when the
//! stream has finished another), measures them with `core::quality` and `core::ngrams`
//! against the corpus, and prints every figure beside the corpus's own and the issue's goal,
//! with PASS or FAIL.

use poet_core::config::{RECOMMEND_CHARS_PER_SEC, recommend_at};
use poet_core::ngrams::{NgramSet, Thresholds, check, check_all};
use poet_core::quality::{Vocabulary, measure, shape};
use std::collections::BTreeSet;
use std::process::ExitCode;

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The finished poems of one sampled stream.
fn poems_of_stream(text: &str) -> Vec<String> {
    let mut pieces: Vec<String> = vec![String::new()];
    for line in text.split_inclusive('\n') {
        if line.trim() == "++++" {
            pieces.push(String::new());
        } else {
            pieces.last_mut().expect("one piece").push_str(line);
        }
    }
    if pieces.len() > 1 {
        pieces.pop();
    }
    pieces.retain(|p| !p.trim().is_empty());
    pieces
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["recommend", corpus, minutes, rest @ ..] if rest.len() <= 1 => {
            let text = read(corpus);
            let minutes: f64 = minutes.parse().expect("MINUTES is a number");
            let rate: f64 = rest
                .first()
                .map(|r| r.parse().expect("CHARS_PER_SEC is a number"))
                .unwrap_or(RECOMMEND_CHARS_PER_SEC);
            let vocab = text.chars().collect::<BTreeSet<char>>().len();
            let cfg = recommend_at(text.chars().count() as u64, vocab, minutes, rate);
            print!("{}", toml::to_string(&cfg).expect("config serialises"));
            ExitCode::SUCCESS
        }
        ["report", corpus, generated] => report(&read(corpus), &read(generated)),
        _ => {
            eprintln!(
                "usage: poems recommend CORPUS MINUTES [CHARS_PER_SEC] | poems report CORPUS GENERATED.json"
            );
            ExitCode::from(2)
        }
    }
}

fn report(corpus: &str, generated: &str) -> ExitCode {
    // `poet-worker generate --json` writes the streams, or with `--corpus` an object of the
    // streams and its own quality reports.
    let streams: Vec<serde_json::Value> = match serde_json::from_str(generated)
        .expect("GENERATED is poet-worker generate --json output")
    {
        serde_json::Value::Array(streams) => streams,
        serde_json::Value::Object(mut o) => match o.remove("streams") {
            Some(serde_json::Value::Array(streams)) => streams,
            _ => panic!("GENERATED has no \"streams\" array"),
        },
        _ => panic!("GENERATED is neither the streams nor an object of them"),
    };
    let poems: Vec<String> = streams
        .iter()
        .flat_map(|s| poems_of_stream(s["text"].as_str().unwrap_or("")))
        .collect();
    let refs: Vec<&str> = poems.iter().map(String::as_str).collect();
    let vocabulary = Vocabulary::from_corpus(corpus);
    let q = measure(&refs, &vocabulary);
    let c = shape(&[corpus]);
    let set = NgramSet::from_corpus(corpus);
    let t = Thresholds::default();
    let pooled = check_all(&refs, &set, &t);
    let worst = refs
        .iter()
        .map(|p| check(p, &set, &t))
        .map(|r| (r.shared_fraction, r.longest_copied_run))
        .fold((0.0f64, 0usize), |a, b| (a.0.max(b.0), a.1.max(b.1)));
    let within = |got: f64, want: f64| (got - want).abs() <= 0.15 * want;
    let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
    println!(
        "{} poems, {} words from {} streams",
        q.shape.poems,
        q.words,
        streams.len()
    );
    println!(
        "{:<34} {:>10} {:>10}  {:<20} result",
        "measure", "poems", "corpus", "goal"
    );
    let rows = [
        (
            "real words (% of corpus words)",
            format!("{:.1}", 100.0 * q.real_word_share),
            "100.0".to_string(),
            ">= 90".to_string(),
            q.real_word_share >= 0.90,
        ),
        (
            "mean line length (chars)",
            format!("{:.1}", q.shape.mean_line_chars),
            format!("{:.1}", c.mean_line_chars),
            "corpus +-15 %".to_string(),
            within(q.shape.mean_line_chars, c.mean_line_chars),
        ),
        (
            "lines per stanza",
            format!("{:.2}", q.shape.lines_per_stanza),
            format!("{:.2}", c.lines_per_stanza),
            "corpus +-15 %".to_string(),
            within(q.shape.lines_per_stanza, c.lines_per_stanza),
        ),
        (
            "shared word 4-grams (%, pooled)",
            format!("{:.1}", 100.0 * pooled.shared_fraction),
            "-".to_string(),
            "<= 5".to_string(),
            pooled.shared_fraction <= 0.05,
        ),
        (
            "longest copied run (words)",
            format!("{}", pooled.longest_copied_run),
            "-".to_string(),
            "< 8".to_string(),
            pooled.longest_copied_run < 8,
        ),
        (
            "lines repeated > 2x in a poem",
            format!("{}", q.shape.repeated_lines),
            format!("{}", c.repeated_lines),
            "0".to_string(),
            q.shape.repeated_lines == 0 && q.shape.poems > 0,
        ),
    ];
    let mut passed = 0;
    for (name, got, corpus, goal, ok) in &rows {
        passed += usize::from(*ok);
        println!(
            "{name:<34} {got:>10} {corpus:>10}  {goal:<20} {}",
            verdict(*ok)
        );
    }
    println!(
        "(also: stanzas per poem {:.2} vs corpus {:.2}; worst single poem shares {:.1} % of its 4-grams)",
        q.shape.stanzas_per_poem,
        c.stanzas_per_poem,
        100.0 * worst.0
    );
    println!("goals met: {passed}/{}", rows.len());
    ExitCode::SUCCESS
}

//! Plagiarism-check benchmark (a documented command, not a test):
//!
//! ```text
//! ./poet.sh bench-plagiarism [corpus.txt]     # default: ../shared/data/corpus-pd.txt
//! ```
//!
//! Builds the word 4-gram set of a ~1 MB corpus, then checks 100 poems of ~1,000 chars
//! (half cut from the corpus, half shuffled words) and prints the time beside the reference.

use std::time::Instant;

use poet_core::ngrams::{NgramSet, Thresholds, check, check_all};

fn main() {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "../shared/data/corpus-pd.txt".into());
    let corpus = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let t = Instant::now();
    let set = NgramSet::from_corpus(&corpus);
    let build = t.elapsed();
    let words: Vec<&str> = corpus.split_whitespace().collect();
    let chars: Vec<char> = corpus.chars().collect();
    let poems: Vec<String> = (0..100)
        .map(|i| {
            if i % 2 == 0 {
                let start = (i * 7919) % (chars.len() - 1000);
                chars[start..start + 1000].iter().collect()
            } else {
                // Words of the corpus in a new order: few 4-grams survive.
                (0..170)
                    .map(|j| words[(i * 104_729 + j * 7_727) % words.len()])
                    .collect::<Vec<_>>()
                    .join(" ")
            }
        })
        .collect();
    let refs: Vec<&str> = poems.iter().map(String::as_str).collect();
    let t = Instant::now();
    let reports: Vec<_> = refs
        .iter()
        .map(|p| check(p, &set, &Thresholds::default()))
        .collect();
    let overall = check_all(&refs, &set, &Thresholds::default());
    let checking = t.elapsed();
    let flagged = reports.iter().filter(|r| r.flagged).count();
    println!(
        "corpus {path}: {} bytes, {} distinct word 4-grams, set built in {:.1} ms",
        corpus.len(),
        set.len(),
        build.as_secs_f64() * 1e3
    );
    println!(
        "100 poems checked in {:.2} ms (reference: < 1000 ms); {flagged} flagged, overall shared {:.0}%",
        checking.as_secs_f64() * 1e3,
        overall.shared_fraction * 100.0
    );
}

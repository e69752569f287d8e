//! The shape and wordiness of poems, measured the same way for generated poems and for the
//! training corpus, so a generation's report can stand beside the corpus's own figures (the
//! poems issue): the share of generated words that are real words of the training text, line
//! length and stanza statistics, and lines repeated within a poem (a sampler stuck in a loop).
//! The plagiarism side (shared 4-grams, copied runs) is [`crate::ngrams`]'s.
//!
//! Words are [`crate::ngrams::tokens`]'s, so "real word" means a token the corpus contains.
//! A poem is the text between frame lines (`++++`); a stanza is a run of non-empty lines; a
//! line's length is its characters without surrounding spaces.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::ngrams;

/// The distinct words of a training corpus.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vocabulary {
    words: HashSet<String>,
}

impl Vocabulary {
    /// The words of `corpus`.
    pub fn from_corpus(corpus: &str) -> Vocabulary {
        Vocabulary {
            words: ngrams::tokens(corpus).into_iter().collect(),
        }
    }

    /// Distinct words.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// Whether no word was found.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// Whether `word` (a token) occurs in the corpus.
    pub fn contains(&self, word: &str) -> bool {
        self.words.contains(word)
    }
}

/// Line and stanza figures of a set of poems.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Shape {
    /// Poems measured (those with at least one non-empty line).
    pub poems: usize,
    /// Non-empty lines.
    pub lines: usize,
    /// Mean characters per non-empty line.
    pub mean_line_chars: f64,
    /// Mean non-empty lines per stanza.
    pub lines_per_stanza: f64,
    /// Mean stanzas per poem.
    pub stanzas_per_poem: f64,
    /// Lines that occur more than twice within one poem, counted once per poem and line.
    pub repeated_lines: usize,
}

/// What a set of generated poems looks like against its training corpus.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    /// Words in the poems.
    pub words: usize,
    /// Fraction of those words that occur in the training text (0 when there are none).
    pub real_word_share: f64,
    /// Lines and stanzas.
    pub shape: Shape,
}

/// A generation's quality report: its poems' figures beside the training corpus's own, and
/// the poems' word 4-gram overlap with the corpus ([`crate::ngrams::check_all`] over all
/// poems). This is what the coordinator stores with every generation and what `poet
/// generate`, `poet poems show` and the dashboard show.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The generated poems, measured against the corpus's words.
    pub generated: Quality,
    /// The corpus itself ([`corpus_figures`]).
    pub corpus: Quality,
    /// Share of the poems' distinct 4-grams found in the corpus.
    pub shared_4grams: f64,
    /// Longest run of words copied from the corpus.
    pub longest_copied_run: usize,
}

impl Report {
    /// The report of `poems` against a corpus whose words, figures and 4-gram set are given.
    pub fn of(
        poems: &[&str],
        vocabulary: &Vocabulary,
        corpus: &Quality,
        set: &ngrams::NgramSet,
    ) -> Report {
        let overlap = ngrams::check_all(poems, set, &ngrams::Thresholds::default());
        Report {
            generated: measure(poems, vocabulary),
            corpus: corpus.clone(),
            shared_4grams: overlap.shared_fraction,
            longest_copied_run: overlap.longest_copied_run,
        }
    }

    /// A small table: each measure, generated beside corpus, and the goal it is held to
    /// (issue 21).
    pub fn table(&self) -> String {
        let (g, c) = (&self.generated, &self.corpus);
        let ratio = |a: f64, b: f64| {
            if b > 0.0 {
                format!("{:.2}x", a / b)
            } else {
                "-".into()
            }
        };
        let rows = [
            (
                "real words",
                format!("{:.1}%", 100.0 * g.real_word_share),
                format!("{:.1}%", 100.0 * c.real_word_share),
                ">= 90%".to_string(),
            ),
            (
                "chars per line",
                format!("{:.1}", g.shape.mean_line_chars),
                format!("{:.1}", c.shape.mean_line_chars),
                format!(
                    "{} (within 15%)",
                    ratio(g.shape.mean_line_chars, c.shape.mean_line_chars)
                ),
            ),
            (
                "lines per stanza",
                format!("{:.2}", g.shape.lines_per_stanza),
                format!("{:.2}", c.shape.lines_per_stanza),
                format!(
                    "{} (within 15%)",
                    ratio(g.shape.lines_per_stanza, c.shape.lines_per_stanza)
                ),
            ),
            (
                "stanzas per poem",
                format!("{:.2}", g.shape.stanzas_per_poem),
                format!("{:.2}", c.shape.stanzas_per_poem),
                ratio(g.shape.stanzas_per_poem, c.shape.stanzas_per_poem),
            ),
            (
                "repeated lines",
                g.shape.repeated_lines.to_string(),
                c.shape.repeated_lines.to_string(),
                "0 (a line 3+ times in a poem)".to_string(),
            ),
            (
                "shared 4-grams",
                format!("{:.1}%", 100.0 * self.shared_4grams),
                "-".into(),
                "<= 5%".into(),
            ),
            (
                "longest copied run",
                format!("{} words", self.longest_copied_run),
                "-".into(),
                "< 8 words".into(),
            ),
        ];
        let mut out = format!(
            "{:<20} {:>10} {:>10}  goal\n",
            "measure", "generated", "corpus"
        );
        for (name, a, b, goal) in rows {
            out.push_str(&format!("{name:<20} {a:>10} {b:>10}  {goal}\n"));
        }
        out
    }
}

/// The corpus's own figures: its shape, and a real-word share of 1 (every word of it is, by
/// definition, a word of it). Computed once per dataset by the coordinator.
pub fn corpus_figures(corpus: &str) -> (Quality, Vocabulary) {
    let vocabulary = Vocabulary::from_corpus(corpus);
    (measure(&[corpus], &vocabulary), vocabulary)
}

/// The sampler's defaults, shared by the worker (`poet-worker generate`) and the coordinator
/// (a `GenerateRequest` that leaves a field unset). Chosen by `bench/poems/sampling.sh`
/// against the figures above (BENCHMARKS.md, "Sampling that keeps a poem's shape").
pub mod defaults {
    /// The temperature `poet generate` and the coordinator use when none is given: with the
    /// other defaults, 0.3 gave the most real words on both checkpoints measured (0.2 loops
    /// more, 0.5 makes 3-5 points more non-words; BENCHMARKS.md).
    pub const TEMPERATURE: f64 = 0.3;
    /// Nucleus cut.
    pub const TOP_P: f64 = 0.95;
    /// Top-k cut (0 = none).
    pub const TOP_K: usize = 0;
    /// Most times a line may stand in one poem: twice is a refrain, a third time a loop.
    pub const MAX_LINE_REPEATS: usize = 2;
    /// Pull, in nats, of line and stanza breaks towards the corpus's shape: 6 put lines at
    /// 1.11-1.19x and stanzas at 1.09-1.16x the corpus's at 0.2-0.5 on two checkpoints of two
    /// corpora, where 3 left them at 1.18-1.24x and 1.19-1.42x (BENCHMARKS.md, "Sampling that
    /// keeps a poem's shape").
    pub const SHAPE_BOOST: f64 = 6.0;
    /// The strongest pull accepted: 20 nats already overrides any model.
    pub const MAX_SHAPE_BOOST: f64 = 20.0;
}

/// The poems of `text`: split at frame lines, empty ones dropped.
fn poems_of(text: &str) -> Vec<&str> {
    let mut out = vec![];
    let mut start = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.trim() == "++++" {
            out.push(&text[start..offset]);
            start = offset + line.len();
        }
        offset += line.len();
    }
    out.push(&text[start..]);
    out.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

/// The shape of `poems` (each may itself hold frame lines, which split it further).
pub fn shape(poems: &[&str]) -> Shape {
    let mut s = Shape::default();
    let (mut chars, mut stanzas) = (0usize, 0usize);
    for poem in poems.iter().flat_map(|p| poems_of(p)) {
        let mut in_stanza = false;
        let mut counts: HashMap<&str, usize> = HashMap::new();
        let mut lines = 0;
        for line in poem.lines().map(str::trim) {
            if line.is_empty() {
                in_stanza = false;
                continue;
            }
            if !in_stanza {
                stanzas += 1;
                in_stanza = true;
            }
            lines += 1;
            chars += line.chars().count();
            *counts.entry(line).or_default() += 1;
        }
        if lines > 0 {
            s.poems += 1;
            s.lines += lines;
            s.repeated_lines += counts.values().filter(|&&n| n > 2).count();
        }
    }
    if s.lines > 0 {
        s.mean_line_chars = chars as f64 / s.lines as f64;
        s.lines_per_stanza = s.lines as f64 / stanzas as f64;
        s.stanzas_per_poem = stanzas as f64 / s.poems as f64;
    }
    s
}

/// The quality of `poems` against the corpus whose words are `vocabulary`.
pub fn measure(poems: &[&str], vocabulary: &Vocabulary) -> Quality {
    let mut words = 0;
    let mut real = 0;
    for p in poems {
        for w in ngrams::tokens(p) {
            words += 1;
            real += usize::from(vocabulary.contains(&w));
        }
    }
    Quality {
        words,
        real_word_share: if words == 0 {
            0.0
        } else {
            real as f64 / words as f64
        },
        shape: shape(poems),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CORPUS: &str = "++++\nthe rain on the roof\nthe wind in the reeds\n\nand night comes down\n++++\nold roads sleep\nunder the hill\n";

    #[test]
    fn the_corpus_shape_counts_lines_stanzas_and_poems() {
        let s = shape(&[CORPUS]);
        assert_eq!(s.poems, 2);
        assert_eq!(s.lines, 5);
        // 3 stanzas (2 + 1 in the first poem, 1 in the second) for 5 lines.
        assert!((s.lines_per_stanza - 5.0 / 3.0).abs() < 1e-9, "{s:?}");
        assert!((s.stanzas_per_poem - 1.5).abs() < 1e-9);
        let chars = [20, 21, 20, 15, 14];
        let mean = chars.iter().sum::<usize>() as f64 / 5.0;
        assert!((s.mean_line_chars - mean).abs() < 1e-9, "{s:?}");
        assert_eq!(s.repeated_lines, 0);
    }

    #[test]
    fn real_words_are_those_of_the_training_text() {
        let v = Vocabulary::from_corpus(CORPUS);
        let q = measure(&["the rain sind the shat\nthe hill"], &v);
        assert_eq!(q.words, 7);
        assert!((q.real_word_share - 5.0 / 7.0).abs() < 1e-9, "{q:?}");
        assert_eq!(measure(&[""], &v).real_word_share, 0.0);
    }

    #[test]
    fn a_line_repeated_more_than_twice_in_one_poem_is_a_loop() {
        let looping = "the sind the sand\nthe sind the sand\nthe sind the sand\nother\n";
        assert_eq!(shape(&[looping]).repeated_lines, 1);
        // Twice is a refrain, and repeats across poems are not loops.
        let refrain = "a line\nb line\na line\n++++\na line\n";
        assert_eq!(shape(&[refrain]).repeated_lines, 0);
    }

    #[test]
    fn a_corpus_with_known_figures_gives_them_and_the_table_shows_both() {
        let (c, v) = corpus_figures(CORPUS);
        assert_eq!(c.words, 20);
        assert_eq!(c.real_word_share, 1.0);
        assert_eq!(c.shape, shape(&[CORPUS]));
        assert_eq!(v.len(), 16);
        let set = ngrams::NgramSet::from_corpus(CORPUS);
        let r = Report::of(
            &["the rain on the roof\nthe rain on the roof"],
            &v,
            &c,
            &set,
        );
        assert_eq!(r.generated.real_word_share, 1.0);
        assert_eq!(r.corpus, c);
        assert_eq!(r.longest_copied_run, 6);
        assert!(r.shared_4grams > 0.5, "{r:?}");
        let t = r.table();
        assert!(
            t.contains("chars per line             20.0       18.0  1.11x"),
            "{t}"
        );
        assert!(
            t.contains("real words               100.0%     100.0%"),
            "{t}"
        );
    }
}

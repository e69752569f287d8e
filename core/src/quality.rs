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
}

//! The character vocabulary of a run: the sorted distinct characters of the training and
//! validation text, and the mapping between characters and the integer ids the model sees.
//!
//! The vocabulary is fixed when a run starts and travels inside every checkpoint, so a model
//! is always decoded with the ids it was trained on. Text met later (a sampling prime) may hold
//! characters the run never saw; [`Vocab::encode_lossy`] drops those and counts them.

use std::collections::HashMap;

/// Sorted distinct characters and their ids (the position in the sorted list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vocab {
    /// Id -> character; sorted so that the same texts always give the same ids.
    chars: Vec<char>,
    /// Character -> id, the inverse of `chars`.
    index: HashMap<char, i64>,
}

/// A character outside the vocabulary where every character must be known (training text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("character {ch:?} at char offset {offset} is not in the vocabulary")]
pub struct UnknownChar {
    /// The character.
    pub ch: char,
    /// Its position, in characters, in the encoded text.
    pub offset: usize,
}

impl Vocab {
    /// The vocabulary of `texts`: every distinct character, sorted by code point.
    pub fn from_texts(texts: &[&str]) -> Self {
        let mut chars: Vec<char> = texts.iter().flat_map(|t| t.chars()).collect();
        chars.sort_unstable();
        chars.dedup();
        Self::from_chars(chars)
    }

    /// Rebuilds a vocabulary from its characters in id order (as stored in a checkpoint).
    pub fn from_chars(chars: Vec<char>) -> Self {
        let index = chars
            .iter()
            .enumerate()
            .map(|(i, &c)| (c, i as i64))
            .collect();
        Vocab { chars, index }
    }

    /// Number of characters, the width of the model's input and output.
    pub fn len(&self) -> usize {
        self.chars.len()
    }

    /// Whether the vocabulary has no character (never true for a trainable corpus).
    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    /// The characters in id order, as one string (the form stored in checkpoints).
    pub fn as_string(&self) -> String {
        self.chars.iter().collect()
    }

    /// The id of `c`, if known.
    pub fn id(&self, c: char) -> Option<i64> {
        self.index.get(&c).copied()
    }

    /// The character of `id`; panics on an id the model cannot produce.
    pub fn char(&self, id: i64) -> char {
        self.chars[id as usize]
    }

    /// Encodes text in which every character must be known.
    pub fn encode(&self, text: &str) -> Result<Vec<i64>, UnknownChar> {
        text.chars()
            .enumerate()
            .map(|(offset, ch)| self.id(ch).ok_or(UnknownChar { ch, offset }))
            .collect()
    }

    /// Encodes text, dropping characters the vocabulary lacks; returns the ids and how many
    /// characters were dropped (sampling primes are user text and may hold anything).
    pub fn encode_lossy(&self, text: &str) -> (Vec<i64>, usize) {
        let mut dropped = 0;
        let ids = text
            .chars()
            .filter_map(|c| {
                let id = self.id(c);
                dropped += usize::from(id.is_none());
                id
            })
            .collect();
        (ids, dropped)
    }

    /// Decodes ids back to text.
    pub fn decode(&self, ids: &[i64]) -> String {
        ids.iter().map(|&i| self.char(i)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_distinct_over_both_texts() {
        let v = Vocab::from_texts(&["cab", "zb\n"]);
        assert_eq!(v.as_string(), "\nabcz");
        assert_eq!(v.encode("abz").unwrap(), vec![1, 2, 4]);
        assert_eq!(v.decode(&[4, 0]), "z\n");
    }

    #[test]
    fn unknown_chars_are_refused_or_dropped() {
        let v = Vocab::from_texts(&["ab"]);
        assert_eq!(
            v.encode("aXb").unwrap_err(),
            UnknownChar { ch: 'X', offset: 1 }
        );
        assert_eq!(v.encode_lossy("aXbé"), (vec![0, 1], 2));
    }
}

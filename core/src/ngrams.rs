//! Word 4-grams (placeholder until the ngrams module lands).

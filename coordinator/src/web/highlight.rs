//! Cuts a generated poem into copied and original pieces for the run page: a word is copied
//! when it lies inside one of the report's shared 4-grams. Tokens follow
//! [`poet_core::ngrams`]'s rules (alphanumeric runs, inner apostrophes, lowercased), and 4-grams
//! run on across line breaks as they do there; the text itself is kept verbatim.

use std::collections::HashSet;

use super::api::Segment;

/// Byte ranges of the tokens of `text` with their normalised form.
fn tokens(text: &str) -> Vec<(usize, usize, String)> {
    let mut out = vec![];
    let mut start: Option<usize> = None;
    let mut word = String::new();
    let mut prev_letter = false;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    for (i, &(pos, c)) in chars.iter().enumerate() {
        let next = chars.get(i + 1).map(|&(_, n)| n);
        if c.is_alphanumeric() {
            start.get_or_insert(pos);
            word.push(c);
            prev_letter = c.is_alphabetic();
        } else if (c == '\'' || c == '’') && prev_letter && next.is_some_and(char::is_alphabetic)
        {
            word.push('\'');
            prev_letter = false;
        } else {
            if let Some(s) = start.take() {
                out.push((s, pos, word.to_lowercase()));
                word.clear();
            }
            prev_letter = false;
        }
    }
    if let Some(s) = start {
        out.push((s, text.len(), word.to_lowercase()));
    }
    out
}

/// `text` as alternating original and copied segments; `shared` holds space-joined 4-grams.
pub fn segments(text: &str, shared: &[String]) -> Vec<Segment> {
    let shared: HashSet<&str> = shared.iter().map(String::as_str).collect();
    let toks = tokens(text);
    let mut copied = vec![false; toks.len()];
    if !shared.is_empty() {
        for i in 0..toks.len().saturating_sub(3) {
            let gram = format!(
                "{} {} {} {}",
                toks[i].2,
                toks[i + 1].2,
                toks[i + 2].2,
                toks[i + 3].2
            );
            if shared.contains(gram.as_str()) {
                copied[i..i + 4].iter_mut().for_each(|c| *c = true);
            }
        }
    }
    // Copied byte ranges, joining neighbours so the gap between two copied words is copied too.
    let mut ranges: Vec<(usize, usize)> = vec![];
    for (i, t) in toks.iter().enumerate().filter(|(i, _)| copied[*i]) {
        match ranges.last_mut() {
            Some(last) if i > 0 && copied[i - 1] => last.1 = t.1,
            _ => ranges.push((t.0, t.1)),
        }
    }
    let mut out = vec![];
    let mut at = 0;
    for (s, e) in ranges {
        if s > at {
            out.push(Segment {
                text: text[at..s].to_string(),
                copied: false,
            });
        }
        out.push(Segment {
            text: text[s..e].to_string(),
            copied: true,
        });
        at = e;
    }
    if at < text.len() || out.is_empty() {
        out.push(Segment {
            text: text[at..].to_string(),
            copied: false,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(segs: &[Segment]) -> String {
        segs.iter()
            .map(|s| {
                if s.copied {
                    format!("[{}]", s.text)
                } else {
                    s.text.clone()
                }
            })
            .collect()
    }

    #[test]
    fn marks_shared_grams_across_lines_and_keeps_text() {
        let text = "Oh, the lamp is low\nand the Kettle sings! New words here.";
        let shared = vec![
            "the lamp is low".to_string(),
            "lamp is low and".to_string(),
            "and the kettle sings".to_string(),
        ];
        let segs = segments(text, &shared);
        assert_eq!(
            segs.iter().map(|s| s.text.as_str()).collect::<String>(),
            text
        );
        assert_eq!(
            render(&segs),
            "Oh, [the lamp is low\nand the Kettle sings]! New words here."
        );
    }

    #[test]
    fn apostrophes_and_no_shared() {
        let segs = segments(
            "don’t stop me now please",
            &["don't stop me now".to_string()],
        );
        assert_eq!(render(&segs), "[don’t stop me now] please");
        assert_eq!(render(&segments("plain", &[])), "plain");
        assert_eq!(segments("", &[]).len(), 1);
    }

    #[test]
    fn tokens_match_the_corpus_tokeniser() {
        let text = "Rock'n'roll, İstanbul — 42 cats'";
        let ours: Vec<String> = tokens(text).into_iter().map(|t| t.2).collect();
        assert_eq!(ours, poet_core::ngrams::tokens(text));
    }
}

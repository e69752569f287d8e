//! Invariant checks shared by the cargo-fuzz targets (`ingest/fuzz/`) and the proptest
//! "fuzz-style" tests that run in the ordinary test suite. Not part of the supported API.

use std::io::{BufReader, Cursor, Read};
use std::sync::Arc;

use crate::dump::{self, Chunk, DumpFormat};
use crate::html::html_to_text;
use crate::mapping::FieldMapping;
use crate::process::{Settings, process};

/// `text`'s words wrapped greedily at `width` characters, as prose hard-wrapped at a fixed
/// width is (for the filter's tests and its fitting command).
pub fn hard_wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for w in text.split_whitespace() {
        let len = line.chars().count();
        if len > 0 && len + 1 + w.chars().count() > width {
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(w);
    }
    out + &line
}

/// Converts `html` and panics if the result is not canonical text.
pub fn check_html(html: &str) {
    let text = html_to_text(html);
    assert!(!text.starts_with('\n') && !text.ends_with('\n'), "{text:?}");
    assert!(!text.contains("\n\n\n"), "{text:?}");
    assert!(
        text.chars().all(|c| c == '\n' || !c.is_control()),
        "{text:?}"
    );
    for line in text.split('\n') {
        assert_eq!(line, line.trim_matches(' '), "{text:?}");
        assert!(!line.contains("  "), "{text:?}");
    }
    assert!(unicode_normalization::is_nfc(&text), "{text:?}");
}

/// Reads `data` as each dump format and processes it; panics if counts do not add up.
pub fn check_reader(data: &[u8]) {
    let settings = Settings {
        mapping: FieldMapping::default(),
        tag: Some("poetry".into()),
        filter: crate::FilterParams::default(),
        shards: 64,
        dataset_id: 1,
        keep_measures: true,
        wanted: FieldMapping::default().top_level_keys(),
        max_line_bytes: 1024,
    };
    for format in [DumpFormat::Ndjson, DumpFormat::Bulk, DumpFormat::Scroll] {
        let raw: Box<dyn Read + Send> = Box::new(Cursor::new(data.to_vec()));
        let Ok(reader) = dump::decode("fuzz", raw, Arc::default(), Arc::default(), 200.0) else {
            continue;
        };
        let mut chunks: Vec<Chunk> = Vec::new();
        let mut emit = |c| {
            chunks.push(c);
            true
        };
        let mut reader = BufReader::new(reader);
        // Read errors (corrupt gzip) are fine; panics are not.
        let limits = dump::Limits {
            max_line_bytes: 1024,
            max_page_bytes: 1024,
            ..dump::Limits::default()
        };
        let _ = dump::read_format(&mut reader, format, &Arc::from("fuzz"), &limits, &mut emit);
        for chunk in chunks {
            let b = process(&settings, chunk);
            let c = b.counts;
            assert_eq!(c.read, c.malformed + c.docs, "{c:?}");
            assert_eq!(
                c.docs,
                c.other_tag + c.empty + c.not_poems + b.poems.len() as u64,
                "{c:?}"
            );
            assert_eq!(b.rejects.len() as u64, c.malformed);
            assert_eq!(b.filtered.len() as u64, c.empty + c.not_poems);
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn html_to_text_is_canonical(html in "(<p>|</p>|<br>|<br />|\n|\r\n|&nbsp;|&amp;|&#8217;|&#x41;|<!-- wp:x -->|<pre>|</pre>| |\t|\u{a0}|a|B|é|e\u{301}|一|\u{0}|<|>|&|;|<li>|</li>|<p>&nbsp;</p>)*") {
            super::check_html(&html);
        }

        #[test]
        fn html_to_text_survives_any_string(html in any::<String>()) {
            super::check_html(&html);
        }

        #[test]
        fn reader_survives_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
            super::check_reader(&data);
        }

        #[test]
        fn reader_survives_mangled_hits(cut in 0usize..400, junk in proptest::collection::vec(any::<u8>(), 0..8)) {
            let hit = br#"{"_index":"i","_id":"1-p-1","_source":{"content":"<p>a line here<br>and there</p>","tag":[{"name":"Poetry"}],"title":{"default":"t"}}}"#;
            let mut data = hit.to_vec();
            data.truncate(cut.min(data.len()));
            data.extend_from_slice(&junk);
            data.push(b'\n');
            data.extend_from_slice(hit);
            super::check_reader(&data);
        }
    }
}

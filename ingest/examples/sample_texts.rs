//! Development aid: prints `{"id", "text", "lines", "words", "max_line_chars", "verdict"}` per
//! valid document of an NDJSON dump (plain or gzip), for comparing the HTML conversion and the
//! filter with a truth file. `cargo run -p poet-ingest --example sample_texts -- DUMP`.

use std::io::{BufRead, BufReader, Read};

use poet_ingest::filter::{FilterParams, measure};
use poet_ingest::html::html_to_text;
use poet_ingest::mapping::FieldMapping;

fn main() -> anyhow::Result<()> {
    let path = std::env::args().nth(1).expect("usage: sample_texts DUMP");
    let raw = std::fs::File::open(&path)?;
    let reader: Box<dyn Read> = if path.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(raw))
    } else {
        Box::new(raw)
    };
    let mapping = FieldMapping::default();
    let filter = FilterParams::default();
    for line in BufReader::new(reader).split(b'\n') {
        let line = line?;
        let line = line.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&line);
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(id), Some(source)) = (v.get("_id").and_then(|i| i.as_str()), v.get("_source"))
        else {
            continue;
        };
        let raw = serde_json::value::to_raw_value(source)?;
        let src = poet_ingest::mapping::Source::parse(&raw)?;
        let post = mapping.read(&poet_ingest::mapping::HitMeta { id: Some(id) }, &src);
        let text = html_to_text(post.content.as_deref().unwrap_or(""));
        let m = measure(&text);
        let out = serde_json::json!({"id": id, "text": text, "lines": m.lines, "words": m.words,
            "max_line_chars": m.max_line_chars, "verdict": filter.verdict(&m)});
        println!("{out}");
    }
    Ok(())
}

//! Per-document work done on the worker pool: parse a hit, read its fields, HTML to text,
//! filter, dedupe key, shard, and the ready-to-COPY row. Everything here is pure and runs in
//! parallel; the single aggregator ([`crate::dataset`]) only dedupes and streams rows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::dump::{Chunk, ChunkKind, json_reason, strip_bom, trim_cr};
use crate::filter::{Features, FilterParams, Measures, Verdict, count_list_items, measure};
use crate::html::html_to_text;
use crate::mapping::{FieldMapping, HitMeta, Post, Source, SourceSeed};

/// What the workers need to know, shared by all of them.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub mapping: FieldMapping,
    /// Lowercased `--tag`.
    pub tag: Option<String>,
    pub filter: FilterParams,
    pub shards: u32,
    pub dataset_id: i64,
    /// Keep the measures of every document, and samples of each verdict (explain mode).
    pub keep_measures: bool,
    /// `mapping.top_level_keys()`: the `_source` keys worth keeping while parsing.
    pub wanted: Vec<String>,
    /// Longer NDJSON lines are rejected unparsed (the reader skips those past a chunk).
    pub max_line_bytes: u64,
}

/// Deserializes a hit (`_id`, `_source`; everything else skipped) in one pass.
struct HitSeed<'w> {
    wanted: &'w [String],
}

struct Hit<'a> {
    id: Option<String>,
    source: Option<Source<'a>>,
}

impl<'de> DeserializeSeed<'de> for HitSeed<'_> {
    type Value = Hit<'de>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Hit<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for HitSeed<'_> {
    type Value = Hit<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a search hit object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Hit<'de>, A::Error> {
        let mut hit = Hit {
            id: None,
            source: None,
        };
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match &*key {
                "_id" => {
                    hit.id = match map.next_value::<serde_json::Value>()? {
                        serde_json::Value::String(s) => Some(s),
                        serde_json::Value::Null => None,
                        other => Some(other.to_string()),
                    }
                }
                "_source" => {
                    hit.source = map.next_value_seed(OptionalSource(SourceSeed {
                        wanted: Some(self.wanted),
                    }))?
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(hit)
    }
}

/// `_source: null` reads as no source.
struct OptionalSource<'w>(SourceSeed<'w>);

impl<'de> DeserializeSeed<'de> for OptionalSource<'_> {
    type Value = Option<Source<'de>>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for OptionalSource<'_> {
    type Value = Option<Source<'de>>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a _source object or null")
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.deserialize(d).map(Some)
    }
}

/// A line or document that could not be used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reject {
    /// Input name (`-` for stdin).
    pub file: String,
    /// 1-based line (scroll: hit position).
    pub line: u64,
    /// Why (lowercase).
    pub reason: String,
}

/// A document the filter did not keep (empty or prose), with why: stored in
/// `ingest_rejects` with its measures.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Filtered {
    /// Input name (`-` for stdin).
    pub file: String,
    /// 1-based line (scroll: hit position).
    pub line: u64,
    /// The post's id, when it has one.
    pub source_id: Option<String>,
    /// The rule that decided.
    pub verdict: Verdict,
    /// The measures it compared, in words ([`FilterParams::reason`]).
    pub why: String,
    /// The measures.
    pub features: Features,
}

/// A document as `--explain` shows it: where, which verdict, why, and how it starts.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sample {
    /// Where, the verdict, why and the measures (as stored for a filtered document).
    #[serde(flatten)]
    pub doc: Filtered,
    /// Its first lines (at most 3, each cut at 80 characters).
    pub opening: Vec<String>,
}

/// Samples of each verdict a worker keeps per chunk in explain mode.
pub(crate) const SAMPLES_PER_VERDICT: usize = 3;

/// Per-stage counts, summed over batches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Non-blank lines (NDJSON), documents (bulk, scroll) read.
    pub read: u64,
    /// Blank lines skipped (not errors).
    pub blank: u64,
    /// Unusable lines (see the rejects).
    pub malformed: u64,
    /// Valid documents.
    pub docs: u64,
    /// Documents without the `--tag`.
    pub other_tag: u64,
    /// Documents whose content is missing, null or only whitespace.
    pub empty: u64,
    /// Documents the filter judged prose.
    pub not_poems: u64,
    /// Poems already seen (same dedupe key).
    pub duplicates: u64,
    /// Poems stored.
    pub kept: u64,
}

impl Counts {
    pub(crate) fn add(&mut self, o: &Counts) {
        self.read += o.read;
        self.blank += o.blank;
        self.malformed += o.malformed;
        self.docs += o.docs;
        self.other_tag += o.other_tag;
        self.empty += o.empty;
        self.not_poems += o.not_poems;
        self.duplicates += o.duplicates;
        self.kept += o.kept;
    }
}

/// Worker time spent per stage (summed over threads).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct StageTimes {
    pub parse: Duration,
    pub html: Duration,
    pub filter: Duration,
    pub key: Duration,
}

impl StageTimes {
    pub(crate) fn add(&mut self, o: &StageTimes) {
        self.parse += o.parse;
        self.html += o.html;
        self.filter += o.filter;
        self.key += o.key;
    }
}

/// The characters of one framed poem: enough to total the corpus's size and vocabulary from
/// the copies finally kept, without looking at their texts again.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct PoemChars {
    /// Characters (Unicode scalar values).
    pub count: u32,
    /// Which ASCII characters occur: bit `b` for byte `b`.
    pub ascii: u128,
    /// The distinct non-ASCII characters, sorted; `None` for an all-ASCII poem.
    pub other: Option<Box<[char]>>,
}

impl PoemChars {
    pub(crate) fn of(text: &str) -> Self {
        let mut ascii = 0u128;
        if text.is_ascii() {
            for b in text.bytes() {
                ascii |= 1 << b;
            }
            return PoemChars {
                count: text.len() as u32,
                ascii,
                other: None,
            };
        }
        let mut count = 0u32;
        let mut other = Vec::new();
        for c in text.chars() {
            count += 1;
            if c.is_ascii() {
                ascii |= 1 << (c as u32);
            } else {
                other.push(c);
            }
        }
        other.sort_unstable();
        other.dedup();
        PoemChars {
            count,
            ascii,
            other: Some(other.into_boxed_slice()),
        }
    }
}

/// A corpus's character count and vocabulary, summed over its poems.
#[derive(Debug, Default)]
pub(crate) struct CorpusChars {
    count: u64,
    ascii: u128,
    other: std::collections::BTreeSet<char>,
}

impl CorpusChars {
    pub(crate) fn add(&mut self, p: &PoemChars) {
        self.count += u64::from(p.count);
        self.ascii |= p.ascii;
        if let Some(o) = &p.other {
            self.other.extend(o.iter().copied());
        }
    }

    /// Characters counted.
    pub(crate) fn total(&self) -> u64 {
        self.count
    }

    /// Every distinct character, sorted by code point.
    pub(crate) fn vocab(&self) -> String {
        (0u8..128)
            .filter(|&b| self.ascii & (1 << b) != 0)
            .map(char::from)
            .chain(self.other.iter().copied())
            .collect()
    }
}

/// A poem ready to store, its row and text living in the batch's buffers.
#[derive(Debug)]
pub(crate) struct PoemRow {
    pub key: [u8; 32],
    pub source_id: Box<str>,
    /// sha256 of the framed text.
    pub text_hash: [u8; 32],
    /// The binary COPY tuple in `Batch::rows`.
    pub row: std::ops::Range<usize>,
    /// Its characters.
    pub chars: PoemChars,
}

/// The result of one chunk.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub counts: Counts,
    pub rejects: Vec<Reject>,
    pub poems: Vec<PoemRow>,
    pub rows: Vec<u8>,
    /// (measures, verdict) of every non-empty document with the tag (explain mode).
    pub measures: Vec<(Measures, Verdict)>,
    /// Documents not kept (empty or prose), with why.
    pub filtered: Vec<Filtered>,
    /// A few documents of each verdict (explain mode).
    pub samples: Vec<Sample>,
    pub times: StageTimes,
}

/// The normalised form two copies of a poem share: lowercase, whitespace runs folded to one
/// space, trimmed. Its sha256 is the dedupe key.
pub fn dedupe_key(text: &str) -> [u8; 32] {
    let bytes = text.as_bytes();
    let mut norm: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut pending_space = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii() {
            // ASCII fast path; `char::is_whitespace` on ASCII is exactly these bytes.
            let space = |b: u8| matches!(b, b' ' | b'\t'..=b'\r');
            if space(b) {
                pending_space = !norm.is_empty();
                i += 1;
                continue;
            }
            if pending_space {
                norm.push(b' ');
                pending_space = false;
            }
            // A whole run of ASCII non-space bytes at once.
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii() && !space(bytes[i]) {
                i += 1;
            }
            norm.extend(bytes[start..i].iter().map(u8::to_ascii_lowercase));
            continue;
        }
        let c = text[i..].chars().next().expect("a char starts here");
        i += c.len_utf8();
        if c.is_whitespace() {
            pending_space = !norm.is_empty();
            continue;
        }
        if pending_space {
            norm.push(b' ');
            pending_space = false;
        }
        for l in c.to_lowercase() {
            let mut enc = [0u8; 4];
            norm.extend_from_slice(l.encode_utf8(&mut enc).as_bytes());
        }
    }
    Sha256::digest(&norm).into()
}

/// The shard of a poem: its dedupe key's first 8 bytes mod `shards`; stable across ingests.
pub fn shard_of(key: &[u8; 32], shards: u32) -> u32 {
    let v = u64::from_be_bytes(key[..8].try_into().expect("8 bytes"));
    (v % u64::from(shards.max(1))) as u32
}

/// Appends one field of a binary COPY tuple: its length, then its bytes.
fn copy_field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// The header of a binary COPY stream: signature, flags, header extension length.
pub(crate) const COPY_BINARY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The end of a binary COPY stream.
pub(crate) const COPY_BINARY_TRAILER: &[u8] = &[0xff, 0xff];

/// Appends `s` to a COPY text-format field, escaping what the format requires.
pub(crate) fn copy_escape(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Removes NUL (Postgres text and jsonb cannot hold it).
fn no_nul(s: String) -> String {
    if s.contains('\0') {
        s.replace('\0', "")
    } else {
        s
    }
}

#[derive(Serialize)]
struct Meta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    author: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    date: Option<&'a str>,
    tags: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lang: Option<&'a str>,
}

struct Worker<'s> {
    s: &'s Settings,
    file: Arc<str>,
    out: Batch,
    /// The framed text of the poem being processed (reused from poem to poem).
    framed: String,
}

impl Worker<'_> {
    fn reject(&mut self, line: u64, reason: impl Into<String>) {
        self.out.counts.malformed += 1;
        self.out.rejects.push(Reject {
            file: self.file.to_string(),
            line,
            reason: reason.into(),
        });
    }

    /// Records a document the filter did not keep.
    fn filtered(&mut self, line: u64, post: &Post, verdict: Verdict, m: &Measures) {
        let doc = self.verdict_of(line, post, verdict, m);
        self.out.filtered.push(doc);
    }

    /// A document's verdict with where it is and why.
    fn verdict_of(&self, line: u64, post: &Post, verdict: Verdict, m: &Measures) -> Filtered {
        Filtered {
            file: self.file.to_string(),
            line,
            source_id: post.id.as_deref().map(|s| no_nul(s.to_string())),
            verdict,
            why: self.s.filter.reason(m, verdict),
            features: m.features(),
        }
    }

    /// A full hit (NDJSON line or scroll hit).
    fn hit(&mut self, line: u64, bytes: &[u8]) {
        let t0 = Instant::now();
        let text = match std::str::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                return self.reject(line, format!("invalid utf-8 at byte {}", e.valid_up_to()));
            }
        };
        if !text.trim_start().starts_with('{') {
            return self.reject(line, "not a json object");
        }
        let mut de = serde_json::Deserializer::from_str(text);
        let parsed = HitSeed {
            wanted: &self.s.wanted,
        }
        .deserialize(&mut de);
        let hit = match parsed.and_then(|h| de.end().map(|_| h)) {
            Ok(h) => h,
            Err(e) => return self.reject(line, json_reason(&e)),
        };
        let Some(source) = hit.source else {
            return self.reject(line, "hit without _source");
        };
        self.out.times.parse += t0.elapsed();
        self.source(line, hit.id.as_deref(), source);
    }

    /// A parsed `_source` with the hit's id.
    fn source(&mut self, line: u64, id: Option<&str>, source: Source<'_>) {
        let t0 = Instant::now();
        let post = self.s.mapping.read(&HitMeta { id }, &source);
        self.out.times.parse += t0.elapsed();
        self.out.counts.docs += 1;
        self.post(line, post);
    }

    fn post(&mut self, line: u64, post: Post) {
        if let Some(tag) = &self.s.tag
            && !post.has_tag(tag)
        {
            self.out.counts.other_tag += 1;
            return;
        }
        let Some(content) = post.content.as_deref() else {
            self.out.counts.empty += 1;
            self.filtered(line, &post, Verdict::Empty, &Measures::default());
            return;
        };
        let t0 = Instant::now();
        let text = html_to_text(content);
        let t1 = Instant::now();
        self.out.times.html += t1 - t0;
        let mut m = measure(&text);
        m.html_list_items = count_list_items(content);
        let verdict = self.s.filter.verdict(&m);
        self.out.times.filter += t1.elapsed();
        if self.s.keep_measures && verdict != Verdict::Empty {
            self.out.measures.push((m, verdict));
        }
        if self.s.keep_measures
            && self
                .out
                .samples
                .iter()
                .filter(|s| s.doc.verdict == verdict)
                .count()
                < SAMPLES_PER_VERDICT
        {
            self.out.samples.push(Sample {
                doc: self.verdict_of(line, &post, verdict, &m),
                opening: text
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .take(3)
                    .map(|l| match l.char_indices().nth(80) {
                        Some((i, _)) => format!("{}…", &l[..i]),
                        None => l.to_string(),
                    })
                    .collect(),
            });
        }
        if verdict != Verdict::Poem {
            if verdict == Verdict::Empty {
                self.out.counts.empty += 1;
            } else {
                self.out.counts.not_poems += 1;
            }
            self.filtered(line, &post, verdict, &m);
            return;
        }
        let t2 = Instant::now();
        let key = dedupe_key(&text);
        let shard = shard_of(&key, self.s.shards);
        let source_id = match post.id {
            Some(id) => no_nul(id),
            None => format!("{}:{line}", self.file),
        };
        let meta = Meta {
            title: post.title.as_deref(),
            author: post.author.as_deref(),
            date: post.date.as_deref(),
            tags: post.tags.iter().map(|t| t.name.as_str()).collect(),
            lang: post.lang.as_deref(),
        };
        let meta = no_nul(serde_json::to_string(&meta).expect("meta serialises"));
        self.framed.clear();
        self.framed.push_str(poet_core::FRAME);
        self.framed.push_str(&text);
        self.framed.push('\n');
        let framed = self.framed.as_str();
        let chars = PoemChars::of(framed);
        let text_hash: [u8; 32] = Sha256::digest(framed.as_bytes()).into();
        // Binary COPY tuple: dataset_id, dedupe_key, shard, source_id, text, meta. No escaping
        // here, and Postgres parses lengths instead of scanning for delimiters.
        let rows = &mut self.out.rows;
        let r_start = rows.len();
        let mut key_hex = [0u8; 64];
        hex::encode_to_slice(key, &mut key_hex).expect("64 hex digits");
        rows.extend_from_slice(&6i16.to_be_bytes());
        copy_field(rows, &self.s.dataset_id.to_be_bytes());
        copy_field(rows, &key_hex);
        copy_field(rows, &(shard as i32).to_be_bytes());
        copy_field(rows, source_id.as_bytes());
        copy_field(rows, framed.as_bytes());
        // jsonb's binary form: version 1, then the JSON text.
        rows.extend_from_slice(&(meta.len() as i32 + 1).to_be_bytes());
        rows.push(1);
        rows.extend_from_slice(meta.as_bytes());
        let r_end = rows.len();
        self.out.poems.push(PoemRow {
            key,
            source_id: source_id.into_boxed_str(),
            text_hash,
            row: r_start..r_end,
            chars,
        });
        self.out.times.key += t2.elapsed();
    }
}

/// Processes one chunk into a batch.
pub(crate) fn process(settings: &Settings, chunk: Chunk) -> Batch {
    let mut w = Worker {
        s: settings,
        file: chunk.file.clone(),
        out: Batch::default(),
        framed: String::new(),
    };
    match &chunk.kind {
        ChunkKind::Lines { first_line } => {
            let mut line_no = *first_line;
            // The piece after a final newline is not a line.
            let data = chunk.data.strip_suffix(b"\n").unwrap_or(&chunk.data);
            for raw in data.split(|&b| b == b'\n') {
                let line = strip_bom(trim_cr(raw));
                if line.iter().all(u8::is_ascii_whitespace) {
                    w.out.counts.blank += 1;
                    line_no += 1;
                    continue;
                }
                w.out.counts.read += 1;
                if line.len() as u64 > settings.max_line_bytes {
                    w.reject(
                        line_no,
                        crate::dump::long_line_reason(settings.max_line_bytes),
                    );
                } else {
                    w.hit(line_no, line);
                }
                line_no += 1;
            }
        }
        ChunkKind::Hits(docs) | ChunkKind::Sources(docs) => {
            let bulk = matches!(chunk.kind, ChunkKind::Sources(_));
            for doc in docs {
                w.out.counts.read += 1;
                let range = match &doc.json {
                    Ok(r) => r.clone(),
                    Err(reason) => {
                        w.reject(doc.line, reason.clone());
                        continue;
                    }
                };
                let bytes = &chunk.data[range];
                if !bulk {
                    w.hit(doc.line, bytes);
                    continue;
                }
                let parsed = std::str::from_utf8(bytes)
                    .map_err(|e| format!("invalid utf-8 at byte {}", e.valid_up_to()))
                    .and_then(|t| {
                        let mut de = serde_json::Deserializer::from_str(t);
                        let src = SourceSeed {
                            wanted: Some(&settings.wanted),
                        }
                        .deserialize(&mut de)
                        .and_then(|src| de.end().map(|_| src));
                        src.map_err(|e| json_reason(&e))
                    });
                match parsed {
                    Ok(src) => {
                        // An `update` action's source is `{"doc": {...}}`: use the doc.
                        let inner = src.get("doc").and_then(|d| Source::parse(d).ok());
                        w.source(doc.line, doc.id.as_deref(), inner.unwrap_or(src));
                    }
                    Err(reason) => w.reject(doc.line, reason),
                }
            }
        }
    }
    w.out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedupe_key_ignores_case_and_whitespace_only() {
        let a = dedupe_key("The Rose\nis red\n\nand so");
        assert_eq!(a, dedupe_key("the rose  is RED and\tso "));
        assert_ne!(a, dedupe_key("the rose is red and so."));
        assert_eq!(dedupe_key("Ä\nB"), dedupe_key("ä b"));
    }

    #[test]
    fn dedupe_key_is_sha256_of_the_plain_definition() {
        // The definition: each char lowercased on its own (so a final sigma stays σ), whitespace
        // runs to one space, trimmed.
        fn plain(text: &str) -> [u8; 32] {
            let words: Vec<String> = text
                .split(char::is_whitespace)
                .filter(|w| !w.is_empty())
                .map(|w| w.chars().flat_map(char::to_lowercase).collect())
                .collect();
            Sha256::digest(words.join(" ").as_bytes()).into()
        }
        for t in [
            "",
            "   ",
            "The Rose\nis red\n\nand so",
            "\u{b}vertical\u{c}tab\r\n ",
            "no\u{a0}break\u{2003}em space\u{3000}ideographic",
            "İstanbul ẞ ΣΟΦΟΣ Ǆ",
            "春眠不覺曉 處處聞啼鳥",
            "  caf\u{e9} CAFE\u{301}  ",
        ] {
            assert_eq!(dedupe_key(t), plain(t), "{t:?}");
        }
    }

    #[test]
    fn corpus_chars_count_and_vocabulary() {
        let mut c = CorpusChars::default();
        for t in ["++++\nab\n", "++++\nçé b\n", "++++\né\n"] {
            c.add(&PoemChars::of(t));
        }
        assert_eq!(c.total(), 8 + 10 + 7);
        assert_eq!(c.vocab(), "\n +abçé");
        assert_eq!(PoemChars::of("ab").other, None);
    }

    #[test]
    fn shards_are_stable_and_in_range() {
        let k = dedupe_key("a poem");
        assert_eq!(shard_of(&k, 64), shard_of(&dedupe_key("A  POEM"), 64));
        for n in [1, 2, 7, 64, 4096] {
            assert!(shard_of(&k, n) < n);
        }
        // pinned: changing the hash would reshuffle every stored dataset's split
        assert_eq!(hex::encode(k)[..16].len(), 16);
        assert_eq!(
            shard_of(&k, 64),
            (u64::from_be_bytes(k[..8].try_into().unwrap()) % 64) as u32
        );
    }

    #[test]
    fn copy_escaping() {
        let mut out = Vec::new();
        copy_escape(&mut out, "a\\b\nc\rd\te");
        assert_eq!(out, b"a\\\\b\\nc\\rd\\te");
    }

    fn settings() -> Settings {
        Settings {
            mapping: FieldMapping::default(),
            tag: Some("poetry".into()),
            filter: FilterParams::default(),
            shards: 64,
            dataset_id: 5,
            keep_measures: false,
            wanted: FieldMapping::default().top_level_keys(),
            max_line_bytes: 1 << 20,
        }
    }

    fn run(lines: &[u8]) -> Batch {
        let chunk = Chunk {
            file: Arc::from("f"),
            data: lines.to_vec(),
            kind: ChunkKind::Lines { first_line: 1 },
        };
        process(&settings(), chunk)
    }

    #[test]
    fn classifies_lines() {
        let poem = r#"{"_id":"1-p-1","_source":{"content":"<p>first line here<br>second line there</p>","tag":["Poetry"],"title":"T"}}"#;
        let other = r#"{"_id":"1-p-2","_source":{"content":"<p>a<br>b</p>","tag":["cats"]}}"#;
        let empty = r#"{"_id":"1-p-3","_source":{"content":"<p>&nbsp;</p>","tag":"poetry"}}"#;
        let input = format!(
            "\u{feff}{poem}\r\n\n{other}\n{empty}\nnot json\n{{\"_id\":\"x\"}}\n{{\"_id\":\"y\",\"_source\":{{\n"
        );
        let b = run(input.as_bytes());
        assert_eq!(b.counts.read, 6);
        assert_eq!(b.counts.blank, 1);
        assert_eq!(b.counts.docs, 3);
        assert_eq!(b.counts.other_tag, 1);
        assert_eq!(b.counts.empty, 1);
        assert_eq!(b.counts.malformed, 3);
        assert_eq!(b.poems.len(), 1);
        let reasons: Vec<(u64, &str)> = b
            .rejects
            .iter()
            .map(|r| (r.line, r.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            [
                (5, "not a json object"),
                (6, "hit without _source"),
                (7, "truncated json")
            ]
        );
        // The binary COPY tuple: a field count, then (length, bytes) per field.
        let mut row = &b.rows[b.poems[0].row.clone()];
        assert_eq!(i16::from_be_bytes([row[0], row[1]]), 6);
        row = &row[2..];
        let mut fields = Vec::new();
        for _ in 0..6 {
            let n = i32::from_be_bytes(row[..4].try_into().unwrap()) as usize;
            fields.push(&row[4..4 + n]);
            row = &row[4 + n..];
        }
        assert!(row.is_empty(), "nothing after the sixth field");
        assert_eq!(fields[0], 5i64.to_be_bytes());
        assert_eq!(fields[1].len(), 64);
        assert_eq!(fields[3], b"1-p-1");
        assert_eq!(fields[4], b"++++\nfirst line here\nsecond line there\n");
        assert_eq!(fields[5], b"\x01{\"title\":\"T\",\"tags\":[\"Poetry\"]}");
    }

    #[test]
    fn invalid_utf8_and_binary() {
        let b = run(b"{\"_id\":\"\xff\"}\n\x00\x01\x02garbage\n");
        let reasons: Vec<&str> = b.rejects.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(reasons, ["invalid utf-8 at byte 8", "not a json object"]);
    }
}

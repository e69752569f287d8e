//! Reading dumps: inputs (files, folders, stdin), gzip, and the three Elasticsearch export
//! formats, cut into chunks for the worker pool.
//!
//! - **NDJSON** (elasticdump `--type=data`): one hit per line (`_index`, `_id`, `_source`, …).
//!   Chunks are ~1 MiB runs of whole lines; workers split and parse them.
//! - **Bulk** (`_bulk` body): an action line (`{"index":{"_id":…}}`) followed by the source
//!   line, except for `delete`. The reader pairs the lines (it must parse the small action line
//!   to know whether a source follows) and hands out (id, source) pairs.
//! - **Scroll** (saved search or scroll responses, `{"hits":{"hits":[…]}}`): one or more
//!   response objects per file (concatenated or one per line), or a folder of page files.
//!   A page is read whole (pages are bounded by the scroll size); "line" numbers of its hits
//!   are their 1-based position in the file.
//!
//! The format is detected per file from its first JSON value ([`detect`]) unless forced.
//!
//! What one input can make the reader hold is capped ([`Limits`]): a line over
//! `max_line_bytes` is skipped to its end without being kept, as one reject with its number; a
//! scroll page over `max_page_bytes` likewise; a gzip stream expanding more than
//! `max_gzip_ratio` times is refused (a gzip bomb).
//! Compression is detected by the gzip magic bytes, not the file name; a `.gz` name without
//! them is an error. Folders are read recursively in name order, skipping dot files.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::read::MultiGzDecoder;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::IngestError;

/// Target size of a chunk handed to a worker.
const CHUNK_BYTES: usize = 1 << 20;

/// Decompressed bytes after which the gzip ratio is checked (small, very repetitive files are
/// fine).
const GZIP_RATIO_FLOOR: u64 = 64 << 20;

/// Caps on what one input may make the reader hold; see the module doc.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// Longest NDJSON or `_bulk` line.
    pub max_line_bytes: u64,
    /// Largest scroll page.
    pub max_page_bytes: u64,
    /// Most decompressed bytes per compressed byte, past [`GZIP_RATIO_FLOOR`].
    pub max_gzip_ratio: f64,
}

impl Default for Limits {
    fn default() -> Self {
        // A WordPress post is at most a few hundred KiB; a scroll page is bounded by the
        // scroll size (10,000 hits of a few KiB). Text JSON compresses 5-20×; gzip cannot
        // exceed ~1030×, which only a bomb (or a file of one repeated byte) approaches.
        Limits {
            max_line_bytes: 16 << 20,
            max_page_bytes: 256 << 20,
            max_gzip_ratio: 200.0,
        }
    }
}

/// The first bytes of an input (decompressed) and how many raw bytes it had, for the error
/// that says what an input without poems looks like.
#[derive(Clone, Debug, Default)]
pub(crate) struct Head {
    pub name: String,
    pub head: Vec<u8>,
    /// Raw (compressed) bytes read.
    pub bytes: u64,
}

/// How many bytes of each input's head are kept.
const HEAD_BYTES: usize = 512;

/// The total size of the inputs when all are files (for the progress bar's percent).
pub(crate) fn total_size(inputs: &[Input]) -> Option<u64> {
    inputs
        .iter()
        .map(|i| match i {
            Input::Stdin => None,
            Input::File(p) => std::fs::metadata(p).ok().map(|m| m.len()),
        })
        .sum()
}

/// What an input looks like, from its first bytes (decompressed), in words.
pub(crate) fn looks_like(head: &[u8], raw_bytes: u64) -> String {
    if raw_bytes == 0 {
        return "an empty file".into();
    }
    let body = strip_bom(head);
    let trimmed = body.trim_ascii_start();
    if trimmed.is_empty() {
        return "only whitespace".into();
    }
    let utf8_ok = match std::str::from_utf8(body) {
        Ok(_) => true,
        // A character cut by the head's end is fine.
        Err(e) => e.error_len().is_none(),
    };
    let controls = body
        .iter()
        .filter(|&&b| b < 0x20 && !matches!(b, b'\n' | b'\r' | b'\t'))
        .count();
    if !utf8_ok || body.contains(&0) || controls * 20 > body.len() {
        return "binary data, not JSON text".into();
    }
    let first_line = String::from_utf8_lossy(trimmed.split(|&b| b == b'\n').next().unwrap_or(b""))
        .chars()
        .take(60)
        .collect::<String>();
    match trimmed[0] {
        b'[' => "a JSON array; ingest reads one document per line (elasticdump NDJSON, a _bulk body) or search responses: `jq -c '.[]'` turns an array into lines".into(),
        b'{' => format!("JSON objects (`{first_line}`)"),
        _ => format!("text that is not JSON (`{first_line}`)"),
    }
}

/// How a dump file is laid out; see the module doc.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DumpFormat {
    /// elasticdump NDJSON: one hit per line.
    Ndjson,
    /// `_bulk` body: action line, then source line.
    Bulk,
    /// Saved search/scroll responses: `{"hits":{"hits":[…]}}`.
    Scroll,
}

/// One input after expanding folders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Input {
    Stdin,
    File(PathBuf),
}

impl Input {
    /// The name used in rejects and error messages.
    pub(crate) fn name(&self) -> String {
        match self {
            Input::Stdin => "-".to_string(),
            Input::File(p) => p.display().to_string(),
        }
    }
}

/// Expands `-`, files and folders (recursively, name order, dot files skipped).
pub(crate) fn expand_inputs(paths: &[PathBuf]) -> Result<Vec<Input>, IngestError> {
    if paths.is_empty() {
        return Err(IngestError::InvalidOptions("no inputs given".into()));
    }
    let mut out = Vec::new();
    for p in paths {
        if p.as_os_str() == "-" {
            out.push(Input::Stdin);
            continue;
        }
        let meta = std::fs::metadata(p)
            .map_err(|e| IngestError::input(p.display().to_string(), io_message(&e)))?;
        if meta.is_dir() {
            let before = out.len();
            walk(p, &mut out)?;
            if out.len() == before {
                return Err(IngestError::input(
                    p.display().to_string(),
                    "folder holds no dump files",
                ));
            }
        } else {
            out.push(Input::File(p.clone()));
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<Input>) -> Result<(), IngestError> {
    let err = |e: io::Error| IngestError::input(dir.display().to_string(), io_message(&e));
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(err)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(err)?;
    entries.sort();
    for path in entries {
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            continue;
        }
        if path.is_dir() {
            walk(&path, out)?;
        } else {
            out.push(Input::File(path));
        }
    }
    Ok(())
}

/// An io error as a lowercase message without the OS error code.
pub(crate) fn io_message(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file or folder".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        io::ErrorKind::UnexpectedEof => "unexpected end of stream (truncated?)".into(),
        _ => {
            let s = e.to_string();
            let s = s.split(" (os error").next().unwrap_or(&s).to_string();
            let mut c = s.chars();
            match c.next() {
                Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
                None => s,
            }
        }
    }
}

/// Counts bytes as they are read from the raw (possibly compressed) input: in total, for
/// progress, and for this input, for the gzip ratio.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
    own: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        self.own.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Refuses a gzip stream that expands more than `max_ratio` times its compressed size (once
/// past [`GZIP_RATIO_FLOOR`] out): a gzip bomb would otherwise feed the pipeline forever.
struct RatioGuard<R> {
    inner: R,
    compressed: Arc<AtomicU64>,
    out: u64,
    max_ratio: f64,
}

impl<R: Read> Read for RatioGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out += n as u64;
        if self.out > GZIP_RATIO_FLOOR {
            let input = self.compressed.load(Ordering::Relaxed).max(1);
            let ratio = self.out as f64 / input as f64;
            if ratio > self.max_ratio {
                return Err(io::Error::other(format!(
                    "gzip stream expands more than {}× ({} MB out of {} MB so far): refused as a likely gzip bomb (raise --max-gzip-ratio if the dump is genuine)",
                    self.max_ratio,
                    self.out >> 20,
                    (input as f64 / 1e6).max(0.01).round_ties_even() as u64,
                )));
            }
        }
        Ok(n)
    }
}

/// Opens an input, transparently decompressing gzip (detected by its magic bytes).
pub(crate) fn open(
    input: &Input,
    counter: Arc<AtomicU64>,
    max_gzip_ratio: f64,
) -> Result<(Box<dyn Read + Send>, Arc<AtomicU64>), IngestError> {
    let name = input.name();
    let raw: Box<dyn Read + Send> = match input {
        Input::Stdin => Box::new(io::stdin()),
        Input::File(p) => {
            Box::new(File::open(p).map_err(|e| IngestError::input(&name, io_message(&e)))?)
        }
    };
    let own = Arc::new(AtomicU64::new(0));
    Ok((
        decode(&name, raw, counter, own.clone(), max_gzip_ratio)?,
        own,
    ))
}

/// Wraps a raw stream (a file, stdin, anything readable): gzip is detected by its magic
/// bytes; a `.gz` name without them is an error.
/// `own` counts this input's raw bytes; a gzip stream expanding more than `max_gzip_ratio`
/// times them fails its reads.
pub fn decode(
    name: &str,
    raw: Box<dyn Read + Send>,
    counter: Arc<AtomicU64>,
    own: Arc<AtomicU64>,
    max_gzip_ratio: f64,
) -> Result<Box<dyn Read + Send>, IngestError> {
    let mut buffered = BufReader::with_capacity(
        256 * 1024,
        Counting {
            inner: raw,
            count: counter,
            own: own.clone(),
        },
    );
    let head = buffered
        .fill_buf()
        .map_err(|e| IngestError::input(name, io_message(&e)))?;
    let gz = head.starts_with(&[0x1f, 0x8b]);
    if !gz && name.ends_with(".gz") {
        return Err(IngestError::input(name, "not a gzip stream"));
    }
    Ok(if gz {
        Box::new(RatioGuard {
            inner: MultiGzDecoder::new(buffered),
            compressed: own,
            out: 0,
            max_ratio: max_gzip_ratio,
        })
    } else {
        Box::new(buffered)
    })
}

/// Guesses the format from the start of a (decompressed) file: the first line that parses as
/// JSON decides (`hits` → scroll, a lone `index`/`create`/`update`/`delete` key → bulk,
/// anything else → NDJSON); a pretty-printed document whose first line does not parse is a
/// scroll page if it mentions `"hits"`.
pub fn detect(head: &[u8]) -> DumpFormat {
    #[derive(Deserialize)]
    struct Probe<'a> {
        #[serde(borrow, default)]
        hits: Option<&'a RawValue>,
        #[serde(borrow, default)]
        index: Option<&'a RawValue>,
        #[serde(borrow, default)]
        create: Option<&'a RawValue>,
        #[serde(borrow, default)]
        update: Option<&'a RawValue>,
        #[serde(borrow, default)]
        delete: Option<&'a RawValue>,
        #[serde(borrow, default)]
        _source: Option<&'a RawValue>,
    }
    for line in head.split(|&b| b == b'\n').take(50) {
        let line = strip_bom(trim_cr(line));
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let Ok(text) = std::str::from_utf8(line) else {
            continue;
        };
        let Ok(p) = serde_json::from_str::<Probe<'_>>(text) else {
            if text.trim_start().starts_with('{') {
                break; // a pretty-printed object: decided below
            }
            continue; // a log line before the data
        };
        if p._source.is_some() {
            return DumpFormat::Ndjson;
        }
        if p.hits.is_some() {
            return DumpFormat::Scroll;
        }
        let actions = [p.index, p.create, p.update, p.delete]
            .iter()
            .filter(|a| a.is_some())
            .count();
        return if actions == 1 {
            DumpFormat::Bulk
        } else {
            DumpFormat::Ndjson
        };
    }
    let window = &head[..head.len().min(64 * 1024)];
    if memchr::memmem::find(window, b"\"hits\"").is_some() {
        DumpFormat::Scroll
    } else {
        DumpFormat::Ndjson
    }
}

pub(crate) fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

pub(crate) fn strip_bom(line: &[u8]) -> &[u8] {
    line.strip_prefix(b"\xef\xbb\xbf").unwrap_or(line)
}

/// One document of a bulk or scroll file, ready for a worker.
#[derive(Debug)]
pub(crate) struct Doc {
    /// 1-based line (bulk: of the source line) or hit position (scroll).
    pub line: u64,
    /// Bulk: the id from the action line. Scroll: `None` (the hit carries its own).
    pub id: Option<String>,
    /// The JSON (scroll: the hit; bulk: the source) in the chunk's data, or why it is unusable.
    pub json: Result<Range<usize>, String>,
}

/// What a chunk holds.
#[derive(Debug)]
pub(crate) enum ChunkKind {
    /// Whole NDJSON lines; the first is line `first_line` (1-based) of the file.
    Lines { first_line: u64 },
    /// Scroll hits (each a full hit with `_id` and `_source`).
    Hits(Vec<Doc>),
    /// Bulk (id, source) pairs.
    Sources(Vec<Doc>),
}

/// A unit of work for the pool.
#[derive(Debug)]
pub(crate) struct Chunk {
    /// Input name, for rejects.
    pub file: Arc<str>,
    /// The bytes the items refer to.
    pub data: Vec<u8>,
    /// How to read `data`.
    pub kind: ChunkKind,
}

/// Reads every input in order and hands chunks to `emit` (which blocks when the pool is busy,
/// keeping memory bounded). Stops at the first input error or when `emit` returns false.
/// Each input's head is recorded in `heads` (for the no-poems error).
pub(crate) fn read_inputs(
    inputs: &[Input],
    forced: Option<DumpFormat>,
    counter: &Arc<AtomicU64>,
    limits: &Limits,
    heads: &std::sync::Mutex<Vec<Head>>,
    emit: &mut dyn FnMut(Chunk) -> bool,
) -> Result<(), IngestError> {
    for input in inputs {
        let name = input.name();
        let file: Arc<str> = Arc::from(name.as_str());
        let (stream, own) = open(input, counter.clone(), limits.max_gzip_ratio)?;
        let mut reader = BufReader::with_capacity(CHUNK_BYTES, stream);
        let err = |e: io::Error| IngestError::input(&name, gzip_message(&e));
        let head = reader.fill_buf().map_err(err)?;
        let format = forced.unwrap_or_else(|| detect(head));
        let index = {
            let mut heads = heads.lock().unwrap_or_else(|p| p.into_inner());
            heads.push(Head {
                name: name.clone(),
                head: head[..head.len().min(HEAD_BYTES)].to_vec(),
                bytes: 0,
            });
            heads.len() - 1
        };
        let result = read_format(&mut reader, format, &file, limits, emit);
        if let Some(h) = heads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(index)
        {
            h.bytes = own.load(Ordering::Relaxed);
        }
        if !result.map_err(err)? {
            break;
        }
    }
    Ok(())
}

/// Reads one (decompressed) stream in `format`; false when `emit` asked to stop.
pub(crate) fn read_format(
    reader: &mut BufReader<Box<dyn Read + Send>>,
    format: DumpFormat,
    file: &Arc<str>,
    limits: &Limits,
    emit: &mut dyn FnMut(Chunk) -> bool,
) -> io::Result<bool> {
    match format {
        DumpFormat::Ndjson => read_lines(reader, file, limits.max_line_bytes, emit),
        DumpFormat::Bulk => read_bulk(reader, file, limits.max_line_bytes, emit),
        DumpFormat::Scroll => read_scroll(reader, file, limits.max_page_bytes, emit),
    }
}

/// The reject reason of a line over the cap.
pub(crate) fn long_line_reason(cap: u64) -> String {
    format!("line longer than {cap} bytes (--max-line-bytes); skipped")
}

/// One reader-side reject as a chunk of its own.
fn reject_chunk(file: &Arc<str>, line: u64, reason: String) -> Chunk {
    Chunk {
        file: file.clone(),
        data: Vec::new(),
        kind: ChunkKind::Hits(vec![Doc {
            line,
            id: None,
            json: Err(reason),
        }]),
    }
}

/// Hands `docs` (and the `data` they point into) to `emit` as one chunk once they fill one;
/// false when `emit` asked to stop.
fn flush_if_full(
    file: &Arc<str>,
    data: &mut Vec<u8>,
    docs: &mut Vec<Doc>,
    kind: fn(Vec<Doc>) -> ChunkKind,
    emit: &mut dyn FnMut(Chunk) -> bool,
) -> bool {
    if data.len() < CHUNK_BYTES && docs.len() < 4096 {
        return true;
    }
    emit(Chunk {
        file: file.clone(),
        data: std::mem::take(data),
        kind: kind(std::mem::take(docs)),
    })
}

/// Discards input up to and including the next newline; false at EOF.
fn skip_line(reader: &mut impl BufRead) -> io::Result<bool> {
    loop {
        let buf = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(false);
        }
        if let Some(p) = memchr::memchr(b'\n', buf) {
            reader.consume(p + 1);
            return Ok(true);
        }
        let n = buf.len();
        reader.consume(n);
    }
}

fn gzip_message(e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::InvalidInput || e.kind() == io::ErrorKind::InvalidData {
        format!("corrupt gzip stream ({})", io_message(e))
    } else {
        io_message(e)
    }
}

/// Reads until `buf` holds at least `want` more bytes or the stream ends; returns false at EOF.
/// An interrupted read is retried (it is not the end of the input).
fn fill(reader: &mut impl Read, buf: &mut Vec<u8>, want: usize) -> io::Result<bool> {
    let target = buf.len() + want;
    while buf.len() < target {
        let start = buf.len();
        buf.resize(target, 0);
        let n = match reader.read(&mut buf[start..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                buf.truncate(start);
                continue;
            }
            Err(e) => {
                buf.truncate(start);
                return Err(e);
            }
        };
        buf.truncate(start + n);
        if n == 0 {
            return Ok(false);
        }
    }
    Ok(true)
}

fn read_lines(
    reader: &mut impl BufRead,
    file: &Arc<str>,
    max_line: u64,
    emit: &mut dyn FnMut(Chunk) -> bool,
) -> io::Result<bool> {
    let mut line = 1u64;
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let mut buf = std::mem::take(&mut carry);
        buf.reserve(CHUNK_BYTES);
        let more = fill(reader, &mut buf, CHUNK_BYTES)?;
        if buf.is_empty() {
            return Ok(true);
        }
        if more {
            // Keep the partial last line for the next chunk (a line longer than a chunk makes
            // a bigger chunk, up to the cap; past it the line is skipped, never held whole).
            match memchr::memrchr(b'\n', &buf) {
                Some(p) => carry = buf.split_off(p + 1),
                None if buf.len() as u64 > max_line => {
                    let more = skip_line(reader)?;
                    if !emit(reject_chunk(file, line, long_line_reason(max_line))) {
                        return Ok(false);
                    }
                    line += 1;
                    if !more {
                        return Ok(true);
                    }
                    continue;
                }
                None => {
                    carry = buf;
                    continue;
                }
            }
        }
        let lines = memchr::memchr_iter(b'\n', &buf).count() as u64;
        let first_line = line;
        line += lines;
        if !emit(Chunk {
            file: file.clone(),
            data: buf,
            kind: ChunkKind::Lines { first_line },
        }) {
            return Ok(false);
        }
        if !more {
            return Ok(true);
        }
    }
}

fn read_bulk(
    reader: &mut impl BufRead,
    file: &Arc<str>,
    max_line: u64,
    emit: &mut dyn FnMut(Chunk) -> bool,
) -> io::Result<bool> {
    #[derive(Deserialize)]
    struct Meta {
        #[serde(default)]
        _id: Option<serde_json::Value>,
    }
    let mut data = Vec::with_capacity(CHUNK_BYTES);
    let mut docs = Vec::new();
    let mut line_no = 0u64;
    // The id of the pending action whose source line comes next (Some(None): no `_id`).
    let mut pending: Option<(u64, Option<String>)> = None;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut *reader)
            .take(max_line + 1)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if n as u64 > max_line && !line.ends_with(b"\n") {
            // Over the cap: skip the rest unread. A source line's action goes with it.
            skip_line(reader)?;
            pending = None;
            docs.push(Doc {
                line: line_no,
                id: None,
                json: Err(long_line_reason(max_line)),
            });
            continue;
        }
        let l = strip_bom(trim_cr(line.strip_suffix(b"\n").unwrap_or(&line)));
        if l.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if let Some((_, id)) = pending.take() {
            let start = data.len();
            data.extend_from_slice(l);
            docs.push(Doc {
                line: line_no,
                id,
                json: Ok(start..data.len()),
            });
        } else {
            let action = std::str::from_utf8(l)
                .ok()
                .and_then(|s| {
                    serde_json::from_str::<std::collections::HashMap<String, Meta>>(s).ok()
                })
                .filter(|m| m.len() == 1);
            match action {
                Some(m) => {
                    let (kind, meta) = m.into_iter().next().expect("one entry");
                    let id = meta._id.map(|v| match v {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    });
                    match kind.as_str() {
                        "delete" => {}
                        "index" | "create" | "update" => pending = Some((line_no, id)),
                        _ => docs.push(Doc {
                            line: line_no,
                            id: None,
                            json: Err(format!("unknown bulk action '{kind}'")),
                        }),
                    }
                }
                None => docs.push(Doc {
                    line: line_no,
                    id: None,
                    json: Err("not a bulk action line".into()),
                }),
            }
        }
        if !flush_if_full(file, &mut data, &mut docs, ChunkKind::Sources, emit) {
            return Ok(false);
        }
    }
    if let Some((line, id)) = pending {
        docs.push(Doc {
            line,
            id,
            json: Err("bulk action without a source line".into()),
        });
    }
    if !docs.is_empty() {
        return Ok(emit(Chunk {
            file: file.clone(),
            data,
            kind: ChunkKind::Sources(docs),
        }));
    }
    Ok(true)
}

/// Where the page scanner of [`read_scroll`] is inside a JSON value.
#[derive(Default)]
struct JsonDepth {
    depth: u32,
    in_string: bool,
    escaped: bool,
}

impl JsonDepth {
    fn step(&mut self, b: u8) {
        if self.in_string {
            match (self.escaped, b) {
                (true, _) => self.escaped = false,
                (false, b'\\') => self.escaped = true,
                (false, b'"') => self.in_string = false,
                _ => {}
            }
            return;
        }
        match b {
            b'"' => self.in_string = true,
            b'{' | b'[' => self.depth += 1,
            b'}' | b']' => self.depth = self.depth.saturating_sub(1),
            _ => {}
        }
    }
}

/// Reads scroll pages one at a time: a scanner finds where each top-level JSON value ends, so a
/// page is held only up to `max_page` bytes (a larger one is skipped to its end as one reject)
/// and a broken page does not stop the pages after it.
fn read_scroll(
    reader: &mut impl BufRead,
    file: &Arc<str>,
    max_page: u64,
    emit: &mut dyn FnMut(Chunk) -> bool,
) -> io::Result<bool> {
    #[derive(Deserialize)]
    struct Page<'a> {
        #[serde(borrow)]
        hits: Hits<'a>,
    }
    #[derive(Deserialize)]
    struct Hits<'a> {
        #[serde(borrow, default)]
        hits: Vec<&'a RawValue>,
    }
    let mut hit_no = 0u64;
    let mut page_no = 0u64;
    let mut data = Vec::new();
    let mut docs: Vec<Doc> = Vec::new();
    let mut page: Vec<u8> = Vec::new();
    let mut scan = JsonDepth::default();
    // Inside a page (depth > 0 or just opened); skipping: over the cap, not kept.
    let (mut in_page, mut skipping) = (false, false);
    let mut at_start = true;
    // Takes a finished page: its hits, or one reject.
    let finish = |page: &[u8],
                  skipped: bool,
                  page_no: u64,
                  hit_no: &mut u64,
                  data: &mut Vec<u8>,
                  docs: &mut Vec<Doc>| {
        let reject = |docs: &mut Vec<Doc>, reason: String| {
            docs.push(Doc {
                line: *hit_no + 1,
                id: None,
                json: Err(reason),
            })
        };
        if skipped {
            return reject(
                docs,
                format!(
                    "scroll page {page_no} larger than {max_page} bytes (--max-page-bytes); skipped"
                ),
            );
        }
        let text = match std::str::from_utf8(page) {
            Ok(t) => t,
            Err(e) => return reject(docs, format!("invalid utf-8 at byte {}", e.valid_up_to())),
        };
        match serde_json::from_str::<Page<'_>>(text) {
            Ok(p) => {
                for hit in p.hits.hits {
                    *hit_no += 1;
                    let start = data.len();
                    data.extend_from_slice(hit.get().as_bytes());
                    docs.push(Doc {
                        line: *hit_no,
                        id: None,
                        json: Ok(start..data.len()),
                    });
                }
            }
            Err(e) => reject(
                docs,
                format!("not a search response page ({})", json_reason(&e)),
            ),
        }
    };
    loop {
        let buf = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            break;
        }
        let len = buf.len();
        let mut i = 0;
        if at_start {
            at_start = false;
            if buf.starts_with(b"\xef\xbb\xbf") {
                i = 3;
            }
        }
        let mut seg = i;
        while i < len {
            let b = buf[i];
            if !in_page {
                if b.is_ascii_whitespace() {
                    i += 1;
                    seg = i;
                    continue;
                }
                if b != b'{' {
                    // Not JSON between pages: the rest cannot be resynchronised.
                    docs.push(Doc {
                        line: hit_no + 1,
                        id: None,
                        json: Err("not a search response page (invalid json)".into()),
                    });
                    let n = buf.len();
                    reader.consume(n);
                    while !reader.fill_buf()?.is_empty() {
                        let n = reader.fill_buf()?.len();
                        reader.consume(n);
                    }
                    return Ok(emit(Chunk {
                        file: file.clone(),
                        data,
                        kind: ChunkKind::Hits(docs),
                    }));
                }
                in_page = true;
                page_no += 1;
                seg = i;
            }
            scan.step(b);
            i += 1;
            if scan.depth == 0 {
                if !skipping {
                    page.extend_from_slice(&buf[seg..i]);
                    skipping = page.len() as u64 > max_page;
                }
                finish(&page, skipping, page_no, &mut hit_no, &mut data, &mut docs);
                page.clear();
                (in_page, skipping) = (false, false);
                seg = i;
                if !flush_if_full(file, &mut data, &mut docs, ChunkKind::Hits, emit) {
                    return Ok(false);
                }
            }
        }
        if in_page && !skipping {
            page.extend_from_slice(&buf[seg..len]);
            if page.len() as u64 > max_page {
                skipping = true;
                page = Vec::new();
            }
        }
        reader.consume(len);
    }
    if in_page {
        if skipping {
            finish(&[], true, page_no, &mut hit_no, &mut data, &mut docs);
        } else {
            docs.push(Doc {
                line: hit_no + 1,
                id: None,
                json: Err("not a search response page (truncated json)".into()),
            });
        }
    }
    if !docs.is_empty() {
        return Ok(emit(Chunk {
            file: file.clone(),
            data,
            kind: ChunkKind::Hits(docs),
        }));
    }
    Ok(true)
}

/// A serde_json error as a short reason (no line/column: the reject has the line).
pub(crate) fn json_reason(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Eof => "truncated json".into(),
        Category::Syntax => "invalid json".into(),
        Category::Data => {
            let s = e.to_string();
            s.split(" at line ").next().unwrap_or(&s).to_string()
        }
        Category::Io => "io error".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_formats() {
        assert_eq!(
            detect(b"{\"_index\":\"i\",\"_id\":\"1\",\"_source\":{}}\n"),
            DumpFormat::Ndjson
        );
        assert_eq!(
            detect(b"\xef\xbb\xbf{\"_id\":\"1\",\"_source\":{}}"),
            DumpFormat::Ndjson
        );
        assert_eq!(
            detect(b"{\"index\":{\"_id\":\"1\"}}\n{\"content\":\"x\"}\n"),
            DumpFormat::Bulk
        );
        assert_eq!(
            detect(b"{\"took\":3,\"hits\":{\"hits\":[]}}"),
            DumpFormat::Scroll
        );
        assert_eq!(
            detect(b"{\n  \"took\": 3,\n  \"hits\": {\n"),
            DumpFormat::Scroll
        );
        assert_eq!(
            detect(b"Mon, 01 Jan 2018 | starting dump\n{\"_id\":\"1\",\"_source\":{}}\n"),
            DumpFormat::Ndjson
        );
        assert_eq!(detect(b""), DumpFormat::Ndjson);
    }

    fn chunks(data: &[u8], format: DumpFormat) -> Vec<Chunk> {
        chunks_with(data, format, Limits::default())
    }

    fn chunks_with(data: &[u8], format: DumpFormat, limits: Limits) -> Vec<Chunk> {
        let mut out = Vec::new();
        let mut emit = |c: Chunk| {
            out.push(c);
            true
        };
        let file: Arc<str> = Arc::from("t");
        let mut r =
            BufReader::new(Box::new(io::Cursor::new(data.to_vec())) as Box<dyn Read + Send>);
        read_format(&mut r, format, &file, &limits, &mut emit).unwrap();
        out
    }

    #[test]
    fn lines_keep_numbering_across_chunks() {
        let line = format!(
            "{{\"_id\":\"x\",\"_source\":{{\"content\":\"{}\"}}}}\n",
            "a".repeat(1000)
        );
        let data = line.repeat(3000); // ~3 MiB: several chunks
        let cs = chunks(data.as_bytes(), DumpFormat::Ndjson);
        assert!(cs.len() >= 3);
        let mut expect = 1;
        for c in &cs {
            let ChunkKind::Lines { first_line } = c.kind else {
                panic!()
            };
            assert_eq!(first_line, expect);
            assert!(c.data.ends_with(b"\n"));
            expect += memchr::memchr_iter(b'\n', &c.data).count() as u64;
        }
        assert_eq!(expect, 3001);
        // no trailing newline: the last line still arrives
        let cs = chunks(b"{}\n{}", DumpFormat::Ndjson);
        assert_eq!(cs.iter().map(|c| c.data.len()).sum::<usize>(), 5);
    }

    #[test]
    fn bulk_pairs_actions_and_sources() {
        let data = b"{\"index\":{\"_index\":\"i\",\"_id\":\"a\"}}\n{\"content\":\"x\"}\n{\"delete\":{\"_id\":\"b\"}}\n{\"create\":{\"_id\":7}}\r\n{\"content\":\"y\"}\r\ngarbage\n{\"index\":{}}\n";
        let cs = chunks(data, DumpFormat::Bulk);
        let ChunkKind::Sources(docs) = &cs[0].kind else {
            panic!()
        };
        assert_eq!(docs.len(), 4);
        assert_eq!(docs[0].id.as_deref(), Some("a"));
        assert_eq!(docs[0].line, 2);
        assert_eq!(
            &cs[0].data[docs[0].json.clone().unwrap()],
            b"{\"content\":\"x\"}"
        );
        assert_eq!(docs[1].id.as_deref(), Some("7"));
        assert_eq!(docs[2].json.as_ref().unwrap_err(), "not a bulk action line");
        assert_eq!(
            docs[3].json.as_ref().unwrap_err(),
            "bulk action without a source line"
        );
    }

    #[test]
    fn scroll_pages_with_braces_in_strings_and_a_broken_page_between() {
        let data = b"\xef\xbb\xbf{\"hits\":{\"hits\":[{\"_id\":\"a\",\"_source\":{\"content\":\"} { \\\" ]\"}}]}}\n{\"hits\":5}\n{\"hits\":{\"hits\":[{\"_id\":\"b\",\"_source\":{}}]}}";
        let cs = chunks(data, DumpFormat::Scroll);
        let docs: Vec<&Doc> = cs
            .iter()
            .flat_map(|c| match &c.kind {
                ChunkKind::Hits(d) => d.iter(),
                _ => [].iter(),
            })
            .collect();
        assert_eq!(docs.len(), 3);
        assert!(docs[0].json.is_ok() && docs[2].json.is_ok());
        assert_eq!(docs[1].line, 2);
        assert!(
            docs[1]
                .json
                .as_ref()
                .unwrap_err()
                .starts_with("not a search response page")
        );
    }

    #[test]
    fn scroll_pages_concatenated_and_broken() {
        let data = b"{\"hits\":{\"total\":2,\"hits\":[{\"_id\":\"a\",\"_source\":{}},{\"_id\":\"b\",\"_source\":{}}]}}\n{\"hits\":{\"hits\":[{\"_id\":\"c\",\"_source\":{}}]}}\n{\"hits\":{\"hits\":[{\"_id\":";
        let cs = chunks(data, DumpFormat::Scroll);
        let ChunkKind::Hits(docs) = &cs[0].kind else {
            panic!()
        };
        assert_eq!(docs.len(), 4);
        assert_eq!(docs[2].line, 3);
        assert!(
            docs[3]
                .json
                .as_ref()
                .unwrap_err()
                .contains("truncated json")
        );
    }

    #[test]
    fn gzip_by_magic_and_bad_gz_name() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let gz = dir.path().join("dump.data"); // compressed, no .gz name
        let mut enc =
            flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::fast());
        enc.write_all(b"{\"_id\":\"1\",\"_source\":{}}\n").unwrap();
        enc.finish().unwrap();
        let mut s = String::new();
        open(&Input::File(gz), Arc::default(), 200.0)
            .unwrap()
            .0
            .read_to_string(&mut s)
            .unwrap();
        assert!(s.starts_with("{\"_id\""));
        let fake = dir.path().join("dump.ndjson.gz");
        std::fs::write(&fake, b"{}\n").unwrap();
        let err = open(&Input::File(fake.clone()), Arc::default(), 200.0)
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            format!("{}: not a gzip stream", fake.display())
        );
    }

    #[test]
    fn stdin_like_streams_plain_and_gzip() {
        use std::io::Write;
        let doc = b"{\"_id\":\"1\",\"_source\":{}}\n".repeat(1000);
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&doc).unwrap();
        // two gzip members back to back (`cat a.gz b.gz`) read as one stream
        let mut gz = enc.finish().unwrap();
        gz.extend_from_within(..);
        let counter = Arc::new(AtomicU64::new(0));
        let mut out = Vec::new();
        decode(
            "-",
            Box::new(io::Cursor::new(gz.clone())),
            counter.clone(),
            Arc::default(),
            200.0,
        )
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
        assert_eq!(out.len(), doc.len() * 2);
        assert_eq!(counter.load(Ordering::Relaxed), gz.len() as u64);
        let mut out = Vec::new();
        decode(
            "-",
            Box::new(io::Cursor::new(doc.clone())),
            Arc::default(),
            Arc::default(),
            200.0,
        )
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
        assert_eq!(out, doc);
        // a corrupt gzip body fails on read with a message naming the problem
        let mut bad = gz[..40].to_vec();
        bad.extend_from_slice(&[0xff; 64]);
        let err = decode(
            "x",
            Box::new(io::Cursor::new(bad)),
            Arc::default(),
            Arc::default(),
            200.0,
        )
        .unwrap()
        .read_to_end(&mut Vec::new())
        .unwrap_err();
        assert!(
            gzip_message(&err).contains("gzip") || gzip_message(&err).contains("truncated"),
            "{err}"
        );
    }

    /// Returns `Interrupted` before every other read (a signal arriving mid-read).
    struct Interrupting {
        inner: io::Cursor<Vec<u8>>,
        next_fails: bool,
    }

    impl Read for Interrupting {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.next_fails = !self.next_fails;
            if !self.next_fails {
                return Err(io::Error::from(io::ErrorKind::Interrupted));
            }
            let n = buf.len().min(7);
            self.inner.read(&mut buf[..n])
        }
    }

    #[test]
    fn interrupted_reads_are_retried_not_taken_for_the_end() {
        // Before: `fill` took the first Interrupted as end of input and the dump was cut short.
        let data = b"{\"_id\":\"1\"}\n".repeat(100);
        let mut out = Vec::new();
        let mut emit = |c: Chunk| {
            out.push(c);
            true
        };
        let mut r = BufReader::with_capacity(
            16,
            Box::new(Interrupting {
                inner: io::Cursor::new(data.clone()),
                next_fails: false,
            }) as Box<dyn Read + Send>,
        );
        read_format(
            &mut r,
            DumpFormat::Ndjson,
            &Arc::from("t"),
            &Limits::default(),
            &mut emit,
        )
        .unwrap();
        let got: Vec<u8> = out.iter().flat_map(|c| c.data.clone()).collect();
        assert_eq!(got, data);
        let mut buf = Vec::new();
        let mut src = Interrupting {
            inner: io::Cursor::new(b"abcdefghij".to_vec()),
            next_fails: false,
        };
        assert!(fill(&mut src, &mut buf, 10).unwrap());
        assert_eq!(buf, b"abcdefghij");
    }

    #[test]
    fn a_line_over_the_cap_is_skipped_unheld() {
        let limits = Limits {
            max_line_bytes: 1024,
            ..Limits::default()
        };
        let mut data = b"{}\n".to_vec();
        data.extend(std::iter::repeat_n(b'x', 3 << 20));
        data.extend_from_slice(b"\n{}\n");
        let cs = chunks_with(&data, DumpFormat::Ndjson, limits);
        // The big line never reaches a chunk: one reject with its number, the lines around it.
        assert!(cs.iter().all(|c| c.data.len() < 2 << 20));
        let rejects: Vec<(u64, String)> = cs
            .iter()
            .filter_map(|c| match &c.kind {
                ChunkKind::Hits(d) => Some((d[0].line, d[0].json.clone().unwrap_err())),
                _ => None,
            })
            .collect();
        assert_eq!(rejects, [(2, long_line_reason(1024))]);
        let firsts: Vec<u64> = cs
            .iter()
            .filter_map(|c| match c.kind {
                ChunkKind::Lines { first_line } => Some(first_line),
                _ => None,
            })
            .collect();
        assert_eq!(firsts, [1, 3]);
    }

    #[test]
    fn looks_like_names_what_it_sees() {
        assert_eq!(looks_like(b"", 0), "an empty file");
        assert_eq!(looks_like(b" \n\n", 3), "only whitespace");
        assert_eq!(
            looks_like(b"\x00\x01\xff\xfe", 4),
            "binary data, not JSON text"
        );
        assert!(looks_like(b"  [{\"_id\": 1}]", 14).starts_with("a JSON array"));
        assert_eq!(looks_like(b"{\"a\":1}\n{", 9), "JSON objects (`{\"a\":1}`)");
        assert_eq!(
            looks_like(b"hello there", 11),
            "text that is not JSON (`hello there`)"
        );
        // UTF-8 cut by the head's end is still text.
        assert!(looks_like("{\"t\":\"é".as_bytes().split_last().unwrap().1, 8).starts_with("JSON"));
    }

    #[test]
    fn folders_expand_sorted_without_dot_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.json"), b"{}").unwrap();
        std::fs::write(dir.path().join("a.json"), b"{}").unwrap();
        std::fs::write(dir.path().join(".hidden"), b"{}").unwrap();
        let got = expand_inputs(&[dir.path().to_path_buf(), PathBuf::from("-")]).unwrap();
        assert_eq!(
            got,
            vec![
                Input::File(dir.path().join("a.json")),
                Input::File(dir.path().join("b.json")),
                Input::Stdin
            ]
        );
        let empty = tempfile::tempdir().unwrap();
        assert!(
            expand_inputs(&[empty.path().to_path_buf()])
                .unwrap_err()
                .to_string()
                .ends_with("folder holds no dump files")
        );
        assert!(
            expand_inputs(&[PathBuf::from("/nonexistent/x")])
                .unwrap_err()
                .to_string()
                .ends_with("no such file or folder")
        );
    }
}

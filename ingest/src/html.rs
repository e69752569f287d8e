//! HTML (as WordPress renders post content) to plain poem text.
//!
//! WordPress posts reach the dump in many renderings of the same text: `wpautop` output
//! (`<p>` per stanza, `<br />\n` per line), the same without newlines, one `<p>` per line with
//! `<p>&nbsp;</p>` between stanzas, Gutenberg blocks (`<!-- wp:paragraph -->`), verse blocks
//! (`<pre class="wp-block-verse">` with literal newlines), `&nbsp;` indentation, and raw text
//! with `\n` or `\r\n`. [`html_to_text`] maps all of them to one canonical form so the same poem
//! gives the same text (and so the same dedupe key) whichever way it was posted:
//!
//! - lines end with `\n`; `<br>` and the end of `<li>`/`<tr>` break a line;
//! - paragraphs (`<p>`, `<div>`, `<pre>`, headings, …) are stanzas, separated by one blank line;
//!   except when every paragraph is a single line (the "one `<p>` per line" rendering): then
//!   paragraphs are lines and empty paragraphs are the stanza breaks;
//! - a literal newline is a line break (raw text, `<pre>`), except directly after a tag that
//!   already broke the line (`<br />\n`, `</p>\n<p>`), where it is layout of the HTML source;
//! - comments (`<!-- wp:... -->`), `<script>`/`<style>` bodies and all other tags are dropped;
//!   entities (named, decimal, hex) are decoded;
//! - runs of spaces, tabs and no-break spaces fold to one space and lines are trimmed at both
//!   ends (WordPress indents with `&nbsp;` runs; the reference corpus keeps no indentation);
//!   runs of blank lines fold to one stanza break; leading and trailing blank lines go;
//! - control characters (NUL included: Postgres text cannot hold it) are dropped; the result is
//!   Unicode NFC and has no trailing newline.

use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};

/// Paragraph boundary marker inside the intermediate buffer. Input control characters are
/// dropped before they reach the buffer, so it cannot collide with text.
const PARA: char = '\u{1}';
/// An empty paragraph element (`<p>&nbsp;</p>`): a stanza break in the one-`<p>`-per-line
/// rendering.
const EMPTY: char = '\u{2}';

/// Paragraphs averaging at most this many characters, all of one line, are read as lines of a
/// poem posted one `<p>` per line rather than as prose paragraphs.
const LINE_PARAGRAPH_MAX_MEAN_CHARS: usize = 80;

/// Which newlines directly after a tag are HTML source layout rather than line breaks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Absorb {
    /// Newlines are line breaks.
    None,
    /// One newline right after `<br>` (wpautop writes `<br />\n`).
    One,
    /// All newlines until text, after a paragraph boundary (`</p>\n\n<p>`).
    All,
}

struct Builder {
    out: String,
    absorb: Absorb,
    /// Start of the current paragraph's text in `out`.
    seg_start: usize,
    /// Whether the current paragraph was opened by a tag (so an empty one is an element).
    open_block: bool,
}

impl Builder {
    fn text(&mut self, s: &str) {
        // Fast path: copy runs of ordinary characters whole; only bytes that may start
        // something special (ASCII whitespace and controls, and the lead bytes of U+0080..U+00BF
        // (C1 controls, no-break space, soft hyphen) and of U+FEFF) go through `char`.
        let bytes = s.as_bytes();
        let special = |b: u8| b <= b' ' || b == 0x7f || b == 0xc2 || b == 0xef;
        let mut i = 0;
        while i < bytes.len() {
            let run = bytes[i..]
                .iter()
                .position(|&b| special(b))
                .map_or(bytes.len(), |p| i + p);
            if run > i {
                self.absorb = Absorb::None;
                self.out.push_str(&s[i..run]);
                i = run;
                continue;
            }
            // A special byte starts a char here (0xc2/0xef are lead bytes, never continuation).
            let c = s[i..].chars().next().expect("char boundary");
            self.char(c);
            i += c.len_utf8();
        }
    }

    fn char(&mut self, c: char) {
        match c {
            '\n' => self.literal_newline(),
            ' ' | '\t' | '\u{a0}' => self.out.push(' '),
            // Drop controls (NUL included), BOMs and soft hyphens.
            c if c.is_control() || c == '\u{feff}' || c == '\u{ad}' => {}
            c => {
                self.absorb = Absorb::None;
                self.out.push(c);
            }
        }
    }

    fn literal_newline(&mut self) {
        match self.absorb {
            Absorb::None => self.out.push('\n'),
            Absorb::One => self.absorb = Absorb::None,
            Absorb::All => {}
        }
    }

    fn line_break(&mut self) {
        self.out.push('\n');
        self.absorb = Absorb::One;
    }

    fn paragraph(&mut self, opening: bool) {
        let blank = self.out[self.seg_start..]
            .bytes()
            .all(|c| c == b' ' || c == b'\n');
        if blank {
            self.out.truncate(self.seg_start);
            if !opening && self.open_block {
                self.out.push(EMPTY);
                self.out.push(PARA);
            }
        } else {
            self.out.push(PARA);
        }
        self.seg_start = self.out.len();
        self.open_block = opening;
        self.absorb = Absorb::All;
    }
}

/// Converts WordPress post HTML (or plain text) to canonical poem text; see the module doc.
pub fn html_to_text(input: &str) -> String {
    let mut b = Builder {
        out: String::with_capacity(input.len()),
        absorb: Absorb::All,
        seg_start: 0,
        open_block: false,
    };
    let bytes = input.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'<' => match tag(&input[i..]) {
                Some((consumed, action)) => {
                    i += consumed;
                    match action {
                        TagAction::Drop => {}
                        TagAction::Line => b.line_break(),
                        TagAction::Paragraph { opening } => b.paragraph(opening),
                        TagAction::SkipUntil(close) => {
                            i += find_ci(&input[i..], close).map_or(input.len() - i, |p| p);
                        }
                    }
                }
                None => {
                    b.char('<');
                    i += 1;
                }
            },
            b'&' => {
                let (consumed, decoded) = entity(&input[i..]);
                match decoded {
                    Some(Decoded::Char(c)) => b.char(c),
                    Some(Decoded::Str(s)) => b.text(s),
                    None => b.char('&'),
                }
                i += consumed;
            }
            b'\r' => {
                b.literal_newline();
                i += if bytes.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
            }
            _ => {
                let end =
                    memchr::memchr3(b'<', b'&', b'\r', &bytes[i..]).map_or(bytes.len(), |p| i + p);
                b.text(&input[i..end]);
                i = end;
            }
        }
    }
    let text = assemble(&b.out);
    match is_nfc_quick(text.chars()) {
        IsNormalized::Yes => text,
        _ => text.nfc().collect(),
    }
}

/// Folds horizontal whitespace in a line to single spaces and trims it. (The buffer only holds
/// `' '` as horizontal whitespace: tabs and no-break spaces became spaces on the way in.)
fn clean_line(line: &str, out: &mut String) {
    let bytes = line.as_bytes();
    let mut i = 0;
    let mut first = true;
    while i < bytes.len() {
        // skip spaces
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
        if i == bytes.len() {
            break;
        }
        let end = memchr::memchr(b' ', &bytes[i..]).map_or(bytes.len(), |p| i + p);
        if !first {
            out.push(' ');
        }
        out.push_str(&line[i..end]);
        first = false;
        i = end;
    }
}

/// Turns the marked-up buffer into the final text: paragraphs become stanzas (or lines, in the
/// one-paragraph-per-line rendering), lines are cleaned, blank runs fold to one.
fn assemble(buf: &str) -> String {
    let is_blank = |p: &str| p.bytes().all(|c| c == b' ' || c == b'\n');
    let mut nonempty = 0usize;
    let mut single_line = true;
    let mut has_empty = false;
    let mut total_chars = 0usize;
    for p in buf.split(PARA) {
        if p.starts_with(EMPTY) {
            has_empty = true;
            continue;
        }
        if is_blank(p) {
            continue;
        }
        nonempty += 1;
        if p.trim_matches([' ', '\n']).contains('\n') {
            single_line = false;
        }
        total_chars += p.trim_matches([' ', '\n']).chars().count();
    }
    let lines_mode = nonempty >= 2
        && single_line
        && (has_empty || total_chars / nonempty <= LINE_PARAGRAPH_MAX_MEAN_CHARS);

    let mut out = String::with_capacity(buf.len());
    // Whether a stanza break is owed before the next non-blank line.
    let mut pending_blank = false;
    let mut line_buf = String::new();
    for p in buf.split(PARA) {
        if p.starts_with(EMPTY) {
            pending_blank = true;
            continue;
        }
        if !lines_mode {
            pending_blank = true;
        }
        let mut para_has_text = false;
        for line in p.split('\n') {
            line_buf.clear();
            clean_line(line, &mut line_buf);
            if line_buf.is_empty() {
                pending_blank = true;
                continue;
            }
            if !out.is_empty() {
                out.push('\n');
                if pending_blank {
                    out.push('\n');
                }
            }
            out.push_str(&line_buf);
            pending_blank = false;
            para_has_text = true;
        }
        if lines_mode && para_has_text {
            // A one-line paragraph's trailing newline (`<br></p>`) is layout, not a stanza.
            pending_blank = false;
        }
    }
    out
}

enum TagAction {
    Drop,
    Line,
    /// A block boundary; `opening` tells `<p>` from `</p>`.
    Paragraph {
        opening: bool,
    },
    /// Skip the element's content up to (not past) this closing tag (`</script`).
    SkipUntil(&'static str),
}

/// Parses the tag, comment or declaration at the start of `s` (which starts with `<`).
/// Returns the bytes consumed and what it means, or `None` if `<` is plain text.
fn tag(s: &str) -> Option<(usize, TagAction)> {
    let bytes = s.as_bytes();
    if let Some(rest) = s.strip_prefix("<!--") {
        let end = rest.find("-->").map_or(s.len(), |p| 4 + p + 3);
        return Some((end, TagAction::Drop));
    }
    let second = *bytes.get(1)?;
    if second == b'!' || second == b'?' {
        let end = s.find('>').map_or(s.len(), |p| p + 1);
        return Some((end, TagAction::Drop));
    }
    let closing = second == b'/';
    let name_start = if closing { 2 } else { 1 };
    let name_len = bytes[name_start..]
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric())
        .count();
    if name_len == 0 || !bytes[name_start].is_ascii_alphabetic() {
        return None;
    }
    // Find the closing '>' outside quoted attribute values.
    let mut quote: Option<u8> = None;
    let mut end = None;
    for (k, &c) in bytes.iter().enumerate().skip(name_start + name_len) {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == b'"' || c == b'\'' => quote = Some(c),
            None if c == b'>' => {
                end = Some(k + 1);
                break;
            }
            None if c == b'<' => return None,
            None => {}
        }
    }
    let end = end?;
    let mut name = [0u8; 12];
    let n = name_len.min(name.len());
    for (d, s) in name.iter_mut().zip(&bytes[name_start..name_start + n]) {
        *d = s.to_ascii_lowercase();
    }
    let name = if name_len > name.len() {
        &b""[..]
    } else {
        &name[..n]
    };
    let action = match name {
        b"br" => TagAction::Line,
        b"li" | b"tr" | b"dt" | b"dd" if closing => TagAction::Line,
        b"p" | b"div" | b"pre" | b"blockquote" | b"h1" | b"h2" | b"h3" | b"h4" | b"h5" | b"h6"
        | b"ul" | b"ol" | b"dl" | b"table" | b"section" | b"article" | b"header" | b"footer"
        | b"figure" | b"figcaption" | b"hr" | b"address" | b"aside" | b"nav" | b"main" => {
            TagAction::Paragraph { opening: !closing }
        }
        b"script" if !closing => TagAction::SkipUntil("</script"),
        b"style" if !closing => TagAction::SkipUntil("</style"),
        _ => TagAction::Drop,
    };
    Some((end, action))
}

/// Case-insensitive ASCII search of `needle` in `hay`.
fn find_ci(hay: &str, needle: &str) -> Option<usize> {
    let n = needle.as_bytes();
    hay.as_bytes()
        .windows(n.len())
        .position(|w| w.eq_ignore_ascii_case(n))
}

enum Decoded {
    Char(char),
    Str(&'static str),
}

/// Decodes the entity at the start of `s` (which starts with `&`): bytes consumed and value,
/// or `(1, None)` when it is not an entity.
fn entity(s: &str) -> (usize, Option<Decoded>) {
    let bytes = s.as_bytes();
    let semi = match bytes.iter().take(40).position(|&c| c == b';') {
        Some(p) => p,
        None => return (1, None),
    };
    let body = &s[1..semi];
    if let Some(num) = body.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok(),
            None => num.parse::<u32>().ok(),
        };
        return match code {
            // HTML maps C1 code points to Windows-1252 (&#8217; is the usual, &#146; happens).
            Some(c @ 0x80..=0x9f) => (semi + 1, Some(Decoded::Char(windows_1252(c)))),
            Some(c) => (semi + 1, char::from_u32(c).map(Decoded::Char)),
            None => (1, None),
        };
    }
    match named_entity(body) {
        Some(d) => (semi + 1, Some(d)),
        None => (1, None),
    }
}

fn windows_1252(c: u32) -> char {
    const TABLE: [char; 32] = [
        '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8d}', 'Ž',
        '\u{8f}', '\u{90}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9d}',
        'ž', 'Ÿ',
    ];
    TABLE[(c - 0x80) as usize]
}

fn named_entity(name: &str) -> Option<Decoded> {
    use Decoded::{Char as C, Str as S};
    Some(match name {
        "amp" | "AMP" => C('&'),
        "lt" | "LT" => C('<'),
        "gt" | "GT" => C('>'),
        "quot" | "QUOT" => C('"'),
        "apos" => C('\''),
        "nbsp" | "ensp" | "emsp" | "thinsp" | "NonBreakingSpace" => C(' '),
        "shy" | "zwj" | "zwnj" | "lrm" | "rlm" => S(""),
        "rsquo" | "rsquor" => C('’'),
        "lsquo" => C('‘'),
        "rdquo" | "rdquor" => C('”'),
        "ldquo" => C('“'),
        "sbquo" => C('‚'),
        "bdquo" => C('„'),
        "ndash" => C('–'),
        "mdash" => C('—'),
        "hellip" => C('…'),
        "laquo" => C('«'),
        "raquo" => C('»'),
        "lsaquo" => C('‹'),
        "rsaquo" => C('›'),
        "prime" => C('′'),
        "Prime" => C('″'),
        "bull" => C('•'),
        "middot" => C('·'),
        "dagger" => C('†'),
        "Dagger" => C('‡'),
        "copy" => C('©'),
        "reg" => C('®'),
        "trade" => C('™'),
        "deg" => C('°'),
        "sect" => C('§'),
        "para" => C('¶'),
        "times" => C('×'),
        "divide" => C('÷'),
        "frac12" => C('½'),
        "frac14" => C('¼'),
        "frac34" => C('¾'),
        "euro" => C('€'),
        "pound" => C('£'),
        "cent" => C('¢'),
        "yen" => C('¥'),
        "iexcl" => C('¡'),
        "iquest" => C('¿'),
        "szlig" => C('ß'),
        "aacute" => C('á'),
        "Aacute" => C('Á'),
        "agrave" => C('à'),
        "Agrave" => C('À'),
        "acirc" => C('â'),
        "Acirc" => C('Â'),
        "auml" => C('ä'),
        "Auml" => C('Ä'),
        "atilde" => C('ã'),
        "aring" => C('å'),
        "aelig" => C('æ'),
        "AElig" => C('Æ'),
        "ccedil" => C('ç'),
        "Ccedil" => C('Ç'),
        "eacute" => C('é'),
        "Eacute" => C('É'),
        "egrave" => C('è'),
        "Egrave" => C('È'),
        "ecirc" => C('ê'),
        "Ecirc" => C('Ê'),
        "euml" => C('ë'),
        "iacute" => C('í'),
        "igrave" => C('ì'),
        "icirc" => C('î'),
        "iuml" => C('ï'),
        "ntilde" => C('ñ'),
        "Ntilde" => C('Ñ'),
        "oacute" => C('ó'),
        "Oacute" => C('Ó'),
        "ograve" => C('ò'),
        "ocirc" => C('ô'),
        "ouml" => C('ö'),
        "Ouml" => C('Ö'),
        "otilde" => C('õ'),
        "oslash" => C('ø'),
        "Oslash" => C('Ø'),
        "oelig" => C('œ'),
        "OElig" => C('Œ'),
        "uacute" => C('ú'),
        "ugrave" => C('ù'),
        "ucirc" => C('û'),
        "uuml" => C('ü'),
        "Uuml" => C('Ü'),
        "yacute" => C('ý'),
        "yuml" => C('ÿ'),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::html_to_text as t;

    #[test]
    fn autop_stanzas_and_lines() {
        let html = "<p>The kettle hums a tune<br />\nthe window fogs with rain</p>\n<p>I write your name<br />\nand wipe it off again</p>";
        assert_eq!(
            t(html),
            "The kettle hums a tune\nthe window fogs with rain\n\nI write your name\nand wipe it off again"
        );
    }

    #[test]
    fn autop_min_without_newlines() {
        let html = "<p>one<br>two<br/>three</p><p>four<br />five</p>";
        assert_eq!(t(html), "one\ntwo\nthree\n\nfour\nfive");
    }

    #[test]
    fn paragraph_per_line_with_empty_paragraph_stanzas() {
        let html = "<p>one line</p>\n<p>two line</p>\n<p>&nbsp;</p>\n<p>three line</p>";
        assert_eq!(t(html), "one line\ntwo line\n\nthree line");
        let no_stanzas = "<p>a short line</p>\n<p>another short line</p>\n<p>and a third</p>";
        assert_eq!(
            t(no_stanzas),
            "a short line\nanother short line\nand a third"
        );
    }

    #[test]
    fn prose_paragraphs_stay_stanzas() {
        let long = "word ".repeat(30);
        let html = format!("<p>{long}</p>\n<p>{long}</p>");
        assert_eq!(t(&html).matches("\n\n").count(), 1);
    }

    #[test]
    fn gutenberg_blocks() {
        let html = "<!-- wp:paragraph -->\n<p>first<br>second</p>\n<!-- /wp:paragraph -->\n\n<!-- wp:paragraph -->\n<p>third</p>\n<!-- /wp:paragraph -->";
        assert_eq!(t(html), "first\nsecond\n\nthird");
    }

    #[test]
    fn verse_block_keeps_newlines() {
        let html = "<!-- wp:verse -->\n<pre class=\"wp-block-verse\">alpha\nbeta\n\ngamma&rsquo;s</pre>\n<!-- /wp:verse -->";
        assert_eq!(t(html), "alpha\nbeta\n\ngamma’s");
    }

    #[test]
    fn nbsp_indentation_is_dropped() {
        let html = "<p>top line<br/>\n&nbsp;&nbsp;&nbsp;&nbsp;indented line<br/>\nlast</p>";
        assert_eq!(t(html), "top line\nindented line\nlast");
    }

    #[test]
    fn raw_text_with_crlf_and_nbsp_stanza() {
        assert_eq!(
            t("a line  \r\nb line\r\n\r\n\r\nc line\r\n"),
            "a line\nb line\n\nc line"
        );
        assert_eq!(t("a\n&nbsp;\nb"), "a\n\nb");
        assert_eq!(t("a\rb"), "a\nb");
    }

    #[test]
    fn entities() {
        assert_eq!(
            t("it&#8217;s &amp; &lt;b&gt; &#x2014; &eacute;&nbsp;x &#146;"),
            "it’s & <b> — é x ’"
        );
        assert_eq!(t("&bogus; & &#xZZ; &"), "&bogus; & &#xZZ; &");
        assert_eq!(t("&#0;nul"), "nul");
    }

    #[test]
    fn comments_scripts_and_odd_angles() {
        assert_eq!(
            t("a <!-- hidden --> b<script>var x = '<p>';</script>"),
            "a b"
        );
        assert_eq!(t("1 < 2 and 3 <4"), "1 < 2 and 3 <4");
        assert_eq!(t("<a href=\"x>y\">link</a>"), "link");
        assert_eq!(t("<!-- unterminated"), "");
    }

    #[test]
    fn lists_break_lines() {
        assert_eq!(t("<ul><li>one</li><li>two</li></ul>"), "one\ntwo");
    }

    #[test]
    fn empty_renderings() {
        for html in [
            "",
            "   ",
            "<p>&nbsp;</p>",
            "\u{a0}\n",
            "<p></p><p> </p>",
            "<br><br>",
        ] {
            assert_eq!(t(html), "", "{html:?}");
        }
    }

    #[test]
    fn nfc_normalised() {
        assert_eq!(t("Mu\u{308}ller"), "Müller");
    }

    #[test]
    fn cjk_verse_with_br() {
        let html = "<pre class=\"wp-block-verse\">一重山，两重山。<br>山远天高烟水寒。</pre>";
        assert_eq!(t(html), "一重山，两重山。\n山远天高烟水寒。");
    }
}

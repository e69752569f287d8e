//! A minimal SVG writer and the text measurements that layout depends on.
//!
//! Layout needs to know how wide a label is before drawing it (to size margins and the
//! legend, and to shorten labels that would overflow). The widths come from the advance
//! table of DejaVu Sans, the font the PNG renderer embeds and the first family the SVG
//! asks for, so the measurement is exact where it matters most.

use std::fmt::Write;

/// Font stack for every text element; DejaVu Sans first because that is what the PNG
/// renderer has and what [`text_width`] measures.
pub const FONT_FAMILY: &str = "DejaVu Sans, Verdana, Arial, sans-serif";

/// Colour of axes, tick labels and titles.
pub const INK: &str = "#222222";
/// Colour of secondary text (notes, style keys).
pub const MUTED: &str = "#666666";
/// Colour of grid lines.
pub const GRID: &str = "#e4e4e4";

/// An SVG document under construction; elements are appended in drawing order.
pub struct Svg {
    /// The markup so far; `finish` closes the root element.
    out: String,
}

/// Horizontal alignment of a text element relative to its anchor point.
#[derive(Clone, Copy)]
pub enum Anchor {
    /// Text starts at the anchor (legend labels).
    Start,
    /// Text is centred on the anchor (titles, x tick labels).
    Middle,
    /// Text ends at the anchor (y tick labels, right-aligned words).
    End,
}

impl Anchor {
    fn as_str(self) -> &'static str {
        match self {
            Anchor::Start => "start",
            Anchor::Middle => "middle",
            Anchor::End => "end",
        }
    }
}

/// A text element's look; `class` lets tests (and CSS) find labels by role.
pub struct TextStyle<'a> {
    /// Font size in user units (pixels in the PNG).
    pub size: f64,
    /// Bold weight, for titles and the figures a chart is about.
    pub bold: bool,
    /// Where the anchor point sits in the text.
    pub anchor: Anchor,
    /// Text colour.
    pub fill: &'a str,
    /// The `class` attribute; empty for none.
    pub class: &'a str,
}

impl<'a> TextStyle<'a> {
    /// Regular weight text; see [`TextStyle::bold`].
    pub fn new(size: f64, anchor: Anchor, fill: &'a str, class: &'a str) -> TextStyle<'a> {
        TextStyle {
            size,
            bold: false,
            anchor,
            fill,
            class,
        }
    }

    /// The same style in bold.
    pub fn bold(self) -> TextStyle<'a> {
        TextStyle { bold: true, ..self }
    }
}

impl Svg {
    /// Starts a document of `width` × `height` user units on a white background.
    pub fn new(width: f64, height: f64) -> Svg {
        let mut out = String::with_capacity(16 * 1024);
        let _ = write!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="{FONT_FAMILY}">"#,
            w = num(width),
            h = num(height),
        );
        out.push('\n');
        let mut svg = Svg { out };
        svg.rect(0.0, 0.0, width, height, "#ffffff", None);
        svg
    }

    /// Appends raw markup; callers pass only markup they built from numbers and
    /// [`escape`]d text.
    pub fn raw(&mut self, markup: &str) {
        self.out.push_str(markup);
        self.out.push('\n');
    }

    /// A filled rectangle, optionally outlined.
    pub fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, fill: &str, stroke: Option<&str>) {
        let stroke = stroke
            .map(|s| format!(r#" stroke="{s}" stroke-width="1""#))
            .unwrap_or_default();
        self.raw(&format!(
            r#"<rect x="{}" y="{}" width="{}" height="{}" fill="{fill}"{stroke}/>"#,
            num(x),
            num(y),
            num(w.max(0.0)),
            num(h.max(0.0)),
        ));
    }

    /// A straight line; `dash` is an SVG dash array such as `"7 4"`.
    pub fn line(
        &mut self,
        (x1, y1): (f64, f64),
        (x2, y2): (f64, f64),
        stroke: &str,
        width: f64,
        dash: Option<&str>,
    ) {
        let dash = dash
            .map(|d| format!(r#" stroke-dasharray="{d}""#))
            .unwrap_or_default();
        self.raw(&format!(
            r#"<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{stroke}" stroke-width="{}"{dash}/>"#,
            num(x1),
            num(y1),
            num(x2),
            num(y2),
            num(width),
        ));
    }

    /// A text element whose baseline sits at `y`; `content` is escaped here.
    pub fn text(&mut self, x: f64, y: f64, content: &str, style: &TextStyle<'_>) {
        self.text_transformed(x, y, content, style, "");
    }

    /// Like [`Svg::text`], rotated by `degrees` around its anchor point.
    pub fn text_rotated(
        &mut self,
        x: f64,
        y: f64,
        content: &str,
        style: &TextStyle<'_>,
        degrees: f64,
    ) {
        let transform = format!(
            r#" transform="rotate({} {} {})""#,
            num(degrees),
            num(x),
            num(y)
        );
        self.text_transformed(x, y, content, style, &transform);
    }

    fn text_transformed(
        &mut self,
        x: f64,
        y: f64,
        content: &str,
        style: &TextStyle<'_>,
        transform: &str,
    ) {
        let weight = if style.bold {
            r#" font-weight="bold""#
        } else {
            ""
        };
        let class = if style.class.is_empty() {
            String::new()
        } else {
            format!(r#" class="{}""#, style.class)
        };
        self.raw(&format!(
            r#"<text x="{}" y="{}" font-size="{}" text-anchor="{}" fill="{}"{weight}{class}{transform}>{}</text>"#,
            num(x),
            num(y),
            num(style.size),
            style.anchor.as_str(),
            style.fill,
            escape(content),
        ));
    }

    /// A grey message in the middle of an empty chart, so "no data" never looks like
    /// a rendering failure.
    pub fn no_data(&mut self, x: f64, y: f64, message: &str) {
        self.text(
            x,
            y,
            message,
            &TextStyle::new(14.0, Anchor::Middle, MUTED, "no-data"),
        );
    }

    /// Closes the document.
    pub fn finish(mut self) -> String {
        self.out.push_str("</svg>\n");
        self.out
    }
}

/// A coordinate or length with at most two decimals and no trailing zeros, which keeps
/// documents small and diffs stable.
pub fn num(v: f64) -> String {
    let s = format!("{:.2}", v);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// Escapes text for use in element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters are not allowed in XML 1.0 at all.
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Advance widths of DejaVu Sans for ' '..='~', in font units of 2048 per em.
const ASCII_ADVANCE: [u16; 95] = [
    651, 821, 942, 1716, 1303, 1946, 1597, 563, 799, 799, 1024, 1716, 651, 739, 651, 690, 1303,
    1303, 1303, 1303, 1303, 1303, 1303, 1303, 1303, 1303, 690, 690, 1716, 1716, 1716, 1087, 2048,
    1401, 1405, 1430, 1577, 1294, 1178, 1587, 1540, 604, 604, 1343, 1141, 1767, 1532, 1612, 1235,
    1612, 1423, 1300, 1251, 1499, 1401, 2025, 1403, 1251, 1403, 799, 690, 799, 1716, 1024, 1024,
    1255, 1300, 1126, 1300, 1260, 721, 1300, 1298, 569, 569, 1186, 569, 1995, 1298, 1253, 1300,
    1300, 842, 1067, 803, 1298, 1212, 1675, 1212, 1212, 1075, 1303, 690, 1303, 1716,
];

/// Width in user units of `s` set in DejaVu Sans at `size`. Bold is about 10% wider;
/// characters outside ASCII are estimated (full width for CJK and other wide scripts).
pub fn text_width(s: &str, size: f64, bold: bool) -> f64 {
    let units: f64 = s
        .chars()
        .map(|c| match c {
            ' '..='~' => f64::from(ASCII_ADVANCE[c as usize - 0x20]),
            '\u{1100}'..='\u{115f}'
            | '\u{2e80}'..='\u{a4cf}'
            | '\u{ac00}'..='\u{d7a3}'
            | '\u{f900}'..='\u{faff}' => 2048.0,
            _ => 1300.0,
        })
        .sum();
    let width = units / 2048.0 * size;
    if bold { width * 1.1 } else { width }
}

/// `s` cut to fit in `max_width` at `size`, ending in an ellipsis when shortened.
pub fn fit_text(s: &str, size: f64, max_width: f64) -> String {
    if text_width(s, size, false) <= max_width {
        return s.to_string();
    }
    let budget = max_width - text_width("…", size, false);
    let mut out = String::new();
    let mut used = 0.0;
    for c in s.chars() {
        let w = text_width(c.encode_utf8(&mut [0; 4]), size, false);
        if used + w > budget {
            break;
        }
        used += w;
        out.push(c);
    }
    let trimmed = out.trim_end().len();
    out.truncate(trimmed);
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short() {
        assert_eq!(num(1.0), "1");
        assert_eq!(num(1.5), "1.5");
        assert_eq!(num(1.234), "1.23");
        assert_eq!(num(-0.001), "0");
    }

    #[test]
    fn escape_covers_markup() {
        assert_eq!(escape(r#"<a & "b">"#), "&lt;a &amp; &quot;b&quot;&gt;");
    }

    #[test]
    fn fit_text_shortens_with_ellipsis() {
        let long = "run 12: layers=3 hidden=512 dropout=0.25 lr=0.002";
        let short = fit_text(long, 12.0, 100.0);
        assert!(short.ends_with('…'));
        assert!(text_width(&short, 12.0, false) <= 100.0);
        assert_eq!(fit_text("sun", 12.0, 100.0), "sun");
    }
}

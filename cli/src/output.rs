//! What the CLI prints: tables, JSON, colour, and text from users made safe for a terminal.
//!
//! - Everything on stdout goes through [`out!`]/[`outln!`] (or [`json`]): a closed pipe
//!   (`poet runs list | head`) ends the process quietly instead of panicking as `println!`
//!   does.
//! - Names, reasons, errors and poems come from users (and, through the coordinator, from
//!   other machines): [`clean_text`] and [`clean_line`] remove what a terminal would act on
//!   before they are printed. JSON output keeps the data as stored (serde escapes C0
//!   controls, ESC included).
//! - [`Table`] measures cells by their width on screen (`unicode-width`, escape codes
//!   excluded), so wide characters and coloured cells stay aligned.
//! - Colour only when asked for or stdout is a terminal, and never with `NO_COLOR` set
//!   (<https://no-color.org>) unless `--color always` says otherwise.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::io::{IsTerminal, Write};
use std::iter::Peekable;
use std::sync::OnceLock;

use serde::Serialize;
use unicode_width::UnicodeWidthStr;

use crate::args::{ColorChoice, exit};

/// Writes to stdout. A closed pipe ends the process with success and no message: the reader
/// has what it wanted. Any other failure (a full disk) is one error line and exit 1.
pub fn write_stdout(args: std::fmt::Arguments) {
    let written = std::io::stdout().lock().write_fmt(args);
    if let Err(e) = written {
        stdout_failed(&e);
    }
}

/// Writes bytes to stdout, with [`write_stdout`]'s handling of failures.
pub fn write_stdout_bytes(bytes: &[u8]) {
    let written = std::io::stdout().lock().write_all(bytes);
    if let Err(e) = written {
        stdout_failed(&e);
    }
}

/// Flushes stdout before the process exits, with [`write_stdout`]'s handling of failures.
pub fn flush_stdout() {
    let flushed = std::io::stdout().lock().flush();
    if let Err(e) = flushed {
        stdout_failed(&e);
    }
}

/// Ends the process after a failed write to stdout.
pub fn stdout_failed(e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("error: cannot write to stdout: {e}");
    std::process::exit(i32::from(exit::FAILURE));
}

/// `print!` that survives a closed pipe (see [`write_stdout`]).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!($($arg)*))
    };
}

/// `println!` that survives a closed pipe (see [`write_stdout`]).
macro_rules! outln {
    () => {
        $crate::output::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) use {out, outln};

/// `s` without what a terminal would act on: escape sequences (CSI, OSC, DCS and the other
/// string sequences, in their ESC and C1 forms), every other C0 and C1 control and DEL.
/// Keeps `\n` and `\t`, for text that has lines (poems, messages); [`clean_line`] is for one
/// line.
pub fn clean_text(s: &str) -> Cow<'_, str> {
    strip_controls(s, true)
}

/// [`clean_text`] for one line (a table cell, a name): newlines and tabs become spaces too.
pub fn clean_line(s: &str) -> Cow<'_, str> {
    strip_controls(s, false)
}

fn strip_controls(s: &str, keep_layout: bool) -> Cow<'_, str> {
    let keeps = |c: char| !c.is_control() || (keep_layout && (c == '\n' || c == '\t'));
    if s.chars().all(keeps) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' | '\t' if keep_layout => out.push(c),
            '\n' | '\t' => out.push(' '),
            '\x1b' => skip_escape(&mut chars),
            // C1 CSI.
            '\u{9b}' => skip_csi(&mut chars),
            // C1 DCS, SOS, OSC, PM, APC: a string up to its terminator.
            '\u{90}' | '\u{98}' | '\u{9d}' | '\u{9e}' | '\u{9f}' => skip_string(&mut chars),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Skips what follows an ESC (ECMA-48): `[` a CSI, `]`/`P`/`X`/`^`/`_` a string, else
/// intermediates and one final character.
fn skip_escape(chars: &mut Peekable<impl Iterator<Item = char>>) {
    match chars.peek() {
        Some('[') => {
            chars.next();
            skip_csi(chars);
        }
        Some(']' | 'P' | 'X' | '^' | '_') => {
            chars.next();
            skip_string(chars);
        }
        Some(_) => {
            while chars.next_if(|c| ('\x20'..='\x2f').contains(c)).is_some() {}
            chars.next_if(|c| ('\x30'..='\x7e').contains(c));
        }
        None => {}
    }
}

/// Skips a CSI's parameters and intermediates (0x20-0x3f) and its final character
/// (0x40-0x7e). Anything else ends it unconsumed, to be judged on its own.
fn skip_csi(chars: &mut Peekable<impl Iterator<Item = char>>) {
    while chars.next_if(|c| ('\x20'..='\x3f').contains(c)).is_some() {}
    chars.next_if(|c| ('\x40'..='\x7e').contains(c));
}

/// Skips a string sequence's text up to its terminator (BEL, ESC `\` or C1 ST). Another
/// control (a newline) ends it unconsumed, so an unterminated sequence does not swallow the
/// lines after it.
fn skip_string(chars: &mut Peekable<impl Iterator<Item = char>>) {
    while let Some(&c) = chars.peek() {
        match c {
            '\x07' | '\u{9c}' => {
                chars.next();
                return;
            }
            '\x1b' => {
                chars.next();
                chars.next_if_eq(&'\\');
                return;
            }
            c if c.is_control() => return,
            _ => {
                chars.next();
            }
        }
    }
}

static COLOR: OnceLock<bool> = OnceLock::new();

/// Decides once whether stdout gets colour (call before printing anything).
pub fn init_color(choice: ColorChoice) {
    let tty = std::io::stdout().is_terminal();
    let no_color = std::env::var_os("NO_COLOR");
    let _ = COLOR.set(wants_color(choice, tty, no_color.as_deref()));
}

/// Whether stdout gets colour: `always` and `never` as said; `auto` on a terminal unless
/// `NO_COLOR` is set to anything but the empty string.
pub fn wants_color(choice: ColorChoice, tty: bool, no_color: Option<&OsStr>) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => tty && no_color.is_none_or(OsStr::is_empty),
    }
}

/// Whether stdout gets colour (as [`init_color`] decided; none before it).
pub fn color() -> bool {
    COLOR.get().copied().unwrap_or(false)
}

/// How a cell is set off when colour is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// Bold yellow: what differs, what to look at.
    Highlight,
}

impl Style {
    fn sgr(self) -> &'static str {
        match self {
            Style::Highlight => "1;33",
        }
    }
}

/// One table cell: its text (cleaned of controls) and an optional style.
#[derive(Clone, Debug)]
pub struct Cell {
    text: String,
    style: Option<Style>,
}

impl Cell {
    /// Columns the cell takes on a terminal: wide characters count two, combining marks
    /// none; its style's escape codes are not part of its text.
    fn width(&self) -> usize {
        self.text.width()
    }

    /// A cell in `style` (plain when colour is off).
    pub fn styled(text: impl AsRef<str>, style: Style) -> Self {
        Cell {
            style: Some(style),
            ..Cell::from(text.as_ref())
        }
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Self {
        Cell {
            text: clean_line(text).into_owned(),
            style: None,
        }
    }
}

impl From<String> for Cell {
    fn from(text: String) -> Self {
        let cleaned = match clean_line(&text) {
            Cow::Borrowed(_) => None,
            Cow::Owned(t) => Some(t),
        };
        Cell {
            text: cleaned.unwrap_or(text),
            style: None,
        }
    }
}

/// A plain text table: left-aligned columns, a header row, two spaces between columns.
pub struct Table {
    header: Vec<Cell>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    /// A table with these column names.
    pub fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|s| Cell::from(*s)).collect(),
            rows: vec![],
        }
    }

    /// Adds a row; cells are cleaned of controls (they are often user text).
    pub fn row<C: Into<Cell>>(&mut self, cells: Vec<C>) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// Renders to a string, styled when stdout gets colour.
    pub fn render(&self) -> String {
        self.render_with(color())
    }

    /// Renders to a string, styled cells in colour when `color`.
    pub fn render_with(&self, color: bool) -> String {
        let cols = self.header.len();
        let mut widths = vec![0; cols];
        for r in std::iter::once(&self.header).chain(&self.rows) {
            for (i, c) in r.iter().enumerate().take(cols) {
                widths[i] = widths[i].max(c.width());
            }
        }
        let mut out = String::new();
        for r in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, c) in r.iter().enumerate().take(cols) {
                if i > 0 {
                    line.push_str("  ");
                }
                match c.style {
                    Some(s) if color => {
                        line.push_str(&format!("\x1b[{}m{}\x1b[0m", s.sgr(), c.text))
                    }
                    _ => line.push_str(&c.text),
                }
                line.extend(std::iter::repeat_n(' ', widths[i] - c.width()));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Prints a value as pretty JSON.
pub fn json<T: Serialize>(v: &T) {
    outln!("{}", serde_json::to_string_pretty(v).expect("serialisable"));
}

/// A loss for a table: 4 decimals, `-` when missing.
pub fn loss(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.4}")
    } else {
        "-".into()
    }
}

/// Seconds since the epoch of a proto timestamp, formatted as UTC.
pub fn time(t: &Option<prost_types::Timestamp>) -> String {
    match t {
        Some(t) => chrono::DateTime::from_timestamp(t.seconds, t.nanos as u32)
            .map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default(),
        None => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each line of `table` cut at the columns where its header's words start, measured on
    /// screen (escape codes removed).
    fn column_starts(table: &str) -> Vec<Vec<usize>> {
        table
            .lines()
            .map(|l| {
                let shown = clean_line(l);
                let (mut starts, mut col, mut gap, mut seen) = (vec![0], 0, 0, false);
                for ch in shown.chars() {
                    if ch == ' ' {
                        gap += 1;
                    } else {
                        if seen && gap >= 2 {
                            starts.push(col);
                        }
                        (seen, gap) = (true, 0);
                    }
                    col += unicode_width::UnicodeWidthChar::width(ch).unwrap_or(0);
                }
                starts
            })
            .collect()
    }

    #[test]
    fn controls_and_escape_sequences_are_removed() {
        assert_eq!(clean_line("plain name"), "plain name");
        assert!(matches!(clean_line("plain"), Cow::Borrowed(_)));
        assert_eq!(clean_line("\x1b[31mred\x1b[0m"), "red");
        assert_eq!(clean_line("a\x1b[2J\x1b[Hb"), "ab");
        // OSC 8 hyperlink and OSC 0 title, terminated by ST and by BEL.
        assert_eq!(
            clean_line("\x1b]8;;http://evil\x1b\\click\x1b]8;;\x1b\\"),
            "click"
        );
        assert_eq!(clean_line("x\x1b]0;pwned\x07y"), "xy");
        // C1 forms: CSI and OSC.
        assert_eq!(clean_line("a\u{9b}31mb"), "ab");
        assert_eq!(clean_line("a\u{9d}0;t\u{9c}b"), "ab");
        // Other C0 and C1 controls, DEL; a lone trailing ESC.
        assert_eq!(clean_line("a\rb\x08c\x07d\x7fe\u{85}f\x1b"), "abcdef");
        // Two-character sequences (reset, save cursor) and charset selection.
        assert_eq!(clean_line("a\x1bcb\x1b7c\x1b(Bd"), "abcd");
        assert_eq!(clean_line("tab\tand\nline"), "tab and line");
    }

    #[test]
    fn text_keeps_its_lines_and_tabs() {
        let poem = "The harbour lights\n\tcome on at four\r\n\x1b[8mhidden?\x1b[0m yes";
        assert_eq!(
            clean_text(poem),
            "The harbour lights\n\tcome on at four\nhidden? yes"
        );
        // An unterminated string sequence ends at the newline; the next line survives.
        assert_eq!(clean_text("a\x1b]0;title\nnext"), "a\nnext");
        // Unicode text is untouched.
        assert_eq!(clean_text("żółw 日本 — ✓"), "żółw 日本 — ✓");
    }

    #[test]
    fn cells_measure_screen_columns() {
        assert_eq!(Cell::from("abc").width(), 3);
        assert_eq!(Cell::from("日本").width(), 4);
        assert_eq!(
            Cell::from("e\u{301}").width(),
            1,
            "a combining accent takes no column"
        );
        assert_eq!(Cell::styled("* units", Style::Highlight).width(), 7);
        assert_eq!(Cell::from("\x1b[1;33m* units\x1b[0m").width(), 7);
    }

    #[test]
    fn coloured_and_wide_cells_stay_aligned() {
        let mut t = Table::new(&["KEY", "RUN 1", "RUN 2"]);
        t.row(vec![
            Cell::styled("* units", Style::Highlight),
            "8".into(),
            "16".into(),
        ]);
        t.row(vec![Cell::from("  名前"), "日本語".into(), "x".into()]);
        t.row(vec!["  layers", "2", "2"]);
        for color in [false, true] {
            let out = t.render_with(color);
            assert_eq!(out.contains('\x1b'), color, "{out}");
            let starts = column_starts(&out);
            assert!(
                starts.iter().all(|s| s == &starts[0]),
                "columns move between rows (colour {color}): {starts:?}\n{out}"
            );
        }
        let plain = t.render_with(false);
        assert_eq!(
            plain.lines().nth(2).unwrap(),
            "  名前    日本語  x",
            "{plain}"
        );
    }

    #[test]
    fn table_cells_lose_controls() {
        let mut t = Table::new(&["NAME"]);
        t.row(vec!["evil\x1b[2J\nname"]);
        assert_eq!(t.render_with(true), "NAME\nevil name\n");
    }

    #[test]
    fn colour_follows_the_choice_the_terminal_and_no_color() {
        use ColorChoice::*;
        let set = Some(OsStr::new("1"));
        let empty = Some(OsStr::new(""));
        assert!(wants_color(Auto, true, None));
        assert!(!wants_color(Auto, false, None));
        assert!(!wants_color(Auto, true, set), "NO_COLOR=1 turns it off");
        assert!(wants_color(Auto, true, empty), "an empty NO_COLOR is unset");
        assert!(wants_color(Always, false, set), "an explicit flag wins");
        assert!(!wants_color(Never, true, None));
    }
}

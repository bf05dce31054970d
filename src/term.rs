//! The ground floor of what people read: text from servers made safe for a
//! terminal ([`escape`]), colour (`--color`, `NO_COLOR`, `CLICOLOR_FORCE`) and
//! the styles of each meaning, counted nouns ([`count`]) and aligned columns
//! ([`Table`]). It imports nothing of the crate, so that every module may
//! print through it.

use std::borrow::Cow;
use std::ffi::OsString;
use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicU8, Ordering};

use anstyle::{AnsiColor, Style};
use unicode_width::UnicodeWidthStr;

// ---------------------------------------------------------------------------
// Text from servers

/// Is `c` a character a terminal acts on instead of showing: C0 and C1
/// controls, DEL, the bidirectional embeddings, overrides, isolates and marks
/// (which reorder what is shown), and the Unicode line and paragraph
/// separators.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// `s` made safe for a terminal: every character of [`is_unsafe`] is written
/// as an escape (`\n`, `\r`, `\t`, `\u{1b}`), so that a value from a server
/// cannot start a line, move the cursor, change colours or reorder the text
/// around it. Everything else, backslashes included, is shown as it is.
pub(crate) fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe(c) => {
                use fmt::Write as _;
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// [`escape`] as a `Display` wrapper, for `format!` arguments.
pub(crate) struct Esc<'a>(pub &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape(self.0))
    }
}

// ---------------------------------------------------------------------------
// Colour

/// When to colour: `--color auto|always|never`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum ColorWhen {
    /// On a terminal, unless `NO_COLOR` is set (`CLICOLOR_FORCE` forces it).
    #[default]
    Auto,
    /// Always, even with `NO_COLOR` or when not a terminal.
    Always,
    /// Never.
    Never,
}

static COLOR: AtomicU8 = AtomicU8::new(0);

/// Set the `--color` choice for the rest of the process.
pub(crate) fn set_color(when: ColorWhen) {
    COLOR.store(
        match when {
            ColorWhen::Auto => 0,
            ColorWhen::Always => 1,
            ColorWhen::Never => 2,
        },
        Ordering::Relaxed,
    );
}

fn color_when() -> ColorWhen {
    match COLOR.load(Ordering::Relaxed) {
        1 => ColorWhen::Always,
        2 => ColorWhen::Never,
        _ => ColorWhen::Auto,
    }
}

/// Whether a stream gets colour: `always` and `never` decide alone; `auto`
/// colours a terminal, but a non-empty `NO_COLOR` turns it off, and a
/// `CLICOLOR_FORCE` other than `0` turns it on (even off a terminal; `NO_COLOR`
/// wins over it). `TERM=dumb` is a terminal without colour.
fn decide(when: ColorWhen, terminal: bool, env: &dyn Fn(&str) -> Option<OsString>) -> bool {
    let set = |name: &str| env(name).filter(|v| !v.is_empty());
    match when {
        ColorWhen::Always => true,
        ColorWhen::Never => false,
        ColorWhen::Auto => {
            if set("NO_COLOR").is_some() {
                false
            } else if set("CLICOLOR_FORCE").is_some_and(|v| v != "0") {
                true
            } else {
                terminal && env("TERM").is_none_or(|t| t != "dumb")
            }
        }
    }
}

/// Does stdout get colour?
pub(crate) fn color_stdout() -> bool {
    decide(color_when(), io::stdout().is_terminal(), &|n| {
        std::env::var_os(n)
    })
}

/// Does stderr get colour (the `error:` and `warning:` prefixes)?
pub(crate) fn color_stderr() -> bool {
    decide(color_when(), io::stderr().is_terminal(), &|n| {
        std::env::var_os(n)
    })
}

/// The styles of the human output, one per meaning.
pub(crate) mod style {
    use super::{AnsiColor, Style};

    pub(crate) const ADD: Style =
        Style::new().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Green)));
    pub(crate) const CHANGE: Style =
        Style::new().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Yellow)));
    pub(crate) const REMOVE: Style =
        Style::new().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Red)));
    /// Conflicts and refusals: left untouched, needs a person.
    pub(crate) const ATTENTION: Style = Style::new()
        .fg_color(Some(anstyle::Color::Ansi(AnsiColor::Magenta)))
        .bold();
    pub(crate) const FAILED: Style = Style::new()
        .fg_color(Some(anstyle::Color::Ansi(AnsiColor::Red)))
        .bold();
    pub(crate) const WARN: Style = Style::new()
        .fg_color(Some(anstyle::Color::Ansi(AnsiColor::Yellow)))
        .bold();
    pub(crate) const HEADING: Style = Style::new().bold();
    pub(crate) const DIM: Style = Style::new().dimmed();
    pub(crate) const PLAIN: Style = Style::new();
}

/// `text` in `style` (the codes are dropped later where colour is off).
pub(crate) struct Paint<T>(pub Style, pub T);

impl<T: fmt::Display> fmt::Display for Paint<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let style = self.0;
        if style == Style::new() {
            return self.1.fmt(f);
        }
        write!(f, "{style}{}{style:#}", self.1)
    }
}

// ---------------------------------------------------------------------------
// Layout

/// `n` and the noun, plural when `n` is not 1: `1 page`, `2 pages`.
pub(crate) fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// How many columns stdout has: `COLUMNS` when set (as for other tools, and
/// for a test), else the terminal's width; `None` when stdout is not a
/// terminal (a file or a pipe takes lines of any length).
pub(crate) fn stdout_columns() -> Option<usize> {
    if let Some(columns) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|&c| c > 0)
    {
        return Some(columns);
    }
    if !io::stdout().is_terminal() {
        return None;
    }
    // SAFETY: TIOCGWINSZ writes one `winsize` we own into `size`.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &raw mut size) };
    (rc == 0 && size.ws_col > 0).then(|| usize::from(size.ws_col))
}

/// `head`, then `items` joined by `, `, then `tail`, wrapped before a piece
/// that would pass `columns` (the next line indented by two spaces); each
/// item is a plain text and the style it is painted in.
pub(crate) fn wrapped_list(
    head: &str,
    items: &[(String, Style)],
    tail: &str,
    columns: Option<usize>,
    paint: impl Fn(Style, &str) -> String,
) -> String {
    let max = columns.unwrap_or(usize::MAX);
    let mut out = head.to_owned();
    let mut line = width(head);
    let tail = (!tail.is_empty()).then(|| (tail.to_owned(), Style::new()));
    let all: Vec<&(String, Style)> = items.iter().chain(tail.as_ref()).collect();
    for (i, (text, style)) in all.iter().enumerate() {
        let comma = usize::from(i + 1 < items.len());
        if i > 0 && line + 1 + width(text) + comma > max {
            out.push_str("\n ");
            line = 1;
        }
        out.push(' ');
        out.push_str(&paint(*style, text));
        line += 1 + width(text);
        if comma == 1 {
            out.push(',');
            line += 1;
        }
    }
    out
}

/// How wide `s` is on a terminal, in columns.
pub(crate) fn width(s: &str) -> usize {
    UnicodeWidthStr::width(s)
}

/// One cell: its text as shown (already escaped) and its style.
pub(crate) struct Cell {
    text: String,
    style: Style,
}

impl Cell {
    /// Text of our own making, shown as it is.
    pub(crate) fn plain(text: impl Into<String>) -> Self {
        Cell {
            text: text.into(),
            style: Style::new(),
        }
    }

    /// Text from a server (or a file, or the journal): escaped.
    pub(crate) fn value(text: &str) -> Self {
        Cell::plain(escape(text))
    }

    pub(crate) fn styled(self, style: Style) -> Self {
        Cell { style, ..self }
    }
}

/// Rows of cells printed in aligned columns, two spaces apart, widths
/// measured in terminal columns; the last column is not padded.
#[derive(Default)]
pub(crate) struct Table {
    rows: Vec<Vec<Cell>>,
    right: Vec<usize>,
    min: Vec<(usize, usize)>,
    gaps: Vec<(usize, &'static str)>,
}

impl Table {
    pub(crate) fn new() -> Self {
        Table::default()
    }

    /// Align column `col` to the right (counts).
    pub(crate) fn right(mut self, col: usize) -> Self {
        self.right.push(col);
        self
    }

    /// Make column `col` at least `width` wide (to line up with another table).
    pub(crate) fn min_width(mut self, col: usize, width: usize) -> Self {
        self.min.push((col, width));
        self
    }

    /// Put `gap` instead of two spaces before column `col`.
    pub(crate) fn gap(mut self, col: usize, gap: &'static str) -> Self {
        self.gaps.push((col, gap));
        self
    }

    pub(crate) fn row(&mut self, cells: impl IntoIterator<Item = Cell>) {
        self.rows.push(cells.into_iter().collect());
    }

    /// The widths of the columns.
    pub(crate) fn widths(&self) -> Vec<usize> {
        let mut widths: Vec<usize> = Vec::new();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if widths.len() <= i {
                    widths.push(0);
                }
                widths[i] = widths[i].max(width(&cell.text));
            }
        }
        for &(col, w) in &self.min {
            if let Some(c) = widths.get_mut(col) {
                *c = (*c).max(w);
            }
        }
        widths
    }

    /// Each row on its own line after `indent`.
    pub(crate) fn write(&self, out: &mut dyn Write, indent: &str) -> io::Result<()> {
        let widths = self.widths();
        for row in &self.rows {
            let mut line = String::from(indent);
            let last = row.iter().rposition(|c| !c.text.is_empty()).unwrap_or(0);
            for (i, cell) in row.iter().enumerate().take(last + 1) {
                if i > 0 {
                    let gap = self.gaps.iter().find(|(c, _)| *c == i);
                    line.push_str(gap.map_or("  ", |(_, g)| g));
                }
                let pad = " ".repeat(widths[i].saturating_sub(width(&cell.text)));
                let text = Paint(cell.style, &cell.text).to_string();
                if self.right.contains(&i) {
                    line.push_str(&pad);
                    line.push_str(&text);
                } else {
                    line.push_str(&text);
                    if i < last {
                        line.push_str(&pad);
                    }
                }
            }
            writeln!(out, "{line}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_shows_controls_and_reordering_characters() {
        assert_eq!(escape("a@x.com"), "a@x.com");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
        assert_eq!(
            escape("7\nApplied: 1 link (all good)"),
            "7\\nApplied: 1 link (all good)"
        );
        assert_eq!(escape("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(escape("a\u{7f}b\u{9b}c"), "a\\u{7f}b\\u{9b}c");
        assert_eq!(escape("x\u{202e}gnp.exe"), "x\\u{202e}gnp.exe");
        assert_eq!(escape("\u{2066}\u{2069}"), "\\u{2066}\\u{2069}");
        assert_eq!(escape("tab\there\r"), "tab\\there\\r");
        assert_eq!(escape("josé 日本"), "josé 日本", "printable text is kept");
        assert_eq!(escape("dom\\user"), "dom\\user", "backslashes are kept");
    }

    #[test]
    fn colour_follows_the_flag_then_no_color_then_clicolor_force() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        let term = &env(&[("TERM", "xterm")]);
        assert!(decide(ColorWhen::Auto, true, term));
        assert!(!decide(ColorWhen::Auto, false, term));
        assert!(!decide(ColorWhen::Auto, true, &env(&[("NO_COLOR", "1")])));
        assert!(
            decide(ColorWhen::Auto, true, &env(&[("NO_COLOR", "")])),
            "an empty NO_COLOR is unset"
        );
        assert!(decide(ColorWhen::Always, false, &env(&[("NO_COLOR", "1")])));
        assert!(!decide(ColorWhen::Never, true, term));
        assert!(decide(
            ColorWhen::Auto,
            false,
            &env(&[("CLICOLOR_FORCE", "1")])
        ));
        assert!(!decide(
            ColorWhen::Auto,
            false,
            &env(&[("CLICOLOR_FORCE", "0")])
        ));
        assert!(!decide(
            ColorWhen::Auto,
            true,
            &env(&[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")])
        ));
        assert!(!decide(ColorWhen::Auto, true, &env(&[("TERM", "dumb")])));
    }

    #[test]
    fn counts_are_singular_for_one() {
        assert_eq!(count(1, "page"), "1 page");
        assert_eq!(count(0, "page"), "0 pages");
        assert_eq!(count(2, "agent"), "2 agents");
    }

    #[test]
    fn tables_align_by_display_width() {
        let mut t = Table::new().right(2);
        t.row([
            Cell::plain("日本@x.com"),
            Cell::value("a\nb"),
            Cell::plain("7"),
        ]);
        t.row([Cell::plain("ab@x.com"), Cell::plain("c"), Cell::plain("12")]);
        let mut out = Vec::new();
        t.write(&mut out, "  ").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "  日本@x.com  a\\nb   7\n  ab@x.com    c     12\n"
        );
    }
}

//! Progress and diagnostics for people on stderr: indicatif bars (position,
//! length, rate, ETA) when stderr is a terminal, one timestamped line per
//! stage otherwise (cron mail stays readable), nothing but errors with
//! `--quiet`. `-v` adds debug lines. With `--log-format json` every line is
//! one JSON object and there are no bars. Data never goes here.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Map, Value};

use crate::redact::redact;
use crate::term::{self, Paint, escape, style};

static VERBOSITY: AtomicU8 = AtomicU8::new(1);
static JSON: AtomicBool = AtomicBool::new(false);

/// How lines on stderr are written: `--log-format text|json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// For people: `TIME message`, bars on a terminal.
    #[default]
    Text,
    /// One JSON object a line: time, level, message (and fields); no bars.
    Json,
}

/// How much goes to stderr: 0 quiet, 1 normal, 2 verbose.
pub(crate) fn set_verbosity(level: u8) {
    VERBOSITY.store(level, Ordering::Relaxed);
}

/// Set `--log-format` for the rest of the process.
pub(crate) fn set_log_format(format: LogFormat) {
    JSON.store(format == LogFormat::Json, Ordering::Relaxed);
}

fn verbosity() -> u8 {
    VERBOSITY.load(Ordering::Relaxed)
}

fn json() -> bool {
    JSON.load(Ordering::Relaxed)
}

fn stamp() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// Was `-v` given?
pub(crate) fn verbose() -> bool {
    verbosity() >= 2
}

/// How important a line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }

    /// Is a line of this level shown at the current verbosity?
    fn shown(self) -> bool {
        match self {
            Level::Error => true,
            Level::Warn | Level::Info => verbosity() >= 1,
            Level::Debug => verbosity() >= 2,
        }
    }
}

/// The bars in use, when stderr is a terminal that gets them.
fn bars() -> Option<&'static MultiProgress> {
    static BARS: OnceLock<Option<MultiProgress>> = OnceLock::new();
    BARS.get_or_init(|| {
        (verbosity() >= 1 && !json() && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
    })
    .as_ref()
}

/// One line on stderr: secrets masked; in text, values escaped for the
/// terminal; in JSON, one object with `time`, `level`, `message` and `fields`.
/// Written whole, above any bar.
pub(crate) fn line(level: Level, message: &str, fields: &[(&str, Value)]) {
    listed_line(level, message, &[], fields);
}

/// [`line`] with lines under the message, each indented on a line of its
/// own and escaped on its own (in JSON, the message holds them all).
fn listed_line(level: Level, message: &str, under: &[String], fields: &[(&str, Value)]) {
    if !level.shown() {
        return;
    }
    let mut message = redact(message);
    let text = if json() {
        for l in under {
            message.push_str("\n  ");
            message.push_str(&redact(l));
        }
        let mut object = Map::new();
        object.insert("time".into(), stamp().into());
        object.insert("level".into(), level.as_str().into());
        object.insert("message".into(), message.into());
        for (k, v) in fields {
            object.insert((*k).to_owned(), v.clone());
        }
        Value::Object(object).to_string()
    } else {
        let mut message = escape(&message).into_owned();
        for l in under {
            message.push_str("\n  ");
            message.push_str(&escape(&redact(l)));
        }
        let paint = term::color_stderr();
        let tag = |style, word: &str| {
            if paint {
                Paint(style, word).to_string()
            } else {
                word.to_owned()
            }
        };
        match level {
            Level::Error => format!("agentsync: {} {message}", tag(style::FAILED, "error:")),
            Level::Warn => format!("{} {} {message}", stamp(), tag(style::WARN, "warning:")),
            Level::Debug => format!("{} {} {message}", stamp(), tag(style::DIM, "debug:")),
            // With bars on, the bars stand for the time.
            Level::Info if bars().is_some() => message,
            Level::Info => format!("{} {message}", stamp()),
        }
    };
    let write = || {
        let _ = writeln!(std::io::stderr().lock(), "{text}");
    };
    match bars() {
        Some(multi) => multi.suspend(write),
        None => write(),
    }
}

/// A line shown with `-v` only.
pub(crate) fn debug(msg: &str) {
    line(Level::Debug, msg, &[]);
}

/// A warning, shown unless `--quiet`.
pub(crate) fn warn(msg: &str) {
    line(Level::Warn, msg, &[]);
}

/// The error that ends the command (always shown).
pub(crate) fn error(msg: &str, exit_code: u8) {
    line(Level::Error, msg, &[("exit_code", exit_code.into())]);
}

/// The error that ends the command, with lines of its own under it (each
/// malformed line of a file, say).
pub(crate) fn error_listed(msg: &str, under: &[String], exit_code: u8) {
    listed_line(Level::Error, msg, under, &[("exit_code", exit_code.into())]);
}

/// Text that belongs to the error just told (the config's line with a caret
/// under the column), in text logs only: JSON lines carry the error alone.
/// `text` is escaped and masked by its maker.
pub(crate) fn error_detail(text: &str) {
    if json() {
        return;
    }
    let write = || {
        let _ = writeln!(std::io::stderr().lock(), "{text}");
    };
    match bars() {
        Some(multi) => multi.suspend(write),
        None => write(),
    }
}

/// Progress of the run's stages. Cheap to pass around by reference; bars are
/// drawn only on a terminal.
#[derive(Debug)]
pub(crate) struct Progress {
    bars: bool,
    /// Set when one of two stages run side by side failed: the other stops
    /// before its next request.
    halted: Arc<AtomicBool>,
}

impl Progress {
    pub(crate) fn new() -> Self {
        Progress {
            bars: bars().is_some(),
            halted: Arc::default(),
        }
    }

    /// A progress indicator that shows nothing, for code run without a person
    /// watching (tests, the mock).
    #[cfg(test)]
    pub(crate) fn hidden() -> Self {
        Progress {
            bars: false,
            halted: Arc::default(),
        }
    }

    /// Stages run side by side: one failed, the others stop before their
    /// next request ([`Stage::halted`]).
    pub(crate) fn halt(&self) {
        self.halted.store(true, Ordering::SeqCst);
    }

    /// A one-line log entry for a stage (without its time when bars are on:
    /// the bars say it).
    #[allow(clippy::unused_self)] // a stage logs through the Progress it was handed, as it draws bars
    pub(crate) fn log(&self, msg: &str) {
        line(Level::Info, msg, &[]);
    }

    /// A log entry with fields for `--log-format json` (`pages`, `agents`…).
    #[allow(clippy::unused_self)] // as `log`
    pub(crate) fn log_with(&self, msg: &str, fields: &[(&str, Value)]) {
        line(Level::Info, msg, fields);
    }

    /// Start a counter for a stage: a bar when the total `len` is known (it
    /// may become known later, [`Stage::set_len`]), a spinner until then.
    pub(crate) fn stage(&self, what: &str, len: Option<u64>) -> Stage {
        let Some(multi) = bars().filter(|_| self.bars) else {
            return Stage {
                bar: None,
                halted: self.halted.clone(),
            };
        };
        let bar = multi.add(ProgressBar::new_spinner());
        bar.set_prefix(what.to_owned());
        bar.set_style(spinner_style());
        // Redrawn while a slow page is awaited: the spinner turns, the ETA moves.
        bar.enable_steady_tick(Duration::from_millis(120));
        let stage = Stage {
            bar: Some(bar),
            halted: self.halted.clone(),
        };
        if let Some(n) = len {
            stage.set_len(n);
        }
        stage
    }
}

/// `12.3/s`: indicatif's own `{per_sec}` shows ten decimals.
fn rate(state: &indicatif::ProgressState, out: &mut dyn std::fmt::Write) {
    let _ = write!(out, "{:.1}/s", state.per_sec());
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:>16} {spinner} {human_pos} so far  {rate}  {elapsed}")
        .map_or_else(
            |_| ProgressStyle::default_spinner(),
            |s| s.with_key("rate", rate),
        )
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix:>16} [{wide_bar}] {human_pos:>5}/{human_len:<5} {rate:>8}  ETA {eta}",
    )
    .map_or_else(
        |_| ProgressStyle::default_bar(),
        |s| s.progress_chars("=> ").with_key("rate", rate),
    )
}

/// One stage's bar; finished (cleared) when dropped.
#[derive(Debug)]
pub(crate) struct Stage {
    bar: Option<ProgressBar>,
    halted: Arc<AtomicBool>,
}

impl Stage {
    /// Has [`Progress::halt`] been called: should this stage stop?
    pub(crate) fn halted(&self) -> bool {
        self.halted.load(Ordering::SeqCst)
    }

    pub(crate) fn inc(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    /// The total is known: the spinner becomes a bar with an ETA.
    pub(crate) fn set_len(&self, len: u64) {
        if let Some(bar) = &self.bar {
            if bar.length().is_none() {
                bar.set_style(bar_style());
            }
            bar.set_length(len);
        }
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
            if let Some(multi) = bars() {
                multi.remove(bar);
            }
        }
    }
}

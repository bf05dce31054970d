//! Progress for people on stderr: indicatif bars when stderr is a terminal, one
//! timestamped line per stage otherwise (cron mail stays readable), nothing but
//! errors with `--quiet`. `-v` adds debug lines. Data never goes here.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::SystemTime;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::redact::redact;

static VERBOSITY: AtomicU8 = AtomicU8::new(1);

/// How much goes to stderr: 0 quiet, 1 normal, 2 verbose.
pub(crate) fn set_verbosity(level: u8) {
    VERBOSITY.store(level, Ordering::Relaxed);
}

fn verbosity() -> u8 {
    VERBOSITY.load(Ordering::Relaxed)
}

fn stamp() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// Was `-v` given?
pub(crate) fn verbose() -> bool {
    verbosity() >= 2
}

/// A line shown with `-v` only.
pub(crate) fn debug(msg: &str) {
    if verbosity() >= 2 {
        eprintln!("{} debug: {}", stamp(), redact(msg));
    }
}

/// A warning, shown unless `--quiet`.
pub(crate) fn warn(msg: &str) {
    if verbosity() >= 1 {
        eprintln!("{} warning: {}", stamp(), redact(msg));
    }
}

/// Progress of the run's stages. Cheap to pass around by reference; bars are
/// drawn only on a terminal.
#[derive(Debug)]
pub(crate) struct Progress {
    bars: bool,
}

impl Progress {
    pub(crate) fn new() -> Self {
        Progress {
            bars: verbosity() >= 1 && std::io::stderr().is_terminal(),
        }
    }

    /// A progress indicator that shows nothing, for code run without a person
    /// watching (tests, the mock).
    #[cfg(test)]
    pub(crate) fn hidden() -> Self {
        Progress { bars: false }
    }

    /// A one-line log entry for a stage (not shown as a line when bars are on,
    /// the bars say it).
    pub(crate) fn log(&self, msg: &str) {
        if verbosity() >= 1 {
            if self.bars {
                eprintln!("{}", redact(msg));
            } else {
                eprintln!("{} {}", stamp(), redact(msg));
            }
        }
    }

    /// Start a counter for a stage: `len` when the total is known.
    pub(crate) fn stage(&self, what: &str, len: Option<u64>) -> Stage {
        if !self.bars {
            return Stage { bar: None };
        }
        let bar = match len {
            Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
        };
        let style = match len {
            Some(_) => ProgressStyle::with_template("{msg:>18} [{bar:30}] {pos}/{len} {elapsed}")
                .map(|s| s.progress_chars("=> ")),
            None => ProgressStyle::with_template("{msg:>18} {spinner} {pos} {elapsed}"),
        };
        if let Ok(style) = style {
            bar.set_style(style);
        }
        bar.set_message(what.to_owned());
        Stage { bar: Some(bar) }
    }
}

/// One stage's bar; finished (cleared) when dropped.
#[derive(Debug)]
pub(crate) struct Stage {
    bar: Option<ProgressBar>,
}

impl Stage {
    pub(crate) fn inc(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    pub(crate) fn set_len(&self, len: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(len);
        }
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

//! SIGINT and SIGTERM while writing: the first asks the apply to stop — the
//! writes in flight finish, no new one starts, the run is journaled as
//! interrupted and its report printed (exit 130 / 143) — and a second one ends
//! the process at once. Before the apply of a run ([`before_writes`]) a signal
//! ends the run where it stands, saying that nothing was written (exit 130 /
//! 143); elsewhere the default disposition holds.
//!
//! The handlers only store into atomics (via `signal-hook`), which is all a
//! signal handler may safely do.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Once};

use anyhow::{Context, Result};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::flag;

/// Set once the apply catches signals itself: from then on the watcher of
/// [`before_writes`] leaves them to it.
static WRITING: AtomicBool = AtomicBool::new(false);

/// From now until the apply begins, SIGINT or SIGTERM ends the process with
/// `interrupted by SIGINT before any write: nothing was written` and 130 /
/// 143. The journal then shows the run with no end record and no result.
pub(crate) fn before_writes() {
    static STARTED: Once = Once::new();
    STARTED.call_once(|| {
        let Ok(mut caught) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
            // The default disposition still ends the run, silently.
            return;
        };
        let started = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for signal in caught.forever() {
                    if WRITING.load(Ordering::SeqCst) {
                        continue;
                    }
                    let code = 128 + signal;
                    crate::progress::error(
                        &format!(
                            "interrupted by {} before any write: nothing was written",
                            name(signal)
                        ),
                        u8::try_from(code).unwrap_or(u8::MAX),
                    );
                    std::process::exit(code);
                }
            });
        if started.is_err() {
            // The handler stays registered: make a signal end the run still.
            for signal in [SIGINT, SIGTERM] {
                let _ = flag::register_conditional_shutdown(
                    signal,
                    128 + signal,
                    Arc::new(AtomicBool::new(true)),
                );
            }
        }
    });
}

/// The handlers of one apply. Dropping it does not bring the first signal's
/// grace back: from then on a signal ends the process at once, with its code.
pub(crate) struct Watch {
    caught: Arc<AtomicUsize>,
    armed: Arc<AtomicBool>,
}

impl Watch {
    /// Catch SIGINT and SIGTERM from now on.
    pub(crate) fn install() -> Result<Watch> {
        WRITING.store(true, Ordering::SeqCst);
        let caught = Arc::new(AtomicUsize::new(0));
        let armed = Arc::new(AtomicBool::new(false));
        for signal in [SIGINT, SIGTERM] {
            let code = 128 + signal;
            // Registered first, so that it sees the flag as the previous
            // signal left it: only a second signal exits.
            flag::register_conditional_shutdown(signal, code, armed.clone())
                .context("installing a signal handler")?;
            let number = usize::try_from(signal).expect("signal numbers are positive");
            flag::register_usize(signal, caught.clone(), number)
                .context("installing a signal handler")?;
            flag::register_usize(signal, process_flag().clone(), number)
                .context("installing a signal handler")?;
            flag::register(signal, armed.clone()).context("installing a signal handler")?;
        }
        Ok(Watch { caught, armed })
    }

    /// The signal caught so far, if any.
    pub(crate) fn caught(&self) -> Option<i32> {
        match self.caught.load(Ordering::SeqCst) {
            0 => None,
            n => i32::try_from(n).ok(),
        }
    }

    /// The flag the writers check before each write: non-zero once a signal
    /// came.
    pub(crate) fn flag(&self) -> Arc<AtomicUsize> {
        self.caught.clone()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // Unregistering would leave signal-hook's handler doing nothing: the
        // signal ignored. Arming the exit keeps "a signal ends the run".
        self.armed.store(true, Ordering::SeqCst);
        // From now on a signal ends the process itself: no wait needs to
        // look for it (and a request after the writes, a ping, still goes).
        process_flag().store(0, Ordering::SeqCst);
    }
}

/// The signal caught while a [`Watch`] was installed, until it is dropped:
/// what the waits of the HTTP client look at.
fn process_flag() -> &'static Arc<AtomicUsize> {
    static CAUGHT: std::sync::OnceLock<Arc<AtomicUsize>> = std::sync::OnceLock::new();
    CAUGHT.get_or_init(|| Arc::new(AtomicUsize::new(0)))
}

/// The signal caught while a [`Watch`] was installed, if any: a wait for a
/// retry or a rate-limit slot ends at once then.
pub(crate) fn interrupted() -> Option<i32> {
    match process_flag().load(Ordering::SeqCst) {
        0 => None,
        n => i32::try_from(n).ok(),
    }
}

/// A signal's name, for messages.
pub(crate) fn name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signal_hook::low_level;

    #[test]
    fn a_signal_is_caught_not_fatal() {
        let watch = Watch::install().unwrap();
        assert_eq!(watch.caught(), None);
        low_level::raise(SIGTERM).unwrap();
        assert_eq!(watch.caught(), Some(SIGTERM));
        assert_eq!(name(SIGTERM), "SIGTERM");
    }
}

//! The apply: a plan's changes written through the sink by a pool of up to
//! `sink.concurrency()` workers, each result told to an [`ApplyWatch`] as it
//! ends; a directory that refuses every write stops the rest.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use anyhow::Result;

use crate::plan::{Change, Status};
use crate::progress::Progress;
use crate::sink::Sink;

/// What the apply tells its caller as each change ends, and asks it whether
/// to go on.
pub(crate) trait ApplyWatch {
    /// A change has its final status. An error stops the apply: no new write
    /// starts (those in flight finish and are reported here too).
    fn done(&mut self, change: &Change) -> Result<()>;
    /// Checked before each write starts: `Some(why)` leaves it and every one
    /// after it skipped.
    fn stop(&self) -> Option<String> {
        None
    }
    /// A flag set from outside the apply (a signal handler): non-zero means
    /// no new write starts. Checked by the writers themselves, so that a
    /// signal that comes while every writer waits on the directory still
    /// stops the next write.
    fn stop_flag(&self) -> Option<Arc<AtomicUsize>> {
        None
    }
}

/// Nothing to tell, never stops.
#[allow(dead_code)] // for an apply that keeps no journal (none in this build)
pub(crate) struct Unwatched;

impl ApplyWatch for Unwatched {
    fn done(&mut self, _: &Change) -> Result<()> {
        Ok(())
    }
}

/// After this many failures in a row with the same error that no retry can
/// fix (the directory refuses writes), the rest are skipped.
const REFUSALS_BEFORE_STOP: usize = 3;

/// How an apply ended.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    pub failed: usize,
    /// Writes whose answer was lost and whose outcome reading back could
    /// not tell.
    pub unknown: usize,
    pub skipped: usize,
    /// Why writing stopped early, if it did.
    pub stopped: Option<String>,
}

/// Write `changes` through `sink`, up to `sink.concurrency()` at once, each
/// change's status and error set from its result; a failed write does not stop
/// the others, but a directory that refuses every write does. Every change
/// that ends is told to `watch` (the journal) on this thread, in the order
/// they end. An error of `watch` stops the writes and is returned after those
/// in flight have ended.
pub(crate) fn apply(
    sink: &dyn Sink,
    changes: &mut [Change],
    watch: &mut dyn ApplyWatch,
    progress: &Progress,
) -> Result<Applied> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::mpsc;

    let stage = progress.stage("writes", Some(changes.len() as u64));
    let workers = sink.concurrency().clamp(1, changes.len().max(1));
    let next = AtomicUsize::new(0);
    let halt = AtomicBool::new(false);
    let mut applied = Applied::default();
    let mut watch_error = None;
    let snapshot: Vec<Change> = changes.to_vec();
    let outside = watch.stop_flag();
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<(usize, Result<()>)>();
        let mut started = 0;
        for _ in 0..workers {
            let (tx, next, halt, snapshot) = (tx.clone(), &next, &halt, &snapshot);
            let outside = outside.clone();
            // A process out of threads (a ulimit) writes with the workers it
            // has, or stops before the first write: never a panic.
            let spawned = std::thread::Builder::new().spawn_scoped(scope, move || {
                let stopped = || {
                    halt.load(Ordering::SeqCst)
                        || outside
                            .as_ref()
                            .is_some_and(|f| f.load(Ordering::SeqCst) != 0)
                };
                while !stopped() {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(change) = snapshot.get(i) else { break };
                    if tx.send((i, sink.write(change))).is_err() {
                        break;
                    }
                }
            });
            match spawned {
                Ok(_) => started += 1,
                Err(e) => {
                    if started == 0 {
                        applied.stopped = Some(format!("no writer thread could be started: {e}"));
                    }
                    break;
                }
            }
        }
        drop(tx);
        let mut streak: Option<(String, usize)> = None;
        // Writes are handed out in order; `taken` is how far they went.
        while let Ok((i, result)) = rx.recv() {
            let change = &mut changes[i];
            match result {
                Ok(()) => {
                    change.status = Status::Applied;
                    streak = None;
                }
                Err(e)
                    if e.downcast_ref::<crate::http::Interrupted>()
                        .is_some_and(|i| !i.may_have_landed) =>
                {
                    // A signal ended its wait before it was sent: not
                    // attempted, skipped below like the writes never taken.
                    continue;
                }
                Err(e)
                    if e.downcast_ref::<crate::http::TokenRefused>()
                        .is_some_and(|t| !t.asked) =>
                {
                    // The client no longer asks for a token: nothing was
                    // sent, so the change was not attempted. The refusals
                    // that locked it out have stopped the writes already,
                    // unless this write was handed out just before.
                    if applied.stopped.is_none() {
                        applied.stopped = Some(format!("{e:#}"));
                        halt.store(true, Ordering::SeqCst);
                    }
                    continue;
                }
                Err(e) if crate::sink::is_unknown(&e) => {
                    change.unknown(&e);
                    applied.unknown += 1;
                    streak = None;
                }
                Err(e) => {
                    change.fail(&e);
                    applied.failed += 1;
                    if crate::sink::is_refusal(&e) {
                        let message = change.error.clone().unwrap_or_default();
                        // Every refused token request is one refusal, whatever
                        // its answer said.
                        let token = e.downcast_ref::<crate::http::TokenRefused>().is_some();
                        let key = if token {
                            "token".to_owned()
                        } else {
                            message.clone()
                        };
                        let count = match &streak {
                            Some((k, n)) if *k == key => n + 1,
                            _ => 1,
                        };
                        if count >= REFUSALS_BEFORE_STOP && applied.stopped.is_none() {
                            applied.stopped = Some(if token {
                                format!(
                                    "the token endpoint refused {count} token requests in a row: {message}"
                                )
                            } else {
                                format!("the directory refused {count} writes in a row: {message}")
                            });
                            halt.store(true, Ordering::SeqCst);
                        }
                        streak = Some((key, count));
                    } else {
                        streak = None;
                    }
                }
            }
            stage.inc(1);
            if watch_error.is_none()
                && let Err(e) = watch.done(change)
            {
                watch_error = Some(e);
                halt.store(true, Ordering::SeqCst);
            }
            if applied.stopped.is_none()
                && let Some(why) = watch.stop()
            {
                applied.stopped = Some(why);
                halt.store(true, Ordering::SeqCst);
            }
        }
    });
    drop(stage);
    if applied.stopped.is_none() {
        applied.stopped = watch.stop();
    }
    let why = applied
        .stopped
        .clone()
        .unwrap_or_else(|| "writing stopped".to_owned());
    for change in changes.iter_mut().filter(|c| c.status == Status::Planned) {
        change.skip(&why);
        applied.skipped += 1;
    }
    if let Some(e) = watch_error {
        return Err(e);
    }
    Ok(applied)
}

//! Budgets for the config's jq: an expression comes from the config but runs on
//! what a server sent, and jq can loop (`def f: f; f`), count forever
//! (`last(range(infinite))`) or grow without end (`[repeat(.)]`). Whether an
//! expression ends cannot be decided in advance, so each is bounded when it runs:
//!
//! - **outputs**: at most [`MAX_OUTPUTS`] per evaluation (the mapping of one
//!   record, the `records` of one page); page-level values take one.
//! - **time**: the jq work on one page ([`Page`]) has `[mapping] timeout_secs`.
//!   It is checked between outputs; an evaluation past it fails the run.
//! - **a filter that never yields** cannot be stopped from inside (jaq runs as
//!   an iterator on the caller's thread and offers no hook to interrupt it), so a
//!   watchdog thread watches every evaluation in flight: one still running
//!   [`GRACE`] after its page's deadline, or whose process grew by more than
//!   [`MEMORY_BUDGET`] while it ran (resident size, read from `/proc` on Linux),
//!   ends the process with exit 1 and an error naming the expression. The config's
//!   jq runs while the source is read, before anything is written; the run lock
//!   is an OS lock and goes with the process.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

/// `[mapping] timeout_secs` when not set.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Outputs one evaluation may give (the users of one record, the record
/// arrays of one page).
pub(crate) const MAX_OUTPUTS: usize = 1000;

/// How far past its deadline a filter that never yields is let run before the
/// watchdog ends the process (the check between outputs ends it more gently).
pub(crate) const GRACE: Duration = Duration::from_secs(1);

/// Growth of the process's resident memory during one evaluation that ends it.
pub(crate) const MEMORY_BUDGET: u64 = 1 << 30;

/// How often the watchdog looks.
const TICK: Duration = Duration::from_millis(20);

/// One thread's jq work, as the watchdog sees it.
#[derive(Default)]
struct Slot {
    /// A page (or a lone evaluation) is being evaluated on this thread.
    active: AtomicBool,
    /// Its deadline, in nanoseconds since [`epoch`].
    deadline: AtomicU64,
    /// The expression being evaluated: its index in [`expressions`].
    expr: AtomicU32,
    /// Evaluations started on this thread, so the watchdog sees one that lasts.
    evals: AtomicU64,
    /// What is being read, e.g. "source page 3".
    what: Mutex<String>,
    /// The first budget this page went over, for [`Page::finish`].
    over: Mutex<Option<String>>,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn nanos(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(epoch()).as_nanos()).unwrap_or(u64::MAX)
}

fn slots() -> &'static Mutex<Vec<Weak<Slot>>> {
    static SLOTS: OnceLock<Mutex<Vec<Weak<Slot>>>> = OnceLock::new();
    SLOTS.get_or_init(Default::default)
}

fn expressions() -> &'static Mutex<Vec<String>> {
    static EXPRS: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    EXPRS.get_or_init(Default::default)
}

thread_local! {
    static SLOT: Arc<Slot> = {
        let slot = Arc::new(Slot::default());
        let mut all = slots().lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        all.retain(|s| s.strong_count() > 0);
        all.push(Arc::downgrade(&slot));
        start_watchdog();
        slot
    };
}

fn this_slot() -> Arc<Slot> {
    SLOT.with(Arc::clone)
}

/// Name an expression once, when it is compiled; the id goes with each evaluation.
pub(crate) fn register(source: &str) -> u32 {
    let mut all = expressions()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    all.push(source.to_owned());
    u32::try_from(all.len() - 1).unwrap_or(u32::MAX)
}

fn expression(id: u32) -> String {
    let all = expressions()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let text = all.get(id as usize).map_or("?", String::as_str);
    let short: String = text.chars().take(120).collect();
    if short.len() < text.len() {
        format!("{short}…")
    } else {
        short
    }
}

/// The jq work on one page: every evaluation on this thread until [`finish`]
/// shares `timeout`.
///
/// [`finish`]: Page::finish
pub(crate) struct Page {
    slot: Arc<Slot>,
}

impl Page {
    /// Start the budget of `what` (e.g. "source page 3").
    pub(crate) fn enter(timeout: Duration, what: String) -> Page {
        let slot = this_slot();
        *slot
            .what
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = what;
        *slot
            .over
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        slot.deadline
            .store(nanos(Instant::now() + timeout), Ordering::SeqCst);
        slot.active.store(true, Ordering::SeqCst);
        Page { slot }
    }

    /// The first budget the page went over, as an error. A mapping that gave
    /// too many outputs fails its record; this turns it into the failure of
    /// the run, since a hostile or broken expression is not a bad record.
    pub(crate) fn finish(self) -> anyhow::Result<()> {
        match self
            .slot
            .over
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            Some(why) => Err(anyhow::anyhow!(why)),
            None => Ok(()),
        }
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        self.slot.active.store(false, Ordering::SeqCst);
    }
}

/// The outputs of one evaluation of expression `id`, at most `limit` of them,
/// within the page's time. Without a [`Page`] on this thread, the evaluation
/// has [`DEFAULT_TIMEOUT`] of its own.
///
/// `start` starts the evaluation: it is called once the evaluation is watched,
/// since jaq may do work before it gives its iterator.
pub(crate) fn watch<I, V>(id: u32, limit: usize, start: impl FnOnce() -> I) -> Watched<I>
where
    I: Iterator<Item = Result<V, String>>,
{
    let slot = this_slot();
    let alone = !slot.active.load(Ordering::SeqCst);
    if alone {
        slot.deadline
            .store(nanos(Instant::now() + DEFAULT_TIMEOUT), Ordering::SeqCst);
        slot.active.store(true, Ordering::SeqCst);
    }
    slot.expr.store(id, Ordering::Relaxed);
    slot.evals.fetch_add(1, Ordering::Relaxed);
    Watched {
        outputs: start(),
        slot,
        id,
        limit,
        given: 0,
        alone,
        ended: false,
    }
}

/// An evaluation's outputs, counted and timed.
pub(crate) struct Watched<I> {
    outputs: I,
    slot: Arc<Slot>,
    id: u32,
    limit: usize,
    given: usize,
    alone: bool,
    ended: bool,
}

impl<I> Watched<I> {
    /// Record that the budget is spent and say so.
    fn over(&mut self, why: &str) -> String {
        self.ended = true;
        let what = self
            .slot
            .what
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let full = if what.is_empty() {
            format!("jq `{}`: {why}", expression(self.id))
        } else {
            format!("{what}: jq `{}`: {why}", expression(self.id))
        };
        let mut over = self
            .slot
            .over
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        over.get_or_insert_with(|| full.clone());
        full
    }
}

impl<I, V> Iterator for Watched<I>
where
    I: Iterator<Item = Result<V, String>>,
{
    type Item = Result<V, String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.ended {
            return None;
        }
        let out = self.outputs.next()?;
        self.given += 1;
        if self.given > self.limit {
            let limit = self.limit;
            return Some(Err(self.over(&format!(
                "gave more than {limit} output{} for one input",
                if limit == 1 { "" } else { "s" }
            ))));
        }
        if nanos(Instant::now()) > self.slot.deadline.load(Ordering::Relaxed) {
            return Some(Err(
                self.over("over the time budget of a page ([mapping] timeout_secs)")
            ));
        }
        Some(out)
    }
}

impl<I> Drop for Watched<I> {
    fn drop(&mut self) {
        if self.alone {
            self.slot.active.store(false, Ordering::SeqCst);
        }
    }
}

/// The watchdog: ends the process when an evaluation outlives its deadline by
/// [`GRACE`] or grows the process by [`MEMORY_BUDGET`].
fn start_watchdog() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        let _ = std::thread::Builder::new()
            .name("jq-watchdog".into())
            .spawn(watchdog);
    });
}

fn watchdog() {
    // Per slot: the evaluation count last seen and the resident size then.
    let mut seen: Vec<(Weak<Slot>, u64, u64)> = Vec::new();
    loop {
        std::thread::sleep(TICK);
        let live: Vec<Arc<Slot>> = slots()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|s| s.active.load(Ordering::SeqCst))
            .collect();
        if live.is_empty() {
            seen.clear();
            continue;
        }
        let now = nanos(Instant::now());
        let grace = u64::try_from(GRACE.as_nanos()).unwrap_or(u64::MAX);
        let rss = resident_bytes();
        seen.retain(|(w, _, _)| w.strong_count() > 0);
        for slot in live {
            let expr = slot.expr.load(Ordering::Relaxed);
            if now > slot.deadline.load(Ordering::SeqCst).saturating_add(grace) {
                end(
                    &slot,
                    expr,
                    "did not finish within the time budget of a page ([mapping] timeout_secs)",
                );
            }
            let Some(rss) = rss else { continue };
            let evals = slot.evals.load(Ordering::Relaxed);
            match seen
                .iter_mut()
                .find(|(w, _, _)| std::ptr::eq(w.as_ptr(), Arc::as_ptr(&slot)))
            {
                Some((_, last, base)) if *last == evals => {
                    if rss.saturating_sub(*base) > MEMORY_BUDGET {
                        end(
                            &slot,
                            expr,
                            &format!("grew the process by more than {} MiB", MEMORY_BUDGET >> 20),
                        );
                    }
                }
                Some(entry) => {
                    entry.1 = evals;
                    entry.2 = rss;
                }
                None => seen.push((Arc::downgrade(&slot), evals, rss)),
            }
        }
    }
}

/// Report an evaluation that went over its budget and end the process: the
/// thread that runs it cannot be stopped, and the run cannot go on without it.
fn end(slot: &Slot, expr: u32, why: &str) -> ! {
    let what = slot
        .what
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let place = if what.is_empty() {
        String::new()
    } else {
        format!("{what}: ")
    };
    eprintln!(
        "agentsync: error: {}",
        crate::redact::redact(&format!(
            "{place}jq `{}` {why}; stopped, nothing was written",
            expression(expr)
        ))
    );
    std::process::exit(1)
}

/// The process's resident memory, where the system tells it.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = status.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers(n: usize) -> impl Iterator<Item = Result<usize, String>> {
        (0..n).map(Ok)
    }

    #[test]
    fn outputs_over_the_limit_fail_the_page() {
        let id = register("range(5)");
        let page = Page::enter(Duration::from_secs(60), "source page 2".into());
        let outs: Vec<_> = watch(id, 3, || numbers(5)).collect();
        assert_eq!(outs.len(), 4);
        let err = outs[3].as_ref().unwrap_err();
        assert!(
            err.contains("source page 2: jq `range(5)`: gave more than 3"),
            "{err}"
        );
        assert!(page.finish().is_err());
        // The next page starts clean.
        let page = Page::enter(Duration::from_secs(60), "source page 3".into());
        assert_eq!(watch(id, 3, || numbers(3)).count(), 3);
        page.finish().unwrap();
    }

    #[test]
    fn a_page_past_its_deadline_fails_between_outputs() {
        let id = register("slow");
        let page = Page::enter(Duration::ZERO, "source page 1".into());
        std::thread::sleep(Duration::from_millis(2));
        let outs: Vec<_> = watch(id, 10, || numbers(3)).collect();
        assert_eq!(outs.len(), 1);
        assert!(outs[0].as_ref().unwrap_err().contains("time budget"));
        let err = page.finish().unwrap_err().to_string();
        assert!(err.contains("jq `slow`"), "{err}");
    }
}

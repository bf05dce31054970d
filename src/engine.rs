//! The pipeline as library calls: [`sync`] (fetch → map → match → plan → apply)
//! and [`revert`] (the inverse plan of a journaled run). Both end the same way:
//! the safety limits, the apply through the sink — the only place that writes —
//! and the journal. What they return is the report and how the run ended; the
//! command layer prints it.

use anyhow::{Context, Result};

use crate::config::{Job, SinkSpec};
use crate::exit::{self, Ending};
use crate::plan::{self, Change, ChangeKind, Plan, Status};
use crate::progress::{self, Progress};
use crate::report::Report;
use crate::sink::{Sink, file::FileSink, scim::ScimSink};
use crate::source::{self, Fetched};
use crate::state::{journal, lock};

/// How a sync or a revert is run.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RunOptions {
    /// Everything but writing.
    pub dry_run: bool,
    /// Apply even over the safety limits.
    pub force: bool,
    /// A dry run with changes ends as [`Ending::Changes`].
    pub detailed_exitcode: bool,
}

/// A finished sync or revert: what it did, and how it ended.
pub(crate) struct Run {
    pub report: Report,
    pub ending: Ending,
}

/// The sink a job writes to.
pub(crate) fn open_sink(job: &mut Job) -> Result<Box<dyn Sink>> {
    match job.sink.as_mut() {
        None => Err(exit::usage(format!(
            "{}: the config has no [sink]: nothing to sync to (use `agentsync fetch` to read the source only)",
            job.path.display()
        ))),
        Some(SinkSpec::Scim {
            endpoint,
            page_size,
            max_pages,
            update,
            email_attribute,
        }) => {
            let base = endpoint.base_url.clone();
            let options = crate::sink::scim::ScimOptions {
                page_size: *page_size,
                max_pages: *max_pages,
                // More writes in flight than the rate limit lets out only wait.
                concurrency: match endpoint.settings.rate_limit {
                    r if r > 0.0 => endpoint.concurrency.min(r.ceil() as usize).max(1),
                    _ => endpoint.concurrency,
                },
                update: *update,
                email_attribute: *email_attribute,
            };
            Ok(Box::new(ScimSink::new(endpoint.client(), base, options)))
        }
        Some(SinkSpec::File { path }) => Ok(Box::new(FileSink::new(path.clone()))),
    }
}

/// The whole pipeline for one loaded job.
pub(crate) fn sync(mut job: Job, options: RunOptions, progress: &Progress) -> Result<Run> {
    let mut sink = open_sink(&mut job)?;
    let _lock = lock::acquire(&job.path)?;
    progress.log(&format!(
        "{}: {} from {} to {}",
        job.name,
        if options.dry_run {
            "planning"
        } else {
            "syncing"
        },
        crate::http::display_url(&job.source.endpoint.base_url),
        sink.describe()
    ));
    let client = job.source.endpoint.client();
    let fetched = source::fetch(&job, &client, None, progress)
        .context("reading the source; nothing was written")?;
    let agents = sink
        .list_agents(progress)
        .context("listing the agent directory; nothing was written")?;
    let mut plan = plan::plan(&fetched.users, &agents, job.sync.unlink_missing);
    let contested = crate::contested::mark(
        &mut plan,
        &agents,
        &journal::read(&job.sync.journal)?,
        job.sync.on_contested,
    );
    let refusal = safety_refusal(&job, &plan);
    let report =
        Report::new(options.dry_run, &fetched, agents.len(), plan).with_contested(contested);
    finish(
        &job,
        sink.as_mut(),
        report,
        refusal,
        options,
        "sync",
        progress,
    )
}

/// Undo one journaled run: every change it applied is set back, unless the
/// agent changed since (then it is a conflict and left alone).
pub(crate) fn revert(
    mut job: Job,
    run_id: &str,
    options: RunOptions,
    progress: &Progress,
) -> Result<Run> {
    let entries = journal::read(&job.sync.journal)?;
    let entry = journal::find(&entries, run_id)?;
    let mut sink = open_sink(&mut job)?;
    let _lock = lock::acquire(&job.path)?;
    let agents = sink
        .list_agents(progress)
        .context("listing the agent directory; nothing was written")?;
    let plan = plan::revert(&entry.run, &entry.changes, &agents);
    let report = Report::new(options.dry_run, &Fetched::default(), agents.len(), plan);
    progress.log(&format!(
        "revert of run {} ({}): {} changes to undo, {} refused",
        entry.run,
        entry.time,
        report.changes.len(),
        report.conflicts.len()
    ));
    // A revert is an admin's deliberate undo: the limits of a nightly sync do
    // not hold it back.
    let options = RunOptions {
        detailed_exitcode: false,
        ..options
    };
    let kind = format!("revert of {}", entry.run);
    finish(&job, sink.as_mut(), report, None, options, &kind, progress)
}

/// The ending every sync and revert shares: stop at a dry run or a refusal,
/// else apply and journal.
fn finish(
    job: &Job,
    sink: &mut dyn Sink,
    mut report: Report,
    refusal: Option<String>,
    options: RunOptions,
    kind: &str,
    progress: &Progress,
) -> Result<Run> {
    let ending = if options.dry_run {
        if options.detailed_exitcode && report.has_changes() {
            Ending::Changes
        } else {
            Ending::Success
        }
    } else if let Some(why) = refusal.as_ref().filter(|_| !options.force) {
        Ending::Refused(why.clone())
    } else {
        if let Some(why) = &refusal {
            progress::warn(&format!("{why}; applying anyway (--force)"));
        }
        let applied = apply(sink, &mut report.changes, &mut Unwatched, progress)?;
        if let Err(e) = sink.commit() {
            // Nothing of a file sink was written: every change failed with it.
            for change in report
                .changes
                .iter_mut()
                .filter(|c| c.status == Status::Applied)
            {
                change.fail(&e);
            }
        }
        let failed = report
            .changes
            .iter()
            .filter(|c| c.status == Status::Failed)
            .count();
        report.summary.failed = failed;
        progress.log(&format!(
            "applied {} of {} changes{}{}",
            report.changes.len() - failed - applied.skipped,
            report.changes.len(),
            if failed > 0 {
                format!(", {failed} failed")
            } else {
                String::new()
            },
            if applied.skipped > 0 {
                format!(", {} skipped", applied.skipped)
            } else {
                String::new()
            }
        ));
        if let Some(why) = &applied.stopped {
            progress::warn(&format!("writing stopped: {why}"));
        }
        record(job, kind, &report)?;
        if failed > 0 || applied.skipped > 0 {
            Ending::WritesFailed
        } else {
            Ending::Success
        }
    };
    Ok(Run { report, ending })
}

/// Why the plan may not be applied without `--force`, if it may not.
fn safety_refusal(job: &Job, plan: &Plan) -> Option<String> {
    let changes = plan.changes.len() as u64;
    if changes > job.sync.max_changes {
        return Some(format!(
            "the plan has {changes} changes, more than [sync] max_changes = {}",
            job.sync.max_changes
        ));
    }
    let percent = plan.unlink_percent();
    if percent > job.sync.max_unlink_percent {
        return Some(format!(
            "the plan unlinks {} of {} linked agents ({percent:.1}%), more than [sync] max_unlink_percent = {}",
            plan.count(ChangeKind::Unlink),
            plan.linked_agents,
            job.sync.max_unlink_percent
        ));
    }
    None
}

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
}

/// Nothing to tell, never stops.
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
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<(usize, Result<()>)>();
        for _ in 0..workers {
            let (tx, next, halt, snapshot) = (tx.clone(), &next, &halt, &snapshot);
            scope.spawn(move || {
                while !halt.load(Ordering::SeqCst) {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(change) = snapshot.get(i) else { break };
                    if tx.send((i, sink.write(change))).is_err() {
                        break;
                    }
                }
            });
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
                Err(e) => {
                    change.fail(&e);
                    applied.failed += 1;
                    if crate::sink::is_refusal(&e) {
                        let message = change.error.clone().unwrap_or_default();
                        let count = match &streak {
                            Some((m, n)) if *m == message => n + 1,
                            _ => 1,
                        };
                        if count >= REFUSALS_BEFORE_STOP && applied.stopped.is_none() {
                            applied.stopped = Some(format!(
                                "the directory refused {count} writes in a row: {message}"
                            ));
                            halt.store(true, Ordering::SeqCst);
                        }
                        streak = Some((message, count));
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

/// Append an applied report to the journal (a run that changed nothing is not
/// recorded: there is nothing to read or undo).
fn record(job: &Job, kind: &str, report: &Report) -> Result<()> {
    if report.changes.is_empty() {
        return Ok(());
    }
    let entry = journal::entry(&job.path, &job.name, kind, report);
    journal::append(&job.sync.journal, &entry).with_context(|| {
        format!(
            "the writes were applied, but run {} could not be journaled",
            entry.run
        )
    })?;
    progress::debug(&format!(
        "journaled run {} in {}",
        entry.run,
        job.sync.journal.display()
    ));
    Ok(())
}

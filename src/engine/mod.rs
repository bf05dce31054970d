//! The pipeline as library calls: [`sync`] (fetch → map → match → plan → apply)
//! and [`revert`] (the inverse plan of a journaled run). Both end the same way:
//! the safety limits, the apply through the sink — the only place that writes —
//! and the journal. What they return is the report and how the run ended; the
//! command layer prints it.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use anyhow::{Context, Result};

use crate::config::{Job, SinkSpec};
use crate::exit::{self, Ending};
use crate::plan::{self, Change, Plan, Status};
use crate::progress::{self, Progress};
use crate::report::Report;
use crate::signals;
use crate::sink::{Sink, file::FileSink, scim::ScimSink};
use crate::source::Fetched;
use crate::state::journal;
use crate::state::runs::{self, NothingToUndo, Target};

mod apply;
mod books;
mod guards;
mod read;

pub(crate) use apply::{Applied, ApplyWatch, apply};
use books::Books;
use guards::{check_min_users, safety_refusal, source_refusal};
use read::read_both;

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
    /// An error after writing began (the journal failed): the report is
    /// printed, then the run fails with it (exit 1).
    pub error: Option<anyhow::Error>,
}

impl Run {
    fn new(report: Report, ending: Ending) -> Self {
        Run {
            report,
            ending,
            error: None,
        }
    }
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
            directory_cache,
            max_pages,
            update,
            email_attribute,
        }) => {
            let base = endpoint.base_url.clone();
            // More writes in flight than the rate limit lets out only wait.
            // The cast: r > 0, and `as` saturates a huge rate, which `min` ignores.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let concurrency = match endpoint.settings.rate_limit {
                r if r > 0.0 => endpoint.concurrency.min(r.ceil() as usize).max(1),
                _ => endpoint.concurrency,
            };
            let options = crate::sink::scim::ScimOptions {
                page_size: *page_size,
                directory_cache: directory_cache.clone(),
                max_pages: *max_pages,
                concurrency,
                update: *update,
                email_attribute: *email_attribute,
            };
            Ok(Box::new(ScimSink::new(endpoint.client(), base, options)))
        }
        // A missing or empty file is found here, before the source is read.
        Some(SinkSpec::File { path }) => Ok(Box::new(FileSink::open(path.clone())?)),
    }
}

/// The whole pipeline for one loaded job.
pub(crate) fn sync(mut job: Job, options: RunOptions, progress: &Progress) -> Result<Run> {
    signals::before_writes();
    let mut sink = open_sink(&mut job)?;
    let past = past_runs(&job, options)?;
    let mut books = Books::open(&job, "sync", options)?;
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
    let result = (|| {
        sink.prepare()
            .context("reading the agent directory's configuration; nothing was written")?;
        let client = job.source.endpoint.client();
        let (mut fetched, agents) = read_both(&job, &client, sink.as_mut(), progress)?;
        let mut plan = plan::plan(fetched.take_users(), &agents, job.sync.unlink_missing);
        sink.keep_for(&plan.changes);
        // Each change keeps the agent's version as listed: a saved plan
        // carries it, and its apply leaves an agent whose version moved.
        for change in &mut plan.changes {
            change.version = sink.version_of(&change.agent_id);
        }
        let policy = job.sync.on_contested;
        let contested = crate::contested::mark(&mut plan, &agents, &past, policy);
        if let Some(warning) = crate::contested::warning(policy, &contested, &plan) {
            progress::warn(&warning);
        }
        let refusal = source_refusal(&job, &fetched, runs::last_success(&past))
            .or_else(|| safety_refusal(&job, &plan))
            .or_else(|| crate::contested::refusal(policy, &contested, &plan));
        let report =
            Report::new(options.dry_run, &fetched, agents.len(), plan).with_contested(contested);
        finish(
            sink.as_mut(),
            report,
            refusal.as_deref(),
            options,
            books.as_mut(),
            progress,
        )
    })();
    Books::close(books, &job, result, &past)
}

/// The job's runs journaled so far (none for a dry run without a journal).
fn past_runs(job: &Job, options: RunOptions) -> Result<Vec<journal::Entry>> {
    match (job_journal(job), options.dry_run) {
        (Some(path), _) => runs::of_job(path, &job.sync.key, job.sync.lock.as_deref()),
        (None, true) => Ok(Vec::new()),
        (None, false) => Err(no_state_dir()),
    }
}

/// The journal that holds the job's runs: its own, or until a run renames
/// it, the one an older version named after a link.
pub(crate) fn job_journal(job: &Job) -> Option<&std::path::Path> {
    match (&job.sync.legacy_journal, &job.sync.journal) {
        (Some(old), Some(new)) if !new.exists() => Some(old),
        (_, journal) => journal.as_deref(),
    }
}

/// The job's runs, for `history`: its own only, `running` where so.
pub(crate) fn history(job: &Job) -> Result<Vec<journal::Entry>> {
    let path = job_journal(job).ok_or_else(no_state_dir)?;
    runs::of_job(path, &job.sync.key, job.sync.lock.as_deref())
}

pub(crate) fn no_state_dir() -> anyhow::Error {
    anyhow::anyhow!(
        "no state directory for the journal and the lock: set AGENTSYNC_STATE_DIR (or STATE_DIRECTORY, XDG_STATE_HOME, HOME), or [sync] journal; nothing was written"
    )
}

/// What `revert` did: a run, or nothing, saying why.
pub(crate) enum Reverted {
    /// The run that undid (or finished undoing) run `of`.
    Ran {
        run: Box<Run>,
        of: String,
    },
    Nothing(NothingToUndo),
}

/// Undo one journaled run (`run_id`, or `last`: see [`runs::target`]):
/// every change it applied is set back, unless the agent changed since (then
/// it is a conflict and left alone); an agent already set back (by a revert
/// that did not finish) needs nothing. Writes that were in flight when the
/// run was killed are set back where they landed. A revert is not held to
/// the safety limits: it only sets agents that still hold what the run
/// wrote back to what the journal says they held before.
pub(crate) fn revert(
    mut job: Job,
    run_id: &str,
    options: RunOptions,
    progress: &Progress,
) -> Result<Reverted> {
    signals::before_writes();
    let entries = past_runs(&job, RunOptions::default())?;
    let entry = match runs::target(&entries, run_id)? {
        Target::Nothing(nothing) => return Ok(Reverted::Nothing(nothing)),
        Target::Undo(entry) => entry.clone(),
        Target::Complete { revert, of } => {
            progress.log(&format!(
                "run {} ({}, {}) did not finish: completing it",
                revert.run,
                revert.kind,
                revert.ending.as_str()
            ));
            of.clone()
        }
    };
    let mut sink = open_sink(&mut job)?;
    let mut books = Books::open(&job, &format!("revert of {}", entry.run), options)?;
    let result = (|| {
        let agents = sink
            .list_agents(progress)
            .context("listing the agent directory; nothing was written")?;
        let changes = landed(&entry, &agents, progress);
        let plan = plan::revert(&entry.run, &changes, &agents);
        let report = Report::new(options.dry_run, &Fetched::default(), agents.len(), plan);
        progress.log(&format!(
            "revert of run {} ({}, {}): {} changes to undo, {} refused",
            entry.run,
            entry.time,
            entry.ending.as_str(),
            report.changes.len(),
            report.conflicts.len()
        ));
        let options = RunOptions {
            detailed_exitcode: false,
            ..options
        };
        let mut run = finish(
            sink.as_mut(),
            report,
            None,
            options,
            books.as_mut(),
            progress,
        )?;
        // An agent of the run left changed is no success: the revert is
        // not done until someone looks at it.
        if !options.dry_run && !run.report.conflicts.is_empty() && run.ending == Ending::Success {
            progress::warn(&format!(
                "{} of run {} left as they are (see the conflicts): the revert is incomplete",
                crate::term::count(run.report.conflicts.len() as u64, "agent"),
                entry.run
            ));
            run.ending = Ending::WritesFailed;
        }
        Ok(run)
    })();
    let run = Books::close(books, &job, result, &entries)?;
    Ok(Reverted::Ran {
        run: Box::new(run),
        of: entry.run,
    })
}

/// The changes of `entry` that reached the directory: those applied, and of
/// those whose outcome the run did not know — in flight when it was killed (an
/// intent without a result) or `unknown` (the answer was lost) — the ones the
/// agent, as listed now, does not show at their old value. A write the agent
/// does not show was never made: nothing to undo. One the agent shows neither
/// way is kept, and the revert plan calls it a conflict.
fn landed(
    entry: &journal::Entry,
    agents: &[crate::sink::Agent],
    progress: &Progress,
) -> Vec<Change> {
    let mut never = 0;
    let mut in_flight = 0;
    let changes = entry
        .changes
        .iter()
        .filter_map(|c| {
            if !matches!(c.status, Status::Planned | Status::Unknown) {
                return Some(c.clone());
            }
            in_flight += 1;
            let now = agents
                .iter()
                .find(|a| a.id == c.agent_id)
                .map(|a| &a.external_id);
            if now == Some(&c.old_external_id) {
                never += 1;
                return None;
            }
            Some(Change {
                status: Status::Applied,
                ..c.clone()
            })
        })
        .collect();
    if in_flight > 0 {
        progress.log(&format!(
            "run {}: {in_flight} writes had no result, or an unknown one (killed, or the answer was lost): {} landed, {never} never did and need no undo",
            entry.run,
            in_flight - never
        ));
    }
    changes
}

/// The ending every sync and revert shares: stop at a dry run or a refusal,
/// else journal the intents, apply, and journal each result.
fn finish(
    sink: &mut dyn Sink,
    mut report: Report,
    refusal: Option<&str>,
    options: RunOptions,
    books: Option<&mut Books>,
    progress: &Progress,
) -> Result<Run> {
    let refused = refusal.filter(|_| !options.force).map(str::to_owned);
    report.refusal.clone_from(&refused);
    if options.dry_run {
        let ending = if options.detailed_exitcode && report.has_changes() {
            Ending::Changes
        } else {
            Ending::Success
        };
        return Ok(Run::new(report, ending));
    }
    if let Some(why) = refused {
        return Ok(Run::new(report, Ending::Refused(why)));
    }
    if let Some(why) = refusal {
        progress::warn(&format!("{why}; applying anyway (--force)"));
    }
    let books = books.expect("a run that writes keeps its books");
    if report.changes.is_empty() {
        return Ok(Run::new(report, Ending::Success));
    }
    books
        .journal
        .intents(&report.changes)
        .context("the journal cannot be written; nothing was written")?;
    let signals = signals::Watch::install()?;
    let mut watch = Journaling {
        journal: &mut books.journal,
        signals: &signals,
    };
    let applied = apply(sink, &mut report.changes, &mut watch, progress);
    let mut error = None;
    let applied = match applied {
        Ok(applied) => applied,
        Err(e) => {
            error = Some(e.context("the journal failed: writing stopped"));
            Applied {
                skipped: report
                    .changes
                    .iter()
                    .filter(|c| c.status == Status::Skipped)
                    .count(),
                ..Applied::default()
            }
        }
    };
    if let Err(e) = sink.commit() {
        // Nothing of a file sink was written: every change failed with it.
        for change in report
            .changes
            .iter_mut()
            .filter(|c| c.status == Status::Applied)
        {
            change.fail(&e);
            if error.is_none() {
                error = books.journal.change(change).err();
            }
        }
    }
    // The changes never started are journaled as such.
    for change in report
        .changes
        .iter()
        .filter(|c| c.status == Status::Skipped)
    {
        if error.is_none() {
            error = books.journal.change(change).err();
        }
    }
    report.count_outcomes();
    report.interrupted = signals.caught().map(signals::name);
    let s = &report.summary;
    let (failed, unknown) = (s.failed, s.unknown);
    log_applied(
        progress,
        report.changes.len(),
        failed,
        applied.skipped,
        unknown,
    );
    if let Some(why) = &applied.stopped {
        progress::warn(&format!("writing stopped: {why}"));
    }
    if unknown > 0 {
        progress::warn(&format!(
            "{} of unknown outcome: the answer was lost and reading the agent back could not tell whether the write landed (see their error; `revert` reads them again)",
            crate::term::count(unknown as u64, "write")
        ));
    }
    let ending = if let Some(signal) = signals.caught() {
        Ending::Interrupted(signal)
    } else if failed > 0 || unknown > 0 || applied.skipped > 0 {
        Ending::WritesFailed
    } else {
        Ending::Success
    };
    books.signals = Some(signals);
    Ok(Run {
        report,
        ending,
        error,
    })
}

/// `applied 8 of 10 changes, 1 failed, 1 skipped`.
fn log_applied(progress: &Progress, changes: usize, failed: usize, skipped: usize, unknown: usize) {
    let mut line = format!(
        "applied {} of {}",
        changes - failed - skipped - unknown,
        crate::term::count(changes as u64, "change"),
    );
    for (n, what) in [
        (failed, "failed"),
        (skipped, "skipped"),
        (unknown, "unknown"),
    ] {
        if n > 0 {
            line.push_str(&format!(", {n} {what}"));
        }
    }
    progress.log(&line);
}

/// The apply's watcher for a run that writes: each result goes to the journal
/// as it ends; a signal stops the writing.
struct Journaling<'a> {
    journal: &'a mut journal::Writer,
    signals: &'a signals::Watch,
}

impl ApplyWatch for Journaling<'_> {
    fn done(&mut self, change: &Change) -> Result<()> {
        self.journal.change(change)
    }

    fn stop(&self) -> Option<String> {
        self.signals
            .caught()
            .map(|s| format!("interrupted by {}", signals::name(s)))
    }

    fn stop_flag(&self) -> Option<Arc<AtomicUsize>> {
        Some(self.signals.flag())
    }
}

/// Apply a saved plan: exactly its changes, each checked first against one
/// listing of the directory. A change whose agent moved since the plan is
/// `stale` and not written (the run then ends as [`Ending::WritesFailed`]);
/// the rest end like a sync: the safety limits (a plan that undoes a run of
/// the journal is not held to them, as `revert` is not), the apply, the
/// journal.
pub(crate) fn apply_saved(
    mut job: Job,
    saved: crate::saved::SavedPlan,
    plan_path: &std::path::Path,
    options: RunOptions,
    progress: &Progress,
) -> Result<Run> {
    signals::before_writes();
    let options = RunOptions {
        dry_run: false,
        detailed_exitcode: false,
        ..options
    };
    let mut sink = open_sink(&mut job)?;
    let past = past_runs(&job, options)?;
    // The revert rule: a plan that undoes a run of this job's journal — its
    // changes the inverse of that run's — is journaled as its revert and,
    // like `revert`, not held to the safety limits. Any other plan is.
    let reverts = saved.inverse_of(&past).map(str::to_owned);
    let kind = match &reverts {
        Some(run) => format!("revert of {run} (plan {})", plan_path.display()),
        None => format!("apply of {}", plan_path.display()),
    };
    let mut books = Books::open(&job, &kind, options)?;
    progress.log(&format!(
        "{}: applying {} ({}, made {}): {} changes to {}",
        job.name,
        plan_path.display(),
        saved.kind,
        saved.made,
        saved.changes.len(),
        sink.describe()
    ));
    let result = (|| {
        let agents = sink
            .list_agents(progress)
            .context("listing the agent directory; nothing was written")?;
        let order: std::collections::HashMap<String, usize> = saved
            .changes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.agent_id.clone(), i))
            .collect();
        let held_to_limits = reverts.is_none();
        let mut changes = saved.changes;
        crate::saved::mark_stale(&mut changes, &agents, &|id| sink.version_of(id));
        let (stale, fresh): (Vec<Change>, Vec<Change>) =
            changes.into_iter().partition(|c| c.status == Status::Stale);
        if !stale.is_empty() {
            progress::warn(&format!(
                "{} of the plan's agents changed since it was made: left alone (stale)",
                stale.len()
            ));
        }
        let plan = Plan {
            changes: fresh,
            linked_agents: agents.iter().filter(|a| a.external_id.is_some()).count(),
            ..Plan::default()
        };
        let refusal = held_to_limits
            .then(|| safety_refusal(&job, &plan))
            .flatten();
        let mut report = Report::new(false, &Fetched::default(), agents.len(), plan);
        report.plan = Some(crate::saved::PlanRef {
            path: plan_path.display().to_string(),
            made: saved.made,
        });
        let mut run = finish(
            sink.as_mut(),
            report,
            refusal.as_deref(),
            options,
            books.as_mut(),
            progress,
        )?;
        if !stale.is_empty() {
            run.report.changes.extend(stale);
            run.report
                .changes
                .sort_by_key(|c| order.get(&c.agent_id).copied().unwrap_or(usize::MAX));
            run.report.count_outcomes();
            if run.ending == Ending::Success {
                run.ending = Ending::WritesFailed;
            }
        }
        Ok(run)
    })();
    Books::close(books, &job, result, &past)
}

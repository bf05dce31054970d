//! The pipeline as library calls: [`sync`] (fetch → map → match → plan → apply)
//! and [`revert`] (the inverse plan of a journaled run). Both end the same way:
//! the safety limits, the apply through the sink — the only place that writes —
//! and the journal. What they return is the report and how the run ended; the
//! command layer prints it.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result, bail};

use crate::config::{Job, SinkSpec};
use crate::exit::{self, Ending};
use crate::plan::{self, Change, ChangeKind, Plan, Status};
use crate::progress::{self, Progress};
use crate::report::Report;
use crate::signals;
use crate::sink::{Sink, file::FileSink, scim::ScimSink};
use crate::source::{self, Fetched};
use crate::state::journal::{self, Outcome};
use crate::state::{lock, metrics};

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
        // A missing or empty file is found here, before the source is read.
        Some(SinkSpec::File { path }) => Ok(Box::new(FileSink::open(path.clone())?)),
    }
}

/// The whole pipeline for one loaded job.
pub(crate) fn sync(mut job: Job, options: RunOptions, progress: &Progress) -> Result<Run> {
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
        let fetched = source::fetch(&job, &client, None, progress)
            .context("reading the source; nothing was written")?;
        check_min_users(&job, &fetched)?;
        let agents = sink
            .list_agents(progress)
            .context("listing the agent directory; nothing was written")?;
        let mut plan = plan::plan(&fetched.users, &agents, job.sync.unlink_missing);
        let contested = crate::contested::mark(&mut plan, &agents, &past, job.sync.on_contested);
        let refusal = source_refusal(&job, &fetched, journal::last_success(&past))
            .or_else(|| safety_refusal(&job, &plan));
        let report =
            Report::new(options.dry_run, &fetched, agents.len(), plan).with_contested(contested);
        finish(
            sink.as_mut(),
            report,
            refusal,
            options,
            books.as_mut(),
            progress,
        )
    })();
    Books::close(books, &job, result, &past)
}

/// The runs journaled so far (none for a dry run without a journal).
fn past_runs(job: &Job, options: RunOptions) -> Result<Vec<journal::Entry>> {
    match (&job.sync.journal, options.dry_run) {
        (Some(path), _) => journal::read(path),
        (None, true) => Ok(Vec::new()),
        (None, false) => Err(no_state_dir()),
    }
}

fn no_state_dir() -> anyhow::Error {
    anyhow::anyhow!(
        "no state directory for the journal and the lock: set AGENTSYNC_STATE_DIR (or STATE_DIRECTORY, XDG_STATE_HOME, HOME), or [sync] journal; nothing was written"
    )
}

/// Undo one journaled run: every change it applied is set back, unless the
/// agent changed since (then it is a conflict and left alone). Writes that
/// were in flight when the run was killed are set back where they landed.
pub(crate) fn revert(
    mut job: Job,
    run_id: &str,
    options: RunOptions,
    progress: &Progress,
) -> Result<Run> {
    let entries = past_runs(&job, RunOptions::default())?;
    let entry = journal::find(&entries, run_id)?.clone();
    let mut sink = open_sink(&mut job)?;
    let mut books = Books::open(&job, &format!("revert of {}", entry.run), options)?;
    let result = (|| {
        let agents = sink
            .list_agents(progress)
            .context("listing the agent directory; nothing was written")?;
        let changes = landed(&entry, &agents, progress);
        let plan = plan::revert(&entry.run, &changes, &agents);
        // A revert is held to the limits of a sync: undoing a large run is a
        // large change too (`--force` passes them).
        let refusal = safety_refusal(&job, &plan);
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
        finish(
            sink.as_mut(),
            report,
            refusal,
            options,
            books.as_mut(),
            progress,
        )
    })();
    Books::close(books, &job, result, &entries)
}

/// The changes of `entry` that reached the directory: those applied, and of
/// those in flight when the run was killed (an intent without a result), the
/// ones whose new value the agent holds. An in-flight write the agent does not
/// show was never made: nothing to undo. One the agent shows neither way is
/// kept, and the revert plan calls it a conflict.
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
            if c.status != Status::Planned {
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
            "run {}: {in_flight} writes had no result (the run was killed): {} landed, {never} never did and need no undo",
            entry.run,
            in_flight - never
        ));
    }
    changes
}

/// A source with fewer users than `min_users` is broken, whatever `--force`.
fn check_min_users(job: &Job, fetched: &Fetched) -> Result<()> {
    let users = fetched.users.len();
    if users as u64 >= job.sync.min_users {
        return Ok(());
    }
    let mut why = format!(
        "the source gave {users} users ({}), fewer than [sync] min_users = {}",
        fetched.summary(),
        job.sync.min_users
    );
    const SHOWN: usize = 3;
    for s in fetched.skipped.iter().take(SHOWN) {
        why.push_str(&format!(
            "; page {} record {} skipped: {}",
            s.page, s.index, s.reason
        ));
    }
    if fetched.skipped.len() > SHOWN {
        why.push_str(&format!("; {} more skipped", fetched.skipped.len() - SHOWN));
    }
    bail!("{why}; nothing was written")
}

/// Why the source may not be trusted without `--force`: too many records
/// skipped, or far fewer users than the last successful run.
fn source_refusal(job: &Job, fetched: &Fetched, last: Option<&journal::Entry>) -> Option<String> {
    let skipped = fetched.skipped.len();
    if skipped > 0 && fetched.records > 0 {
        let percent = skipped as f64 * 100.0 / fetched.records as f64;
        if percent > job.sync.max_skipped_percent {
            return Some(format!(
                "the mapping skipped {skipped} of {} source records ({percent:.1}%), more than [sync] max_skipped_percent = {}",
                fetched.records, job.sync.max_skipped_percent
            ));
        }
    }
    let (last, before) = last.and_then(|e| Some((e, e.users?)))?;
    let users = fetched.users.len();
    if before > 0 && users < before {
        let drop = (before - users) as f64 * 100.0 / before as f64;
        if drop > job.sync.max_source_drop_percent {
            return Some(format!(
                "the source gave {users} users, {drop:.1}% fewer than the {before} of the last successful run ({} at {}), more than [sync] max_source_drop_percent = {}",
                last.run, last.time, job.sync.max_source_drop_percent
            ));
        }
    }
    None
}

/// The ending every sync and revert shares: stop at a dry run or a refusal,
/// else journal the intents, apply, and journal each result.
fn finish(
    sink: &mut dyn Sink,
    mut report: Report,
    refusal: Option<String>,
    options: RunOptions,
    books: Option<&mut Books>,
    progress: &Progress,
) -> Result<Run> {
    let refused = refusal.clone().filter(|_| !options.force);
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
    if let Some(why) = &refusal {
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
    let failed = report
        .changes
        .iter()
        .filter(|c| c.status == Status::Failed)
        .count();
    report.summary.failed = failed;
    progress.log(&format!(
        "applied {} of {}{}{}",
        report.changes.len() - failed - applied.skipped,
        crate::output::count(report.changes.len() as u64, "change"),
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
    let ending = if let Some(signal) = signals.caught() {
        Ending::Interrupted(signal)
    } else if failed > 0 || applied.skipped > 0 {
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

/// What a run that writes keeps: its lock, its journal, when it started, and
/// the signal handlers once the writing began.
struct Books {
    _lock: lock::RunLock,
    journal: journal::Writer,
    started: Instant,
    signals: Option<signals::Watch>,
}

impl Books {
    /// For a run that writes: take the lock, then begin the journal. Either
    /// failing ends the run before anything was read or written. `None` for a
    /// dry run, which keeps no books.
    fn open(job: &Job, kind: &str, options: RunOptions) -> Result<Option<Books>> {
        if options.dry_run {
            return Ok(None);
        }
        let started = Instant::now();
        let (Some(journal_path), Some(lock_path)) = (&job.sync.journal, &job.sync.lock) else {
            return Err(no_state_dir());
        };
        let lock = lock::acquire(lock_path, &job.path)?;
        let config = job.path.canonicalize().unwrap_or_else(|_| job.path.clone());
        let journal = journal::Writer::begin(journal_path, &config, &job.name, kind)
            .context("the journal cannot be written; nothing was read or written")?;
        if let Some(url) = &job.sync.ping_url {
            metrics::ping(url.as_str(), "/start");
        }
        Ok(Some(Books {
            _lock: lock,
            journal,
            started,
            signals: None,
        }))
    }

    /// End the run's books: the journal's `end` record, the metrics file, the
    /// last ping. A journal that cannot be ended makes the run fail (exit 1)
    /// after its report.
    fn close(
        books: Option<Books>,
        job: &Job,
        result: Result<Run>,
        past: &[journal::Entry],
    ) -> Result<Run> {
        let Some(mut books) = books else {
            return result;
        };
        let (ending, error, summary, users, agents) = match &result {
            Ok(run) => {
                let ending = match (&run.error, &run.ending) {
                    (Some(_), _) => Outcome::Failed,
                    (None, Ending::Success | Ending::Changes) => Outcome::Success,
                    (None, Ending::WritesFailed) => Outcome::WritesFailed,
                    (None, Ending::Refused(_)) => Outcome::Refused,
                    (None, Ending::Interrupted(_)) => Outcome::Interrupted,
                };
                let error = match (&run.error, &run.ending) {
                    (Some(e), _) => Some(format!("{e:#}")),
                    (None, Ending::Refused(why)) => Some(why.clone()),
                    (None, Ending::Interrupted(s)) => {
                        Some(format!("interrupted by {}", signals::name(*s)))
                    }
                    _ => None,
                };
                let read_source = run.report.source.pages > 0;
                (
                    ending,
                    error,
                    journal::Summary::of(&run.report.changes),
                    read_source.then_some(run.report.source.users),
                    Some(run.report.sink.agents),
                )
            }
            Err(e) => (
                Outcome::Failed,
                Some(format!("{e:#}")),
                journal::Summary::default(),
                None,
                None,
            ),
        };
        let now = SystemTime::now();
        let ended = books.journal.end(journal::End {
            time: journal::timestamp(now),
            ending,
            summary: summary.clone(),
            users,
            error: error.map(|e| crate::redact::redact(&e)),
        });
        let mut result = result;
        if let Err(e) = ended {
            match &mut result {
                Ok(run) if run.error.is_none() => {
                    run.error = Some(e.context(format!(
                        "run {} could not be journaled to its end",
                        books.journal.run()
                    )));
                }
                _ => progress::warn(&format!("{e:#}")),
            }
        } else {
            progress::debug(&format!(
                "journaled run {} in {}",
                books.journal.run(),
                books.journal.path().display()
            ));
        }
        let code = match &result {
            Ok(run) if run.error.is_some() => 1,
            Ok(run) => exit::code(&Ok(run.ending.clone())),
            Err(_) => 1,
        };
        let success = ending == Outcome::Success;
        if let Some(path) = &job.sync.metrics_file {
            let secs = |t: SystemTime| {
                t.duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            };
            let last_success = if success {
                secs(now)
            } else {
                metrics::previous_success(path, &job.name)
                    .or_else(|| {
                        past.iter()
                            .rev()
                            .find(|e| e.kind == "sync" && e.ending == Outcome::Success)
                            .and_then(|e| humantime::parse_rfc3339(&e.time).ok())
                            .map(secs)
                    })
                    .unwrap_or(0)
            };
            let applied = |kind: ChangeKind| match &result {
                Ok(run) => run
                    .report
                    .changes
                    .iter()
                    .filter(|c| c.kind == kind && c.status == Status::Applied)
                    .count(),
                Err(_) => 0,
            };
            let m = metrics::RunMetrics {
                job: &job.name,
                time: secs(now),
                last_success,
                exit_code: code,
                link: applied(ChangeKind::Link),
                update: applied(ChangeKind::Update),
                unlink: applied(ChangeKind::Unlink),
                failed_writes: summary.failed,
                source_users: users,
                agents,
                duration: books.started.elapsed(),
            };
            if let Err(e) = metrics::write(path, &m) {
                progress::warn(&format!("the metrics file was not updated: {e:#}"));
            }
        }
        if let Some(url) = &job.sync.ping_url {
            metrics::ping(url.as_str(), if success { "" } else { "/fail" });
        }
        result
    }
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
        for _ in 0..workers {
            let (tx, next, halt, snapshot) = (tx.clone(), &next, &halt, &snapshot);
            let outside = outside.clone();
            scope.spawn(move || {
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

/// Apply a saved plan: exactly its changes, each checked first against one
/// listing of the directory. A change whose agent moved since the plan is
/// `stale` and not written (the run then ends as [`Ending::WritesFailed`]);
/// the rest end like a sync: the safety limits (a plan that undoes a run is
/// not held to them, as `revert` is not), the apply, the journal.
pub(crate) fn apply_saved(
    mut job: Job,
    saved: crate::saved::SavedPlan,
    plan_path: &std::path::Path,
    options: RunOptions,
    progress: &Progress,
) -> Result<Run> {
    let options = RunOptions {
        dry_run: false,
        detailed_exitcode: false,
        ..options
    };
    let mut sink = open_sink(&mut job)?;
    let past = past_runs(&job, options)?;
    let kind = format!("apply of {}", plan_path.display());
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
        let held_to_limits = !saved.is_revert();
        let mut changes = saved.changes;
        crate::saved::mark_stale(&mut changes, &agents);
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
            refusal,
            options,
            books.as_mut(),
            progress,
        )?;
        if !stale.is_empty() {
            run.report.changes.extend(stale);
            run.report
                .changes
                .sort_by_key(|c| order.get(&c.agent_id).copied().unwrap_or(usize::MAX));
            if run.ending == Ending::Success {
                run.ending = Ending::WritesFailed;
            }
        }
        Ok(run)
    })();
    Books::close(books, &job, result, &past)
}

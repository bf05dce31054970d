//! The bookkeeping of a run that writes: the lock taken first, the journal
//! begun and ended, and after the run the metrics file and the pings.

use std::time::{Instant, SystemTime};

use anyhow::{Context, Result};

use super::{Run, RunOptions, no_state_dir};
use crate::config::Job;
use crate::exit::{self, Ending};
use crate::plan::{ChangeKind, Status};
use crate::progress;
use crate::signals;
use crate::state::journal::{self, Outcome};
use crate::state::{lock, metrics};

/// What a run that writes keeps: its lock, its journal, when it started, and
/// the signal handlers once the writing began.
pub(crate) struct Books {
    _lock: lock::RunLock,
    pub(crate) journal: journal::Writer,
    started: Instant,
    pub(crate) signals: Option<signals::Watch>,
}

impl Books {
    /// For a run that writes: take the lock, then begin the journal. Either
    /// failing ends the run before anything was read or written. `None` for a
    /// dry run, which keeps no books.
    pub(crate) fn open(job: &Job, kind: &str, options: RunOptions) -> Result<Option<Books>> {
        if options.dry_run {
            return Ok(None);
        }
        let started = Instant::now();
        let (Some(journal_path), Some(lock_path)) = (&job.sync.journal, &job.sync.lock) else {
            return Err(no_state_dir());
        };
        let lock = lock::acquire(lock_path, &job.path)?;
        job.sync.key.keep_alias()?;
        // The journal an older version named after a link takes the job's
        // own name now.
        if let Some(old) = &job.sync.legacy_journal
            && !journal_path.exists()
        {
            std::fs::rename(old, journal_path).with_context(|| {
                format!(
                    "renaming the journal {} to {}",
                    old.display(),
                    journal_path.display()
                )
            })?;
        }
        let journal = journal::Writer::begin(journal_path, &job.sync.key, &job.name, kind)
            .context("the journal cannot be written; nothing was read or written")?;
        if let Some(url) = &job.sync.ping_url {
            metrics::ping(url, "/start", &job.extra_roots());
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
    pub(crate) fn close(
        books: Option<Books>,
        job: &Job,
        result: Result<Run>,
        past: &[journal::Entry],
    ) -> Result<Run> {
        let Some(mut books) = books else {
            return result;
        };
        let now = SystemTime::now();
        let end = end_record(&result, now);
        let (ending, failed_writes, users) = (end.ending, end.summary.failed, end.users);
        let agents = result.as_ref().ok().map(|run| run.report.sink.agents);
        let ended = books.journal.end(end);
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
                failed_writes,
                unknown_writes: result.as_ref().map_or(0, |run| run.report.summary.unknown),
                contested: result
                    .as_ref()
                    .map_or(0, |run| run.report.summary.contested),
                contested_overwritten: result.as_ref().map_or(0, |run| {
                    if run.report.refusal.is_some() {
                        0
                    } else {
                        run.report.contested_overwritten()
                    }
                }),
                source_users: users,
                agents,
                duration: books.started.elapsed(),
            };
            if let Err(e) = metrics::write(path, &m) {
                progress::warn(&format!("the metrics file was not updated: {e:#}"));
            }
        }
        if let Some(url) = &job.sync.ping_url {
            metrics::ping(url, if success { "" } else { "/fail" }, &job.extra_roots());
        }
        result
    }
}

/// The journal's `end` record of a run, from how it ended.
fn end_record(result: &Result<Run>, now: SystemTime) -> journal::End {
    let (ending, error, summary, users) = match result {
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
            )
        }
        Err(e) => (
            Outcome::Failed,
            Some(format!("{e:#}")),
            journal::Summary::default(),
            None,
        ),
    };
    journal::End {
        time: journal::timestamp(now),
        ending,
        summary,
        users,
        error: error.map(|e| crate::redact::redact(&e)),
    }
}

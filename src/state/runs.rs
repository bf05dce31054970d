//! The runs of one job as read from its journal: only its own (a journal
//! several configs share holds theirs too), which one is still running, which
//! were reverted and by which run, and which run `revert` acts on — `last`
//! meaning what its operator means by it.

use std::path::Path;

use anyhow::{Result, bail};
use serde::Serialize;

use super::JobKey;
use super::journal::{self, Entry, Outcome};
use super::lock;

/// The runs of the job `key` in the journal at `path`, oldest first: those
/// whose `start` names the job (records of older versions, which name none,
/// by their config's canonical path). The newest run without an `end` is
/// `running` while the lock at `lock` is held; each run reverted since says
/// by which run.
pub(crate) fn of_job(path: &Path, key: &JobKey, lock: Option<&Path>) -> Result<Vec<Entry>> {
    let config = key.config.display().to_string();
    let mut entries: Vec<Entry> = journal::read(path)?
        .into_iter()
        .filter(|e| match &e.job {
            Some(job) => *job == key.name,
            None => e.config == config,
        })
        .collect();
    if let Some(newest) = entries.last_mut()
        && !newest.ended
        && lock.is_some_and(lock::is_held)
    {
        newest.ending = Outcome::Running;
    }
    mark_reverted(&mut entries);
    Ok(entries)
}

/// Each run's `reverted_by`: the newest later revert of it that wrote
/// something, whole when that revert succeeded.
fn mark_reverted(entries: &mut [Entry]) {
    for i in 0..entries.len() {
        let by = entries[i + 1..]
            .iter()
            .rev()
            .find(|r| {
                r.reverts() == Some(entries[i].run.as_str())
                    && (r.ending == Outcome::Success || r.undoable() > 0)
            })
            .map(|r| (r.run.clone(), r.ending == Outcome::Success));
        if let Some((run, whole)) = by {
            entries[i].reverted_by = Some(run);
            entries[i].reverted = Some(if whole { "whole" } else { "in part" });
        }
    }
}

/// The last sync that succeeded and counted its users.
pub(crate) fn last_success(entries: &[Entry]) -> Option<&Entry> {
    entries
        .iter()
        .rev()
        .find(|e| e.kind == "sync" && e.ending == Outcome::Success && e.users.is_some())
}

/// What `revert` acts on.
#[derive(Debug)]
pub(crate) enum Target<'a> {
    /// Undo this run's changes.
    Undo(&'a Entry),
    /// `revert` did not finish undoing `of`: finish it.
    Complete { revert: &'a Entry, of: &'a Entry },
    /// `revert last` has nothing to undo.
    Nothing(NothingToUndo),
}

/// Why `revert last` wrote nothing, and the run to give instead.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct NothingToUndo {
    /// The newest run of the job, if it has one.
    pub newest: Option<String>,
    pub reason: String,
    /// The run to give explicitly (`agentsync revert RUN`), if there is one.
    pub revert_instead: Option<String>,
}

impl NothingToUndo {
    pub(crate) fn message(&self) -> String {
        let instead = match &self.revert_instead {
            Some(run) => format!("; to undo a run, give it explicitly: `agentsync revert {run}`"),
            None => String::new(),
        };
        match &self.newest {
            Some(run) => format!(
                "nothing to revert: the newest run {run} {}{instead}; nothing was written",
                self.reason
            ),
            None => format!("nothing to revert: {}; nothing was written", self.reason),
        }
    }
}

/// The run `run` names — an ID (a unique prefix is enough), or `last` — and
/// what to do with it. `last` is the newest run of the job: a run that wrote
/// is undone; an unfinished revert (interrupted, failed, refused) is
/// completed, never inverted; a completed revert, or a run that wrote
/// nothing, is left alone, naming the run to give instead. A revert is
/// inverted only when its ID is given. A run still running is refused.
pub(crate) fn target<'a>(entries: &'a [Entry], run: &str) -> Result<Target<'a>> {
    if run != "last" {
        let entry = find(entries, run)?;
        refuse_running(entry)?;
        return Ok(Target::Undo(entry));
    }
    let Some(newest) = entries.last() else {
        return Ok(Target::Nothing(NothingToUndo {
            newest: None,
            reason: "the journal has no run of this config yet".into(),
            revert_instead: None,
        }));
    };
    refuse_running(newest)?;
    if let Some(of) = newest.reverts() {
        if newest.ending == Outcome::Success {
            return Ok(Target::Nothing(NothingToUndo {
                newest: Some(newest.run.clone()),
                reason: format!("is a completed revert of run {of}, which stays undone"),
                revert_instead: Some(newest.run.clone()),
            }));
        }
        let Some(of) = entries.iter().rev().find(|e| e.run == of) else {
            bail!(
                "the newest run {} is an unfinished revert of run {of}, which is not in the journal: give the run to revert explicitly",
                newest.run
            );
        };
        return Ok(Target::Complete { revert: newest, of });
    }
    if newest.undoable() > 0 {
        return Ok(Target::Undo(newest));
    }
    let earlier = entries.iter().rev().skip(1).find(|e| e.undoable() > 0);
    Ok(Target::Nothing(NothingToUndo {
        newest: Some(newest.run.clone()),
        reason: format!(
            "({}, {}) wrote nothing",
            newest.kind,
            newest.ending.as_str()
        ),
        revert_instead: earlier.map(|e| e.run.clone()),
    }))
}

fn refuse_running(entry: &Entry) -> Result<()> {
    if entry.ending == Outcome::Running {
        bail!(
            "run {} ({}, started {}) is still running: its lock is held; revert it once it has ended",
            entry.run,
            entry.kind,
            entry.time
        );
    }
    Ok(())
}

/// A run by ID; a unique prefix is enough.
pub(crate) fn find<'a>(entries: &'a [Entry], run: &str) -> Result<&'a Entry> {
    let matches: Vec<_> = entries.iter().filter(|e| e.run.starts_with(run)).collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => bail!("no run {run:?} of this config in the journal (see `agentsync history`)"),
        many => bail!("{run:?} matches {} runs; give more of the ID", many.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Change, ChangeKind, Status};

    fn entry(run: &str, kind: &str, ending: Outcome, applied: usize) -> Entry {
        let change = |i: usize| Change {
            kind: ChangeKind::Link,
            email: format!("a{i}@x.com"),
            agent_id: format!("a{i}"),
            old_external_id: None,
            new_external_id: Some("1".into()),
            status: Status::Applied,
            error: None,
            version: None,
        };
        Entry {
            run: run.into(),
            time: "t".into(),
            config: "c".into(),
            name: "n".into(),
            kind: kind.into(),
            job: Some("k".into()),
            ending,
            summary: journal::Summary::default(),
            users: None,
            error: None,
            reverted_by: None,
            reverted: None,
            writing: true,
            ended: true,
            changes: (0..applied).map(change).collect(),
        }
    }

    fn pick(entries: &[Entry]) -> String {
        match target(entries, "last") {
            Ok(Target::Undo(e)) => format!("undo {}", e.run),
            Ok(Target::Complete { revert, of }) => format!("complete {} of {}", revert.run, of.run),
            Ok(Target::Nothing(n)) => format!("nothing, instead {:?}", n.revert_instead),
            Err(e) => format!("error {e}"),
        }
    }

    #[test]
    fn last_means_what_the_operator_means() {
        use Outcome::{Failed, Interrupted, Running, Success};
        assert_eq!(pick(&[]), "nothing, instead None");
        let sync = entry("1", "sync", Success, 3);
        assert_eq!(pick(std::slice::from_ref(&sync)), "undo 1");
        let killed_revert = entry("2", "revert of 1", Interrupted, 1);
        assert_eq!(
            pick(&[sync.clone(), killed_revert.clone()]),
            "complete 2 of 1"
        );
        let failed_revert = entry("2", "revert of 1", Failed, 0);
        assert_eq!(pick(&[sync.clone(), failed_revert]), "complete 2 of 1");
        let done = entry("3", "revert of 1", Success, 3);
        assert_eq!(
            pick(&[sync.clone(), killed_revert, done.clone()]),
            "nothing, instead Some(\"3\")"
        );
        let mut empty = entry("4", "sync", Interrupted, 2);
        empty.writing = false;
        assert_eq!(pick(&[sync.clone(), empty]), "nothing, instead Some(\"1\")");
        let failed = entry("4", "sync", Failed, 0);
        assert_eq!(
            pick(&[sync.clone(), failed]),
            "nothing, instead Some(\"1\")"
        );
        let running = entry("5", "sync", Running, 0);
        assert!(pick(&[sync.clone(), running]).contains("still running"));
        // By its ID, a completed revert is inverted.
        let entries = [sync, done];
        assert!(matches!(target(&entries, "3"), Ok(Target::Undo(e)) if e.run == "3"));
    }

    #[test]
    fn history_says_which_runs_were_reverted_and_by_which() {
        use Outcome::{Interrupted, Success};
        let mut entries = vec![
            entry("1", "sync", Success, 2),
            entry("2", "sync", Success, 2),
            entry("3", "revert of 1", Interrupted, 1),
            entry("4", "revert of 2", Success, 2),
        ];
        mark_reverted(&mut entries);
        assert_eq!(entries[0].reverted_by.as_deref(), Some("3"));
        assert_eq!(entries[0].reverted, Some("in part"));
        assert_eq!(entries[1].reverted_by.as_deref(), Some("4"));
        assert_eq!(entries[1].reverted, Some("whole"));
        assert_eq!(entries[3].reverted_by, None);
    }
}

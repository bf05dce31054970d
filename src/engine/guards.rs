//! The checks that stop a run before it writes: a source too small to be
//! trusted (`min_users`, always), and the limits `--force` passes (records
//! skipped, a drop in users since the last success, plan size, unlinks).

use std::fmt::Write as _;

use anyhow::{Result, bail};

use crate::config::Job;
use crate::plan::{ChangeKind, Plan, percent};
use crate::source::Fetched;
use crate::state::journal;

/// A source with fewer users than `min_users` is broken, whatever `--force`.
pub(crate) fn check_min_users(job: &Job, fetched: &Fetched) -> Result<()> {
    /// Skipped records named in the message; the rest are counted.
    const SHOWN: usize = 3;
    let users = fetched.user_count();
    if users as u64 >= job.sync.min_users {
        return Ok(());
    }
    let mut why = format!(
        "the source gave {users} users ({}), fewer than [sync] min_users = {}",
        fetched.summary(),
        job.sync.min_users
    );
    for s in fetched.skipped.iter().take(SHOWN) {
        let _ = write!(
            why,
            "; page {} record {} skipped: {}",
            s.page, s.index, s.reason
        );
    }
    if fetched.skipped.len() > SHOWN {
        let _ = write!(why, "; {} more skipped", fetched.skipped.len() - SHOWN);
    }
    bail!("{why}; nothing was written")
}

/// Why the source may not be trusted without `--force`: too many records
/// skipped, or far fewer users than the last successful run.
pub(crate) fn source_refusal(
    job: &Job,
    fetched: &Fetched,
    last: Option<&journal::Entry>,
) -> Option<String> {
    let skipped = fetched.skipped.len();
    if skipped > 0 && fetched.records > 0 {
        let percent = percent(skipped as u64, fetched.records);
        if percent > job.sync.max_skipped_percent {
            return Some(format!(
                "the mapping skipped {skipped} of {} source records ({percent:.1}%), more than [sync] max_skipped_percent = {}",
                fetched.records, job.sync.max_skipped_percent
            ));
        }
    }
    let (last, before) = last.and_then(|e| Some((e, e.users?)))?;
    let users = fetched.user_count();
    if before > 0 && users < before {
        let drop = percent((before - users) as u64, before as u64);
        if drop > job.sync.max_source_drop_percent {
            return Some(format!(
                "the source gave {users} users, {drop:.1}% fewer than the {before} of the last successful run ({} at {}), more than [sync] max_source_drop_percent = {}",
                last.run, last.time, job.sync.max_source_drop_percent
            ));
        }
    }
    None
}

/// Why the plan may not be applied without `--force`, if it may not.
pub(crate) fn safety_refusal(job: &Job, plan: &Plan) -> Option<String> {
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

//! The run journal: one JSON line per applied run — when, which config, the
//! summary and every change with its old and new external ID and its status —
//! so an admin can read what a nightly job did, and undo it (`revert`).

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::plan::Change;
use crate::report::Report;

/// One applied run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub run: String,
    pub time: String,
    pub config: String,
    pub name: String,
    /// `sync`, or `revert of RUN`.
    pub kind: String,
    pub summary: Summary,
    pub changes: Vec<Change>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Summary {
    pub link: usize,
    pub update: usize,
    pub unlink: usize,
    pub failed: usize,
}

/// A run ID: sortable UTC time plus a few random hex digits.
fn new_run_id(now: SystemTime) -> String {
    let stamp = humantime::format_rfc3339_seconds(now).to_string();
    let compact: String = stamp.chars().filter(|c| c.is_ascii_digit()).collect();
    format!(
        "{}-{}-{:04x}",
        &compact[..8],
        &compact[8..14],
        fastrand::u16(..)
    )
}

/// The journal entry of an applied report.
pub(crate) fn entry(config: &Path, name: &str, kind: &str, report: &Report) -> Entry {
    let now = SystemTime::now();
    Entry {
        run: new_run_id(now),
        time: humantime::format_rfc3339_seconds(now).to_string(),
        config: config.display().to_string(),
        name: name.to_owned(),
        kind: kind.to_owned(),
        summary: Summary {
            link: report.summary.link,
            update: report.summary.update,
            unlink: report.summary.unlink,
            failed: report.summary.failed,
        },
        changes: report.changes.clone(),
    }
}

/// Append one entry as one line, flushed to disk before returning.
pub(crate) fn append(path: &Path, entry: &Entry) -> Result<()> {
    let mut line = serde_json::to_vec(entry)?;
    line.push(b'\n');
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening the journal {}", path.display()))?;
    // One write of the whole line: concurrent appenders never interleave it.
    file.write_all(&line)
        .and_then(|()| file.sync_data())
        .with_context(|| format!("writing the journal {}", path.display()))
}

/// Every entry of the journal, oldest first. A missing journal has none.
pub(crate) fn read(path: &Path) -> Result<Vec<Entry>> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("opening the journal {}", path.display())),
    };
    let mut entries = Vec::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading the journal {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let entry = serde_json::from_str(&line).with_context(|| {
            format!("{}: line {} is not a journal entry", path.display(), n + 1)
        })?;
        entries.push(entry);
    }
    Ok(entries)
}

/// Find a run by ID (a unique prefix is enough) or `last`.
pub(crate) fn find<'a>(entries: &'a [Entry], run: &str) -> Result<&'a Entry> {
    if run == "last" {
        return entries
            .last()
            .ok_or_else(|| anyhow::anyhow!("the journal has no runs yet"));
    }
    let matches: Vec<_> = entries.iter().filter(|e| e.run.starts_with(run)).collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => bail!("no run {run:?} in the journal (see `agentsync history`)"),
        many => bail!("{run:?} matches {} runs; give more of the ID", many.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_sort_by_time() {
        let a = new_run_id(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000));
        let b = new_run_id(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_061));
        assert!(a.starts_with("20231114-221320-"), "{a}");
        assert!(a < b);
    }

    #[test]
    fn append_read_and_find() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        assert!(read(&path).unwrap().is_empty());
        for run in ["20260101-000000-aaaa", "20260102-000000-bbbb"] {
            let entry = Entry {
                run: run.into(),
                time: "t".into(),
                config: "c".into(),
                name: "n".into(),
                kind: "sync".into(),
                summary: Summary::default(),
                changes: vec![],
            };
            append(&path, &entry).unwrap();
        }
        let entries = read(&path).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(find(&entries, "last").unwrap().run, "20260102-000000-bbbb");
        assert_eq!(
            find(&entries, "20260101").unwrap().run,
            "20260101-000000-aaaa"
        );
        assert!(find(&entries, "2026").is_err());
        assert!(find(&entries, "1999").is_err());
    }
}

//! The run journal, write-ahead: a JSON line per record, appended and flushed
//! to disk as the run goes — a `start` record before anything is read or
//! written, an `intent` record for every change before the first write is
//! sent, a `change` record with its result as each write ends, and an `end`
//! record with the summary and how the run ended. A run without its `end`
//! record was interrupted (a kill, a crash, a power cut); its intents without a
//! result are writes that may or may not have landed, and `revert` checks them
//! against the directory. Journals of older versions (one line per applied run,
//! with its `changes`) are read as they are.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::JobKey;
use crate::plan::{Change, ChangeKind, Status};

/// How a run ended, as the journal keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Outcome {
    Success,
    /// Applied, some writes failed or were not attempted.
    WritesFailed,
    /// A safety limit held the run back; nothing was written.
    Refused,
    /// The run stopped on an error (the source, the directory, the journal).
    Failed,
    /// A signal stopped it, or it has no `end` record (killed).
    Interrupted,
    /// No `end` record yet, and its lock is held now: still going. Never
    /// written; only read.
    Running,
}

impl Outcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::WritesFailed => "writes_failed",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
            Outcome::Interrupted => "interrupted",
            Outcome::Running => "running",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Summary {
    pub link: usize,
    pub update: usize,
    pub unlink: usize,
    pub failed: usize,
}

impl Summary {
    /// The summary of `changes`: what was applied, by kind, and what failed.
    /// An interrupted run counts only the writes that were made.
    pub(crate) fn of(changes: &[Change]) -> Self {
        let count = |kind| {
            changes
                .iter()
                .filter(|c| c.kind == kind && c.status == Status::Applied)
                .count()
        };
        Summary {
            link: count(ChangeKind::Link),
            update: count(ChangeKind::Update),
            unlink: count(ChangeKind::Unlink),
            failed: changes
                .iter()
                .filter(|c| c.status == Status::Failed)
                .count(),
        }
    }
}

/// What a run is, written before it does anything.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Start {
    pub run: String,
    pub time: String,
    pub config: String,
    pub name: String,
    /// `sync`, or `revert of RUN`.
    pub kind: String,
    /// The job's identity (its state key): which config's run this is, in a
    /// journal several configs share. Older records have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
}

/// How a run ended, written last.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct End {
    pub time: String,
    pub ending: Outcome,
    pub summary: Summary,
    /// Users the source gave (a sync that read its source).
    #[serde(default)]
    pub users: Option<usize>,
    /// Why it failed or was refused.
    #[serde(default)]
    pub error: Option<String>,
}

/// One line of the journal.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "lowercase")]
enum Record {
    Start(Start),
    Intent {
        run: String,
        change: Change,
    },
    Change {
        run: String,
        change: Change,
    },
    /// Written with the intents, as their last line: the intents are whole
    /// on disk and writes may be sent from here on. A run without it (of a
    /// version that writes it) sent nothing.
    Writing {
        run: String,
    },
    End {
        run: String,
        #[serde(flatten)]
        end: End,
    },
}

/// One run as read back: what `history` lists and `revert` undoes.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Entry {
    pub run: String,
    pub time: String,
    pub config: String,
    pub name: String,
    pub kind: String,
    /// The job's identity, when the run's version wrote one.
    #[serde(skip)]
    pub job: Option<String>,
    pub ending: Outcome,
    pub summary: Summary,
    pub users: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The run that set this one's changes back: whole (its revert
    /// succeeded) or in part.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reverted_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reverted: Option<&'static str>,
    /// Whether writes could have been sent: its intents are whole on disk.
    /// Runs of older versions, which do not mark it, are taken as writing.
    #[serde(skip)]
    pub writing: bool,
    /// Its `end` record was read.
    #[serde(skip)]
    pub ended: bool,
    /// Every change, with its result; `planned` ones of an interrupted run
    /// were in flight: sent or about to be, their result unknown.
    pub changes: Vec<Change>,
}

impl Entry {
    /// Changes whose write may have landed: applied, in flight when the run
    /// was killed, or of unknown outcome.
    pub(crate) fn undoable(&self) -> usize {
        if !self.writing {
            return 0;
        }
        self.changes
            .iter()
            .filter(|c| {
                matches!(
                    c.status,
                    Status::Applied | Status::Planned | Status::Unknown
                )
            })
            .count()
    }

    /// The run this one reverts, if it is a revert (`revert of RUN…`).
    pub(crate) fn reverts(&self) -> Option<&str> {
        let rest = self.kind.strip_prefix("revert of ")?;
        rest.split([' ', ',', '(']).next().filter(|r| !r.is_empty())
    }
}

/// A line of an older journal: one applied run, written once at its end.
#[derive(Debug, Deserialize)]
struct Legacy {
    run: String,
    time: String,
    config: String,
    name: String,
    kind: String,
    summary: Summary,
    changes: Vec<Change>,
}

/// A run ID: sortable UTC time plus a few random hex digits.
fn new_run_id(now: SystemTime) -> String {
    let stamp = humantime::format_rfc3339_seconds(now).to_string();
    let compact: String = stamp.chars().filter(char::is_ascii_digit).collect();
    format!(
        "{}-{}-{:04x}",
        &compact[..8],
        &compact[8..14],
        fastrand::u16(..)
    )
}

/// The time as the journal writes it.
pub(crate) fn timestamp(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

/// The journal of one run, open for appending.
#[derive(Debug)]
pub(crate) struct Writer {
    file: File,
    path: PathBuf,
    run: String,
}

impl Writer {
    /// Open (or create) the journal at `path` and write the `start` record of
    /// a new run. Fails — before anything is written anywhere — when the
    /// journal cannot be written.
    /// The journal is opened without following a symlink, and one owned by
    /// another user is refused: its records would be theirs to write.
    pub(crate) fn begin(path: &Path, job: &JobKey, name: &str, kind: &str) -> Result<Writer> {
        if let Some(dir) = path.parent() {
            super::ensure_dir(dir)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .with_context(|| format!("opening the journal {}", path.display()))?;
        let meta = file
            .metadata()
            .with_context(|| format!("reading the journal {}", path.display()))?;
        if meta.is_file() {
            super::check_owner(&file, path)?;
            // A journal made by an older version may be readable by others.
            if meta.permissions().mode() & 0o077 != 0 {
                file.set_permissions(std::fs::Permissions::from_mode(0o600))
                    .with_context(|| format!("making {} private", path.display()))?;
            }
            // A line torn by a crash is closed, so the next is not glued to it.
            if meta.len() > 0 {
                let mut last = [0u8];
                file.seek(SeekFrom::End(-1))
                    .and_then(|_| file.read_exact(&mut last))
                    .with_context(|| format!("reading the journal {}", path.display()))?;
                if last[0] != b'\n' {
                    file.write_all(b"\n")
                        .with_context(|| format!("writing the journal {}", path.display()))?;
                }
            }
        }
        let now = SystemTime::now();
        let mut writer = Writer {
            file,
            path: path.to_owned(),
            run: new_run_id(now),
        };
        let start = Start {
            run: writer.run.clone(),
            time: timestamp(now),
            config: job.config.display().to_string(),
            name: name.to_owned(),
            kind: kind.to_owned(),
            job: Some(job.name.clone()),
        };
        writer.write(&[Record::Start(start)])?;
        Ok(writer)
    }

    pub(crate) fn run(&self) -> &str {
        &self.run
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The intent of every change, before the first is sent, closed by the
    /// `writing` mark: one write, one flush. When they cannot be written
    /// whole (a full disk), the part that was is cut off again, so that the
    /// run's `end` record has room and no half list of intents is left.
    pub(crate) fn intents(&mut self, changes: &[Change]) -> Result<()> {
        let mut records: Vec<_> = changes
            .iter()
            .map(|c| Record::Intent {
                run: self.run.clone(),
                change: c.clone(),
            })
            .collect();
        records.push(Record::Writing {
            run: self.run.clone(),
        });
        let before = self.file.metadata().map(|m| m.len()).ok();
        let written = self.write(&records);
        if written.is_err()
            && let Some(len) = before
        {
            let _ = self.file.set_len(len);
        }
        written
    }

    /// The result of one change, as it ends: written at once (a killed
    /// process loses nothing the kernel has), made durable with the next
    /// flush. Durability of every write sent rests on the intents, flushed
    /// before the first write: a result lost with the machine leaves its
    /// intent, which `revert` checks against the directory.
    pub(crate) fn change(&mut self, change: &Change) -> Result<()> {
        self.append(
            &[Record::Change {
                run: self.run.clone(),
                change: change.clone(),
            }],
            false,
        )
    }

    /// The run's last record.
    pub(crate) fn end(&mut self, end: End) -> Result<()> {
        self.write(&[Record::End {
            run: self.run.clone(),
            end,
        }])
    }

    /// Append `records`, one line each, in one write, flushed to the disk
    /// before returning.
    fn write(&mut self, records: &[Record]) -> Result<()> {
        self.append(records, true)
    }

    /// Append `records`, one line each, in one write; with `flush`, synced
    /// to the disk before returning.
    fn append(&mut self, records: &[Record], flush: bool) -> Result<()> {
        let mut bytes = Vec::new();
        for record in records {
            serde_json::to_writer(&mut bytes, record)?;
            bytes.push(b'\n');
        }
        self.file
            .write_all(&bytes)
            .and_then(|()| if flush { self.file.sync_data() } else { Ok(()) })
            .with_context(|| format!("writing the journal {}", self.path.display()))
    }
}

/// Every run of the journal, oldest first. A missing journal has none; so has
/// a path that is not a regular file (e.g. `/dev/null`). A line that is not a
/// record (torn by a crash) is skipped with a warning.
/// A symlink in its place, or a journal another user owns, is refused.
pub(crate) fn read(path: &Path) -> Result<Vec<Entry>> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("opening the journal {}", path.display())),
    };
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return Ok(Vec::new());
    }
    super::check_owner(&file, path)?;
    let mut entries: Vec<Entry> = Vec::new();
    for (n, line) in BufReader::new(file).split(b'\n').enumerate() {
        let line = line.with_context(|| format!("reading the journal {}", path.display()))?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if let Err(why) = take_line(&mut entries, &line) {
            crate::progress::warn(&format!(
                "{}: line {} skipped: {why}",
                path.display(),
                n + 1
            ));
        }
    }
    for entry in &mut entries {
        if entry.ending == Outcome::Interrupted {
            entry.summary = Summary::of(&entry.changes);
        }
    }
    Ok(entries)
}

/// Fold one line into the runs read so far.
fn take_line(entries: &mut Vec<Entry>, line: &[u8]) -> Result<(), String> {
    let value: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| format!("not a journal record ({e})"))?;
    if value.get("record").is_none() {
        let old: Legacy =
            serde_json::from_value(value).map_err(|e| format!("not a journal entry ({e})"))?;
        let ending = if old.summary.failed > 0 {
            Outcome::WritesFailed
        } else {
            Outcome::Success
        };
        entries.push(Entry {
            run: old.run,
            time: old.time,
            config: old.config,
            name: old.name,
            kind: old.kind,
            job: None,
            ending,
            summary: old.summary,
            users: None,
            error: None,
            reverted_by: None,
            reverted: None,
            writing: true,
            ended: true,
            changes: old.changes,
        });
        return Ok(());
    }
    let record: Record =
        serde_json::from_value(value).map_err(|e| format!("not a journal record ({e})"))?;
    let find = |entries: &mut Vec<Entry>, run: &str| -> Result<usize, String> {
        entries
            .iter()
            .rposition(|e| e.run == run)
            .ok_or_else(|| format!("a record of run {run}, whose start is missing"))
    };
    match record {
        Record::Start(s) => entries.push(Entry {
            run: s.run,
            time: s.time,
            config: s.config,
            name: s.name,
            kind: s.kind,
            // Versions that write the job's identity also mark the writing.
            writing: s.job.is_none(),
            job: s.job,
            ending: Outcome::Interrupted,
            summary: Summary::default(),
            users: None,
            error: None,
            reverted_by: None,
            reverted: None,
            ended: false,
            changes: Vec::new(),
        }),
        Record::Writing { run } => {
            let i = find(entries, &run)?;
            entries[i].writing = true;
        }
        Record::Intent { run, change } => {
            let i = find(entries, &run)?;
            entries[i].changes.push(change);
        }
        Record::Change { run, change } => {
            let i = find(entries, &run)?;
            let changes = &mut entries[i].changes;
            match changes.iter_mut().find(|c| c.agent_id == change.agent_id) {
                Some(slot) => *slot = change,
                None => changes.push(change),
            }
        }
        Record::End { run, end } => {
            let i = find(entries, &run)?;
            let entry = &mut entries[i];
            entry.ended = true;
            entry.ending = end.ending;
            entry.summary = end.summary;
            entry.users = end.users;
            entry.error = end.error;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(agent: &str, status: Status) -> Change {
        Change {
            kind: ChangeKind::Link,
            email: format!("{agent}@x.com"),
            agent_id: agent.into(),
            old_external_id: None,
            new_external_id: Some("1".into()),
            status,
            error: None,
            version: None,
        }
    }

    fn key() -> JobKey {
        JobKey::of(Path::new("c.toml"), None)
    }

    #[test]
    fn run_ids_sort_by_time() {
        let a = new_run_id(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000));
        let b = new_run_id(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_061));
        assert!(a.starts_with("20231114-221320-"), "{a}");
        assert!(a < b);
    }

    #[test]
    fn a_run_is_read_back_from_its_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/j.jsonl");
        assert!(read(&path).unwrap().is_empty());
        let mut w = Writer::begin(&path, &key(), "n", "sync").unwrap();
        let planned = [change("a1", Status::Planned), change("a2", Status::Planned)];
        w.intents(&planned).unwrap();
        w.change(&change("a2", Status::Applied)).unwrap();
        let entries = read(&path).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].ending, Outcome::Interrupted, "no end record yet");
        assert!(entries[0].writing, "the intents are marked whole");
        let statuses: Vec<_> = entries[0].changes.iter().map(|c| c.status).collect();
        assert_eq!(statuses, [Status::Planned, Status::Applied]);
        assert_eq!(entries[0].undoable(), 2);

        w.change(&change("a1", Status::Failed)).unwrap();
        w.end(End {
            time: "t".into(),
            ending: Outcome::WritesFailed,
            summary: Summary::of(&[]),
            users: Some(2),
            error: None,
        })
        .unwrap();
        let entries = read(&path).unwrap();
        assert_eq!(entries[0].ending, Outcome::WritesFailed);
        assert_eq!(entries[0].users, Some(2));
        assert_eq!(entries[0].undoable(), 1);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn a_torn_line_is_skipped_and_never_glued_to_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let w = Writer::begin(&path, &key(), "n", "sync").unwrap();
        drop(w);
        // A crash in the middle of a line.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"record":"intent","run":"#).unwrap();
        drop(f);
        assert_eq!(read(&path).unwrap().len(), 1);
        let w = Writer::begin(&path, &key(), "n", "sync").unwrap();
        let entries = read(&path).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].run, w.run());
    }

    #[test]
    fn old_one_line_runs_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let old = serde_json::json!({
            "run": "20260101-000000-aaaa", "time": "t", "config": "c", "name": "n",
            "kind": "sync", "summary": {"link": 1, "update": 0, "unlink": 0, "failed": 0},
            "changes": [change("a1", Status::Applied)],
        });
        std::fs::write(&path, format!("{old}\n")).unwrap();
        let w = Writer::begin(&path, &key(), "n", "sync").unwrap();
        let entries = read(&path).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].ending, Outcome::Success);
        assert_eq!(entries[0].undoable(), 1, "an old run is taken as written");
        assert_eq!(entries[1].run, w.run());
        assert_eq!(entries[1].undoable(), 0, "a new run without intents");
    }
}

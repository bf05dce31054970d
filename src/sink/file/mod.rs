//! A directory kept in a local file: a JSON array of objects or a CSV file with
//! a header row. The file is edited as text: only the external IDs agentsync
//! sets change (a JSON `external_id` member or CSV column is added at the end
//! of each row when absent); every other byte — other fields, key order,
//! duplicate keys, numbers as written, quoting, whitespace, line endings, a
//! byte-order mark — is kept. The file is replaced atomically, once, and only
//! when something changed.
//!
//! In CSV, a cell agentsync writes that a spreadsheet would run as a formula
//! (it starts with `=`, `+`, `-`, `@`, a tab or a carriage return) is written
//! behind a `'`, as OWASP advises against CSV injection; the `'` is dropped
//! again when the file is read, so the ID reads back as it was set.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use anyhow::{Context, Result, anyhow, bail};

use super::{Agent, Sink};
use crate::plan::Change;
use crate::progress::{self, Progress};
use crate::term::count;

mod csv;
mod json;

use csv::{CsvDoc, check_csv_id, read_csv};
use json::{JsonDoc, read_json};

const EMAIL: &str = "email";
const EXTERNAL_ID: &str = "external_id";
const ID: &str = "id";
const BOM: &str = "\u{feff}";

pub(crate) struct FileSink {
    path: PathBuf,
    /// Agent id → row index (0-based, header excluded).
    rows: HashMap<String, usize>,
    /// The file as read, and the external IDs set since, until the commit.
    edit: Mutex<Edit>,
}

#[derive(Default)]
struct Edit {
    doc: Option<Doc>,
    /// Row → the external ID to write there (`None` clears it).
    set: BTreeMap<usize, Option<String>>,
}

/// The file's text and where its external IDs are.
enum Doc {
    Json(JsonDoc),
    Csv(CsvDoc),
}

impl FileSink {
    /// The sink of `path`, which must exist and list agents: found before
    /// anything else of a run is done.
    pub(crate) fn open(path: PathBuf) -> Result<Self> {
        let sink = FileSink {
            path,
            rows: HashMap::new(),
            edit: Mutex::new(Edit::default()),
        };
        let (_, agents) = sink.read()?;
        if agents.is_empty() {
            bail!(
                "{} lists no agents: {}",
                sink.path.display(),
                sink.what_it_needs()
            );
        }
        Ok(sink)
    }

    fn is_csv(&self) -> bool {
        self.path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
    }

    /// The fix for a missing or empty file.
    fn what_it_needs(&self) -> &'static str {
        if self.is_csv() {
            "the file sink must list the agents (a header row with `email` and one row per agent)"
        } else {
            "the file sink must list the agents (a JSON array with one object per agent, each with an `email`)"
        }
    }

    fn read(&self) -> Result<(Doc, Vec<Agent>)> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "{} does not exist: {}",
                self.path.display(),
                self.what_it_needs()
            ),
            Err(e) => {
                return Err(e).with_context(|| format!("reading {}", self.path.display()));
            }
        };
        if text.strip_prefix(BOM).unwrap_or(&text).trim().is_empty() {
            bail!("{} is empty: {}", self.path.display(), self.what_it_needs());
        }
        let parsed = if self.is_csv() {
            read_csv(text)
        } else {
            read_json(text)
        };
        parsed.with_context(|| format!("reading {}", self.path.display()))
    }
}

impl Sink for FileSink {
    fn list_agents(&mut self, progress: &Progress) -> Result<Vec<Agent>> {
        // Read again: the file may have been edited while the source was read.
        let (doc, agents) = self.read()?;
        let mut rows = HashMap::new();
        let mut kept = Vec::with_capacity(agents.len());
        for (row, agent) in agents.into_iter().enumerate() {
            if agent.email.trim().is_empty() {
                progress::warn(&format!(
                    "{}: skipping row {}: no email",
                    self.path.display(),
                    row + 1
                ));
                continue;
            }
            if let Some(first) = rows.insert(agent.id.clone(), row) {
                bail!(
                    "{}: rows {} and {} have the same id {:?}",
                    self.path.display(),
                    first + 1,
                    row + 1,
                    agent.id
                );
            }
            kept.push(agent);
        }
        progress.log_with(
            &format!(
                "directory: {} in {}",
                count(kept.len() as u64, "agent"),
                self.path.display()
            ),
            &[
                ("agents", kept.len().into()),
                ("file", self.path.display().to_string().into()),
            ],
        );
        *self.edit.get_mut().unwrap_or_else(PoisonError::into_inner) = Edit {
            doc: Some(doc),
            set: BTreeMap::new(),
        };
        self.rows = rows;
        Ok(kept)
    }

    fn write(&self, change: &Change) -> Result<()> {
        let row = *self
            .rows
            .get(&change.agent_id)
            .ok_or_else(|| anyhow!("{}: no agent {}", self.path.display(), change.agent_id))?;
        let external_id = change.new_external_id.clone();
        if self.is_csv()
            && let Some(id) = &external_id
        {
            check_csv_id(id)?;
        }
        let mut edit = self.edit.lock().unwrap_or_else(PoisonError::into_inner);
        if edit.doc.is_none() {
            bail!("{} was not read", self.path.display());
        }
        edit.set.insert(row, external_id);
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        let edit = self.edit.get_mut().unwrap_or_else(PoisonError::into_inner);
        if edit.set.is_empty() {
            return Ok(());
        }
        let bytes = match &edit.doc {
            None => bail!("{} was not read", self.path.display()),
            Some(Doc::Json(doc)) => doc.render(&edit.set),
            Some(Doc::Csv(doc)) => doc.render(&edit.set)?,
        };
        write_atomically(&self.path, bytes.as_bytes())?;
        edit.set.clear();
        Ok(())
    }

    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }
}

/// Replace `path` with `bytes` so that a reader (or a crash) sees the old file or
/// the new one, never half of it. The file's permissions are kept.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    if let Ok(meta) = std::fs::metadata(path) {
        std::fs::set_permissions(tmp.path(), meta.permissions())
            .with_context(|| format!("setting the permissions of {}", tmp.path().display()))?;
    }
    tmp.persist(path)
        .map_err(|e| anyhow!("replacing {}: {}", path.display(), e.error))?;
    Ok(())
}

/// `text` with each `(range, replacement)` spliced in; ranges sorted and
/// apart (an empty range inserts).
fn splice(text: &str, edits: &[(Range<usize>, String)]) -> String {
    let mut out = String::with_capacity(text.len() + edits.len() * 16);
    let mut at = 0;
    for (range, replacement) in edits {
        out.push_str(&text[at..range.start]);
        out.push_str(replacement);
        at = range.end;
    }
    out.push_str(&text[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn sink_with(name: &str, text: &str) -> (tempfile::TempDir, PathBuf, FileSink) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let sink = FileSink::open(path.clone()).unwrap();
        (dir, path, sink)
    }

    /// Set the external IDs of the first agents to `ids`, commit, and return
    /// the file's text.
    pub(super) fn set(name: &str, text: &str, ids: &[Option<&str>]) -> String {
        let (_dir, path, mut sink) = sink_with(name, text);
        let agents = sink.list_agents(&Progress::hidden()).unwrap();
        for (agent, id) in agents.iter().zip(ids) {
            sink.write(&Change::setting(agent, id.map(str::to_owned)))
                .unwrap();
        }
        sink.commit().unwrap();
        std::fs::read_to_string(&path).unwrap()
    }

    #[test]
    fn nothing_is_written_without_a_change() {
        let original = "email,id\na@x.com,1\n";
        let (_dir, path, mut sink) = sink_with("a.csv", original);
        sink.list_agents(&Progress::hidden()).unwrap();
        sink.commit().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            original,
            "no external_id column was added"
        );
    }

    #[test]
    fn missing_and_empty_files_say_what_the_file_must_hold() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("agents.csv");
        let err = FileSink::open(missing).err().unwrap().to_string();
        assert!(err.contains("does not exist"), "{err}");
        assert!(err.contains("a header row with `email`"), "{err}");
        for (name, text, needle) in [
            ("a.csv", "", "is empty"),
            ("a.json", "\u{feff} \n", "is empty"),
            ("a.csv", "email\n", "lists no agents"),
            ("a.json", "[]", "lists no agents"),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            let err = FileSink::open(path).err().unwrap().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn bad_files_are_errors_that_name_the_file_and_row() {
        for (name, text, needle) in [
            ("a.json", "{\"email\": \"a@x.com\"}", "JSON array"),
            ("a.json", "[{\"email\": 3}]", "agent 1"),
            ("a.json", "[1]", "agent 1 is not an object"),
            ("a.json", "[{\"email\": \"a@x.com\"", "not valid JSON"),
            ("a.csv", "name,mail\nx,y\n", "no \"email\" column"),
            ("a.csv", "email,team\na@x.com,1\nb@x.com\n", "row 2"),
            ("a.csv", "id,email\n1,a@x.com\n1,b@x.com\n", "same id"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            let err = match FileSink::open(path.clone()) {
                Err(e) => format!("{e:#}"),
                Ok(mut sink) => format!("{:#}", sink.list_agents(&Progress::hidden()).unwrap_err()),
            };
            assert!(err.contains(&path.display().to_string()), "{err}");
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}

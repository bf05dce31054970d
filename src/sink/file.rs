//! A directory kept in a local file: a JSON array of objects or a CSV file with
//! a header row. Every other field, column and row is kept as it was; the
//! external ID goes to `external_id` (added at the end when absent). The file is
//! replaced atomically, once, and only when something changed.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Map, Value};

use super::{Agent, Sink};
use crate::plan::Change;
use crate::progress::{self, Progress};

const EMAIL: &str = "email";
const EXTERNAL_ID: &str = "external_id";
const ID: &str = "id";

pub(crate) struct FileSink {
    path: PathBuf,
    /// Agent id → row index (0-based, header excluded).
    rows: HashMap<String, usize>,
    /// The file as read, edited in memory by the writes until the commit.
    edit: Mutex<Edit>,
}

#[derive(Default)]
struct Edit {
    data: Option<Data>,
    changed: bool,
}

enum Data {
    Json(Vec<Map<String, Value>>),
    Csv(CsvTable),
}

struct CsvTable {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
    external_id: usize,
    crlf: bool,
}

impl FileSink {
    pub(crate) fn new(path: PathBuf) -> Self {
        FileSink {
            path,
            rows: HashMap::new(),
            edit: Mutex::new(Edit::default()),
        }
    }

    fn is_csv(&self) -> bool {
        self.path.extension().and_then(|e| e.to_str()) == Some("csv")
    }

    fn read(&self) -> Result<(Data, Vec<Agent>)> {
        let text = std::fs::read_to_string(&self.path)
            .with_context(|| format!("reading {}", self.path.display()))?;
        let parsed = if self.is_csv() {
            read_csv(&text)
        } else {
            read_json(&text)
        };
        parsed.with_context(|| format!("reading {}", self.path.display()))
    }

    fn render(&self, data: Option<&Data>) -> Result<Vec<u8>> {
        match data {
            None => bail!("{} was not read", self.path.display()),
            Some(Data::Json(objects)) => {
                let mut text = serde_json::to_vec_pretty(objects)?;
                text.push(b'\n');
                Ok(text)
            }
            Some(Data::Csv(table)) => {
                let terminator = if table.crlf {
                    csv::Terminator::CRLF
                } else {
                    csv::Terminator::Any(b'\n')
                };
                let mut out = csv::WriterBuilder::new()
                    .terminator(terminator)
                    .from_writer(Vec::new());
                out.write_record(&table.headers)?;
                for row in &table.rows {
                    out.write_record(row)?;
                }
                out.into_inner()
                    .map_err(|e| anyhow!("writing CSV: {}", e.error()))
            }
        }
    }
}

impl Sink for FileSink {
    fn list_agents(&mut self, progress: &Progress) -> Result<Vec<Agent>> {
        let (data, agents) = self.read()?;
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
        progress.log(&format!(
            "directory: {} agents in {}",
            kept.len(),
            self.path.display()
        ));
        *self.edit.get_mut().unwrap_or_else(PoisonError::into_inner) = Edit {
            data: Some(data),
            changed: false,
        };
        self.rows = rows;
        Ok(kept)
    }

    fn write(&self, change: &Change) -> Result<()> {
        let row = *self
            .rows
            .get(&change.agent_id)
            .ok_or_else(|| anyhow!("{}: no agent {}", self.path.display(), change.agent_id))?;
        let external_id = change.new_external_id.as_deref();
        let mut edit = self.edit.lock().unwrap_or_else(PoisonError::into_inner);
        match edit.data.as_mut() {
            None => bail!("{} was not read", self.path.display()),
            Some(Data::Json(objects)) => {
                let value = external_id.map_or(Value::Null, |x| Value::String(x.to_owned()));
                objects[row].insert(EXTERNAL_ID.into(), value);
            }
            Some(Data::Csv(table)) => {
                let column = table.external_id;
                table.rows[row][column] = external_id.unwrap_or_default().to_owned();
            }
        }
        edit.changed = true;
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        let edit = self.edit.lock().unwrap_or_else(PoisonError::into_inner);
        if !edit.changed {
            return Ok(());
        }
        let bytes = self.render(edit.data.as_ref())?;
        drop(edit);
        write_atomically(&self.path, &bytes)?;
        self.edit
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .changed = false;
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

fn read_json(text: &str) -> Result<(Data, Vec<Agent>)> {
    let value: Value = serde_json::from_str(text).context("not valid JSON")?;
    let Value::Array(items) = value else {
        bail!("expected a JSON array of agent objects");
    };
    let mut objects = Vec::with_capacity(items.len());
    let mut agents = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let row = i + 1;
        let Value::Object(object) = item else {
            bail!("agent {row} is not an object");
        };
        let email = match object.get(EMAIL) {
            Some(Value::String(s)) => s.clone(),
            None | Some(Value::Null) => String::new(),
            Some(_) => bail!("agent {row}: \"email\" is not a string"),
        };
        let external_id = match object.get(EXTERNAL_ID) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(_) => bail!("agent {row}: \"external_id\" is neither a string nor a number"),
        };
        let id = match object.get(ID) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => format!("row {row}"),
        };
        agents.push(Agent {
            id,
            email,
            external_id,
        });
        objects.push(object);
    }
    Ok((Data::Json(objects), agents))
}

fn read_csv(text: &str) -> Result<(Data, Vec<Agent>)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let mut headers: Vec<String> = reader
        .headers()
        .context("reading the header row")?
        .iter()
        .map(str::to_owned)
        .collect();
    let column = |name: &str| headers.iter().position(|h| h.trim() == name);
    let email = column(EMAIL).ok_or_else(|| anyhow!("the header row has no \"email\" column"))?;
    let id = column(ID);
    let (external_id, added) = match column(EXTERNAL_ID) {
        Some(c) => (c, false),
        None => {
            headers.push(EXTERNAL_ID.into());
            (headers.len() - 1, true)
        }
    };
    let mut rows = Vec::new();
    let mut agents = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let row = i + 1;
        let record = record.with_context(|| format!("row {row}"))?;
        let mut fields: Vec<String> = record.iter().map(str::to_owned).collect();
        if added {
            fields.push(String::new());
        }
        let current = fields[external_id].trim();
        agents.push(Agent {
            id: id
                .map(|c| fields[c].trim().to_owned())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| format!("row {row}")),
            email: fields[email].clone(),
            external_id: (!current.is_empty()).then(|| current.to_owned()),
        });
        rows.push(fields);
    }
    let table = CsvTable {
        headers,
        rows,
        external_id,
        crlf: text.contains("\r\n"),
    };
    Ok((Data::Csv(table), agents))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink_with(name: &str, text: &str) -> (tempfile::TempDir, PathBuf, FileSink) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let sink = FileSink::new(path.clone());
        (dir, path, sink)
    }

    #[test]
    fn json_rows_keep_their_fields_and_order() {
        let (_dir, path, mut sink) = sink_with(
            "a.json",
            r#"[{"z": 1, "email": "a@x.com", "id": 7}, {"email": "b@x.com", "external_id": 5}]"#,
        );
        let agents = sink.list_agents(&Progress::hidden()).unwrap();
        assert_eq!(agents[0].id, "7");
        assert_eq!(agents[1].id, "row 2");
        assert_eq!(agents[1].external_id.as_deref(), Some("5"));
        sink.write(&Change::setting(&agents[0], Some("x1".into())))
            .unwrap();
        sink.write(&Change::setting(&agents[1], None)).unwrap();
        sink.commit().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "[\n  {\n    \"z\": 1,\n    \"email\": \"a@x.com\",\n    \"id\": 7,\n    \"external_id\": \"x1\"\n  },\n  {\n    \"email\": \"b@x.com\",\n    \"external_id\": null\n  }\n]\n"
        );
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
    fn csv_keeps_crlf_and_ids() {
        let (_dir, path, mut sink) = sink_with(
            "a.csv",
            "id,email,external_id\r\nk1,a@x.com,\r\nk2,b@x.com,9\r\n",
        );
        let agents = sink.list_agents(&Progress::hidden()).unwrap();
        assert_eq!(agents[1].external_id.as_deref(), Some("9"));
        sink.write(&Change::setting(&agents[0], Some("3".into())))
            .unwrap();
        sink.commit().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "id,email,external_id\r\nk1,a@x.com,3\r\nk2,b@x.com,9\r\n"
        );
    }

    #[test]
    fn bad_files_are_errors_that_name_the_file_and_row() {
        for (name, text, needle) in [
            ("a.json", "{\"email\": \"a@x.com\"}", "JSON array"),
            ("a.json", "[{\"email\": 3}]", "agent 1"),
            ("a.json", "[1]", "agent 1 is not an object"),
            ("a.csv", "name,mail\nx,y\n", "no \"email\" column"),
            ("a.csv", "email,team\na@x.com,1\nb@x.com\n", "row 2"),
            ("a.csv", "id,email\n1,a@x.com\n1,b@x.com\n", "same id"),
        ] {
            let (_dir, path, mut sink) = sink_with(name, text);
            let err = format!("{:#}", sink.list_agents(&Progress::hidden()).unwrap_err());
            assert!(err.contains(&path.display().to_string()), "{err}");
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}

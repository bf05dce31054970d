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
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Agent, Sink};
use crate::output::count;
use crate::plan::Change;
use crate::progress::{self, Progress};

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

// ---------------------------------------------------------------------------
// JSON
//
// serde_json reads the file, but into borrowed `RawValue`s: each member's key
// and value are slices of the text, so their byte ranges are known and only
// the external IDs' values are replaced. (serde_json's `arbitrary_precision`
// would keep numbers, but it changes number handling for the whole crate and
// still loses duplicate keys, whitespace and line endings.)

struct JsonDoc {
    text: String,
    rows: Vec<JsonRow>,
}

struct JsonRow {
    /// The value of every `external_id` member (a key given twice is set twice).
    values: Vec<Range<usize>>,
    /// Where a new `external_id` member goes when there is none, and the text
    /// that comes before its key (the comma and the row's own indentation).
    insert_at: usize,
    before_key: String,
    /// What goes between a key and its value in this object (`": "`).
    colon: String,
}

impl JsonDoc {
    fn render(&self, set: &BTreeMap<usize, Option<String>>) -> String {
        let mut edits = Vec::new();
        for (&row, id) in set {
            let row = &self.rows[row];
            let value = match id {
                Some(id) => serde_json::Value::String(id.clone()).to_string(),
                None => "null".to_owned(),
            };
            if row.values.is_empty() {
                let member = format!("{}\"{EXTERNAL_ID}\"{}{value}", row.before_key, row.colon);
                edits.push((row.insert_at..row.insert_at, member));
            } else {
                edits.extend(row.values.iter().map(|r| (r.clone(), value.clone())));
            }
        }
        edits.sort_by_key(|(r, _)| r.start);
        splice(&self.text, &edits)
    }
}

/// The members of one object in order, duplicates kept, as slices of the text.
struct Members<'a>(Vec<(&'a RawValue, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Members<'de>, A::Error> {
                let mut members = Vec::new();
                while let Some(entry) = map.next_entry::<&'de RawValue, &'de RawValue>()? {
                    members.push(entry);
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(Visit)
    }
}

fn read_json(text: String) -> Result<(Doc, Vec<Agent>)> {
    let bom = if text.starts_with(BOM) { BOM.len() } else { 0 };
    let body = &text[bom..];
    let span = |raw: &RawValue| {
        let start = raw.get().as_ptr() as usize - body.as_ptr() as usize + bom;
        start..start + raw.get().len()
    };
    let items: Vec<&RawValue> = serde_json::from_str(body).map_err(|e| {
        if e.is_data() {
            anyhow!("expected a JSON array of agent objects")
        } else {
            anyhow!(e).context("not valid JSON")
        }
    })?;
    let mut rows = Vec::with_capacity(items.len());
    let mut agents = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let row = i + 1;
        if !item.get().starts_with('{') {
            bail!("agent {row} is not an object");
        }
        let members: Members = serde_json::from_str(item.get())?;
        let (mut email, mut external_id, mut id) = (String::new(), None, None);
        let mut values = Vec::new();
        // A key given twice: the last one counts, as in most JSON readers.
        for (key, value) in &members.0 {
            let key: String = serde_json::from_str(key.get())?;
            let v: serde_json::Value = serde_json::from_str(value.get())?;
            match key.as_str() {
                EMAIL => {
                    email = match v {
                        serde_json::Value::String(s) => s,
                        serde_json::Value::Null => String::new(),
                        _ => bail!("agent {row}: \"email\" is not a string"),
                    }
                }
                EXTERNAL_ID => {
                    values.push(span(value));
                    external_id = match v {
                        serde_json::Value::Null => None,
                        serde_json::Value::String(s) if s.is_empty() => None,
                        serde_json::Value::String(s) => Some(s),
                        // The number as written, every digit of it.
                        serde_json::Value::Number(_) => Some(value.get().to_owned()),
                        _ => bail!("agent {row}: \"external_id\" is neither a string nor a number"),
                    }
                }
                ID => {
                    id = match v {
                        serde_json::Value::String(s) if !s.is_empty() => Some(s),
                        serde_json::Value::Number(_) => Some(value.get().to_owned()),
                        _ => None,
                    }
                }
                _ => {}
            }
        }
        let object = span(item);
        let (insert_at, before_key, colon) = match members.0.as_slice() {
            [] => (object.start + 1, String::new(), ": ".to_owned()),
            [.., (key, value)] => {
                let (key, value) = (span(key), span(value));
                let colon = text[key.end..value.start].to_owned();
                // The comma and indentation between two members, reused: the
                // last one that starts a line, else the last one.
                let gaps: Vec<String> = members
                    .0
                    .windows(2)
                    .map(|w| text[span(w[0].1).end..span(w[1].0).start].to_owned())
                    .collect();
                let first = &text[object.start + 1..span(members.0[0].0).start];
                let before_key = if let Some(gap) = gaps.iter().rev().find(|g| g.contains('\n')) {
                    gap.clone()
                } else if first.contains('\n') {
                    format!(",{first}")
                } else if let Some(gap) = gaps.last() {
                    gap.clone()
                } else if colon.contains(' ') {
                    ", ".to_owned()
                } else {
                    ",".to_owned()
                };
                (value.end, before_key, colon)
            }
        };
        rows.push(JsonRow {
            values,
            insert_at,
            before_key,
            colon,
        });
        agents.push(Agent {
            id: id.unwrap_or_else(|| format!("row {row}")),
            email,
            external_id,
        });
    }
    Ok((Doc::Json(JsonDoc { text, rows }), agents))
}

// ---------------------------------------------------------------------------
// CSV
//
// The csv crate reads the records and says where each one starts; within a
// record, the external ID's cell is found by a small scan of its text and
// checked against what the csv crate read. A record where the two disagree
// is written whole by the csv crate instead.

struct CsvDoc {
    text: String,
    /// The end of the header row's text (before its line ending).
    header_end: usize,
    column: usize,
    /// The file has no `external_id` column: one is added to every row.
    add_column: bool,
    records: Vec<CsvRecord>,
}

struct CsvRecord {
    /// The record's text, without its line ending.
    span: Range<usize>,
    /// The external ID's cell, when it was found in the text.
    cell: Option<Range<usize>>,
    fields: Vec<String>,
}

/// Characters that make a spreadsheet read a cell as a formula (OWASP).
fn is_formula_start(c: char) -> bool {
    matches!(c, '=' | '+' | '-' | '@' | '\t' | '\r')
}

/// `id` behind a `'` when a spreadsheet would read it as a formula.
fn guard(id: &str) -> String {
    if id.starts_with(is_formula_start) {
        format!("'{id}")
    } else {
        id.to_owned()
    }
}

/// Can `id` be written to a CSV file and read back as it is?
fn check_csv_id(id: &str) -> Result<()> {
    let mut chars = id.chars();
    if chars.next() == Some('\'') && chars.next().is_some_and(is_formula_start) {
        bail!(
            "the external ID {id:?} cannot be kept in a CSV file: a leading ' before {:?} is read as the guard against formulas and dropped",
            &id[1..2]
        );
    }
    Ok(())
}

/// The cell for external ID `id`: behind a `'` when a spreadsheet would run
/// it, quoted when CSV needs it or when spaces around it must survive the read.
fn csv_cell(id: &str) -> String {
    let guarded = guard(id);
    let needs_quotes = guarded.contains([',', '"', '\r', '\n']) || guarded.trim() != guarded;
    if needs_quotes {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

/// The external ID a cell holds: a quoted cell exactly, an unquoted one
/// trimmed; the formula guard `'` dropped; blank is none.
fn read_csv_id(value: &str, quoted: bool) -> Option<String> {
    let value = if quoted { value } else { value.trim() };
    let mut chars = value.chars();
    let value = match (chars.next(), chars.next()) {
        (Some('\''), Some(c)) if is_formula_start(c) => &value[1..],
        _ => value,
    };
    (!value.trim().is_empty()).then(|| value.to_owned())
}

/// The cells of one record's text: byte ranges and whether each is quoted.
fn cell_spans(raw: &str) -> Vec<(Range<usize>, bool)> {
    let b = raw.as_bytes();
    let mut cells = Vec::new();
    let mut i = 0;
    loop {
        let start = i;
        let quoted = b.get(i) == Some(&b'"');
        if quoted {
            i += 1;
            while i < b.len() {
                if b[i] == b'"' {
                    if b.get(i + 1) == Some(&b'"') {
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                i += 1;
            }
        }
        while i < b.len() && b[i] != b',' {
            i += 1;
        }
        cells.push((start..i, quoted));
        if i >= b.len() {
            return cells;
        }
        i += 1;
    }
}

/// A cell's value from its text, when the text is a plain or a well-formed
/// quoted cell.
fn cell_value(raw: &str, quoted: bool) -> Option<String> {
    if !quoted {
        return Some(raw.to_owned());
    }
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    let mut chars = inner.chars().peekable();
    let mut out = String::with_capacity(inner.len());
    while let Some(c) = chars.next() {
        if c == '"' && chars.next() != Some('"') {
            return None;
        }
        out.push(c);
    }
    Some(out)
}

/// The end of `text[span]` without its line ending (and blank lines after it).
fn without_line_end(text: &str, span: Range<usize>) -> Range<usize> {
    let trimmed = text[span.clone()].trim_end_matches(['\r', '\n']);
    span.start..span.start + trimmed.len()
}

fn read_csv(text: String) -> Result<(Doc, Vec<Agent>)> {
    let bom = if text.starts_with(BOM) { BOM.len() } else { 0 };
    let body = &text[bom..];
    let mut reader = csv::ReaderBuilder::new().from_reader(body.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .context("reading the header row")?
        .iter()
        .map(str::to_owned)
        .collect();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name))
    };
    let email = column(EMAIL).ok_or_else(|| anyhow!("the header row has no \"email\" column"))?;
    let id = column(ID);
    let (external_id, add_column) = match column(EXTERNAL_ID) {
        Some(c) => (c, false),
        None => (headers.len(), true),
    };
    let mut starts = Vec::new();
    let mut records = Vec::new();
    let mut agents = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let row = i + 1;
        let record = record.with_context(|| format!("row {row}"))?;
        let start = record.position().map_or(0, |p| p.byte() as usize) + bom;
        starts.push(start);
        let fields: Vec<String> = record.iter().map(str::to_owned).collect();
        records.push(CsvRecord {
            span: start..start,
            cell: None,
            fields,
        });
    }
    let header_end =
        without_line_end(&text, bom..starts.first().copied().unwrap_or(text.len())).end;
    for (i, record) in records.iter_mut().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(text.len());
        record.span = without_line_end(&text, record.span.start..end);
        let raw = &text[record.span.clone()];
        let cells = cell_spans(raw);
        let mut quoted = false;
        if !add_column
            && cells.len() == record.fields.len()
            && let Some((cell, q)) = cells.get(external_id)
            && cell_value(&raw[cell.clone()], *q).as_deref() == Some(&record.fields[external_id])
        {
            quoted = *q;
            record.cell = Some(record.span.start + cell.start..record.span.start + cell.end);
        }
        let current = if add_column {
            None
        } else {
            read_csv_id(&record.fields[external_id], quoted)
        };
        let row = i + 1;
        agents.push(Agent {
            id: id
                .map(|c| record.fields[c].trim().to_owned())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| format!("row {row}")),
            email: record.fields[email].clone(),
            external_id: current,
        });
    }
    let doc = CsvDoc {
        text,
        header_end,
        column: external_id,
        add_column,
        records,
    };
    Ok((Doc::Csv(doc), agents))
}

impl CsvDoc {
    fn render(&self, set: &BTreeMap<usize, Option<String>>) -> Result<String> {
        let mut edits = Vec::new();
        if self.add_column {
            edits.push((self.header_end..self.header_end, format!(",{EXTERNAL_ID}")));
        }
        for (row, record) in self.records.iter().enumerate() {
            let cell = set
                .get(&row)
                .map(|id| id.as_deref().map(csv_cell).unwrap_or_default());
            let end = record.span.end;
            match (cell, &record.cell) {
                (None, _) if self.add_column => edits.push((end..end, ",".to_owned())),
                (None, _) => {}
                (Some(cell), _) if self.add_column => edits.push((end..end, format!(",{cell}"))),
                (Some(cell), Some(range)) => edits.push((range.clone(), cell)),
                (Some(_), None) => {
                    // The cell was not found in the text: the csv crate writes the row.
                    let mut fields = record.fields.clone();
                    fields[self.column] = set[&row].as_deref().map(guard).unwrap_or_default();
                    let mut out = csv::WriterBuilder::new()
                        .terminator(csv::Terminator::Any(b'\n'))
                        .from_writer(Vec::new());
                    out.write_record(&fields)?;
                    let bytes = out
                        .into_inner()
                        .map_err(|e| anyhow!("writing CSV: {}", e.error()))?;
                    let line = String::from_utf8(bytes)?;
                    edits.push((record.span.clone(), line.trim_end_matches('\n').to_owned()));
                }
            }
        }
        edits.sort_by_key(|(r, _)| r.start);
        Ok(splice(&self.text, &edits))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink_with(name: &str, text: &str) -> (tempfile::TempDir, PathBuf, FileSink) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let sink = FileSink::open(path.clone()).unwrap();
        (dir, path, sink)
    }

    /// Set the external IDs of the first agents to `ids`, commit, and return
    /// the file's text.
    fn set(name: &str, text: &str, ids: &[Option<&str>]) -> String {
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
            r#"[{"z": 1, "email": "a@x.com", "id": 7, "external_id": "x1"}, {"email": "b@x.com", "external_id": null}]"#
        );
    }

    #[test]
    fn json_keeps_numbers_duplicates_bom_and_crlf_byte_for_byte() {
        let original = "\u{feff}[\r\n  {\r\n    \"email\": \"a@x.com\",\r\n    \"big\": 123456789012345678901234567890,\r\n    \"f\": 1.50,\r\n    \"tag\": \"x\", \"tag\": \"y\"\r\n  },\r\n  {\"email\":\"b@x.com\",\"external_id\":\"old\",\"external_id\":\"old\"}\r\n]\r\n";
        let text = set("a.json", original, &[Some("n\"1"), Some("2")]);
        assert_eq!(
            text,
            "\u{feff}[\r\n  {\r\n    \"email\": \"a@x.com\",\r\n    \"big\": 123456789012345678901234567890,\r\n    \"f\": 1.50,\r\n    \"tag\": \"x\", \"tag\": \"y\",\r\n    \"external_id\": \"n\\\"1\"\r\n  },\r\n  {\"email\":\"b@x.com\",\"external_id\":\"2\",\"external_id\":\"2\"}\r\n]\r\n"
        );
    }

    #[test]
    fn json_single_member_rows_get_the_row_layout() {
        assert_eq!(
            set(
                "a.json",
                "[\n  {\n    \"email\": \"a@x.com\"\n  }\n]\n",
                &[Some("1")]
            ),
            "[\n  {\n    \"email\": \"a@x.com\",\n    \"external_id\": \"1\"\n  }\n]\n"
        );
        assert_eq!(
            set("a.json", "[{\"email\":\"a@x.com\"}]", &[Some("1")]),
            "[{\"email\":\"a@x.com\",\"external_id\":\"1\"}]"
        );
    }

    #[test]
    fn json_big_number_ids_are_read_as_written() {
        let (_dir, _path, mut sink) = sink_with(
            "a.json",
            r#"[{"email": "a@x.com", "external_id": 123456789012345678901234567890}]"#,
        );
        let agents = sink.list_agents(&Progress::hidden()).unwrap();
        assert_eq!(
            agents[0].external_id.as_deref(),
            Some("123456789012345678901234567890")
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
    fn csv_keeps_bom_quoting_and_matches_headers_in_any_case() {
        let original = "\u{feff}ID,Email,\"Note\",EXTERNAL_ID\r\nk1,a@x.com,\"said \"\"hi\"\"\",\r\nk2,b@x.com,\"x\",\"old\"\r\n";
        let text = set("a.csv", original, &[Some("1, 2"), Some("3")]);
        assert_eq!(
            text,
            "\u{feff}ID,Email,\"Note\",EXTERNAL_ID\r\nk1,a@x.com,\"said \"\"hi\"\"\",\"1, 2\"\r\nk2,b@x.com,\"x\",3\r\n"
        );
        // An added column goes on every row, line endings kept, no final one added.
        assert_eq!(
            set("a.csv", "Email\r\na@x.com\r\nb@x.com", &[Some("1")]),
            "Email,external_id\r\na@x.com,1\r\nb@x.com,"
        );
    }

    #[test]
    fn csv_formulas_are_guarded_and_read_back_as_set() {
        let ids = [
            "=HYPERLINK(\"http://evil\",\"x\")",
            "+1",
            "-2",
            "@SUM(A1)",
            "\tx",
        ];
        for id in ids {
            let (_dir, path, mut sink) = sink_with("a.csv", "email\na@x.com\n");
            let agents = sink.list_agents(&Progress::hidden()).unwrap();
            sink.write(&Change::setting(&agents[0], Some(id.into())))
                .unwrap();
            sink.commit().unwrap();
            let text = std::fs::read_to_string(&path).unwrap();
            let cell = text.lines().nth(1).unwrap().split_once(',').unwrap().1;
            assert!(
                cell.starts_with('\'') || cell.starts_with("\"'"),
                "{id:?} written as {cell:?}"
            );
            let again = sink.list_agents(&Progress::hidden()).unwrap();
            assert_eq!(again[0].external_id.as_deref(), Some(id), "{text:?}");
        }
        // An ID that would read back without its own leading ' is refused.
        let (_dir, _path, mut sink) = sink_with("a.csv", "email\na@x.com\n");
        let agents = sink.list_agents(&Progress::hidden()).unwrap();
        let err = sink
            .write(&Change::setting(&agents[0], Some("'=1".into())))
            .unwrap_err();
        assert!(
            err.to_string().contains("cannot be kept in a CSV file"),
            "{err}"
        );
    }

    #[test]
    fn csv_ids_with_spaces_read_back_as_written() {
        let (_dir, _path, mut sink) = sink_with("a.csv", "email,external_id\na@x.com, 7 \n");
        let agents = sink.list_agents(&Progress::hidden()).unwrap();
        assert_eq!(
            agents[0].external_id.as_deref(),
            Some("7"),
            "unquoted: trimmed"
        );
        sink.write(&Change::setting(&agents[0], Some(" 8 ".into())))
            .unwrap();
        sink.commit().unwrap();
        let again = sink.list_agents(&Progress::hidden()).unwrap();
        assert_eq!(
            again[0].external_id.as_deref(),
            Some(" 8 "),
            "quoted: exact"
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

//! The CSV file's editing: the csv crate reads the records and says where
//! each one starts; within a record, the external ID's cell is found by a small
//! scan of its text and checked against what the csv crate read (a record where
//! the two disagree is written whole by the csv crate instead).

use std::collections::BTreeMap;
use std::ops::Range;

use anyhow::{Context, Result, anyhow, bail};

use super::{BOM, Doc, EMAIL, EXTERNAL_ID, ID, splice};
use crate::sink::Agent;

pub(crate) struct CsvDoc {
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
pub(crate) fn check_csv_id(id: &str) -> Result<()> {
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

pub(crate) fn read_csv(text: String) -> Result<(Doc, Vec<Agent>)> {
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
        let start = record.position().map_or(0, |p| {
            usize::try_from(p.byte()).expect("an offset in a text held in memory")
        }) + bom;
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
    pub(crate) fn render(&self, set: &BTreeMap<usize, Option<String>>) -> Result<String> {
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
    use super::super::tests::{set, sink_with};
    use crate::plan::Change;
    use crate::progress::Progress;
    use crate::sink::Sink;

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
}

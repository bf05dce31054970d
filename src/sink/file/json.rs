//! The JSON file's editing: `serde_json` reads the file into borrowed
//! `RawValue`s, so each member's key and value are slices of the text with
//! known byte ranges, and only the external IDs' values are replaced.

// serde_json's `arbitrary_precision` would keep numbers, but it changes number
// handling for the whole crate and still loses duplicate keys, whitespace and
// line endings.

use std::collections::BTreeMap;
use std::ops::Range;

use anyhow::{Result, anyhow, bail};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{BOM, Doc, EMAIL, EXTERNAL_ID, ID, splice};
use crate::sink::Agent;

pub(crate) struct JsonDoc {
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
    pub(crate) fn render(&self, set: &BTreeMap<usize, Option<String>>) -> String {
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

pub(crate) fn read_json(text: String) -> Result<(Doc, Vec<Agent>)> {
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

#[cfg(test)]
mod tests {
    use super::super::tests::{set, sink_with};
    use crate::plan::Change;
    use crate::progress::Progress;
    use crate::sink::Sink;

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
}

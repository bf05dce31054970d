//! Every unknown key of a config file at once. serde stops at the first, so
//! the file is walked again, with the place of each key, against the keys the
//! config's schema (the same raw types) knows, table by table.

use serde_json::{Map, Value};
use toml::de::{DeTable, DeValue};

use super::ctx::{ConfigError, Ctx};

/// The unknown keys of config `text`, all in one error, in file order; `None`
/// when there are none (or the text is not TOML: serde said why).
pub(super) fn unknown(text: &str, ctx: &Ctx) -> Option<ConfigError> {
    let table = DeTable::parse(text).ok()?;
    let schema = super::schema::schema();
    let root = schema.as_value();
    let defs = root.get("$defs")?.as_object()?;
    let mut found = Vec::new();
    walk(table.get_ref(), root, defs, "", &mut found);
    found.sort_by_key(|(at, _)| *at);
    ConfigError::from_all(
        found
            .into_iter()
            .map(|(at, message)| ctx.error(Some(at..at), message))
            .collect(),
    )
}

fn resolve<'a>(schema: &'a Value, defs: &'a Map<String, Value>) -> &'a Value {
    schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
        .and_then(|name| defs.get(name))
        .unwrap_or(schema)
}

/// Records `(byte offset, message)` of each unknown key of `table` (named
/// `name`, "" at the top) and of the tables inside it.
fn walk(
    table: &DeTable<'_>,
    schema: &Value,
    defs: &Map<String, Value>,
    name: &str,
    found: &mut Vec<(usize, String)>,
) {
    let schema = resolve(schema, defs);
    // An internally tagged table (`auth`): the keys of the alternative its
    // `kind` names. An unknown kind is serde's error to report.
    if let Some(alternatives) = schema.get("oneOf").and_then(Value::as_array) {
        let kind = table.iter().find_map(|(k, v)| match v.get_ref() {
            DeValue::String(s) if k.get_ref() == "kind" => Some(s.as_ref()),
            _ => None,
        });
        if let Some(chosen) = alternatives
            .iter()
            .find(|a| kind.is_some() && a["properties"]["kind"]["const"].as_str() == kind)
        {
            walk(table, chosen, defs, name, found);
        }
        return;
    }
    let properties = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties");
    for (key, value) in table {
        let key_name: &str = key.get_ref().as_ref();
        let child = match properties.and_then(|p| p.get(key_name)) {
            Some(known) => Some(known),
            None if additional == Some(&Value::Bool(false)) => {
                let known: Vec<&str> = properties
                    .map(|p| p.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                found.push((key.span().start, message(name, key_name, &known)));
                None
            }
            None => additional.filter(|a| a.is_object()),
        };
        if let (Some(child), DeValue::Table(inner)) = (child, value.get_ref()) {
            let child_name = if name.is_empty() {
                key_name.to_owned()
            } else {
                format!("{name}.{key_name}")
            };
            walk(inner, child, defs, &child_name, found);
        }
    }
}

/// serde's words for an unknown key, with the table and the likely key meant.
fn message(table: &str, key: &str, known: &[&str]) -> String {
    let place = if table.is_empty() {
        String::new()
    } else {
        format!(" in [{table}]")
    };
    let near = known
        .iter()
        .filter(|k| distance(k, key) <= 2)
        .min_by_key(|k| distance(k, key));
    if let Some(k) = near {
        format!("unknown field `{key}`{place}: did you mean `{k}`?")
    } else {
        let list: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
        format!(
            "unknown field `{key}`{place}, expected one of {}",
            list.join(", ")
        )
    }
}

/// Edit distance (insertions, deletions, substitutions, swaps of neighbours).
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = d;
        }
    }
    rows[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::distance;
    use crate::config::tests::{MINIMAL, parse_str};

    #[test]
    fn distance_counts_edits_and_swaps() {
        assert_eq!(distance("records", "recrods"), 1);
        assert_eq!(distance("timeout_secs", "timeout"), 5);
        assert_eq!(distance("", "abc"), 3);
    }

    #[test]
    fn every_unknown_key_is_reported_at_its_place() {
        let text = format!(
            "{MINIMAL}\n[sink]\nkind = \"scim\"\nbase_url = \"https://d.example/scim/v2\"\n  timeout = 5\nauth = {{ kind = \"bearer\", token_env = \"TOKEN\", tokn = 1 }}\n\n[actions.punch]\npath = \"/p\"\n    methd = \"POST\"\n"
        )
        .replace("records = \".users\"", "records = \".users\"\nrecrods = 1");
        let err = parse_str(&text).unwrap_err();
        let all: Vec<_> = std::iter::once(&err).chain(&err.more).collect();
        let got: Vec<_> = all.iter().map(|e| (e.at, e.message.as_str())).collect();
        assert_eq!(all.len(), 4, "{err}");
        assert_eq!(got[0].0, Some((7, 1)), "{err}");
        assert!(
            got[0]
                .1
                .contains("unknown field `recrods` in [source]: did you mean `records`?"),
            "{err}"
        );
        assert_eq!(got[1].0, Some((16, 3)), "{err}");
        assert!(
            got[1].1.contains("unknown field `timeout` in [sink]"),
            "{err}"
        );
        assert!(
            got[2].1.contains("unknown field `tokn` in [sink.auth]"),
            "{err}"
        );
        assert_eq!(got[3].0, Some((21, 5)), "{err}");
        assert!(
            got[3]
                .1
                .contains("unknown field `methd` in [actions.punch]: did you mean `method`?"),
            "{err}"
        );
    }
}

//! `agentsync schema`: the JSON Schema (draft 2020-12) of the config, generated
//! from the raw serde types that parse it, so the two cannot drift apart. A
//! copy is committed as `schema/agentsync.schema.json` for editors (taplo's
//! `#:schema` directive); a test keeps it up to date.

use schemars::Schema;
use schemars::transform::RecursiveTransform;
use serde_json::Value;

use super::raw::RawConfig;

/// The schema of the config.
pub(super) fn schema() -> Schema {
    schemars::generate::SchemaSettings::draft2020_12()
        .with_transform(RecursiveTransform(no_null))
        .into_generator()
        .into_root_schema_for::<RawConfig>()
}

/// The schema, as pretty-printed JSON ending in a newline.
pub(crate) fn text() -> String {
    let mut text = serde_json::to_string_pretty(&schema()).expect("a schema serializes");
    text.push('\n');
    text
}

/// TOML has no null: an `Option` key is one that may be left out (it is not
/// `required`), never one that may be null. Drops the `null` alternative
/// schemars gives every `Option`.
fn no_null(schema: &mut Schema) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    if let Some(Value::Array(types)) = obj.get_mut("type") {
        types.retain(|t| t != "null");
        if let [only] = types.as_slice() {
            let only = only.clone();
            obj.insert("type".into(), only);
        }
    }
    let is_null = |v: &Value| {
        v.get("type").is_some_and(|t| t == "null") && v.as_object().is_some_and(|o| o.len() == 1)
    };
    if let Some(Value::Array(any)) = obj.get("anyOf")
        && any.len() == 2
        && let Some(other) = any.iter().find(|v| !is_null(v))
        && any.iter().any(is_null)
        && let Some(other) = other.as_object().cloned()
    {
        obj.remove("anyOf");
        for (k, v) in other {
            obj.entry(k).or_insert(v);
        }
    }
}

//! A SCIM user resource of the mock: how one is seeded, versioned on each
//! write, and changed by a PUT (replace) or a PATCH (add, replace, remove).

use serde_json::{Map, Value, json};

use super::scim::{PATCH_SCHEMA, USER_SCHEMA};
use super::server::Reply;
use super::{email, now};

pub(crate) fn agent_resource(
    base: &str,
    n: usize,
    external_id: Option<String>,
    versioned: bool,
) -> Value {
    let id = format!("agent-{n}");
    let created = now();
    let mut user = json!({
        "schemas": [USER_SCHEMA],
        "id": id,
        "userName": email(n),
        "name": {"givenName": "User", "familyName": n.to_string(), "formatted": format!("User {n}")},
        "emails": [{"value": email(n), "primary": true, "type": "work"}],
        "active": true,
        "meta": {
            "resourceType": "User",
            "created": created,
            "lastModified": created,
            "location": format!("{base}/scim/v2/Users/{id}"),
            "version": "W/\"1\"",
        },
    });
    if let Some(x) = external_id {
        user["externalId"] = json!(x);
    }
    if !versioned && let Some(meta) = user["meta"].as_object_mut() {
        meta.remove("version");
    }
    user
}

/// A new version after a write (when the directory has versions).
pub(crate) fn touch(agent: &mut Value, versioned: bool) {
    agent["meta"]["lastModified"] = json!(now());
    if !versioned {
        return;
    }
    let version = agent["meta"]["version"]
        .as_str()
        .and_then(|v| {
            v.trim_start_matches("W/\"")
                .trim_end_matches('"')
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(1);
    agent["meta"]["version"] = json!(format!("W/\"{}\"", version + 1));
}

fn parse_object(body: &str) -> Result<Map<String, Value>, Reply> {
    match serde_json::from_str(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(Reply::scim_error(
            400,
            Some("invalidSyntax"),
            "the body is not a JSON object",
        )),
        Err(e) => Err(Reply::scim_error(
            400,
            Some("invalidSyntax"),
            &format!("the body is not JSON: {e}"),
        )),
    }
}

fn check_external_id(value: &Value) -> Result<(), Reply> {
    match value {
        Value::String(_) | Value::Null => Ok(()),
        _ => Err(Reply::scim_error(
            400,
            Some("invalidValue"),
            "externalId must be a string",
        )),
    }
}

/// PUT: the body replaces the resource; `id` and `meta` stay the server's.
pub(crate) fn replace(agent: &mut Value, body: &str) -> Result<(), Reply> {
    let mut next = parse_object(body)?;
    let id = agent["id"].clone();
    if next.get("id").is_some_and(|v| *v != id) {
        return Err(Reply::scim_error(
            400,
            Some("mutability"),
            "id cannot be changed",
        ));
    }
    if !next.get("userName").is_some_and(Value::is_string) {
        return Err(Reply::scim_error(
            400,
            Some("invalidValue"),
            "userName is required",
        ));
    }
    if let Some(x) = next.get("externalId") {
        check_external_id(x)?;
    }
    next.insert("id".into(), id);
    next.insert("meta".into(), agent["meta"].clone());
    next.retain(|_, v| !v.is_null());
    *agent = Value::Object(next);
    Ok(())
}

/// PATCH (RFC 7644 §3.5.2) of top-level attributes: add, replace, remove.
pub(crate) fn patch(agent: &mut Value, body: &str) -> Result<(), Reply> {
    let request = parse_object(body)?;
    let is_patch = request
        .get("schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(|v| v == PATCH_SCHEMA));
    if !is_patch {
        return Err(Reply::scim_error(
            400,
            Some("invalidSyntax"),
            "schemas must name the PatchOp message",
        ));
    }
    let Some(ops) = request.get("Operations").and_then(Value::as_array) else {
        return Err(Reply::scim_error(
            400,
            Some("invalidSyntax"),
            "Operations is missing",
        ));
    };
    let mut next = agent.clone();
    for op in ops {
        let name = op
            .get("op")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_ascii_lowercase();
        let path = op.get("path").and_then(Value::as_str);
        let value = op.get("value");
        let attr = match path {
            Some(p) if p.contains(['.', '[', ':']) => {
                return Err(Reply::scim_error(
                    400,
                    Some("invalidPath"),
                    &format!("path {p:?} is not supported here"),
                ));
            }
            Some(p)
                if ["id", "meta", "schemas"]
                    .iter()
                    .any(|r| r.eq_ignore_ascii_case(p)) =>
            {
                return Err(Reply::scim_error(
                    400,
                    Some("mutability"),
                    &format!("{p} cannot be changed"),
                ));
            }
            // Attribute names are case-insensitive: keep the resource's spelling.
            Some(p) => Some(canonical(&next, p)),
            None => None,
        };
        match (name.as_str(), attr, value) {
            ("add" | "replace", Some(attr), Some(v)) => {
                if attr == "externalId" {
                    check_external_id(v)?;
                }
                next[attr.as_str()] = v.clone();
            }
            ("add" | "replace", None, Some(Value::Object(values))) => {
                for (k, v) in values {
                    if k == "externalId" {
                        check_external_id(v)?;
                    }
                    next[k.as_str()] = v.clone();
                }
            }
            ("remove", Some(attr), _) => {
                if let Some(o) = next.as_object_mut() {
                    o.remove(&attr);
                }
            }
            ("remove", None, _) => {
                return Err(Reply::scim_error(
                    400,
                    Some("noTarget"),
                    "remove needs a path",
                ));
            }
            ("add" | "replace", _, _) => {
                return Err(Reply::scim_error(
                    400,
                    Some("invalidValue"),
                    &format!("{name} needs a value"),
                ));
            }
            _ => {
                return Err(Reply::scim_error(
                    400,
                    Some("invalidSyntax"),
                    &format!("unknown op {name:?}"),
                ));
            }
        }
    }
    if let Some(o) = next.as_object_mut() {
        o.retain(|_, v| !v.is_null());
    }
    *agent = next;
    Ok(())
}

fn canonical(resource: &Value, attr: &str) -> String {
    if attr.eq_ignore_ascii_case("externalId") {
        return "externalId".into();
    }
    resource
        .as_object()
        .and_then(|o| o.keys().find(|k| k.eq_ignore_ascii_case(attr)))
        .cloned()
        .unwrap_or_else(|| attr.to_owned())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::scim::PATCH_SCHEMA;
    use super::super::tests::*;

    #[test]
    fn put_and_patch_change_the_external_id() {
        let s = state(5, 5);
        let mut user = get(&s, "/scim/v2/Users/agent-1");
        user["externalId"] = json!("1");
        let reply = send(&s, "PUT", "/scim/v2/Users/agent-1", &user.to_string());
        assert_eq!(reply.status, 200, "{}", reply.body);
        let after = get(&s, "/scim/v2/Users/agent-1");
        assert_eq!(after["externalId"], "1");
        assert_eq!(after["meta"]["version"], "W/\"2\"");

        let remove = json!({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "Remove", "path": "externalId"}]});
        assert_eq!(
            send(&s, "PATCH", "/scim/v2/Users/agent-1", &remove.to_string()).status,
            200
        );
        assert!(
            get(&s, "/scim/v2/Users/agent-1")
                .get("externalId")
                .is_none()
        );

        let bad = json!({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "replace", "path": "externalId", "value": 5}]});
        let reply = send(&s, "PATCH", "/scim/v2/Users/agent-1", &bad.to_string());
        assert_eq!(reply.status, 400);
        assert!(reply.body.contains("invalidValue"), "{}", reply.body);
        assert_eq!(send(&s, "GET", "/scim/v2/Users/nobody", "").status, 404);
    }
}

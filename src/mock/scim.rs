//! The mock's SCIM 2.0 directory: the listing (pages, `eq` filters), a user's
//! GET, PUT and PATCH held to `If-Match` versions, and the
//! `ServiceProviderConfig` that says which of these it serves.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::resource::{patch, replace, touch};
use super::server::Reply;
use super::stats::Kind;
use super::{State, param};

pub(crate) const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub(crate) const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const CONFIG_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";

impl Reply {
    pub(crate) fn scim(status: u16, body: &Value) -> Self {
        Reply::new(status, "application/scim+json", body.to_string())
    }

    pub(crate) fn scim_error(status: u16, scim_type: Option<&str>, detail: &str) -> Self {
        let mut body =
            json!({"schemas": [ERROR_SCHEMA], "status": status.to_string(), "detail": detail});
        if let Some(t) = scim_type {
            body["scimType"] = json!(t);
        }
        Reply::scim(status, &body)
    }
}

impl State {
    /// RFC 7643 §5; `filter.maxResults` is also the largest listing page.
    pub(crate) fn service_provider_config(&self) -> Value {
        let schemes = match &self.sts {
            None => json!([]),
            Some(_) => json!([{
                "type": "oauthbearertoken",
                "name": "Talkdesk STS token",
                "description": "An opaque token from POST /oauth/token (client credentials, \
                    token_type=opaque), sent as `Authorization: <token>` without a Bearer prefix",
                "specUri": "https://www.rfc-editor.org/info/rfc6749",
                "primary": true,
            }]),
        };
        json!({
            "schemas": [CONFIG_SCHEMA],
            "patch": {"supported": self.patch},
            "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
            "filter": {"supported": self.filter, "maxResults": self.max_results},
            "changePassword": {"supported": false},
            "sort": {"supported": false},
            "etag": {"supported": self.etag},
            "authenticationSchemes": schemes,
            "meta": {"resourceType": "ServiceProviderConfig", "location": self.config_url},
        })
    }

    pub(crate) fn scim_list(&self, query: &str) -> Reply {
        let filter = match param(query, "filter") {
            None => None,
            Some(_) if !self.filter => {
                self.stats.count(Kind::ScimFilter);
                return Reply::scim_error(
                    400,
                    Some("invalidFilter"),
                    "this directory does not support filtering",
                );
            }
            Some(text) => {
                self.stats.count(Kind::ScimFilter);
                match Filter::parse(&text) {
                    Ok(f) => Some(f),
                    Err(refused) => return refused,
                }
            }
        };
        if filter.is_none() {
            self.stats.count(Kind::ScimList);
        }
        let number = |name: &str, default: usize| match param(query, name) {
            None => Ok(default),
            Some(v) => v.parse::<usize>().map_err(|_| {
                Reply::scim_error(
                    400,
                    Some("invalidValue"),
                    &format!("{name} must be a number, not {v:?}"),
                )
            }),
        };
        let (start, count) = match (number("startIndex", 1), number("count", 100)) {
            (Ok(s), Ok(c)) => (s.max(1), c.min(self.max_results)),
            (Err(r), _) | (_, Err(r)) => return r,
        };
        let agents = self.agents.lock().unwrap();
        let (total, page): (usize, Vec<&str>) = match &filter {
            None => {
                let page = agents.texts.iter().skip(start - 1).take(count);
                (agents.texts.len(), page.map(String::as_str).collect())
            }
            Some(f) => {
                let selected = agents.filtered(f);
                let page = selected.iter().skip(start - 1).take(count).copied();
                (selected.len(), page.collect())
            }
        };
        // The resources are kept as JSON text: a page is their concatenation.
        let body = format!(
            r#"{{"schemas":["{LIST_SCHEMA}"],"totalResults":{total},"startIndex":{start},"itemsPerPage":{},"Resources":[{}]}}"#,
            page.len(),
            page.join(",")
        );
        Reply::new(200, "application/scim+json", body)
    }

    pub(crate) fn scim_user(
        &self,
        method: &str,
        id: &str,
        if_match: Option<&str>,
        body: &str,
    ) -> Reply {
        let kind = match method {
            "GET" => Kind::ScimGet,
            "PUT" => Kind::ScimPut,
            "PATCH" => Kind::ScimPatch,
            _ => {
                return Reply::scim_error(
                    405,
                    None,
                    &format!("{method} is not supported on a user"),
                );
            }
        };
        self.stats.count(kind);
        if method == "PATCH" && !self.patch {
            return Reply::scim_error(501, None, "PATCH is not supported by this directory");
        }
        let mut agents = self.agents.lock().unwrap();
        let Some(&i) = agents.index.get(id) else {
            return Reply::scim_error(404, None, &format!("user {id} not found"));
        };
        let mut agent: Value = serde_json::from_str(&agents.texts[i]).expect("the mock's own JSON");
        if method != "GET"
            && self.etag
            && let Some(wanted) = if_match
        {
            let current = agent["meta"]["version"].as_str().unwrap_or_default();
            if !if_match_holds(wanted, current) {
                return Reply::scim_error(
                    412,
                    None,
                    &format!("If-Match {wanted} does not match the user's version {current}"),
                );
            }
        }
        let result = match method {
            "PUT" => replace(&mut agent, body),
            "PATCH" => patch(&mut agent, body),
            _ => Ok(()),
        };
        if let Err(reply) = result {
            return reply;
        }
        if method != "GET" {
            touch(&mut agent, self.etag);
            agents.set(i, &agent);
            if self.log {
                let shown = agent["externalId"].as_str().unwrap_or("(none)");
                eprintln!("mock: scim {method} {id} externalId={shown}");
            }
        }
        drop(agents);
        let etag = agent["meta"]["version"].as_str().map(str::to_owned);
        let reply = Reply::scim(200, &agent);
        match etag {
            Some(tag) => reply.with_header("ETag", tag),
            None => reply,
        }
    }
}

/// `If-Match` (RFC 7232 §3.1) against the current version: `*`, or one of the
/// listed tags, compared weakly (a `W/` prefix on either side is ignored).
fn if_match_holds(header: &str, current: &str) -> bool {
    let opaque = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
    let current = opaque(current);
    header.trim() == "*" || header.split(',').any(|tag| opaque(tag) == current)
}

/// The one filter shape the directory answers: `ATTRIBUTE eq "VALUE"`.
#[derive(Debug, PartialEq)]
enum Filter {
    UserName(String),
    Email(String),
}

impl Filter {
    /// Attribute and operator names are case-insensitive (RFC 7644 §3.4.2.2);
    /// the value is a JSON string. `emails` alone means its `value`.
    fn parse(text: &str) -> Result<Self, Reply> {
        let refuse = || {
            Reply::scim_error(
                400,
                Some("invalidFilter"),
                &format!(
                    r#"only `userName eq "…"` and `emails.value eq "…"` filters are supported, not {text:?}"#
                ),
            )
        };
        let mut parts = text.trim().splitn(3, char::is_whitespace);
        let (Some(attr), Some(op), Some(value)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(refuse());
        };
        if !op.eq_ignore_ascii_case("eq") {
            return Err(refuse());
        }
        let Ok(value) = serde_json::from_str::<String>(value.trim()) else {
            return Err(refuse());
        };
        let value = value.to_ascii_lowercase();
        if attr.eq_ignore_ascii_case("userName") {
            Ok(Filter::UserName(value))
        } else if attr.eq_ignore_ascii_case("emails.value") || attr.eq_ignore_ascii_case("emails") {
            Ok(Filter::Email(value))
        } else {
            Err(refuse())
        }
    }
}

/// The SCIM users, each as JSON text, in listing order.
pub(crate) struct Directory {
    pub(crate) texts: Vec<String>,
    /// What filters compare, lower-cased, by position.
    keys: Vec<Keys>,
    index: HashMap<String, usize>,
}

/// A user's userName and email values, lower-cased (ASCII) as filters compare them.
struct Keys {
    user_name: String,
    emails: Vec<String>,
}

impl Keys {
    fn of(agent: &Value) -> Self {
        let lower = |v: &Value| v.as_str().map(str::to_ascii_lowercase);
        Keys {
            user_name: lower(&agent["userName"]).unwrap_or_default(),
            emails: agent["emails"]
                .as_array()
                .map(|emails| emails.iter().filter_map(|e| lower(&e["value"])).collect())
                .unwrap_or_default(),
        }
    }

    fn matches(&self, filter: &Filter) -> bool {
        match filter {
            Filter::UserName(v) => self.user_name == *v,
            Filter::Email(v) => self.emails.contains(v),
        }
    }
}

impl Directory {
    pub(crate) fn new(agents: &[Value]) -> Self {
        let index = agents
            .iter()
            .enumerate()
            .map(|(i, a)| (a["id"].as_str().unwrap_or_default().to_owned(), i))
            .collect();
        let texts = agents.iter().map(Value::to_string).collect();
        let keys = agents.iter().map(Keys::of).collect();
        Directory { texts, keys, index }
    }

    pub(crate) fn set(&mut self, i: usize, agent: &Value) {
        self.texts[i] = agent.to_string();
        self.keys[i] = Keys::of(agent);
    }

    /// The users a filter selects, in listing order.
    fn filtered(&self, filter: &Filter) -> Vec<&str> {
        self.keys
            .iter()
            .zip(&self.texts)
            .filter(|(keys, _)| keys.matches(filter))
            .map(|(_, text)| text.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::tests::*;
    use super::super::{MockOptions, State};
    use super::*;

    #[test]
    fn service_provider_config_says_what_is_served() {
        let config = get(&state(5, 5), "/scim/v2/ServiceProviderConfig");
        assert_eq!(config["schemas"], json!([CONFIG_SCHEMA]));
        assert_eq!(config["patch"], json!({"supported": true}));
        assert_eq!(
            config["filter"],
            json!({"supported": true, "maxResults": 1000})
        );
        assert_eq!(config["etag"], json!({"supported": true}));
        for off in ["bulk", "changePassword", "sort"] {
            assert_eq!(config[off]["supported"], false, "{off}");
        }
        assert_eq!(config["authenticationSchemes"], json!([]));

        let plain = with(MockOptions {
            patch: false,
            etag: false,
            filter: false,
            ..MockOptions::default()
        });
        let config = get(&plain, "/scim/v2/ServiceProviderConfig");
        for off in ["patch", "etag", "filter"] {
            assert_eq!(config[off]["supported"], false, "{off}");
        }
        let remove = json!({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "remove", "path": "externalId"}]});
        let reply = send(
            &plain,
            "PATCH",
            "/scim/v2/Users/agent-1",
            &remove.to_string(),
        );
        assert_eq!(reply.status, 501, "{}", reply.body);
        let reply = send(
            &plain,
            "GET",
            "/scim/v2/Users?filter=userName%20eq%20%22a%22",
            "",
        );
        assert_eq!(reply.status, 400);
        assert_eq!(parse(&reply)["scimType"], "invalidFilter");
        // Without versions: no meta.version, no ETag, If-Match ignored.
        let reply = send(&plain, "GET", "/scim/v2/Users/agent-1", "");
        assert!(parse(&reply)["meta"].get("version").is_none());
        assert!(header(&reply, "ETag").is_none());
        let mut user = parse(&reply);
        user["externalId"] = json!("1");
        let reply = send_with(
            &plain,
            "PUT",
            "/scim/v2/Users/agent-1",
            &[("If-Match", "W/\"99\"")],
            &user.to_string(),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert!(parse(&reply)["meta"].get("version").is_none());
    }

    #[test]
    fn writes_honour_if_match_and_change_the_version() {
        let s = state(5, 5);
        let url = "/scim/v2/Users/agent-1";
        let reply = send(&s, "GET", url, "");
        assert_eq!(header(&reply, "ETag"), Some("W/\"1\""));
        let mut user = parse(&reply);
        assert_eq!(user["meta"]["version"], "W/\"1\"");
        user["externalId"] = json!("1");
        let put = |tag: &str| send_with(&s, "PUT", url, &[("If-Match", tag)], &user.to_string());

        let stale = put("W/\"7\"");
        assert_eq!(stale.status, 412, "{}", stale.body);
        assert_eq!(parse(&stale)["schemas"], json!([ERROR_SCHEMA]));
        assert!(get(&s, url).get("externalId").is_none(), "nothing written");

        let ok = put("W/\"1\"");
        assert_eq!(ok.status, 200, "{}", ok.body);
        assert_eq!(parse(&ok)["meta"]["version"], "W/\"2\"");
        assert_eq!(header(&ok, "ETag"), Some("W/\"2\""));
        assert_eq!(put("W/\"1\"").status, 412, "the old version is spent");

        let remove = json!({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "remove", "path": "externalId"}]})
            .to_string();
        let patch = |tag: &str| send_with(&s, "PATCH", url, &[("If-Match", tag)], &remove);
        assert_eq!(patch("W/\"1\"").status, 412);
        // Compared weakly, and `*` matches any version.
        assert_eq!(patch("\"2\"").status, 200);
        assert_eq!(patch("*").status, 200);
        // No If-Match still writes.
        let reply = send(&s, "PATCH", url, &remove);
        assert_eq!(reply.status, 200);
        assert_eq!(parse(&reply)["meta"]["version"], "W/\"5\"");
        assert_eq!(get(&s, url)["meta"]["version"], "W/\"5\"");
    }

    fn filtered(s: &State, filter: &str) -> Value {
        get(s, &format!("{USERS}?filter={filter}"))
    }

    #[test]
    fn filters_find_a_user_by_email_case_insensitively() {
        let s = state(25, 25);
        let ids = |list: &Value| -> Vec<String> {
            let resources = list["Resources"].as_array().unwrap();
            assert_eq!(list["totalResults"], resources.len(), "{list}");
            resources
                .iter()
                .map(|u| u["id"].as_str().unwrap().to_owned())
                .collect()
        };
        for filter in [
            "userName%20eq%20%22USER%2B3%40TalkDesk.com%22",
            "userName+eq+\"user%2B3@talkdesk.com\"",
            "UserName+EQ+%22user%2b3%40talkdesk.com%22",
            "emails.value+eq+%22User%2B3%40talkdesk.com%22",
            "emails+eq+%22user%2B3%40talkdesk.com%22",
        ] {
            assert_eq!(ids(&filtered(&s, filter)), ["agent-3"], "{filter}");
        }
        // `+` in a query is a space: an unencoded plus is not the email's.
        assert!(ids(&filtered(&s, "userName+eq+%22user+3%40talkdesk.com%22")).is_empty());
        let none = filtered(&s, "userName+eq+%22nobody%40x.com%22");
        assert_eq!(none["totalResults"], 0);
        assert_eq!(none["Resources"], json!([]));

        // A rename is seen by the next filter.
        let mut user = get(&s, "/scim/v2/Users/agent-3");
        user["userName"] = json!("Renamed@Example.com");
        assert_eq!(
            send(&s, "PUT", "/scim/v2/Users/agent-3", &user.to_string()).status,
            200
        );
        assert_eq!(
            ids(&filtered(&s, "userName+eq+%22renamed%40example.com%22")),
            ["agent-3"]
        );

        for bad in [
            "name.givenName+eq+%22User%22",
            "userName+sw+%22user%22",
            "userName+eq+user",
            "userName+eq+%22a%22+and+active+eq+true",
            "",
        ] {
            let reply = send(&s, "GET", &format!("{USERS}?filter={bad}"), "");
            assert_eq!(reply.status, 400, "{bad}: {}", reply.body);
            assert_eq!(parse(&reply)["scimType"], "invalidFilter", "{bad}");
        }
    }
}

//! A SCIM 2.0 user directory (RFC 7643/7644), such as Talkdesk's: list the users
//! page by page, then replace (PUT) or patch (PATCH) one user's `externalId`.

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use url::Url;

use super::{Agent, Sink};
use crate::http::{Client, Request, Response, display_url};
use crate::pages::{self, Listing, Next, Seen};
use crate::plan::Change;
use crate::progress::{self, Progress};
use crate::request::join_url;

const SCIM_JSON: &str = "application/scim+json";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// How an external ID is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum UpdateMode {
    /// Send the whole resource back with `externalId` changed (Talkdesk documents PUT).
    Put,
    /// Send an RFC 7644 PatchOp on `externalId` alone.
    Patch,
}

/// Where an agent's email is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(crate) enum EmailAttribute {
    #[serde(rename = "userName")]
    UserName,
    /// The primary entry of `emails`, else the first.
    #[serde(rename = "emails")]
    Emails,
}

pub(crate) struct ScimSink {
    client: Client,
    base_url: Url,
    page_size: usize,
    /// Listing pages fetched at once once the first told the total.
    concurrency: usize,
    update: UpdateMode,
    email_attribute: EmailAttribute,
}

impl ScimSink {
    pub(crate) fn new(
        client: Client,
        base_url: Url,
        page_size: usize,
        concurrency: usize,
        update: UpdateMode,
        email_attribute: EmailAttribute,
    ) -> Self {
        ScimSink {
            client,
            base_url,
            page_size: page_size.max(1),
            concurrency: concurrency.max(1),
            update,
            email_attribute,
        }
    }

    fn users_url(&self) -> Url {
        join_url(&self.base_url, "/Users")
    }

    fn user_url(&self, id: &str) -> Result<Url> {
        let mut url = self.users_url();
        url.path_segments_mut()
            .map_err(|()| anyhow!("{} cannot take a path", display_url(&self.base_url)))?
            .push(id);
        Ok(url)
    }

    /// The request for one page of the listing, `start` being SCIM's 1-based
    /// `startIndex`.
    fn list_request(&self, start: usize) -> Request {
        let mut url = self.users_url();
        url.query_pairs_mut()
            .append_pair("startIndex", &start.to_string())
            .append_pair("count", &self.page_size.to_string());
        Request::get(url).header("Accept", SCIM_JSON)
    }

    /// Read one listing page into agents, on the thread that fetched it.
    fn read_page(&self, req: &Request, sent: Result<Response>) -> Result<ListedPage> {
        let resp = expect_success(sent?, "GET", &req.url)?;
        let not_a_list = || {
            format!(
                "GET {} answered something that is not a SCIM ListResponse ({}): {}",
                display_url(&req.url),
                resp.content_type(),
                resp.body_start()
            )
        };
        crate::mapping::check_depth(&resp.body).with_context(not_a_list)?;
        let list: ListResponse<'_> = serde_json::from_slice(&resp.body).with_context(not_a_list)?;
        Ok(ListedPage {
            total_results: list.total_results,
            got: list.resources.len(),
            agents: list.resources.iter().map(|r| self.agent_of(r)).collect(),
        })
    }

    /// The agent of one listed user, read without building the whole resource:
    /// each string is copied once, from the page into the agent.
    fn agent_of(&self, resource: &RawValue) -> Result<Agent, String> {
        let user: UserView<'_> = serde_json::from_str(resource.get())
            .map_err(|e| format!("a user that is not a SCIM resource ({e})"))?;
        let Some(id) = user.id.and_then(json_string).filter(|s| !s.is_empty()) else {
            return Err("a user without an \"id\"".into());
        };
        let email = match self.email_attribute {
            EmailAttribute::UserName => user.user_name.and_then(json_string),
            EmailAttribute::Emails => user
                .emails
                .and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok())
                .as_ref()
                .and_then(primary_email)
                .map(str::to_owned),
        };
        let Some(email) = email.filter(|e| !e.trim().is_empty()) else {
            return Err(format!(
                "user {id} has no email in {}",
                self.attribute_name()
            ));
        };
        let external_id = match user.external_id.map(RawValue::get) {
            None | Some("null" | "\"\"") => None,
            Some(raw) if raw.starts_with('"') => serde_json::from_str(raw).ok(),
            // Not a string: kept as its compact JSON text.
            Some(raw) => serde_json::from_str::<Value>(raw)
                .ok()
                .map(|v| v.to_string()),
        };
        Ok(Agent {
            id,
            email,
            external_id,
        })
    }

    fn attribute_name(&self) -> &'static str {
        match self.email_attribute {
            EmailAttribute::UserName => "userName",
            EmailAttribute::Emails => "emails",
        }
    }

    /// The agent's resource as it is now, for a PUT. Refused when its external
    /// ID is no longer the one the plan was made from: someone changed it since
    /// the listing, and a write would undo their change.
    fn current(&self, change: &Change) -> Result<Value> {
        let url = self.user_url(&change.agent_id)?;
        let req = Request::get(url).header("Accept", SCIM_JSON);
        let resp = expect_success(self.client.send(&req)?, "GET", &req.url)?;
        let resource: Value = serde_json::from_slice(&resp.body).with_context(|| {
            format!(
                "GET {} answered something that is not a SCIM user",
                display_url(&req.url)
            )
        })?;
        let now = match resource.get("externalId") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        };
        if now != change.old_external_id {
            bail!(
                "agent {} changed since it was listed: its external ID is now {}, not {}; left as it is",
                change.agent_id,
                now.as_deref().unwrap_or("(none)"),
                change.old_external_id.as_deref().unwrap_or("(none)")
            );
        }
        Ok(resource)
    }

    /// The write of `external_id`; `current` is the resource to PUT back.
    fn write_request(&self, change: &Change, current: Option<Value>) -> Result<Request> {
        let url = self.user_url(&change.agent_id)?;
        let external_id = change.new_external_id.as_deref();
        let (method, body) = match self.update {
            UpdateMode::Put => {
                let Some(Value::Object(mut resource)) = current else {
                    bail!("agent {}: no resource to PUT", change.agent_id);
                };
                // Read-only attributes are not sent back.
                resource.remove("meta");
                match external_id {
                    Some(x) => {
                        resource.insert("externalId".into(), Value::String(x.to_owned()));
                    }
                    None => {
                        resource.remove("externalId");
                    }
                }
                ("PUT", Value::Object(resource))
            }
            UpdateMode::Patch => {
                let op = match external_id {
                    Some(x) => json!({"op": "replace", "path": "externalId", "value": x}),
                    None => json!({"op": "remove", "path": "externalId"}),
                };
                ("PATCH", json!({"schemas": [PATCH_OP], "Operations": [op]}))
            }
        };
        Ok(Request {
            method: method.into(),
            url,
            headers: vec![
                ("Content-Type".into(), SCIM_JSON.into()),
                ("Accept".into(), SCIM_JSON.into()),
            ],
            body: Some(serde_json::to_vec(&body)?),
            // Setting one attribute to a value twice leaves the same state.
            idempotent: true,
        })
    }
}

impl Sink for ScimSink {
    fn list_agents(&mut self, progress: &Progress) -> Result<Vec<Agent>> {
        let stage = progress.stage("directory pages", None);
        let mut listing = DirectoryListing {
            sink: self,
            agents: Vec::new(),
            seen: Seen::default(),
            read: 0,
            pages: 0,
        };
        pages::walk(
            &self.client,
            self.concurrency,
            &mut listing,
            |_, req, sent| self.read_page(req, sent),
            &stage,
        )?;
        let DirectoryListing { agents, pages, .. } = listing;
        drop(stage);
        progress.log(&format!(
            "directory: {} agents in {pages} pages",
            agents.len()
        ));
        Ok(agents)
    }

    fn write(&mut self, change: &Change) -> Result<()> {
        let current = match self.update {
            UpdateMode::Put => Some(self.current(change)?),
            UpdateMode::Patch => None,
        };
        let req = self.write_request(change, current)?;
        let resp = self.client.send(&req)?;
        expect_success(resp, &req.method, &req.url)?;
        Ok(())
    }

    fn describe(&self) -> String {
        format!("SCIM {}", display_url(&self.base_url))
    }
}

/// The directory's side of the page walk: the agents read so far.
struct DirectoryListing<'a> {
    sink: &'a ScimSink,
    agents: Vec<Agent>,
    /// Which page each agent id came from.
    seen: Seen,
    /// Users read so far, also those skipped.
    read: usize,
    pages: u64,
}

impl Listing for DirectoryListing<'_> {
    type Page = ListedPage;

    fn next_request(&mut self) -> Result<Request> {
        Ok(self.sink.list_request(self.read + 1))
    }

    fn take(&mut self, number: u64, page: ListedPage) -> Result<Next> {
        self.pages = number;
        let got = page.got;
        if number == 1 {
            // totalResults comes from the server: room for it, within reason.
            let expected = page.total_results.min(MAX_RESERVED_AGENTS);
            self.agents.reserve(expected);
            self.seen.reserve(expected);
        }
        for agent in page.agents {
            match agent {
                Ok(agent) => {
                    let slot = self.agents.len();
                    if let Some((_, at)) = self.seen.insert(&agent.id, number, slot)
                        && self.agents[at].id == agent.id
                    {
                        bail!(
                            "SCIM listing returned user {} twice (the directory changed while it was read?)",
                            agent.id
                        );
                    }
                    self.agents.push(agent);
                }
                Err(why) => progress::warn(&format!("directory: skipping {why}")),
            }
        }
        self.read += got;
        if self.read >= page.total_results {
            return Ok(Next::Done);
        }
        if got == 0 {
            bail!(
                "SCIM listing stopped at {} of {} agents (an empty page before the end)",
                self.read,
                page.total_results
            );
        }
        if number > 1 {
            return Ok(Next::More);
        }
        // Pages the size of the first until the total: fetch them ahead.
        let count = page.total_results.div_ceil(got);
        let ahead = (1..count)
            .map(|i| self.sink.list_request(i * got + 1))
            .collect();
        Ok(Next::Ahead(ahead))
    }
}

/// The most agents room is made for ahead of time.
const MAX_RESERVED_AGENTS: usize = 1 << 20;

/// A listing page (RFC 7644 §3.4.2). `Resources` may be absent when empty.
#[derive(Debug, Deserialize)]
struct ListResponse<'a> {
    #[serde(rename = "totalResults")]
    total_results: usize,
    #[serde(rename = "Resources", default, borrow)]
    resources: Vec<&'a RawValue>,
}

/// A listing page read: what the walk needs of it.
struct ListedPage {
    total_results: usize,
    /// Users on the page, also those skipped.
    got: usize,
    agents: Vec<Result<Agent, String>>,
}

/// What a listed user holds that matters here, as raw JSON; every other
/// attribute is skipped without being parsed into values.
#[derive(Debug, Deserialize)]
struct UserView<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(rename = "userName", borrow)]
    user_name: Option<&'a RawValue>,
    #[serde(borrow)]
    emails: Option<&'a RawValue>,
    #[serde(rename = "externalId", borrow)]
    external_id: Option<&'a RawValue>,
}

/// A raw JSON value as a string, if it is one.
fn json_string(raw: &RawValue) -> Option<String> {
    let raw = raw.get();
    if raw.starts_with('"') {
        serde_json::from_str(raw).ok()
    } else {
        None
    }
}

fn primary_email(emails: &Value) -> Option<&str> {
    let emails = emails.as_array()?;
    let primary = emails
        .iter()
        .find(|e| e.get("primary").and_then(Value::as_bool) == Some(true));
    primary.or_else(|| emails.first())?.get("value")?.as_str()
}

/// A non-2xx answer as an error naming the SCIM `scimType` and `detail` when the
/// body is a SCIM error (RFC 7644 §3.12).
fn expect_success(resp: Response, method: &str, url: &Url) -> Result<Response> {
    if resp.is_success() {
        return Ok(resp);
    }
    let error: Option<Value> = serde_json::from_slice(&resp.body).ok();
    let field = |name: &str| {
        error
            .as_ref()
            .and_then(|e| e.get(name))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let kind = field("scimType")
        .map(|t| format!(" ({t})"))
        .unwrap_or_default();
    let detail = field("detail").unwrap_or_else(|| resp.body_start());
    bail!(
        "SCIM {method} {} answered HTTP {}{kind}: {detail}",
        display_url(url),
        resp.status
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Settings;

    fn sink(update: UpdateMode, email: EmailAttribute) -> ScimSink {
        let base = Url::parse("http://127.0.0.1:9/scim/v2").unwrap();
        ScimSink::new(
            Client::new(Settings::default(), None),
            base,
            10,
            1,
            update,
            email,
        )
    }

    fn raw(v: Value) -> Box<RawValue> {
        serde_json::value::to_raw_value(&v).unwrap()
    }

    fn agent(resource: Value) -> Agent {
        sink(UpdateMode::Put, EmailAttribute::UserName)
            .agent_of(&raw(resource))
            .unwrap()
    }

    #[test]
    fn reads_email_from_user_name_or_the_primary_email() {
        let user = json!({"id": "a1", "userName": "A@x.com", "externalId": "",
            "emails": [{"value": "first@x.com"}, {"value": "main@x.com", "primary": true}]});
        let a = agent(user.clone());
        assert_eq!(
            (a.id.as_str(), a.email.as_str(), a.external_id),
            ("a1", "A@x.com", None)
        );
        let by_emails = sink(UpdateMode::Put, EmailAttribute::Emails);
        assert_eq!(by_emails.agent_of(&raw(user)).unwrap().email, "main@x.com");
        let no_primary = json!({"id": "a2", "emails": [{"value": "first@x.com"}]});
        assert_eq!(
            by_emails.agent_of(&raw(no_primary)).unwrap().email,
            "first@x.com"
        );
        assert!(
            by_emails
                .agent_of(&raw(json!({"id": "a3"})))
                .unwrap_err()
                .contains("a3")
        );
        assert!(by_emails.agent_of(&raw(json!({"emails": []}))).is_err());
    }

    #[test]
    fn put_sends_the_resource_without_meta() {
        let s = sink(UpdateMode::Put, EmailAttribute::UserName);
        let resource = json!({"id": "a/1", "userName": "a@x.com", "meta": {"version": "1"}, "externalId": "old"});
        let a = agent(resource.clone());
        let req = s
            .write_request(
                &Change::setting(&a, Some("7".into())),
                Some(resource.clone()),
            )
            .unwrap();
        assert_eq!(req.method, "PUT");
        assert_eq!(req.url.as_str(), "http://127.0.0.1:9/scim/v2/Users/a%2F1");
        let body: Value = serde_json::from_slice(req.body.as_ref().unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"id": "a/1", "userName": "a@x.com", "externalId": "7"})
        );
        let req = s
            .write_request(&Change::setting(&a, None), Some(resource))
            .unwrap();
        let body: Value = serde_json::from_slice(req.body.as_ref().unwrap()).unwrap();
        assert_eq!(body, json!({"id": "a/1", "userName": "a@x.com"}));
    }

    #[test]
    fn patch_sends_one_operation() {
        let s = sink(UpdateMode::Patch, EmailAttribute::UserName);
        let a = agent(json!({"id": "a1", "userName": "a@x.com"}));
        let body = |x: Option<&str>| -> Value {
            let change = Change::setting(&a, x.map(str::to_owned));
            let req = s.write_request(&change, None).unwrap();
            serde_json::from_slice(req.body.as_ref().unwrap()).unwrap()
        };
        assert_eq!(
            body(Some("7"))["Operations"],
            json!([{"op": "replace", "path": "externalId", "value": "7"}])
        );
        assert_eq!(
            body(None)["Operations"],
            json!([{"op": "remove", "path": "externalId"}])
        );
        assert_eq!(body(None)["schemas"], json!([PATCH_OP]));
    }

    #[test]
    fn put_refuses_an_agent_changed_since_the_listing() {
        let mock = crate::mock::start(crate::mock::MockOptions {
            addr: "127.0.0.1:0".into(),
            users: 5,
            agents: 5,
            log: false,
            ..Default::default()
        })
        .unwrap();
        let base = Url::parse(&format!("{}/scim/v2", mock.base_url())).unwrap();
        let client = Client::new(Settings::default(), None);
        let mut sink = ScimSink::new(
            client,
            base,
            2,
            2,
            UpdateMode::Put,
            EmailAttribute::UserName,
        );
        let agents = sink.list_agents(&Progress::hidden()).unwrap();
        assert_eq!(agents.len(), 5 + 3);
        let one = agents.iter().find(|a| a.id == "agent-1").unwrap();
        let two = agents.iter().find(|a| a.id == "agent-2").unwrap();
        // Someone links agent-2 by hand after the listing.
        let patch = json!({"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "externalId", "value": "manual"}]});
        ureq::patch(format!("{}/scim/v2/Users/agent-2", mock.base_url()))
            .send(patch.to_string())
            .unwrap();

        sink.write(&Change::setting(one, Some("1".into()))).unwrap();
        let err = sink
            .write(&Change::setting(two, Some("2".into())))
            .unwrap_err()
            .to_string();
        assert!(err.contains("changed since it was listed"), "{err}");
        assert!(err.contains("manual"), "{err}");
        let now = sink.list_agents(&Progress::hidden()).unwrap();
        let ext = |id: &str| now.iter().find(|a| a.id == id).unwrap().external_id.clone();
        assert_eq!(ext("agent-1").as_deref(), Some("1"));
        assert_eq!(ext("agent-2").as_deref(), Some("manual"));
    }

    #[test]
    fn scim_errors_name_type_and_detail() {
        let url = Url::parse("http://h/scim/v2/Users/a").unwrap();
        let resp = Response {
            status: 400,
            headers: vec![],
            body: br#"{"status": "400", "scimType": "invalidValue", "detail": "bad id"}"#.to_vec(),
        };
        let err = expect_success(resp, "PUT", &url).unwrap_err().to_string();
        assert_eq!(
            err,
            "SCIM PUT http://h/scim/v2/Users/a answered HTTP 400 (invalidValue): bad id"
        );
        let resp = Response {
            status: 503,
            headers: vec![],
            body: b"down for maintenance".to_vec(),
        };
        let err = expect_success(resp, "GET", &url).unwrap_err().to_string();
        assert!(
            err.ends_with("answered HTTP 503: down for maintenance"),
            "{err}"
        );
    }
}

//! A SCIM 2.0 user directory (RFC 7643/7644), such as Talkdesk's: read what
//! it supports (`/ServiceProviderConfig`), list the users page by page, find
//! one by email with a filter, and replace (PUT) or patch (PATCH) one user's
//! `externalId` in one request, guarded by `If-Match` when users carry versions.

use std::collections::HashMap;
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use url::Url;

use super::{Agent, Refusal, Sink};
use crate::config::{EmailAttribute, UpdateMode};
use crate::exit;
use crate::http::{Client, Request, Response, display_url};
use crate::pages::{self, Listing, Next, Planned, Seen};
use crate::plan::Change;
use crate::progress::{self, Progress};
use crate::request::join_url;

const SCIM_JSON: &str = "application/scim+json";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// What a query value escapes: all but RFC 3986's unreserved characters.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// How the sink reads and writes, from `[sink]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScimOptions {
    pub page_size: usize,
    /// Listing pages read at most; a listing with more is an error.
    pub max_pages: u64,
    /// Listing pages fetched at once once the first told the total, and
    /// writes in flight.
    pub concurrency: usize,
    pub update: UpdateMode,
    pub email_attribute: EmailAttribute,
}

pub(crate) struct ScimSink {
    client: Client,
    base_url: Url,
    options: ScimOptions,
    /// What the directory said of itself, read once per run.
    found: OnceLock<Found>,
    /// What a write needs of each listed user that the agent does not hold:
    /// its version, and for a PUT the resource itself.
    listed: HashMap<Box<str>, Listed>,
}

/// The directory's abilities, from `/ServiceProviderConfig` (RFC 7643 §5).
#[derive(Debug, Clone, Copy)]
struct Found {
    /// How writes are sent, `update = "auto"` resolved.
    put: bool,
    /// `filter.supported`: a user can be looked up by email.
    filter: bool,
    /// `etag.supported`; `None` when the directory did not say. When false,
    /// versions are neither trusted nor sent.
    etag: Option<bool>,
    /// `page_size` within `filter.maxResults`.
    page_size: usize,
}

/// What the listing kept of one user for its write.
#[derive(Debug, Default)]
struct Listed {
    version: Option<Box<str>>,
    /// The resource as listed, kept only when writes are PUTs.
    resource: Option<Box<RawValue>>,
}

impl ScimSink {
    pub(crate) fn new(client: Client, base_url: Url, options: ScimOptions) -> Self {
        ScimSink {
            client,
            base_url,
            options: ScimOptions {
                page_size: options.page_size.max(1),
                max_pages: options.max_pages.max(1),
                concurrency: options.concurrency.max(1),
                ..options
            },
            found: OnceLock::new(),
            listed: HashMap::new(),
        }
    }

    fn users_url(&self) -> Url {
        join_url(&self.base_url, "/Users")
    }

    fn user_url(&self, id: &str) -> Result<Url> {
        crate::request::check_path_segment("agent id", id)?;
        let mut url = self.users_url();
        url.path_segments_mut()
            .map_err(|()| anyhow!("{} cannot take a path", display_url(&self.base_url)))?
            .push(id);
        Ok(url)
    }

    /// What the directory supports, read on first use. A directory without a
    /// readable `/ServiceProviderConfig` (404, 501, not JSON) is taken to have
    /// PUT, no filter, and versions only where its users carry them.
    fn found(&self) -> Result<Found> {
        if let Some(found) = self.found.get() {
            return Ok(*found);
        }
        let found = self.discover()?;
        Ok(*self.found.get_or_init(|| found))
    }

    fn discover(&self) -> Result<Found> {
        let url = join_url(&self.base_url, "/ServiceProviderConfig");
        let req = Request::get(url).header("Accept", SCIM_JSON);
        let resp = self
            .client
            .send(&req)
            .context("reading the directory's /ServiceProviderConfig")?;
        if matches!(resp.status, 401 | 403) {
            return Err(expect_success(resp, "GET", &req.url).expect_err("401 is not a success"));
        }
        let config = resp
            .is_success()
            .then(|| serde_json::from_slice::<Value>(&resp.body).ok())
            .flatten()
            .filter(Value::is_object);
        if config.is_none() {
            progress::debug(&format!(
                "{} answered HTTP {} without a ServiceProviderConfig: assuming PUT, no filter",
                display_url(&req.url),
                resp.status
            ));
        }
        let config = config.unwrap_or_default();
        let supported = |name: &str| lenient_bool(&config[name]["supported"]);
        let patch = supported("patch");
        let put = match self.options.update {
            UpdateMode::Put => true,
            UpdateMode::Patch if patch == Some(false) => {
                return Err(exit::usage(format!(
                    "[sink] update = \"patch\", but {} says the directory does not support PATCH; \
                     use update = \"auto\" or \"put\"",
                    display_url(&req.url)
                )));
            }
            UpdateMode::Patch => false,
            UpdateMode::Auto => patch != Some(true),
        };
        let max_results = lenient_u64(&config["filter"]["maxResults"])
            .filter(|&n| n > 0)
            .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
        let found = Found {
            put,
            filter: supported("filter") == Some(true),
            etag: supported("etag"),
            page_size: self.options.page_size.min(max_results),
        };
        progress::debug(&format!(
            "directory: writes by {}, filter {}, versions {}, {} users per page",
            if found.put { "PUT" } else { "PATCH" },
            if found.filter { "yes" } else { "no" },
            match found.etag {
                Some(true) => "yes",
                Some(false) => "no",
                None => "as the users carry them",
            },
            found.page_size
        ));
        Ok(found)
    }

    /// The request for one page of the listing, `start` being SCIM's 1-based
    /// `startIndex`.
    fn list_request(users: &Url, start: usize, page_size: usize) -> Request {
        let mut url = users.clone();
        url.query_pairs_mut()
            .append_pair("startIndex", &start.to_string())
            .append_pair("count", &page_size.to_string());
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
        let keep_resources = self.found()?.put;
        Ok(ListedPage {
            total_results: list.total_results,
            got: list.resources.len(),
            users: list
                .resources
                .iter()
                .map(|r| {
                    let (agent, version) = self.read_user(r)?;
                    Ok(ListedUser {
                        agent,
                        version,
                        resource: keep_resources.then(|| (*r).to_owned()),
                    })
                })
                .collect(),
        })
    }

    /// The agent of one listed user, read without building the whole resource:
    /// each string is copied once, from the page into the agent.
    #[cfg(test)]
    fn agent_of(&self, resource: &RawValue) -> Result<Agent, String> {
        self.read_user(resource).map(|(agent, _)| agent)
    }

    /// The agent of one listed user and its `meta.version`.
    fn read_user(&self, resource: &RawValue) -> Result<(Agent, Option<String>), String> {
        let user: UserView<'_> = serde_json::from_str(resource.get())
            .map_err(|e| format!("a user that is not a SCIM resource ({e})"))?;
        let Some(id) = user.id.and_then(json_string).filter(|s| !s.is_empty()) else {
            return Err("a user without an \"id\"".into());
        };
        let email = match self.options.email_attribute {
            EmailAttribute::UserName => user.user_name.and_then(json_string),
            EmailAttribute::Emails => user
                .emails
                .and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok())
                .as_ref()
                .and_then(chosen_email)
                .map(str::to_owned),
        };
        let Some(email) = email.filter(|e| !e.trim().is_empty()) else {
            return Err(format!(
                "user {id} has no email in {}",
                self.attribute_name()
            ));
        };
        let version = user
            .meta
            .and_then(|m| m.version)
            .and_then(|v| v.as_str().map(str::to_owned))
            .filter(|v| !v.is_empty());
        let external_id = match user.external_id.map(RawValue::get) {
            None | Some("null" | "\"\"") => None,
            Some(raw) if raw.starts_with('"') => serde_json::from_str(raw).ok(),
            // Not a string: kept as its compact JSON text.
            Some(raw) => serde_json::from_str::<Value>(raw)
                .ok()
                .map(|v| v.to_string()),
        };
        Ok((
            Agent {
                id,
                email,
                external_id,
            },
            version,
        ))
    }

    fn attribute_name(&self) -> &'static str {
        match self.options.email_attribute {
            EmailAttribute::UserName => "userName",
            EmailAttribute::Emails => "emails",
        }
    }

    /// The user as it is now, and its version (`meta.version`, else the
    /// `ETag` header). An error unless it is still the agent the plan was made
    /// from — same id, same email, the external ID the plan saw: a write would
    /// otherwise undo someone's change, or link another person.
    fn reread(&self, change: &Change) -> Result<(Map<String, Value>, Option<String>)> {
        let url = self.user_url(&change.agent_id)?;
        let req = Request::get(url).header("Accept", SCIM_JSON);
        let resp = refusing(expect_success(self.client.send(&req)?, "GET", &req.url))?;
        let Ok(Value::Object(resource)) = serde_json::from_slice::<Value>(&resp.body) else {
            bail!(
                "GET {} answered something that is not a SCIM user: {}",
                display_url(&req.url),
                resp.body_start()
            );
        };
        let id = resource.get("id").and_then(Value::as_str);
        if id != Some(change.agent_id.as_str()) {
            bail!(
                "GET {} answered user {} instead of the one asked for; left as it is",
                display_url(&req.url),
                id.unwrap_or("(without an id)")
            );
        }
        let raw = serde_json::value::to_raw_value(&resource)?;
        let (agent, version) = self.read_user(&raw).map_err(|why| anyhow!("{why}"))?;
        let changed = |what: String| {
            anyhow!(
                "agent {} changed since it was listed: {what}; left as it is",
                change.agent_id
            )
        };
        if !agent.email.trim().eq_ignore_ascii_case(change.email.trim()) {
            return Err(changed(format!(
                "its {} is now {}, not {}",
                self.attribute_name(),
                agent.email,
                change.email
            )));
        }
        if agent.external_id != change.old_external_id {
            return Err(changed(format!(
                "its external ID is now {}, not {}",
                agent.external_id.as_deref().unwrap_or("(none)"),
                change.old_external_id.as_deref().unwrap_or("(none)")
            )));
        }
        let version = version.or_else(|| resp.header("etag").map(str::to_owned));
        Ok((resource, version))
    }

    /// The write of `external_id`: a PUT of `resource` (the user as listed or
    /// read again) or a PATCH, with `If-Match` when a version is known.
    fn write_request(
        &self,
        change: &Change,
        put: bool,
        resource: Option<Map<String, Value>>,
        version: Option<&str>,
    ) -> Result<Request> {
        let url = self.user_url(&change.agent_id)?;
        let external_id = change.new_external_id.as_deref();
        let (method, body) = if put {
            let Some(mut resource) = resource else {
                bail!("agent {}: no resource to PUT", change.agent_id);
            };
            // What the server keeps itself is not sent back.
            resource.remove("meta");
            resource.remove("groups");
            match external_id {
                Some(x) => {
                    resource.insert("externalId".into(), Value::String(x.to_owned()));
                }
                None => {
                    resource.remove("externalId");
                }
            }
            ("PUT", Value::Object(resource))
        } else {
            let op = match external_id {
                Some(x) => json!({"op": "replace", "path": "externalId", "value": x}),
                None => json!({"op": "remove", "path": "externalId"}),
            };
            ("PATCH", json!({"schemas": [PATCH_OP], "Operations": [op]}))
        };
        let mut headers = vec![
            ("Content-Type".into(), SCIM_JSON.into()),
            ("Accept".into(), SCIM_JSON.into()),
        ];
        if let Some(v) = version {
            headers.push(("If-Match".into(), v.to_owned()));
        }
        Ok(Request {
            method: method.into(),
            url,
            headers,
            body: Some(serde_json::to_vec(&body)?),
            // Setting one attribute to a value twice leaves the same state.
            idempotent: true,
            secret_headers: Vec::new(),
        })
    }

    /// Send a write; a 412 comes back as `Ok(false)`.
    fn send_write(&self, req: &Request) -> Result<bool> {
        let resp = self.client.send(req)?;
        if resp.status == 412 {
            return Ok(false);
        }
        refusing(expect_success(resp, &req.method, &req.url))?;
        Ok(true)
    }
}

impl Sink for ScimSink {
    /// Only `update = "patch"` can be refused by what the directory says
    /// (exit 2), so only then is it asked before the source; otherwise a
    /// source that fails leaves the directory untouched.
    fn prepare(&mut self) -> Result<()> {
        match self.options.update {
            UpdateMode::Patch => self.found().map(|_| ()),
            UpdateMode::Put | UpdateMode::Auto => Ok(()),
        }
    }

    fn list_agents(&mut self, progress: &Progress) -> Result<Vec<Agent>> {
        let found = self.found()?;
        let stage = progress.stage("directory pages", None);
        let mut listing = DirectoryListing {
            sink: self,
            page_size: found.page_size,
            keep_versions: found.etag != Some(false),
            agents: Vec::new(),
            listed: HashMap::new(),
            seen: Seen::default(),
            read: 0,
            total: None,
            pages: 0,
        };
        pages::walk(
            &self.client,
            self.options.concurrency,
            &mut listing,
            |_, req, sent| self.read_page(req, sent),
            &stage,
        )?;
        let DirectoryListing {
            agents,
            pages,
            listed,
            ..
        } = listing;
        drop(stage);
        self.listed = listed;
        progress.log(&format!(
            "directory: {} in {}",
            crate::output::count(agents.len() as u64, "agent"),
            crate::output::count(pages, "page")
        ));
        Ok(agents)
    }

    fn write(&self, change: &Change) -> Result<()> {
        let found = self.found()?;
        let listed = self.listed.get(change.agent_id.as_str());
        let version = listed
            .and_then(|l| l.version.as_deref())
            .filter(|_| found.etag != Some(false));
        let resource = match listed.and_then(|l| l.resource.as_ref()) {
            Some(raw) if found.put => Some(serde_json::from_str(raw.get())?),
            _ => None,
        };
        // One request when the listing told the version (and, for a PUT, the
        // resource): the directory itself refuses it if the user moved since.
        if let Some(version) = version
            && (resource.is_some() || !found.put)
        {
            let req = self.write_request(change, found.put, resource, Some(version))?;
            if self.send_write(&req)? {
                return Ok(());
            }
        }
        // No version, or a 412: read the user again; still the agent the plan
        // saw? Then write once more, against its version now.
        let (resource, version) = self.reread(change)?;
        let version = version.filter(|_| found.etag != Some(false));
        let req = self.write_request(change, found.put, Some(resource), version.as_deref())?;
        if self.send_write(&req)? {
            return Ok(());
        }
        bail!(
            "agent {} changed since it was listed: the directory refused the write twice \
             (HTTP 412, its version moved); left as it is",
            change.agent_id
        )
    }

    fn agents_with_email(&mut self, email: &str) -> Result<Option<Vec<Agent>>> {
        let found = self.found()?;
        if !found.filter {
            return Ok(None);
        }
        let attribute = match self.options.email_attribute {
            EmailAttribute::UserName => "userName",
            EmailAttribute::Emails => "emails.value",
        };
        let wanted = email.trim();
        let filter = format!("{attribute} eq {}", filter_string(wanted));
        let mut url = self.users_url();
        // Spaces as %20 and `+` as %2B: a `+` left bare is read as a space.
        let encoded = percent_encoding::utf8_percent_encode(&filter, QUERY_VALUE);
        url.set_query(Some(&format!("filter={encoded}&startIndex=1&count=2")));
        let req = Request::get(url).header("Accept", SCIM_JSON);
        let resp = self.client.send(&req)?;
        if matches!(resp.status, 401 | 403) {
            return Err(expect_success(resp, "GET", &req.url).expect_err("401 is not a success"));
        }
        let page = match self.read_page(&req, Ok(resp)) {
            Ok(page) => page,
            Err(e) => {
                progress::debug(&format!("the filter was refused ({e:#}); listing instead"));
                return Ok(None);
            }
        };
        let returned = page.got;
        let agents: Vec<Agent> = page
            .users
            .into_iter()
            .filter_map(|u| u.ok().map(|u| u.agent))
            .filter(|a| a.email.trim().eq_ignore_ascii_case(wanted))
            .collect();
        // Only an answer that holds what was asked for, and all of it, is
        // trusted; a directory that ignored the filter is listed instead.
        if agents.len() != returned || page.total_results < returned {
            progress::debug(
                "the filter's answer does not hold only the email asked for; listing instead",
            );
            return Ok(None);
        }
        if page.total_results > returned && returned < 2 {
            return Ok(None);
        }
        Ok(Some(agents))
    }

    fn concurrency(&self) -> usize {
        self.options.concurrency
    }

    fn describe(&self) -> String {
        format!("SCIM {}", display_url(&self.base_url))
    }
}

/// A string as a SCIM filter literal (RFC 7644 §3.4.2.2, JSON string rules).
fn filter_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A write error whose status no retry can fix, as a [`Refusal`].
fn refusing(result: Result<Response>) -> Result<Response> {
    result.map_err(|e| match e.downcast::<ScimError>() {
        // Told without the user's URL: the same refusal for every user is
        // what stops the writes.
        Ok(ScimError {
            status, refusal, ..
        }) if matches!(status, 401 | 403 | 405 | 501) => Refusal {
            status,
            message: refusal,
        }
        .into(),
        Ok(other) => other.into(),
        Err(e) => e,
    })
}

/// The directory's side of the page walk: the agents read so far.
struct DirectoryListing<'a> {
    sink: &'a ScimSink,
    page_size: usize,
    keep_versions: bool,
    agents: Vec<Agent>,
    listed: HashMap<Box<str>, Listed>,
    /// Which page each agent id came from.
    seen: Seen,
    /// Users read so far, also those skipped.
    read: usize,
    /// `totalResults` of the first page.
    total: Option<usize>,
    pages: u64,
}

impl Listing for DirectoryListing<'_> {
    type Page = ListedPage;

    fn next_request(&mut self) -> Result<Request> {
        Ok(ScimSink::list_request(
            &self.sink.users_url(),
            self.read + 1,
            self.page_size,
        ))
    }

    fn take(&mut self, number: u64, page: ListedPage) -> Result<Next> {
        self.pages = number;
        let total = page.total_results;
        match self.total {
            None => {
                self.total = Some(total);
                // totalResults comes from the server: room for it, within reason.
                let expected = total.min(MAX_RESERVED_AGENTS);
                self.agents.reserve(expected);
                self.seen.reserve(expected);
            }
            Some(first) if first != total => bail!(
                "SCIM listing: totalResults was {first} on the first page and {total} on page {number} \
                 (the directory changed while it was read?)"
            ),
            Some(_) => {}
        }
        let got = page.got;
        for user in page.users {
            match user {
                Ok(ListedUser {
                    agent,
                    version,
                    resource,
                }) => {
                    let slot = self.agents.len();
                    if let Some((_, at)) = self.seen.insert(&agent.id, number, slot)
                        && self.agents[at].id == agent.id
                    {
                        bail!(
                            "SCIM listing returned user {} twice (the directory changed while it was read?)",
                            agent.id
                        );
                    }
                    let listed = Listed {
                        version: version
                            .filter(|_| self.keep_versions)
                            .map(String::into_boxed_str),
                        resource,
                    };
                    if listed.version.is_some() || listed.resource.is_some() {
                        self.listed.insert(agent.id.as_str().into(), listed);
                    }
                    self.agents.push(agent);
                }
                Err(why) => progress::warn(&format!("directory: skipping {why}")),
            }
        }
        self.read += got;
        if self.read > total {
            bail!(
                "SCIM listing holds more users than its totalResults ({} read by page {number}, {total} announced)",
                self.read
            );
        }
        if self.read == total {
            return Ok(Next::Done);
        }
        if got == 0 {
            bail!(
                "SCIM listing stopped at {} of {total} agents (an empty page before the end)",
                self.read
            );
        }
        let max = self.sink.options.max_pages;
        let left = (total - self.read).div_ceil(got) as u64;
        if number.saturating_add(left) > max {
            bail!(
                "SCIM listing: {total} users at {got} per page is more than [sink] max_pages = {max} pages"
            );
        }
        if number > 1 {
            return Ok(Next::More);
        }
        // Pages the size of the first until the total: fetch them ahead, each
        // request made when it is sent.
        let (users, page_size) = (self.sink.users_url(), self.page_size);
        let left = usize::try_from(left).unwrap_or(usize::MAX);
        Ok(Next::Lazy(Planned::new(left, move |i| {
            ScimSink::list_request(&users, (i + 1) * got + 1, page_size)
        })))
    }
}

/// A listing page (RFC 7644 §3.4.2). `Resources` may be absent or null when
/// empty; `totalResults` is taken as a number or a numeric string.
#[derive(Debug, Deserialize)]
struct ListResponse<'a> {
    #[serde(rename = "totalResults", deserialize_with = "count")]
    total_results: usize,
    #[serde(rename = "Resources", default, borrow, deserialize_with = "resources")]
    resources: Vec<&'a RawValue>,
}

/// The most agents room is made for ahead of time.
const MAX_RESERVED_AGENTS: usize = 1 << 20;

/// A listing page read on the thread that fetched it: what the walk needs.
struct ListedPage {
    total_results: usize,
    /// Users on the page, also those skipped.
    got: usize,
    users: Vec<Result<ListedUser, String>>,
}

/// One listed user: its agent, its version, and its resource when writes are
/// PUTs (sent back as listed).
struct ListedUser {
    agent: Agent,
    version: Option<String>,
    resource: Option<Box<RawValue>>,
}

fn count<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let value = Value::deserialize(d)?;
    lenient_u64(&value)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| serde::de::Error::custom(format!("totalResults {value} is not a count")))
}

fn resources<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Vec<&'a RawValue>, D::Error> {
    Ok(Option::<Vec<&'a RawValue>>::deserialize(d)?.unwrap_or_default())
}

/// A number, or a string holding one (some directories quote them).
fn lenient_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A boolean, or the string `"true"`/`"false"`; `None` when absent.
fn lenient_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// What a listed user holds that matters here; every other attribute is
/// skipped without being parsed into values.
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
    meta: Option<MetaView>,
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

#[derive(Debug, Deserialize)]
struct MetaView {
    version: Option<Value>,
}

/// The email of `emails`: the primary one, else the one of type `work`, else
/// the first.
fn chosen_email(emails: &Value) -> Option<&str> {
    let emails = emails.as_array()?;
    let primary = emails
        .iter()
        .find(|e| e.get("primary").and_then(Value::as_bool) == Some(true));
    let work = || {
        emails.iter().find(|e| {
            e.get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.eq_ignore_ascii_case("work"))
        })
    };
    primary
        .or_else(work)
        .or_else(|| emails.first())?
        .get("value")?
        .as_str()
}

/// A non-2xx answer; its status tells a write whether it was refused.
#[derive(Debug)]
struct ScimError {
    status: u16,
    message: String,
    /// The message without the URL.
    refusal: String,
}

impl std::fmt::Display for ScimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ScimError {}

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
    Err(ScimError {
        status: resp.status,
        message: format!(
            "SCIM {method} {} answered HTTP {}{kind}: {detail}",
            display_url(url),
            resp.status
        ),
        refusal: format!(
            "the directory refused a SCIM {method} with HTTP {}{kind}: {detail}",
            resp.status
        ),
    }
    .into())
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
            options(update, email),
        )
    }

    fn options(update: UpdateMode, email_attribute: EmailAttribute) -> ScimOptions {
        ScimOptions {
            page_size: 10,
            max_pages: 10_000,
            concurrency: 1,
            update,
            email_attribute,
        }
    }

    fn object(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(o) => o,
            _ => panic!("not an object"),
        }
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
        let work = json!({"id": "a4", "emails": [{"value": "home@x.com", "type": "home"},
            {"value": "work@x.com", "type": "work"}]});
        assert_eq!(by_emails.agent_of(&raw(work)).unwrap().email, "work@x.com");
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
        let resource = json!({"id": "a/1", "userName": "a@x.com", "meta": {"version": "1"},
            "groups": [{"value": "g1"}], "externalId": "old"});
        let a = agent(resource.clone());
        let req = s
            .write_request(
                &Change::setting(&a, Some("7".into())),
                true,
                Some(object(resource.clone())),
                Some("W/\"3\""),
            )
            .unwrap();
        assert_eq!(req.method, "PUT");
        assert!(req.headers.contains(&("If-Match".into(), "W/\"3\"".into())));
        assert_eq!(req.url.as_str(), "http://127.0.0.1:9/scim/v2/Users/a%2F1");
        let body: Value = serde_json::from_slice(req.body.as_ref().unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"id": "a/1", "userName": "a@x.com", "externalId": "7"})
        );
        let req = s
            .write_request(
                &Change::setting(&a, None),
                true,
                Some(object(resource)),
                None,
            )
            .unwrap();
        assert!(!req.headers.iter().any(|(n, _)| n == "If-Match"));
        let body: Value = serde_json::from_slice(req.body.as_ref().unwrap()).unwrap();
        assert_eq!(body, json!({"id": "a/1", "userName": "a@x.com"}));
    }

    #[test]
    fn patch_sends_one_operation() {
        let s = sink(UpdateMode::Patch, EmailAttribute::UserName);
        let a = agent(json!({"id": "a1", "userName": "a@x.com"}));
        let body = |x: Option<&str>| -> Value {
            let change = Change::setting(&a, x.map(str::to_owned));
            let req = s.write_request(&change, false, None, None).unwrap();
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
    #[cfg(feature = "mock")]
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
            ScimOptions {
                page_size: 2,
                concurrency: 2,
                ..options(UpdateMode::Put, EmailAttribute::UserName)
            },
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
    fn filter_values_are_escaped() {
        assert_eq!(filter_string("a+b@x.com"), r#""a+b@x.com""#);
        assert_eq!(filter_string(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn totals_may_be_strings_and_resources_absent() {
        let page: ListResponse = serde_json::from_str(r#"{"totalResults": "3"}"#).unwrap();
        assert_eq!((page.total_results, page.resources.len()), (3, 0));
        let page: ListResponse =
            serde_json::from_str(r#"{"totalResults": 0, "Resources": null}"#).unwrap();
        assert_eq!(page.total_results, 0);
        assert!(serde_json::from_str::<ListResponse>(r#"{"totalResults": "many"}"#).is_err());
        assert!(serde_json::from_str::<ListResponse>(r#"{"totalResults": -1}"#).is_err());
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

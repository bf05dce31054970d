//! Reading the directory's users: the listing page by page (RFC 7644 §3.4.2),
//! each user read into an agent without building the whole resource, and what
//! each later write needs of it kept aside.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use serde_json::value::RawValue;
use url::Url;

use super::discovery::lenient_u64;
use super::{SCIM_JSON, ScimSink, expect_success};
use crate::config::EmailAttribute;
use crate::http::{Request, Response, display_url};
use crate::pages::{self, Listing, Next, Planned, Seen};
use crate::progress::{self, Progress};
use crate::sink::Agent;

/// What the listing kept of one user for its write.
#[derive(Debug, Default)]
pub(super) struct Listed {
    pub(super) version: Option<Box<str>>,
    /// The resource as listed, kept only when writes are PUTs, without what
    /// a PUT does not send back (`meta`, `groups`).
    pub(super) resource: Option<Box<RawValue>>,
}

/// What writes need of the listed users, by id: kept in a vector sorted by
/// id once the listing is complete, and found by binary search. A hash map
/// of a million ids takes about twice the memory.
#[derive(Debug, Default)]
pub(super) struct ListedUsers(Vec<(Box<str>, Listed)>);

impl ListedUsers {
    fn push(&mut self, id: &str, listed: Listed) {
        self.0.push((id.into(), listed));
    }

    /// The listing is complete: sort for [`ListedUsers::get`] (ids are
    /// distinct: the listing refuses one listed twice).
    fn seal(&mut self) {
        self.0.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        // Room was made for the announced total: give back what is left of
        // it only when it is much (shrinking copies them all).
        if self.0.capacity() > self.0.len() + self.0.len() / 4 {
            self.0.shrink_to_fit();
        }
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn reserve(&mut self, n: usize) {
        self.0.reserve(n);
    }

    /// Keep only the users `changes` write.
    pub(super) fn retain_for(&mut self, changes: &[crate::plan::Change]) {
        let mut written: Vec<&str> = changes.iter().map(|c| c.agent_id.as_str()).collect();
        written.sort_unstable();
        self.0
            .retain(|(id, _)| written.binary_search(&id.as_ref()).is_ok());
        self.0.shrink_to_fit();
    }

    pub(super) fn get(&self, id: &str) -> Option<&Listed> {
        let at = self.0.binary_search_by(|e| e.0.as_ref().cmp(id)).ok()?;
        Some(&self.0[at].1)
    }
}

impl ScimSink {
    /// The directory's agents, listed page by page; keeps what each write needs.
    pub(super) fn list(&mut self, progress: &Progress) -> Result<Vec<Agent>> {
        let found = self.found()?;
        let stage = progress.stage("directory pages", None);
        let mut listing = DirectoryListing {
            sink: self,
            page_size: found.page_size,
            keep_versions: found.etag != Some(false),
            agents: Vec::new(),
            listed: ListedUsers::default(),
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
            mut listed,
            ..
        } = listing;
        drop(stage);
        listed.seal();
        self.listed = listed;
        progress.log(&format!(
            "directory: {} in {}",
            crate::term::count(agents.len() as u64, "agent"),
            crate::term::count(pages, "page")
        ));
        Ok(agents)
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
    pub(super) fn read_page(&self, req: &Request, sent: Result<Response>) -> Result<ListedPage> {
        let keep_resources = self.found()?.put;
        self.read_list(req, sent, keep_resources)
    }

    /// Read one listing page; each user's resource is kept with
    /// `keep_resources` (writes are PUTs of the resource as listed).
    pub(super) fn read_list(
        &self,
        req: &Request,
        sent: Result<Response>,
        keep_resources: bool,
    ) -> Result<ListedPage> {
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
            users: list
                .resources
                .iter()
                .map(|r| {
                    let (agent, version) = self.read_user(r)?;
                    Ok(ListedUser {
                        agent,
                        version,
                        resource: keep_resources.then(|| for_put(r)),
                    })
                })
                .collect(),
        })
    }

    /// The agent of one listed user, read without building the whole resource:
    /// each string is copied once, from the page into the agent.
    #[cfg(test)]
    pub(super) fn agent_of(&self, resource: &RawValue) -> Result<Agent, String> {
        self.read_user(resource).map(|(agent, _)| agent)
    }

    /// The agent of one listed user and its `meta.version`.
    pub(super) fn read_user(&self, resource: &RawValue) -> Result<(Agent, Option<String>), String> {
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

    pub(super) fn attribute_name(&self) -> &'static str {
        match self.options.email_attribute {
            EmailAttribute::UserName => "userName",
            EmailAttribute::Emails => "emails",
        }
    }
}

/// The directory's side of the page walk: the agents read so far.
struct DirectoryListing<'a> {
    sink: &'a ScimSink,
    page_size: usize,
    keep_versions: bool,
    agents: Vec<Agent>,
    listed: ListedUsers,
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
                        self.listed.push(&agent.id, listed);
                    }
                    self.agents.push(agent);
                }
                Err(why) => progress::warn(&format!("directory: skipping {why}")),
            }
        }
        if number == 1 && self.listed.len() > 0 {
            // Versions or resources are kept: room for every user's.
            self.listed.reserve(
                total
                    .min(MAX_RESERVED_AGENTS)
                    .saturating_sub(self.listed.len()),
            );
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

/// What a PUT of `resource` sends back: the resource without `meta` and
/// `groups` (the directory keeps those itself), as raw JSON. Taken apart
/// without parsing the values; kept whole when it is not a plain object.
fn for_put(resource: &RawValue) -> Box<RawValue> {
    struct Members<'a>(Vec<(String, &'a RawValue)>);
    impl<'de> Deserialize<'de> for Members<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Visit;
            impl<'de> serde::de::Visitor<'de> for Visit {
                type Value = Members<'de>;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Self::Value, A::Error> {
                    let mut members = Vec::new();
                    while let Some((name, value)) = map.next_entry::<String, &'de RawValue>()? {
                        members.push((name, value));
                    }
                    Ok(Members(members))
                }
            }
            d.deserialize_map(Visit)
        }
    }
    let Ok(Members(members)) = serde_json::from_str::<Members<'_>>(resource.get()) else {
        return resource.to_owned();
    };
    let mut text = String::with_capacity(resource.get().len());
    text.push('{');
    for (name, value) in members
        .iter()
        .filter(|(name, _)| name != "meta" && name != "groups")
    {
        if text.len() > 1 {
            text.push(',');
        }
        // A name read from JSON is always written back as JSON.
        text.push_str(&serde_json::to_string(name).unwrap_or_default());
        text.push(':');
        text.push_str(value.get());
    }
    text.push('}');
    RawValue::from_string(text).unwrap_or_else(|_| resource.to_owned())
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
pub(super) struct ListedPage {
    pub(super) total_results: usize,
    /// Users on the page, also those skipped.
    pub(super) got: usize,
    pub(super) users: Vec<Result<ListedUser, String>>,
}

/// One listed user: its agent, its version, and its resource when writes are
/// PUTs (sent back as listed).
pub(super) struct ListedUser {
    pub(super) agent: Agent,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UpdateMode;
    use crate::sink::scim::tests::{agent, raw, sink};
    use serde_json::json;

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
    fn a_put_keeps_the_resource_without_meta_and_groups() {
        // An escaped name, nested values, and the attributes a PUT leaves out.
        let text = r#"{"id": "a\"1", "userName": "a@x.com", "meta": {"version": "W/\"2\""},
            "groups": [{"value": "g"}], "na\u00efve": [1, {"x": null}], "externalId": "7"}"#;
        let user = RawValue::from_string(text.to_owned()).unwrap();
        let kept: Value = serde_json::from_str(for_put(&user).get()).unwrap();
        assert_eq!(
            kept,
            json!({"id": "a\"1", "userName": "a@x.com", "na\u{ef}ve": [1, {"x": null}], "externalId": "7"})
        );
        // Not an object: kept as it is.
        assert_eq!(for_put(&raw(json!([1, 2]))).get(), "[1,2]");
    }

    #[test]
    fn listed_users_are_found_by_id() {
        let mut listed = ListedUsers::default();
        for id in ["b", "a", "c"] {
            listed.push(
                id,
                Listed {
                    version: Some(format!("v{id}").into()),
                    resource: None,
                },
            );
        }
        listed.seal();
        assert_eq!(listed.get("a").unwrap().version.as_deref(), Some("va"));
        assert_eq!(listed.get("c").unwrap().version.as_deref(), Some("vc"));
        assert!(listed.get("d").is_none());
        let change = |id: &str| {
            crate::plan::Change::setting(
                &Agent {
                    id: id.into(),
                    email: format!("{id}@x.com"),
                    external_id: None,
                },
                Some("1".into()),
            )
        };
        listed.retain_for(&[change("c"), change("a"), change("z")]);
        assert!(listed.get("b").is_none());
        assert_eq!(listed.get("a").unwrap().version.as_deref(), Some("va"));
        assert_eq!(listed.get("c").unwrap().version.as_deref(), Some("vc"));
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
}

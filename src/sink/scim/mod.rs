//! A SCIM 2.0 user directory (RFC 7643/7644), such as Talkdesk's: read what
//! it supports (`/ServiceProviderConfig`), list the users page by page, find
//! one by email with a filter, and replace (PUT) or patch (PATCH) one user's
//! `externalId` in one request, guarded by `If-Match` when users carry versions.

use std::sync::OnceLock;

use anyhow::{Result, anyhow};
use serde_json::Value;
use url::Url;

use super::{Agent, Sink};
use crate::config::{EmailAttribute, UpdateMode};
use crate::http::{Client, Response, display_url};
use crate::plan::Change;
use crate::progress::Progress;
use crate::request::join_url;

mod discovery;
mod listing;
mod lookup;
mod write;

use discovery::Found;
use listing::ListedUsers;

const SCIM_JSON: &str = "application/scim+json";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// How the sink reads and writes, from `[sink]`.
#[derive(Debug, Clone)]
pub(crate) struct ScimOptions {
    /// Users per listing page; `None`: the directory's largest.
    pub page_size: Option<usize>,
    /// Where the `/ServiceProviderConfig` answer is kept between runs.
    pub directory_cache: Option<std::path::PathBuf>,
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
    listed: ListedUsers,
}

impl ScimSink {
    pub(crate) fn new(client: Client, base_url: Url, options: ScimOptions) -> Self {
        ScimSink {
            client,
            base_url,
            options: ScimOptions {
                page_size: options.page_size.map(|n| n.max(1)),
                max_pages: options.max_pages.max(1),
                concurrency: options.concurrency.max(1),
                ..options
            },
            found: OnceLock::new(),
            listed: ListedUsers::default(),
        }
    }

    fn users_url(&self) -> Url {
        join_url(&self.base_url, "/Users")
    }

    fn user_url(&self, id: &str) -> Result<Url> {
        crate::template::check_path_segment("agent id", id)?;
        let mut url = self.users_url();
        url.path_segments_mut()
            .map_err(|()| anyhow!("{} cannot take a path", display_url(&self.base_url)))?
            .push(id);
        Ok(url)
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
        self.list(progress)
    }

    fn write(&self, change: &Change) -> Result<()> {
        self.write_change(change)
    }

    fn agents_with_email(&mut self, email: &str) -> Result<Option<Vec<Agent>>> {
        self.find_by_email(email)
    }

    fn keep_for(&mut self, changes: &[Change]) {
        self.listed.retain_for(changes);
    }

    fn version_of(&self, id: &str) -> Option<String> {
        self.listed.get(id)?.version.as_deref().map(str::to_owned)
    }

    fn concurrency(&self) -> usize {
        self.options.concurrency
    }

    fn describe(&self) -> String {
        format!("SCIM {}", display_url(&self.base_url))
    }
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
    use serde_json::Map;
    use serde_json::value::RawValue;

    use super::*;
    use crate::http::Settings;

    pub(super) fn sink(update: UpdateMode, email: EmailAttribute) -> ScimSink {
        let base = Url::parse("http://127.0.0.1:9/scim/v2").unwrap();
        ScimSink::new(
            Client::new(Settings::default(), None),
            base,
            options(update, email),
        )
    }

    pub(super) fn options(update: UpdateMode, email_attribute: EmailAttribute) -> ScimOptions {
        ScimOptions {
            page_size: Some(10),
            directory_cache: None,
            max_pages: 10_000,
            concurrency: 1,
            update,
            email_attribute,
        }
    }

    pub(super) fn object(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(o) => o,
            _ => panic!("not an object"),
        }
    }

    pub(super) fn raw(v: Value) -> Box<RawValue> {
        serde_json::value::to_raw_value(&v).unwrap()
    }

    pub(super) fn agent(resource: Value) -> Agent {
        sink(UpdateMode::Put, EmailAttribute::UserName)
            .agent_of(&raw(resource))
            .unwrap()
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

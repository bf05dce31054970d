//! Writing one agent's external ID: a PUT of the user or a PATCH of the one
//! attribute, with `If-Match` when its version is known; on a 412, or without a
//! version, the user is read again and written once more if it is unchanged.
//! A write whose answer was lost (the connection dropped after it was sent, a
//! timeout, a 5xx from a gateway) is settled by reading the user back: the
//! planned value means it landed, the old value that it did not, anything
//! else is an [`Unknown`] outcome that says what was read.

use anyhow::{Result, anyhow, bail};
use serde_json::{Map, Value, json};

use super::{PATCH_OP, SCIM_JSON, ScimError, ScimSink, expect_success};
use crate::http::{Request, Response, display_url};
use crate::plan::Change;
use crate::sink::{Agent, Refusal, Unknown};

/// How one write request ended.
enum Sent {
    /// The directory took it.
    Done,
    /// HTTP 412: the user's version moved.
    Moved,
    /// No answer that tells: a transport failure after the retries, or a
    /// 408/5xx (a gateway may answer so after the directory applied it).
    Lost(anyhow::Error),
    /// The directory answered that it did not take it.
    Refused(anyhow::Error),
}

/// A user as read again: the resource, what the plan compares, its version.
struct Current {
    resource: Map<String, Value>,
    agent: Agent,
    version: Option<String>,
}

/// Does `value` hold `wanted`, as the sinks compare IDs (trimmed)?
fn holds(value: Option<&str>, wanted: Option<&str>) -> bool {
    value.map(str::trim) == wanted.map(str::trim)
}

impl ScimSink {
    /// Write one change: with the listed version when there is one, else (and
    /// after a 412) against the user as read again.
    pub(super) fn write_change(&self, change: &Change) -> Result<()> {
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
        let current = if let Some(version) = version
            && (resource.is_some() || !found.put)
        {
            let req = self.write_request(change, found.put, resource, Some(version))?;
            match self.send_write(&req) {
                Sent::Done => return Ok(()),
                Sent::Lost(lost) => return self.settle(change, lost),
                Sent::Refused(e) => return Err(e),
                Sent::Moved => {}
            }
            // A 412. Its version may have moved by this very write: an
            // attempt whose answer was lost, retried with the old `If-Match`.
            let current = self.read_current(change)?;
            if agent_is(change, &current.agent)
                && holds(
                    current.agent.external_id.as_deref(),
                    change.new_external_id.as_deref(),
                )
            {
                return Ok(());
            }
            current
        } else {
            self.read_current(change)?
        };
        // No version, or a 412: still the agent the plan saw? Then write once
        // more, against its version now.
        let (resource, version) = self.as_planned(change, current)?;
        let version = version.filter(|_| found.etag != Some(false));
        let req = self.write_request(change, found.put, Some(resource), version.as_deref())?;
        match self.send_write(&req) {
            Sent::Done => Ok(()),
            Sent::Lost(lost) => self.settle(change, lost),
            Sent::Refused(e) => Err(e),
            Sent::Moved => bail!(
                "agent {} changed since it was listed: the directory refused the write twice \
                 (HTTP 412, its version moved); left as it is",
                change.agent_id
            ),
        }
    }

    /// A write whose answer was lost, settled by reading the user back: the
    /// planned value means it landed; the old value that it did not (the
    /// write fails with `lost`); anything else, or a user that cannot be read,
    /// is [`Unknown`], saying what was read.
    fn settle(&self, change: &Change, lost: anyhow::Error) -> Result<()> {
        let unknown = |lost: anyhow::Error, what: String| {
            lost.context(Unknown(format!(
                "the answer to the write of agent {} was lost and reading it back could not tell \
                 whether it landed: {what}",
                change.agent_id
            )))
        };
        let current = match self.read_current(change) {
            Ok(current) => current,
            Err(e) => return Err(unknown(lost, format!("{e:#}"))),
        };
        let now = current.agent.external_id.as_deref();
        if !agent_is(change, &current.agent) {
            return Err(unknown(
                lost,
                format!(
                    "its {} is now {}, not {}",
                    self.attribute_name(),
                    current.agent.email,
                    change.email
                ),
            ));
        }
        if holds(now, change.new_external_id.as_deref()) {
            return Ok(());
        }
        if holds(now, change.old_external_id.as_deref()) {
            return Err(lost.context(format!(
                "agent {} still holds its old external ID: the write did not land",
                change.agent_id
            )));
        }
        Err(unknown(
            lost,
            format!(
                "its external ID is now {}, neither {} (before) nor {} (planned)",
                now.unwrap_or("(none)"),
                change.old_external_id.as_deref().unwrap_or("(none)"),
                change.new_external_id.as_deref().unwrap_or("(none)")
            ),
        ))
    }

    /// The user as it is now, and its version (`meta.version`, else the
    /// `ETag` header); an error unless the directory answers with that user.
    fn read_current(&self, change: &Change) -> Result<Current> {
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
        let version = version.or_else(|| resp.header("etag").map(str::to_owned));
        Ok(Current {
            resource,
            agent,
            version,
        })
    }

    /// The user read again, if it is still the agent the plan was made from —
    /// same email, the external ID the plan saw: a write would otherwise undo
    /// someone's change, or link another person.
    fn as_planned(
        &self,
        change: &Change,
        current: Current,
    ) -> Result<(Map<String, Value>, Option<String>)> {
        let agent = &current.agent;
        let changed = |what: String| {
            anyhow!(
                "agent {} changed since it was listed: {what}; left as it is",
                change.agent_id
            )
        };
        if !agent_is(change, agent) {
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
        Ok((current.resource, current.version))
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
            check_version(&change.agent_id, v)?;
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

    /// Send a write and tell how it ended.
    fn send_write(&self, req: &Request) -> Sent {
        let resp = match self.client.send(req) {
            Ok(resp) => resp,
            // No token, no write: nothing was sent.
            Err(e) if crate::sink::is_refusal(&e) => return Sent::Refused(e),
            Err(e) => return Sent::Lost(e),
        };
        if resp.status == 412 {
            return Sent::Moved;
        }
        if matches!(resp.status, 400 | 401 | 403 | 405 | 501) {
            // Refused: what the directory said of itself (PUT or PATCH, ...)
            // may be out of date; the next run asks it again.
            self.forget_directory();
        }
        // 501 says the method is not there at all: a refusal, not a loss.
        let lost = matches!(resp.status, 408 | 500 | 502..=599);
        match refusing(expect_success(resp, &req.method, &req.url)) {
            Ok(_) => Sent::Done,
            Err(e) if lost => Sent::Lost(e),
            Err(e) => Sent::Refused(e),
        }
    }
}

/// The longest `meta.version` sent back as `If-Match`: versions are short
/// (`W/"3"`, a hash); a longer one is a directory's error, not a version.
const MAX_VERSION_BYTES: usize = 1024;

/// Refuse a version that cannot go into `If-Match`, naming the agent: the
/// same version would be refused on every try.
fn check_version(agent_id: &str, version: &str) -> Result<()> {
    if version.len() > MAX_VERSION_BYTES {
        bail!(
            "agent {agent_id}: its meta.version is {} bytes long, over {MAX_VERSION_BYTES}: not sent as If-Match; nothing written",
            version.len()
        );
    }
    if let Some(flaw) = crate::http::header_value_flaw(version) {
        bail!(
            "agent {agent_id}: its meta.version holds {flaw}, which cannot go into the If-Match header; nothing written"
        );
    }
    Ok(())
}

/// Is `agent` (read again) still the person of `change`?
fn agent_is(change: &Change, agent: &Agent) -> bool {
    agent.email.trim().eq_ignore_ascii_case(change.email.trim())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EmailAttribute, UpdateMode};
    use crate::sink::scim::tests::{agent, object, sink};

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
        use url::Url;

        use crate::http::{Client, Settings};
        use crate::progress::Progress;
        use crate::sink::Sink;
        use crate::sink::scim::ScimOptions;
        use crate::sink::scim::tests::options;

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
                page_size: Some(2),
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
}

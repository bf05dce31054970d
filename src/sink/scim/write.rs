//! Writing one agent's external ID: a PUT of the user or a PATCH of the one
//! attribute, with `If-Match` when its version is known; on a 412, or without a
//! version, the user is read again and written once more if it is unchanged.

use anyhow::{Result, anyhow, bail};
use serde_json::{Map, Value, json};

use super::{PATCH_OP, SCIM_JSON, ScimError, ScimSink, expect_success};
use crate::http::{Request, Response, display_url};
use crate::plan::Change;
use crate::sink::Refusal;

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
}

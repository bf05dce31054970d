//! Declared actions: requests for one agent that use its synced external ID —
//! the reason agents are synced, e.g. punching the time clock when an agent logs
//! in. One agent from the command line, or a batch of events (JSON lines).

use std::collections::BTreeMap;
use std::io::BufRead;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::config::ActionSpec;
use crate::http::{Client, display_url};
use crate::plan::normalize;
use crate::redact;
use crate::request::{render_request, render_url};
use crate::sink::Agent;
use crate::template::Values;

/// What one action request did.
#[derive(Debug, Serialize)]
pub(crate) struct ActionResult {
    pub email: String,
    pub external_id: Option<String>,
    pub status: Option<u16>,
    pub ok: bool,
    pub error: Option<String>,
    /// The response body, as JSON when it is JSON.
    pub response: Option<serde_json::Value>,
}

/// One event of a batch: `{"email": …, "vars": {…}}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Event {
    pub email: String,
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
}

/// The `{{var.K}}` names the action needs that `vars` lacks.
pub(crate) fn missing_vars(spec: &ActionSpec, vars: &BTreeMap<String, String>) -> Vec<String> {
    let req = &spec.request;
    let templates = std::iter::once(&req.path)
        .chain(req.query.iter().map(|(_, t)| t))
        .chain(req.headers.iter().map(|(_, t)| t))
        .chain(req.body.iter());
    let mut missing: Vec<String> = templates
        .flat_map(|t| t.vars())
        .filter(|k| !vars.contains_key(*k))
        .map(str::to_owned)
        .collect();
    missing.sort();
    missing.dedup();
    missing
}

/// The agents by normalised email; agents sharing an email are ambiguous.
pub(crate) struct AgentsByEmail<'a> {
    by_email: BTreeMap<String, Vec<&'a Agent>>,
}

impl<'a> AgentsByEmail<'a> {
    pub(crate) fn new(agents: &'a [Agent]) -> Self {
        let mut by_email: BTreeMap<String, Vec<&Agent>> = BTreeMap::new();
        for a in agents {
            by_email.entry(normalize(&a.email)).or_default().push(a);
        }
        AgentsByEmail { by_email }
    }

    /// The agent with this email and its external ID, or why there is none.
    pub(crate) fn find(&self, email: &str) -> Result<(&'a Agent, &'a str)> {
        match self.by_email.get(&normalize(email)).map(Vec::as_slice) {
            None | Some([]) => bail!("no agent has the email {email} in the directory"),
            Some([agent]) => match agent.external_id.as_deref() {
                Some(ext) => Ok((agent, ext)),
                None => bail!(
                    "agent {} ({}) has no external ID: run a sync first",
                    agent.email,
                    agent.id
                ),
            },
            Some(many) => bail!("{} agents have the email {email}: ambiguous", many.len()),
        }
    }
}

/// Send the action for one agent.
pub(crate) fn send(
    client: &Client,
    base: &url::Url,
    spec: &ActionSpec,
    agent: &Agent,
    external_id: &str,
    vars: &BTreeMap<String, String>,
) -> ActionResult {
    let values = Values {
        external_id: Some(external_id),
        agent_id: Some(&agent.id),
        email: Some(&agent.email),
        vars: Some(vars),
        ..Values::default()
    };
    let result = render_url(base, &spec.request, &values)
        .and_then(|url| render_request(&spec.request, url, &values))
        .and_then(|request| {
            let url = display_url(&request.url);
            let resp = client.send(&request)?;
            Ok((request.method, url, resp))
        });
    let mut outcome = ActionResult {
        email: agent.email.clone(),
        external_id: Some(external_id.to_owned()),
        status: None,
        ok: false,
        error: None,
        response: None,
    };
    match result {
        Ok((method, url, resp)) => {
            outcome.status = Some(resp.status);
            outcome.ok = resp.is_success();
            if !outcome.ok {
                outcome.error = Some(format!(
                    "{method} {url} answered HTTP {}: {}",
                    resp.status,
                    resp.body_start()
                ));
            }
            outcome.response = serde_json::from_slice(&resp.body).ok().or_else(|| {
                (!resp.body.is_empty())
                    .then(|| String::from_utf8_lossy(&resp.body).into_owned().into())
            });
        }
        Err(e) => outcome.error = Some(format!("{e:#}")),
    }
    if let Some(response) = outcome.response.as_mut() {
        scrub(response);
    }
    outcome.error = outcome.error.map(|e| redact::redact(&e));
    outcome
}

/// Header names whose values are credentials wherever they appear.
const CREDENTIAL_NAMES: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
];

/// Keep credentials a server echoed back out of a response that is printed:
/// an echoed `Authorization` (any credential header) is dropped, every other
/// string has its secrets masked.
fn scrub(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::String(s) => *s = redact::redact(s),
        Value::Array(items) => items.iter_mut().for_each(scrub),
        Value::Object(map) => {
            let fields = std::mem::take(map);
            *map = fields
                .into_iter()
                .filter(|(k, _)| !CREDENTIAL_NAMES.iter().any(|c| k.eq_ignore_ascii_case(c)))
                .map(|(k, mut v)| {
                    scrub(&mut v);
                    (redact::redact(&k), v)
                })
                .collect();
        }
        _ => {}
    }
}

/// Read the events of a batch, each line checked before anything is sent.
pub(crate) fn read_events(reader: impl BufRead, name: &str) -> Result<Vec<Event>> {
    let mut events = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading {name}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let event: Event = serde_json::from_str(&line).map_err(|e| {
            anyhow!(
                "{name}: line {}: not an event {{\"email\", \"vars\"}}: {e}",
                n + 1
            )
        })?;
        events.push(event);
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str, email: &str, ext: Option<&str>) -> Agent {
        Agent {
            id: id.into(),
            email: email.into(),
            external_id: ext.map(str::to_owned),
        }
    }

    #[test]
    fn finds_agents_case_insensitively_and_explains_misses() {
        let agents = [
            agent("1", "Ann@x.com", Some("7")),
            agent("2", "bob@x.com", None),
            agent("3", "dup@x.com", Some("1")),
            agent("4", "DUP@x.com", Some("2")),
        ];
        let dir = AgentsByEmail::new(&agents);
        assert_eq!(dir.find(" ann@X.com").unwrap().1, "7");
        assert!(
            dir.find("bob@x.com")
                .unwrap_err()
                .to_string()
                .contains("has no external ID")
        );
        assert!(
            dir.find("zed@x.com")
                .unwrap_err()
                .to_string()
                .contains("no agent has the email")
        );
        assert!(
            dir.find("dup@x.com")
                .unwrap_err()
                .to_string()
                .contains("ambiguous")
        );
    }

    #[test]
    fn events_are_json_lines() {
        let text =
            "{\"email\": \"a@x\", \"vars\": {\"event\": \"login\"}}\n\n{\"email\": \"b@x\"}\n";
        let events = read_events(text.as_bytes(), "events").unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].vars["event"], "login");
        let err = read_events("{\"mail\": 1}\n".as_bytes(), "events").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }
}

//! Declared actions: requests for one agent that use its synced external ID —
//! the reason agents are synced, e.g. punching the time clock when an agent logs
//! in. One agent from the command line, or a batch of events (JSON lines):
//! the batch, the `agentsync action` command's work, is in `batch.rs`;
//! [`batch::Declared::send_for`] sends one action for one agent.

use std::collections::BTreeMap;
use std::io::BufRead;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::config::ActionSpec;
use crate::exit;
use crate::http::{Client, display_url};
use crate::plan::normalize;
use crate::redact;
use crate::request::{render_request, render_url};
use crate::sink::Agent;
use crate::template::Values;

pub(crate) mod batch;
pub(crate) use batch::run;

/// What one action request did.
#[derive(Debug, Serialize)]
pub(crate) struct ActionResult {
    pub email: String,
    /// The variables it was sent with: a login and a logout tell apart.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, String>,
    pub external_id: Option<String>,
    pub status: Option<u16>,
    pub ok: bool,
    pub error: Option<String>,
    /// The response body, as JSON when it is JSON.
    pub response: Option<serde_json::Value>,
    /// Whether sending it again later may succeed where this failed.
    #[serde(skip)]
    pub retry: Retry,
}

/// May a failed action succeed when sent again later?
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Retry {
    /// No: it succeeded, or the server refused it (4xx), or it could not be
    /// rendered.
    #[default]
    No,
    /// Yes (a connect error, a timeout, 429, 5xx), not before the wait the
    /// server asked for with `Retry-After`, if it did.
    Later(Option<std::time::Duration>),
}

/// One event of a batch: a line `{"email": …, "vars": {…}}` (`vars` may be
/// left out when `--set` gives every variable), with an optional `"id"` that
/// fills `{{event_id}}`.
#[derive(Debug)]
pub(crate) struct Event {
    /// The event's line in its file, from 1.
    pub line: usize,
    pub id: Option<String>,
    pub email: String,
    pub vars: BTreeMap<String, String>,
}

/// The `{{var.K}}` names the action needs that `vars` lacks.
pub(crate) fn missing_vars(spec: &ActionSpec, vars: &BTreeMap<String, String>) -> Vec<String> {
    let mut missing: Vec<String> = spec
        .vars()
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
                    "agent {} ({}) has no external ID yet: a sync links it when the source has a user with this email",
                    agent.email,
                    agent.id
                ),
            },
            Some(many) => bail!("{} agents have the email {email}: ambiguous", many.len()),
        }
    }
}

/// What an action is sent for: the agent, its external ID, the variables
/// and the event's ID (`{{event_id}}`), if it came from an event that has one.
pub(crate) struct Target<'a> {
    pub agent: &'a Agent,
    pub external_id: &'a str,
    pub vars: &'a BTreeMap<String, String>,
    pub event_id: Option<&'a str>,
}

/// Send the action for one agent.
pub(crate) fn send(
    client: &Client,
    base: &url::Url,
    spec: &ActionSpec,
    target: &Target<'_>,
) -> ActionResult {
    let values = Values {
        external_id: Some(target.external_id),
        agent_id: Some(&target.agent.id),
        email: Some(&target.agent.email),
        event_id: target.event_id,
        vars: Some(target.vars),
        ..Values::default()
    };
    let mut outcome = ActionResult {
        email: target.agent.email.clone(),
        vars: target.vars.clone(),
        external_id: Some(target.external_id.to_owned()),
        status: None,
        ok: false,
        error: None,
        response: None,
        retry: Retry::No,
    };
    let result = match render_url(base, &spec.request, &values)
        .and_then(|url| render_request(&spec.request, url, &values))
    {
        Ok(request) => {
            let url = display_url(&request.url);
            // A request that could not be sent (or whose answer was lost)
            // may be sent again.
            client
                .send(&request)
                .map(|resp| (request.method, url, resp))
                .inspect_err(|_| outcome.retry = Retry::Later(None))
        }
        Err(e) => Err(e),
    };
    match result {
        Ok((method, url, resp)) => {
            outcome.status = Some(resp.status);
            outcome.ok = resp.is_success();
            if resp.status == 429 || resp.status == 408 || resp.status >= 500 {
                outcome.retry = Retry::Later(resp.wait_hint());
            }
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

/// At most this many malformed lines are listed; the rest are counted.
const LINE_ERRORS_SHOWN: usize = 20;

/// The longest line of a batch, in bytes. An event is an email and a few
/// variables; a longer line is refused as it is read, never held whole.
pub(crate) const MAX_EVENT_LINE: usize = 64 * 1024;

/// The errors of a batch's lines: the first few kept, the rest counted, so
/// that a file of any size is told in bounded memory.
#[derive(Default)]
struct LineErrors {
    shown: Vec<String>,
    total: usize,
}

impl LineErrors {
    fn push(&mut self, error: impl FnOnce() -> String) {
        self.total += 1;
        if self.shown.len() < LINE_ERRORS_SHOWN {
            self.shown.push(error());
        }
    }

    /// `Ok` when there were none, else a usage error listing them: `what`
    /// the lines are, and the `outcome`.
    fn into_result(mut self, what: &str, outcome: &str) -> Result<()> {
        if self.total == 0 {
            return Ok(());
        }
        if self.total > self.shown.len() {
            let more = self.total - self.shown.len();
            self.shown.push(format!("… and {more} more"));
        }
        let s = if self.total == 1 { "" } else { "s" };
        Err(exit::usage_listed(
            format!("{} {what} event{s}; {outcome}:", self.total),
            self.shown,
        ))
    }
}

/// The next line of `reader` into `buf` (without its `\n` or `\r\n`), never
/// more than [`MAX_EVENT_LINE`] bytes of it: `None` at the end, else whether
/// the line was longer (its bytes are then read and dropped).
fn next_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<Option<bool>> {
    buf.clear();
    let (mut any, mut too_long) = (false, false);
    loop {
        let chunk = match reader.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            break;
        }
        any = true;
        let newline = chunk.iter().position(|&b| b == b'\n');
        let part = &chunk[..newline.unwrap_or(chunk.len())];
        if !too_long && buf.len() + part.len() > MAX_EVENT_LINE + 1 {
            too_long = true;
            buf.clear();
        }
        if !too_long {
            buf.extend_from_slice(part);
        }
        let used = newline.map_or(chunk.len(), |i| i + 1);
        reader.consume(used);
        if newline.is_some() {
            break;
        }
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    too_long |= buf.len() > MAX_EVENT_LINE;
    Ok(any.then_some(too_long))
}

/// Read the events of a batch from `reader` (called `name` in errors). Every
/// line is checked before anything is sent: a file with malformed lines (not
/// JSON, not UTF-8, longer than [`MAX_EVENT_LINE`]) is a usage error that
/// names each line (up to 20) and what is wrong with it.
pub(crate) fn read_events(mut reader: impl BufRead, name: &str) -> Result<Vec<Event>> {
    let mut events = Vec::new();
    let mut errors = LineErrors::default();
    let mut buf = Vec::new();
    let mut number = 0;
    while let Some(too_long) =
        next_line(&mut reader, &mut buf).with_context(|| format!("reading {name}"))?
    {
        number += 1;
        if too_long {
            errors.push(|| {
                format!(
                    "{name}: line {number}: longer than {} KiB, the most an event may have",
                    MAX_EVENT_LINE / 1024
                )
            });
            continue;
        }
        let line = match std::str::from_utf8(&buf) {
            Ok(line) => line,
            Err(e) => {
                let at = e.valid_up_to() + 1;
                errors.push(|| format!("{name}: line {number}: not UTF-8 text (byte {at})"));
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        match parse_event(line) {
            Ok(event) => events.push(Event {
                line: number,
                ..event
            }),
            Err(why) => errors.push(|| format!("{name}: line {number}: {why}")),
        }
    }
    errors.into_result("malformed", "nothing was sent")?;
    Ok(events)
}

/// One line's event (its `line` left 0), or what is wrong with it.
fn parse_event(line: &str) -> std::result::Result<Event, String> {
    use serde_json::Value;
    let value: Value = serde_json::from_str(line).map_err(|e| {
        // serde's "at line 1 column N" is inside this line: keep the column.
        format!("not JSON: {e}").replace("at line 1 column", "at column")
    })?;
    let Value::Object(fields) = value else {
        return Err(format!(
            "not an event: an event is an object {{\"email\": …, \"vars\": {{…}}}}, this is {}",
            kind_of(&value)
        ));
    };
    if let Some(key) = fields
        .keys()
        .find(|k| !matches!(k.as_str(), "id" | "email" | "vars"))
    {
        return Err(format!(
            "unknown key {key:?} (an event has \"email\", \"vars\" and \"id\")"
        ));
    }
    let id = match fields.get("id") {
        None => None,
        Some(Value::String(id)) if !id.is_empty() => Some(id.clone()),
        Some(Value::String(_)) => return Err("\"id\" is empty".into()),
        Some(other) => return Err(format!("\"id\" is {}, not a string", kind_of(other))),
    };
    let email = match fields.get("email") {
        Some(Value::String(e)) if !e.trim().is_empty() => e.clone(),
        Some(Value::String(_)) => return Err("\"email\" is empty".into()),
        Some(other) => return Err(format!("\"email\" is {}, not a string", kind_of(other))),
        None => return Err("no \"email\"".into()),
    };
    let vars = match fields.get("vars") {
        None => BTreeMap::new(),
        Some(Value::Object(vars)) => vars
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(format!(
                    "vars.{k} is {}, not a string (write it in quotes)",
                    kind_of(other)
                )),
            })
            .collect::<std::result::Result<_, _>>()?,
        Some(other) => {
            return Err(format!(
                "\"vars\" is {}, not an object of strings",
                kind_of(other)
            ));
        }
    };
    Ok(Event {
        line: 0,
        id,
        email,
        vars,
    })
}

fn kind_of(value: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Check that every event of a batch has every `{{var.K}}` the action needs,
/// from its own vars or `--set`; the error names each line that does not.
pub(crate) fn check_vars(
    spec: &ActionSpec,
    action: &str,
    events: &[Event],
    name: &str,
) -> Result<()> {
    let mut errors = LineErrors::default();
    for e in events {
        let missing = missing_vars(spec, &e.vars);
        if missing.is_empty() {
            continue;
        }
        errors.push(|| {
            let names: Vec<_> = missing.iter().map(|k| format!("vars.{k}")).collect();
            format!(
                "{name}: line {}: {} has no {} (put it in the line's vars, or pass --set {}=VALUE for every event)",
                e.line,
                e.email,
                names.join(", "),
                missing[0]
            )
        });
    }
    errors
        .into_result("incomplete", "nothing was sent")
        .with_context(|| format!("action {action:?}"))
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
        assert_eq!((events[0].line, events[1].line), (1, 3));
        let err = read_events("{\"mail\": 1}\n".as_bytes(), "events").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn every_malformed_line_is_named_with_what_is_wrong() {
        let text = [
            r#"{"email": "a@x", "vars": {"event": "in"}}"#,
            "not json",
            r#"{"email": "b@x", "vars": {"event": 1}}"#,
            r#"{"vars": {"event": "in"}}"#,
            r#"{"email": "c@x", "vars": ["in"]}"#,
            r#"["a@x"]"#,
            r#"{"email": "d@x", "var": {}}"#,
        ]
        .join("\n");
        let err = read_events(text.as_bytes(), "events.jsonl").unwrap_err();
        let message = err.to_string();
        for expected in [
            "6 malformed events; nothing was sent",
            "events.jsonl: line 2: not JSON",
            "events.jsonl: line 3: vars.event is a number, not a string",
            "events.jsonl: line 4: no \"email\"",
            "events.jsonl: line 5: \"vars\" is an array",
            "events.jsonl: line 6: not an event",
            "events.jsonl: line 7: unknown key \"var\"",
        ] {
            assert!(message.contains(expected), "{expected:?} in:\n{message}");
        }
        assert!(!message.contains("line 1:"), "{message}");
        assert_eq!(crate::exit::code(&Err(err)), 2);
    }
}

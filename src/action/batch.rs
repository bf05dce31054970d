//! `agentsync action`: a declared action sent for one agent, or for a batch of
//! events, each request checked before the first is sent, each result printed
//! as it comes. [`Declared`] is the seam: one action of a job, ready to send
//! for any agent found in the directory.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use url::Url;

use super::{
    ActionResult, AgentsByEmail, Retry, Target, check_vars, missing_vars, read_events, send,
};
use crate::config::{ActionSpec, Job};
use crate::engine;
use crate::exit::{self, Ending};
use crate::http::Client;
use crate::output::{self, Output};
use crate::progress::{self, Progress};
use crate::sink::{Agent, Sink};
use crate::term::{Esc, Paint, style};

/// One declared action of a job, with the client of its endpoint (the
/// source's when it declares none).
pub(crate) struct Declared {
    spec: ActionSpec,
    client: Arc<Client>,
    base: Url,
}

impl Declared {
    /// The action `name` of `job`; a usage error names the declared ones.
    /// The credentials of its endpoint move into its client.
    pub(crate) fn take(job: &mut Job, name: &str) -> Result<Self> {
        let Some(mut spec) = job.actions.remove(name) else {
            let declared: Vec<_> = job.actions.keys().map(String::as_str).collect();
            return Err(exit::usage(format!(
                "{}: no action {name:?} is declared (declared: {})",
                job.path.display(),
                if declared.is_empty() {
                    "none".into()
                } else {
                    declared.join(", ")
                }
            )));
        };
        let (client, base) = match spec.endpoint.as_mut() {
            Some(endpoint) => (endpoint.client(), endpoint.base_url.clone()),
            None => (
                job.source.endpoint.client(),
                job.source.endpoint.base_url.clone(),
            ),
        };
        Ok(Declared::new(spec, Arc::new(client), base))
    }

    /// The action `spec`, sent with `client` on `base` (a client several
    /// actions may share, as they share the source's endpoint).
    pub(crate) fn new(spec: ActionSpec, client: Arc<Client>, base: Url) -> Self {
        Declared { spec, client, base }
    }

    /// Send the action for `target`.
    pub(crate) fn send_to(&self, target: &Target<'_>) -> ActionResult {
        send(&self.client, &self.base, &self.spec, target)
    }

    /// Send the action for the agent with `email` in `directory`, with the
    /// action's variables and the event's ID: an agent not found (or without
    /// an external ID) is an error, a request that failed is a result that is
    /// not `ok`.
    pub(crate) fn send_for(
        &self,
        directory: &AgentsByEmail<'_>,
        item: &BatchItem,
    ) -> Result<ActionResult> {
        let (agent, external_id) = directory.find(&item.email)?;
        let target = Target {
            agent,
            external_id,
            vars: &item.vars,
            event_id: item.event_id.as_deref(),
        };
        Ok(self.send_to(&target))
    }
}

/// The agents an action may be sent for: one agent is looked up by its email
/// where the directory can; a batch, or a directory without filters, is
/// listed once.
pub(crate) fn agents(
    sink: &mut dyn Sink,
    one: Option<&str>,
    progress: &Progress,
) -> Result<Vec<Agent>> {
    let found = match one {
        Some(email) => sink
            .agents_with_email(email)
            .context("looking the agent up in the directory")?,
        None => None,
    };
    match found {
        Some(agents) => Ok(agents),
        None => sink
            .list_agents(progress)
            .context("listing the agent directory"),
    }
}

/// `agentsync action NAME`: for `--agent EMAIL`, or for every event of
/// `--events FILE`; the results on stdout, one a line.
pub(crate) fn run(
    mut job: Job,
    name: &str,
    agent: Option<&str>,
    vars: Vec<(String, String)>,
    events: Option<&Path>,
    output: Output,
) -> Result<Ending> {
    let declared = Declared::take(&mut job, name)?;
    let batch = batch(&declared.spec, name, agent, vars, events)?;

    let progress = Progress::new();
    if job.sink.is_none() {
        // `open_sink` would speak of syncing: an action needs the directory
        // for another reason.
        return Err(exit::usage(format!(
            "{}: action {name:?} needs a [sink]: the agent directory where each agent's external ID is found",
            job.path.display()
        )));
    }
    let mut sink = engine::open_sink(&mut job)?;
    let agents = agents(sink.as_mut(), agent, &progress)?;
    let directory = AgentsByEmail::new(&agents);

    let single = agent.is_some();
    let (mut failed, mut sent) = (0, 0);
    let mut out = output::stdout();
    for item in &batch {
        let email = &item.email;
        let outcome = match declared.send_for(&directory, item) {
            Ok(outcome) => outcome,
            Err(e) if single => return Err(e),
            Err(e) => ActionResult {
                email: email.clone(),
                vars: item.vars.clone(),
                external_id: None,
                status: None,
                ok: false,
                error: Some(e.to_string()),
                response: None,
                retry: Retry::No,
            },
        };
        if single && !outcome.ok {
            bail!("{name} for {email}: {}", outcome.error.unwrap_or_default());
        }
        failed += usize::from(!outcome.ok);
        sent += 1;
        let line = line(&mut out, output, name, email, &outcome).and_then(|()| out.flush());
        if !exit::stdout(line)? {
            // Nobody reads the results any more: send no more requests.
            break;
        }
    }
    if sent < batch.len() {
        progress.log(&format!(
            "stdout was closed: {} of {} {name} requests not sent",
            batch.len() - sent,
            batch.len()
        ));
    }
    if failed > 0 {
        progress.log(&format!("{failed} of {sent} {name} requests failed"));
        return Ok(Ending::WritesFailed);
    }
    Ok(Ending::Success)
}

/// The `{{event_id}}` of a request that came with none (`--agent`, or an
/// event line without `"id"`): 128 random bits in hex, new for each request,
/// so that an `Idempotency-Key` made of it is never empty and never shared by
/// two punches, while every retry of one request carries the same key.
fn fresh_event_id() -> String {
    format!("{:032x}", fastrand::u128(..))
}

/// One request of a batch: the agent's email, the variables, and the
/// event's ID (`{{event_id}}`): its line's `"id"`, or a fresh one.
pub(crate) struct BatchItem {
    pub email: String,
    pub vars: BTreeMap<String, String>,
    pub event_id: Option<String>,
}

/// The requests of an action, one per agent with its variables: every one is
/// checked before the first is sent.
fn batch(
    spec: &ActionSpec,
    name: &str,
    agent: Option<&str>,
    vars: Vec<(String, String)>,
    events: Option<&Path>,
) -> Result<Vec<BatchItem>> {
    let defaults: BTreeMap<String, String> = vars.into_iter().collect();
    // A `--set` the action does not use is a typo more often than not:
    // refused, naming the variables it does use.
    let mut used: Vec<&str> = spec.vars().collect();
    used.sort_unstable();
    used.dedup();
    if let Some(unknown) = defaults.keys().find(|k| !used.contains(&k.as_str())) {
        let uses = if used.is_empty() {
            "no variables".to_owned()
        } else {
            used.iter()
                .map(|k| format!("{{{{var.{k}}}}}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(exit::usage(format!(
            "--set {unknown}: action {name:?} has no {{{{var.{unknown}}}}} (it uses {uses})"
        )));
    }
    match (agent, events) {
        (Some(email), _) => {
            let missing = missing_vars(spec, &defaults);
            if !missing.is_empty() {
                let sets: Vec<_> = missing.iter().map(|k| format!("--set {k}=VALUE")).collect();
                return Err(exit::usage(format!(
                    "action {name:?} needs {} for {email}: pass {}",
                    missing
                        .iter()
                        .map(|k| format!("{{{{var.{k}}}}}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    sets.join(" ")
                )));
            }
            Ok(vec![BatchItem {
                email: email.to_owned(),
                vars: defaults,
                event_id: Some(fresh_event_id()),
            }])
        }
        (None, Some(path)) => {
            let (mut events, source) = if path == Path::new("-") {
                let events = read_events(std::io::stdin().lock(), "stdin")?;
                (events, "stdin".to_owned())
            } else {
                let source = path.display().to_string();
                let file =
                    std::fs::File::open(path).with_context(|| format!("opening {source}"))?;
                (read_events(std::io::BufReader::new(file), &source)?, source)
            };
            // `--set` gives every event its defaults; an event's own vars win.
            for event in &mut events {
                let own = std::mem::replace(&mut event.vars, defaults.clone());
                event.vars.extend(own);
            }
            check_vars(spec, name, &events, &source)?;
            Ok(events
                .into_iter()
                .map(|e| BatchItem {
                    email: e.email,
                    vars: e.vars,
                    event_id: Some(e.id.unwrap_or_else(fresh_event_id)),
                })
                .collect())
        }
        (None, None) => Err(exit::usage("give --agent EMAIL or --events FILE")),
    }
}

/// One result of an action on stdout: a JSON line, or a line for people.
fn line(
    out: &mut impl Write,
    output: Output,
    name: &str,
    email: &str,
    outcome: &ActionResult,
) -> std::io::Result<()> {
    match output {
        Output::Json => {
            serde_json::to_writer(&mut *out, outcome)?;
            writeln!(out)
        }
        Output::Human => {
            // The email, the ID and the answer come from people and servers:
            // escaped.
            let status = outcome.status.map_or("-".into(), |s| s.to_string());
            match &outcome.error {
                None => writeln!(
                    out,
                    "{name} {} (external ID {}): HTTP {status}",
                    Esc(email),
                    Esc(outcome.external_id.as_deref().unwrap_or("-"))
                )?,
                Some(e) => writeln!(
                    out,
                    "{name} {}: {}",
                    Esc(email),
                    Paint(style::FAILED, format!("FAILED: {}", Esc(e)))
                )?,
            }
            match outcome.response.as_ref().filter(|_| progress::verbose()) {
                Some(resp) => writeln!(out, "  {}", Esc(&resp.to_string())),
                None => Ok(()),
            }
        }
    }
}

//! The commands: each turns parsed arguments into the pipeline's steps and an
//! [`Outcome`]. Errors travel up as `anyhow` and become exit codes in one place
//! ([`crate::exit_code`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};

use crate::action;
use crate::cli::{Cli, Command, ConfigArg, MockArgs, Output, SyncArgs};
use crate::config::{self, Job, SinkSpec};
use crate::journal;
use crate::mock;
use crate::plan;
use crate::progress::Progress;
use crate::report::{self, Report, Status};
use crate::sink::{Sink, file::FileSink, scim::ScimSink};
use crate::source;

/// How a command that did not fail ended; each has its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    /// Applied, but some writes failed (3).
    WritesFailed,
    /// Refused by a safety limit; nothing written (4). Reported as a [`Refused`]
    /// error after the plan was printed.
    Refused,
    /// `--dry-run --detailed-exitcode` with changes (5).
    Changes,
}

impl Outcome {
    pub(crate) fn code(self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::WritesFailed => 3,
            Outcome::Refused => 4,
            Outcome::Changes => 5,
        }
    }
}

/// Invalid usage: exit 2, like an invalid config.
#[derive(Debug)]
pub(crate) struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

pub(crate) fn dispatch(cli: Cli) -> Result<Outcome> {
    let output = cli.global.output;
    match cli.command {
        None => sync(&cli.sync, output),
        Some(Command::Sync(args)) => sync(&args, output),
        Some(Command::Fetch { config, pages }) => fetch(&config, pages, output),
        Some(Command::Check { config }) => check(&config, output),
        Some(Command::Mock(args)) => {
            mock::serve(mock_options(&args))?;
            Ok(Outcome::Success)
        }
        Some(Command::Demo(args)) => demo(&args),
        Some(Command::Action {
            name,
            config,
            agent,
            vars,
            events,
        }) => action(
            &config,
            &name,
            agent.as_deref(),
            vars,
            events.as_deref(),
            output,
        ),
        Some(Command::History { config }) => history(&config, output),
        Some(Command::Revert {
            run,
            config,
            dry_run,
        }) => revert(&config, &run, dry_run, output),
        Some(Command::Completions { shell }) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "agentsync", &mut std::io::stdout());
            Ok(Outcome::Success)
        }
    }
}

fn config_path(arg: &ConfigArg) -> Result<PathBuf> {
    arg.config.clone().ok_or_else(|| {
        UsageError("no config given: pass --config FILE or set AGENTSYNC_CONFIG".into()).into()
    })
}

fn load(arg: &ConfigArg) -> Result<Job> {
    Ok(config::load(&config_path(arg)?)?)
}

fn fetch(arg: &ConfigArg, pages: Option<u64>, output: Output) -> Result<Outcome> {
    let mut job = load(arg)?;
    let progress = Progress::new();
    let client = job.source.endpoint.client();
    let fetched = source::fetch(&job, &client, pages, &progress)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match output {
        Output::Json => report::write_fetch_json(&fetched, &mut out)?,
        Output::Human => report::write_fetch_human(&fetched, &mut out)?,
    }
    out.flush()?;
    Ok(Outcome::Success)
}

fn check(arg: &ConfigArg, output: Output) -> Result<Outcome> {
    let job = load(arg)?;
    let summary = crate::describe::describe(&job);
    let mut out = std::io::stdout().lock();
    match output {
        Output::Json => {
            serde_json::to_writer_pretty(&mut out, &summary)?;
            writeln!(out)?;
        }
        Output::Human => crate::describe::write_human(&summary, &mut out)?,
    }
    Ok(Outcome::Success)
}

fn open_sink(job: &mut Job) -> Result<Box<dyn Sink>> {
    match job.sink.as_mut() {
        None => Err(UsageError(format!(
            "{}: the config has no [sink]: nothing to sync to (use `agentsync fetch` to read the source only)",
            job.path.display()
        ))
        .into()),
        Some(SinkSpec::Scim {
            endpoint,
            page_size,
            update,
            email_attribute,
        }) => {
            let base = endpoint.base_url.clone();
            Ok(Box::new(ScimSink::new(
                endpoint.client(),
                base,
                *page_size,
                endpoint.concurrency,
                *update,
                *email_attribute,
            )))
        }
        Some(SinkSpec::File { path }) => Ok(Box::new(FileSink::new(path.clone()))),
    }
}

fn sync(args: &SyncArgs, output: Output) -> Result<Outcome> {
    let job = load(&args.config)?;
    sync_job(job, args, output)
}

/// The whole pipeline for one loaded job.
fn sync_job(mut job: Job, args: &SyncArgs, output: Output) -> Result<Outcome> {
    let progress = Progress::new();
    let mut sink = open_sink(&mut job)?;
    let _lock = crate::lock::acquire(&job.path)?;
    progress.log(&format!(
        "{}: {} from {} to {}",
        job.name,
        if args.dry_run { "planning" } else { "syncing" },
        crate::http::display_url(&job.source.endpoint.base_url),
        sink.describe()
    ));

    let client = job.source.endpoint.client();
    let fetched = source::fetch(&job, &client, None, &progress)
        .context("reading the source; nothing was written")?;
    let agents = sink
        .list_agents(&progress)
        .context("listing the agent directory; nothing was written")?;
    let plan = plan::plan(&fetched.users, &agents, job.sync.unlink_missing);
    let refusal = safety_refusal(&job, &plan);
    // Which agent each change names; the report keeps only what the contract prints.
    let targets: Vec<usize> = plan.changes.iter().map(|c| c.agent).collect();
    let mut report = Report::new(args.dry_run, &fetched, agents.len(), plan);

    let outcome = if args.dry_run {
        if args.detailed_exitcode && report.has_changes() {
            Outcome::Changes
        } else {
            Outcome::Success
        }
    } else if refusal.is_some() && !args.force {
        Outcome::Refused
    } else {
        if let Some(why) = &refusal {
            crate::progress::warn(&format!("{why}; applying anyway (--force)"));
        }
        let outcome = apply(sink.as_mut(), &agents, &targets, &mut report, &progress)?;
        record(&job, "sync", &report)?;
        outcome
    };

    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match output {
        Output::Json => report.write_json(&mut out)?,
        Output::Human => report.write_human(&mut out)?,
    }
    out.flush()?;
    if let Some(why) = refusal.filter(|_| outcome == Outcome::Refused) {
        return Err(anyhow!(Refused(why)));
    }
    Ok(outcome)
}

/// A refusal by a safety limit: exit 4, after the plan was printed.
#[derive(Debug)]
pub(crate) struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "refused: {}; nothing was written (use --force to apply anyway)",
            self.0
        )
    }
}

impl std::error::Error for Refused {}

/// Why the plan may not be applied without `--force`, if it may not.
fn safety_refusal(job: &Job, plan: &plan::Plan) -> Option<String> {
    let changes = plan.changes.len() as u64;
    if changes > job.sync.max_changes {
        return Some(format!(
            "the plan has {changes} changes, more than [sync] max_changes = {}",
            job.sync.max_changes
        ));
    }
    let percent = plan.unlink_percent();
    if percent > job.sync.max_unlink_percent {
        return Some(format!(
            "the plan unlinks {} of {} linked agents ({percent:.1}%), more than [sync] max_unlink_percent = {}",
            plan.count(plan::Action::Unlink),
            plan.linked_agents,
            job.sync.max_unlink_percent
        ));
    }
    None
}

/// One write per change; a failed write is recorded and the others go on.
fn apply(
    sink: &mut dyn Sink,
    agents: &[crate::sink::Agent],
    targets: &[usize],
    report: &mut Report,
    progress: &Progress,
) -> Result<Outcome> {
    let stage = progress.stage("writes", Some(report.changes.len() as u64));
    for (change, &index) in report.changes.iter_mut().zip(targets) {
        let agent = &agents[index];
        match sink.set_external_id(agent, change.new_external_id.as_deref()) {
            Ok(()) => change.status = Status::Applied,
            Err(e) => {
                change.status = Status::Failed;
                change.error = Some(crate::redact::redact(&format!("{e:#}")));
            }
        }
        stage.inc(1);
    }
    drop(stage);
    if let Err(e) = sink.commit() {
        // Nothing of a file sink was written: every change failed with it.
        for change in &mut report.changes {
            if change.status == Status::Applied {
                change.status = Status::Failed;
                change.error = Some(crate::redact::redact(&format!("{e:#}")));
            }
        }
    }
    let failed = report
        .changes
        .iter()
        .filter(|c| c.status == Status::Failed)
        .count();
    report.summary.failed = failed;
    progress.log(&format!(
        "applied {} of {} changes{}",
        report.changes.len() - failed,
        report.changes.len(),
        if failed > 0 {
            format!(", {failed} failed")
        } else {
            String::new()
        }
    ));
    Ok(if failed > 0 {
        Outcome::WritesFailed
    } else {
        Outcome::Success
    })
}

/// Append an applied report to the journal (a run that changed nothing is not
/// recorded: there is nothing to read or undo).
fn record(job: &Job, kind: &str, report: &Report) -> Result<()> {
    if report.changes.is_empty() {
        return Ok(());
    }
    let entry = journal::entry(&job.path, &job.name, kind, report);
    journal::append(&job.sync.journal, &entry).with_context(|| {
        format!(
            "the writes were applied, but run {} could not be journaled",
            entry.run
        )
    })?;
    crate::progress::debug(&format!(
        "journaled run {} in {}",
        entry.run,
        job.sync.journal.display()
    ));
    Ok(())
}

fn action(
    arg: &ConfigArg,
    name: &str,
    agent: Option<&str>,
    vars: Vec<(String, String)>,
    events: Option<&Path>,
    output: Output,
) -> Result<Outcome> {
    let mut job = load(arg)?;
    let Some(mut spec) = job.actions.remove(name) else {
        let declared: Vec<_> = job.actions.keys().map(String::as_str).collect();
        return Err(UsageError(format!(
            "{}: no action {name:?} is declared (declared: {})",
            job.path.display(),
            if declared.is_empty() {
                "none".into()
            } else {
                declared.join(", ")
            }
        ))
        .into());
    };
    let vars: BTreeMap<String, String> = vars.into_iter().collect();
    // Every request is checked before the first is sent.
    let batch: Vec<(String, BTreeMap<String, String>)> = match (agent, events) {
        (Some(email), _) => vec![(email.to_owned(), vars.clone())],
        (None, Some(path)) => {
            let events = if path == Path::new("-") {
                action::read_events(std::io::stdin().lock(), "stdin")?
            } else {
                let file = std::fs::File::open(path)
                    .with_context(|| format!("opening {}", path.display()))?;
                action::read_events(std::io::BufReader::new(file), &path.display().to_string())?
            };
            events
                .into_iter()
                .map(|e| {
                    let mut merged = vars.clone();
                    merged.extend(e.vars);
                    (e.email, merged)
                })
                .collect()
        }
        (None, None) => return Err(UsageError("give --agent EMAIL or --events FILE".into()).into()),
    };
    for (email, vars) in &batch {
        let missing = action::missing_vars(&spec, vars);
        if !missing.is_empty() {
            let sets: Vec<_> = missing.iter().map(|k| format!("--set {k}=VALUE")).collect();
            return Err(UsageError(format!(
                "action {name:?} needs {} for {email}: pass {}",
                missing
                    .iter()
                    .map(|k| format!("{{{{var.{k}}}}}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                sets.join(" ")
            ))
            .into());
        }
    }

    let progress = Progress::new();
    let mut sink = open_sink(&mut job)?;
    let agents = sink
        .list_agents(&progress)
        .context("listing the agent directory")?;
    let directory = action::Directory::new(&agents);
    let (client, base) = match spec.endpoint.as_mut() {
        Some(endpoint) => (endpoint.client(), endpoint.base_url.clone()),
        None => (
            job.source.endpoint.client(),
            job.source.endpoint.base_url.clone(),
        ),
    };

    let single = agent.is_some();
    let mut failed = 0;
    let mut out = std::io::stdout().lock();
    for (email, vars) in &batch {
        let outcome = match directory.find(email) {
            Ok((agent, ext)) => action::send(&client, &base, &spec, agent, ext, vars),
            Err(e) if single => return Err(e),
            Err(e) => action::Outcome {
                email: email.clone(),
                external_id: None,
                status: None,
                ok: false,
                error: Some(e.to_string()),
                response: None,
            },
        };
        if single && !outcome.ok {
            bail!("{name} for {email}: {}", outcome.error.unwrap_or_default());
        }
        failed += usize::from(!outcome.ok);
        match output {
            Output::Json => {
                serde_json::to_writer(&mut out, &outcome)?;
                writeln!(out)?;
            }
            Output::Human => {
                let status = outcome.status.map_or("-".into(), |s| s.to_string());
                match &outcome.error {
                    None => writeln!(
                        out,
                        "{name} {email} (external ID {}): HTTP {status}",
                        outcome.external_id.as_deref().unwrap_or("-")
                    )?,
                    Some(e) => writeln!(out, "{name} {email}: FAILED: {e}")?,
                }
                if let Some(resp) = outcome
                    .response
                    .as_ref()
                    .filter(|_| crate::progress::verbose())
                {
                    writeln!(out, "  {resp}")?;
                }
            }
        }
    }
    out.flush()?;
    if failed > 0 {
        progress.log(&format!(
            "{failed} of {} {name} requests failed",
            batch.len()
        ));
        return Ok(Outcome::WritesFailed);
    }
    Ok(Outcome::Success)
}

fn history(arg: &ConfigArg, output: Output) -> Result<Outcome> {
    let job = load(arg)?;
    let entries = journal::read(&job.sync.journal)?;
    let mut out = std::io::stdout().lock();
    match output {
        Output::Json => {
            serde_json::to_writer_pretty(&mut out, &entries)?;
            writeln!(out)?;
        }
        Output::Human => {
            if entries.is_empty() {
                writeln!(out, "no applied runs in {}", job.sync.journal.display())?;
            }
            for e in &entries {
                writeln!(
                    out,
                    "{}  {}  {:<24}  {} link, {} update, {} unlink, {} failed",
                    e.run,
                    e.time,
                    e.kind,
                    e.summary.link,
                    e.summary.update,
                    e.summary.unlink,
                    e.summary.failed
                )?;
            }
        }
    }
    Ok(Outcome::Success)
}

/// Undo one journaled run: every change it applied is set back, unless the
/// agent changed since (then it is a conflict and left alone).
fn revert(arg: &ConfigArg, run_id: &str, dry_run: bool, output: Output) -> Result<Outcome> {
    let mut job = load(arg)?;
    let entries = journal::read(&job.sync.journal)?;
    let entry = journal::find(&entries, run_id)?.clone();
    let progress = Progress::new();
    let mut sink = open_sink(&mut job)?;
    let _lock = crate::lock::acquire(&job.path)?;
    let agents = sink
        .list_agents(&progress)
        .context("listing the agent directory; nothing was written")?;

    let mut plan = plan::Plan {
        linked_agents: agents.iter().filter(|a| a.external_id.is_some()).count(),
        ..plan::Plan::default()
    };
    for change in entry.changes.iter().filter(|c| c.status == Status::Applied) {
        let found = agents.iter().position(|a| {
            a.id == change.agent_id && plan::normalize(&a.email) == plan::normalize(&change.email)
        });
        let Some(index) = found else {
            plan.conflicts.push(plan::Conflict {
                email: change.email.clone(),
                reason: format!("agent {} is no longer in the directory", change.agent_id),
            });
            continue;
        };
        let current = agents[index].external_id.clone();
        if current != change.new_external_id {
            plan.conflicts.push(plan::Conflict {
                email: change.email.clone(),
                reason: format!(
                    "changed since run {}: external ID is now {}, not {}",
                    entry.run,
                    current.as_deref().unwrap_or("(none)"),
                    change.new_external_id.as_deref().unwrap_or("(none)")
                ),
            });
            continue;
        }
        let action = match (&current, &change.old_external_id) {
            (None, _) => plan::Action::Link,
            (Some(_), None) => plan::Action::Unlink,
            (Some(_), Some(_)) => plan::Action::Update,
        };
        plan.changes.push(plan::Change {
            action,
            email: change.email.clone(),
            agent_id: change.agent_id.clone(),
            old_external_id: current,
            new_external_id: change.old_external_id.clone(),
            agent: index,
        });
    }
    let targets: Vec<usize> = plan.changes.iter().map(|c| c.agent).collect();
    let mut report = Report::new(dry_run, &source::Fetched::default(), agents.len(), plan);
    progress.log(&format!(
        "revert of run {} ({}): {} changes to undo, {} refused",
        entry.run,
        entry.time,
        report.changes.len(),
        report.conflicts.len()
    ));
    let outcome = if dry_run {
        Outcome::Success
    } else {
        let outcome = apply(sink.as_mut(), &agents, &targets, &mut report, &progress)?;
        record(&job, &format!("revert of {}", entry.run), &report)?;
        outcome
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match output {
        Output::Json => report.write_json(&mut out)?,
        Output::Human => report.write_human(&mut out)?,
    }
    out.flush()?;
    Ok(outcome)
}

fn mock_options(args: &MockArgs) -> mock::MockOptions {
    mock::MockOptions {
        addr: args.addr.clone(),
        users: args.users,
        agents: args.agents,
        page_size: args.page_size as usize,
        latency_ms: args.latency_ms,
        log: true,
        patch: !args.no_patch,
        etag: !args.no_etag,
        filter: !args.no_filter,
        talkdesk: args.talkdesk.then(|| mock::TalkdeskClient {
            id: args.client_id.clone(),
            secret: args.client_secret.clone(),
        }),
    }
}

/// The bundled punch-clock job, pointed at the mock's address.
const DEMO_CONFIG: &str = include_str!("../configs/punch.toml");
const MOCK_DEFAULT: &str = "http://127.0.0.1:8787";

fn demo(args: &MockArgs) -> Result<Outcome> {
    let mut opts = mock_options(args);
    // The demo's own log says what was written.
    opts.log = false;
    if args.addr == "127.0.0.1:8787" {
        opts.addr = "127.0.0.1:0".into();
    }
    let server = mock::start(opts)?;
    let dir = tempfile::tempdir().context("creating a folder for the demo's journal")?;
    let text = DEMO_CONFIG.replace(MOCK_DEFAULT, &server.base_url());
    let path = dir.path().join("punch.toml");
    std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
    let job_for = |p: &Path| -> Result<Job> { Ok(config::load(p)?) };

    let say = |title: &str| -> Result<()> {
        let mut out = std::io::stdout().lock();
        writeln!(out, "\n=== {title} ===")?;
        out.flush()?;
        Ok(())
    };
    eprintln!(
        "demo: mock APIs on {} (configs/punch.toml pointed at it)",
        server.base_url()
    );
    let dry = SyncArgs {
        config: ConfigArg { config: None },
        dry_run: true,
        force: false,
        detailed_exitcode: false,
    };
    let apply = SyncArgs {
        dry_run: false,
        ..dry.clone()
    };
    say("1. agentsync --config configs/punch.toml --dry-run")?;
    sync_job(job_for(&path)?, &dry, Output::Human)?;
    say("2. agentsync --config configs/punch.toml")?;
    let applied = sync_job(job_for(&path)?, &apply, Output::Human)?;
    say("3. agentsync --config configs/punch.toml --dry-run (again)")?;
    sync_job(job_for(&path)?, &dry, Output::Human)?;
    Ok(applied)
}

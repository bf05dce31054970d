//! The commands: each turns its parsed arguments into calls of the engine (or
//! of the source, the mock, the journal) and prints the result through
//! [`crate::output`]. How a command ends becomes its exit code in
//! [`crate::exit`].

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::action;
use crate::cli::{Cli, Command, ConfigArg, MockArgs, Output, SyncArgs};
use crate::config::{self, Job};
use crate::engine::{self, RunOptions};
use crate::exit::{self, Ending};
use crate::mock;
use crate::output::{self, FetchView, HistoryView};
use crate::progress::Progress;
use crate::source;
use crate::state::journal;

pub(crate) fn dispatch(cli: Cli) -> Result<Ending> {
    let output = cli.global.output;
    match cli.command {
        None => sync(&cli.sync, output),
        Some(Command::Sync(args)) => sync(&args, output),
        Some(Command::Fetch { config, pages }) => fetch(&config, pages, output),
        Some(Command::Check { config }) => check(&config, output),
        Some(Command::Mock(args)) => {
            mock::serve(mock_options(&args))?;
            Ok(Ending::Success)
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
            Ok(Ending::Success)
        }
    }
}

fn config_path(arg: &ConfigArg) -> Result<PathBuf> {
    arg.config
        .clone()
        .ok_or_else(|| exit::usage("no config given: pass --config FILE or set AGENTSYNC_CONFIG"))
}

fn load(arg: &ConfigArg) -> Result<Job> {
    Ok(config::load(&config_path(arg)?)?)
}

fn fetch(arg: &ConfigArg, pages: Option<u64>, output: Output) -> Result<Ending> {
    let mut job = load(arg)?;
    let progress = Progress::new();
    let client = job.source.endpoint.client();
    let fetched = source::fetch(&job, &client, pages, &progress)?;
    output::emit(output, &FetchView::new(&fetched))?;
    Ok(Ending::Success)
}

fn check(arg: &ConfigArg, output: Output) -> Result<Ending> {
    let job = load(arg)?;
    output::emit(output, &crate::describe::describe(&job))?;
    Ok(Ending::Success)
}

fn sync(args: &SyncArgs, output: Output) -> Result<Ending> {
    let job = load(&args.config)?;
    sync_job(job, args, output)
}

fn run_options(args: &SyncArgs) -> RunOptions {
    RunOptions {
        dry_run: args.dry_run,
        force: args.force,
        detailed_exitcode: args.detailed_exitcode,
    }
}

fn sync_job(job: Job, args: &SyncArgs, output: Output) -> Result<Ending> {
    let run = engine::sync(job, run_options(args), &Progress::new())?;
    output::emit(output, &run.report)?;
    Ok(run.ending)
}

fn action(
    arg: &ConfigArg,
    name: &str,
    agent: Option<&str>,
    vars: Vec<(String, String)>,
    events: Option<&Path>,
    output: Output,
) -> Result<Ending> {
    let mut job = load(arg)?;
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
        (None, None) => return Err(exit::usage("give --agent EMAIL or --events FILE")),
    };
    for (email, vars) in &batch {
        let missing = action::missing_vars(&spec, vars);
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
    }

    let progress = Progress::new();
    let mut sink = engine::open_sink(&mut job)?;
    // One agent is looked up by its email where the directory can; a batch,
    // or a directory without filters, is listed once.
    let found = match agent {
        Some(email) => sink
            .agents_with_email(email)
            .context("looking the agent up in the directory")?,
        None => None,
    };
    let agents = match found {
        Some(agents) => agents,
        None => sink
            .list_agents(&progress)
            .context("listing the agent directory")?,
    };
    let directory = action::AgentsByEmail::new(&agents);
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
            Err(e) => action::ActionResult {
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
        return Ok(Ending::WritesFailed);
    }
    Ok(Ending::Success)
}

fn history(arg: &ConfigArg, output: Output) -> Result<Ending> {
    let job = load(arg)?;
    let entries = journal::read(&job.sync.journal)?;
    output::emit(output, &HistoryView::new(&entries, &job.sync.journal))?;
    Ok(Ending::Success)
}

fn revert(arg: &ConfigArg, run_id: &str, dry_run: bool, output: Output) -> Result<Ending> {
    let job = load(arg)?;
    let options = RunOptions {
        dry_run,
        ..RunOptions::default()
    };
    let run = engine::revert(job, run_id, options, &Progress::new())?;
    output::emit(output, &run.report)?;
    Ok(run.ending)
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

fn demo(args: &MockArgs) -> Result<Ending> {
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

//! The commands: each turns its parsed arguments into calls of the engine (or
//! of the source, the mock, the journal) and prints the result through
//! [`crate::output`]. How a command ends becomes its exit code in
//! [`crate::exit`].

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};

use crate::action;
#[cfg(feature = "mock")]
use crate::cli::MockArgs;
use crate::cli::{Cli, Command, Output, SyncArgs};
use crate::config::{self, Job};
use crate::engine::{self, RunOptions};
use crate::exit::{self, Ending};
#[cfg(feature = "mock")]
use crate::mock;
use crate::output::{self, Esc, FetchView, HistoryView, Paint, Render, style};
use crate::progress::Progress;
use crate::saved::{self, SavedPlan};
use crate::source;
use crate::state::journal;

pub(crate) fn dispatch(cli: Cli) -> Result<Ending> {
    let output = cli.global.output;
    let config = cli.global.config.as_deref();
    if sends_requests(cli.command.as_ref()) {
        crate::http::refuse_socks_proxy(|name| std::env::var(name).ok())?;
    }
    match cli.command {
        None => sync(config, &cli.sync, output),
        Some(Command::Sync(args)) => sync(config, &args, output),
        Some(Command::Fetch { pages }) => fetch(config, pages, output),
        Some(Command::Check) => check(config, output),
        Some(Command::Schema) => config::schema::print(),
        #[cfg(feature = "mock")]
        Some(Command::Mock(args)) => {
            mock::serve(mock_options(&args))?;
            Ok(Ending::Success)
        }
        #[cfg(feature = "mock")]
        Some(Command::Demo(args)) => demo(&args),
        Some(Command::Action {
            name,
            agent,
            vars,
            events,
        }) => action(
            config,
            &name,
            agent.as_deref(),
            vars,
            events.as_deref(),
            output,
        ),
        Some(Command::Listen { addr }) => {
            let mut job = load(config)?;
            let sink = engine::open_sink(&mut job)?;
            crate::listen::run(job, sink, addr.as_deref())
        }
        Some(Command::History) => history(config, output),
        Some(Command::Revert {
            run,
            dry_run,
            out,
            force,
        }) => revert(config, &run, dry_run, out.as_deref(), force, output),
        Some(Command::Apply {
            plan,
            max_age,
            force,
        }) => apply(config, &plan, max_age, force, output),
        Some(Command::Completions { shell }) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "agentsync", &mut script);
            let mut out = std::io::stdout().lock();
            exit::stdout(out.write_all(&script).and_then(|()| out.flush()))?;
            Ok(Ending::Success)
        }
        Some(Command::Man) => man(),
    }
}

/// The man page, generated from the same definition as `--help`.
fn man() -> Result<Ending> {
    let cmd = <Cli as clap::CommandFactory>::command();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut page)
        .context("rendering the man page")?;
    let page = String::from_utf8(page).context("rendering the man page")?;
    // roff puts the definition of its apostrophe string before the title;
    // the title goes first, where `man -w`, `lexgrog` and people look for
    // it, and the definition right after (it is used only further down).
    let page = match page.find("\n.TH ") {
        Some(at) => {
            let (preamble, rest) = page.split_at(at + 1);
            let (title, body) = rest.split_at(rest.find('\n').map_or(rest.len(), |n| n + 1));
            format!("{title}{preamble}{body}")
        }
        None => page,
    };
    let mut out = std::io::stdout().lock();
    exit::stdout(out.write_all(page.as_bytes()).and_then(|()| out.flush()))?;
    Ok(Ending::Success)
}

/// Does the command send requests (or check a config that will)? Those
/// refuse a proxy setting that cannot be honoured before anything is sent.
fn sends_requests(command: Option<&Command>) -> bool {
    !matches!(
        command,
        Some(Command::History | Command::Completions { .. } | Command::Man)
    ) && !is_mock(command)
}

#[cfg(feature = "mock")]
fn is_mock(command: Option<&Command>) -> bool {
    matches!(command, Some(Command::Mock(_)))
}

#[cfg(not(feature = "mock"))]
fn is_mock(_: Option<&Command>) -> bool {
    false
}

fn config_path(config: Option<&Path>) -> Result<&Path> {
    config.ok_or_else(|| exit::usage("no config given: pass --config FILE or set AGENTSYNC_CONFIG"))
}

fn load(config: Option<&Path>) -> Result<Job> {
    Ok(config::load(config_path(config)?)?)
}

/// Print a command's result on stdout (a closed stdout is no error).
fn print(output: Output, value: &impl Render) -> Result<()> {
    exit::stdout(output::emit(output, value))?;
    Ok(())
}

fn fetch(config: Option<&Path>, pages: Option<u64>, output: Output) -> Result<Ending> {
    let mut job = load(config)?;
    let progress = Progress::new();
    let client = job.source.endpoint.client();
    let fetched = source::fetch(&job, &client, pages, &progress)?;
    print(output, &FetchView::new(&fetched))?;
    Ok(Ending::Success)
}

fn check(config: Option<&Path>, output: Output) -> Result<Ending> {
    let job = load(config)?;
    print(output, &crate::describe::describe(&job))?;
    Ok(Ending::Success)
}

fn sync(config: Option<&Path>, args: &SyncArgs, output: Output) -> Result<Ending> {
    let path = config_path(config)?;
    let Some(out) = &args.out else {
        return sync_job(config::load(path)?, args, output);
    };
    let (job, config) = saved::load_config(path)?;
    let name = job.name.clone();
    let run = engine::sync(job, run_options(args), &Progress::new())?;
    let plan = SavedPlan::new(config, &name, "sync", &run.report.changes);
    save_and_print(&plan, out, &run, output)
}

/// Save a dry run's plan to `out`, then print its report.
fn save_and_print(
    plan: &SavedPlan,
    out: &Path,
    run: &engine::Run,
    output: Output,
) -> Result<Ending> {
    plan.write(out)?;
    print(output, &run.report)?;
    Progress::new().log(&format!(
        "saved the plan ({} changes) to {}: apply it with `agentsync apply {}`",
        plan.changes.len(),
        out.display(),
        out.display()
    ));
    Ok(run.ending.clone())
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
    print_run(run, output)
}

/// Print a run's report, then end as it ended (an error after writing began
/// fails the command once the report is out).
fn print_run(run: engine::Run, output: Output) -> Result<Ending> {
    print(output, &run.report)?;
    match run.error {
        Some(e) => Err(e),
        None => Ok(run.ending),
    }
}

fn action(
    config: Option<&Path>,
    name: &str,
    agent: Option<&str>,
    vars: Vec<(String, String)>,
    events: Option<&Path>,
    output: Output,
) -> Result<Ending> {
    let mut job = load(config)?;
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
    let batch = action_batch(&spec, name, agent, vars, events)?;

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
    let (mut failed, mut sent) = (0, 0);
    let mut out = output::stdout();
    for (event_id, email, vars) in &batch {
        let outcome = match directory.find(email) {
            Ok((agent, external_id)) => {
                let target = action::Target {
                    agent,
                    external_id,
                    vars,
                    event_id: event_id.as_deref(),
                };
                action::send(&client, &base, &spec, &target)
            }
            Err(e) if single => return Err(e),
            Err(e) => action::ActionResult {
                email: email.clone(),
                external_id: None,
                status: None,
                ok: false,
                error: Some(e.to_string()),
                response: None,
                retry: action::Retry::No,
            },
        };
        if single && !outcome.ok {
            bail!("{name} for {email}: {}", outcome.error.unwrap_or_default());
        }
        failed += usize::from(!outcome.ok);
        sent += 1;
        let line = action_line(&mut out, output, name, email, &outcome).and_then(|()| out.flush());
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

/// One request of a batch: the event's ID, the agent's email, the variables.
type BatchItem = (Option<String>, String, BTreeMap<String, String>);

/// The requests of an action, one per agent with its variables: every one is
/// checked before the first is sent.
fn action_batch(
    spec: &config::ActionSpec,
    name: &str,
    agent: Option<&str>,
    vars: Vec<(String, String)>,
    events: Option<&Path>,
) -> Result<Vec<BatchItem>> {
    let defaults: BTreeMap<String, String> = vars.into_iter().collect();
    match (agent, events) {
        (Some(email), _) => {
            let missing = action::missing_vars(spec, &defaults);
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
            Ok(vec![(None, email.to_owned(), defaults)])
        }
        (None, Some(path)) => {
            let (mut events, source) = if path == Path::new("-") {
                let events = action::read_events(std::io::stdin().lock(), "stdin")?;
                (events, "stdin".to_owned())
            } else {
                let source = path.display().to_string();
                let file =
                    std::fs::File::open(path).with_context(|| format!("opening {source}"))?;
                (
                    action::read_events(std::io::BufReader::new(file), &source)?,
                    source,
                )
            };
            // `--set` gives every event its defaults; an event's own vars win.
            for event in &mut events {
                let own = std::mem::replace(&mut event.vars, defaults.clone());
                event.vars.extend(own);
            }
            action::check_vars(spec, name, &events, &source)?;
            Ok(events
                .into_iter()
                .map(|e| (e.id, e.email, e.vars))
                .collect())
        }
        (None, None) => Err(exit::usage("give --agent EMAIL or --events FILE")),
    }
}

/// One result of an action on stdout: a JSON line, or a line for people.
fn action_line(
    out: &mut impl Write,
    output: Output,
    name: &str,
    email: &str,
    outcome: &action::ActionResult,
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
            match outcome
                .response
                .as_ref()
                .filter(|_| crate::progress::verbose())
            {
                Some(resp) => writeln!(out, "  {}", Esc(&resp.to_string())),
                None => Ok(()),
            }
        }
    }
}

/// The journal of a job, or why there is none.
fn journal_path(job: &Job) -> Result<&Path> {
    job.sync.journal.as_deref().ok_or_else(engine::no_state_dir)
}

fn history(config: Option<&Path>, output: Output) -> Result<Ending> {
    let job = load(config)?;
    let path = journal_path(&job)?;
    let entries = journal::read(path)?;
    print(output, &HistoryView::new(&entries, path))?;
    Ok(Ending::Success)
}

fn revert(
    config: Option<&Path>,
    run_id: &str,
    dry_run: bool,
    out: Option<&Path>,
    force: bool,
    output: Output,
) -> Result<Ending> {
    let options = RunOptions {
        dry_run,
        force,
        ..RunOptions::default()
    };
    let Some(out) = out else {
        let run = engine::revert(load(config)?, run_id, options, &Progress::new())?;
        return print_run(run, output);
    };
    let (job, config) = saved::load_config(config_path(config)?)?;
    // The plan names the run itself, not `last` or a prefix.
    let run_id = journal::find(&journal::read(journal_path(&job)?)?, run_id)?
        .run
        .clone();
    let name = job.name.clone();
    let run = engine::revert(job, &run_id, options, &Progress::new())?;
    let kind = format!("revert of {run_id}");
    let plan = SavedPlan::new(config, &name, &kind, &run.report.changes);
    save_and_print(&plan, out, &run, output)
}

/// Apply a saved plan, after refusing one of another format, of a changed or
/// other config, or older than `max_age`.
fn apply(
    config: Option<&Path>,
    plan_path: &Path,
    max_age: Duration,
    force: bool,
    output: Output,
) -> Result<Ending> {
    let plan = SavedPlan::read(plan_path)?;
    let config_path = plan.config_path(config)?;
    plan.check_age(max_age, SystemTime::now())?;
    let (job, config) = saved::load_config(&config_path)?;
    plan.check_config(&config)?;
    let options = RunOptions {
        force,
        ..RunOptions::default()
    };
    let run = engine::apply_saved(job, plan, plan_path, options, &Progress::new())?;
    print_run(run, output)
}

#[cfg(feature = "mock")]
fn mock_options(args: &MockArgs) -> mock::MockOptions {
    mock::MockOptions {
        addr: args.addr.clone(),
        users: args.users,
        agents: args.agents,
        page_size: usize::try_from(args.page_size).unwrap_or(usize::MAX),
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
#[cfg(feature = "mock")]
const DEMO_CONFIG: &str = include_str!("../configs/punch.toml");
#[cfg(feature = "mock")]
const MOCK_DEFAULT: &str = "http://127.0.0.1:8787";

#[cfg(feature = "mock")]
fn demo(args: &MockArgs) -> Result<Ending> {
    let mut opts = mock_options(args);
    // The demo's own log says what was written.
    opts.log = false;
    if args.addr == "127.0.0.1:8787" {
        opts.addr = "127.0.0.1:0".into();
    }
    let server = mock::start(opts)?;
    // The demo's journal and lock stay in its own folder: it leaves nothing in
    // the user's state directory.
    let dir = tempfile::tempdir().context("creating a folder for the demo's journal")?;
    let text = DEMO_CONFIG.replace(MOCK_DEFAULT, &server.base_url());
    let path = dir.path().join("punch.toml");
    std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
    let job_for = |p: &Path| -> Result<Job> {
        let mut job = config::load(p)?;
        job.sync.journal = Some(dir.path().join("punch.journal.jsonl"));
        job.sync.lock = Some(dir.path().join("punch.lock"));
        Ok(job)
    };

    let say = |title: &str| -> Result<()> {
        let mut out = output::stdout();
        exit::stdout(writeln!(out, "\n=== {title} ===").and_then(|()| out.flush()))?;
        Ok(())
    };
    eprintln!(
        "demo: mock APIs on {} (configs/punch.toml pointed at it)",
        server.base_url()
    );
    let dry = SyncArgs {
        dry_run: true,
        force: false,
        detailed_exitcode: false,
        out: None,
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

//! The commands: each loads its config, calls the engine (or the source, the
//! action module, the mock, the journal) and prints the result's view through
//! [`crate::output`]. How a command ends becomes its exit code in
//! [`crate::exit`].

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};

use crate::action;
#[cfg(feature = "mock")]
use crate::cli::MockArgs;
use crate::cli::{Cli, Command, Output, SyncArgs};
use crate::config::{self, Job};
use crate::engine::{self, Reverted, RunOptions};
use crate::exit::{self, Ending};
#[cfg(feature = "mock")]
use crate::mock;
use crate::output::{self, Render};
use crate::progress::Progress;
use crate::saved::{self, SavedPlan};
use crate::source::{self, FetchView};
use crate::state::runs::NothingToUndo;
use crate::state::{HistoryView, NothingView};

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
        Some(Command::Schema) => {
            let mut out = std::io::stdout().lock();
            let text = config::schema::text();
            exit::stdout(out.write_all(text.as_bytes()).and_then(|()| out.flush()))?;
            Ok(Ending::Success)
        }
        #[cfg(feature = "mock")]
        Some(Command::Mock(args)) => {
            mock::serve(mock_options(&args))?;
            Ok(Ending::Success)
        }
        #[cfg(feature = "mock")]
        Some(Command::Demo(args)) => mock::demo(mock_options(&args)),
        Some(Command::Action {
            name,
            agent,
            vars,
            events,
        }) => action::run(
            load(config)?,
            &name,
            agent.as_deref(),
            vars,
            events.as_deref(),
            output,
        ),
        Some(Command::Listen { addr }) => {
            crate::listen::run(load(config)?, engine::open_sink, addr.as_deref())
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
    config::load(config_path(config)?)
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
    match fetched.nothing_mapped() {
        Some(why) => Err(anyhow::anyhow!(why)),
        None => Ok(Ending::Success),
    }
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
    let key_dir = saved::key_dir(&job)?;
    let run = engine::sync(job, run_options(args), &Progress::new())?;
    let plan = SavedPlan::new(config, &name, "sync", &run.report.changes);
    save_and_print(&plan, &key_dir, out, &run, output)
}

/// Save a dry run's plan to `out`, then print its report.
fn save_and_print(
    plan: &SavedPlan,
    key_dir: &Path,
    out: &Path,
    run: &engine::Run,
    output: Output,
) -> Result<Ending> {
    plan.write(out, key_dir)?;
    print(output, &run.report)?;
    // A plan over a limit is saved for review; applying it needs --force.
    let how = match &run.report.refusal {
        None => format!("apply it with `agentsync apply {}`", out.display()),
        Some(_) => format!(
            "it is over a limit (see `Refused:` above), so a plain apply is refused: once reviewed, apply it with `agentsync apply --force {}`",
            out.display()
        ),
    };
    Progress::new().log(&format!(
        "saved the plan ({} changes) to {}: {how}",
        plan.changes.len(),
        out.display(),
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

/// The journal of a job, or why there is none.
fn journal_path(job: &Job) -> Result<&Path> {
    job.sync.journal.as_deref().ok_or_else(engine::no_state_dir)
}

fn history(config: Option<&Path>, output: Output) -> Result<Ending> {
    let job = load(config)?;
    let path = journal_path(&job)?;
    let entries = engine::history(&job)?;
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
        return match engine::revert(load(config)?, run_id, options, &Progress::new())? {
            Reverted::Ran { run, .. } => print_run(*run, output),
            Reverted::Nothing(nothing) => nothing_to_revert(&nothing, output),
        };
    };
    let (job, config) = saved::load_config(config_path(config)?)?;
    let name = job.name.clone();
    let key_dir = saved::key_dir(&job)?;
    let (run, of) = match engine::revert(job, run_id, options, &Progress::new())? {
        Reverted::Ran { run, of } => (*run, of),
        Reverted::Nothing(nothing) => return nothing_to_revert(&nothing, output),
    };
    // The plan names the run itself, not `last` or a prefix.
    let kind = format!("revert of {of}");
    let plan = SavedPlan::new(config, &name, &kind, &run.report.changes);
    save_and_print(&plan, &key_dir, out, &run, output)
}

/// `revert last` with nothing to undo: said on stdout, where a revert's
/// report goes (a line, or JSON), nothing written, exit 0.
fn nothing_to_revert(nothing: &NothingToUndo, output: Output) -> Result<Ending> {
    print(output, &NothingView(nothing))?;
    Ok(Ending::Success)
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
    // The key that seals plans is in the state directory, which the
    // environment names (not the plan, not its config).
    let key_dir = crate::state::state_dir(&|name| std::env::var(name).ok())
        .ok_or_else(engine::no_state_dir)?;
    let plan = SavedPlan::read(plan_path, &key_dir)?;
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
        max_results: usize::try_from(args.max_page_size).unwrap_or(usize::MAX),
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

//! `agentsync demo`: the bundled punch-clock job against the mock, three runs
//! in a row (a dry run, the sync, a dry run again), the reports on stdout;
//! then its listener, sent a signed login and logout ([`super::demo_listen`]),
//! and the punches the time clock recorded.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

use super::MockOptions;
use crate::config::{self, Job};
use crate::engine::{self, RunOptions};
use crate::exit::{self, Ending};
use crate::output::{self, Output};
use crate::progress::Progress;

/// The bundled punch-clock job, pointed at the mock's address.
const DEMO_CONFIG: &str = include_str!("../../configs/punch.toml");
const MOCK_DEFAULT: &str = "http://127.0.0.1:8787";

/// Start the mock with `opts` (on a free port unless another address than the
/// default was asked for), then sync the bundled job against it.
pub(crate) fn demo(mut opts: MockOptions) -> Result<Ending> {
    // The demo's own log says what was written.
    opts.log = false;
    if opts.addr == "127.0.0.1:8787" {
        opts.addr = "127.0.0.1:0".into();
    }
    // Agent 1 exists and is linked by the sync when there is a user and an agent.
    let agent = (opts.users >= 1 && opts.agents >= 1).then(|| super::email(1));
    let server = super::start(opts)?;
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
        if let Some(config::SinkSpec::Scim {
            directory_cache, ..
        }) = job.sink.as_mut()
        {
            *directory_cache = Some(dir.path().join("punch.directory.json"));
        }
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
    let dry = RunOptions {
        dry_run: true,
        force: false,
        detailed_exitcode: false,
    };
    let apply = RunOptions {
        dry_run: false,
        ..dry
    };
    say("1. agentsync --config configs/punch.toml --dry-run")?;
    sync(job_for(&path)?, dry)?;
    say("2. agentsync --config configs/punch.toml")?;
    let applied = sync(job_for(&path)?, apply)?;
    say("3. agentsync --config configs/punch.toml --dry-run (again)")?;
    sync(job_for(&path)?, dry)?;
    say("4. agentsync listen --config configs/punch.toml: a login and a logout, signed")?;
    let step = match agent {
        Some(email) => {
            let state = dir.path().join("listen");
            let done = super::demo_listen::run(&path, &state, &server.base_url(), &email)?;
            done.render()
        }
        None => "no agent to punch: the mock has no users or no agents\n".to_owned(),
    };
    let mut out = output::stdout();
    exit::stdout(out.write_all(step.as_bytes()).and_then(|()| out.flush()))?;
    Ok(applied)
}

/// One run, its report printed for people, ending as it ended.
fn sync(job: Job, options: RunOptions) -> Result<Ending> {
    let run = engine::sync(job, options, &Progress::new())?;
    exit::stdout(output::emit(Output::Human, &run.report))?;
    match run.error {
        Some(e) => Err(e),
        None => Ok(run.ending),
    }
}

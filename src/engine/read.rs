//! The two reads a sync starts with, side by side: the source and the
//! directory listing.

use anyhow::{Context, Result};

use super::check_min_users;
use crate::config::Job;
use crate::progress::Progress;
use crate::sink::Sink;
use crate::source::{self, Fetched};

/// Read the source and list the directory at the same time: they are
/// independent, and at a rate limit each is mostly waiting. When one fails,
/// the other stops before its next request, and the first failure is the
/// one reported (the source's when both failed on their own, as when they
/// were read in turn).
pub(super) fn read_both(
    job: &Job,
    client: &crate::http::Client,
    sink: &mut dyn Sink,
    progress: &Progress,
) -> Result<(Fetched, Vec<crate::sink::Agent>)> {
    let (fetched, agents) = std::thread::scope(|scope| {
        let reading = scope.spawn(|| {
            let fetched = source::fetch(job, client, None, progress)
                .context("reading the source; nothing was written")
                .and_then(|fetched| check_min_users(job, &fetched).map(|()| fetched));
            if fetched.is_err() {
                progress.halt();
            }
            fetched
        });
        let agents = sink
            .list_agents(progress)
            .context("listing the agent directory; nothing was written");
        if agents.is_err() {
            progress.halt();
        }
        let fetched = reading
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (fetched, agents)
    });
    let halted = |e: &anyhow::Error| e.downcast_ref::<crate::pages::Halted>().is_some();
    match (fetched, agents) {
        (Ok(fetched), Ok(agents)) => Ok((fetched, agents)),
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => Err(e),
        (Err(source), Err(listing)) if halted(&source) && !halted(&listing) => Err(listing),
        (Err(source), Err(_)) => Err(source),
    }
}

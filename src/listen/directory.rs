//! The agent directory held in memory: email → agent and external ID, listed
//! once at start through the sink (as `sync` lists it), again every
//! `refresh_secs`, and soon after a worker meets an email it does not know
//! (at most every [`MIN_REFRESH`], or `refresh_secs` if shorter). A login costs no directory request: a
//! shift change of thousands is not throttled by the directory's rate limit.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::plan::normalize;
use crate::progress::{Level, Progress, line};
use crate::sink::{Agent, Sink};

/// The shortest time between two listings asked for by unknown emails.
pub(crate) const MIN_REFRESH: Duration = Duration::from_secs(30);
/// The wait before a failed listing is tried again.
const RETRY_LISTING: Duration = Duration::from_secs(10);

/// What the directory says of an email.
#[derive(Debug)]
pub(crate) enum Lookup {
    Found {
        agent: Agent,
        external_id: String,
    },
    /// Unknown, ambiguous or without an external ID in listing `generation`.
    Missing {
        why: String,
        generation: u64,
    },
    /// Not listed yet.
    NotYet,
}

struct Snapshot {
    agents: Vec<Agent>,
    by_email: HashMap<String, Vec<usize>>,
}

struct State {
    snapshot: Option<Arc<Snapshot>>,
    /// Listings done; a new one may know an email the last did not.
    generation: u64,
    wanted: bool,
    stopping: bool,
}

/// The directory in memory, and the thread that lists it.
pub(crate) struct Directory {
    state: Mutex<State>,
    changed: Condvar,
}

impl Directory {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Start listing `sink` on a thread of its own, every `refresh`.
    pub(crate) fn start(
        sink: Box<dyn Sink>,
        refresh: Duration,
    ) -> Result<(Arc<Directory>, JoinHandle<()>)> {
        let dir = Arc::new(Directory {
            state: Mutex::new(State {
                snapshot: None,
                generation: 0,
                wanted: true,
                stopping: false,
            }),
            changed: Condvar::new(),
        });
        let shared = dir.clone();
        let handle = std::thread::Builder::new()
            .name("directory".into())
            .spawn(move || shared.refresher(sink, refresh))
            .context("starting the directory thread")?;
        Ok((dir, handle))
    }

    fn refresher(&self, mut sink: Box<dyn Sink>, refresh: Duration) {
        let progress = Progress::new();
        let mut last: Option<Instant> = None;
        loop {
            {
                let mut state = self.lock();
                loop {
                    if state.stopping {
                        return;
                    }
                    let since = last.map(|l| l.elapsed());
                    let due = match since {
                        None => true,
                        Some(s) => s >= refresh || (state.wanted && s >= refresh.min(MIN_REFRESH)),
                    };
                    if due {
                        break;
                    }
                    let wait = since.map_or(Duration::ZERO, |s| {
                        let until = if state.wanted {
                            refresh.min(MIN_REFRESH)
                        } else {
                            refresh
                        };
                        until.saturating_sub(s)
                    });
                    state = self
                        .changed
                        .wait_timeout(state, wait)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
            let started = Instant::now();
            match crate::action::batch::agents(sink.as_mut(), None, &progress) {
                Ok(agents) => {
                    let count = agents.len();
                    let mut by_email: HashMap<String, Vec<usize>> = HashMap::new();
                    for (i, a) in agents.iter().enumerate() {
                        by_email.entry(normalize(&a.email)).or_default().push(i);
                    }
                    let mut state = self.lock();
                    state.snapshot = Some(Arc::new(Snapshot { agents, by_email }));
                    state.generation += 1;
                    state.wanted = false;
                    drop(state);
                    last = Some(started);
                    line(
                        Level::Info,
                        &format!("listed the agent directory: {count} agents"),
                        &[("agents", count.into())],
                    );
                }
                Err(e) => {
                    line(
                        Level::Warn,
                        &format!("listing the agent directory failed (tried again soon): {e:#}"),
                        &[],
                    );
                    // Tried again after RETRY_LISTING, whatever `refresh` is.
                    last = Some(
                        started
                            .checked_sub(refresh.saturating_sub(RETRY_LISTING))
                            .unwrap_or(started),
                    );
                }
            }
        }
    }

    /// The agent with `email`, from the last listing.
    pub(crate) fn find(&self, email: &str) -> Lookup {
        let (snapshot, generation) = {
            let state = self.lock();
            (state.snapshot.clone(), state.generation)
        };
        let Some(snap) = snapshot else {
            return Lookup::NotYet;
        };
        let missing = |why: String| Lookup::Missing { why, generation };
        match snap.by_email.get(&normalize(email)).map(Vec::as_slice) {
            None | Some([]) => missing(format!("no agent has the email {email} in the directory")),
            Some([i]) => {
                let agent = &snap.agents[*i];
                match &agent.external_id {
                    Some(ext) if !ext.is_empty() => Lookup::Found {
                        agent: agent.clone(),
                        external_id: ext.clone(),
                    },
                    _ => missing(format!(
                        "agent {} ({}) has no external ID: run a sync first",
                        agent.email, agent.id
                    )),
                }
            }
            Some(many) => missing(format!(
                "{} agents have the email {email}: ambiguous",
                many.len()
            )),
        }
    }

    /// Ask for a listing soon (an email was not found).
    pub(crate) fn want_refresh(&self) {
        self.lock().wanted = true;
        self.changed.notify_all();
    }

    /// End the listing thread (after the listing in progress, if any).
    pub(crate) fn stop(&self) {
        self.lock().stopping = true;
        self.changed.notify_all();
    }
}

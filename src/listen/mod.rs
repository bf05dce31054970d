//! `agentsync listen`: receive agent events (login/logout webhooks) over HTTP
//! and run each one's route action with the agent's external ID — durably
//! (an event is acknowledged once it is in the SQLite queue of the state
//! directory), once per event ID, in order per agent, until SIGTERM/SIGINT.
//!
//! The one asynchronous room of the crate: the HTTP server ([`server`]) runs
//! on a small tokio runtime made here; the queue writer ([`queue`]), the
//! directory listing ([`directory`]) and the workers that send the actions
//! ([`deliver`]) are plain threads using the crate's synchronous code.

mod deliver;
mod directory;
mod event;
mod metrics;
mod queue;
mod sched;
mod server;
mod verify;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use anyhow::{Context, Result, anyhow};

use crate::action::batch::Declared;
use crate::config::{Job, check_addr};
use crate::exit::{self, Ending};
use crate::progress::{Level, line};
use crate::sink::Sink;

/// Counts a running worker; the count drops when the worker ends, however.
struct Alive(Arc<AtomicUsize>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The senders of the actions the routes name, each with its own client (or
/// one shared client of the source's endpoint). Retries are the queue's, not
/// the client's: a worker is never held by a wait.
fn senders(job: &mut Job, names: &[String]) -> BTreeMap<String, Declared> {
    let mut shared: Option<(Arc<crate::http::Client>, url::Url)> = None;
    let mut out = BTreeMap::new();
    for name in names {
        let Some(mut spec) = job.actions.remove(name) else {
            continue;
        };
        let (client, base) = match spec.endpoint.as_mut() {
            Some(endpoint) => {
                endpoint.settings.retries = 0;
                (Arc::new(endpoint.client()), endpoint.base_url.clone())
            }
            None => shared
                .get_or_insert_with(|| {
                    let endpoint = &mut job.source.endpoint;
                    endpoint.settings.retries = 0;
                    (Arc::new(endpoint.client()), endpoint.base_url.clone())
                })
                .clone(),
        };
        out.insert(name.clone(), Declared::new(spec, client, base));
    }
    out
}

/// Run the listener of `job` (its `[listen]`) on `addr` or the config's,
/// with the agents of the sink `open_sink` opens (once the listener's own
/// settings are checked), until a signal. Ends with success once the actions
/// in flight are done.
pub(crate) fn run(
    mut job: Job,
    open_sink: fn(&mut Job) -> Result<Box<dyn Sink>>,
    addr: Option<&str>,
) -> Result<Ending> {
    let Some(spec) = job.listen.take() else {
        return Err(exit::usage(format!(
            "{}: the config has no [listen] table: nothing to listen for",
            job.path.display()
        )));
    };
    let addr = match addr {
        Some(a) => {
            check_addr(a).map_err(|why| exit::usage(format!("--addr: {why}")))?;
            a.trim().to_owned()
        }
        None => spec.addr.clone(),
    };
    let verifier = verify::Verifier::load(&spec.auth, spec.tolerance, &|n| std::env::var(n).ok())?;
    let (Some(queue_path), Some(lock_path)) = (spec.queue.clone(), spec.lock.clone()) else {
        return Err(anyhow!(
            "no state directory for the event queue: set AGENTSYNC_STATE_DIR (or STATE_DIRECTORY, XDG_STATE_HOME, HOME)"
        ));
    };
    let sink = open_sink(&mut job)?;
    let _lock = crate::state::lock::acquire(&lock_path, &job.path)?;
    let mut names: Vec<String> = spec.routes.iter().map(|r| r.action.clone()).collect();
    names.sort();
    names.dedup();
    let actions = senders(&mut job, &names);
    // Caught from here on: the first signal stops the listener gracefully, a
    // second ends it at once.
    let watch = crate::signals::Watch::install()?;

    let (conn, pending) = queue::open(&queue_path)?;
    let sched = Arc::new(sched::Sched::default());
    if !pending.is_empty() {
        line(
            Level::Info,
            &format!("{} events queued before are sent first", pending.len()),
            &[("pending", pending.len().into())],
        );
    }
    sched.push(pending);
    let (queue, _writer) = queue::Queue::start(conn, &queue_path, sched.clone())?;
    let (directory, _lister) = directory::Directory::start(sink, spec.refresh)?;
    let metrics = Arc::new(metrics::Metrics::default());
    let workers = Arc::new(deliver::Workers {
        sched: sched.clone(),
        queue: queue.clone(),
        directory: directory.clone(),
        actions,
        metrics: metrics.clone(),
        max_delivery: spec.max_delivery,
    });
    let alive = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    for n in 0..spec.workers {
        let (workers, guard) = (workers.clone(), Alive(alive.clone()));
        alive.fetch_add(1, Ordering::SeqCst);
        let thread = std::thread::Builder::new()
            .name(format!("deliver-{n}"))
            .spawn(move || {
                let _guard = guard;
                workers.run();
            })
            .context("starting the delivery workers")?;
        threads.push(thread);
    }

    let listener = std::net::TcpListener::bind(&addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .with_context(|| format!("listening on {addr}"))?;
    let bound = listener.local_addr().context("the listening address")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("listen-http")
        .enable_all()
        .build()
        .context("starting the HTTP runtime")?;
    let spec = Arc::new(spec);
    let app = Arc::new(server::App {
        spec: spec.clone(),
        verifier,
        queue,
        sched: sched.clone(),
        metrics,
        workers_alive: alive,
        workers: spec.workers,
    });
    line(
        Level::Info,
        &format!("listening on http://{bound}"),
        &[
            ("addr", bound.to_string().into()),
            ("path", spec.path.clone().into()),
        ],
    );
    let caught = watch.flag();
    let stop = Arc::new(AtomicBool::new(false));
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let flag = stop.clone();
        tokio::spawn(async move {
            while caught.load(Ordering::SeqCst) == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            flag.store(true, Ordering::SeqCst);
        });
        server::serve(listener, server::router(app), stop).await;
        anyhow::Ok(())
    })?;
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    let signal = watch.caught().map_or("a signal", crate::signals::name);
    line(
        Level::Info,
        &format!("{signal}: no longer accepting events; finishing the actions in flight"),
        &[],
    );
    sched.stop();
    directory.stop();
    for thread in threads {
        let _ = thread.join();
    }
    let (depth, _) = sched.depth();
    line(
        Level::Info,
        &format!("stopped; {depth} events stay queued for the next start"),
        &[("pending", depth.into())],
    );
    Ok(Ending::Success)
}

//! The durable queue: an SQLite database in the state directory (WAL,
//! `synchronous=FULL`), written by one thread that commits whatever arrived
//! together in one transaction (group commit). An event is acknowledged only
//! after the commit that holds it returned; its `id` is UNIQUE, so a repeat is
//! known and never queued twice; rows of delivered events stay as the record
//! of the IDs seen.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use super::sched::Sched;

/// The most commands one transaction takes.
const MAX_BATCH: usize = 2048;

/// An event to queue: what the route decided for it.
#[derive(Debug, Clone)]
pub(crate) struct NewEvent {
    pub id: String,
    pub email: String,
    pub action: String,
    pub vars: BTreeMap<String, String>,
}

/// A queued event waiting for its action.
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    /// Its place in the queue: the order of arrival.
    pub seq: i64,
    pub event: NewEvent,
    /// The agent it belongs to (the normalised email): one in flight each.
    pub key: String,
    pub received_ms: i64,
    pub attempts: u32,
    /// Not sent before this time (Unix milliseconds).
    pub next_ms: i64,
    /// The directory generation in which its agent was not found, if it was not.
    pub lookup_gen: Option<u64>,
}

/// What the queue made of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accept {
    /// On disk, flushed.
    Queued,
    /// Its ID was accepted before.
    Duplicate,
    /// The queue could not be written.
    Unavailable,
}

/// How a delivery ended, to be recorded.
#[derive(Debug, Clone)]
pub(crate) enum Update {
    Done {
        seq: i64,
    },
    Failed {
        seq: i64,
        error: String,
    },
    Retry {
        seq: i64,
        attempts: u32,
        next_ms: i64,
        error: String,
    },
}

enum Command {
    Insert(NewEvent, oneshot::Sender<Accept>),
    Update(Update, oneshot::Sender<bool>),
    /// A small write to learn whether the queue takes writes again.
    Probe(oneshot::Sender<bool>),
}

/// After a failed write the queue counts as unwritable for this long before
/// a probe may say otherwise: a half-full disk that takes an update but not
/// an event does not flap between healthy and not.
const UNHEALTHY_MS: i64 = 5000;

/// The writer's end, shared by the server and the workers.
#[derive(Clone)]
pub(crate) struct Queue {
    tx: mpsc::Sender<Command>,
    /// When a commit last failed (Unix ms); 0 once events are written again.
    failed_at: Arc<AtomicI64>,
}

/// Now, in Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Open (or create) the queue at `path`; the pending events, oldest first.
pub(crate) fn open(path: &Path) -> Result<(Connection, Vec<Queued>)> {
    if let Some(dir) = path.parent() {
        crate::state::ensure_dir(dir)?;
    }
    // Made private before SQLite opens it (its WAL and shared-memory files
    // take the same mode): it holds people's emails. Not through a link.
    {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .with_context(|| format!("opening the event queue {}", path.display()))?;
    }
    let conn = Connection::open(path)
        .with_context(|| format!("opening the event queue {}", path.display()))?;
    let setup = || -> rusqlite::Result<()> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS events (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                id TEXT NOT NULL UNIQUE,
                email TEXT NOT NULL,
                action TEXT NOT NULL,
                vars TEXT NOT NULL,
                received_ms INTEGER NOT NULL,
                state TEXT NOT NULL DEFAULT 'pending',
                attempts INTEGER NOT NULL DEFAULT 0,
                next_ms INTEGER NOT NULL DEFAULT 0,
                last_error TEXT,
                done_ms INTEGER
             );
             CREATE INDEX IF NOT EXISTS pending ON events (seq) WHERE state = 'pending';
             CREATE TABLE IF NOT EXISTS probe (k TEXT PRIMARY KEY, v BLOB, at INTEGER);",
        )
    };
    setup().with_context(|| format!("setting up the event queue {}", path.display()))?;
    let pending = load_pending(&conn)
        .with_context(|| format!("reading the event queue {}", path.display()))?;
    Ok((conn, pending))
}

fn load_pending(conn: &Connection) -> rusqlite::Result<Vec<Queued>> {
    let mut stmt = conn.prepare(
        "SELECT seq, id, email, action, vars, received_ms, attempts, next_ms
         FROM events WHERE state = 'pending' ORDER BY seq",
    )?;
    let rows = stmt.query_map([], |row| {
        let vars: String = row.get(4)?;
        let email: String = row.get(2)?;
        Ok(Queued {
            seq: row.get(0)?,
            key: crate::plan::normalize(&email),
            event: NewEvent {
                id: row.get(1)?,
                email,
                action: row.get(3)?,
                // Written by this module from a map of strings.
                vars: serde_json::from_str(&vars).unwrap_or_default(),
            },
            received_ms: row.get(5)?,
            attempts: row.get(6)?,
            next_ms: row.get(7)?,
            lookup_gen: None,
        })
    })?;
    rows.collect()
}

impl Queue {
    /// Start the writer thread on `conn`; queued events go to `sched`.
    pub(crate) fn start(
        conn: Connection,
        path: &Path,
        sched: Arc<Sched>,
    ) -> Result<(Queue, JoinHandle<()>)> {
        let file = File::of(path)
            .with_context(|| format!("reading the event queue {}", path.display()))?;
        let (tx, rx) = mpsc::channel();
        let failed_at = Arc::new(AtomicI64::new(0));
        let flag = failed_at.clone();
        let handle = std::thread::Builder::new()
            .name("queue-writer".into())
            .spawn(move || writer(&conn, &file, &rx, &sched, &flag))
            .context("starting the queue writer")?;
        Ok((Queue { tx, failed_at }, handle))
    }

    /// Queue `event`; answers once it is on disk (or why not).
    pub(crate) async fn insert(&self, event: NewEvent) -> Accept {
        let (reply, answer) = oneshot::channel();
        if self.tx.send(Command::Insert(event, reply)).is_err() {
            // The writer is gone.
            self.failed_at.store(now_ms().max(1), Ordering::SeqCst);
            return Accept::Unavailable;
        }
        answer.await.unwrap_or_else(|_| {
            self.failed_at.store(now_ms().max(1), Ordering::SeqCst);
            Accept::Unavailable
        })
    }

    /// Record how a delivery ended; blocks until it is committed. `false`
    /// when it could not be written.
    pub(crate) fn update(&self, update: Update) -> bool {
        let (reply, answer) = oneshot::channel();
        if self.tx.send(Command::Update(update, reply)).is_err() {
            return false;
        }
        answer.blocking_recv().unwrap_or(false)
    }

    /// Does the queue take events? After a failed write, not for
    /// [`UNHEALTHY_MS`], then as a probe write says.
    pub(crate) async fn writable(&self) -> bool {
        let failed_at = self.failed_at.load(Ordering::SeqCst);
        if failed_at == 0 {
            return true;
        }
        if now_ms() - failed_at < UNHEALTHY_MS {
            return false;
        }
        let (reply, answer) = oneshot::channel();
        if self.tx.send(Command::Probe(reply)).is_err() {
            return false;
        }
        answer.await.unwrap_or(false)
    }
}

/// The writer thread: take what is waiting, commit it in one transaction,
/// answer each. Ends when every sender is gone.
/// The queue's file as it was opened: SQLite goes on writing to a file
/// whose directory was removed (or replaced), and none of it would be found
/// at the next start — so every commit first checks it is still there.
struct File {
    path: std::path::PathBuf,
    id: (u64, u64),
}

impl File {
    fn of(path: &Path) -> std::io::Result<File> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path)?;
        Ok(File {
            path: path.to_owned(),
            id: (meta.dev(), meta.ino()),
        })
    }

    fn check(&self) -> Result<(), String> {
        match File::of(&self.path) {
            Ok(now) if now.id == self.id => Ok(()),
            Ok(_) => Err(format!("{} was replaced", self.path.display())),
            Err(e) => Err(format!("{} is gone: {e}", self.path.display())),
        }
    }
}

fn writer(
    conn: &Connection,
    file: &File,
    rx: &mpsc::Receiver<Command>,
    sched: &Sched,
    failed_at: &AtomicI64,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(command) => batch.push(command),
                Err(_) => break,
            }
        }
        let committed = file
            .check()
            .and_then(|()| commit(conn, &batch).map_err(|e| e.to_string()));
        match committed {
            Ok((now, results)) => {
                // Updates alone need less room than an event: only events
                // and probes say the queue is writable again.
                if batch
                    .iter()
                    .any(|c| matches!(c, Command::Insert(..) | Command::Probe(_)))
                {
                    failed_at.store(0, Ordering::SeqCst);
                }
                let mut queued = Vec::new();
                let mut inserted = Vec::new();
                let mut updated = Vec::new();
                for (command, result) in batch.into_iter().zip(results) {
                    match command {
                        Command::Insert(event, reply) => {
                            let accept = match result {
                                Some(seq) => {
                                    queued.push(queued_event(seq, event, now));
                                    Accept::Queued
                                }
                                None => Accept::Duplicate,
                            };
                            inserted.push((reply, accept));
                        }
                        Command::Update(_, reply) | Command::Probe(reply) => updated.push(reply),
                    }
                }
                // The workers see the events, in the order of the queue,
                // before their senders hear of them.
                sched.push(queued);
                for (reply, accept) in inserted {
                    let _ = reply.send(accept);
                }
                for reply in updated {
                    let _ = reply.send(true);
                }
            }
            Err(e) => {
                failed_at.store(now_ms().max(1), Ordering::SeqCst);
                crate::progress::line(
                    crate::progress::Level::Error,
                    &format!("the event queue cannot be written: {e}"),
                    &[],
                );
                for command in batch {
                    match command {
                        Command::Insert(_, reply) => {
                            let _ = reply.send(Accept::Unavailable);
                        }
                        Command::Update(_, reply) | Command::Probe(reply) => {
                            let _ = reply.send(false);
                        }
                    }
                }
            }
        }
    }
}

fn queued_event(seq: i64, event: NewEvent, now: i64) -> Queued {
    Queued {
        seq,
        key: crate::plan::normalize(&event.email),
        event,
        received_ms: now,
        attempts: 0,
        next_ms: now,
        lookup_gen: None,
    }
}

/// One transaction for `batch`: its time, and for each insert its `seq`, or
/// `None` for a duplicate; `None` for each update.
fn commit(conn: &Connection, batch: &[Command]) -> rusqlite::Result<(i64, Vec<Option<i64>>)> {
    let tx = conn.unchecked_transaction()?;
    let mut results = Vec::with_capacity(batch.len());
    let now = now_ms();
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO events (id, email, action, vars, received_ms, next_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT (id) DO NOTHING RETURNING seq",
        )?;
        for command in batch {
            match command {
                Command::Insert(e, _) => {
                    let vars = serde_json::to_string(&e.vars).unwrap_or_else(|_| "{}".into());
                    let seq: Option<i64> = insert
                        .query_row(params![e.id, e.email, e.action, vars, now], |r| r.get(0))
                        .optional()?;
                    results.push(seq);
                }
                Command::Update(u, _) => {
                    apply(&tx, u, now)?;
                    results.push(None);
                }
                Command::Probe(_) => {
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO probe (k, v, at) VALUES ('probe', zeroblob(1024), ?1)",
                    )?
                    .execute([now])?;
                    results.push(None);
                }
            }
        }
    }
    tx.commit()?;
    Ok((now, results))
}

fn apply(tx: &rusqlite::Transaction<'_>, update: &Update, now: i64) -> rusqlite::Result<()> {
    match update {
        Update::Done { seq } => tx
            .prepare_cached("UPDATE events SET state = 'done', done_ms = ?2 WHERE seq = ?1")?
            .execute(params![seq, now]),
        Update::Failed { seq, error } => tx
            .prepare_cached(
                "UPDATE events SET state = 'failed', done_ms = ?2, last_error = ?3 WHERE seq = ?1",
            )?
            .execute(params![seq, now, error]),
        Update::Retry {
            seq,
            attempts,
            next_ms,
            error,
        } => tx
            .prepare_cached(
                "UPDATE events SET attempts = ?2, next_ms = ?3, last_error = ?4 WHERE seq = ?1",
            )?
            .execute(params![seq, attempts, next_ms, error]),
    }
    .map(|_| ())
}

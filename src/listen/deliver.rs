//! The workers: plain threads that take the next due event (one per agent at
//! a time, see [`super::sched`]), find the agent's external ID in the
//! directory held in memory, send the route's action through the crate's
//! action code with `{{event_id}}`, and record how it ended. Connect errors,
//! timeouts, 429 and 5xx are tried again with backoff (or the `Retry-After`
//! asked for) until `max_delivery_hours` have passed since the event arrived.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::directory::{Directory, Lookup};
use super::metrics::{Metrics, bump};
use super::queue::{Queue, Queued, Update, now_ms};
use super::sched::{Sched, Turn};
use crate::action::batch::Declared;
use crate::action::{Retry, Target};
use crate::progress::{Level, line};

/// What the workers share.
pub(crate) struct Workers {
    pub sched: Arc<Sched>,
    pub queue: Queue,
    pub directory: Arc<Directory>,
    pub actions: BTreeMap<String, Declared>,
    pub metrics: Arc<Metrics>,
    pub max_delivery: Duration,
}

/// The wait before looking an agent up again while the directory is listed.
const LOOKUP_WAIT_MS: i64 = 1000;
/// The longest wait between two tries, and the longest `Retry-After` obeyed.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// How one try of an event ended.
enum Outcome {
    Sent(Option<u16>),
    /// Given up for good.
    Failed(String),
    /// Tried again at `at` (Unix ms); `counted` when it was an attempt.
    Again {
        at: i64,
        error: String,
        counted: bool,
        lookup_gen: Option<u64>,
    },
}

/// Exponential backoff with jitter: about 1 s, 2 s, 4 s … up to [`MAX_BACKOFF`].
fn backoff(attempts: u32) -> Duration {
    let ceiling = Duration::from_secs(1)
        .saturating_mul(1u32 << attempts.min(16))
        .min(MAX_BACKOFF);
    ceiling.mul_f64(0.5 + fastrand::f64() / 2.0)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Workers {
    /// One worker: events until the scheduler stops.
    pub(crate) fn run(&self) {
        while let Some(event) = self.sched.claim() {
            let outcome = self.try_once(&event);
            let turn = self.record(&event, outcome);
            self.sched.finish(&event.key, turn);
        }
    }

    fn try_once(&self, ev: &Queued) -> Outcome {
        let e = &ev.event;
        let Some(action) = self.actions.get(&e.action) else {
            return Outcome::Failed(format!("the action {:?} is no longer declared", e.action));
        };
        let (agent, external_id) = match self.directory.find(&e.email) {
            Lookup::Found { agent, external_id } => (agent, external_id),
            Lookup::NotYet => {
                return Outcome::Again {
                    at: now_ms() + LOOKUP_WAIT_MS,
                    error: "waiting for the directory listing".into(),
                    counted: false,
                    lookup_gen: ev.lookup_gen,
                };
            }
            Lookup::Missing { why, generation } => {
                // Known to be missing before the listing that said so: that
                // listing was the "next refresh", so give up.
                if ev.lookup_gen.is_some_and(|g| generation > g) {
                    return Outcome::Failed(why);
                }
                self.directory.want_refresh();
                return Outcome::Again {
                    at: now_ms() + LOOKUP_WAIT_MS,
                    error: format!("{why}; looked up again after the next directory listing"),
                    counted: false,
                    lookup_gen: Some(generation),
                };
            }
        };
        let result = action.send_to(&Target {
            agent: &agent,
            external_id: &external_id,
            vars: &e.vars,
            event_id: Some(&e.id),
        });
        if result.ok {
            return Outcome::Sent(result.status);
        }
        let error = result.error.unwrap_or_else(|| "failed".into());
        match result.retry {
            Retry::No => Outcome::Failed(error),
            Retry::Later(wait) => {
                let wait = wait.map_or_else(|| backoff(ev.attempts), |w| w.min(MAX_RETRY_AFTER));
                Outcome::Again {
                    at: now_ms() + millis(wait),
                    error,
                    counted: true,
                    lookup_gen: None,
                }
            }
        }
    }

    /// Record `outcome` in the queue, count and log it; the event's turn.
    fn record(&self, ev: &Queued, outcome: Outcome) -> Turn {
        let e = &ev.event;
        let attempts = ev.attempts + 1;
        let deadline = ev.received_ms.saturating_add(millis(self.max_delivery));
        let outcome = match outcome {
            Outcome::Again { at, error, .. } if at > deadline => Outcome::Failed(format!(
                "given up after {attempts} attempts in {:.1} hours: {error}",
                self.max_delivery.as_secs_f64() / 3600.0
            )),
            other => other,
        };
        let fields = |outcome: &str| -> Vec<(&str, Value)> {
            vec![
                ("event_id", e.id.clone().into()),
                ("email", e.email.clone().into()),
                ("action", e.action.clone().into()),
                ("outcome", outcome.into()),
                ("attempts", attempts.into()),
            ]
        };
        match outcome {
            Outcome::Sent(status) => {
                let _ = self.queue.update(Update::Done { seq: ev.seq });
                bump(&self.metrics.sent);
                let status = status.map_or_else(|| "-".into(), |s| s.to_string());
                let mut f = fields("sent");
                f.push(("status", status.clone().into()));
                line(
                    Level::Info,
                    &format!(
                        "event {}: {} for {} sent (HTTP {status})",
                        e.id, e.action, e.email
                    ),
                    &f,
                );
                Turn::Finished
            }
            Outcome::Failed(error) => {
                let _ = self.queue.update(Update::Failed {
                    seq: ev.seq,
                    error: error.clone(),
                });
                bump(&self.metrics.failed);
                let mut f = fields("failed");
                f.push(("error", error.clone().into()));
                line(
                    Level::Error,
                    &format!(
                        "event {}: {} for {} FAILED: {error}",
                        e.id, e.action, e.email
                    ),
                    &f,
                );
                Turn::Finished
            }
            Outcome::Again {
                at,
                error,
                counted,
                lookup_gen,
            } => {
                let attempts = if counted { attempts } else { ev.attempts };
                if counted {
                    let _ = self.queue.update(Update::Retry {
                        seq: ev.seq,
                        attempts,
                        next_ms: at,
                        error: error.clone(),
                    });
                    bump(&self.metrics.retried);
                }
                // Waiting for the directory is logged once, not every second.
                if counted || lookup_gen != ev.lookup_gen {
                    let wait = Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0));
                    let mut f = fields("retry");
                    f.push(("error", error.clone().into()));
                    line(
                        Level::Warn,
                        &format!(
                            "event {}: {} for {} not sent yet, tried again in {:.1}s: {error}",
                            e.id,
                            e.action,
                            e.email,
                            wait.as_secs_f64()
                        ),
                        &f,
                    );
                }
                Turn::Later {
                    next_ms: at,
                    attempts,
                    lookup_gen,
                }
            }
        }
    }
}

//! The pending events in memory, one line per agent in the order of the
//! queue: a worker takes the oldest event of an agent that has nothing in
//! flight and whose event is due, so an agent's events are sent one after the
//! other, in order, while different agents' go out side by side.

use std::collections::{HashMap, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::queue::{Queued, now_ms};

/// How an event's turn ended.
#[derive(Debug)]
pub(crate) enum Turn {
    /// Done with it (sent or failed for good): the agent's next may go.
    Finished,
    /// Try it again at `next_ms`, before any later event of its agent.
    Later {
        next_ms: i64,
        attempts: u32,
        lookup_gen: Option<u64>,
    },
}

#[derive(Default)]
struct Line {
    events: VecDeque<Queued>,
    busy: bool,
}

#[derive(Default)]
struct Inner {
    lines: HashMap<String, Line>,
    stopping: bool,
}

/// The pending events, shared by the queue writer (which adds them once
/// committed) and the workers (which take them).
#[derive(Default)]
pub(crate) struct Sched {
    inner: Mutex<Inner>,
    changed: Condvar,
}

/// The longest a worker sleeps before it looks again.
const MAX_NAP: Duration = Duration::from_secs(1);

impl Sched {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Add committed events (oldest first).
    pub(crate) fn push(&self, events: Vec<Queued>) {
        if events.is_empty() {
            return;
        }
        let mut inner = self.lock();
        for event in events {
            inner
                .lines
                .entry(event.key.clone())
                .or_default()
                .events
                .push_back(event);
        }
        drop(inner);
        self.changed.notify_all();
    }

    /// The next event due whose agent has nothing in flight; waits for one.
    /// `None` once [`Sched::stop`] was called.
    pub(crate) fn claim(&self) -> Option<Queued> {
        let mut inner = self.lock();
        loop {
            if inner.stopping {
                return None;
            }
            let now = now_ms();
            let mut soonest: Option<i64> = None;
            let mut due: Option<(&String, i64)> = None;
            for (key, line) in &inner.lines {
                let Some(head) = line.events.front().filter(|_| !line.busy) else {
                    continue;
                };
                if head.next_ms <= now {
                    // The oldest due event first.
                    if due.is_none_or(|(_, seq)| head.seq < seq) {
                        due = Some((key, head.seq));
                    }
                } else {
                    soonest = Some(soonest.map_or(head.next_ms, |s| s.min(head.next_ms)));
                }
            }
            if let Some((key, _)) = due {
                let key = key.clone();
                let line = inner.lines.get_mut(&key).expect("the line was just seen");
                line.busy = true;
                return line.events.front().cloned();
            }
            let nap = soonest.map_or(MAX_NAP, |at| {
                Duration::from_millis(u64::try_from(at - now).unwrap_or(0)).min(MAX_NAP)
            });
            inner = self
                .changed
                .wait_timeout(inner, nap)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The claimed head of `key`'s line ended its turn.
    pub(crate) fn finish(&self, key: &str, turn: Turn) {
        let mut inner = self.lock();
        if let Some(line) = inner.lines.get_mut(key) {
            line.busy = false;
            match turn {
                Turn::Finished => {
                    line.events.pop_front();
                }
                Turn::Later {
                    next_ms,
                    attempts,
                    lookup_gen,
                } => {
                    if let Some(head) = line.events.front_mut() {
                        head.next_ms = next_ms;
                        head.attempts = attempts;
                        head.lookup_gen = lookup_gen;
                    }
                }
            }
            if line.events.is_empty() {
                inner.lines.remove(key);
            }
        }
        drop(inner);
        self.changed.notify_all();
    }

    /// No more claims: every waiting worker returns `None`.
    pub(crate) fn stop(&self) {
        self.lock().stopping = true;
        self.changed.notify_all();
    }

    /// Events pending, and the time the oldest was received (Unix ms).
    pub(crate) fn depth(&self) -> (usize, Option<i64>) {
        let inner = self.lock();
        let depth = inner.lines.values().map(|l| l.events.len()).sum();
        let oldest = inner
            .lines
            .values()
            .filter_map(|l| l.events.front().map(|e| e.received_ms))
            .min();
        (depth, oldest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listen::queue::NewEvent;

    fn event(seq: i64, email: &str) -> Queued {
        Queued {
            seq,
            event: NewEvent {
                id: format!("e{seq}"),
                email: email.into(),
                action: "punch".into(),
                vars: Default::default(),
            },
            key: crate::plan::normalize(email),
            received_ms: seq,
            attempts: 0,
            next_ms: 0,
            lookup_gen: None,
        }
    }

    #[test]
    fn one_event_per_agent_in_flight_oldest_first() {
        let sched = Sched::default();
        sched.push(vec![event(1, "a@x"), event(2, "A@x"), event(3, "b@x")]);
        let first = sched.claim().unwrap();
        assert_eq!(first.seq, 1);
        // a@x is busy: b@x goes next, not a@x's second event.
        assert_eq!(sched.claim().unwrap().seq, 3);
        assert_eq!(sched.depth(), (3, Some(1)));
        // A retry keeps its place ahead of the agent's later event.
        sched.finish(
            &first.key,
            Turn::Later {
                next_ms: 0,
                attempts: 1,
                lookup_gen: None,
            },
        );
        let again = sched.claim().unwrap();
        assert_eq!((again.seq, again.attempts), (1, 1));
        sched.finish(&again.key, Turn::Finished);
        assert_eq!(sched.claim().unwrap().seq, 2);
        sched.stop();
        assert!(sched.claim().is_none());
    }
}

//! The listener's counters and `GET /metrics`: Prometheus text format, read
//! from atomics the server and the workers bump, and the queue as it stands.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why an event was refused, as the `reason` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// No signature, or no secret header.
    Unsigned,
    /// A signature or secret that does not match.
    BadSignature,
    /// A `webhook-timestamp` outside the tolerance.
    Stale,
    /// Over 64 KiB.
    TooLarge,
    /// Not a JSON object, or no `id` / `email` string.
    Invalid,
    /// The body did not arrive in time.
    Timeout,
    /// The queue could not be written.
    Unavailable,
}

impl Reason {
    const ALL: [Reason; 7] = [
        Reason::Unsigned,
        Reason::BadSignature,
        Reason::Stale,
        Reason::TooLarge,
        Reason::Invalid,
        Reason::Timeout,
        Reason::Unavailable,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Reason::Unsigned => "unsigned",
            Reason::BadSignature => "bad_signature",
            Reason::Stale => "stale",
            Reason::TooLarge => "too_large",
            Reason::Invalid => "invalid",
            Reason::Timeout => "timeout",
            Reason::Unavailable => "unavailable",
        }
    }

    fn index(self) -> usize {
        Reason::ALL
            .iter()
            .position(|r| *r == self)
            .unwrap_or_default()
    }
}

/// The counters of one listener.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub received: AtomicU64,
    pub accepted: AtomicU64,
    pub duplicate: AtomicU64,
    pub unrouted: AtomicU64,
    rejected: [AtomicU64; 7],
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub retried: AtomicU64,
}

/// Add one to `counter`.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    pub(crate) fn reject(&self, reason: Reason) {
        bump(&self.rejected[reason.index()]);
    }

    /// The text of `GET /metrics`, with the queue's `depth` and the age of
    /// its oldest event in seconds.
    pub(crate) fn render(&self, depth: usize, oldest_age: f64) -> String {
        let mut out = String::with_capacity(2048);
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = write!(
                out,
                "# HELP agentsync_listen_{name} {help}\n# TYPE agentsync_listen_{name} counter\nagentsync_listen_{name} {value}\n"
            );
        };
        counter(
            "events_received_total",
            "Events POSTed to the listener.",
            get(&self.received),
        );
        counter(
            "events_accepted_total",
            "Events written to the durable queue.",
            get(&self.accepted),
        );
        counter(
            "events_duplicate_total",
            "Events whose ID was accepted before: acknowledged, not queued again.",
            get(&self.duplicate),
        );
        counter(
            "events_unrouted_total",
            "Events no route takes: acknowledged, not queued.",
            get(&self.unrouted),
        );
        counter(
            "actions_sent_total",
            "Actions the target answered with 2xx.",
            get(&self.sent),
        );
        counter(
            "actions_failed_total",
            "Events given up: refused by the target, agent unknown or without external ID, or retried for max_delivery_hours.",
            get(&self.failed),
        );
        counter(
            "actions_retried_total",
            "Action attempts to be tried again (connect errors, timeouts, 429, 5xx).",
            get(&self.retried),
        );
        let _ = write!(
            out,
            "# HELP agentsync_listen_events_rejected_total Events refused, by reason.\n# TYPE agentsync_listen_events_rejected_total counter\n"
        );
        for reason in Reason::ALL {
            let _ = writeln!(
                out,
                "agentsync_listen_events_rejected_total{{reason=\"{}\"}} {}",
                reason.label(),
                get(&self.rejected[reason.index()])
            );
        }
        let _ = write!(
            out,
            "# HELP agentsync_listen_queue_depth Events queued and not yet delivered or failed.\n# TYPE agentsync_listen_queue_depth gauge\nagentsync_listen_queue_depth {depth}\n# HELP agentsync_listen_queue_oldest_age_seconds Age of the oldest queued event (0 when none).\n# TYPE agentsync_listen_queue_oldest_age_seconds gauge\nagentsync_listen_queue_oldest_age_seconds {oldest_age:.3}\n"
        );
        out
    }
}

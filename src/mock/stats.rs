//! Request counters by kind, read by tests and the benchmark through
//! `GET /_mock/stats` to see how many requests a run cost.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value};

/// What a request was, as counted.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    SourcePages,
    Punches,
    Token,
    ServiceProviderConfig,
    ScimList,
    ScimFilter,
    ScimGet,
    ScimPut,
    ScimPatch,
    /// SCIM requests refused for a missing, prefixed or unknown token.
    Unauthorized,
}

/// The JSON names, in the order of [`Kind`].
const NAMES: [&str; 10] = [
    "source_pages",
    "punches",
    "token",
    "service_provider_config",
    "scim_list",
    "scim_filter",
    "scim_get",
    "scim_put",
    "scim_patch",
    "unauthorized",
];

#[derive(Default)]
pub(super) struct Stats {
    counts: [AtomicU64; NAMES.len()],
}

impl Stats {
    pub(super) fn count(&self, kind: Kind) {
        self.counts[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Every count by name; with `reset`, each is set back to 0 as it is read.
    pub(super) fn read(&self, reset: bool) -> Value {
        let counts: Map<String, Value> = NAMES
            .iter()
            .zip(&self.counts)
            .map(|(name, count)| {
                let n = if reset {
                    count.swap(0, Ordering::Relaxed)
                } else {
                    count.load(Ordering::Relaxed)
                };
                ((*name).to_owned(), Value::from(n))
            })
            .collect();
        Value::Object(counts)
    }
}

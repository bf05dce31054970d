//! What agentsync keeps between runs: the run lock (one run at a time per
//! config) and the journal of applied runs (what was written, to read and undo).

pub(crate) mod journal;
pub(crate) mod lock;

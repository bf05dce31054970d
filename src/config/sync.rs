//! `[sync]`: the safety limits of a run and where its journal is written.

use std::path::{Path, PathBuf};

use super::ctx::{ConfigError, Ctx};
use super::raw::RawSync;
use super::relative_to_config;

/// What a sync does with agents whose external ID someone else changed since
/// agentsync last set it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum OnContested {
    /// Report them, and write as planned.
    #[default]
    Warn,
    /// Report them, and leave them out of the changes.
    Skip,
}

#[derive(Debug)]
pub(crate) struct SyncSpec {
    pub unlink_missing: bool,
    pub max_changes: u64,
    pub max_unlink_percent: f64,
    pub journal: PathBuf,
    pub on_contested: OnContested,
}

impl SyncSpec {
    /// The journal path is taken relative to `config_path`, the config file.
    pub(super) fn from_raw(
        raw: &RawSync,
        config_path: &Path,
        ctx: &Ctx,
    ) -> Result<Self, ConfigError> {
        let max_unlink_percent = match &raw.max_unlink_percent {
            Some(p) if !(0.0..=100.0).contains(p.get_ref()) => {
                return Err(ctx.err_at(p, "[sync] max_unlink_percent must be between 0 and 100"));
            }
            Some(p) => *p.get_ref(),
            None => 20.0,
        };
        let journal = match &raw.journal {
            Some(j) => relative_to_config(config_path, j),
            None => config_path.with_extension("journal.jsonl"),
        };
        Ok(SyncSpec {
            unlink_missing: raw.unlink_missing.unwrap_or(false),
            max_changes: raw.max_changes.unwrap_or(500),
            max_unlink_percent,
            journal,
            on_contested: raw.on_contested.unwrap_or_default(),
        })
    }
}

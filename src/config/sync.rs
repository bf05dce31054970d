//! `[sync]`: the safety limits of a run (of the plan and of the source), and
//! where its state goes: the journal and lock (in the state directory unless
//! `journal` says otherwise), the metrics file and the health-check pings.

use std::path::{Path, PathBuf};

use toml::Spanned;
use url::Url;

use super::ctx::{ConfigError, Ctx, Errors};
use super::raw::RawSync;
use super::relative_to_config;
use crate::state;

/// What a sync does with agents whose external ID someone else changed since
/// agentsync last set it: `warn`, `skip` or `refuse`.
// Plain comments on the variants keep the schema a string enum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum OnContested {
    // Report them, and write as planned.
    #[default]
    Warn,
    // Report them, and leave them out of the changes.
    Skip,
    // Report them, and refuse a run that would overwrite one, as a safety limit does.
    Refuse,
}

impl OnContested {
    /// The name as written in the file.
    pub(crate) fn name(self) -> &'static str {
        match self {
            OnContested::Warn => "warn",
            OnContested::Skip => "skip",
            OnContested::Refuse => "refuse",
        }
    }
}

#[derive(Debug)]
pub(crate) struct SyncSpec {
    pub unlink_missing: bool,
    pub max_changes: u64,
    pub max_unlink_percent: f64,
    /// Fewer users from the source is an error (no `--force` passes it).
    pub min_users: u64,
    /// More records skipped by the mapping, in percent of the records: refused.
    pub max_skipped_percent: f64,
    /// Fewer users than the last successful run by more, in percent: refused.
    pub max_source_drop_percent: f64,
    /// The journal; `None` when there is no state directory to put it in.
    pub journal: Option<PathBuf>,
    /// A journal of this job under the name an older version gave it: read
    /// while `journal` does not exist, and renamed to it by the next run.
    pub legacy_journal: Option<PathBuf>,
    /// The run lock, beside the journal's default place.
    pub lock: Option<PathBuf>,
    /// The state directory, if there is one: the lock, the default journal
    /// and the saved plans' key.
    pub state_dir: Option<PathBuf>,
    /// Who the job is to the state directory and the journal.
    pub key: state::JobKey,
    pub metrics_file: Option<PathBuf>,
    pub ping_url: Option<Url>,
    pub on_contested: OnContested,
}

impl SyncSpec {
    /// Paths are taken relative to `config_path`, the config file; the journal
    /// may be neither the config nor `sink_file`.
    pub(super) fn from_raw(
        raw: &RawSync,
        config_path: &Path,
        sink_file: Option<&Path>,
        ctx: &Ctx,
    ) -> Result<Self, ConfigError> {
        let percent = |key: &str, value: &Option<Spanned<f64>>, default: f64| match value {
            Some(p) if !(0.0..=100.0).contains(p.get_ref()) => {
                Err(ctx.err_at(p, format!("[sync] {key} must be between 0 and 100")))
            }
            Some(p) => Ok(*p.get_ref()),
            None => Ok(default),
        };
        let state_dir = state::state_dir(ctx.env());
        let key = state::JobKey::of(config_path, state_dir.as_deref());
        let mut legacy_journal = None;
        let journal = match &raw.journal {
            Some(j) => {
                let path = relative_to_config(config_path, j.get_ref());
                let others = [
                    (Some(config_path), "the config"),
                    (sink_file, "the sink's file"),
                ];
                not_over(&path, &others, j, "journal", ctx)?;
                Some(path)
            }
            None => state_dir.as_ref().map(|d| {
                let path = d.join(format!("{}.journal.jsonl", key.name));
                legacy_journal = key
                    .legacy
                    .as_ref()
                    .map(|old| d.join(format!("{old}.journal.jsonl")))
                    .filter(|old| !path.exists() && old.is_file());
                path
            }),
        };
        let lock = state_dir
            .as_ref()
            .map(|d| d.join(format!("{}.lock", key.name)));
        // The metrics file is replaced whole by every run: never over a file
        // agentsync reads or keeps.
        let metrics_file = match &raw.metrics_file {
            Some(m) => {
                let path = relative_to_config(config_path, m.get_ref());
                let others = [
                    (Some(config_path), "the config"),
                    (sink_file, "the sink's file"),
                    (journal.as_deref(), "the journal"),
                    (lock.as_deref(), "the run lock"),
                ];
                not_over(&path, &others, m, "metrics_file", ctx)?;
                Some(path)
            }
            None => None,
        };
        // Every key is checked, so that all their errors are reported at once.
        let mut errors = Errors::default();
        let unlink = errors.keep(percent("max_unlink_percent", &raw.max_unlink_percent, 20.0));
        let skipped = errors.keep(percent(
            "max_skipped_percent",
            &raw.max_skipped_percent,
            10.0,
        ));
        let drop = errors.keep(percent(
            "max_source_drop_percent",
            &raw.max_source_drop_percent,
            50.0,
        ));
        let max_changes = errors.keep(super::endpoint::bounded(
            "[sync] max_changes",
            raw.max_changes.as_ref(),
            0..=1_000_000_000,
            ctx,
        ));
        let min_users = errors.keep(super::endpoint::bounded(
            "[sync] min_users",
            raw.min_users.as_ref(),
            0..=1_000_000_000,
            ctx,
        ));
        let ping_url = errors.keep(
            raw.ping_url
                .as_ref()
                .map(|u| {
                    let url = ctx.url("[sync] ping_url", u)?;
                    // The URL's path is the check's key: a credential.
                    if url.scheme() == "http" && !crate::http::is_loopback(&url) {
                        return Err(ctx.err_at(
                            u,
                            format!(
                                "[sync] ping_url: the check's key would travel unencrypted over http:// to {}; use https://",
                                url.host_str().unwrap_or("?")
                            ),
                        ));
                    }
                    Ok(url)
                })
                .transpose(),
        );
        let (
            Some(max_unlink_percent),
            Some(max_skipped_percent),
            Some(max_source_drop_percent),
            Some(ping_url),
            Some(max_changes),
            Some(min_users),
        ) = (unlink, skipped, drop, ping_url, max_changes, min_users)
        else {
            return Err(errors.into_error(ctx));
        };
        Ok(SyncSpec {
            unlink_missing: raw.unlink_missing.unwrap_or(false),
            max_changes: max_changes.unwrap_or(500),
            max_unlink_percent,
            min_users: min_users.unwrap_or(1),
            max_skipped_percent,
            max_source_drop_percent,
            journal,
            legacy_journal,
            lock,
            state_dir,
            key,
            metrics_file,
            ping_url,
            on_contested: raw.on_contested.unwrap_or_default(),
        })
    }
}

/// Refuse `path`, the file of `[sync] key`, when it is one of `others`:
/// writing it would overwrite that file.
fn not_over<T>(
    path: &Path,
    others: &[(Option<&Path>, &str)],
    at: &Spanned<T>,
    key: &str,
    ctx: &Ctx,
) -> Result<(), ConfigError> {
    for (other, what) in others {
        if other.is_some_and(|o| same_file(path, o)) {
            return Err(ctx.err_at(
                at,
                format!("[sync] {key} is {what}: writing the {key} would overwrite it"),
            ));
        }
    }
    Ok(())
}

/// Do `a` and `b` name the same file? Compared canonically (links and `..`
/// resolved), also when `a` does not exist yet.
fn same_file(a: &Path, b: &Path) -> bool {
    let canonical = |p: &Path| -> PathBuf {
        if let Ok(c) = p.canonicalize() {
            return c;
        }
        match (p.parent(), p.file_name()) {
            (Some(dir), Some(name)) => dir
                .canonicalize()
                .map_or_else(|_| p.to_owned(), |d| d.join(name)),
            _ => p.to_owned(),
        }
    };
    canonical(a) == canonical(b)
}

#[cfg(test)]
mod tests {
    use crate::config::tests::MINIMAL;
    use std::path::Path;

    #[test]
    fn the_journal_is_in_the_state_directory_by_default() {
        let env = |name: &str| (name == "AGENTSYNC_STATE_DIR").then(|| "/var/lib/as".to_owned());
        let job = crate::config::parse(MINIMAL, Path::new("/etc/agentsync/t.toml"), &env).unwrap();
        let journal = job.sync.journal.unwrap();
        let name = journal.file_name().unwrap().to_str().unwrap();
        assert!(journal.starts_with("/var/lib/as"), "{}", journal.display());
        assert!(
            name.starts_with("t-") && name.ends_with(".journal.jsonl"),
            "{name}"
        );
        let lock = job.sync.lock.unwrap();
        assert_eq!(
            lock.file_name().unwrap().to_str().unwrap(),
            name.replace(".journal.jsonl", ".lock")
        );
        assert_eq!(job.sync.min_users, 1);
        assert_eq!(job.sync.max_skipped_percent, 10.0);
        assert_eq!(job.sync.max_source_drop_percent, 50.0);
    }

    #[test]
    fn a_journal_over_the_config_or_the_sink_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("job.toml");
        std::fs::write(&config, MINIMAL).unwrap();
        let env = |_: &str| None;
        for (journal, sink) in [
            ("job.toml", ""),
            ("./sub/../job.toml", ""),
            (
                "agents.json",
                "\n[sink]\nkind = \"file\"\npath = \"agents.json\"\n",
            ),
        ] {
            std::fs::create_dir_all(dir.path().join("sub")).unwrap();
            let text = format!("{MINIMAL}{sink}\n[sync]\njournal = \"{journal}\"\n");
            let err = crate::config::parse(&text, &config, &env).unwrap_err();
            assert!(err.message.contains("[sync] journal is"), "{err}");
        }
    }
}

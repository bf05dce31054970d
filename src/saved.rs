//! The saved plan (`--dry-run --out FILE`, then `agentsync apply FILE`): the
//! changes a person reviewed, with the config they were planned from (its path
//! and the SHA-256 of its bytes) and when, so that `apply` writes exactly those
//! changes or refuses. Before writing, each change is checked again against the
//! directory: an agent changed since the plan is left alone as `stale`.
//! A plan carries a seal: an HMAC-SHA256 of its whole content keyed by a
//! secret of the state directory ([`seal`]), so that a plan edited after it
//! was saved is refused, naming what was edited.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{self, Job};
use crate::exit;
use crate::plan::{Change, ChangeKind, Status, normalize};
use crate::sink::Agent;

mod seal;

use seal::Seal;
pub(crate) use seal::key_dir;

/// The version of the file's layout; another is refused, never guessed at.
/// Format 2 added the seal.
pub(crate) const FORMAT: u64 = 2;

/// How far in the future a plan's time may be (clocks drift) before the plan
/// is refused.
const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// A plan as saved: the file's whole content.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SavedPlan {
    pub format: u64,
    /// `sync`, or `revert of RUN`.
    pub kind: String,
    /// When the plan was made (RFC 3339, UTC).
    pub made: String,
    pub config: ConfigRef,
    /// The job's name.
    pub name: String,
    /// Every change, `planned`, as the directory was when the plan was made.
    pub changes: Vec<Change>,
    /// The check of everything above; absent only while it is made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<Seal>,
}

/// The config a plan was made from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigRef {
    /// Absolute.
    pub path: PathBuf,
    /// SHA-256 of the file's bytes, lower-case hex.
    pub sha256: String,
}

/// The plan a report applied: its `"plan"` field.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PlanRef {
    pub path: String,
    pub made: String,
}

/// Read, hash and validate the config at `path`: the hash is of the very
/// bytes the job was parsed from (read once, so an edit in between cannot slip
/// past it).
pub(crate) fn load_config(path: &Path) -> Result<(Job, ConfigRef)> {
    let unreadable = |e: std::io::Error| {
        exit::invalid(config::ConfigError {
            file: path.display().to_string(),
            message: format!("cannot read the config: {e}"),
            ..config::ConfigError::default()
        })
    };
    let bytes = std::fs::read(path).map_err(unreadable)?;
    let absolute = std::fs::canonicalize(path).map_err(unreadable)?;
    let sha256 = hex(&Sha256::digest(&bytes));
    let text = String::from_utf8(bytes).map_err(|_| {
        exit::invalid(config::ConfigError {
            file: path.display().to_string(),
            message: "the config is not UTF-8 text".into(),
            ..config::ConfigError::default()
        })
    })?;
    let job =
        config::parse(&text, path, &|name| std::env::var(name).ok()).map_err(exit::invalid)?;
    Ok((
        job,
        ConfigRef {
            path: absolute,
            sha256,
        },
    ))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

impl SavedPlan {
    /// The plan of `changes` for the job `name`, made now from `config`.
    pub(crate) fn new(config: ConfigRef, name: &str, kind: &str, changes: &[Change]) -> Self {
        SavedPlan {
            format: FORMAT,
            kind: kind.to_owned(),
            made: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            config,
            name: name.to_owned(),
            changes: changes.to_vec(),
            seal: None,
        }
    }

    /// Write the plan to `path` atomically (a reader sees the old file or the
    /// whole new one), readable by its owner only: it holds emails; sealed
    /// with the key in `key_dir` (made there on first use).
    pub(crate) fn write(&self, path: &Path, key_dir: &Path) -> Result<()> {
        let key = seal::key(key_dir, true)?;
        let mut sealed = self.clone();
        sealed.seal = None;
        sealed.seal = Some(Seal::of(&sealed, &key)?);
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let context = || format!("writing the plan {}", path.display());
        let mut file = tempfile::Builder::new()
            .prefix(".agentsync-plan-")
            .tempfile_in(dir)
            .with_context(context)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o600))
                .with_context(context)?;
        }
        serde_json::to_writer_pretty(&mut file, &sealed).with_context(context)?;
        file.write_all(b"\n")
            .and_then(|()| file.as_file().sync_all())
            .with_context(context)?;
        file.persist(path)
            .map_err(|e| e.error)
            .with_context(context)?;
        Ok(())
    }

    /// Read a saved plan and check its seal with the key in `key_dir`. A
    /// file that is not one, of another format, edited since it was saved,
    /// or that another user could have written, is a usage error (exit 2):
    /// nothing is applied.
    pub(crate) fn read(path: &Path, key_dir: &Path) -> Result<Self> {
        let name = path.display();
        let unreadable =
            |e: std::io::Error| exit::usage(format!("cannot read the plan {name}: {e}"));
        // Checked and read through one handle: the file checked is the file read.
        let mut file = std::fs::File::open(path).map_err(unreadable)?;
        seal::check_file(&file, path)?;
        let mut text = String::new();
        std::io::Read::read_to_string(&mut file, &mut text).map_err(unreadable)?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| exit::usage(format!("{name} is not a saved plan (not JSON: {e})")))?;
        match value.get("format").and_then(serde_json::Value::as_u64) {
            Some(FORMAT) => {}
            Some(other) => {
                return Err(exit::usage(format!(
                    "{name}: plan format {other} is not known to this agentsync (it reads format {FORMAT}): plan again"
                )));
            }
            None => {
                return Err(exit::usage(format!(
                    "{name} is not a saved plan: it has no \"format\" (save one with --dry-run --out)"
                )));
            }
        }
        let mut plan: SavedPlan = serde_json::from_value(value)
            .map_err(|e| exit::usage(format!("{name} is not a saved plan: {e}")))?;
        let key = seal::key(key_dir, false)?;
        seal::verify(&plan, &key).map_err(|why| exit::usage(format!("{name}: {why}: refused")))?;
        plan.validate()
            .map_err(|why| exit::usage(format!("{name} is not a valid plan: {why}")))?;
        for change in &mut plan.changes {
            change.status = Status::Planned;
            change.error = None;
        }
        Ok(plan)
    }

    /// A plan that contradicts itself was not made by agentsync.
    fn validate(&self) -> std::result::Result<(), String> {
        let mut seen = HashSet::new();
        for c in &self.changes {
            let consistent = match c.kind {
                ChangeKind::Link => c.old_external_id.is_none() && c.new_external_id.is_some(),
                ChangeKind::Update => {
                    c.old_external_id.is_some()
                        && c.new_external_id.is_some()
                        && c.old_external_id != c.new_external_id
                }
                ChangeKind::Unlink => c.old_external_id.is_some() && c.new_external_id.is_none(),
            };
            if !consistent {
                return Err(format!(
                    "the {} of agent {} does not fit its old and new external IDs",
                    c.kind.as_str(),
                    c.agent_id
                ));
            }
            if !seen.insert(c.agent_id.as_str()) {
                return Err(format!("agent {} has two changes", c.agent_id));
            }
        }
        Ok(())
    }

    /// The config to apply the plan with: the plan's own, or `given` when it
    /// is the same file. Another file is a usage error.
    pub(crate) fn config_path(&self, given: Option<&Path>) -> Result<PathBuf> {
        let Some(given) = given else {
            return Ok(self.config.path.clone());
        };
        let resolved = std::fs::canonicalize(given)
            .map_err(|e| exit::usage(format!("cannot read the config {}: {e}", given.display())))?;
        if resolved != self.config.path {
            return Err(exit::usage(format!(
                "the plan was made from {}, not {} (--config or AGENTSYNC_CONFIG): apply it with its own config",
                self.config.path.display(),
                given.display()
            )));
        }
        Ok(resolved)
    }

    /// Refuse a plan older than `max_age` at `now` (or made in the future).
    pub(crate) fn check_age(&self, max_age: Duration, now: SystemTime) -> Result<()> {
        let made = humantime::parse_rfc3339_weak(&self.made).map_err(|e| {
            exit::usage(format!(
                "the plan's time {:?} is not RFC 3339: {e}",
                self.made
            ))
        })?;
        match now.duration_since(made) {
            Ok(age) if age > max_age => Err(exit::usage(format!(
                "the plan was made {} ago ({}), more than --max-age {}: plan again, or pass a longer --max-age",
                humantime::format_duration(Duration::from_secs(age.as_secs())),
                self.made,
                humantime::format_duration(max_age)
            ))),
            Err(ahead) if ahead.duration() > CLOCK_SKEW => Err(exit::usage(format!(
                "the plan's time {} is in the future: check the clock",
                self.made
            ))),
            Ok(_) | Err(_) => Ok(()),
        }
    }

    /// Refuse `config` when it is not the plan's config as it was.
    pub(crate) fn check_config(&self, config: &ConfigRef) -> Result<()> {
        if config.path != self.config.path {
            return Err(exit::usage(format!(
                "the plan was made from {}, not {}",
                self.config.path.display(),
                config.path.display()
            )));
        }
        if config.sha256 != self.config.sha256 {
            return Err(exit::usage(format!(
                "{} changed since the plan was made (its SHA-256 differs): plan again",
                config.path.display()
            )));
        }
        Ok(())
    }

    /// The run of `past` this plan undoes: its kind says `revert of RUN`, RUN
    /// is in the journal, and every change of the plan sets one of RUN's
    /// applied changes back (its old value RUN's new one and the other way
    /// round). Only such a plan is a revert, lifting the safety limits as
    /// `revert` does; the kind alone lifts nothing.
    pub(crate) fn inverse_of<'a>(
        &self,
        past: &'a [crate::state::journal::Entry],
    ) -> Option<&'a str> {
        let run = self.kind.strip_prefix("revert of ")?;
        let entry = past.iter().rev().find(|e| e.run == run)?;
        let done: HashMap<&str, &Change> = entry
            .changes
            .iter()
            .filter(|c| {
                matches!(
                    c.status,
                    Status::Applied | Status::Planned | Status::Unknown
                )
            })
            .map(|c| (c.agent_id.as_str(), c))
            .collect();
        let inverse = self.changes.iter().all(|c| {
            done.get(c.agent_id.as_str()).is_some_and(|d| {
                d.new_external_id == c.old_external_id && d.old_external_id == c.new_external_id
            })
        });
        inverse.then_some(entry.run.as_str())
    }
}

/// Check each planned change against the directory as it is now: a change
/// whose agent is gone, has another email, or another external ID than the
/// plan saw is marked `stale` with the reason, and is not to be written.
pub(crate) fn mark_stale(
    changes: &mut [Change],
    agents: &[Agent],
    version_of: &dyn Fn(&str) -> Option<String>,
) {
    let by_id: HashMap<&str, &Agent> = agents.iter().map(|a| (a.id.as_str(), a)).collect();
    for change in changes {
        let now = change
            .version
            .as_ref()
            .and_then(|_| version_of(&change.agent_id));
        let why = match by_id.get(change.agent_id.as_str()) {
            None => Some("the agent is no longer in the directory".to_owned()),
            Some(agent) if normalize(&agent.email) != normalize(&change.email) => Some(format!(
                "the agent's email is now {}, not {}",
                agent.email, change.email
            )),
            Some(agent) if agent.external_id == change.new_external_id => Some(format!(
                "already has external ID {} (was the plan applied before?)",
                agent.external_id.as_deref().unwrap_or("(none)")
            )),
            Some(agent) if agent.external_id != change.old_external_id => Some(format!(
                "changed since the plan: external ID is now {}, the plan saw {}",
                agent.external_id.as_deref().unwrap_or("(none)"),
                change.old_external_id.as_deref().unwrap_or("(none)")
            )),
            // Same external ID, but the user changed otherwise (another
            // name, another email address…): the directory's version says so.
            Some(_) if now.is_some() && now != change.version => Some(format!(
                "changed since the plan: version {}, the plan saw {}",
                now.as_deref().unwrap_or_default(),
                change.version.as_deref().unwrap_or_default()
            )),
            Some(_) => None,
        };
        if let Some(why) = why {
            change.status = Status::Stale;
            change.error = Some(why);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str, email: &str, ext: Option<&str>) -> Agent {
        Agent {
            id: id.into(),
            email: email.into(),
            external_id: ext.map(str::to_owned),
        }
    }

    fn plan(changes: Vec<Change>) -> SavedPlan {
        SavedPlan {
            format: FORMAT,
            kind: "sync".into(),
            made: "2026-01-01T00:00:00Z".into(),
            config: ConfigRef {
                path: "/etc/agentsync/job.toml".into(),
                sha256: "00".into(),
            },
            name: "job".into(),
            changes,
            seal: None,
        }
    }

    #[test]
    fn changed_agents_are_stale_and_the_rest_stay_planned() {
        let before = [
            agent("1", "a@x.com", None),
            agent("2", "b@x.com", Some("old")),
            agent("3", "c@x.com", Some("9")),
            agent("4", "d@x.com", None),
            agent("5", "e@x.com", None),
        ];
        let gone = agent("6", "f@x.com", None);
        let mut changes = vec![
            Change::setting(&before[0], Some("1".into())),
            Change::setting(&before[1], Some("2".into())),
            Change::setting(&before[2], None),
            Change::setting(&before[3], Some("4".into())),
            Change::setting(&before[4], Some("5".into())),
            Change::setting(&gone, Some("6".into())),
        ];
        let now = [
            agent("1", "A@X.com", None),          // same, but for case
            agent("2", "b@x.com", Some("other")), // changed by someone
            agent("3", "c@x.com", Some("9")),     // unchanged
            agent("4", "renamed@x.com", None),    // another email
            agent("5", "e@x.com", Some("5")),     // done already
        ];
        mark_stale(&mut changes, &now, &|_| None);
        let statuses: Vec<_> = changes.iter().map(|c| c.status).collect();
        use Status::{Planned, Stale};
        assert_eq!(statuses, [Planned, Stale, Planned, Stale, Stale, Stale]);
        assert!(changes[1].error.as_deref().unwrap().contains("now other"));
        assert!(
            changes[3]
                .error
                .as_deref()
                .unwrap()
                .contains("renamed@x.com")
        );
        assert!(changes[4].error.as_deref().unwrap().contains("already has"));
        assert!(changes[5].error.as_deref().unwrap().contains("no longer"));
    }

    #[test]
    fn age_is_checked_against_the_limit_and_the_clock() {
        let p = plan(vec![]);
        let made = humantime::parse_rfc3339(&p.made).unwrap();
        let hour = Duration::from_secs(3600);
        assert!(p.check_age(hour, made + hour / 2).is_ok());
        let err = p.check_age(hour, made + hour * 2).unwrap_err();
        assert_eq!(exit::code(&Err(err)), 2);
        assert!(p.check_age(hour, made - Duration::from_secs(10)).is_ok());
        assert!(p.check_age(hour, made - hour).is_err(), "far in the future");
    }

    #[test]
    fn self_contradicting_plans_are_refused() {
        let a = agent("1", "a@x.com", None);
        let mut link = Change::setting(&a, Some("7".into()));
        assert!(plan(vec![link.clone()]).validate().is_ok());
        assert!(plan(vec![link.clone(), link.clone()]).validate().is_err());
        link.old_external_id = Some("3".into());
        assert!(plan(vec![link]).validate().is_err());
    }

    #[test]
    fn written_plans_read_back_private_and_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        let a = agent("1", "a@x.com", None);
        let p = plan(vec![Change::setting(&a, Some("7".into()))]);
        let keys = dir.path().join("state");
        p.write(&path, &keys).unwrap();
        p.write(&path, &keys).unwrap();
        let back = SavedPlan::read(&path, &keys).unwrap();
        assert_eq!(back.changes, p.changes);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(
            leftovers, 2,
            "the plan and the key's folder, no temporary file"
        );

        std::fs::write(&path, r#"{"format": 9, "changes": []}"#).unwrap();
        let err = SavedPlan::read(&path, &keys).unwrap_err();
        assert!(err.to_string().contains("format 9"), "{err}");
        assert_eq!(exit::code(&Err(err)), 2);
    }

    #[test]
    fn only_the_inverse_of_a_journaled_run_is_a_revert() {
        use crate::state::{JobKey, journal};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let key = JobKey::of(Path::new("job.toml"), None);
        let mut w = journal::Writer::begin(&path, &key, "job", "sync").unwrap();
        let a = agent("1", "a@x.com", None);
        let mut linked = Change::setting(&a, Some("7".into()));
        w.intents(std::slice::from_ref(&linked)).unwrap();
        linked.status = Status::Applied;
        w.change(&linked).unwrap();
        let past = journal::read(&path).unwrap();
        let run = w.run().to_owned();

        let undo = Change::setting(&agent("1", "a@x.com", Some("7")), None);
        let mut p = plan(vec![undo.clone()]);
        assert_eq!(p.inverse_of(&past), None, "a sync plan");
        p.kind = format!("revert of {run}");
        assert_eq!(p.inverse_of(&past), Some(run.as_str()));
        p.kind = "revert of 20200101-000000-0000".into();
        assert_eq!(p.inverse_of(&past), None, "a run not in the journal");
        let other = Change::setting(&agent("1", "a@x.com", Some("7")), Some("8".into()));
        let p = SavedPlan {
            kind: format!("revert of {run}"),
            ..plan(vec![other])
        };
        assert_eq!(p.inverse_of(&past), None, "not its inverse");
    }
}

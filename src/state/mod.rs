//! What agentsync keeps between runs, in the state directory: the run lock
//! (one run at a time per config), the write-ahead journal of every run (what
//! was written, to read and undo), and the run's outside signs (the metrics
//! file and the health-check pings).

mod history;
pub(crate) mod journal;
pub(crate) mod lock;
pub(crate) mod metrics;
pub(crate) mod runs;

pub(crate) use history::{HistoryView, NothingView};

use std::hash::Hasher;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::template::EnvLookup;

/// The state directory: `AGENTSYNC_STATE_DIR`, else systemd's
/// `STATE_DIRECTORY` (the first of its colon-separated paths), else
/// `$XDG_STATE_HOME/agentsync`, else `~/.local/state/agentsync`. `None` when
/// none of them is set.
pub(crate) fn state_dir(env: EnvLookup) -> Option<PathBuf> {
    let set = |name: &str| env(name).filter(|v| !v.is_empty());
    if let Some(dir) = set("AGENTSYNC_STATE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dirs) = set("STATE_DIRECTORY")
        && let Some(first) = dirs.split(':').find(|d| !d.is_empty())
    {
        return Some(PathBuf::from(first));
    }
    if let Some(xdg) = set("XDG_STATE_HOME").filter(|x| Path::new(x).is_absolute()) {
        return Some(Path::new(&xdg).join("agentsync"));
    }
    set("HOME").map(|home| Path::new(&home).join(".local/state/agentsync"))
}

/// Who a config is to the state directory: the name its journal and lock
/// share there, which is also the identity written into each of its runs'
/// `start` records (so that configs sharing one `[sync] journal` tell their
/// runs apart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JobKey {
    /// `<stem of the config's real name>-<hash of its canonical path>`.
    pub name: String,
    /// The config's canonical path (symlinks and `..` resolved).
    pub config: PathBuf,
    /// The name older versions gave this config's files when it was reached
    /// through a link of another name (`<link's stem>-<same hash>`); its
    /// journal is read, and taken over by the next run, while the new one
    /// does not exist.
    pub legacy: Option<String>,
    /// The file's identity when it has other hard links: the alias file that
    /// makes every name of it share one `name`.
    pub alias: Option<PathBuf>,
}

impl JobKey {
    /// The key of the config at `config`. Every name of one file — a
    /// symlink, `..`, a hard link (through the alias file the first run
    /// leaves in `state_dir`) — gets the same key; a copy is another job.
    pub(crate) fn of(config: &Path, state_dir: Option<&Path>) -> JobKey {
        let canonical = config.canonicalize().unwrap_or_else(|_| config.to_owned());
        let stem_of = |p: &Path| {
            p.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let hash = path_hash(&canonical);
        let name = format!("{}-{hash}", stem_of(&canonical));
        let given = format!("{}-{hash}", stem_of(config));
        let legacy = (given != name).then_some(given);
        let alias = state_dir.and_then(|dir| alias_path(&canonical, dir));
        // Before any run wrote the alias, the journal another name of this
        // file already has is the one to share.
        let name = match (alias.as_deref().map(read_alias), state_dir) {
            (Some(Some(aliased)), _) => aliased,
            (Some(None), Some(dir)) => linked_journal(dir, &canonical, &name).unwrap_or(name),
            _ => name,
        };
        JobKey {
            name,
            config: canonical,
            legacy,
            alias,
        }
    }

    /// Make sure the alias file names this key, for the other hard links of
    /// the config to find (the first run of any of its names writes it).
    pub(crate) fn keep_alias(&self) -> Result<()> {
        let Some(path) = &self.alias else {
            return Ok(());
        };
        if read_alias(path).is_some() {
            return Ok(());
        }
        let mut file = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
        {
            Ok(f) => f,
            // Another name's run wrote it first: that one counts from now on.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
            Err(e) => {
                return Err(e).with_context(|| format!("writing {}", path.display()));
            }
        };
        std::io::Write::write_all(&mut file, self.name.as_bytes())
            .with_context(|| format!("writing {}", path.display()))
    }
}

/// The hard-link alias of `config` in `dir`: only for a file that has other
/// links, named by its device, inode and birth time (a reused inode is
/// another file).
fn alias_path(config: &Path, dir: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(config).ok()?;
    if meta.nlink() < 2 {
        return None;
    }
    let born = meta
        .created()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Some(dir.join(format!(
        "links-{:x}-{:x}-{born:x}.name",
        meta.dev(),
        meta.ino()
    )))
}

/// The key of a journal in `dir` whose first run was of another name of the
/// file `config` (same device and inode), when `name` has no journal yet.
fn linked_journal(dir: &Path, config: &Path, name: &str) -> Option<String> {
    use std::io::BufRead;
    /// Journals looked at, at most: a state directory holds a few.
    const MAX: usize = 1000;
    if dir.join(format!("{name}.journal.jsonl")).exists() {
        return None;
    }
    let id = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let ours = id(config)?;
    std::fs::read_dir(dir).ok()?.take(MAX).find_map(|entry| {
        let path = entry.ok()?.path();
        let key = path.file_name()?.to_str()?.strip_suffix(".journal.jsonl")?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .ok()?;
        check_owner(&file, &path).ok()?;
        let mut first = Vec::new();
        std::io::BufReader::new(std::io::Read::take(file, 64 * 1024))
            .read_until(b'\n', &mut first)
            .ok()?;
        let start: serde_json::Value = serde_json::from_slice(&first).ok()?;
        let theirs = id(Path::new(start.get("config")?.as_str()?))?;
        (theirs == ours).then(|| key.to_owned())
    })
}

/// The key an alias file holds, if it is ours and holds a plain name.
fn read_alias(path: &Path) -> Option<String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    check_owner(&file, path).ok()?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(&file, 256), &mut text).ok()?;
    let plain = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b))
        && !text.starts_with('.');
    plain.then_some(text)
}

/// Eight hex digits of FNV-1a over the path: stable across runs and Rust
/// versions, unlike `DefaultHasher`'s seed.
fn path_hash(path: &Path) -> String {
    let mut hasher = Fnv(0xcbf2_9ce4_8422_2325);
    hasher.write(path.as_os_str().as_encoded_bytes());
    format!("{:08x}", hasher.finish() & 0xffff_ffff)
}

struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Make sure the folder `dir` exists; a folder created here is private to
/// the user (0700): the journal holds people's emails.
pub(crate) fn ensure_dir(dir: &Path) -> Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating the state directory {}", dir.display()))
}

/// Make sure the state directory `dir` exists and that no one but the
/// running user can change what is in it: an existing one must be owned by
/// the user and writable by no group or other user, else every file in it
/// (the lock, the journal, the plan key) could be planted or replaced.
pub(crate) fn ensure_state_dir(dir: &Path) -> Result<()> {
    ensure_dir(dir)?;
    if dir.as_os_str().is_empty() {
        return Ok(());
    }
    let meta = std::fs::metadata(dir)
        .with_context(|| format!("reading the state directory {}", dir.display()))?;
    let mode = meta.permissions().mode() & 0o7777;
    let (owner, me) = (meta.uid(), euid());
    if owner != me {
        bail!(
            "the state directory {} is owned by user {owner}, not by this user ({me}): another user could plant or read its lock, journal and plan key; use a directory of this user's (AGENTSYNC_STATE_DIR); nothing was written",
            dir.display()
        );
    }
    if mode & 0o022 != 0 {
        bail!(
            "the state directory {} has mode {mode:04o}: other users can write into it and plant its lock, journal or plan key; make it private (chmod 700) or use another (AGENTSYNC_STATE_DIR); nothing was written",
            dir.display()
        );
    }
    Ok(())
}

/// Refuse a file of the state (opened without following links) that another
/// user owns: its content could be theirs.
pub(crate) fn check_owner(file: &std::fs::File, path: &Path) -> Result<()> {
    let meta = file
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?;
    let me = euid();
    if meta.uid() != me {
        bail!(
            "{} is owned by user {}, not by this user ({me}): refused; nothing was written",
            path.display(),
            meta.uid()
        );
    }
    Ok(())
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(vars: &[(&str, &str)]) -> Option<PathBuf> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        state_dir(&move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn the_state_directory_in_order_of_precedence() {
        let all = [
            ("AGENTSYNC_STATE_DIR", "/a"),
            ("STATE_DIRECTORY", "/var/lib/agentsync:/var/lib/other"),
            ("XDG_STATE_HOME", "/x"),
            ("HOME", "/home/u"),
        ];
        assert_eq!(dir_with(&all), Some("/a".into()));
        assert_eq!(dir_with(&all[1..]), Some("/var/lib/agentsync".into()));
        assert_eq!(dir_with(&all[2..]), Some("/x/agentsync".into()));
        assert_eq!(
            dir_with(&all[3..]),
            Some("/home/u/.local/state/agentsync".into())
        );
        assert_eq!(dir_with(&[("AGENTSYNC_STATE_DIR", "")]), None);
    }

    #[test]
    fn the_key_names_the_config_and_its_folder() {
        let key = |p: &str| JobKey::of(Path::new(p), None).name;
        let a = key("/etc/a/punch.toml");
        let b = key("/etc/b/punch.toml");
        assert!(
            a.starts_with("punch-") && a.len() == "punch-".len() + 8,
            "{a}"
        );
        assert_ne!(a, b);
        assert_eq!(a, key("/etc/a/punch.toml"));
    }

    #[test]
    fn every_name_of_one_file_has_one_key_and_a_copy_another() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        ensure_state_dir(&state).unwrap();
        let real = dir.path().join("punch.toml");
        std::fs::write(&real, "x").unwrap();
        let sym = dir.path().join("other-name.toml");
        std::os::unix::fs::symlink(&real, &sym).unwrap();
        let hard = dir.path().join("hard.toml");
        std::fs::hard_link(&real, &hard).unwrap();
        let copy = dir.path().join("copy.toml");
        std::fs::copy(&real, &copy).unwrap();
        let of = |p: &Path| JobKey::of(p, Some(&state));
        let first = of(&real);
        assert_eq!(of(&sym).name, first.name);
        assert!(of(&sym).legacy.unwrap().starts_with("other-name-"));
        // Before any run: the hard link's journal found by its start record.
        std::fs::write(
            state.join(format!("{}.journal.jsonl", first.name)),
            format!(
                "{{\"record\":\"start\",\"config\":{:?}}}\n",
                real.canonicalize().unwrap()
            ),
        )
        .unwrap();
        assert_eq!(of(&hard).name, first.name, "the journal of the first name");
        first.keep_alias().unwrap();
        std::fs::remove_file(state.join(format!("{}.journal.jsonl", first.name))).unwrap();
        assert_eq!(of(&hard).name, first.name, "the alias names the first key");
        assert_ne!(of(&copy).name, first.name);
    }

    #[test]
    fn a_state_directory_others_can_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("s");
        ensure_state_dir(&state).unwrap();
        let mode = std::fs::metadata(&state).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o770)).unwrap();
        let err = ensure_state_dir(&state).unwrap_err().to_string();
        assert!(err.contains("mode 0770"), "{err}");
    }
}

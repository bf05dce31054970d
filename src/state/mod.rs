//! What agentsync keeps between runs, in the state directory: the run lock
//! (one run at a time per config), the write-ahead journal of every run (what
//! was written, to read and undo), and the run's outside signs (the metrics
//! file and the health-check pings).

mod history;
pub(crate) mod journal;
pub(crate) mod lock;
pub(crate) mod metrics;

pub(crate) use history::HistoryView;

use std::hash::Hasher;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

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

/// The name the files of one config share in the state directory:
/// `<config stem>-<hash of its canonical path>`, so that every way of naming
/// the same config finds the same journal and lock, and two configs called
/// `punch.toml` in different folders do not share them.
pub(crate) fn file_stem(config: &Path) -> String {
    let canonical = config.canonicalize().unwrap_or_else(|_| config.to_owned());
    // FNV-1a: stable across runs and Rust versions, unlike DefaultHasher's seed.
    let mut hasher = Fnv(0xcbf2_9ce4_8422_2325);
    hasher.write(canonical.as_os_str().as_encoded_bytes());
    let stem = config
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Its low 32 bits: eight hex digits.
    format!("{stem}-{:08x}", hasher.finish() & 0xffff_ffff)
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
    fn the_file_stem_names_the_config_and_its_folder() {
        let a = file_stem(Path::new("/etc/a/punch.toml"));
        let b = file_stem(Path::new("/etc/b/punch.toml"));
        assert!(
            a.starts_with("punch-") && a.len() == "punch-".len() + 8,
            "{a}"
        );
        assert_ne!(a, b);
        assert_eq!(a, file_stem(Path::new("/etc/a/punch.toml")));
    }
}

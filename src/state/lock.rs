//! One run at a time per config: an exclusive OS file lock, held for the whole
//! run and released by the kernel when the process ends, however it ends — so a
//! killed run never leaves a stale lock behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct RunLock {
    _file: File,
}

/// The lock file of a config: in the temporary folder, named after the config's
/// canonical path, so every way of naming the same file shares one lock and a
/// read-only config folder is no obstacle.
pub(crate) fn lock_path(config: &Path) -> PathBuf {
    let canonical = config.canonicalize().unwrap_or_else(|_| config.to_owned());
    // FNV-1a: stable across runs and Rust versions, unlike DefaultHasher's seed.
    let mut hasher = Fnv(0xcbf2_9ce4_8422_2325);
    canonical.hash(&mut hasher);
    let stem = config
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    std::env::temp_dir().join(format!("agentsync-{stem}-{:016x}.lock", hasher.finish()))
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

/// Take the run lock of `config`, or fail at once if another run holds it.
pub(crate) fn acquire(config: &Path) -> Result<RunLock> {
    let path = lock_path(config);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening the run lock {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(RunLock { _file: file }),
        Err(TryLockError::WouldBlock) => bail!(
            "another agentsync run holds the lock for {} ({}); this run did nothing",
            config.display(),
            path.display()
        ),
        Err(TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("job.toml");
        std::fs::write(&config, "").unwrap();
        let first = acquire(&config).unwrap();
        let err = acquire(&config).unwrap_err().to_string();
        assert!(
            err.contains("another agentsync run holds the lock"),
            "{err}"
        );
        drop(first);
        acquire(&config).unwrap();
    }
}

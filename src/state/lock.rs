//! One run at a time per config: an exclusive OS file lock, held for the whole
//! run and released by the kernel when the process ends, however it ends — so a
//! killed run never leaves a stale lock behind. The lock file lives in the
//! state directory and is kept between runs (one per config).

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct RunLock {
    _file: File,
}

/// Take the lock at `path` for the run of `config`, or fail at once if another
/// run holds it. The file is opened without following a symlink: a link
/// planted in its place is an error, never a file truncated elsewhere.
pub(crate) fn acquire(path: &Path, config: &Path) -> Result<RunLock> {
    if let Some(dir) = path.parent() {
        super::ensure_state_dir(dir)?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .with_context(|| format!("opening the run lock {}", path.display()))?;
    // Another user's lock file would let them hold every run back.
    super::check_owner(&file, path)?;
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

/// Is the lock at `path` held by a run now? Told without taking it (a run
/// starting at that moment must not find it taken): from the kernel's list
/// of locks where there is one (Linux), else by a shared lock tried and
/// released at once.
pub(crate) fn is_held(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    if let Ok(locks) = std::fs::read_to_string("/proc/locks") {
        let (major, minor) = (libc::major(meta.dev()), libc::minor(meta.dev()));
        let id = format!("{major:02x}:{minor:02x}:{}", meta.ino());
        return locks
            .lines()
            .any(|l| l.contains("FLOCK") && l.split_whitespace().any(|w| w == id));
    }
    let Ok(file) = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    else {
        return false;
    };
    matches!(file.try_lock_shared(), Err(TryLockError::WouldBlock))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("job.toml");
        let path = dir.path().join("state/job.lock");
        let first = acquire(&path, &config).unwrap();
        let err = acquire(&path, &config).unwrap_err().to_string();
        assert!(
            err.contains("another agentsync run holds the lock"),
            "{err}"
        );
        assert!(is_held(&path));
        drop(first);
        assert!(!is_held(&path));
        acquire(&path, &config).unwrap();
        assert!(path.exists(), "the lock file is kept between runs");
    }

    #[test]
    fn a_symlink_in_place_of_the_lock_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("precious");
        std::fs::write(&target, "keep").unwrap();
        let path = dir.path().join("job.lock");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        assert!(acquire(&path, Path::new("job.toml")).is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    }
}

//! What the directory says it supports, read once from `/ServiceProviderConfig`
//! (RFC 7643 §5): PUT or PATCH, a filter, versions, the largest page.

use anyhow::{Context, Result};
use serde_json::Value;

use super::{SCIM_JSON, ScimSink, expect_success};
use crate::config::UpdateMode;
use crate::exit;
use crate::http::{Request, display_url};
use crate::progress;
use crate::request::join_url;

/// The directory's abilities, from `/ServiceProviderConfig` (RFC 7643 §5).
#[derive(Debug, Clone, Copy)]
pub(super) struct Found {
    /// How writes are sent, `update = "auto"` resolved.
    pub(super) put: bool,
    /// `filter.supported`: a user can be looked up by email.
    pub(super) filter: bool,
    /// `etag.supported`; `None` when the directory did not say. When false,
    /// versions are neither trusted nor sent.
    pub(super) etag: Option<bool>,
    /// `page_size` within `filter.maxResults`.
    pub(super) page_size: usize,
}

impl ScimSink {
    /// What the directory supports, read on first use. A directory without a
    /// readable `/ServiceProviderConfig` (404, 501, not JSON) is taken to have
    /// PUT, no filter, and versions only where its users carry them.
    pub(super) fn found(&self) -> Result<Found> {
        if let Some(found) = self.found.get() {
            return Ok(*found);
        }
        let found = self.discover()?;
        Ok(*self.found.get_or_init(|| found))
    }

    fn discover(&self) -> Result<Found> {
        let config = match self.remembered() {
            Some(config) => config,
            None => {
                let (config, lasting) = self.read_config()?;
                if lasting {
                    self.remember(&config);
                }
                config
            }
        };
        self.found_in(&config)
    }

    /// `/ServiceProviderConfig` as the directory answers it now: the object,
    /// or `Null` when it has none readable; and whether that answer may be
    /// kept between runs (an object, or a 404/501: no such endpoint).
    fn read_config(&self) -> Result<(Value, bool)> {
        let url = self.config_url();
        let req = Request::get(url).header("Accept", SCIM_JSON);
        let resp = self
            .client
            .send(&req)
            .context("reading the directory's /ServiceProviderConfig")?;
        if matches!(resp.status, 401 | 403) {
            return Err(expect_success(resp, "GET", &req.url).expect_err("401 is not a success"));
        }
        let config = resp
            .is_success()
            .then(|| serde_json::from_slice::<Value>(&resp.body).ok())
            .flatten()
            .filter(Value::is_object);
        match config {
            Some(config) => Ok((config, true)),
            None => {
                progress::debug(&format!(
                    "{} answered HTTP {} without a ServiceProviderConfig: assuming PUT, no filter",
                    display_url(&req.url),
                    resp.status
                ));
                Ok((Value::Null, matches!(resp.status, 404 | 501)))
            }
        }
    }

    fn config_url(&self) -> url::Url {
        join_url(&self.base_url, "/ServiceProviderConfig")
    }

    /// What the directory supports, by its `/ServiceProviderConfig` (`Null`:
    /// none) and the `[sink]` options.
    fn found_in(&self, config: &Value) -> Result<Found> {
        let supported = |name: &str| lenient_bool(&config[name]["supported"]);
        let patch = supported("patch");
        let put = match self.options.update {
            UpdateMode::Put => true,
            UpdateMode::Patch if patch == Some(false) => {
                return Err(exit::usage(format!(
                    "[sink] update = \"patch\", but {} says the directory does not support PATCH; \
                     use update = \"auto\" or \"put\"",
                    display_url(&self.config_url())
                )));
            }
            UpdateMode::Patch => false,
            UpdateMode::Auto => patch != Some(true),
        };
        let max_results = lenient_u64(&config["filter"]["maxResults"])
            .filter(|&n| n > 0)
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        let page_size = match (self.options.page_size, max_results) {
            (Some(asked), max) => asked.min(max.unwrap_or(usize::MAX)),
            (None, Some(max)) => max.min(LARGEST_PAGE),
            // Asked for a large page, the directory answers at most its
            // largest (RFC 7644 §3.4.2.4), and the listing steps by that.
            (None, None) => UNKNOWN_LARGEST,
        };
        let found = Found {
            put,
            filter: supported("filter") == Some(true),
            etag: supported("etag"),
            page_size,
        };
        progress::debug(&format!(
            "directory: writes by {}, filter {}, versions {}, {} users per page",
            if found.put { "PUT" } else { "PATCH" },
            if found.filter { "yes" } else { "no" },
            match found.etag {
                Some(true) => "yes",
                Some(false) => "no",
                None => "as the users carry them",
            },
            found.page_size
        ));
        Ok(found)
    }

    /// The answer kept by an earlier run for this directory, if it is less
    /// than a day old. A file that cannot be read, is not ours, is not what
    /// we write or names another directory is ignored (and rewritten).
    fn remembered(&self) -> Option<Value> {
        let path = self.options.directory_cache.as_ref()?;
        let kept = cache::read(path)?;
        let now = cache::now();
        let fresh = kept.base_url == self.base_url.as_str()
            && kept.read_at <= now
            && now - kept.read_at < CACHE_MAX_AGE_SECS;
        if !fresh {
            return None;
        }
        progress::debug(&format!(
            "directory: its ServiceProviderConfig as read {} s ago ({})",
            now - kept.read_at,
            path.display()
        ));
        Some(kept.config)
    }

    /// Keep `config` for the next runs; a failure only costs a request then.
    fn remember(&self, config: &Value) {
        let Some(path) = self.options.directory_cache.as_ref() else {
            return;
        };
        let kept = cache::Kept {
            base_url: self.base_url.to_string(),
            read_at: cache::now(),
            config: config.clone(),
        };
        if let Err(e) = cache::write(path, &kept) {
            progress::debug(&format!("not keeping the ServiceProviderConfig: {e:#}"));
        }
    }

    /// A write was refused: what the directory said of itself may be out of
    /// date, so the next run asks it again.
    pub(super) fn forget_directory(&self) {
        if let Some(path) = &self.options.directory_cache {
            cache::forget(path);
        }
    }
}

/// How long a kept `/ServiceProviderConfig` answer is used: a day.
const CACHE_MAX_AGE_SECS: u64 = 24 * 60 * 60;
/// The largest listing page taken from `filter.maxResults` when `[sink]
/// page_size` is not set: bounds the size of one response.
const LARGEST_PAGE: usize = 10_000;
/// The page asked for when neither `page_size` nor `maxResults` says.
const UNKNOWN_LARGEST: usize = 1_000;

/// The file that keeps the directory's answer between runs, in the state
/// directory: private (0600), never followed through a symlink, replaced
/// whole (written aside, then renamed).
mod cache {
    use std::fs::{File, OpenOptions};
    use std::io::{Read, Write};
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
    use std::path::{Path, PathBuf};

    use anyhow::{Context, Result};
    use serde_json::Value;

    /// The largest file read back.
    const MAX_BYTES: u64 = 1 << 20;

    #[derive(serde::Serialize, serde::Deserialize)]
    pub(super) struct Kept {
        pub(super) base_url: String,
        /// Seconds since the Unix epoch.
        pub(super) read_at: u64,
        /// The answer, `null` when the directory has none.
        pub(super) config: Value,
    }

    pub(super) fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    pub(super) fn read(path: &Path) -> Option<Kept> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .ok()?;
        let meta = file.metadata().ok()?;
        let dir_owner = path
            .parent()
            .and_then(|d| std::fs::metadata(d).ok())
            .map(|m| m.uid());
        // Ours alone: a file others may write, or another user's, is ignored.
        if !meta.is_file()
            || meta.len() > MAX_BYTES
            || meta.mode() & 0o022 != 0
            || dir_owner != Some(meta.uid())
        {
            return None;
        }
        let mut text = Vec::new();
        file.take(MAX_BYTES).read_to_end(&mut text).ok()?;
        crate::mapping::check_depth(&text).ok()?;
        serde_json::from_slice(&text).ok()
    }

    pub(super) fn write(path: &Path, kept: &Kept) -> Result<()> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
            && !dir.is_dir()
        {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut aside = path.as_os_str().to_owned();
        aside.push(format!(".{}.tmp", std::process::id()));
        let aside = PathBuf::from(aside);
        let written = (|| -> Result<()> {
            let mut file: File = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&aside)
                .with_context(|| format!("creating {}", aside.display()))?;
            file.write_all(&serde_json::to_vec(kept)?)?;
            file.sync_all()?;
            std::fs::rename(&aside, path).with_context(|| format!("replacing {}", path.display()))
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&aside);
        }
        written
    }

    pub(super) fn forget(path: &Path) {
        let _ = std::fs::remove_file(path);
    }
}

/// A number, or a string holding one (some directories quote them).
pub(super) fn lenient_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A boolean, or the string `"true"`/`"false"`; `None` when absent.
fn lenient_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

//! The seal of a saved plan: an HMAC-SHA256 of its whole content, keyed by a
//! secret kept in the state directory (`plans.key`, 32 random bytes, 0600,
//! made on first use), plus a short tag per part — each top-level field and
//! each change — so that an edit is refused naming what was edited. A plan
//! file another user could have written is refused before it is read.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::SavedPlan;
use crate::config::Job;
use crate::exit;

/// The key file's name in the state directory.
const KEY_FILE: &str = "plans.key";
const KEY_LEN: usize = 32;

/// What a saved plan carries to prove it is as it was saved.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Seal {
    /// HMAC-SHA256 of the plan without its seal, lower-case hex.
    pub mac: String,
    /// A tag (the HMAC's first 8 bytes) of each top-level field.
    pub parts: BTreeMap<String, String>,
    /// A tag of each change, in order.
    pub changes: Vec<String>,
}

type HmacSha256 = Hmac<Sha256>;

impl Seal {
    /// The seal of `plan` (whose own `seal` is `None`).
    pub(crate) fn of(plan: &SavedPlan, key: &[u8]) -> Result<Seal> {
        let parts = parts(plan)?
            .into_iter()
            .map(|(name, bytes)| (name.to_owned(), tag(key, name, &bytes)))
            .collect();
        let changes = plan
            .changes
            .iter()
            .map(|c| Ok(tag(key, "change", &serde_json::to_vec(c)?)))
            .collect::<Result<_>>()?;
        Ok(Seal {
            mac: hex(&mac(key, &serde_json::to_vec(plan)?)),
            parts,
            changes,
        })
    }
}

/// The plan's top-level fields, serialized, by name.
fn parts(plan: &SavedPlan) -> Result<Vec<(&'static str, Vec<u8>)>> {
    Ok(vec![
        ("format", serde_json::to_vec(&plan.format)?),
        ("kind", serde_json::to_vec(&plan.kind)?),
        ("made", serde_json::to_vec(&plan.made)?),
        ("config", serde_json::to_vec(&plan.config)?),
        ("name", serde_json::to_vec(&plan.name)?),
    ])
}

fn mac(key: &[u8], bytes: &[u8]) -> Vec<u8> {
    // An HMAC takes a key of any length.
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    m.update(bytes);
    m.finalize().into_bytes().to_vec()
}

fn tag(key: &[u8], part: &str, bytes: &[u8]) -> String {
    let mut input = Vec::with_capacity(part.len() + 1 + bytes.len());
    input.extend_from_slice(part.as_bytes());
    input.push(0);
    input.extend_from_slice(bytes);
    hex(&mac(key, &input)[..8])
}

fn hex(bytes: &[u8]) -> String {
    super::hex(bytes)
}

/// Check `plan`'s seal with `key`; the error says what was edited.
pub(crate) fn verify(plan: &SavedPlan, key: &[u8]) -> std::result::Result<(), String> {
    let Some(seal) = &plan.seal else {
        return Err("the plan has no seal (it was not saved by `--dry-run --out`)".into());
    };
    let mut content = plan.clone();
    content.seal = None;
    let bytes = serde_json::to_vec(&content).map_err(|e| e.to_string())?;
    let expected = hex_decode(&seal.mac);
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(key).map_err(|e| e.to_string())?;
    m.update(&bytes);
    if expected.is_some_and(|e| m.verify_slice(&e).is_ok()) {
        return Ok(());
    }
    Err(format!(
        "the plan was edited after it was saved ({})",
        edited(&content, seal, key)
    ))
}

/// What differs from the seal's tags, named as in the file.
fn edited(plan: &SavedPlan, seal: &Seal, key: &[u8]) -> String {
    let mut found = Vec::new();
    if let Ok(parts) = parts(plan) {
        for (name, bytes) in parts {
            if seal.parts.get(name) != Some(&tag(key, name, &bytes)) {
                found.push(format!("\"{name}\""));
            }
        }
    }
    if seal.changes.len() == plan.changes.len() {
        for (i, (c, t)) in plan.changes.iter().zip(&seal.changes).enumerate() {
            let now = serde_json::to_vec(c).map(|b| tag(key, "change", &b));
            if now.ok().as_ref() != Some(t) {
                found.push(format!("changes[{i}] (agent {})", c.agent_id));
            }
        }
    } else {
        found.push(format!(
            "{} changes, {} when saved",
            plan.changes.len(),
            seal.changes.len()
        ));
    }
    if found.is_empty() {
        "its seal does not match: a key of another state directory, or the seal edited".into()
    } else {
        format!("edited: {}", found.join(", "))
    }
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Where the plans' key lives: the state directory.
pub(crate) fn key_dir(job: &Job) -> Result<PathBuf> {
    job.sync.state_dir.clone().ok_or_else(|| {
        exit::usage(
            "a saved plan is sealed with a key kept in the state directory, and there is none: set AGENTSYNC_STATE_DIR (or STATE_DIRECTORY, XDG_STATE_HOME, HOME)",
        )
    })
}

/// The plans' key in `dir`: made (with `create`) on first use, 0600, never
/// through a symlink; a key file another user owns or could read is refused.
pub(crate) fn key(dir: &Path, create: bool) -> Result<Vec<u8>> {
    let path = dir.join(KEY_FILE);
    let open = |new: bool| {
        let mut options = std::fs::OpenOptions::new();
        options.read(true).custom_flags(libc::O_NOFOLLOW);
        if new {
            options.write(true).create_new(true).mode(0o600);
        }
        options.open(&path)
    };
    if create {
        crate::state::ensure_state_dir(dir)?;
        match open(true) {
            Ok(mut file) => {
                let mut key = [0u8; KEY_LEN];
                random(&mut key)?;
                file.write_all(&key)
                    .and_then(|()| file.sync_all())
                    .with_context(|| format!("writing the plans' key {}", path.display()))?;
                return Ok(key.to_vec());
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("creating the plans' key {}", path.display()));
            }
        }
    }
    let file = open(false).map_err(|e| {
        exit::usage(format!(
            "cannot read the plans' key {} ({e}): a plan can only be applied with the state directory it was saved with",
            path.display()
        ))
    })?;
    crate::state::check_owner(&file, &path).map_err(|e| exit::usage(format!("{e:#}")))?;
    let meta = file
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(exit::usage(format!(
            "the plans' key {} has mode {:04o}: others could read or change it; refused (chmod 600 it, or remove it and plan again)",
            path.display(),
            meta.permissions().mode() & 0o7777
        )));
    }
    let mut key = Vec::with_capacity(KEY_LEN);
    file.take(KEY_LEN as u64 + 1)
        .read_to_end(&mut key)
        .with_context(|| format!("reading {}", path.display()))?;
    if key.len() != KEY_LEN {
        return Err(exit::usage(format!(
            "the plans' key {} is not {KEY_LEN} bytes: remove it and plan again",
            path.display()
        )));
    }
    Ok(key)
}

fn random(buf: &mut [u8]) -> Result<()> {
    let mut file = std::fs::File::open("/dev/urandom").context("opening /dev/urandom")?;
    file.read_exact(buf).context("reading /dev/urandom")
}

/// Refuse a plan file that another user could have written: one that others
/// (group or world) may write, or that another user owns.
pub(crate) fn check_file(file: &std::fs::File, path: &Path) -> Result<()> {
    let meta = file
        .metadata()
        .map_err(|e| exit::usage(format!("cannot read the plan {}: {e}", path.display())))?;
    let mode = meta.permissions().mode() & 0o7777;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(exit::usage(format!(
            "the plan {} is owned by user {}, not by this user ({me}): it could say anything; refused",
            path.display(),
            meta.uid()
        )));
    }
    if mode & 0o022 != 0 {
        return Err(exit::usage(format!(
            "the plan {} has mode {mode:04o}: others could have written it; refused (chmod go-w it, or plan again)",
            path.display()
        )));
    }
    Ok(())
}

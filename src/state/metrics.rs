//! The outside signs of a run, for monitoring a nightly job: a Prometheus
//! text-format file (for `node_exporter`'s textfile collector), replaced
//! atomically at the end of every run, and the pings of a dead man's switch in
//! the healthchecks.io convention (`/start`, then the URL or `/fail`). Neither
//! can fail a run: a problem is a warning.

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::{http, progress};

/// What the metrics file says about one run.
#[derive(Debug, Default)]
pub(crate) struct RunMetrics<'a> {
    pub job: &'a str,
    /// Seconds since the epoch.
    pub time: u64,
    /// When a run last succeeded (this one, or one before); 0: never.
    pub last_success: u64,
    pub exit_code: u8,
    pub link: usize,
    pub update: usize,
    pub unlink: usize,
    pub failed_writes: usize,
    /// Writes whose answer was lost and whose outcome reading back could not tell.
    pub unknown_writes: usize,
    /// Agents someone else changed since agentsync set them, and of those,
    /// the ones this run wrote again.
    pub contested: usize,
    pub contested_overwritten: usize,
    /// Unknown when the run did not get that far.
    pub source_users: Option<usize>,
    pub agents: Option<usize>,
    pub duration: Duration,
}

const LAST_SUCCESS: &str = "agentsync_last_success_timestamp_seconds";

/// A label value escaped as the text format wants it.
fn label(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// The file's text.
pub(crate) fn render(m: &RunMetrics) -> String {
    let job = format!("job=\"{}\"", label(m.job));
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, samples: &[(String, String)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    };
    let one = |v: String| vec![(job.clone(), v)];
    gauge(
        "agentsync_last_run_timestamp_seconds",
        "When the last run ended (Unix time).",
        &one(m.time.to_string()),
    );
    gauge(
        LAST_SUCCESS,
        "When a run last succeeded (Unix time; 0: never).",
        &one(m.last_success.to_string()),
    );
    gauge(
        "agentsync_exit_code",
        "The exit code of the last run.",
        &one(m.exit_code.to_string()),
    );
    let kinds = [("link", m.link), ("update", m.update), ("unlink", m.unlink)];
    let changes: Vec<_> = kinds
        .iter()
        .map(|(k, n)| (format!("{job},kind=\"{k}\""), n.to_string()))
        .collect();
    gauge(
        "agentsync_changes",
        "Changes the last run applied, by kind.",
        &changes,
    );
    gauge(
        "agentsync_failed_writes",
        "Writes of the last run that failed.",
        &one(m.failed_writes.to_string()),
    );
    gauge(
        "agentsync_unknown_writes",
        "Writes of the last run whose answer was lost and whose outcome reading back could not tell.",
        &one(m.unknown_writes.to_string()),
    );
    gauge(
        "agentsync_contested",
        "Agents whose external ID someone else changed since agentsync set it, found by the last run.",
        &one(m.contested.to_string()),
    );
    gauge(
        "agentsync_contested_overwritten",
        "Contested agents the last run set back (two writers taking turns).",
        &one(m.contested_overwritten.to_string()),
    );
    if let Some(users) = m.source_users {
        gauge(
            "agentsync_source_users",
            "Users the source gave in the last run.",
            &one(users.to_string()),
        );
    }
    if let Some(agents) = m.agents {
        gauge(
            "agentsync_agents",
            "Agents in the directory in the last run.",
            &one(agents.to_string()),
        );
    }
    gauge(
        "agentsync_run_duration_seconds",
        "How long the last run took.",
        &one(format!("{:.3}", m.duration.as_secs_f64())),
    );
    out
}

/// The last-success time a previous metrics file at `path` holds for `job`.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // a float as Prometheus reads it; `as` saturates nonsense
pub(crate) fn previous_success(path: &Path, job: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let prefix = format!("{LAST_SUCCESS}{{job=\"{}\"}} ", label(job));
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

/// Replace the metrics file at `path`: written beside it, then renamed over
/// it, so a reader never sees half a file.
pub(crate) fn write(path: &Path, metrics: &RunMetrics) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".agentsync-metrics")
        .tempfile_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    tmp.write_all(render(metrics).as_bytes())
        .and_then(|()| tmp.as_file().sync_data())
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    // The collector runs as another user; the file holds no personal data.
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("setting the mode of {}", tmp.path().display()))?;
    tmp.persist(path)
        .with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// Where a ping goes: the check's URL, `/start` or `/fail` appended.
pub(crate) fn ping_target(url: &str, suffix: &str) -> String {
    format!("{}{suffix}", url.trim_end_matches('/'))
}

/// Ping `url` + `suffix`; a ping that fails is a warning, never an error.
/// The ping goes through the crate's one HTTP client, as every request does:
/// the same trust (bundled and system roots, `SSL_CERT_FILE`, and the
/// `extra_roots` of the job's `ca_file`s), redirects within its origin only,
/// a timeout of 5 s. The URL's path holds the check's key: it is masked
/// wherever the URL is shown.
pub(crate) fn ping(url: &url::Url, suffix: &str, extra_roots: &[ureq::tls::Certificate<'static>]) {
    if url.path().len() > 1 {
        crate::redact::register(url.path().trim_end_matches('/'));
    }
    if let Some(query) = url.query() {
        crate::redact::register(query);
    }
    let Ok(target) = url::Url::parse(&ping_target(url.as_str(), suffix)) else {
        return;
    };
    let client = http::Client::new(
        http::Settings {
            timeout: Duration::from_secs(5),
            retries: 1,
            max_retry_wait: Duration::from_secs(2),
            extra_roots: extra_roots.to_vec(),
            ..http::Settings::default()
        },
        None,
    )
    .bound(http::Binding {
        base: url.clone(),
        allow_insecure_http: false,
        follow_other_origins: false,
    });
    let why = match client.send(&http::Request::get(target)) {
        Ok(resp) if resp.is_success() => return,
        Ok(resp) => format!("HTTP {}", resp.status),
        Err(e) => format!("{e:#}"),
    };
    let host = url.host_str().unwrap_or("the ping URL");
    progress::warn(&format!(
        "the health-check ping{} to {host} failed: {why}",
        if suffix.is_empty() {
            String::new()
        } else {
            format!(" {suffix}")
        }
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_previous_success_is_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.prom");
        let m = RunMetrics {
            job: "pu\"nch",
            time: 20,
            last_success: 10,
            ..RunMetrics::default()
        };
        write(&path, &m).unwrap();
        assert_eq!(previous_success(&path, "pu\"nch"), Some(10));
        assert_eq!(previous_success(&path, "other"), None);
        assert!(!render(&m).contains("agentsync_source_users"));
    }

    #[test]
    fn pings_follow_the_convention() {
        assert_eq!(
            ping_target("https://hc/ping/k/", "/start"),
            "https://hc/ping/k/start"
        );
        assert_eq!(ping_target("https://hc/ping/k", ""), "https://hc/ping/k");
    }
}

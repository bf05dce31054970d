//! The demo's last step: `agentsync listen` on the demo's config, started as
//! a child process on a free loopback port with a secret made for the demo,
//! sent a signed login and a signed logout for one agent, then stopped with
//! SIGTERM; and the punches the mock's time clock recorded for them.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// How long the listener may take to start, and the punches to arrive.
const START_TIMEOUT: Duration = Duration::from_secs(20);
const PUNCH_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the listener may take to stop after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// The most lines of the listener's log kept for the demo's output.
const MAX_LOG_LINES: usize = 40;

/// What the step did, for the demo to print.
pub(crate) struct ListenDemo {
    /// Where events were posted.
    pub events_url: String,
    /// Each event sent: its type, its id and the listener's status.
    pub sent: Vec<(String, String, u16)>,
    /// The punches the time clock recorded, as `GET /_mock/punches` lists them.
    pub punches: Vec<Value>,
    /// The listener's log lines (stderr), in order.
    pub log: Vec<String>,
    /// How the listener ended after SIGTERM: its exit code, or why none.
    pub ended: String,
}

/// The events the demo sends, a login then a logout for `email`: each one's
/// type, id and body.
fn events(email: &str) -> [(&'static str, String, String); 2] {
    let created = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    ["user.login", "user.logout"].map(|kind| {
        let id = format!("evt-demo-{}", kind.trim_start_matches("user."));
        let body = json!({
            "id": id,
            "type": kind,
            "created_at": created,
            "data": {"account_id": "demo-account", "user_id": "demo-user", "user_email": email},
        });
        (kind, id, body.to_string())
    })
}

/// Start the listener of `config` (the current executable), send the two
/// events for `email`, wait for their punches on the mock at `mock_url`,
/// stop the listener. The listener's queue goes to `state_dir`.
pub(crate) fn run(
    config: &Path,
    state_dir: &Path,
    mock_url: &str,
    email: &str,
) -> Result<ListenDemo> {
    let text =
        std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
    let (path, secret_env) = listen_table(&text)?;
    let key = random_key()?;
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    );
    let exe = std::env::current_exe().context("finding agentsync's own executable")?;
    let mut child = Command::new(exe)
        .arg("listen")
        .arg("--config")
        .arg(config)
        .args(["--addr", "127.0.0.1:0"])
        .env("AGENTSYNC_STATE_DIR", state_dir)
        .env(&secret_env, &secret)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting agentsync listen")?;
    let lines = child.stderr.take().map(read_lines);
    let result = (|| {
        let Some(lines) = &lines else {
            bail!("the listener's stderr is not readable")
        };
        let (base, mut log) = wait_for_address(&mut child, lines)?;
        let events_url = format!("{base}{path}");
        let agent = agent();
        let mut sent = Vec::new();
        for (n, (kind, id, body)) in events(email).into_iter().enumerate() {
            let status = post_signed(&agent, &events_url, &key, &format!("msg_demo_{n}"), &body)?;
            sent.push((kind.to_owned(), id, status));
        }
        let punches = wait_for_punches(&agent, mock_url, sent.len())?;
        log.extend(lines.try_iter());
        Ok(ListenDemo {
            events_url,
            sent,
            punches,
            log,
            ended: String::new(),
        })
    })();
    let ended = stop(&mut child);
    let mut demo = result?;
    if let Some(lines) = &lines {
        // The thread ends with the child's stderr; what it read is all there.
        demo.log.extend(lines.iter());
    }
    demo.log.truncate(MAX_LOG_LINES);
    demo.ended = ended;
    Ok(demo)
}

/// `[listen] path` (default `/events`) and `secret_env` of the config.
fn listen_table(text: &str) -> Result<(String, String)> {
    let table: toml::Table = toml::from_str(text).context("reading the demo's config")?;
    let Some(listen) = table.get("listen").and_then(toml::Value::as_table) else {
        bail!("the demo's config has no [listen] table");
    };
    let path = listen
        .get("path")
        .and_then(toml::Value::as_str)
        .unwrap_or("/events")
        .to_owned();
    let secret_env = listen
        .get("secret_env")
        .and_then(toml::Value::as_str)
        .unwrap_or("AGENTSYNC_WEBHOOK_SECRET")
        .to_owned();
    Ok((path, secret_env))
}

/// 32 bytes from the system's random source: the demo's signing key.
fn random_key() -> Result<[u8; 32]> {
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .context("reading /dev/urandom")?;
    Ok(key)
}

/// The lines of `stderr`, read on a thread of their own so that the pipe
/// never fills; the channel closes when the child closes it.
fn read_lines(stderr: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The listener's `listening on http://…` line: its base URL, and the lines
/// before it.
fn wait_for_address(child: &mut Child, lines: &Receiver<String>) -> Result<(String, Vec<String>)> {
    let deadline = Instant::now() + START_TIMEOUT;
    let mut log = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                if let Some(at) = line.find("listening on http://") {
                    let url = line[at + "listening on ".len()..]
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .trim_end_matches('/')
                        .to_owned();
                    log.push(line);
                    return Ok((url, log));
                }
                log.push(line);
            }
            Err(RecvTimeoutError::Timeout) => {
                bail!("the listener did not start within {START_TIMEOUT:?}")
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                bail!(
                    "the listener exited ({status}) before listening:\n{}",
                    log.join("\n")
                )
            }
        }
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(10)))
            .build(),
    )
}

/// POST `body` signed the Standard Webhooks way; the status answered.
fn post_signed(
    agent: &ureq::Agent,
    url: &str,
    key: &[u8],
    msg_id: &str,
    body: &str,
) -> Result<u16> {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
        .to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(key).context("the demo's signing key")?;
    mac.update(format!("{msg_id}.{timestamp}.{body}").as_bytes());
    let signature = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    let reply = agent
        .post(url)
        .header("Content-Type", "application/json")
        .header("webhook-id", msg_id)
        .header("webhook-timestamp", &timestamp)
        .header("webhook-signature", &signature)
        .send(body)
        .with_context(|| format!("POST {url}"))?;
    Ok(reply.status().as_u16())
}

/// The time clock's punches once there are `n` (checked every 50 ms).
fn wait_for_punches(agent: &ureq::Agent, mock_url: &str, n: usize) -> Result<Vec<Value>> {
    let url = format!("{mock_url}/_mock/punches");
    let deadline = Instant::now() + PUNCH_TIMEOUT;
    loop {
        let text = agent
            .get(&url)
            .call()
            .and_then(|mut r| r.body_mut().read_to_string())
            .with_context(|| format!("GET {url}"))?;
        let punches: Value = serde_json::from_str(&text).context("the mock's punches")?;
        let list = punches["punches"].as_array().cloned().unwrap_or_default();
        if list.len() >= n {
            return Ok(list);
        }
        if Instant::now() >= deadline {
            bail!("{} of {n} punches after {PUNCH_TIMEOUT:?}", list.len());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM, then wait (bounded); SIGKILL if it does not end. How it ended.
fn stop(child: &mut Child) -> String {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) with our own child's pid, not yet reaped (so not
        // reused), and a plain signal number; it touches no memory of ours.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                return match status.code() {
                    Some(code) => format!("exit {code}"),
                    None => status.to_string(),
                };
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return format!("still running {STOP_TIMEOUT:?} after SIGTERM: killed");
            }
        }
    }
}

impl ListenDemo {
    /// The step's output: what was sent, what the time clock recorded, the
    /// listener's log.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "listener: {} (standard-webhooks, a secret made for the demo)",
            self.events_url
        );
        for (kind, id, status) in &self.sent {
            let _ = writeln!(out, "sent {kind:<11} id {id:<16} -> {status}");
        }
        let _ = writeln!(out, "time clock punches:");
        for p in &self.punches {
            let text = |k: &str| p[k].as_str().unwrap_or("-").to_owned();
            let _ = writeln!(
                out,
                "  user {} {:<6} Idempotency-Key {} at {}",
                text("user_id"),
                text("event"),
                text("idempotency_key"),
                text("at")
            );
        }
        let _ = writeln!(out, "listener log:");
        for line in &self.log {
            let _ = writeln!(out, "  {line}");
        }
        let _ = writeln!(out, "listener stopped with SIGTERM: {}", self.ended);
        out
    }
}

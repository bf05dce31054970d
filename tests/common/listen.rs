//! `agentsync listen` as a test runs it: a job with a directory file, a punch
//! action and a `[listen]` table; the listener started on a free port of
//! 127.0.0.1 and stopped (SIGTERM or kill -9) by the test; events signed the
//! Standard Webhooks way.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};

use super::{Job, JobDir, Run, agentsync};

/// The raw key of the tests' Standard Webhooks secret.
pub const KEY: &[u8] = b"listen-test-key-0123456789";

/// The secret as the environment gives it: `whsec_<base64>`.
pub fn secret() -> String {
    format!("whsec_{}", STANDARD.encode(KEY))
}

/// The Standard Webhooks headers of `body`, signed with `key` as of `ts`.
pub fn sign_at(key: &[u8], msg_id: &str, ts: i64, body: &str) -> Vec<(String, String)> {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(format!("{msg_id}.{ts}.{body}").as_bytes());
    let sig = STANDARD.encode(mac.finalize().into_bytes());
    vec![
        ("webhook-id".into(), msg_id.into()),
        ("webhook-timestamp".into(), ts.to_string()),
        ("webhook-signature".into(), format!("v1,{sig}")),
    ]
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}

/// Signed now with the tests' key.
pub fn sign(msg_id: &str, body: &str) -> Vec<(String, String)> {
    sign_at(KEY, msg_id, now(), body)
}

/// A Talkdesk-style login or logout event.
pub fn event(id: &str, kind: &str, email: &str) -> String {
    serde_json::json!({
        "id": id,
        "type": format!("user.{kind}"),
        "created_at": "2026-12-06T08:00:00Z",
        "data": {"account_id": "acme", "user_id": "u1", "user_email": email},
    })
    .to_string()
}

/// The `[listen]` table the tests use with `auth` lines of their own, and
/// routes for login and logout.
pub fn listen_table(auth: &str) -> String {
    format!(
        r#"
[listen]
{auth}
refresh_secs = 1

[[listen.on]]
when = '.type == "user.login"'
action = "punch"
vars = {{ event = "login" }}

[[listen.on]]
when = '.type == "user.logout"'
action = "punch"
vars = {{ event = "logout" }}
"#
    )
}

/// A job whose directory is `agents` (email, external ID) in a file, whose
/// punch action goes to `clock` with the event ID as `Idempotency-Key`.
pub fn listen_job(clock: &str, agents: &[(&str, Option<&str>)], auth: &str) -> JobDir {
    let base = Job::source(clock)
        .records(".users")
        .sink_file("agents.json")
        .action("punch", "path", "/users/{{external_id}}/punch-clock")
        .action("punch", "body", r#"{"event": "{{var.event}}"}"#)
        .text();
    let text = format!(
        "{}headers = {{ Idempotency-Key = \"{{{{event_id}}}}\" }}\n{}",
        base,
        listen_table(auth)
    );
    let job = Job::raw(text).write();
    let rows: Vec<_> = agents
        .iter()
        .enumerate()
        .map(|(i, (email, ext))| serde_json::json!({"id": format!("k{i}"), "email": email, "external_id": ext}))
        .collect();
    job.write("agents.json", &serde_json::Value::from(rows).to_string());
    job
}

/// The `auth` lines of Standard Webhooks with the tests' secret.
pub const HMAC_AUTH: &str = "auth = \"standard-webhooks\"\nsecret_env = \"LISTEN_SECRET\"";

/// `agentsync listen` running on a free port.
pub struct Listener {
    pub base: String,
    child: Option<Child>,
    log: Arc<Mutex<String>>,
}

impl Run {
    /// `listen --config JOB --addr 127.0.0.1:0` with the tests' secret.
    pub fn listen(job: &JobDir) -> Run {
        agentsync(&["listen", "--addr", "127.0.0.1:0"])
            .config(job)
            .env("LISTEN_SECRET", &secret())
    }
}

impl Listener {
    /// Start `run` (a `listen`) and wait for its address.
    pub fn start(mut run: Run) -> Listener {
        let mut child = run
            .cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start agentsync listen");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(at) = line.find("listening on http://") {
                    // In text or in a JSON line's message.
                    let url = line[at + "listening on ".len()..]
                        .split(['"', ' '])
                        .next()
                        .unwrap_or_default();
                    let _ = tx.send(url.to_owned());
                }
                let mut log = lines.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut listener = Listener {
            base: String::new(),
            child: Some(child),
            log,
        };
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(base) => listener.base = base,
            Err(_) => {
                let code = listener.kill9();
                panic!("the listener did not start ({code:?}):\n{}", listener.log());
            }
        }
        listener
    }

    /// What it wrote on stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// POST `body` to `path` with `headers`: the status and the answer.
    pub fn post(&self, path: &str, headers: &[(String, String)], body: &str) -> (u16, String) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut req = agent.post(&format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let mut resp = req
            .header("Content-Type", "application/json")
            .send(body)
            .expect("the listener answers");
        let status = resp.status().as_u16();
        (status, resp.body_mut().read_to_string().unwrap_or_default())
    }

    /// POST a signed event to `/events`; its status.
    pub fn send(&self, body: &str) -> u16 {
        let msg = format!("msg_{}", fastrand::u64(..));
        self.post("/events", &sign(&msg, body), body).0
    }

    /// GET `path`: the status and the body.
    pub fn get(&self, path: &str) -> (u16, String) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut resp = agent
            .get(&format!("{}{path}", self.base))
            .call()
            .expect("the listener answers");
        let status = resp.status().as_u16();
        (status, resp.body_mut().read_to_string().unwrap_or_default())
    }

    /// The value of a metric of `/metrics` (read as Prometheus text, which it
    /// must be): `name` or `name{label="value"}`.
    pub fn metric(&self, name: &str) -> f64 {
        let (status, text) = self.get("/metrics");
        assert_eq!(status, 200);
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
            .expect("/metrics is Prometheus text");
        let (metric, label) = match name.split_once('{') {
            Some((m, l)) => {
                let (k, v) = l.trim_end_matches('}').split_once('=').unwrap();
                (m, Some((k, v.trim_matches('"'))))
            }
            None => (name, None),
        };
        assert!(scrape.docs.contains_key(metric), "{metric} has no HELP");
        let sample = scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"));
        match sample.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
            _ => panic!("{name} is neither a counter nor a gauge"),
        }
    }

    /// SIGTERM, then wait: the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let child = self.child.as_mut()?;
        let pid = i32::try_from(child.id()).unwrap();
        // SAFETY: kill(2) on our own child's process ID.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let status = self.child.take()?.wait().unwrap();
        status.code()
    }

    /// kill -9, then wait.
    pub fn kill9(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = child.kill();
        child.wait().unwrap().code()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Wait until `done` holds (at most 30 s, then fail naming `what`).
#[track_caller]
pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

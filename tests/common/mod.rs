//! Test helpers, so that a test reads like a use of the tool: build a
//! config with [`Job`], run the real binary with [`agentsync`], serve HTTP
//! from inside the test with [`Server`] (or the bundled mock, or [`Scim`]).
#![allow(dead_code)]

mod http;
mod job;
pub mod jwt;
pub mod listen;
pub mod tls;

pub use http::{Req, Resp, Server};
pub use job::{Job, JobDir};

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A run of the binary to be: arguments, config, environment.
#[must_use]
pub struct Run {
    cmd: Command,
}

/// `agentsync ARGS…`, with agentsync's own variables cleared.
pub fn agentsync(args: &[&str]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agentsync"));
    cmd.args(args)
        .env_remove("AGENTSYNC_CONFIG")
        .stdin(Stdio::null());
    Run { cmd }
}

/// `agentsync --config JOB` (a sync).
pub fn sync(job: &JobDir) -> Run {
    agentsync(&[]).config(job)
}

/// `agentsync fetch --config JOB`.
pub fn fetch(job: &JobDir) -> Run {
    agentsync(&["fetch"]).config(job)
}

impl Run {
    /// `--config` with the job's file, and the job's own state directory
    /// (`AGENTSYNC_STATE_DIR`), so that no test writes to the user's.
    /// Keep the journal and the lock in `job`'s state directory (never the
    /// user's), without naming the config.
    pub fn state(self, job: &JobDir) -> Self {
        self.env("AGENTSYNC_STATE_DIR", job.state_dir().to_str().unwrap())
    }

    pub fn config(self, job: &JobDir) -> Self {
        self.args(&["--config", job.config()])
            .env("AGENTSYNC_STATE_DIR", job.state_dir().to_str().unwrap())
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.cmd.arg(arg);
        self
    }

    pub fn args(mut self, args: &[&str]) -> Self {
        self.cmd.args(args);
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.cmd.env(name, value);
        self
    }

    pub fn env_remove(mut self, name: &str) -> Self {
        self.cmd.env_remove(name);
        self
    }

    /// `--output json`.
    pub fn output_json(self) -> Self {
        self.args(&["--output", "json"])
    }

    /// `--dry-run`.
    pub fn dry_run(self) -> Self {
        self.arg("--dry-run")
    }

    /// `-q`.
    pub fn quiet(self) -> Self {
        self.arg("-q")
    }

    /// Run to the end.
    pub fn run(mut self) -> Output {
        let out = self.cmd.output().expect("run agentsync");
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Run to the end and assert the exit code.
    #[track_caller]
    pub fn expect(self, code: i32) -> Output {
        let out = self.run();
        out.expect(code);
        out
    }

    /// Run with stdout read for `lines` lines and then closed, as
    /// `agentsync … | head -n LINES` does.
    pub fn head(mut self, lines: usize) -> Output {
        use std::io::{BufRead, BufReader, Read};
        let mut child = self
            .cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start agentsync");
        let mut stderr = child.stderr.take().unwrap();
        let errors = std::thread::spawn(move || {
            let mut text = String::new();
            stderr.read_to_string(&mut text).unwrap();
            text
        });
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut stdout = String::new();
        for _ in 0..lines {
            if reader.read_line(&mut stdout).unwrap() == 0 {
                break;
            }
        }
        drop(reader);
        let status = child.wait().unwrap();
        Output {
            code: status.code().unwrap_or(-1),
            stdout,
            stderr: errors.join().unwrap(),
        }
    }

    /// Limit the size of any file the run writes to `bytes` (`RLIMIT_FSIZE`,
    /// with `SIGXFSZ` ignored): a write past it fails as on a full disk.
    pub fn file_size_limit(mut self, bytes: u64) -> Self {
        use std::os::unix::process::CommandExt;
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            self.cmd.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: bytes,
                    rlim_max: bytes,
                };
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        self
    }

    /// Start in the background (stdout and stderr inherited).
    pub fn spawn(mut self) -> Child {
        self.cmd.spawn().expect("start agentsync")
    }

    /// Start in the background, stdout and stderr captured (read them with
    /// `wait_with_output`).
    pub fn spawn_captured(mut self) -> Child {
        self.cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start agentsync")
    }
}

/// What a run of the binary printed and how it ended.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// stdout as one JSON document.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// stdout as one JSON document a line.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Assert the exit code, showing the output when it differs.
    #[track_caller]
    pub fn expect(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// A fixture file's text.
pub fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    fixture_text(&path)
}

fn fixture_text(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `agentsync mock` as a child process on a free port, killed when dropped.
pub struct Mock {
    pub base: String,
    child: Child,
}

impl Mock {
    pub fn start(extra: &[&str]) -> Self {
        // Pick a free port, then hand it to the mock.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut args = vec!["mock", "--addr", addr.as_str()];
        args.extend_from_slice(extra);
        let mut cmd = agentsync(&args).cmd;
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the mock");
        // Owned from here on, so that it is killed and reaped on every path.
        let mock = Mock {
            base: format!("http://{addr}"),
            child,
        };
        for _ in 0..200 {
            if std::net::TcpStream::connect(&addr).is_ok() {
                return mock;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        drop(mock);
        panic!("the mock did not start on {addr}");
    }

    /// `configs/punch.toml`, pointed at this mock.
    pub fn punch_job(&self) -> JobDir {
        let text = fixture_text(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/punch.toml"));
        Job::raw(text.replace("http://127.0.0.1:8787", &self.base)).write()
    }

    /// GET a path of the mock as JSON.
    pub fn get(&self, path: &str) -> serde_json::Value {
        let mut resp = ureq::get(&format!("{}{path}", self.base)).call().unwrap();
        serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap()
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small SCIM 2.0 directory of its own (not agentsync's mock), served by a
/// [`Server`]: list with startIndex/count, PUT and PATCH of one user. Writes
/// to the ids in `fail_ids` answer 400 with a SCIM error.
pub struct Scim {
    pub server: Server,
    pub users: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Scim {
    pub fn start(agents: &[(&str, &str, Option<&str>)], fail_ids: &[&str]) -> Self {
        Self::start_slow(agents, fail_ids, Duration::ZERO)
    }

    /// Agents `a1` to `aN` (`u1@x.com` to `uN@x.com`), no external IDs yet,
    /// every write taking `write_delay`.
    pub fn numbered(n: usize, write_delay: Duration) -> Self {
        let agents: Vec<(String, String)> = (1..=n)
            .map(|i| (format!("a{i}"), format!("u{i}@x.com")))
            .collect();
        let list: Vec<(&str, &str, Option<&str>)> = agents
            .iter()
            .map(|(id, email)| (id.as_str(), email.as_str(), None))
            .collect();
        Self::start_slow(&list, &[], write_delay)
    }

    /// As `start`, with every write taking `write_delay`.
    pub fn start_slow(
        agents: &[(&str, &str, Option<&str>)],
        fail_ids: &[&str],
        write_delay: Duration,
    ) -> Self {
        Self::serve(agents, fail_ids, write_delay, |_| None)
    }

    /// As `start`, with `gate` asked first about every request: an answer
    /// it gives is sent instead of the directory's (a 429, a 401).
    pub fn start_gated(
        agents: &[(&str, &str, Option<&str>)],
        gate: impl Fn(&Req) -> Option<Resp> + Send + Sync + 'static,
    ) -> Self {
        Self::serve(agents, &[], Duration::ZERO, gate)
    }

    fn serve(
        agents: &[(&str, &str, Option<&str>)],
        fail_ids: &[&str],
        write_delay: Duration,
        gate: impl Fn(&Req) -> Option<Resp> + Send + Sync + 'static,
    ) -> Self {
        use serde_json::json;
        let users: Vec<_> = agents
            .iter()
            .map(|(id, email, ext)| {
                let mut u = json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "id": id,
                    "userName": email,
                    "name": {"formatted": format!("Agent {id}")},
                    "emails": [{"value": email, "primary": true}],
                    "active": true,
                    "meta": {"resourceType": "User", "version": "W/\"1\""},
                });
                if let Some(ext) = ext {
                    u["externalId"] = json!(ext);
                }
                u
            })
            .collect();
        let users = Arc::new(Mutex::new(users));
        let fail: Vec<String> = fail_ids.iter().map(|s| s.to_string()).collect();
        let state = users.clone();
        let server = Server::start(move |req| {
            let scim = |status: u16, v: serde_json::Value| {
                Resp::status(status, "application/scim+json", v.to_string())
            };
            if let Some(answer) = gate(req) {
                return answer;
            }
            if req.method != "GET" {
                std::thread::sleep(write_delay);
            }
            let mut users = state.lock().unwrap();
            let path = req.path().to_owned();
            if path == "/scim/v2/Users" && req.method == "GET" {
                let start: usize = req.query("startIndex").map_or(1, |s| s.parse().unwrap());
                let count: usize = req.query("count").map_or(100, |s| s.parse().unwrap());
                let page: Vec<_> = users.iter().skip(start - 1).take(count).cloned().collect();
                return scim(
                    200,
                    json!({
                        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                        "totalResults": users.len(),
                        "startIndex": start,
                        "itemsPerPage": page.len(),
                        "Resources": page,
                    }),
                );
            }
            let Some(id) = path.strip_prefix("/scim/v2/Users/") else {
                return scim(404, json!({"detail": "no such endpoint"}));
            };
            if fail.iter().any(|f| f == id) {
                return scim(
                    400,
                    json!({
                        "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                        "status": "400", "scimType": "invalidValue",
                        "detail": "externalId rejected by policy",
                    }),
                );
            }
            let Some(user) = users.iter_mut().find(|u| u["id"] == id) else {
                return scim(
                    404,
                    json!({"status": "404", "detail": format!("user {id} not found")}),
                );
            };
            let body: serde_json::Value = serde_json::from_str(&req.body).unwrap_or_default();
            match req.method.as_str() {
                "PUT" => {
                    let mut next = body;
                    next["id"] = json!(id);
                    next["meta"] = user["meta"].clone();
                    *user = next;
                }
                "PATCH" => {
                    for op in body["Operations"].as_array().cloned().unwrap_or_default() {
                        match op["op"]
                            .as_str()
                            .unwrap_or("")
                            .to_ascii_lowercase()
                            .as_str()
                        {
                            "replace" | "add" => user["externalId"] = op["value"].clone(),
                            "remove" => {
                                user.as_object_mut().unwrap().remove("externalId");
                            }
                            _ => return scim(400, json!({"detail": "bad op"})),
                        }
                    }
                }
                "GET" => {}
                _ => return scim(405, json!({"detail": "method not allowed"})),
            }
            scim(200, user.clone())
        });
        Scim { server, users }
    }

    pub fn base(&self) -> String {
        format!("{}/scim/v2", self.server.base)
    }

    /// The external ID of the agent with this SCIM id.
    pub fn external_id(&self, id: &str) -> Option<String> {
        let users = self.users.lock().unwrap();
        let user = users.iter().find(|u| u["id"] == id).expect("agent exists");
        user["externalId"].as_str().map(str::to_owned)
    }

    /// Change an agent's external ID behind agentsync's back.
    pub fn set_external_id(&self, id: &str, external_id: &str) {
        let mut users = self.users.lock().unwrap();
        let user = users
            .iter_mut()
            .find(|u| u["id"] == id)
            .expect("agent exists");
        user["externalId"] = serde_json::json!(external_id);
    }

    /// Wait until the directory has received at least `n` writes.
    #[track_caller]
    pub fn wait_for_writes(&self, n: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while self.writes().len() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "the writes did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Requests that wrote (PUT or PATCH).
    pub fn writes(&self) -> Vec<Req> {
        self.server
            .requests()
            .into_iter()
            .filter(|r| r.method == "PUT" || r.method == "PATCH")
            .collect()
    }
}

/// A source serving `users` (id, email) on one page, under `users`.
#[allow(dead_code)] // not every test file reads a source
pub fn one_page_source<I: AsRef<str>, E: AsRef<str>>(users: &[(I, E)]) -> Server {
    let users: Vec<_> = users
        .iter()
        .map(|(id, email)| serde_json::json!({"id": id.as_ref(), "email": email.as_ref()}))
        .collect();
    let body = serde_json::json!({ "users": users });
    Server::start(move |_| Resp::value(&body))
}

/// The secrets the bundled configs (`configs/`, `configs/examples/`) read
/// from the environment.
#[allow(dead_code)] // not every test file checks the bundled configs
pub const CONFIG_SECRETS: [&str; 10] = [
    "WORKFORCE_TOKEN",
    "ROSTER_API_KEY",
    "TALKDESK_CLIENT_ID",
    "TALKDESK_CLIENT_SECRET",
    "PEOPLE_USER",
    "PEOPLE_PASSWORD",
    "GIT_TOKEN",
    "TALKDESK_SCIM_TOKEN",
    "TIMECLOCK_TOKEN",
    "SCHEDULER_TOKEN",
];

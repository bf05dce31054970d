//! Test helpers: run the real `agentsync` binary, and serve HTTP from inside
//! the test on 127.0.0.1 with a handler closure, recording every request.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    /// Path and query, e.g. `/users?page=2`.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Req {
    pub fn path(&self) -> &str {
        self.url.split('?').next().unwrap_or("")
    }

    /// The decoded value of query parameter `name`.
    pub fn query(&self, name: &str) -> Option<String> {
        let query = self.url.split_once('?')?.1;
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A response to send.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(body: impl Into<String>) -> Self {
        Resp {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.into().into_bytes(),
        }
    }

    pub fn value(v: &serde_json::Value) -> Self {
        Resp::json(v.to_string())
    }

    pub fn status(status: u16, content_type: &str, body: impl Into<String>) -> Self {
        Resp {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into().into_bytes(),
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

type Handler = dyn Fn(&Req) -> Resp + Send + Sync;

/// An HTTP server on 127.0.0.1 for one test; stopped when dropped.
pub struct Server {
    pub base: String,
    requests: Arc<Mutex<Vec<Req>>>,
    stop: Arc<AtomicBool>,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start(handler: impl Fn(&Req) -> Resp + Send + Sync + 'static) -> Self {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind 127.0.0.1"));
        let port = server.server_addr().to_ip().expect("ip address").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let thread = {
            let (server, requests, stop) = (server.clone(), requests.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let Ok(Some(mut request)) = server.recv_timeout(Duration::from_millis(50))
                    else {
                        continue;
                    };
                    let mut body = String::new();
                    let _ = request.as_reader().read_to_string(&mut body);
                    let req = Req {
                        method: request.method().to_string(),
                        url: request.url().to_owned(),
                        headers: request
                            .headers()
                            .iter()
                            .map(|h| (h.field.to_string(), h.value.to_string()))
                            .collect(),
                        body,
                    };
                    requests.lock().unwrap().push(req.clone());
                    let resp = handler(&req);
                    let mut response =
                        tiny_http::Response::from_data(resp.body).with_status_code(resp.status);
                    for (name, value) in resp.headers {
                        response.add_header(
                            tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes())
                                .unwrap(),
                        );
                    }
                    let _ = request.respond(response);
                }
            })
        };
        Server {
            base: format!("http://127.0.0.1:{port}"),
            requests,
            stop,
            server,
            thread: Some(thread),
        }
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Req> {
        self.requests.lock().unwrap().clone()
    }

    pub fn request_count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What a run of the binary printed and how it ended.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
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

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_agentsync")
}

/// The binary with a clean environment for agentsync's own variables.
pub fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env_remove("AGENTSYNC_CONFIG")
        .stdin(Stdio::null());
    cmd
}

pub fn run(args: &[&str]) -> Run {
    run_with(command(args))
}

pub fn run_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = command(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_with(cmd)
}

pub fn run_with(mut cmd: Command) -> Run {
    let out = cmd.output().expect("run agentsync");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A temporary folder holding a config whose `BASE` is replaced by `base`.
pub struct Job {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Job {
    pub fn new(config: &str, base: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.toml");
        std::fs::write(&path, config.replace("BASE", base)).unwrap();
        Job { dir, config: path }
    }

    pub fn config(&self) -> &str {
        self.config.to_str().unwrap()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

/// A fixture file's text.
pub fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
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
        let child = command(&args)
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

    /// As `start`, with every write taking `write_delay`.
    pub fn start_slow(
        agents: &[(&str, &str, Option<&str>)],
        fail_ids: &[&str],
        write_delay: Duration,
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

    /// Requests that wrote (PUT or PATCH).
    pub fn writes(&self) -> Vec<Req> {
        self.server
            .requests()
            .into_iter()
            .filter(|r| r.method == "PUT" || r.method == "PATCH")
            .collect()
    }
}

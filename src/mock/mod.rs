//! The bundled mock: the systems of the reference flow, in memory, on loopback.
//!
//! - `GET /users/formatted?page=N`: time-clock users already shaped `{id, email}`;
//! - `GET /users/not-formatted?page=N`: the same users with the time clock's own keys;
//! - `POST /users/{id}/punch-clock`: records a punch (201) with its `Idempotency-Key`,
//!   a repeated key answered as the first time; `GET /_mock/punches` (or `/punches`) lists them;
//! - `/scim/v2/Users`: a SCIM 2.0 directory (list, get, PUT, PATCH);
//! - `GET /scim/v2/ServiceProviderConfig`: what the directory supports (RFC 7643 §5);
//! - `GET /scim/v2/Users?filter=userName eq "x"` (or `emails.value eq`, `emails eq`):
//!   lookup by email, case-insensitive; other filters answer 400 `invalidFilter`;
//! - `meta.version` (`W/"N"`, new on every write) and an `ETag` header on a user;
//!   PUT and PATCH with a stale `If-Match` answer 412;
//! - `POST /oauth/token` (`--talkdesk`): Talkdesk's STS, Basic client auth
//!   (`--client-id`, `--client-secret`), form `grant_type=client_credentials&token_type=opaque`;
//!   then every `/scim/v2` request needs `Authorization: <token>`, a `Bearer` prefix is refused;
//! - `GET /_mock/stats`: requests counted by kind; `POST /_mock/stats/reset` reads and zeroes them;
//! - `--no-patch` (PATCH answers 501), `--no-etag` (no versions, `If-Match` ignored),
//!   `--no-filter` (a `filter` answers 400): a plainer directory, said so in its config.
//!
//! The directory is seeded so that a first sync has something of every kind to
//! do: agents to link, stale IDs to update, agents already linked, source users
//! without an agent and agents without a source user.

mod punches;
mod resource;
mod scim;
pub(crate) mod server;
mod source;
mod stats;
mod sts;

mod demo;
mod demo_listen;
pub(crate) use demo::demo;

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use resource::agent_resource;
use scim::Directory;
use server::{Reply, Request, Server};
use stats::{Kind, Stats};
use sts::Sts;
pub(crate) use sts::TalkdeskClient;

#[derive(Debug, Clone)]
#[allow(clippy::struct_excessive_bools)] // each switch of the mock's behaviour is on or off
pub(crate) struct MockOptions {
    pub addr: String,
    pub users: usize,
    pub agents: usize,
    pub page_size: usize,
    /// The directory's largest listing page, also its `filter.maxResults`.
    pub max_results: usize,
    pub latency_ms: u64,
    /// Log punches and directory writes on stderr.
    pub log: bool,
    /// PATCH is served (else 501, and the config says so).
    pub patch: bool,
    /// Users carry `meta.version` and writes honour `If-Match`.
    pub etag: bool,
    /// The user list takes a `filter` (else 400 `invalidFilter`).
    pub filter: bool,
    /// Talkdesk mode: the STS token endpoint, and SCIM only with its tokens.
    pub talkdesk: Option<TalkdeskClient>,
}

impl Default for MockOptions {
    fn default() -> Self {
        MockOptions {
            addr: "127.0.0.1:8787".into(),
            users: 25,
            agents: 25,
            page_size: 10,
            max_results: 1000,
            latency_ms: 0,
            log: true,
            patch: true,
            etag: true,
            filter: true,
            talkdesk: None,
        }
    }
}

/// A running mock; stopped when dropped.
pub(crate) struct MockServer {
    server: Server,
    /// How many agents the directory was seeded with.
    agents: usize,
}

impl MockServer {
    pub(crate) fn base_url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    fn wait(self) {
        self.server.wait();
    }
}

/// Start the mock on `opts.addr` (loopback only; port 0 picks a free port).
pub(crate) fn start(opts: MockOptions) -> Result<MockServer> {
    let addr: SocketAddr = opts
        .addr
        .parse()
        .with_context(|| format!("--addr {:?} is not an IP address and port", opts.addr))?;
    if !addr.ip().is_loopback() {
        bail!("the mock listens on loopback only (e.g. 127.0.0.1:8787), not {addr}");
    }
    if opts.page_size == 0 || opts.max_results == 0 {
        bail!("the page size must be at least 1");
    }
    let listener =
        std::net::TcpListener::bind(addr).with_context(|| format!("listening on {addr}"))?;
    let addr = listener
        .local_addr()
        .context("reading the listening address")?;
    let latency = Duration::from_millis(opts.latency_ms);
    let state = State::new(opts, &format!("http://{addr}"));
    let agents = state.agents.lock().unwrap().texts.len();
    let server = Server::start(listener, move |req: Request| {
        std::thread::sleep(latency);
        state.handle(&req)
    })?;
    Ok(MockServer { server, agents })
}

/// `agentsync mock`: serve until killed.
pub(crate) fn serve(opts: MockOptions) -> Result<()> {
    let (users, page_size) = (opts.users, opts.page_size);
    let off: Vec<&str> = [
        (opts.patch, "PATCH"),
        (opts.etag, "versions"),
        (opts.filter, "filters"),
    ]
    .iter()
    .filter(|(on, _)| !on)
    .map(|(_, name)| *name)
    .collect();
    let talkdesk = opts.talkdesk.as_ref().map(|c| c.id.clone());
    let server = start(opts)?;
    let agents = server.agents;
    eprintln!("agentsync mock listening on {}", server.base_url());
    eprintln!("  {users} source users ({page_size} per page), {agents} directory agents");
    eprintln!("  GET  /users/formatted?page=N   GET /users/not-formatted?page=N");
    eprintln!("  POST /users/{{id}}/punch-clock   GET /_mock/punches");
    eprintln!("  GET|PUT|PATCH /scim/v2/Users[/{{id}}]   GET /scim/v2/ServiceProviderConfig");
    eprintln!("  GET  /_mock/stats   POST /_mock/stats/reset");
    if let Some(id) = talkdesk {
        eprintln!(
            "  Talkdesk mode: POST /oauth/token (Basic auth as client {id:?}, \
             grant_type=client_credentials, token_type=opaque);"
        );
        eprintln!("    /scim/v2 needs `Authorization: <token>`, without `Bearer `");
    }
    if !off.is_empty() {
        eprintln!("  turned off: {}", off.join(", "));
    }
    server.wait();
    Ok(())
}

/// What the mock holds.
#[allow(clippy::struct_excessive_bools)] // the switches of MockOptions
struct State {
    log: bool,
    users: usize,
    page_size: usize,
    max_results: usize,
    patch: bool,
    etag: bool,
    filter: bool,
    /// The location of `/scim/v2/ServiceProviderConfig`.
    config_url: String,
    sts: Option<Sts>,
    stats: Stats,
    agents: Mutex<Directory>,
    punches: punches::Punches,
}

impl Reply {
    fn json(status: u16, body: &Value) -> Self {
        Reply::new(status, "application/json", body.to_string())
    }

    fn not_found(what: &str) -> Self {
        Reply::json(404, &json!({"error": format!("{what} not found")}))
    }
}

fn email(n: usize) -> String {
    format!("user+{n}@talkdesk.com")
}

fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

impl State {
    fn new(opts: MockOptions, base: &str) -> Self {
        let mut agents = Vec::new();
        let mut seed = |n: usize, external_id: Option<String>| {
            agents.push(agent_resource(base, n, external_id, opts.etag));
        };
        for n in 1..=opts.agents {
            if n % 10 == 0 {
                continue; // its source user stays unmatched
            }
            let external_id = if n > opts.users {
                None
            } else if n % 7 == 0 {
                Some(format!("old-{n}")) // stale: updated by a sync
            } else if n % 3 == 0 {
                Some(n.to_string()) // already linked
            } else {
                None // to link
            };
            seed(n, external_id);
        }
        // Agents the time clock does not know.
        let first_extra = opts.users.max(opts.agents) + 1;
        for (i, n) in (first_extra..first_extra + 3).enumerate() {
            seed(n, (i == 0).then(|| "999".to_owned()));
        }
        State {
            log: opts.log,
            users: opts.users,
            page_size: opts.page_size,
            max_results: opts.max_results,
            patch: opts.patch,
            etag: opts.etag,
            filter: opts.filter,
            config_url: format!("{base}/scim/v2/ServiceProviderConfig"),
            sts: opts.talkdesk.map(Sts::new),
            stats: Stats::default(),
            agents: Mutex::new(Directory::new(&agents)),
            punches: punches::Punches::default(),
        }
    }

    fn handle(&self, req: &Request) -> Reply {
        match std::str::from_utf8(&req.body) {
            Ok(body) => self.route(req, body),
            Err(e) => Reply::json(
                400,
                &json!({"error": format!("the body is not UTF-8: {e}")}),
            ),
        }
    }

    fn route(&self, req: &Request, body: &str) -> Reply {
        let (method, url) = (req.method.as_str(), req.target.as_str());
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        if let (["scim", ..], Some(sts)) = (segments.as_slice(), &self.sts)
            && let Err(refused) = sts.authorize(req.header("authorization"))
        {
            self.stats.count(Kind::Unauthorized);
            return refused;
        }
        match (method, segments.as_slice()) {
            ("GET", ["users", "formatted"]) => self.users_page(query, false),
            ("GET", ["users", "not-formatted"]) => self.users_page(query, true),
            ("POST", ["users", id, "punch-clock"]) => {
                self.punch(id, body, req.header("idempotency-key"))
            }
            ("GET", ["punches"] | ["_mock", "punches"]) => Reply::json(200, &self.punches.read()),
            ("POST", ["oauth", "token"]) if self.sts.is_some() => {
                self.stats.count(Kind::Token);
                let sts = self.sts.as_ref().expect("checked by the guard");
                sts.token(req.header("authorization"), body)
            }
            ("GET", ["_mock", "stats"]) => Reply::json(200, &self.stats.read(false)),
            ("POST", ["_mock", "stats", "reset"]) => Reply::json(200, &self.stats.read(true)),
            ("GET", ["scim", "v2", "ServiceProviderConfig"]) => {
                self.stats.count(Kind::ServiceProviderConfig);
                Reply::scim(200, &self.service_provider_config())
            }
            ("GET", ["scim", "v2", "Users"]) => self.scim_list(query),
            (_, ["scim", "v2", "Users", id]) => {
                let id = percent_encoding::percent_decode_str(id).decode_utf8_lossy();
                self.scim_user(method, &id, req.header("if-match"), body)
            }
            (_, ["users" | "scim", ..] | ["punches"] | ["_mock", "stats" | "punches", ..]) => {
                Reply::json(
                    405,
                    &json!({"error": format!("{method} is not allowed on {path}")}),
                )
            }
            _ => Reply::not_found(path),
        }
    }
}

/// A query parameter, percent-decoded.
fn param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests;

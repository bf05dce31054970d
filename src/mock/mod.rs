//! The bundled mock: the systems of the reference flow, in memory, on loopback.
//!
//! - `GET /users/formatted?page=N`: time-clock users already shaped `{id, email}`;
//! - `GET /users/not-formatted?page=N`: the same users with the time clock's own keys;
//! - `POST /users/{id}/punch-clock`: records a punch (201), `GET /punches` lists them;
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

pub(crate) mod server;
mod stats;
mod sts;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};

use server::{Reply, Request, Server};
use stats::{Kind, Stats};
use sts::Sts;
pub(crate) use sts::TalkdeskClient;

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const CONFIG_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
/// The most users one SCIM page returns, whatever `count` asks.
const MAX_SCIM_PAGE: usize = 1000;

#[derive(Debug, Clone)]
pub(crate) struct MockOptions {
    pub addr: String,
    pub users: usize,
    pub agents: usize,
    pub page_size: usize,
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
    if opts.page_size == 0 {
        bail!("the page size must be at least 1");
    }
    let listener =
        std::net::TcpListener::bind(addr).with_context(|| format!("listening on {addr}"))?;
    let addr = listener
        .local_addr()
        .context("reading the listening address")?;
    let state = State::new(&opts, &format!("http://{addr}"));
    let agents = state.agents.lock().unwrap().texts.len();
    let latency = Duration::from_millis(opts.latency_ms);
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
    eprintln!("  POST /users/{{id}}/punch-clock   GET /punches");
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
struct State {
    log: bool,
    users: usize,
    page_size: usize,
    patch: bool,
    etag: bool,
    filter: bool,
    /// The location of `/scim/v2/ServiceProviderConfig`.
    config_url: String,
    sts: Option<Sts>,
    stats: Stats,
    agents: Mutex<Directory>,
    punches: Mutex<Vec<Value>>,
}

impl Reply {
    fn json(status: u16, body: Value) -> Self {
        Reply::new(status, "application/json", body.to_string())
    }

    fn scim(status: u16, body: Value) -> Self {
        Reply::new(status, "application/scim+json", body.to_string())
    }

    fn scim_error(status: u16, scim_type: Option<&str>, detail: &str) -> Self {
        let mut body =
            json!({"schemas": [ERROR_SCHEMA], "status": status.to_string(), "detail": detail});
        if let Some(t) = scim_type {
            body["scimType"] = json!(t);
        }
        Reply::scim(status, body)
    }

    fn not_found(what: &str) -> Self {
        Reply::json(404, json!({"error": format!("{what} not found")}))
    }
}

fn email(n: usize) -> String {
    format!("user+{n}@talkdesk.com")
}

fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

impl State {
    fn new(opts: &MockOptions, base: &str) -> Self {
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
            patch: opts.patch,
            etag: opts.etag,
            filter: opts.filter,
            config_url: format!("{base}/scim/v2/ServiceProviderConfig"),
            sts: opts.talkdesk.clone().map(Sts::new),
            stats: Stats::default(),
            agents: Mutex::new(Directory::new(agents)),
            punches: Mutex::new(Vec::new()),
        }
    }

    fn handle(&self, req: &Request) -> Reply {
        match std::str::from_utf8(&req.body) {
            Ok(body) => self.route(req, body),
            Err(e) => Reply::json(400, json!({"error": format!("the body is not UTF-8: {e}")})),
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
            ("POST", ["users", id, "punch-clock"]) => self.punch(id, body),
            ("GET", ["punches"]) => {
                Reply::json(200, json!({"punches": *self.punches.lock().unwrap()}))
            }
            ("POST", ["oauth", "token"]) if self.sts.is_some() => {
                self.stats.count(Kind::Token);
                let sts = self.sts.as_ref().expect("checked by the guard");
                sts.token(req.header("authorization"), body)
            }
            ("GET", ["_mock", "stats"]) => Reply::json(200, self.stats.read(false)),
            ("POST", ["_mock", "stats", "reset"]) => Reply::json(200, self.stats.read(true)),
            ("GET", ["scim", "v2", "ServiceProviderConfig"]) => {
                self.stats.count(Kind::ServiceProviderConfig);
                Reply::scim(200, self.service_provider_config())
            }
            ("GET", ["scim", "v2", "Users"]) => self.scim_list(query),
            (_, ["scim", "v2", "Users", id]) => {
                let id = percent_encoding::percent_decode_str(id).decode_utf8_lossy();
                self.scim_user(method, &id, req.header("if-match"), body)
            }
            (_, ["users", ..] | ["punches"] | ["scim", ..] | ["_mock", "stats", ..]) => {
                Reply::json(
                    405,
                    json!({"error": format!("{method} is not allowed on {path}")}),
                )
            }
            _ => Reply::not_found(path),
        }
    }

    fn users_page(&self, query: &str, raw: bool) -> Reply {
        self.stats.count(Kind::SourcePages);
        let page = match param(query, "page") {
            None => 1,
            Some(p) => match p.parse::<usize>() {
                Ok(n) if n >= 1 => n,
                _ => {
                    return Reply::json(
                        400,
                        json!({"error": format!("page must be a number from 1, not {p:?}")}),
                    );
                }
            },
        };
        let first = (page - 1).saturating_mul(self.page_size) + 1;
        let last = page.saturating_mul(self.page_size).min(self.users);
        // Written as text: the mock must not be what a benchmark measures.
        let mut users = String::with_capacity((last + 1).saturating_sub(first) * 110);
        for n in first..=last {
            if !users.is_empty() {
                users.push(',');
            }
            let email = email(n);
            let _ = if raw {
                write!(
                    users,
                    r#"{{"punch_clock_id":{n},"punch_clock_email":"{email}","name":"User {n}","active":true}}"#
                )
            } else {
                write!(users, r#"{{"id":"{n}","email":"{email}"}}"#)
            };
        }
        let count = (last + 1).saturating_sub(first);
        let body = format!(
            r#"{{"count":{count},"total":{},"page":{page},"users":[{users}]}}"#,
            self.users
        );
        Reply::new(200, "application/json", body)
    }

    fn punch(&self, id: &str, body: &str) -> Reply {
        self.stats.count(Kind::Punches);
        let known = id
            .parse::<usize>()
            .is_ok_and(|n| (1..=self.users).contains(&n));
        if !known {
            return Reply::not_found(&format!("user {id}"));
        }
        let event = match serde_json::from_str::<Value>(body) {
            Ok(v) => v
                .get("event")
                .and_then(Value::as_str)
                .unwrap_or("punch")
                .to_owned(),
            Err(_) if body.trim().is_empty() => "punch".to_owned(),
            Err(e) => {
                return Reply::json(400, json!({"error": format!("the body is not JSON: {e}")}));
            }
        };
        if self.log {
            eprintln!("mock: punch-clock user={id} event={event}");
        }
        let punch = json!({"user_id": id, "event": event, "at": now()});
        self.punches.lock().unwrap().push(punch.clone());
        Reply::json(201, punch)
    }

    /// RFC 7643 §5; `filter.maxResults` is also the largest listing page.
    fn service_provider_config(&self) -> Value {
        let schemes = match &self.sts {
            None => json!([]),
            Some(_) => json!([{
                "type": "oauthbearertoken",
                "name": "Talkdesk STS token",
                "description": "An opaque token from POST /oauth/token (client credentials, \
                    token_type=opaque), sent as `Authorization: <token>` without a Bearer prefix",
                "specUri": "https://www.rfc-editor.org/info/rfc6749",
                "primary": true,
            }]),
        };
        json!({
            "schemas": [CONFIG_SCHEMA],
            "patch": {"supported": self.patch},
            "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
            "filter": {"supported": self.filter, "maxResults": MAX_SCIM_PAGE},
            "changePassword": {"supported": false},
            "sort": {"supported": false},
            "etag": {"supported": self.etag},
            "authenticationSchemes": schemes,
            "meta": {"resourceType": "ServiceProviderConfig", "location": self.config_url},
        })
    }

    fn scim_list(&self, query: &str) -> Reply {
        let filter = match param(query, "filter") {
            None => None,
            Some(_) if !self.filter => {
                self.stats.count(Kind::ScimFilter);
                return Reply::scim_error(
                    400,
                    Some("invalidFilter"),
                    "this directory does not support filtering",
                );
            }
            Some(text) => {
                self.stats.count(Kind::ScimFilter);
                match Filter::parse(&text) {
                    Ok(f) => Some(f),
                    Err(refused) => return refused,
                }
            }
        };
        if filter.is_none() {
            self.stats.count(Kind::ScimList);
        }
        let number = |name: &str, default: usize| match param(query, name) {
            None => Ok(default),
            Some(v) => v.parse::<usize>().map_err(|_| {
                Reply::scim_error(
                    400,
                    Some("invalidValue"),
                    &format!("{name} must be a number, not {v:?}"),
                )
            }),
        };
        let (start, count) = match (number("startIndex", 1), number("count", 100)) {
            (Ok(s), Ok(c)) => (s.max(1), c.min(MAX_SCIM_PAGE)),
            (Err(r), _) | (_, Err(r)) => return r,
        };
        let agents = self.agents.lock().unwrap();
        let (total, page): (usize, Vec<&str>) = match &filter {
            None => {
                let page = agents.texts.iter().skip(start - 1).take(count);
                (agents.texts.len(), page.map(String::as_str).collect())
            }
            Some(f) => {
                let selected = agents.filtered(f);
                let page = selected.iter().skip(start - 1).take(count).copied();
                (selected.len(), page.collect())
            }
        };
        // The resources are kept as JSON text: a page is their concatenation.
        let body = format!(
            r#"{{"schemas":["{LIST_SCHEMA}"],"totalResults":{total},"startIndex":{start},"itemsPerPage":{},"Resources":[{}]}}"#,
            page.len(),
            page.join(",")
        );
        Reply::new(200, "application/scim+json", body)
    }

    fn scim_user(&self, method: &str, id: &str, if_match: Option<&str>, body: &str) -> Reply {
        let kind = match method {
            "GET" => Kind::ScimGet,
            "PUT" => Kind::ScimPut,
            "PATCH" => Kind::ScimPatch,
            _ => {
                return Reply::scim_error(
                    405,
                    None,
                    &format!("{method} is not supported on a user"),
                );
            }
        };
        self.stats.count(kind);
        if method == "PATCH" && !self.patch {
            return Reply::scim_error(501, None, "PATCH is not supported by this directory");
        }
        let mut agents = self.agents.lock().unwrap();
        let Some(&i) = agents.index.get(id) else {
            return Reply::scim_error(404, None, &format!("user {id} not found"));
        };
        let mut agent: Value = serde_json::from_str(&agents.texts[i]).expect("the mock's own JSON");
        if method != "GET"
            && self.etag
            && let Some(wanted) = if_match
        {
            let current = agent["meta"]["version"].as_str().unwrap_or_default();
            if !if_match_holds(wanted, current) {
                return Reply::scim_error(
                    412,
                    None,
                    &format!("If-Match {wanted} does not match the user's version {current}"),
                );
            }
        }
        let result = match method {
            "PUT" => replace(&mut agent, body),
            "PATCH" => patch(&mut agent, body),
            _ => Ok(()),
        };
        if let Err(reply) = result {
            return reply;
        }
        if method != "GET" {
            touch(&mut agent, self.etag);
            agents.set(i, &agent);
            if self.log {
                let shown = agent["externalId"].as_str().unwrap_or("(none)");
                eprintln!("mock: scim {method} {id} externalId={shown}");
            }
        }
        drop(agents);
        let etag = agent["meta"]["version"].as_str().map(str::to_owned);
        let reply = Reply::scim(200, agent);
        match etag {
            Some(tag) => reply.with_header("ETag", tag),
            None => reply,
        }
    }
}

/// `If-Match` (RFC 7232 §3.1) against the current version: `*`, or one of the
/// listed tags, compared weakly (a `W/` prefix on either side is ignored).
fn if_match_holds(header: &str, current: &str) -> bool {
    let opaque = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
    let current = opaque(current);
    header.trim() == "*" || header.split(',').any(|tag| opaque(tag) == current)
}

/// The one filter shape the directory answers: `ATTRIBUTE eq "VALUE"`.
#[derive(Debug, PartialEq)]
enum Filter {
    UserName(String),
    Email(String),
}

impl Filter {
    /// Attribute and operator names are case-insensitive (RFC 7644 §3.4.2.2);
    /// the value is a JSON string. `emails` alone means its `value`.
    fn parse(text: &str) -> Result<Self, Reply> {
        let refuse = || {
            Reply::scim_error(
                400,
                Some("invalidFilter"),
                &format!(
                    r#"only `userName eq "…"` and `emails.value eq "…"` filters are supported, not {text:?}"#
                ),
            )
        };
        let mut parts = text.trim().splitn(3, char::is_whitespace);
        let (Some(attr), Some(op), Some(value)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(refuse());
        };
        if !op.eq_ignore_ascii_case("eq") {
            return Err(refuse());
        }
        let Ok(value) = serde_json::from_str::<String>(value.trim()) else {
            return Err(refuse());
        };
        let value = value.to_ascii_lowercase();
        if attr.eq_ignore_ascii_case("userName") {
            Ok(Filter::UserName(value))
        } else if attr.eq_ignore_ascii_case("emails.value") || attr.eq_ignore_ascii_case("emails") {
            Ok(Filter::Email(value))
        } else {
            Err(refuse())
        }
    }
}

/// The SCIM users, each as JSON text, in listing order.
struct Directory {
    texts: Vec<String>,
    /// What filters compare, lower-cased, by position.
    keys: Vec<Keys>,
    index: HashMap<String, usize>,
}

/// A user's userName and email values, lower-cased (ASCII) as filters compare them.
struct Keys {
    user_name: String,
    emails: Vec<String>,
}

impl Keys {
    fn of(agent: &Value) -> Self {
        let lower = |v: &Value| v.as_str().map(str::to_ascii_lowercase);
        Keys {
            user_name: lower(&agent["userName"]).unwrap_or_default(),
            emails: agent["emails"]
                .as_array()
                .map(|emails| emails.iter().filter_map(|e| lower(&e["value"])).collect())
                .unwrap_or_default(),
        }
    }

    fn matches(&self, filter: &Filter) -> bool {
        match filter {
            Filter::UserName(v) => self.user_name == *v,
            Filter::Email(v) => self.emails.contains(v),
        }
    }
}

impl Directory {
    fn new(agents: Vec<Value>) -> Self {
        let index = agents
            .iter()
            .enumerate()
            .map(|(i, a)| (a["id"].as_str().unwrap_or_default().to_owned(), i))
            .collect();
        let texts = agents.iter().map(Value::to_string).collect();
        let keys = agents.iter().map(Keys::of).collect();
        Directory { texts, keys, index }
    }

    fn set(&mut self, i: usize, agent: &Value) {
        self.texts[i] = agent.to_string();
        self.keys[i] = Keys::of(agent);
    }

    /// The users a filter selects, in listing order.
    fn filtered(&self, filter: &Filter) -> Vec<&str> {
        self.keys
            .iter()
            .zip(&self.texts)
            .filter(|(keys, _)| keys.matches(filter))
            .map(|(_, text)| text.as_str())
            .collect()
    }
}

fn agent_resource(base: &str, n: usize, external_id: Option<String>, versioned: bool) -> Value {
    let id = format!("agent-{n}");
    let created = now();
    let mut user = json!({
        "schemas": [USER_SCHEMA],
        "id": id,
        "userName": email(n),
        "name": {"givenName": "User", "familyName": n.to_string(), "formatted": format!("User {n}")},
        "emails": [{"value": email(n), "primary": true, "type": "work"}],
        "active": true,
        "meta": {
            "resourceType": "User",
            "created": created,
            "lastModified": created,
            "location": format!("{base}/scim/v2/Users/{id}"),
            "version": "W/\"1\"",
        },
    });
    if let Some(x) = external_id {
        user["externalId"] = json!(x);
    }
    if !versioned && let Some(meta) = user["meta"].as_object_mut() {
        meta.remove("version");
    }
    user
}

/// A new version after a write (when the directory has versions).
fn touch(agent: &mut Value, versioned: bool) {
    agent["meta"]["lastModified"] = json!(now());
    if !versioned {
        return;
    }
    let version = agent["meta"]["version"]
        .as_str()
        .and_then(|v| {
            v.trim_start_matches("W/\"")
                .trim_end_matches('"')
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(1);
    agent["meta"]["version"] = json!(format!("W/\"{}\"", version + 1));
}

fn parse_object(body: &str) -> Result<Map<String, Value>, Reply> {
    match serde_json::from_str(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(Reply::scim_error(
            400,
            Some("invalidSyntax"),
            "the body is not a JSON object",
        )),
        Err(e) => Err(Reply::scim_error(
            400,
            Some("invalidSyntax"),
            &format!("the body is not JSON: {e}"),
        )),
    }
}

fn check_external_id(value: &Value) -> Result<(), Reply> {
    match value {
        Value::String(_) | Value::Null => Ok(()),
        _ => Err(Reply::scim_error(
            400,
            Some("invalidValue"),
            "externalId must be a string",
        )),
    }
}

/// PUT: the body replaces the resource; `id` and `meta` stay the server's.
fn replace(agent: &mut Value, body: &str) -> Result<(), Reply> {
    let mut next = parse_object(body)?;
    let id = agent["id"].clone();
    if next.get("id").is_some_and(|v| *v != id) {
        return Err(Reply::scim_error(
            400,
            Some("mutability"),
            "id cannot be changed",
        ));
    }
    if !next.get("userName").is_some_and(Value::is_string) {
        return Err(Reply::scim_error(
            400,
            Some("invalidValue"),
            "userName is required",
        ));
    }
    if let Some(x) = next.get("externalId") {
        check_external_id(x)?;
    }
    next.insert("id".into(), id);
    next.insert("meta".into(), agent["meta"].clone());
    next.retain(|_, v| !v.is_null());
    *agent = Value::Object(next);
    Ok(())
}

/// PATCH (RFC 7644 §3.5.2) of top-level attributes: add, replace, remove.
fn patch(agent: &mut Value, body: &str) -> Result<(), Reply> {
    let request = parse_object(body)?;
    let is_patch = request
        .get("schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(|v| v == PATCH_SCHEMA));
    if !is_patch {
        return Err(Reply::scim_error(
            400,
            Some("invalidSyntax"),
            "schemas must name the PatchOp message",
        ));
    }
    let Some(ops) = request.get("Operations").and_then(Value::as_array) else {
        return Err(Reply::scim_error(
            400,
            Some("invalidSyntax"),
            "Operations is missing",
        ));
    };
    let mut next = agent.clone();
    for op in ops {
        let name = op
            .get("op")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_ascii_lowercase();
        let path = op.get("path").and_then(Value::as_str);
        let value = op.get("value");
        let attr = match path {
            Some(p) if p.contains(['.', '[', ':']) => {
                return Err(Reply::scim_error(
                    400,
                    Some("invalidPath"),
                    &format!("path {p:?} is not supported here"),
                ));
            }
            Some(p)
                if ["id", "meta", "schemas"]
                    .iter()
                    .any(|r| r.eq_ignore_ascii_case(p)) =>
            {
                return Err(Reply::scim_error(
                    400,
                    Some("mutability"),
                    &format!("{p} cannot be changed"),
                ));
            }
            // Attribute names are case-insensitive: keep the resource's spelling.
            Some(p) => Some(canonical(&next, p)),
            None => None,
        };
        match (name.as_str(), attr, value) {
            ("add" | "replace", Some(attr), Some(v)) => {
                if attr == "externalId" {
                    check_external_id(v)?;
                }
                next[attr.as_str()] = v.clone();
            }
            ("add" | "replace", None, Some(Value::Object(values))) => {
                for (k, v) in values {
                    if k == "externalId" {
                        check_external_id(v)?;
                    }
                    next[k.as_str()] = v.clone();
                }
            }
            ("remove", Some(attr), _) => {
                if let Some(o) = next.as_object_mut() {
                    o.remove(&attr);
                }
            }
            ("remove", None, _) => {
                return Err(Reply::scim_error(
                    400,
                    Some("noTarget"),
                    "remove needs a path",
                ));
            }
            ("add" | "replace", _, _) => {
                return Err(Reply::scim_error(
                    400,
                    Some("invalidValue"),
                    &format!("{name} needs a value"),
                ));
            }
            _ => {
                return Err(Reply::scim_error(
                    400,
                    Some("invalidSyntax"),
                    &format!("unknown op {name:?}"),
                ));
            }
        }
    }
    if let Some(o) = next.as_object_mut() {
        o.retain(|_, v| !v.is_null());
    }
    *agent = next;
    Ok(())
}

fn canonical(resource: &Value, attr: &str) -> String {
    if attr.eq_ignore_ascii_case("externalId") {
        return "externalId".into();
    }
    resource
        .as_object()
        .and_then(|o| o.keys().find(|k| k.eq_ignore_ascii_case(attr)))
        .cloned()
        .unwrap_or_else(|| attr.to_owned())
}

/// A query parameter, percent-decoded.
fn param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(users: usize, agents: usize) -> State {
        let opts = MockOptions {
            users,
            agents,
            ..MockOptions::default()
        };
        State::new(&opts, "http://127.0.0.1:1")
    }

    fn with(opts: MockOptions) -> State {
        State::new(&opts, "http://127.0.0.1:1")
    }

    fn send_with(
        s: &State,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        let request = Request {
            method: method.into(),
            target: url.into(),
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            body: body.as_bytes().to_vec(),
        };
        s.handle(&request)
    }

    fn send(s: &State, method: &str, url: &str, body: &str) -> Reply {
        send_with(s, method, url, &[], body)
    }

    fn parse(reply: &Reply) -> Value {
        serde_json::from_str(&reply.body).unwrap()
    }

    fn header<'r>(reply: &'r Reply, name: &str) -> Option<&'r str> {
        reply
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn get(s: &State, url: &str) -> Value {
        let reply = send(s, "GET", url, "");
        assert_eq!(reply.status, 200, "{url}: {}", reply.body);
        serde_json::from_str(&reply.body).unwrap()
    }

    #[test]
    fn source_pages_cover_every_user_once() {
        let s = state(25, 25);
        let pages: Vec<Value> = (1..=4)
            .map(|p| get(&s, &format!("/users/formatted?page={p}")))
            .collect();
        let counts: Vec<u64> = pages.iter().map(|p| p["count"].as_u64().unwrap()).collect();
        assert_eq!(counts, [10, 10, 5, 0]);
        assert_eq!(
            pages[2]["users"][4],
            json!({"id": "25", "email": "user+25@talkdesk.com"})
        );
        let raw = get(&s, "/users/not-formatted?page=1");
        assert_eq!(raw["total"], 25);
        assert_eq!(raw["users"][6]["punch_clock_id"], 7);
        assert_eq!(send(&s, "GET", "/users/formatted?page=0", "").status, 400);
    }

    #[test]
    fn the_directory_is_seeded_with_every_case() {
        let s = state(25, 25);
        let list = get(&s, "/scim/v2/Users?startIndex=1&count=1000");
        let by_name = |n: usize| {
            list["Resources"]
                .as_array()
                .unwrap()
                .iter()
                .find(|u| u["userName"] == email(n))
                .cloned()
        };
        assert!(by_name(10).is_none(), "user 10 stays unmatched");
        assert_eq!(by_name(7).unwrap()["externalId"], "old-7");
        assert_eq!(by_name(3).unwrap()["externalId"], "3");
        assert!(by_name(1).unwrap().get("externalId").is_none());
        assert_eq!(by_name(26).unwrap()["externalId"], "999");
        assert_eq!(list["totalResults"], 25 - 2 + 3);
        let page = get(&s, "/scim/v2/Users?startIndex=3&count=2");
        assert_eq!(page["itemsPerPage"], 2);
        assert_eq!(page["Resources"][0]["id"], "agent-3");
    }

    #[test]
    fn put_and_patch_change_the_external_id() {
        let s = state(5, 5);
        let mut user = get(&s, "/scim/v2/Users/agent-1");
        user["externalId"] = json!("1");
        let reply = send(&s, "PUT", "/scim/v2/Users/agent-1", &user.to_string());
        assert_eq!(reply.status, 200, "{}", reply.body);
        let after = get(&s, "/scim/v2/Users/agent-1");
        assert_eq!(after["externalId"], "1");
        assert_eq!(after["meta"]["version"], "W/\"2\"");

        let remove = json!({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "Remove", "path": "externalId"}]});
        assert_eq!(
            send(&s, "PATCH", "/scim/v2/Users/agent-1", &remove.to_string()).status,
            200
        );
        assert!(
            get(&s, "/scim/v2/Users/agent-1")
                .get("externalId")
                .is_none()
        );

        let bad = json!({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "replace", "path": "externalId", "value": 5}]});
        let reply = send(&s, "PATCH", "/scim/v2/Users/agent-1", &bad.to_string());
        assert_eq!(reply.status, 400);
        assert!(reply.body.contains("invalidValue"), "{}", reply.body);
        assert_eq!(send(&s, "GET", "/scim/v2/Users/nobody", "").status, 404);
    }

    #[test]
    fn punches_are_recorded_for_known_users_only() {
        let s = state(5, 5);
        assert_eq!(
            send(&s, "POST", "/users/3/punch-clock", r#"{"event": "login"}"#).status,
            201
        );
        assert_eq!(send(&s, "POST", "/users/99/punch-clock", "{}").status, 404);
        let punches = get(&s, "/punches");
        assert_eq!(punches["punches"].as_array().unwrap().len(), 1);
        assert_eq!(punches["punches"][0]["event"], "login");
    }

    #[test]
    fn serves_over_http_and_stops_when_dropped() {
        let server = start(MockOptions {
            addr: "127.0.0.1:0".into(),
            ..MockOptions::default()
        })
        .unwrap();
        let addr = server.server.addr();
        let body = ureq::get(format!("{}/users/formatted?page=3", server.base_url()))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["count"], 5);
        drop(server);
        // The listener closes with its accept thread.
        let closed = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            std::net::TcpStream::connect(addr).is_err()
        });
        assert!(closed, "still listening on {addr}");
        assert!(
            start(MockOptions {
                addr: "0.0.0.0:0".into(),
                ..MockOptions::default()
            })
            .is_err()
        );
    }

    const USERS: &str = "/scim/v2/Users";

    fn talkdesk() -> State {
        with(MockOptions {
            talkdesk: Some(TalkdeskClient::default()),
            ..MockOptions::default()
        })
    }

    fn basic(id: &str, secret: &str) -> String {
        use base64::Engine as _;
        let pair = format!("{id}:{secret}");
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }

    const FORM: &str = "grant_type=client_credentials&token_type=opaque";

    fn token(s: &State) -> String {
        let auth = basic("mock-client", "mock-secret");
        let reply = send_with(s, "POST", "/oauth/token", &[("Authorization", &auth)], FORM);
        assert_eq!(reply.status, 200, "{}", reply.body);
        parse(&reply)["access_token"].as_str().unwrap().to_owned()
    }

    #[test]
    fn service_provider_config_says_what_is_served() {
        let config = get(&state(5, 5), "/scim/v2/ServiceProviderConfig");
        assert_eq!(config["schemas"], json!([CONFIG_SCHEMA]));
        assert_eq!(config["patch"], json!({"supported": true}));
        assert_eq!(
            config["filter"],
            json!({"supported": true, "maxResults": 1000})
        );
        assert_eq!(config["etag"], json!({"supported": true}));
        for off in ["bulk", "changePassword", "sort"] {
            assert_eq!(config[off]["supported"], false, "{off}");
        }
        assert_eq!(config["authenticationSchemes"], json!([]));

        let plain = with(MockOptions {
            patch: false,
            etag: false,
            filter: false,
            ..MockOptions::default()
        });
        let config = get(&plain, "/scim/v2/ServiceProviderConfig");
        for off in ["patch", "etag", "filter"] {
            assert_eq!(config[off]["supported"], false, "{off}");
        }
        let remove = json!({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "remove", "path": "externalId"}]});
        let reply = send(
            &plain,
            "PATCH",
            "/scim/v2/Users/agent-1",
            &remove.to_string(),
        );
        assert_eq!(reply.status, 501, "{}", reply.body);
        let reply = send(
            &plain,
            "GET",
            "/scim/v2/Users?filter=userName%20eq%20%22a%22",
            "",
        );
        assert_eq!(reply.status, 400);
        assert_eq!(parse(&reply)["scimType"], "invalidFilter");
        // Without versions: no meta.version, no ETag, If-Match ignored.
        let reply = send(&plain, "GET", "/scim/v2/Users/agent-1", "");
        assert!(parse(&reply)["meta"].get("version").is_none());
        assert!(header(&reply, "ETag").is_none());
        let mut user = parse(&reply);
        user["externalId"] = json!("1");
        let reply = send_with(
            &plain,
            "PUT",
            "/scim/v2/Users/agent-1",
            &[("If-Match", "W/\"99\"")],
            &user.to_string(),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert!(parse(&reply)["meta"].get("version").is_none());
    }

    #[test]
    fn writes_honour_if_match_and_change_the_version() {
        let s = state(5, 5);
        let url = "/scim/v2/Users/agent-1";
        let reply = send(&s, "GET", url, "");
        assert_eq!(header(&reply, "ETag"), Some("W/\"1\""));
        let mut user = parse(&reply);
        assert_eq!(user["meta"]["version"], "W/\"1\"");
        user["externalId"] = json!("1");
        let put = |tag: &str| send_with(&s, "PUT", url, &[("If-Match", tag)], &user.to_string());

        let stale = put("W/\"7\"");
        assert_eq!(stale.status, 412, "{}", stale.body);
        assert_eq!(parse(&stale)["schemas"], json!([ERROR_SCHEMA]));
        assert!(get(&s, url).get("externalId").is_none(), "nothing written");

        let ok = put("W/\"1\"");
        assert_eq!(ok.status, 200, "{}", ok.body);
        assert_eq!(parse(&ok)["meta"]["version"], "W/\"2\"");
        assert_eq!(header(&ok, "ETag"), Some("W/\"2\""));
        assert_eq!(put("W/\"1\"").status, 412, "the old version is spent");

        let remove = json!({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "remove", "path": "externalId"}]})
            .to_string();
        let patch = |tag: &str| send_with(&s, "PATCH", url, &[("If-Match", tag)], &remove);
        assert_eq!(patch("W/\"1\"").status, 412);
        // Compared weakly, and `*` matches any version.
        assert_eq!(patch("\"2\"").status, 200);
        assert_eq!(patch("*").status, 200);
        // No If-Match still writes.
        let reply = send(&s, "PATCH", url, &remove);
        assert_eq!(reply.status, 200);
        assert_eq!(parse(&reply)["meta"]["version"], "W/\"5\"");
        assert_eq!(get(&s, url)["meta"]["version"], "W/\"5\"");
    }

    fn filtered(s: &State, filter: &str) -> Value {
        get(s, &format!("{USERS}?filter={filter}"))
    }

    #[test]
    fn filters_find_a_user_by_email_case_insensitively() {
        let s = state(25, 25);
        let ids = |list: &Value| -> Vec<String> {
            let resources = list["Resources"].as_array().unwrap();
            assert_eq!(list["totalResults"], resources.len(), "{list}");
            resources
                .iter()
                .map(|u| u["id"].as_str().unwrap().to_owned())
                .collect()
        };
        for filter in [
            "userName%20eq%20%22USER%2B3%40TalkDesk.com%22",
            "userName+eq+\"user%2B3@talkdesk.com\"",
            "UserName+EQ+%22user%2b3%40talkdesk.com%22",
            "emails.value+eq+%22User%2B3%40talkdesk.com%22",
            "emails+eq+%22user%2B3%40talkdesk.com%22",
        ] {
            assert_eq!(ids(&filtered(&s, filter)), ["agent-3"], "{filter}");
        }
        // `+` in a query is a space: an unencoded plus is not the email's.
        assert!(ids(&filtered(&s, "userName+eq+%22user+3%40talkdesk.com%22")).is_empty());
        let none = filtered(&s, "userName+eq+%22nobody%40x.com%22");
        assert_eq!(none["totalResults"], 0);
        assert_eq!(none["Resources"], json!([]));

        // A rename is seen by the next filter.
        let mut user = get(&s, "/scim/v2/Users/agent-3");
        user["userName"] = json!("Renamed@Example.com");
        assert_eq!(
            send(&s, "PUT", "/scim/v2/Users/agent-3", &user.to_string()).status,
            200
        );
        assert_eq!(
            ids(&filtered(&s, "userName+eq+%22renamed%40example.com%22")),
            ["agent-3"]
        );

        for bad in [
            "name.givenName+eq+%22User%22",
            "userName+sw+%22user%22",
            "userName+eq+user",
            "userName+eq+%22a%22+and+active+eq+true",
            "",
        ] {
            let reply = send(&s, "GET", &format!("{USERS}?filter={bad}"), "");
            assert_eq!(reply.status, 400, "{bad}: {}", reply.body);
            assert_eq!(parse(&reply)["scimType"], "invalidFilter", "{bad}");
        }
    }

    #[test]
    fn token_endpoint_wants_basic_client_auth_and_an_opaque_token() {
        let s = talkdesk();
        let good = basic("mock-client", "mock-secret");
        let post = |auth: Option<&str>, form: &str| {
            let headers: Vec<(&str, &str)> =
                auth.map(|a| ("Authorization", a)).into_iter().collect();
            send_with(&s, "POST", "/oauth/token", &headers, form)
        };
        let reply = post(Some(&good), &format!("{FORM}&scope=scim"));
        assert_eq!(reply.status, 200, "{}", reply.body);
        let answer = parse(&reply);
        assert!(
            answer["access_token"]
                .as_str()
                .is_some_and(|t| t.len() >= 32)
        );
        assert_eq!(answer["token_type"], "Bearer");
        assert_eq!(answer["expires_in"], 600);
        assert_eq!(answer["scope"], "scim");
        assert_eq!(header(&reply, "Cache-Control"), Some("no-store"));

        let error = |reply: Reply| {
            (
                reply.status,
                parse(&reply)["error"].as_str().unwrap().to_owned(),
            )
        };
        let wrong = basic("mock-client", "guess");
        assert_eq!(
            error(post(Some(&wrong), FORM)),
            (401, "invalid_client".into())
        );
        assert!(header(&post(Some(&wrong), FORM), "WWW-Authenticate").is_some());
        assert_eq!(error(post(None, FORM)), (401, "invalid_client".into()));
        let in_body = format!("{FORM}&client_id=mock-client&client_secret=mock-secret");
        assert_eq!(error(post(None, &in_body)), (401, "invalid_client".into()));
        assert_eq!(
            error(post(Some(&good), "grant_type=client_credentials")),
            (400, "invalid_request".into())
        );
        assert_eq!(
            error(post(Some(&good), "grant_type=password&token_type=opaque")),
            (400, "unsupported_grant_type".into())
        );
        assert_eq!(
            error(post(Some(&good), "token_type=opaque")),
            (400, "invalid_request".into())
        );
        // Not served outside Talkdesk mode.
        assert_eq!(
            send_with(
                &state(5, 5),
                "POST",
                "/oauth/token",
                &[("Authorization", &good)],
                FORM
            )
            .status,
            404
        );
    }

    #[test]
    fn talkdesk_mode_takes_the_raw_token_and_refuses_a_bearer_prefix() {
        let s = talkdesk();
        let token = token(&s);
        let url = "/scim/v2/Users/agent-1";
        let as_header = |value: &str| send_with(&s, "GET", url, &[("Authorization", value)], "");

        let reply = as_header(&format!("Bearer {token}"));
        assert_eq!(reply.status, 401);
        let detail = parse(&reply)["detail"].as_str().unwrap().to_owned();
        assert!(detail.contains("without the Bearer prefix"), "{detail}");
        assert_eq!(as_header(&token).status, 200);
        assert_eq!(as_header("not-a-token").status, 401);
        assert_eq!(send(&s, "GET", url, "").status, 401);
        assert_eq!(
            send(&s, "GET", "/scim/v2/ServiceProviderConfig", "").status,
            401
        );
        let config = send_with(
            &s,
            "GET",
            "/scim/v2/ServiceProviderConfig",
            &[("Authorization", &token)],
            "",
        );
        assert_eq!(parse(&config)["authenticationSchemes"][0]["primary"], true);
        // The time clock's own API stays open.
        assert_eq!(send(&s, "GET", "/users/formatted?page=1", "").status, 200);
    }

    #[test]
    fn stats_count_requests_by_kind_until_reset() {
        let s = talkdesk();
        let token = token(&s);
        let auth = [("Authorization", token.as_str())];
        let remove = json!({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "remove", "path": "externalId"}]});
        get(&s, "/users/formatted?page=1");
        get(&s, "/users/not-formatted?page=2");
        send(&s, "POST", "/users/1/punch-clock", "");
        send_with(&s, "GET", "/scim/v2/ServiceProviderConfig", &auth, "");
        send_with(&s, "GET", "/scim/v2/Users?count=2", &auth, "");
        send_with(
            &s,
            "GET",
            "/scim/v2/Users?filter=userName+eq+%22a%40b.c%22",
            &auth,
            "",
        );
        let user = send_with(&s, "GET", "/scim/v2/Users/agent-1", &auth, "");
        send_with(&s, "PUT", "/scim/v2/Users/agent-1", &auth, &user.body);
        send_with(
            &s,
            "PATCH",
            "/scim/v2/Users/agent-1",
            &auth,
            &remove.to_string(),
        );
        send(&s, "GET", "/scim/v2/Users", "");
        let expected = json!({
            "source_pages": 2, "punches": 1, "token": 1, "service_provider_config": 1,
            "scim_list": 1, "scim_filter": 1, "scim_get": 1, "scim_put": 1, "scim_patch": 1,
            "unauthorized": 1,
        });
        assert_eq!(get(&s, "/_mock/stats"), expected);
        let reply = send(&s, "POST", "/_mock/stats/reset", "");
        assert_eq!(parse(&reply), expected, "the counts before the reset");
        let stats = get(&s, "/_mock/stats");
        assert!(
            stats.as_object().unwrap().values().all(|n| *n == 0),
            "{stats}"
        );
    }

    #[test]
    fn talkdesk_mode_over_http_with_headers_both_ways() {
        let server = start(MockOptions {
            addr: "127.0.0.1:0".into(),
            agents: 5,
            log: false,
            talkdesk: Some(TalkdeskClient::default()),
            ..MockOptions::default()
        })
        .unwrap();
        assert_eq!(
            server.agents,
            5 + 3,
            "every agent seeded, with 3 the source lacks"
        );
        let base = server.base_url();
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build(),
        );
        let mut reply = agent
            .post(format!("{base}/oauth/token"))
            .header("Authorization", basic("mock-client", "mock-secret"))
            .send_form([
                ("grant_type", "client_credentials"),
                ("token_type", "opaque"),
            ])
            .unwrap();
        assert_eq!(reply.status(), 200);
        let answer: Value =
            serde_json::from_str(&reply.body_mut().read_to_string().unwrap()).unwrap();
        let token = answer["access_token"].as_str().unwrap();
        let user = |auth: &str| {
            agent
                .get(format!("{base}/scim/v2/Users/agent-1"))
                .header("Authorization", auth)
                .call()
                .unwrap()
        };
        let reply = user(token);
        assert_eq!(reply.status(), 200);
        assert_eq!(reply.headers().get("etag").unwrap(), "W/\"1\"");
        assert_eq!(user(&format!("Bearer {token}")).status(), 401);
    }
}

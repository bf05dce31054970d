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
mod tests {
    use super::scim::PATCH_SCHEMA;
    use super::*;

    pub(super) fn state(users: usize, agents: usize) -> State {
        let opts = MockOptions {
            users,
            agents,
            ..MockOptions::default()
        };
        State::new(opts, "http://127.0.0.1:1")
    }

    pub(super) fn with(opts: MockOptions) -> State {
        State::new(opts, "http://127.0.0.1:1")
    }

    pub(super) fn send_with(
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

    pub(super) fn send(s: &State, method: &str, url: &str, body: &str) -> Reply {
        send_with(s, method, url, &[], body)
    }

    pub(super) fn parse(reply: &Reply) -> Value {
        serde_json::from_str(&reply.body).unwrap()
    }

    pub(super) fn header<'r>(reply: &'r Reply, name: &str) -> Option<&'r str> {
        reply
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn get(s: &State, url: &str) -> Value {
        let reply = send(s, "GET", url, "");
        assert_eq!(reply.status, 200, "{url}: {}", reply.body);
        serde_json::from_str(&reply.body).unwrap()
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

    pub(super) const USERS: &str = "/scim/v2/Users";

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

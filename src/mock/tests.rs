//! The mock's routes, answered in memory.

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
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
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
    let remove =
        json!({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "remove", "path": "externalId"}]});
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
    let answer: Value = serde_json::from_str(&reply.body_mut().read_to_string().unwrap()).unwrap();
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

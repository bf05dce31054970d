//! `agentsync listen`, the receiving side: signed events punched once each,
//! duplicates, the answers to what is refused (401, 413, 400, 404/405, 408),
//! ECDSA keys, slow senders, health, metrics and the JSON log, and the
//! configs it refuses to start with.

mod common;

use common::listen::{HMAC_AUTH, KEY, Listener, event, listen_job, now, sign, sign_at, wait_for};
use common::{Resp, Run, Server, agentsync};
use serde_json::Value;

/// A time clock that records punches and answers 201.
fn clock() -> Server {
    Server::start(|_| Resp::status(201, "application/json", r#"{"ok": true}"#))
}

/// The punches the clock received: (path, Idempotency-Key, event).
fn punches(clock: &Server) -> Vec<(String, String, String)> {
    clock
        .requests()
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_str(&r.body).unwrap();
            (
                r.path().to_owned(),
                r.header("idempotency-key").unwrap_or("").to_owned(),
                body["event"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[test]
fn signed_events_are_punched_once_each_with_the_external_id() {
    let clock = clock();
    let agents = [("ann@x.com", Some("ext-1")), ("bo@x.com", Some("ext 2"))];
    let job = listen_job(&clock.base, &agents, HMAC_AUTH);
    let listener = Listener::start(Run::listen(&job));
    assert_eq!(listener.get("/healthz").0, 200);

    assert_eq!(listener.send(&event("e1", "login", "ANN@x.com")), 202);
    assert_eq!(listener.send(&event("e2", "login", "bo@x.com")), 202);
    // The same events again, as a sender that did not hear the 202 does.
    assert_eq!(listener.send(&event("e1", "login", "ANN@x.com")), 202);
    assert_eq!(listener.send(&event("e2", "login", "bo@x.com")), 202);
    // An event no route takes is acknowledged and not run.
    assert_eq!(listener.send(&event("e3", "status", "bo@x.com")), 202);

    wait_for("two punches", || clock.request_count() >= 2);
    wait_for("the metrics", || {
        listener.metric("agentsync_listen_actions_sent_total") == 2.0
    });
    let mut got = punches(&clock);
    got.sort();
    assert_eq!(
        got,
        [
            (
                "/users/ext%202/punch-clock".into(),
                "e2".into(),
                "login".into()
            ),
            (
                "/users/ext-1/punch-clock".into(),
                "e1".into(),
                "login".into()
            ),
        ]
    );
    assert_eq!(
        listener.metric("agentsync_listen_events_received_total"),
        5.0
    );
    assert_eq!(
        listener.metric("agentsync_listen_events_accepted_total"),
        2.0
    );
    assert_eq!(
        listener.metric("agentsync_listen_events_duplicate_total"),
        2.0
    );
    assert_eq!(listener.metric("agentsync_listen_queue_depth"), 0.0);
    // The queue holds emails: private to the user, like the journal.
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(job.state_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().contains(".listen.sqlite") {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{} is {mode:o}", path.display());
        }
    }
    // Nothing more comes: the duplicates were never queued.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(clock.request_count(), 2);
}

#[test]
fn what_is_not_signed_right_or_not_an_event_is_refused() {
    let clock = clock();
    let job = listen_job(&clock.base, &[("ann@x.com", Some("1"))], HMAC_AUTH);
    let listener = Listener::start(Run::listen(&job));
    let body = event("e1", "login", "ann@x.com");
    let post = |headers: &[(String, String)], body: &str| listener.post("/events", headers, body).0;

    // Missing, wrong and stale signatures: 401.
    assert_eq!(post(&[], &body), 401);
    assert_eq!(
        post(&sign_at(b"not the key", "m1", now(), &body), &body),
        401
    );
    let other_body = event("e1", "logout", "ann@x.com");
    assert_eq!(post(&sign("m1", &other_body), &body), 401);
    assert_eq!(post(&sign_at(KEY, "m1", now() - 301, &body), &body), 401);
    assert_eq!(post(&sign_at(KEY, "m1", now() + 301, &body), &body), 401);
    // One matching entry among others is enough.
    let mut several = sign("m2", &body);
    several[2].1 = format!("v1,AAAA {} v2,x", several[2].1);
    assert_eq!(post(&several, &body), 202);

    // 64 KiB is taken, one byte more is not.
    let padded = |len: usize| {
        let base = event("big", "status", "ann@x.com");
        let pad = len - base.len() - r#","pad":"""#.len();
        format!(
            "{},\"pad\":\"{}\"}}",
            &base[..base.len() - 1],
            "x".repeat(pad)
        )
    };
    let (fits, over) = (padded(64 * 1024), padded(64 * 1024 + 1));
    assert_eq!((fits.len(), over.len()), (65536, 65537));
    assert_eq!(post(&sign("m3", &fits), &fits), 202);
    assert_eq!(post(&sign("m4", &over), &over), 413);

    // Not JSON, not an object, no id, no email string: 400.
    for bad in [
        "not json",
        "[1, 2]",
        r#"{"type": "user.login", "data": {"user_email": "ann@x.com"}}"#,
        r#"{"id": "e9", "type": "user.login", "data": {"user_email": 7}}"#,
    ] {
        assert_eq!(post(&sign("m5", bad), bad), 400, "{bad}");
    }
    // Only the three routes are served.
    assert_eq!(listener.get("/").0, 404);
    assert_eq!(listener.get("/events").0, 405);
    assert_eq!(listener.post("/healthz", &[], "{}").0, 405);

    for (reason, n) in [("unsigned", 1.0), ("bad_signature", 2.0), ("stale", 2.0)] {
        let name = format!("agentsync_listen_events_rejected_total{{reason=\"{reason}\"}}");
        assert_eq!(listener.metric(&name), n, "{reason}");
    }
    let log = listener.log();
    assert!(!log.contains(&common::listen::secret()), "{log}");
    assert!(!log.contains("v1,"), "no signature in the log:\n{log}");
    // Nothing refused was punched; the one signed login was.
    wait_for("the punch", || clock.request_count() >= 1);
    assert_eq!(clock.request_count(), 1);
}

#[test]
fn ecdsa_events_are_taken_with_the_right_key_only() {
    use p256::ecdsa::signature::Signer;
    use p256::ecdsa::{Signature, SigningKey};
    use p256::pkcs8::{EncodePublicKey, LineEnding};

    let key = |seed: u8| {
        let mut bytes = [0u8; 32];
        bytes.iter_mut().for_each(|b| *b = fastrand::u8(..));
        bytes[0] = seed;
        SigningKey::from_slice(&bytes).unwrap()
    };
    let (ours, theirs) = (key(1), key(2));
    let clock = clock();
    let auth = "auth = \"ecdsa-p256\"\npublic_key_file = \"events.pem\"\nsignature_header = \"X-Signature\"";
    let job = listen_job(&clock.base, &[("ann@x.com", Some("1"))], auth);
    let pem = ours
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    job.write("events.pem", &pem);
    let listener = Listener::start(Run::listen(&job));
    let signed = |key: &SigningKey, body: &str| {
        let sig: Signature = key.sign(body.as_bytes());
        let der = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            sig.to_der().as_bytes(),
        );
        vec![("X-Signature".to_owned(), der)]
    };
    let body = event("e1", "login", "ann@x.com");
    assert_eq!(
        listener.post("/events", &signed(&theirs, &body), &body).0,
        401
    );
    assert_eq!(listener.post("/events", &[], &body).0, 401);
    let tampered = body.replace("ann@x.com", "bo@x.com");
    assert_eq!(
        listener.post("/events", &signed(&ours, &body), &tampered).0,
        401
    );
    assert_eq!(
        listener.post("/events", &signed(&ours, &body), &body).0,
        202
    );
    wait_for("the punch", || clock.request_count() == 1);
    assert_eq!(punches(&clock)[0].1, "e1");
}

#[test]
fn a_shared_secret_header_is_compared_whole() {
    let clock = clock();
    let auth = "auth = \"header\"\nheader = \"X-Webhook-Token\"\nsecret_env = \"LISTEN_SECRET\"";
    let job = listen_job(&clock.base, &[("ann@x.com", Some("1"))], auth);
    let run = Run::listen(&job)
        .env("LISTEN_SECRET", "tok-0123456789")
        .args(&["--log-format", "json"]);
    let listener = Listener::start(run);
    let body = event("e1", "login", "ann@x.com");
    let post = |v: Option<&str>| {
        let header: Vec<_> = v
            .map(|v| ("X-Webhook-Token".to_owned(), v.to_owned()))
            .into_iter()
            .collect();
        listener.post("/events", &header, &body).0
    };
    assert_eq!(post(Some("tok-012345678")), 401);
    assert_eq!(post(Some("tok-01234567890")), 401);
    assert_eq!(post(None), 401);
    assert_eq!(post(Some("tok-0123456789")), 202);
    wait_for("the line of the punch", || {
        listener.log().contains("\"outcome\":\"sent\"")
    });
    // One JSON line per outcome, none with the secret (or a part of it).
    let log = listener.log();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let outcomes: Vec<_> = lines.iter().filter_map(|l| l["outcome"].as_str()).collect();
    assert_eq!(
        outcomes,
        ["rejected", "rejected", "rejected", "accepted", "sent"],
        "{log}"
    );
    let sent = lines.iter().find(|l| l["outcome"] == "sent").unwrap();
    assert_eq!(sent["event_id"], "e1");
    assert_eq!(sent["status"], "201");
    assert!(!log.contains("tok-01234"), "{log}");
}

#[test]
fn the_listener_refuses_to_start_without_what_it_needs() {
    let clock = clock();
    let agents = [("ann@x.com", Some("1"))];
    // No secret in the environment.
    let job = listen_job(&clock.base, &agents, HMAC_AUTH);
    let out = Run::listen(&job).env_remove("LISTEN_SECRET").expect(2);
    assert!(
        out.stderr.contains("LISTEN_SECRET is not set"),
        "{}",
        out.stderr
    );
    // No auth at all.
    let job = listen_job(&clock.base, &agents, "");
    let out = Run::listen(&job).expect(2);
    assert!(
        out.stderr.contains("missing field `auth`"),
        "{}",
        out.stderr
    );
    // A key file that is not there.
    let auth = "auth = \"ecdsa-p256\"\npublic_key_file = \"none.pem\"";
    let job = listen_job(&clock.base, &agents, auth);
    let out = Run::listen(&job).expect(2);
    assert!(out.stderr.contains("none.pem"), "{}", out.stderr);

    // An undeclared action, a variable the route does not set: `check`
    // says so, with the line, and so does `listen`.
    let job = listen_job(&clock.base, &agents, HMAC_AUTH);
    let text = std::fs::read_to_string(&job.config).unwrap();
    let bad = text
        .replacen("action = \"punch\"", "action = \"punsh\"", 1)
        .replacen(
            "vars = { event = \"logout\" }",
            "vars = { evnt = \"logout\" }",
            1,
        );
    std::fs::write(&job.config, &bad).unwrap();
    let out = agentsync(&["check"]).config(&job).expect(2);
    assert!(
        out.stderr
            .contains("[[listen.on]] #1 action: no [actions.punsh] is declared"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("#2: action \"punch\" uses {{var.event}}"),
        "{}",
        out.stderr
    );
    let line_of = |needle: &str| bad.lines().position(|l| l.contains(needle)).unwrap() + 1;
    assert!(
        out.stderr.contains(&format!(":{}:", line_of("punsh"))),
        "{}",
        out.stderr
    );
    Run::listen(&job).expect(2);
    assert_eq!(clock.request_count(), 0);
}

#[test]
fn check_shows_the_listener_and_an_event_lines_id_fills_event_id() {
    let clock = clock();
    let job = listen_job(&clock.base, &[("ann@x.com", Some("1"))], HMAC_AUTH);
    let out = agentsync(&["check"]).config(&job).expect(0);
    for expected in [
        "listen     POST http://127.0.0.1:8788/events (auth = \"standard-webhooks\")",
        "route    .type == \"user.logout\" -> punch (event = \"logout\")",
        ".listen.sqlite",
    ] {
        assert!(
            out.stdout.contains(expected),
            "{expected:?} in:\n{}",
            out.stdout
        );
    }
    // `action --events`: a line's "id" is the action's {{event_id}}.
    let lines = "{\"id\": \"evt-7\", \"email\": \"ann@x.com\", \"vars\": {\"event\": \"login\"}}\n\
                 {\"email\": \"ann@x.com\", \"vars\": {\"event\": \"logout\"}}\n";
    job.write("events.jsonl", lines);
    let events = job.path("events.jsonl");
    agentsync(&["action", "punch", "--events", events.to_str().unwrap()])
        .config(&job)
        .expect(0);
    let keys: Vec<(String, String)> = punches(&clock).into_iter().map(|p| (p.1, p.2)).collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(keys[0], ("evt-7".into(), "login".into()));
    // A line without an "id" gets a fresh one: never an empty key.
    let (fresh, event) = &keys[1];
    assert_eq!(event, "logout");
    assert!(
        fresh.len() == 32 && fresh.chars().all(|c| c.is_ascii_hexdigit()),
        "{keys:?}"
    );
}

#[test]
fn a_slow_sender_holds_nothing_and_is_cut_off() {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    let clock = clock();
    let job = listen_job(&clock.base, &[("ann@x.com", Some("1"))], HMAC_AUTH);
    let listener = Listener::start(Run::listen(&job));
    let addr = listener.base.trim_start_matches("http://").to_owned();
    let open = |bytes: &[u8]| {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        s.write_all(bytes).unwrap();
        s
    };
    // Headers that never end, and a body that never comes.
    let mut headers = open(b"POST /events HTTP/1.1\r\nHost: x\r\nX-Slow: ");
    let mut body = open(b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"id\"");
    // Meanwhile the others are served.
    assert_eq!(listener.send(&event("e1", "login", "ann@x.com")), 202);
    assert_eq!(listener.get("/healthz").0, 200);
    // Then the server ends both: the headers by closing, the body with 408.
    let mut answer = Vec::new();
    body.read_to_end(&mut answer)
        .expect("the server ends the connection");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let mut rest = Vec::new();
    headers
        .read_to_end(&mut rest)
        .expect("the server ends the connection");
    assert!(!String::from_utf8_lossy(&rest).contains("202"));
    assert_eq!(
        listener.metric("agentsync_listen_events_rejected_total{reason=\"timeout\"}"),
        1.0
    );
}

#[test]
fn a_chunked_body_over_64_kib_is_refused_as_it_arrives() {
    use std::io::{Read, Write};

    let clock = clock();
    let job = listen_job(&clock.base, &[("ann@x.com", Some("1"))], HMAC_AUTH);
    let listener = Listener::start(Run::listen(&job));
    let addr = listener.base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let head = "POST /events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    let chunk = format!("{:x}\r\n{}\r\n", 8192, "x".repeat(8192));
    let mut request = head.to_owned();
    for _ in 0..9 {
        request.push_str(&chunk);
    }
    request.push_str("0\r\n\r\n");
    // The server may answer and close before it read everything.
    let _ = s.write_all(request.as_bytes());
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(clock.request_count(), 0);
}

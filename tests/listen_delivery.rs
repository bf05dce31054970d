//! `agentsync listen`, the delivering side: in order per agent with a slow
//! time clock, through kill -9 and restarts, a clock that answers 503 or 429
//! for a while, SIGTERM with actions in flight, a queue that cannot be
//! written or whose directory was removed, and agents the directory does not
//! know.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::listen::{HMAC_AUTH, Listener, event, listen_job, wait_for};
use common::{Req, Resp, Run, Server};

/// The event ID (`Idempotency-Key`) of a punch.
fn key(r: &Req) -> String {
    r.header("idempotency-key").unwrap_or("").to_owned()
}

/// The event IDs the clock received for one external ID, in order.
fn keys_for(requests: &[Req], external_id: &str) -> Vec<String> {
    let path = format!("/users/{external_id}/punch-clock");
    requests
        .iter()
        .filter(|r| r.path() == path)
        .map(key)
        .collect()
}

const AGENTS: [(&str, Option<&str>); 3] = [
    ("a@x.com", Some("A")),
    ("b@x.com", Some("B")),
    ("c@x.com", Some("C")),
];

/// Login, logout, login again for each agent, interleaved: their IDs are
/// `{agent}{n}` (`a1`, `a2`, `a3` …).
fn shift(listener: &Listener) {
    for n in 1..=3 {
        for agent in ["a", "b", "c"] {
            let kind = if n == 2 { "logout" } else { "login" };
            let body = event(&format!("{agent}{n}"), kind, &format!("{agent}@x.com"));
            assert_eq!(listener.send(&body), 202);
        }
    }
}

fn in_order(agent: &str) -> Vec<String> {
    (1..=3).map(|n| format!("{agent}{n}")).collect()
}

#[test]
fn each_agents_events_go_in_order_with_a_slow_clock() {
    let clock = Server::start(|_| {
        std::thread::sleep(Duration::from_millis(150));
        Resp::status(201, "application/json", "{}")
    });
    let job = listen_job(&clock.base, &AGENTS, HMAC_AUTH);
    let listener = Listener::start(Run::listen(&job));
    shift(&listener);
    wait_for("nine punches", || clock.request_count() >= 9);
    let requests = clock.requests();
    for (agent, ext) in [("a", "A"), ("b", "B"), ("c", "C")] {
        assert_eq!(keys_for(&requests, ext), in_order(agent), "{agent}");
    }
}

/// A clock that answers 503 while `down`, else 201; the event IDs it
/// answered 201, in order.
fn flaky_clock(down: Arc<AtomicBool>) -> (Server, Arc<Mutex<Vec<String>>>) {
    let punched = Arc::new(Mutex::new(Vec::new()));
    let seen = punched.clone();
    let clock = Server::start(move |r| {
        if down.load(Ordering::SeqCst) {
            return Resp::status(503, "application/json", r#"{"error": "down"}"#);
        }
        seen.lock().unwrap().push(key(r));
        Resp::status(201, "application/json", "{}")
    });
    (clock, punched)
}

#[test]
fn queued_events_survive_kill_9_and_go_out_after_a_restart() {
    let down = Arc::new(AtomicBool::new(true));
    let (clock, punched) = flaky_clock(down.clone());
    let job = listen_job(&clock.base, &AGENTS, HMAC_AUTH);
    let mut listener = Listener::start(Run::listen(&job));
    shift(&listener);
    wait_for("a first try", || clock.request_count() >= 1);
    assert_eq!(listener.kill9(), None, "killed by a signal");
    down.store(false, Ordering::SeqCst);

    let listener = Listener::start(Run::listen(&job));
    wait_for("every accepted event", || {
        punched.lock().unwrap().len() >= 9
    });
    let punched = punched.lock().unwrap().clone();
    for agent in ["a", "b", "c"] {
        let mine: Vec<_> = punched
            .iter()
            .filter(|k| k.starts_with(agent))
            .cloned()
            .collect();
        assert_eq!(mine, in_order(agent), "{agent}");
    }
    assert!(
        listener.log().contains("9 events queued before"),
        "{}",
        listener.log()
    );
}

#[test]
fn a_clock_down_for_a_while_gets_the_event_after() {
    let failures = Arc::new(AtomicUsize::new(0));
    let count = failures.clone();
    let clock = Server::start(move |_| {
        if count.fetch_add(1, Ordering::SeqCst) < 2 {
            return Resp::status(503, "application/json", r#"{"error": "down"}"#);
        }
        Resp::status(201, "application/json", "{}")
    });
    let job = listen_job(&clock.base, &AGENTS, HMAC_AUTH);
    let listener = Listener::start(Run::listen(&job));
    assert_eq!(listener.send(&event("e1", "login", "a@x.com")), 202);
    wait_for("the punch", || {
        listener.metric("agentsync_listen_actions_sent_total") == 1.0
    });
    assert_eq!(clock.request_count(), 3);
    assert_eq!(
        listener.metric("agentsync_listen_actions_retried_total"),
        2.0
    );
    wait_for("the retries' lines", || {
        listener.log().contains("not sent yet")
    });
}

#[test]
fn a_429_is_tried_again_after_its_retry_after() {
    let first = Arc::new(AtomicBool::new(true));
    let clock = Server::start(move |_| {
        if first.swap(false, Ordering::SeqCst) {
            return Resp::status(429, "application/json", "{}").with_header("Retry-After", "2");
        }
        Resp::status(201, "application/json", "{}")
    });
    let job = listen_job(&clock.base, &AGENTS, HMAC_AUTH);
    let listener = Listener::start(Run::listen(&job));
    assert_eq!(listener.send(&event("e1", "login", "a@x.com")), 202);
    wait_for("the second try", || clock.request_count() >= 2);
    let requests = clock.requests();
    let waited = requests[1].at.duration_since(requests[0].at);
    assert!(waited >= Duration::from_millis(1900), "{waited:?}");
    assert_eq!(key(&requests[1]), "e1");
}

#[test]
fn sigterm_finishes_the_actions_in_flight_and_a_restart_sends_nothing_twice() {
    let clock = Server::start(|_| {
        std::thread::sleep(Duration::from_millis(700));
        Resp::status(201, "application/json", "{}")
    });
    let job = listen_job(&clock.base, &AGENTS, HMAC_AUTH);
    let mut listener = Listener::start(Run::listen(&job));
    assert_eq!(listener.send(&event("e1", "login", "a@x.com")), 202);
    assert_eq!(listener.send(&event("e2", "login", "b@x.com")), 202);
    wait_for("two actions in flight", || clock.request_count() == 2);
    assert_eq!(listener.stop(), Some(0), "{}", listener.log());
    wait_for("the stop's line", || {
        listener.log().contains("finishing the actions in flight")
    });

    let again = Listener::start(Run::listen(&job));
    // The same events, sent again by a sender: acknowledged, not run.
    assert_eq!(again.send(&event("e1", "login", "a@x.com")), 202);
    assert_eq!(again.metric("agentsync_listen_events_duplicate_total"), 1.0);
    assert_eq!(again.metric("agentsync_listen_queue_depth"), 0.0);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(clock.request_count(), 2);
}

#[test]
fn a_queue_that_cannot_be_written_answers_503() {
    let clock = Server::start(|_| Resp::status(201, "application/json", "{}"));
    let job = listen_job(&clock.base, &AGENTS, HMAC_AUTH);
    let listener = Listener::start(Run::listen(&job).file_size_limit(160 * 1024));
    assert_eq!(listener.get("/healthz").0, 200);
    let mut accepted = Vec::new();
    let mut refused = None;
    for n in 0..2000 {
        let id = format!("e{n}-{}", "x".repeat(400));
        match listener.send(&event(&id, "login", "a@x.com")) {
            202 => accepted.push(id),
            503 => {
                refused = Some(id);
                break;
            }
            other => panic!("HTTP {other}"),
        }
    }
    let refused = refused.expect("the queue filled up");
    assert_eq!(listener.get("/healthz").0, 503);
    wait_for("the queue's error line", || {
        listener.log().contains("the event queue cannot be written")
    });
    wait_for("the accepted events", || {
        clock.request_count() >= accepted.len()
    });
    let keys: Vec<_> = clock.requests().iter().map(key).collect();
    assert!(accepted.iter().all(|id| keys.contains(id)));
    assert!(!keys.contains(&refused));
}

#[test]
fn a_removed_state_directory_answers_503() {
    let clock = Server::start(|_| Resp::status(201, "application/json", "{}"));
    let job = listen_job(&clock.base, &AGENTS, HMAC_AUTH);
    let listener = Listener::start(Run::listen(&job));
    assert_eq!(listener.send(&event("e1", "login", "a@x.com")), 202);
    wait_for("the punch", || clock.request_count() == 1);
    std::fs::remove_dir_all(job.state_dir()).unwrap();
    // Nothing written where no start will find it: the sender keeps the event.
    assert_eq!(listener.send(&event("e2", "logout", "a@x.com")), 503);
    assert_eq!(listener.get("/healthz").0, 503);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(clock.request_count(), 1);
}

#[test]
fn agents_the_directory_does_not_know_are_looked_up_again_then_failed() {
    let clock = Server::start(|_| Resp::status(201, "application/json", "{}"));
    let agents = [("ann@x.com", Some("1")), ("bo@x.com", None)];
    let job = listen_job(&clock.base, &agents, HMAC_AUTH);
    let listener = Listener::start(Run::listen(&job));
    // Added to the directory after the listener listed it.
    let rows = r#"[{"id": "k0", "email": "ann@x.com", "external_id": "1"},
        {"id": "k1", "email": "bo@x.com", "external_id": null},
        {"id": "k2", "email": "new@x.com", "external_id": "3"}]"#;
    job.write("agents.json", rows);
    assert_eq!(listener.send(&event("e1", "login", "bo@x.com")), 202);
    assert_eq!(listener.send(&event("e2", "login", "zed@x.com")), 202);
    assert_eq!(listener.send(&event("e3", "login", "new@x.com")), 202);
    wait_for("two failures", || {
        listener.metric("agentsync_listen_actions_failed_total") == 2.0
    });
    wait_for("the new agent's punch", || clock.request_count() == 1);
    assert_eq!(clock.requests()[0].path(), "/users/3/punch-clock");
    for expected in [
        "event e1: punch for bo@x.com FAILED: agent bo@x.com (k1) has no external ID",
        "event e2: punch for zed@x.com FAILED: no agent has the email zed@x.com",
    ] {
        wait_for(expected, || listener.log().contains(expected));
    }
}

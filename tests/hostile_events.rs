//! Hostile events files for `agentsync action --events`: a line too long to
//! hold, bytes that are not UTF-8. Each is refused by its line number with
//! exit 2 before anything is sent, in bounded memory. (The row of
//! docs/reliability.md "Hostile files".)

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{Job, JobDir, Resp, Server};

/// A clock that accepts every punch, and a directory in a file that has
/// `ann@x.com` with an external ID.
fn clock_job() -> (Server, JobDir) {
    let clock = Server::start(|_| Resp::status(201, "application/json", r#"{"ok": true}"#));
    let job = Job::source(&clock.base)
        .records(".users")
        .sink_file("agents.json")
        .action("punch", "method", "POST")
        .action("punch", "path", "/users/{{external_id}}/punch")
        .action("punch", "body", r#"{"event": "{{var.event}}"}"#)
        .write();
    job.write(
        "agents.json",
        r#"[{"id": "k1", "email": "ann@x.com", "external_id": "7"}]"#,
    );
    (clock, job)
}

/// The largest resident set of any child this test binary waited for, in
/// bytes (Linux counts `ru_maxrss` in KiB).
fn children_peak_rss() -> u64 {
    // SAFETY: getrusage writes one `rusage` we own and reads nothing else.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &raw mut usage) };
    assert_eq!(rc, 0, "getrusage");
    u64::try_from(usage.ru_maxrss).unwrap() * 1024
}

const GOOD: &str = "{\"email\": \"ann@x.com\", \"vars\": {\"event\": \"login\"}}\n";

#[test]
fn an_events_line_of_256_mib_is_refused_by_its_number_without_being_held() {
    const LINE: usize = 256 * 1024 * 1024;
    let (clock, job) = clock_job();
    let mut child = Command::new(env!("CARGO_BIN_EXE_agentsync"))
        .args(["action", "punch", "--config", job.config(), "--events", "-"])
        .env("AGENTSYNC_STATE_DIR", job.state_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        // A closed pipe ends the writing: the reader may stop early.
        let chunk = vec![b'x'; 1024 * 1024];
        let _ = stdin.write_all(GOOD.as_bytes());
        let _ = stdin.write_all(b"{\"email\": \"");
        for _ in 0..LINE / chunk.len() {
            if stdin.write_all(&chunk).is_err() {
                return;
            }
        }
        let _ = stdin.write_all(b"\"}\n");
        let _ = stdin.write_all(GOOD.as_bytes());
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("1 malformed event; nothing was sent:\n  stdin: line 2: longer than 64 KiB, the most an event may have"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("line 1") && !stderr.contains("line 3"),
        "{stderr}"
    );
    assert_eq!(clock.request_count(), 0, "a request was sent");
    let peak = children_peak_rss();
    assert!(
        peak < 128 * 1024 * 1024,
        "a {LINE}-byte line took {peak} bytes of memory"
    );
}

#[test]
fn an_events_line_that_is_not_utf8_is_refused_by_its_number() {
    let (clock, job) = clock_job();
    let mut text = GOOD.as_bytes().to_vec();
    text.extend_from_slice(b"{\"email\": \"b\xff@x.com\"}\r\n");
    text.extend_from_slice(GOOD.as_bytes());
    let events = job.path("events.jsonl");
    std::fs::write(&events, &text).unwrap();
    let out = common::agentsync(&["action", "punch"])
        .config(&job)
        .args(&["--events", events.to_str().unwrap()])
        .expect(2);
    assert!(
        out.stderr
            .contains("events.jsonl: line 2: not UTF-8 text (byte 13)"),
        "{}",
        out.stderr
    );
    assert_eq!(clock.request_count(), 0, "a request was sent");
}

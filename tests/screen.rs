//! What the operator sees: colour and its switches, aligned columns and
//! counted nouns, values from servers escaped, JSON log lines, and file sinks
//! that keep every byte they do not own.

mod common;

use common::one_page_source as source;
use common::{Job, JobDir, Resp, Scim, Server, agentsync, sync};
use serde_json::Value;

const ESC: char = '\u{1b}';

/// A sync from `src` to `scim`.
fn scim_job(src: &Server, scim: &Scim) -> JobDir {
    Job::source(&src.base)
        .path("/users")
        .records(".users")
        .set("retries", 0)
        .sink_scim(&scim.base())
        .sink("retries", 0)
        .write()
}

/// A sync from `src` to a file next to the config.
fn file_job(src: &Server, file: &str) -> JobDir {
    Job::source(&src.base)
        .records(".users")
        .sink_file(file)
        .write()
}

fn one_link() -> (Server, Scim) {
    let src = source(&[("1", "a@x.com"), ("2", "nobody@x.com")]);
    let scim = Scim::start(&[("k1", "a@x.com", None)], &[]);
    (src, scim)
}

#[test]
fn color_always_paints_the_plan_and_never_or_no_color_leave_it_plain() {
    let (src, scim) = one_link();
    let job = scim_job(&src, &scim);
    let out = sync(&job).dry_run().args(&["--color", "always"]).expect(0);
    assert!(out.stdout.contains(ESC), "{:?}", out.stdout);
    // `+` is green.
    assert!(out.stdout.contains("\u{1b}[32m+"), "{:?}", out.stdout);
    // always wins over NO_COLOR.
    let out = sync(&job)
        .dry_run()
        .args(&["--color", "always"])
        .env("NO_COLOR", "1")
        .expect(0);
    assert!(out.stdout.contains(ESC), "{:?}", out.stdout);

    // NO_COLOR wins over CLICOLOR_FORCE under auto, and never is never.
    for run in [
        sync(&job)
            .dry_run()
            .env("NO_COLOR", "1")
            .env("CLICOLOR_FORCE", "1"),
        sync(&job)
            .dry_run()
            .args(&["--color", "never"])
            .env("CLICOLOR_FORCE", "1"),
        sync(&job).dry_run(),
    ] {
        let out = run.expect(0);
        assert!(!out.stdout.contains(ESC), "{:?}", out.stdout);
        assert!(!out.stderr.contains(ESC), "{:?}", out.stderr);
        assert!(
            out.stdout.contains("  + a@x.com  (none) -> 1"),
            "{}",
            out.stdout
        );
    }
    // CLICOLOR_FORCE colours a pipe under auto.
    let out = sync(&job)
        .dry_run()
        .env("CLICOLOR_FORCE", "1")
        .env_remove("NO_COLOR")
        .expect(0);
    assert!(out.stdout.contains(ESC), "{:?}", out.stdout);
}

#[test]
fn columns_line_up_and_one_is_singular() {
    let src = source(&[("1", "a@x.com"), ("22", "nobody@x.com"), ("333", "n@x.com")]);
    let scim = Scim::start(&[("k1", "a@x.com", None)], &[]);
    let job = scim_job(&src, &scim);
    let out = sync(&job).dry_run().expect(0);
    assert!(
        out.stdout.contains(
            "unmatched, no agent with this email (2):\n  ? n@x.com       333\n  ? nobody@x.com  22\n"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("(3 users from 1 page, 1 agent)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr
            .contains("source: 3 users from 3 records in 1 page"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("directory: 1 agent in 1 page"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("1 pages"), "{}", out.stderr);

    // history: one row a run, the columns under their headings.
    sync(&job).expect(0);
    let out = agentsync(&["history"]).config(&job).expect(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    assert!(lines[0].starts_with("RUN"), "{}", out.stdout);
    // Left-aligned columns start under their headings; counts end under them.
    for heading in ["TIME", "KIND"] {
        let col = lines[0].find(heading).unwrap();
        assert_eq!(&lines[1][col - 2..col], "  ", "{heading}:\n{}", out.stdout);
        assert_ne!(&lines[1][col..=col], " ", "{heading}:\n{}", out.stdout);
    }
    for heading in ["LINK", "UPDATE", "UNLINK", "FAILED"] {
        let end = lines[0].find(heading).unwrap() + heading.len();
        assert_ne!(&lines[1][end - 1..end], " ", "{heading}:\n{}", out.stdout);
        assert!(
            lines[1].len() == end || &lines[1][end..=end] == " ",
            "{heading}:\n{}",
            out.stdout
        );
    }
}

#[test]
fn forged_values_from_servers_are_escaped_in_the_human_report() {
    let forged_id = "7\nApplied: 0 link, 0 update (all good)";
    let forged_email = "\u{1b}[2J\u{1b}[31mevil@x.com";
    let src = source(&[(forged_id, "a@x.com"), ("9", forged_email)]);
    let scim = Scim::start(&[("k1", "a@x.com", None)], &[]);
    let job = scim_job(&src, &scim);
    let painted = sync(&job).dry_run().args(&["--color", "always"]).expect(0);
    let plain = sync(&job).dry_run().expect(0);
    assert!(!plain.stdout.contains(ESC), "{:?}", plain.stdout);
    // With colour on, only agentsync's own style codes are there.
    for forged in ["\u{1b}[2J", "\u{1b}[2j", "\u{1b}[31mevil"] {
        assert!(!painted.stdout.contains(forged), "{:?}", painted.stdout);
    }
    for out in [painted, plain] {
        assert!(
            out.stdout
                .contains("7\\nApplied: 0 link, 0 update (all good)"),
            "{}",
            out.stdout
        );
        // (Unmatched emails are shown as matched: lower-cased.)
        assert!(
            out.stdout.contains("\\u{1b}[2j\\u{1b}[31mevil@x.com  9"),
            "{}",
            out.stdout
        );
        assert!(
            !out.stdout.lines().any(|l| l.starts_with("Applied")),
            "{}",
            out.stdout
        );
    }
    // The JSON report keeps the values exact (serde escapes them).
    let report = sync(&job).dry_run().output_json().expect(0).json();
    assert_eq!(report["changes"][0]["new_external_id"], forged_id);
    // fetch shows them escaped too.
    let out = agentsync(&["fetch"]).config(&job).expect(0);
    assert!(!out.stdout.contains(ESC), "{:?}", out.stdout);
    assert!(out.stdout.contains("7\\nApplied"), "{}", out.stdout);
}

#[test]
fn log_format_json_makes_every_stderr_line_a_json_object() {
    let (src, scim) = one_link();
    let job = scim_job(&src, &scim);
    let check = |stderr: &str| -> Vec<Value> {
        assert!(!stderr.trim().is_empty());
        stderr
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}\n{stderr}"));
                assert!(v["time"].as_str().unwrap().contains('T'), "{l}");
                assert!(
                    ["info", "warn", "debug", "error"].contains(&v["level"].as_str().unwrap()),
                    "{l}"
                );
                assert!(v["message"].is_string(), "{l}");
                v
            })
            .collect()
    };
    let out = sync(&job).args(&["--log-format", "json", "-v"]).expect(0);
    let lines = check(&out.stderr);
    assert!(
        lines
            .iter()
            .any(|l| l["message"].as_str().unwrap().starts_with("source: ")),
        "{}",
        out.stderr
    );

    // The error that ends a run is a JSON line too, with its exit code.
    let down = Server::start(|_| Resp::status(500, "text/plain", "down\n\u{1b}[31m"));
    let job = Job::source(&down.base)
        .records(".users")
        .set("retries", 0)
        .sink_scim(&scim.base())
        .write();
    let out = sync(&job).args(&["--log-format", "json"]).expect(1);
    let lines = check(&out.stderr);
    let last = lines.last().unwrap();
    assert_eq!(last["level"], "error");
    assert_eq!(last["exit_code"], 1);
    assert!(
        last["message"].as_str().unwrap().contains("HTTP 500"),
        "{last}"
    );
    // A usage error too.
    let out = agentsync(&["--log-format", "json", "--no-such-flag"]).expect(2);
    check(&out.stderr);
}

#[test]
fn text_errors_escape_what_the_server_said() {
    let down = Server::start(|_| Resp::status(500, "text/plain", "down \u{1b}[2J\u{202e}"));
    let job = Job::source(&down.base)
        .records(".users")
        .set("retries", 0)
        .sink_file("agents.csv")
        .write();
    job.write("agents.csv", "email\na@x.com\n");
    let out = sync(&job).expect(1);
    assert!(!out.stderr.contains(ESC), "{:?}", out.stderr);
    assert!(
        out.stderr.contains("HTTP 500: down \\u{1b}[2J\\u{202e}"),
        "{}",
        out.stderr
    );
}

#[test]
fn json_file_sink_changes_only_the_external_ids() {
    let src = source(&[("1", "a@x.com"), ("2", "b@x.com")]);
    let job = file_job(&src, "agents.json");
    let original = "\u{feff}[\r\n  {\r\n    \"email\": \"a@x.com\",\r\n    \"big\": 123456789012345678901234567890,\r\n    \"dup\": 1,\r\n    \"dup\": 2\r\n  },\r\n  {\"email\": \"b@x.com\", \"external_id\": 123456789012345678901234567890, \"n\": 1.10e3}\r\n]\r\n";
    let path = job.write("agents.json", original);
    sync(&job).expect(0);
    let written = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        written,
        "\u{feff}[\r\n  {\r\n    \"email\": \"a@x.com\",\r\n    \"big\": 123456789012345678901234567890,\r\n    \"dup\": 1,\r\n    \"dup\": 2,\r\n    \"external_id\": \"1\"\r\n  },\r\n  {\"email\": \"b@x.com\", \"external_id\": \"2\", \"n\": 1.10e3}\r\n]\r\n"
    );
    sync(&job).dry_run().arg("--detailed-exitcode").expect(0);
}

#[test]
fn csv_file_sink_keeps_its_bom_takes_any_header_case_and_guards_formulas() {
    let formula = "=HYPERLINK(\"http://evil.example\",\"x\")";
    let src = source(&[(formula, "a@x.com"), ("7", "b@x.com")]);
    let job = file_job(&src, "agents.csv");
    let path = job.write(
        "agents.csv",
        "\u{feff}Name,Email,EXTERNAL_ID\r\nAnn,a@x.com,\r\nBo,B@x.com,\r\n",
    );
    sync(&job).expect(0);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "\u{feff}Name,Email,EXTERNAL_ID\r\nAnn,a@x.com,\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"x\"\")\"\r\nBo,B@x.com,7\r\n"
    );
    // The guard is dropped when read: the ID is the one set, nothing to do.
    sync(&job).dry_run().arg("--detailed-exitcode").expect(0);
}

#[test]
fn a_missing_file_sink_fails_before_any_source_request() {
    let src = source(&[("1", "a@x.com")]);
    let job = file_job(&src, "agents.csv");
    let out = sync(&job).expect(1);
    assert_eq!(src.request_count(), 0, "the source was read");
    assert!(
        out.stderr.contains("agents.csv does not exist"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(
            "the file sink must list the agents (a header row with `email` and one row per agent)"
        ),
        "{}",
        out.stderr
    );
    job.write("agents.csv", "");
    let out = sync(&job).expect(1);
    assert!(out.stderr.contains("agents.csv is empty"), "{}", out.stderr);
    assert_eq!(src.request_count(), 0, "the source was read");
}

//! Operating agentsync: the man page, a run as a container runs it (read-only
//! config, no home, no temp dir), TLS with a private CA, and proxies.

mod common;

use common::tls::{Pki, TlsServer};
use common::{Job, Resp, Server, agentsync, fetch};

/// The subcommands `--help` lists (but `help`).
fn subcommands() -> Vec<String> {
    let help = agentsync(&["--help"]).expect(0).stdout;
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn man_prints_a_roff_page_naming_every_subcommand() {
    let out = agentsync(&["man"]).expect(0);
    assert!(out.stdout.starts_with(".TH"), "{}", &out.stdout[..200]);
    let names = subcommands();
    assert!(names.len() >= 9, "{names:?}");
    for name in names {
        // roff escapes the dash: agentsync\-sync(1)
        assert!(
            out.stdout.contains(&format!("agentsync\\-{name}")),
            "{name} is not in the man page"
        );
    }
}

/// As in the container image: the config on a read-only mount, no home and
/// no temp dir, the state directory the only place written (the mock is the
/// source and the directory).
#[cfg(all(unix, feature = "mock"))]
mod container {
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    use super::common::{Mock, agentsync};

    /// Every path under `dir`, relative to it.
    fn listing(dir: &Path) -> BTreeSet<PathBuf> {
        let mut found = BTreeSet::new();
        let mut todo = vec![dir.to_owned()];
        while let Some(d) = todo.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    todo.push(path.clone());
                }
                found.insert(path.strip_prefix(dir).unwrap().to_owned());
            }
        }
        found
    }

    fn set_mode(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_sync_in_a_container_writes_only_to_the_state_directory() {
        let mock = Mock::start(&[]);
        let punch = mock.punch_job();
        let root = tempfile::tempdir().unwrap();
        let etc = root.path().join("etc");
        let state = root.path().join("state");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::create_dir_all(&state).unwrap();
        let config = etc.join("punch.toml");
        std::fs::copy(&punch.config, &config).unwrap();
        set_mode(&etc, 0o555);
        let home = root.path().join("home-missing");
        let tmp = root.path().join("tmp-missing");
        let before = listing(root.path());

        let out = agentsync(&["--config", config.to_str().unwrap()])
            .env("HOME", home.to_str().unwrap())
            .env("TMPDIR", tmp.to_str().unwrap())
            .env("AGENTSYNC_STATE_DIR", state.to_str().unwrap())
            .env_remove("XDG_STATE_HOME")
            .env_remove("STATE_DIRECTORY")
            .run();
        set_mode(&etc, 0o755);
        out.expect(0);

        let after = listing(root.path());
        let new: Vec<_> = after.difference(&before).collect();
        assert!(
            new.iter().all(|p| p.starts_with("state")),
            "written outside the state directory: {new:?}"
        );
        assert!(!tmp.exists() && !home.exists(), "{new:?}");
        assert_eq!(listing(&etc), [PathBuf::from("punch.toml")].into());
        let journal = std::fs::read_dir(&state)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .find(|n| n.ends_with(".journal.jsonl"));
        let journal = journal.unwrap_or_else(|| panic!("no journal in {new:?}"));
        let text = std::fs::read_to_string(state.join(journal)).unwrap();
        assert!(text.contains("\"applied\""), "{text}");
    }
}

const USERS: &str = r#"{"users": [{"id": "7", "email": "a@x.com"}]}"#;

#[test]
fn a_private_ca_is_trusted_only_through_ca_file() {
    let ca = Pki::new();
    let server = TlsServer::plain(&ca, Box::new(|_, _| (200, USERS.to_owned())));
    let job = Job::source(&server.base())
        .path("/users")
        .records(".users")
        .set("retries", 0);

    let out = fetch(&job.write()).run();
    out.expect(1);
    assert!(out.stderr.contains("certificate"), "{}", out.stderr);
    // A refused certificate is refused again: one attempt, and the fix named.
    assert!(out.stderr.contains("ca_file"), "{}", out.stderr);
    assert!(!out.stderr.contains("attempts"), "{}", out.stderr);

    let dir = job.clone().set("ca_file", "certs/ca.pem").write();
    std::fs::create_dir(dir.path("certs")).unwrap();
    dir.write("certs/ca.pem", &ca.ca_pem);
    let out = fetch(&dir).output_json().expect(0);
    assert_eq!(
        out.json()["users"],
        serde_json::json!([{"id": "7", "email": "a@x.com"}])
    );
}

#[test]
fn a_ca_file_that_is_missing_or_holds_no_certificate_is_a_config_error() {
    let job = Job::source("https://127.0.0.1:9")
        .path("/users")
        .records(".users")
        .set("ca_file", "ca.pem");
    let dir = job.write();
    let out = agentsync(&["check"]).config(&dir).expect(2);
    let line = dir
        .read("job.toml")
        .lines()
        .position(|l| l.starts_with("ca_file"))
        .unwrap()
        + 1;
    assert!(
        out.stderr.contains(&format!(
            "job.toml:{line}:11: [source] ca_file: cannot read"
        )),
        "{}",
        out.stderr
    );
    dir.write("ca.pem", "not a certificate\n");
    let out = agentsync(&["check"]).config(&dir).expect(2);
    assert!(
        out.stderr.contains("holds no certificate"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_socks_proxy_is_refused_before_any_request() {
    let source = Server::start(|_| Resp::json(USERS));
    let job = Job::source(&source.base)
        .path("/users")
        .records(".users")
        .write();
    let out = fetch(&job)
        .env("ALL_PROXY", "socks5://user:pw-9@127.0.0.1:1080")
        .run();
    out.expect(2);
    assert!(out.stderr.contains("SOCKS"), "{}", out.stderr);
    assert!(!out.stderr.contains("pw-9"), "{}", out.stderr);
    assert_eq!(source.request_count(), 0);
    fetch(&job).expect(0);
}

#[test]
fn help_names_every_limit_force_passes_and_what_the_mock_seeds() {
    let out = agentsync(&["sync", "--help"]).expect(0);
    for limit in [
        "max_changes",
        "max_unlink_percent",
        "max_skipped_percent",
        "max_source_drop_percent",
        "on_contested = \"refuse\"",
        "Never `min_users`",
    ] {
        assert!(out.stdout.contains(limit), "{limit}: {}", out.stdout);
    }
    #[cfg(feature = "mock")]
    {
        let out = agentsync(&["mock", "--help"]).expect(0);
        assert!(
            out.stdout.contains(
                "plus 3 the source does not know: N - N/10 + 3 agents in all (400 seeds 363)"
            ),
            "{}",
            out.stdout
        );
    }
}

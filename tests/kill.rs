//! kill -9 at a random moment, then `revert last --force`: the directory is
//! what it was before the sync, wherever the kill landed. Each iteration runs
//! a sync of `configs/punch.toml` against its own `agentsync mock` (latency on
//! every request, ~190 changes), kills it after a random delay, reverts, and
//! compares the mock's `/scim/v2/Users` listing with the one taken before.
//!
//! `AGENTSYNC_KILL_ITERATIONS` sets the number of iterations (default 10),
//! `AGENTSYNC_KILL_SEED` the seed (default: from the clock); the seed is
//! printed, so that a failing iteration can be run again.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Mock, agentsync, sync};

/// Latency the mock adds to every request, in milliseconds.
const LATENCY_MS: u64 = 10;
/// The kill comes this long after the start at most: past the writes of a
/// debug build on a busy machine, so that some kills land after the run.
const MAX_DELAY_MS: u64 = 1500;

/// Every agent's external ID, by agent id, as the mock lists them.
fn directory(mock: &Mock) -> BTreeMap<String, Option<String>> {
    let listing = mock.get("/scim/v2/Users?startIndex=1&count=100000");
    let users = listing["Resources"].as_array().expect("a SCIM listing");
    assert_eq!(
        listing["totalResults"].as_u64(),
        Some(users.len() as u64),
        "one page holds the whole directory"
    );
    users
        .iter()
        .map(|u| {
            (
                u["id"].as_str().unwrap().to_owned(),
                u["externalId"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// The directory once no write is in flight any more: two listings alike,
/// well over the mock's latency apart.
fn settled(mock: &Mock) -> BTreeMap<String, Option<String>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = directory(mock);
    loop {
        std::thread::sleep(Duration::from_millis(LATENCY_MS * 10));
        let now = directory(mock);
        if now == last {
            return now;
        }
        assert!(Instant::now() < deadline, "the directory kept changing");
        last = now;
    }
}

/// How one iteration ended.
#[derive(Debug, PartialEq)]
enum Held {
    /// Killed before its first write: nothing to revert.
    BeforeWrites,
    /// Killed during or after the writes; the revert restored everything.
    Restored { changed: usize },
}

/// One iteration: `Ok` with how it held, or `Err` with how it broke.
fn iteration(delay: Duration) -> Result<Held, String> {
    let mock = Mock::start(&[
        "--users",
        "300",
        "--agents",
        "300",
        "--latency-ms",
        &LATENCY_MS.to_string(),
    ]);
    let job = mock.punch_job();
    let before = directory(&mock);
    let mut child = sync(&job).quiet().spawn_captured();
    std::thread::sleep(delay);
    // kill -9: no handler runs.
    let _ = child.kill();
    let _ = child.wait();
    let killed = settled(&mock);
    let changed = before
        .iter()
        .filter(|(id, ext)| killed.get(*id) != Some(ext))
        .count();
    let revert = agentsync(&["revert", "last", "--force"]).config(&job).run();
    let after = settled(&mock);
    if after != before {
        let differ = before
            .iter()
            .filter(|(id, ext)| after.get(*id) != Some(ext))
            .count();
        return Err(format!(
            "{changed} agents changed by the sync, {differ} differ after `revert last --force` (exit {}): {}",
            revert.code,
            revert.stderr.trim()
        ));
    }
    if changed == 0 {
        // Killed before a write landed (perhaps before its journal had a
        // run that wrote): the revert, if it found one, had nothing to do.
        if revert.code != 0 && !revert.stderr.contains("no run that wrote anything") {
            return Err(format!("exit {}: {}", revert.code, revert.stderr.trim()));
        }
        return Ok(Held::BeforeWrites);
    }
    if revert.code != 0 {
        return Err(format!(
            "restored, but exit {}: {}",
            revert.code,
            revert.stderr.trim()
        ));
    }
    Ok(Held::Restored { changed })
}

#[test]
fn kill_9_at_a_random_moment_then_revert_last_restores_the_directory() {
    let iterations: usize = std::env::var("AGENTSYNC_KILL_ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10);
    let seed: u64 = std::env::var("AGENTSYNC_KILL_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    println!("kill test: seed {seed}, {iterations} iterations");
    let mut rng = fastrand::Rng::with_seed(seed);
    let (mut held, mut before_writes, mut broken) = (0, 0, Vec::new());
    for i in 0..iterations {
        let delay = Duration::from_millis(rng.u64(0..=MAX_DELAY_MS));
        match iteration(delay) {
            Ok(outcome) => {
                println!("iteration {i}: kill after {delay:?}: held, {outcome:?}");
                held += 1;
                before_writes += usize::from(outcome == Held::BeforeWrites);
            }
            Err(why) => {
                println!("iteration {i}: kill after {delay:?}: BROKEN: {why}");
                broken.push(format!("iteration {i} (kill after {delay:?}): {why}"));
            }
        }
    }
    println!(
        "kill test: seed {seed}: {held} held ({before_writes} killed before any write landed), {} broken",
        broken.len()
    );
    assert!(
        broken.is_empty(),
        "seed {seed} (AGENTSYNC_KILL_SEED={seed} runs it again):\n{}",
        broken.join("\n")
    );
}

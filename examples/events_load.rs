//! The benchmark's load generator for `agentsync listen`: S sender threads,
//! each on its own keep-alive connection, post N Talkdesk-style agent events
//! between them, each signed the Standard Webhooks way (HMAC-SHA256 over
//! `id.timestamp.body`), and time each request until its answer. Event `i`
//! is for the `i mod A`-th email of the list, a login or a logout in turn per
//! email. Prints one JSON object: counts by status, wall time, events
//! acknowledged per second, p50 / p99 / max time to the answer, and when the
//! last 202 came (Unix milliseconds).
//!
//!     cargo run --release --example events_load -- URL SECRET EMAILS_FILE EVENTS SENDERS [ID_PREFIX]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

struct Args {
    url: String,
    key: Vec<u8>,
    emails: Vec<String>,
    events: usize,
    senders: usize,
    prefix: String,
}

fn args() -> Result<Args, String> {
    let usage = "usage: events_load URL SECRET EMAILS_FILE EVENTS SENDERS [ID_PREFIX]";
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() < 5 {
        return Err(usage.into());
    }
    let secret = a[1].strip_prefix("whsec_").unwrap_or(&a[1]);
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret)
        .map_err(|e| format!("the secret is not whsec_<base64>: {e}"))?;
    let emails: Vec<String> = std::fs::read_to_string(&a[2])
        .map_err(|e| format!("{}: {e}", a[2]))?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    if emails.is_empty() {
        return Err(format!("{}: no email", a[2]));
    }
    let number = |s: &str| s.parse::<usize>().map_err(|e| format!("{s}: {e}"));
    Ok(Args {
        url: a[0].clone(),
        key,
        emails,
        events: number(&a[3])?,
        senders: number(&a[4])?.max(1),
        prefix: a.get(5).cloned().unwrap_or_else(|| "evt".into()),
    })
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

/// What one sender saw: each request's time to its answer, statuses, the
/// time of its last 202.
#[derive(Default)]
struct Seen {
    latencies: Vec<Duration>,
    statuses: BTreeMap<String, usize>,
    last_accepted_ms: u128,
}

fn send_all(a: &Args, next: &AtomicUsize) -> Seen {
    // No timeout: with one, ureq resolves the host on a new thread per request.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into();
    let mut seen = Seen::default();
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= a.events {
            return seen;
        }
        let email = &a.emails[i % a.emails.len()];
        let kind = if (i / a.emails.len()).is_multiple_of(2) {
            "user.login"
        } else {
            "user.logout"
        };
        let id = format!("{}-{i}", a.prefix);
        let body = serde_json::json!({
            "id": id,
            "type": kind,
            "created_at": "2026-12-06T08:00:00Z",
            "data": {"account_id": "bench", "user_id": format!("td-{i}"), "user_email": email},
        })
        .to_string();
        let timestamp = (unix_ms() / 1000).to_string();
        let msg_id = format!("msg_{id}");
        let mut mac = Hmac::<Sha256>::new_from_slice(&a.key).expect("HMAC takes any key length");
        mac.update(format!("{msg_id}.{timestamp}.{body}").as_bytes());
        let signature = format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        );
        let started = Instant::now();
        let answer = agent
            .post(&a.url)
            .header("Content-Type", "application/json")
            .header("webhook-id", &msg_id)
            .header("webhook-timestamp", &timestamp)
            .header("webhook-signature", &signature)
            .send(&body);
        let status = match answer {
            Ok(mut reply) => {
                let _ = reply.body_mut().read_to_vec();
                reply.status().as_u16().to_string()
            }
            Err(e) => format!("error: {e}"),
        };
        seen.latencies.push(started.elapsed());
        if status == "202" {
            seen.last_accepted_ms = unix_ms();
        }
        *seen.statuses.entry(status).or_default() += 1;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1000.0
}

fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    let seen: Vec<Seen> = std::thread::scope(|scope| {
        let senders: Vec<_> = (0..a.senders)
            .map(|_| scope.spawn(|| send_all(&a, &next)))
            .collect();
        senders
            .into_iter()
            .map(|s| s.join().expect("a sender panicked"))
            .collect()
    });
    let wall = started.elapsed().as_secs_f64();
    let mut latencies: Vec<Duration> = seen.iter().flat_map(|s| s.latencies.clone()).collect();
    latencies.sort_unstable();
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    for s in &seen {
        for (status, n) in &s.statuses {
            *statuses.entry(status.clone()).or_default() += n;
        }
    }
    let accepted = statuses.get("202").copied().unwrap_or(0);
    #[allow(clippy::cast_precision_loss)]
    let rate = accepted as f64 / wall.max(1e-9);
    let report = serde_json::json!({
        "events": a.events,
        "senders": a.senders,
        "statuses": statuses,
        "accepted": accepted,
        "wall_s": wall,
        "accepted_per_s": rate,
        "p50_ms": percentile(&latencies, 0.50),
        "p99_ms": percentile(&latencies, 0.99),
        "max_ms": percentile(&latencies, 1.0),
        "last_202_unix_ms": seen.iter().map(|s| s.last_accepted_ms).max().unwrap_or(0),
    });
    println!("{report}");
}

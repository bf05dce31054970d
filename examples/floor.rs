//! The benchmark's floor for W1: the least work a fetch of the bundled mock's
//! users can do with the same HTTP client. 4 threads take page numbers in
//! turn, and each page is read by serde straight into `{id, email}`, keeping
//! the records `select(.active != false)` keeps; no jq, no pagination logic,
//! no checks. Prints the users as `id<TAB>email` lines.
//!
//!     cargo run --release --example floor -- http://127.0.0.1:8787 PAGES

use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;
use serde_json::value::RawValue;

#[derive(Deserialize)]
struct Page<'a> {
    #[serde(borrow)]
    users: Vec<Record<'a>>,
}

#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    punch_clock_id: &'a RawValue,
    punch_clock_email: String,
    active: Option<bool>,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let base = args.next().expect("base URL");
    let pages: u64 = args.next().expect("page count").parse().expect("a number");
    // The client settings of agentsync's own (src/http.rs), but no timeout:
    // with one, ureq looks the host up on a new thread per request.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_idle_connections_per_host(16)
        .build()
        .into();
    let next = AtomicU64::new(1);
    let users: Vec<(String, String)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    let mut users = Vec::new();
                    loop {
                        let page = next.fetch_add(1, Ordering::SeqCst);
                        if page > pages {
                            return users;
                        }
                        let url = format!("{base}/users/not-formatted?page={page}");
                        let body = agent
                            .get(&url)
                            .call()
                            .expect("request")
                            .body_mut()
                            .with_config()
                            .limit(256 << 20)
                            .read_to_vec()
                            .expect("body");
                        let page: Page = serde_json::from_slice(&body).expect("a page");
                        users.extend(page.users.into_iter().filter_map(|r| {
                            (r.active != Some(false)).then(|| {
                                let id = r.punch_clock_id.get().trim_matches('"').to_owned();
                                (id, r.punch_clock_email)
                            })
                        }));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("worker"))
            .collect()
    });
    let mut out = BufWriter::new(std::io::stdout().lock());
    for (id, email) in &users {
        writeln!(out, "{id}\t{email}").expect("stdout");
    }
}

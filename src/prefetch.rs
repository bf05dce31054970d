//! Fetching pages ahead on a few threads, when the pages to come are known
//! after the first one (page numbers or offsets with a total, a SCIM listing).
//!
//! The prefetch only guesses: the reader still walks the pages in order and asks
//! for each request it would send. When that request is the one fetched ahead,
//! it gets its response; when it is not (the pages were not all the size of the
//! first), the prefetch stops and the reader goes on one page at a time. So the
//! result is the same as a sequential read, only sooner.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::Scope;

use anyhow::Result;

use crate::http::{Client, Request, Response};

/// How far ahead of the reader the workers may go, in pages per worker. Bounds
/// the memory held by responses not yet read.
const AHEAD_PER_WORKER: usize = 2;

struct Shared {
    stop: AtomicBool,
    /// The next request index a worker takes.
    next: AtomicUsize,
    /// Responses handed to the reader so far; workers wait to stay within the window.
    taken: Mutex<usize>,
    moved: Condvar,
}

impl Shared {
    fn halt(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _guard = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        self.moved.notify_all();
    }
}

/// Fetches `requests` ahead and hands each response, read by `read` on the
/// worker thread, to the reader in order.
pub(crate) struct Prefetch<T> {
    requests: Arc<Vec<Request>>,
    shared: Arc<Shared>,
    results: Receiver<(usize, T)>,
    arrived: BTreeMap<usize, T>,
    /// Index of the next request the reader should ask for.
    position: usize,
}

impl<T: Send + 'static> Prefetch<T> {
    /// Start `workers` threads in `scope` sending `requests` in order. Each
    /// response goes through `read` (given the request's index) on the worker,
    /// so that reading pages is done in parallel too.
    pub(crate) fn start<'scope, 'env, F>(
        scope: &'scope Scope<'scope, 'env>,
        client: &'env Client,
        requests: Vec<Request>,
        workers: usize,
        read: F,
    ) -> Self
    where
        F: Fn(usize, &Request, Result<Response>) -> T + Send + Sync + 'scope,
    {
        let read = Arc::new(read);
        let requests = Arc::new(requests);
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            next: AtomicUsize::new(0),
            taken: Mutex::new(0),
            moved: Condvar::new(),
        });
        let window = workers.max(1) * AHEAD_PER_WORKER;
        let (tx, rx) = channel();
        for _ in 0..workers.min(requests.len()) {
            let (requests, shared, tx, read) =
                (requests.clone(), shared.clone(), tx.clone(), read.clone());
            scope.spawn(move || {
                loop {
                    let i = shared.next.fetch_add(1, Ordering::SeqCst);
                    if i >= requests.len() {
                        break;
                    }
                    // Wait until the reader is close enough.
                    let mut taken = shared.taken.lock().unwrap_or_else(|e| e.into_inner());
                    while i >= *taken + window && !shared.stop.load(Ordering::SeqCst) {
                        taken = shared.moved.wait(taken).unwrap_or_else(|e| e.into_inner());
                    }
                    drop(taken);
                    if shared.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let result = read(i, &requests[i], client.send(&requests[i]));
                    if tx.send((i, result)).is_err() {
                        break;
                    }
                }
            });
        }
        Prefetch {
            requests,
            shared,
            results: rx,
            arrived: BTreeMap::new(),
            position: 0,
        }
    }

    /// The response to `request` if it is the next one fetched ahead; `None`
    /// (and the prefetch stops) when the reader went another way.
    pub(crate) fn take(&mut self, request: &Request) -> Option<T> {
        let expected = self.requests.get(self.position)?;
        let same = expected.method == request.method
            && expected.url == request.url
            && expected.body == request.body;
        if !same || self.shared.stop.load(Ordering::SeqCst) {
            self.shared.halt();
            return None;
        }
        let result = loop {
            if let Some(r) = self.arrived.remove(&self.position) {
                break r;
            }
            match self.results.recv() {
                Ok((i, r)) => {
                    self.arrived.insert(i, r);
                }
                // Every worker is gone without this page: fetch it directly.
                Err(_) => {
                    self.shared.halt();
                    return None;
                }
            }
        };
        self.position += 1;
        let mut taken = self.shared.taken.lock().unwrap_or_else(|e| e.into_inner());
        *taken = self.position;
        self.shared.moved.notify_all();
        Some(result)
    }
}

impl<T> Drop for Prefetch<T> {
    fn drop(&mut self) {
        // Workers in the middle of a request finish it; none starts another.
        self.shared.halt();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Settings;
    use url::Url;

    /// A server answering each path with itself, counting requests.
    fn echo_server() -> (
        Arc<tiny_http::Server>,
        String,
        std::thread::JoinHandle<usize>,
    ) {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let base = format!("http://{}", server.server_addr().to_ip().unwrap());
        let s = server.clone();
        let handle = std::thread::spawn(move || {
            let mut n = 0;
            while let Ok(req) = s.recv() {
                n += 1;
                let body = req.url().to_owned();
                let _ = req.respond(tiny_http::Response::from_string(body));
            }
            n
        });
        (server, base, handle)
    }

    fn get(base: &str, path: &str) -> Request {
        Request::get(Url::parse(&format!("{base}{path}")).unwrap())
    }

    #[test]
    fn answers_in_order_and_stops_when_the_reader_goes_elsewhere() {
        let (server, base, handle) = echo_server();
        let client = Client::new(Settings::default(), None);
        let requests: Vec<Request> = (2..=9).map(|p| get(&base, &format!("/p{p}"))).collect();
        std::thread::scope(|scope| {
            let mut prefetch = Prefetch::start(scope, &client, requests, 3, |_, _, r| r);
            for p in 2..=5 {
                let resp = prefetch
                    .take(&get(&base, &format!("/p{p}")))
                    .unwrap()
                    .unwrap();
                assert_eq!(String::from_utf8(resp.body).unwrap(), format!("/p{p}"));
            }
            // Not the planned page 6: the prefetch gives up for good.
            assert!(prefetch.take(&get(&base, "/other")).is_none());
            assert!(prefetch.take(&get(&base, "/p6")).is_none());
        });
        server.unblock();
        let served = handle.join().unwrap();
        // 4 read, at most the window (3 workers × 2) beyond them.
        assert!((4..=4 + 6).contains(&served), "{served} requests");
    }
}

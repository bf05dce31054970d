//! The one page walker: the source and the directory listing both read their
//! pages through [`walk`]. Pages are taken in order; when the pages still to
//! come are known after one of them (page numbers or offsets with a total, a
//! SCIM listing), they are fetched ahead on a few threads and read there too.
//!
//! Fetching ahead only guesses: the walker still asks for each request it would
//! send. When that request is the one fetched ahead, it gets its response; when
//! it is not (the pages were not all the size of the first), fetching ahead
//! stops and the walk goes on one page at a time. So the result is the same as
//! a sequential read, only sooner.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::Scope;

use anyhow::Result;

use crate::http::{Client, Request, Response};
use crate::progress::Stage;

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
        let _guard = self
            .taken
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.moved.notify_all();
    }
}

/// The requests of the pages still to come, made when they are needed: a
/// listing may announce many pages, and none is built before it is fetched.
pub(crate) struct Planned {
    len: usize,
    make: Box<dyn Fn(usize) -> Request + Send + Sync>,
}

impl Planned {
    /// `len` requests, the `i`-th (0-based) made by `make(i)`.
    pub(crate) fn new(len: usize, make: impl Fn(usize) -> Request + Send + Sync + 'static) -> Self {
        Planned {
            len,
            make: Box::new(make),
        }
    }

    fn get(&self, i: usize) -> Option<Request> {
        (i < self.len).then(|| (self.make)(i))
    }
}

impl From<Vec<Request>> for Planned {
    fn from(requests: Vec<Request>) -> Self {
        let len = requests.len();
        Planned::new(len, move |i| requests[i].clone())
    }
}

/// Fetches `requests` ahead and hands each response, read by `read` on the
/// worker thread, to the reader in order.
struct Prefetch<T> {
    requests: Arc<Planned>,
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
    fn start<'scope, 'env, F>(
        scope: &'scope Scope<'scope, 'env>,
        client: &'env Client,
        requests: impl Into<Planned>,
        workers: usize,
        read: F,
    ) -> Self
    where
        F: Fn(usize, &Request, Result<Response>) -> T + Send + Sync + 'scope,
    {
        let read = Arc::new(read);
        let requests = Arc::new(requests.into());
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            next: AtomicUsize::new(0),
            taken: Mutex::new(0),
            moved: Condvar::new(),
        });
        let window = workers.max(1) * AHEAD_PER_WORKER;
        let (tx, rx) = channel();
        for _ in 0..workers.min(requests.len) {
            let (requests, shared, tx, read) =
                (requests.clone(), shared.clone(), tx.clone(), read.clone());
            scope.spawn(move || {
                loop {
                    let i = shared.next.fetch_add(1, Ordering::SeqCst);
                    if i >= requests.len {
                        break;
                    }
                    // Wait until the reader is close enough.
                    let mut taken = shared
                        .taken
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    while i >= *taken + window && !shared.stop.load(Ordering::SeqCst) {
                        taken = shared
                            .moved
                            .wait(taken)
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                    }
                    drop(taken);
                    if shared.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Some(request) = requests.get(i) else {
                        break;
                    };
                    let result = read(i, &request, client.send(&request));
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
    fn take(&mut self, request: &Request) -> Option<T> {
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
            let Ok((i, r)) = self.results.recv() else {
                // Every worker is gone without this page: fetch it directly.
                self.shared.halt();
                return None;
            };
            self.arrived.insert(i, r);
        };
        self.position += 1;
        let mut taken = self
            .shared
            .taken
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
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

/// What a listing does with its pages; [`walk`] drives it.
pub(crate) trait Listing {
    /// A page as read by [`walk`]'s `read` function.
    type Page;
    /// The request of the page after those taken so far.
    fn next_request(&mut self) -> Result<Request>;
    /// Take page `number` (1-based), in order, and say how the walk goes on.
    fn take(&mut self, number: u64, page: Self::Page) -> Result<Next>;
}

/// How a walk goes on after a page.
pub(crate) enum Next {
    /// The listing is complete.
    Done,
    /// Ask for the next request.
    More,
    /// Ask for the next request; these are the requests of every page still
    /// to come, in order, to be fetched ahead.
    Ahead(Vec<Request>),
    /// As `Ahead`, for a listing that may announce many pages: the requests
    /// are made one by one as they are fetched, never all at once.
    Lazy(Planned),
}

/// Walk the pages of `listing`: send each request, read its response with
/// `read` (given the page number), hand the page to the listing. With
/// `workers > 1` the pages a listing announces are fetched and read ahead.
pub(crate) fn walk<L, F>(
    client: &Client,
    workers: usize,
    listing: &mut L,
    read: F,
    stage: &Stage,
) -> Result<()>
where
    L: Listing,
    L::Page: Send + 'static,
    F: Fn(u64, &Request, Result<Response>) -> Result<L::Page> + Sync,
{
    let read = &read;
    std::thread::scope(|scope| -> Result<()> {
        let mut ahead: Option<Prefetch<Result<L::Page>>> = None;
        let mut number = 0u64;
        loop {
            if stage.halted() {
                return Err(Halted.into());
            }
            number += 1;
            let request = listing.next_request()?;
            let page = match ahead.as_mut().and_then(|p| p.take(&request)) {
                Some(page) => page,
                None => read(number, &request, client.send(&request)),
            }?;
            stage.inc(1);
            let how = match listing.take(number, page)? {
                Next::Ahead(requests) => Next::Lazy(requests.into()),
                other => other,
            };
            match how {
                Next::Done => return Ok(()),
                Next::More | Next::Ahead(_) => {}
                Next::Lazy(requests) => {
                    stage.set_len(number + requests.len as u64);
                    if workers > 1 && ahead.is_none() && requests.len > 0 {
                        let first = number + 1;
                        ahead = Some(Prefetch::start(
                            scope,
                            client,
                            requests,
                            workers,
                            move |i, req: &Request, sent| read(first + i as u64, req, sent),
                        ));
                    }
                }
            }
        }
    })
}

/// A walk stopped because the stage beside it failed (see
/// [`crate::progress::Progress::halt`]); that failure is the one to report.
#[derive(Debug)]
pub(crate) struct Halted;

impl std::fmt::Display for Halted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stopped: the listing read beside it failed")
    }
}

impl std::error::Error for Halted {}

/// Items seen so far and the page each came from, to notice a listing that
/// shifted between pages (an item on two pages). Keyed by a hash of the item,
/// so no copy of every item is kept; callers confirm a hit against the item.
///
/// The items come from a server, so the hash is seeded per run (foldhash's
/// random state): fast, without the cost of `SipHash` on every user of a million.
#[derive(Default)]
pub(crate) struct Seen {
    hasher: foldhash::fast::RandomState,
    at: HashMap<u64, (u64, usize), foldhash::fast::RandomState>,
}

impl Seen {
    pub(crate) fn reserve(&mut self, n: usize) {
        self.at.reserve(n);
    }

    /// Record `item`, the `slot`-th kept, from page `page`. Returns the page
    /// and slot of an earlier item with the same hash, if any.
    pub(crate) fn insert(
        &mut self,
        item: &impl std::hash::Hash,
        page: u64,
        slot: usize,
    ) -> Option<(u64, usize)> {
        use std::hash::BuildHasher;
        let key = self.hasher.hash_one(item);
        self.at.insert(key, (page, slot))
    }
}

// The test serves pages with the bundled mock's server.
#[cfg(all(test, feature = "mock"))]
mod tests {
    use super::*;
    use crate::http::Settings;
    use url::Url;

    use crate::mock::server::{Reply, Server};
    use std::sync::atomic::AtomicUsize;

    /// A server answering each path with itself, counting requests.
    fn echo_server() -> (Server, String, Arc<AtomicUsize>) {
        let served = Arc::new(AtomicUsize::new(0));
        let count = served.clone();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server = Server::start(listener, move |req| {
            count.fetch_add(1, Ordering::SeqCst);
            Reply {
                status: 200,
                content_type: "text/plain",
                headers: Vec::new(),
                body: req.target,
            }
        })
        .unwrap();
        let base = format!("http://{}", server.addr());
        (server, base, served)
    }

    fn get(base: &str, path: &str) -> Request {
        Request::get(Url::parse(&format!("{base}{path}")).unwrap())
    }

    #[test]
    fn answers_in_order_and_stops_when_the_reader_goes_elsewhere() {
        let (server, base, served) = echo_server();
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
        drop(server);
        let served = served.load(Ordering::SeqCst);
        // 4 read, at most the window (3 workers × 2) beyond them.
        assert!((4..=4 + 6).contains(&served), "{served} requests");
    }
}

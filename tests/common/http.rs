//! A tiny HTTP/1.1 server for one test: 127.0.0.1 on a free port, one thread
//! per connection (so no request waits for a pool), one request per
//! connection (`Connection: close`), every request recorded, stopped on drop.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    /// Path and query, e.g. `/users?page=2`.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// When its connection was accepted: close to when the client sent it,
    /// whatever the scheduling of the thread that then reads it.
    pub at: Instant,
}

impl Req {
    pub fn path(&self) -> &str {
        self.url.split('?').next().unwrap_or("")
    }

    /// The decoded value of query parameter `name`.
    pub fn query(&self, name: &str) -> Option<String> {
        let query = self.url.split_once('?')?.1;
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A response to send.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(body: impl Into<String>) -> Self {
        Resp::status(200, "application/json", body)
    }

    pub fn value(v: &serde_json::Value) -> Self {
        Resp::json(v.to_string())
    }

    pub fn status(status: u16, content_type: &str, body: impl Into<String>) -> Self {
        Resp {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into().into_bytes(),
        }
    }

    /// No answer at all: the connection is reset (RST) once the request has
    /// been read, as when a gateway or the network drops it.
    pub fn reset() -> Self {
        Resp {
            status: 0,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

type Handler = dyn Fn(&Req) -> Resp + Send + Sync;

/// What the connection threads share with the test.
struct Shared {
    handler: Box<Handler>,
    requests: Mutex<Vec<Req>>,
    /// Connections accepted and not yet answered.
    busy: AtomicUsize,
}

/// An HTTP server on 127.0.0.1 for one test; stopped when dropped.
pub struct Server {
    pub base: String,
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

/// How long a connection may stall while sending its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound of a request body the tests accept.
const MAX_BODY: usize = 16 * 1024 * 1024;

impl Server {
    pub fn start(handler: impl Fn(&Req) -> Resp + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared {
            handler: Box::new(handler),
            requests: Mutex::new(Vec::new()),
            busy: AtomicUsize::new(0),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let at = Instant::now();
                    // Counted here, before the thread starts, so that
                    // `wait_idle` never misses an accepted connection.
                    shared.busy.fetch_add(1, Ordering::SeqCst);
                    let shared = shared.clone();
                    std::thread::spawn(move || {
                        serve(stream, at, &shared);
                        shared.busy.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            })
        };
        Server {
            base: format!("http://{addr}"),
            addr,
            shared,
            stop,
            accept: Some(accept),
        }
    }

    /// Every request received so far, in the order they arrived.
    pub fn requests(&self) -> Vec<Req> {
        self.shared.requests.lock().unwrap().clone()
    }

    pub fn request_count(&self) -> usize {
        self.shared.requests.lock().unwrap().len()
    }

    /// Wait until every connection accepted so far has been answered (or
    /// dropped), e.g. the requests a killed client had already sent.
    pub fn wait_idle(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut quiet = 0;
        while quiet < 3 {
            assert!(Instant::now() < deadline, "the server stayed busy");
            std::thread::sleep(Duration::from_millis(25));
            quiet = if self.shared.busy.load(Ordering::SeqCst) == 0 {
                quiet + 1
            } else {
                0
            };
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// Read one request, record it, answer it, close.
fn serve(stream: TcpStream, at: Instant, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    // Head and body leave together: no Nagle wait on a small second write.
    let _ = stream.set_nodelay(true);
    let Ok(writer) = stream.try_clone() else {
        return;
    };
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    let mut reader = BufReader::new(stream);
    let Some(req) = read_request(&mut reader, at) else {
        return;
    };
    shared.requests.lock().unwrap().push(req.clone());
    let resp = (shared.handler)(&req);
    if resp.status == 0 {
        reset(writer.get_ref());
        return;
    }
    let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    for (name, value) in &resp.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        resp.body.len()
    ));
    // The client may have gone (a timeout, a size limit): nothing to do then.
    let _ = writer
        .write_all(head.as_bytes())
        .and_then(|()| writer.write_all(&resp.body))
        .and_then(|()| writer.flush());
}

/// Close `stream` with a reset: a zero linger time makes the close send RST.
fn reset(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a `linger` of the size given.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::from_ref(&linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

fn read_request(reader: &mut BufReader<TcpStream>, at: Instant) -> Option<Req> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, url) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let mut req = Req {
        method,
        url,
        headers,
        body: String::new(),
        at,
    };
    let body = if req
        .header("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        read_chunked(reader)?
    } else {
        let len: usize = req
            .header("content-length")
            .map_or(Some(0), |n| n.parse().ok())?;
        if len > MAX_BODY {
            return None;
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body).ok()?;
        body
    };
    req.body = String::from_utf8_lossy(&body).into_owned();
    Some(req)
}

fn read_chunked(reader: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let size = line.trim().split(';').next()?;
        let size = usize::from_str_radix(size, 16).ok()?;
        if body.len() + size > MAX_BODY {
            return None;
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..]).ok()?;
        line.clear();
        reader.read_line(&mut line).ok()?; // the CRLF after the chunk
        if size == 0 {
            return Some(body);
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

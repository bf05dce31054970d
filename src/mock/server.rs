//! The mock's HTTP/1.1 server: one thread per connection, keep-alive, each
//! response written in one piece, on loopback only.
//!
//! A thread per connection keeps every open connection served at once: a client
//! that opens N keep-alive connections gets N requests answered in parallel, so
//! the mock is never what a benchmark of the client measures.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{Context, Result};

/// The longest request line or header line read.
const MAX_LINE: u64 = 16 * 1024;
/// The most header lines in one request.
const MAX_HEADERS: usize = 100;
/// The largest request body read.
const MAX_BODY: usize = 16 * 1024 * 1024;
/// The most connections open at once; more are answered 503 and closed.
const MAX_CONNECTIONS: usize = 1024;

/// A request as the handler sees it.
#[derive(Debug)]
pub(crate) struct Request {
    /// Upper-case method, e.g. `GET`.
    pub method: String,
    /// The request target: path and query.
    pub target: String,
    /// Header names as sent, values trimmed, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first value of header `name` (case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A response before it is written.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    /// Headers besides Content-Type, Content-Length and Connection; values
    /// must not hold line ends.
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Reply {
    pub(crate) fn new(status: u16, content_type: &'static str, body: String) -> Self {
        Reply {
            status,
            content_type,
            headers: Vec::new(),
            body,
        }
    }

    pub(crate) fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }
}

type Handler = dyn Fn(Request) -> Reply + Send + Sync;

struct Shared {
    stop: AtomicBool,
    /// Open connections, so that stopping closes them.
    connections: Mutex<HashMap<u64, TcpStream>>,
    next_id: AtomicU64,
}

/// A running server; stopped (listener and connections closed) when dropped.
pub(crate) struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    /// Serve `listener` with `handler` until dropped.
    pub(crate) fn start(
        listener: TcpListener,
        handler: impl Fn(Request) -> Reply + Send + Sync + 'static,
    ) -> Result<Server> {
        let addr = listener
            .local_addr()
            .context("reading the listening address")?;
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            connections: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        });
        let handler: Arc<Handler> = Arc::new(handler);
        let accept = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("mock-accept".into())
                .spawn(move || accept_loop(&listener, &shared, &handler))
                .context("starting the mock's accept thread")?
        };
        Ok(Server {
            addr,
            shared,
            accept: Some(accept),
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Block until the server stops (it does not on its own: until killed).
    pub(crate) fn wait(mut self) {
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop with a connection of our own; it sees `stop`.
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        let connections = std::mem::take(&mut *lock(&self.shared.connections));
        for stream in connections.values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>, handler: &Arc<Handler>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        // Headers and body go out in one write, but a small response must not
        // wait for the client's delayed ACK either.
        let _ = stream.set_nodelay(true);
        let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
        {
            let mut open = lock(&shared.connections);
            if open.len() >= MAX_CONNECTIONS {
                drop(open);
                let busy = error_reply(503, "too many connections");
                let _ = write_response(&mut &stream, &busy, true, false);
                continue;
            }
            match stream.try_clone() {
                Ok(clone) => open.insert(id, clone),
                Err(_) => continue,
            };
        }
        let (mine, handler) = (shared.clone(), handler.clone());
        let spawned = std::thread::Builder::new()
            .name("mock-conn".into())
            .spawn(move || {
                serve_connection(&stream, &handler);
                lock(&mine.connections).remove(&id);
            });
        if spawned.is_err() {
            lock(&shared.connections).remove(&id);
        }
    }
}

/// Answer the requests of one connection until it closes or asks to.
fn serve_connection(stream: &TcpStream, handler: &Arc<Handler>) {
    let mut reader = BufReader::new(stream);
    loop {
        let (request, close) = match read_request(&mut reader, stream) {
            Ok(Some(read)) => read,
            Ok(None) => return,
            Err(bad) => {
                let _ = write_response(&mut &*stream, &bad, true, false);
                close_gently(stream);
                return;
            }
        };
        let head = request.method == "HEAD";
        let response = handler(request);
        if write_response(&mut &*stream, &response, close, head).is_err() || close {
            return;
        }
    }
}

/// Close after an error answer without resetting the connection: a close with
/// unread input sends RST, and the client may lose the answer. So stop writing,
/// drain what the client still sends for a moment, then close.
fn close_gently(stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_millis(200)));
    let _ = std::io::copy(&mut stream.take(1024 * 1024), &mut std::io::sink());
}

/// A JSON `{"error": message}` answer.
fn error_reply(status: u16, message: &str) -> Reply {
    Reply::new(
        status,
        "application/json",
        serde_json::json!({ "error": message }).to_string(),
    )
}

/// Read one line of at most [`MAX_LINE`] bytes, without its line end. `None` at
/// the end of the stream before any byte.
fn read_line(reader: &mut impl BufRead) -> Result<Option<String>, Reply> {
    let mut line = Vec::new();
    let n = reader
        .by_ref()
        .take(MAX_LINE)
        .read_until(b'\n', &mut line)
        .map_err(|e| error_reply(400, &format!("reading the request: {e}")))?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(error_reply(431, "request line or header too long"));
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| error_reply(400, "request line or header is not UTF-8"))
}

/// The next request of the connection and whether the connection closes after
/// it; `Ok(None)` when the client closed the connection between requests.
fn read_request(
    reader: &mut impl BufRead,
    stream: &TcpStream,
) -> Result<Option<(Request, bool)>, Reply> {
    let Some(line) = read_line(reader)? else {
        return Ok(None);
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(error_reply(400, "malformed request line"));
    };
    let mut close = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(error_reply(505, "only HTTP/1.0 and HTTP/1.1 are served")),
    };
    let mut length = 0usize;
    let mut headers = Vec::new();
    loop {
        let Some(header) = read_line(reader)? else {
            return Err(error_reply(400, "the connection closed inside the headers"));
        };
        if header.is_empty() {
            break;
        }
        if headers.len() >= MAX_HEADERS {
            return Err(error_reply(431, "too many headers"));
        }
        let Some((name, value)) = header.split_once(':') else {
            return Err(error_reply(400, "malformed header"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value
                .parse()
                .map_err(|_| error_reply(400, "bad Content-Length"))?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(error_reply(501, "chunked request bodies are not supported"));
        } else if name.eq_ignore_ascii_case("connection") {
            let value = value.to_ascii_lowercase();
            if value.contains("close") {
                close = true;
            } else if value.contains("keep-alive") {
                close = false;
            }
        } else if name.eq_ignore_ascii_case("expect") && value.eq_ignore_ascii_case("100-continue")
        {
            let _ = (&mut &*stream).write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        headers.push((name.trim().to_owned(), value.to_owned()));
    }
    if length > MAX_BODY {
        return Err(error_reply(413, "request body too large"));
    }
    let mut body = vec![0; length];
    reader
        .read_exact(&mut body)
        .map_err(|e| error_reply(400, &format!("reading the request body: {e}")))?;
    let request = Request {
        method: method.to_ascii_uppercase(),
        target: target.to_owned(),
        headers,
        body,
    };
    Ok(Some((request, close)))
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Write headers and body in one piece.
fn write_response(
    out: &mut impl Write,
    response: &Reply,
    close: bool,
    head: bool,
) -> std::io::Result<()> {
    let mut bytes = Vec::with_capacity(160 + response.body.len());
    write!(
        bytes,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len(),
        if close { "Connection: close\r\n" } else { "" },
    )?;
    for (name, value) in &response.headers {
        write!(bytes, "{name}: {value}\r\n")?;
    }
    bytes.extend_from_slice(b"\r\n");
    if !head {
        bytes.extend_from_slice(response.body.as_bytes());
    }
    out.write_all(&bytes)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn echo() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        Server::start(listener, |req: Request| {
            let body = format!(
                "{} {} {}",
                req.method,
                req.target,
                String::from_utf8_lossy(&req.body)
            );
            let host = req.header("HOST").unwrap_or("-").to_owned();
            Reply::new(200, "text/plain", body).with_header("X-Host", host)
        })
        .unwrap()
    }

    /// Send raw bytes and read until the server closes the connection.
    fn exchange(server: &Server, raw: &str) -> String {
        let mut stream = TcpStream::connect(server.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.write_all(raw.as_bytes()).unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn keeps_the_connection_for_several_requests_until_asked_to_close() {
        let server = echo();
        let out = exchange(
            &server,
            "GET /a?x=1 HTTP/1.1\r\nHost: h\r\n\r\n\
             POST /b HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello\
             PUT /c HTTP/1.1\r\nConnection: close\r\n\r\n",
        );
        let answers: Vec<&str> = out.split("HTTP/1.1 200 OK").skip(1).collect();
        assert_eq!(answers.len(), 3, "{out}");
        assert!(answers[0].ends_with("Content-Length: 11\r\nX-Host: h\r\n\r\nGET /a?x=1 "));
        assert!(answers[1].ends_with("POST /b hello"));
        assert!(answers[2].contains("Connection: close\r\n"));
        assert!(answers[2].ends_with("PUT /c "));
    }

    #[test]
    fn http_1_0_closes_and_head_has_no_body() {
        let server = echo();
        let out = exchange(&server, "HEAD /x HTTP/1.0\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.contains("Content-Length: 8\r\n"));
        assert!(out.ends_with("\r\n\r\n"), "{out}");
    }

    #[test]
    fn refuses_malformed_requests() {
        let server = echo();
        assert!(exchange(&server, "NONSENSE\r\n\r\n").starts_with("HTTP/1.1 400 "));
        assert!(exchange(&server, "GET / HTTP/2\r\n\r\n").starts_with("HTTP/1.1 505 "));
        assert!(
            exchange(
                &server,
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            .starts_with("HTTP/1.1 501 ")
        );
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(20_000));
        assert!(exchange(&server, &long).starts_with("HTTP/1.1 431 "));
    }

    #[test]
    fn serves_many_open_connections_at_once() {
        let server = echo();
        // Every connection stays open while the next is served.
        let mut streams: Vec<TcpStream> = (0..40)
            .map(|_| TcpStream::connect(server.addr()).unwrap())
            .collect();
        for (i, stream) in streams.iter_mut().enumerate() {
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            write!(stream, "GET /{i} HTTP/1.1\r\n\r\n").unwrap();
        }
        for (i, stream) in streams.iter_mut().enumerate() {
            let mut buf = [0u8; 256];
            let n = stream.read(&mut buf).unwrap();
            let text = String::from_utf8_lossy(&buf[..n]);
            assert!(text.ends_with(&format!("GET /{i} ")), "{text}");
        }
    }

    #[test]
    fn dropping_the_server_closes_its_connections() {
        let server = echo();
        let mut stream = TcpStream::connect(server.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let mut buf = [0u8; 256];
        assert!(stream.read(&mut buf).unwrap() > 0);
        drop(server);
        // The kept-alive connection is closed by the server, not left open.
        assert_eq!(stream.read(&mut buf).unwrap(), 0);
    }
}

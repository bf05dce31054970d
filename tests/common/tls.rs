//! TLS servers for tests: a CA made for one test with a server certificate
//! for 127.0.0.1 and a client certificate it signed, and an HTTPS server on
//! 127.0.0.1 (one thread and one request per connection, as [`Server`]) that
//! may require a client certificate. Stopped on drop.
//!
//! [`Server`]: super::Server

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Req, Resp};

/// A CA made for one test, a server certificate for 127.0.0.1, and a client
/// certificate it signed (with a second key that belongs to nothing).
pub struct Pki {
    pub ca_pem: String,
    ca_der: rustls::pki_types::CertificateDer<'static>,
    server_chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    server_key: rustls::pki_types::PrivateKeyDer<'static>,
    pub client_cert_pem: String,
    pub client_key_pem: String,
    pub other_key_pem: String,
}

impl Pki {
    pub fn new() -> Self {
        Self::for_client("agentsync client")
    }

    /// As `new`, the client certificate's common name `client_name`.
    pub fn for_client(client_name: &str) -> Self {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "agentsync test CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let server_key = rcgen::KeyPair::generate().unwrap();
        let server = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&server_key, &ca)
            .unwrap();
        let client_key = rcgen::KeyPair::generate().unwrap();
        let mut client_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        client_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, client_name);
        let client = client_params.signed_by(&client_key, &ca).unwrap();
        Pki {
            ca_pem: ca.pem(),
            ca_der: ca.der().clone(),
            server_chain: vec![server.der().clone()],
            server_key: rustls::pki_types::PrivatePkcs8KeyDer::from(server_key.serialize_der())
                .into(),
            client_cert_pem: client.pem(),
            client_key_pem: client_key.serialize_pem(),
            other_key_pem: rcgen::KeyPair::generate().unwrap().serialize_pem(),
        }
    }
}

pub type TlsHandler = dyn Fn(&str, &str) -> (u16, String) + Send + Sync;

type ReqHandler = dyn Fn(&Req) -> Resp + Send + Sync;

/// How a server answers: `handler(request head, body)` with a JSON body, or
/// a [`Resp`] to a [`Req`] as [`super::Server`] does.
enum Answer {
    Text(Box<TlsHandler>),
    Http(Box<ReqHandler>),
}

/// An HTTPS server on 127.0.0.1; its handler answers. Stopped on drop.
pub struct TlsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    served: Arc<Mutex<Vec<(String, Req)>>>,
    thread: Option<JoinHandle<()>>,
}

impl TlsServer {
    /// A server that requires a client certificate signed by the test CA.
    pub fn mutual(pki: &Pki, handler: Box<TlsHandler>) -> Self {
        Self::start(pki, true, Answer::Text(handler))
    }

    /// A server that requires a client certificate signed by the test CA and
    /// answers as [`super::Server`] does: a [`Resp`] to each [`Req`].
    pub fn mutual_http(pki: &Pki, handler: impl Fn(&Req) -> Resp + Send + Sync + 'static) -> Self {
        Self::start(pki, true, Answer::Http(Box::new(handler)))
    }

    /// A server that asks for no client certificate.
    pub fn plain(pki: &Pki, handler: Box<TlsHandler>) -> Self {
        Self::start(pki, false, Answer::Text(handler))
    }

    fn start(pki: &Pki, client_auth: bool, handler: Answer) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if client_auth {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(pki.ca_der.clone()).unwrap();
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = builder
            .with_single_cert(pki.server_chain.clone(), pki.server_key.clone_key())
            .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(Mutex::new(Vec::new()));
        let handler = Arc::new(handler);
        let thread = {
            let (stop, served) = (stop.clone(), served.clone());
            std::thread::spawn(move || {
                for tcp in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(tcp) = tcp else { continue };
                    let at = Instant::now();
                    let (config, served, handler) =
                        (config.clone(), served.clone(), handler.clone());
                    std::thread::spawn(move || {
                        // A refused handshake ends that connection only.
                        let _ = serve(&config, tcp, at, &handler, &served);
                    });
                }
            })
        };
        TlsServer {
            addr,
            stop,
            served,
            thread: Some(thread),
        }
    }

    pub fn base(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The request lines answered (after a completed handshake).
    pub fn served(&self) -> Vec<String> {
        let served = self.served.lock().unwrap();
        served.iter().map(|(line, _)| line.clone()).collect()
    }

    /// The requests answered (after a completed handshake), in the order
    /// they arrived.
    pub fn requests(&self) -> Vec<Req> {
        let served = self.served.lock().unwrap();
        served.iter().map(|(_, req)| req.clone()).collect()
    }
}

fn serve(
    config: &Arc<rustls::ServerConfig>,
    tcp: TcpStream,
    at: Instant,
    handler: &Answer,
    served: &Mutex<Vec<(String, Req)>>,
) -> std::io::Result<()> {
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let conn = rustls::ServerConnection::new(config.clone()).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut request = Vec::new();
    let mut buf = [0; 4096];
    let head_end = loop {
        if let Some(i) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if request.len() > 64 * 1024 {
            return Ok(());
        }
        let n = tls.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        request.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&request[..head_end]).into_owned();
    let mut lines = head.lines();
    let line = lines.next().unwrap_or("").to_owned();
    let mut words = line.split_whitespace();
    let (method, url) = (
        words.next().unwrap_or("").to_owned(),
        words.next().unwrap_or("").to_owned(),
    );
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            let (name, value) = l.split_once(':')?;
            Some((name.trim().to_owned(), value.trim().to_owned()))
        })
        .collect();
    let mut req = Req {
        method,
        url,
        headers,
        body: String::new(),
        at,
    };
    let length = req
        .header("content-length")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0)
        .min(1024 * 1024);
    while request.len() < head_end + length {
        let n = tls.read(&mut buf)?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    req.body = String::from_utf8_lossy(&request[head_end..]).into_owned();
    served.lock().unwrap().push((line, req.clone()));
    match handler {
        Answer::Text(handler) => {
            let (status, answer) = handler(&head, &req.body);
            write!(
                tls,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            )?;
        }
        Answer::Http(handler) => {
            let resp = handler(&req);
            let mut out = format!("HTTP/1.1 {} Status\r\n", resp.status);
            for (name, value) in &resp.headers {
                out.push_str(&format!("{name}: {value}\r\n"));
            }
            // A 204 has no body and no Content-Length (RFC 9110 §8.6).
            if resp.status != 204 {
                out.push_str(&format!("Content-Length: {}\r\n", resp.body.len()));
            }
            out.push_str("Connection: close\r\n\r\n");
            tls.write_all(out.as_bytes())?;
            tls.write_all(&resp.body)?;
        }
    }
    tls.conn.send_close_notify();
    tls.flush()
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

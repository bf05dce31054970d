//! HTTPS for the replicas that need it: a CA made at test time, a server
//! certificate for 127.0.0.1 and a client certificate it signed, and a
//! thread-per-connection server (one request per connection, as
//! `common::Server`) that requires a client certificate from that CA.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::common::{Req, Resp};

/// The certificates of one test.
pub struct Pki {
    /// The CA, for the client's trust store (`SSL_CERT_FILE`).
    pub ca_pem: String,
    ca_der: CertificateDer<'static>,
    server_chain: Vec<CertificateDer<'static>>,
    server_key_der: Vec<u8>,
    /// The client's certificate and key, as a system issues them.
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

impl Pki {
    pub fn new(client_name: &str) -> Self {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "replica CA");
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
            server_key_der: server_key.serialize_der(),
            client_cert_pem: client.pem(),
            client_key_pem: client_key.serialize_pem(),
        }
    }

    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.into(),
            provider.clone(),
        )
        .build()
        .unwrap();
        let key: PrivateKeyDer<'static> =
            PrivatePkcs8KeyDer::from(self.server_key_der.clone()).into();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.server_chain.clone(), key)
            .unwrap();
        Arc::new(config)
    }
}

type Handler = dyn Fn(&Req) -> Resp + Send + Sync;

/// An HTTPS server on 127.0.0.1 that answers only clients showing a
/// certificate of the test CA; every answered request recorded; stopped
/// when dropped.
pub struct MtlsServer {
    pub base: String,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    requests: Arc<Mutex<Vec<Req>>>,
    accept: Option<JoinHandle<()>>,
}

impl MtlsServer {
    pub fn start(pki: &Pki, handler: impl Fn(&Req) -> Resp + Send + Sync + 'static) -> Self {
        let config = pki.server_config();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let accept = {
            let (stop, requests) = (stop.clone(), requests.clone());
            std::thread::spawn(move || {
                for tcp in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(tcp) = tcp else { continue };
                    let (config, requests, handler) =
                        (config.clone(), requests.clone(), handler.clone());
                    std::thread::spawn(move || {
                        // A refused handshake ends that connection only.
                        let _ = serve(config, tcp, &*handler, &requests);
                    });
                }
            })
        };
        MtlsServer {
            base: format!("https://{addr}"),
            addr,
            stop,
            requests,
            accept: Some(accept),
        }
    }

    /// The requests answered, in the order they arrived.
    pub fn requests(&self) -> Vec<Req> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for MtlsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// The most of a request the replicas read.
const MAX_REQUEST: usize = 1024 * 1024;

fn serve(
    config: Arc<rustls::ServerConfig>,
    tcp: TcpStream,
    handler: &Handler,
    requests: &Mutex<Vec<Req>>,
) -> std::io::Result<()> {
    let at = Instant::now();
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let conn = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut bytes = Vec::new();
    let mut buf = [0; 8192];
    let head_end = loop {
        if let Some(i) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tls.read(&mut buf)?;
        if n == 0 || bytes.len() > MAX_REQUEST {
            return Ok(());
        }
        bytes.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]).into_owned();
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or("").split_whitespace();
    let (method, url) = (
        first.next().unwrap_or("").to_owned(),
        first.next().unwrap_or("").to_owned(),
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
    let length: usize = req
        .header("content-length")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
        .min(MAX_REQUEST);
    while bytes.len() < head_end + length {
        let n = tls.read(&mut buf)?;
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&buf[..n]);
    }
    req.body = String::from_utf8_lossy(&bytes[head_end..]).into_owned();
    requests.lock().unwrap().push(req.clone());
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
    tls.conn.send_close_notify();
    tls.flush()
}

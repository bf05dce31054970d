//! The HTTP side: hyper (HTTP/1.1) with axum's router on the listener's own
//! small tokio runtime. POST `[listen] path` takes events, GET /healthz and
//! GET /metrics tell how the listener is; anything else is 404 (or 405). A
//! sender cannot hold a connection: headers must arrive within
//! [`HEADER_TIMEOUT`], the body within [`BODY_TIMEOUT`], both bounded in
//! size, and at most [`MAX_CONNECTIONS`] connections are served at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::event::{Classified, classify};
use super::metrics::{Metrics, Reason, bump};
use super::queue::{Accept, Queue, now_ms};
use super::sched::Sched;
use super::verify::Verifier;
use crate::config::ListenSpec;
use crate::progress::{Level, line};

/// The largest event body.
pub(crate) const MAX_BODY: usize = 64 * 1024;
/// The time a client has to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The time a client has to send the whole body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 512;
/// The read buffer of a connection, which bounds the request headers.
const MAX_HEADER_BYTES: usize = 16 * 1024;
/// How long requests in progress may take to finish after a signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);

/// What the handlers share.
pub(crate) struct App {
    pub spec: Arc<ListenSpec>,
    pub verifier: Verifier,
    pub queue: Queue,
    pub sched: Arc<Sched>,
    pub metrics: Arc<Metrics>,
    /// Workers still running.
    pub workers_alive: Arc<AtomicUsize>,
    pub workers: usize,
}

fn reply(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{{\"status\":\"{text}\"}}\n"),
    )
        .into_response()
}

fn refuse(app: &App, reason: Reason, status: StatusCode, detail: &str) -> Response {
    app.metrics.reject(reason);
    line(
        Level::Warn,
        &format!("event refused ({}): {detail}", reason.label()),
        &[
            ("outcome", "rejected".into()),
            ("reason", reason.label().into()),
        ],
    );
    reply(status, reason.label())
}

async fn events(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    bump(&app.metrics.received);
    let too_long = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > MAX_BODY as u64);
    if too_long {
        return refuse(
            &app,
            Reason::TooLarge,
            StatusCode::PAYLOAD_TOO_LARGE,
            "body over 64 KiB",
        );
    }
    let read = tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_BODY).collect()).await;
    let bytes = match read {
        Err(_) => {
            return refuse(
                &app,
                Reason::Timeout,
                StatusCode::REQUEST_TIMEOUT,
                "the body was too slow",
            );
        }
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return refuse(
                &app,
                Reason::TooLarge,
                StatusCode::PAYLOAD_TOO_LARGE,
                "body over 64 KiB",
            );
        }
        Ok(Err(e)) => {
            return refuse(
                &app,
                Reason::Invalid,
                StatusCode::BAD_REQUEST,
                &format!("the body could not be read: {e}"),
            );
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    if let Err(reason) = app.verifier.verify(&headers, &bytes, now_ms() / 1000) {
        let detail = match reason {
            Reason::Unsigned => "no signature",
            Reason::Stale => "timestamp outside tolerance_secs",
            _ => "the signature does not match",
        };
        return refuse(&app, reason, StatusCode::UNAUTHORIZED, detail);
    }
    let event = match classify(&app.spec, &bytes) {
        Ok(Classified::Queue(event)) => event,
        Ok(Classified::NoRoute { id }) => {
            bump(&app.metrics.unrouted);
            line(
                Level::Info,
                &format!("event {id}: no route takes it; acknowledged, nothing queued"),
                &[("event_id", id.into()), ("outcome", "unrouted".into())],
            );
            return reply(StatusCode::ACCEPTED, "unrouted");
        }
        Err(why) => return refuse(&app, Reason::Invalid, StatusCode::BAD_REQUEST, &why),
    };
    let id = event.id.clone();
    let email = event.email.clone();
    let action = event.action.clone();
    match app.queue.insert(event).await {
        Accept::Queued => {
            bump(&app.metrics.accepted);
            line(
                Level::Info,
                &format!("event {id}: queued {action} for {email}"),
                &[
                    ("event_id", id.into()),
                    ("email", email.into()),
                    ("action", action.into()),
                    ("outcome", "accepted".into()),
                ],
            );
            reply(StatusCode::ACCEPTED, "accepted")
        }
        Accept::Duplicate => {
            bump(&app.metrics.duplicate);
            line(
                Level::Info,
                &format!("event {id}: a duplicate, acknowledged and not run again"),
                &[("event_id", id.into()), ("outcome", "duplicate".into())],
            );
            reply(StatusCode::ACCEPTED, "duplicate")
        }
        Accept::Unavailable => refuse(
            &app,
            Reason::Unavailable,
            StatusCode::SERVICE_UNAVAILABLE,
            "the queue cannot be written",
        ),
    }
}

async fn healthz(State(app): State<Arc<App>>) -> Response {
    let workers = app.workers_alive.load(Ordering::SeqCst);
    if !app.queue.writable().await {
        return reply(StatusCode::SERVICE_UNAVAILABLE, "queue not writable");
    }
    if workers < app.workers {
        return reply(StatusCode::SERVICE_UNAVAILABLE, "workers stopped");
    }
    reply(StatusCode::OK, "ok")
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let (depth, oldest) = app.sched.depth();
    #[allow(clippy::cast_precision_loss)] // milliseconds of an age: exact far beyond a year
    let age = oldest.map_or(0.0, |t| (now_ms() - t).max(0) as f64 / 1000.0);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(depth, age),
    )
        .into_response()
}

/// The router of the listener.
pub(crate) fn router(app: Arc<App>) -> Router {
    let path = app.spec.path.clone();
    Router::new()
        .route(&path, post(events))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(|| async { reply(StatusCode::NOT_FOUND, "not found") })
        .with_state(app)
}

/// Serve `router` on `listener` until `stop` is set, then let the requests
/// in progress finish (up to [`DRAIN_TIMEOUT`]).
pub(crate) async fn serve(listener: TcpListener, router: Router, stop: Arc<AtomicBool>) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit,
            _ = ticker.tick() => {
                if stop.load(Ordering::SeqCst) { break; }
                continue;
            }
        };
        let Ok(permit) = permit else { break };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = ticker.tick() => {
                if stop.load(Ordering::SeqCst) { break; }
                continue;
            }
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait, then go on.
                line(Level::Warn, &format!("accepting a connection: {e}"), &[]);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .max_buf_size(MAX_HEADER_BYTES);
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await;
}

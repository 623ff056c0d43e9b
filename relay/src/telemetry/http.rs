//! The HTTP server for `/metrics`, `/healthz` and `/readyz`, on hyper's HTTP/1 server.
//!
//! It shares the process with the pipeline, so nothing a client does may cost the
//! pipeline its CPU or its file descriptors: connections are capped (and never take more
//! than a quarter of the descriptor limit), each connection has one deadline for its
//! whole life, request heads are limited in size, and a failing `accept` (out of file
//! descriptors) backs off instead of retrying in a busy loop.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::fd_limit::open_files_limit;
use super::{Health, Metrics};

/// hyper's smallest allowed read buffer, which bounds a request head: an honest client
/// (Prometheus, kubelet, curl) sends a few hundred bytes.
const MAX_HEAD_BYTES: usize = 8192;
const MAX_HEADERS: usize = 32;
/// The first pause after a failed `accept`, doubled per consecutive failure up to the max.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one warning per this window for refused connections and accept failures.
const WARN_EVERY: Duration = Duration::from_secs(30);

/// Limits on what clients of the telemetry server may hold.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub max_connections: usize,
    /// Deadline for a connection from accept to the end of its response.
    pub request_timeout: Duration,
}

impl HttpLimits {
    /// The connection cap actually used: `max_connections`, lowered to a quarter of the
    /// process's open-files limit so that slow clients cannot exhaust the descriptors the
    /// replication and broker connections need.
    pub fn effective_max_connections(&self) -> usize {
        match open_files_limit() {
            Some(limit) => self.max_connections.min((limit / 4).max(1) as usize),
            None => self.max_connections,
        }
    }
}

/// Binds `addr` and serves until the task is dropped. Returns the bound address
/// (useful with port 0).
pub async fn serve(
    addr: SocketAddr,
    limits: HttpLimits,
    metrics: Metrics,
    health: Arc<Health>,
) -> io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let max_connections = limits.effective_max_connections();
    if max_connections < limits.max_connections {
        warn!(
            configured = limits.max_connections,
            used = max_connections,
            "telemetry.max_connections lowered to a quarter of the open-files limit"
        );
    }
    let task = tokio::spawn(accept_loop(
        listener,
        max_connections,
        limits.request_timeout,
        metrics,
        health,
    ));
    Ok((local, task))
}

async fn accept_loop(
    listener: TcpListener,
    max_connections: usize,
    request_timeout: Duration,
    metrics: Metrics,
    health: Arc<Health>,
) {
    let slots = Arc::new(Semaphore::new(max_connections));
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let mut accept_failures = Throttled::default();
    let mut refusals = Throttled::default();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                stream
            }
            Err(e) => {
                // The pending connection stays queued, so the listener is still readable
                // and retrying at once fails again at once (EMFILE): a spinning core.
                // Waiting lets the pipeline's connections close and release descriptors.
                if let Some(suppressed) = accept_failures.due() {
                    warn!(error = %e, suppressed, retry_in = ?backoff, "telemetry server: accept failed");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        // Full: close the new connection rather than queue it behind slow ones; a scraper
        // retries, and the deadline frees a slot within `request_timeout`.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if let Some(suppressed) = refusals.due() {
                warn!(
                    max_connections,
                    suppressed,
                    "telemetry server: connection limit reached, closing new connections"
                );
            }
            drop(stream);
            continue;
        };
        let metrics = metrics.clone();
        let health = health.clone();
        tokio::spawn(async move {
            let connection = serve_connection(stream, metrics, health);
            if tokio::time::timeout(request_timeout, connection)
                .await
                .is_err()
            {
                debug!("telemetry server: connection closed at its deadline");
            }
            drop(slot);
        });
    }
}

async fn serve_connection(stream: TcpStream, metrics: Metrics, health: Arc<Health>) {
    let service = service_fn(move |request| {
        let response = respond(&request, &metrics, &health);
        async move { Ok::<_, Infallible>(response) }
    });
    let result = http1::Builder::new()
        // One request per connection keeps the cap and the deadline simple: an idle
        // keep-alive connection would hold a slot between scrapes.
        .keep_alive(false)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(e) = result {
        debug!(error = %e, "telemetry server: connection ended with an error");
    }
}

/// The response for one request. hyper leaves the body out of responses to `HEAD` and
/// keeps the `Content-Length` a `GET` would get.
fn respond<B>(request: &Request<B>, metrics: &Metrics, health: &Health) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match request.uri().path() {
        "/metrics" => {
            let mut response = text(StatusCode::OK, metrics.render());
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            let (ready, why) = health.ready();
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            text(status, format!("{why}\n"))
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

/// Lets a repeated warning through at most once per [`WARN_EVERY`], counting the rest.
#[derive(Default)]
struct Throttled {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttled {
    /// `Some(suppressed since the last one)` when this occurrence should be logged.
    fn due(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < WARN_EVERY)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests;

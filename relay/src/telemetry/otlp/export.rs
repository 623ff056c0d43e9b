//! Sends batch spans to the collector: gathered for up to a second (or 512 spans), one
//! POST to `<endpoint>/v1/traces` each. A failed request is logged (rate limited) and its
//! spans dropped and counted: telemetry never holds events back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use outbox_connectors::policy::{RateLimiter, LOG_WINDOW};
use prometheus::IntCounter;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tracing::warn;

use super::{encode, BatchSpan, SpanSink, EXPORT_BATCH, EXPORT_INTERVAL, QUEUE};
use crate::config::OtlpConfig;

/// The running exporter.
pub struct Exporter {
    task: JoinHandle<()>,
    stop: Arc<Notify>,
}

impl Exporter {
    /// Exports what is queued and ends, waiting at most `timeout` (at shutdown, after the
    /// pipeline has drained: its last batches' spans are queued by then).
    pub async fn finish(self, timeout: Duration) {
        self.stop.notify_one();
        let _ = tokio::time::timeout(timeout, self.task).await;
    }
}

/// Starts the exporter; spans go to the returned sink. `exported` counts spans the
/// collector accepted, `dropped` those lost (queue full, or the request failed).
pub fn start(
    config: OtlpConfig,
    exported: IntCounter,
    dropped: IntCounter,
) -> (SpanSink, Exporter) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let stop = Arc::new(Notify::new());
    let task = tokio::spawn(run(config, rx, stop.clone(), exported, dropped.clone()));
    (SpanSink { tx, dropped }, Exporter { task, stop })
}

async fn run(
    config: OtlpConfig,
    mut rx: mpsc::Receiver<BatchSpan>,
    stop: Arc<Notify>,
    exported: IntCounter,
    dropped: IntCounter,
) {
    let mut limiter = RateLimiter::new(LOG_WINDOW);
    let mut spans = Vec::new();
    let mut stopping = false;
    loop {
        if stopping {
            while spans.len() < EXPORT_BATCH {
                match rx.try_recv() {
                    Ok(span) => spans.push(span),
                    Err(_) => break,
                }
            }
            if spans.is_empty() {
                return;
            }
        } else {
            tokio::select! {
                span = rx.recv() => match span {
                    Some(span) => spans.push(span),
                    None => return,
                },
                _ = stop.notified() => {
                    stopping = true;
                    continue;
                }
            }
            let deadline = tokio::time::Instant::now() + EXPORT_INTERVAL;
            while spans.len() < EXPORT_BATCH {
                tokio::select! {
                    span = tokio::time::timeout_at(deadline, rx.recv()) => match span {
                        Ok(Some(span)) => spans.push(span),
                        Ok(None) | Err(_) => break,
                    },
                    _ = stop.notified() => {
                        stopping = true;
                        break;
                    }
                }
            }
        }
        let n = spans.len() as u64;
        let body = encode(&config.service_name, &spans);
        spans.clear();
        match post(&config, body).await {
            Ok(()) => exported.inc_by(n),
            Err(e) => {
                dropped.inc_by(n);
                if let Some(more) = limiter.admit_suffix("otlp", Instant::now()) {
                    warn!(endpoint = %config.endpoint, error = %e, spans = n,
                        "could not export batch spans; they are dropped{more}");
                }
            }
        }
    }
}

/// One POST of an OTLP/JSON request; `Err` names what went wrong.
async fn post(config: &OtlpConfig, body: Vec<u8>) -> Result<(), String> {
    let target = config.target().map_err(|e| e.to_string())?;
    let exchange = async {
        let stream = TcpStream::connect(&target.authority)
            .await
            .map_err(|e| format!("connect {}: {e}", target.authority))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        let connection = tokio::spawn(connection);
        let mut request = hyper::Request::post(&target.path)
            .header(hyper::header::HOST, &target.authority)
            .header(hyper::header::CONTENT_TYPE, "application/json");
        for (k, v) in &config.headers {
            request = request.header(k.as_str(), v.expose());
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let text = response
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        connection.abort();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!(
                "HTTP {status}: {}",
                text.chars().take(200).collect::<String>()
            ))
        }
    };
    tokio::time::timeout(config.timeout, exchange)
        .await
        .map_err(|_| format!("no answer within {:?}", config.timeout))?
}

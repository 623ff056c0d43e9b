//! OpenTelemetry: one span per published batch, exported with OTLP/HTTP (JSON) to a
//! collector (`telemetry.otlp`).
//!
//! The span covers the batch from its hand-over to the connector until the broker
//! acknowledged it, and links to each event's `traceparent` (the outbox row's
//! tracing-span-context column), so the producer's trace shows the relay hop: the
//! OpenTelemetry messaging conventions for a batch "send" (one span, a link per message).
//!
//! Why not the OpenTelemetry SDK: it would add the largest dependency tree of the relay
//! for one span per batch. The encoder here is the OTLP/JSON mapping (hex ids, int64 as
//! strings, enums as numbers), and the tests send its output to a real receiver (Jaeger's
//! OTLP endpoint) and read the trace back. TLS and authentication to a remote backend are
//! the collector's job: the relay talks plain HTTP to a collector next to it.

mod encode;
mod export;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use outbox_connectors::EventOutcome;
use prometheus::IntCounter;
use tokio::sync::mpsc;

pub use encode::encode;
pub use export::{start, Exporter};

/// A W3C trace context: the ids a link points to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanContext {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits.
    pub span_id: String,
    pub trace_state: Option<String>,
}

impl SpanContext {
    /// `00-<trace id>-<span id>-<flags>`; `None` for anything else, or the all-zero ids
    /// the specification calls invalid.
    pub fn from_traceparent(value: &str, trace_state: Option<&str>) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        if version != "00" || !hex(trace, 32) || !hex(span, 16) || !hex(flags, 2) {
            return None;
        }
        if trace.bytes().all(|b| b == b'0') || span.bytes().all(|b| b == b'0') {
            return None;
        }
        Some(SpanContext {
            trace_id: trace.to_ascii_lowercase(),
            span_id: span.to_ascii_lowercase(),
            trace_state: trace_state.map(str::to_string),
        })
    }
}

/// A link from the batch span to one event's producer span.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub context: SpanContext,
    pub event_id: String,
}

/// One finished batch span.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchSpan {
    pub trace_id: String,
    pub span_id: String,
    /// `messaging.system`: kafka, aws_sns, aws_sqs.
    pub system: &'static str,
    /// The destination when the batch has one (always with `on_open: park`).
    pub destination: Option<String>,
    pub events: usize,
    pub failed: usize,
    pub start_unix_nanos: u128,
    pub end_unix_nanos: u128,
    pub links: Vec<Link>,
    /// Traced events beyond [`MAX_LINKS`], not linked.
    pub dropped_links: usize,
}

/// Links per span, as the SDKs' default limit: a batch of thousands of traced events
/// keeps its first 128 links (the span says how many were left out).
pub const MAX_LINKS: usize = 128;

/// Hands finished batch spans to the exporter; cheap to clone. Never waits: with the
/// exporter's queue full a span is dropped and counted.
#[derive(Clone)]
pub struct SpanSink {
    tx: mpsc::Sender<BatchSpan>,
    dropped: IntCounter,
}

impl SpanSink {
    /// Records the span of a batch the broker answered: `started` is when it was handed
    /// to the connector.
    pub fn batch(&self, sink_kind: &str, started: std::time::Instant, outcomes: &[EventOutcome]) {
        if outcomes.is_empty() {
            return;
        }
        let now = SystemTime::now();
        let end = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let start = end.saturating_sub(started.elapsed());
        let first = &outcomes[0].event.destination;
        let single = outcomes.iter().all(|o| o.event.destination == *first);
        let mut links = Vec::new();
        let mut dropped_links = 0;
        for o in outcomes {
            let header = |name: &str| {
                o.event
                    .headers
                    .iter()
                    .find(|(k, _)| k == name)
                    .and_then(|(_, v)| std::str::from_utf8(v).ok())
            };
            if let Some(context) = header("traceparent")
                .and_then(|tp| SpanContext::from_traceparent(tp, header("tracestate")))
            {
                if links.len() == MAX_LINKS {
                    dropped_links += 1;
                    continue;
                }
                links.push(Link {
                    context,
                    event_id: o.event.id.to_string(),
                });
            }
        }
        let span = BatchSpan {
            trace_id: random_hex(16),
            span_id: random_hex(8),
            system: match sink_kind {
                "kafka" => "kafka",
                "sns" => "aws_sns",
                "sqs" => "aws_sqs",
                _ => "outbox_relay_null",
            },
            destination: single.then(|| first.to_string()),
            events: outcomes.len(),
            failed: outcomes.iter().filter(|o| o.result.is_err()).count(),
            start_unix_nanos: start.as_nanos(),
            end_unix_nanos: end.as_nanos(),
            links,
            dropped_links,
        };
        if self.tx.try_send(span).is_err() {
            self.dropped.inc();
        }
    }
}

fn random_hex(bytes: usize) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes * 2);
    loop {
        out.clear();
        for _ in 0..bytes {
            let _ = write!(out, "{:02x}", rand::random::<u8>());
        }
        // All-zero ids are invalid.
        if out.bytes().any(|b| b != b'0') {
            return out;
        }
    }
}

/// How long the exporter gathers spans before a request, at most.
pub const EXPORT_INTERVAL: Duration = Duration::from_secs(1);
/// Spans per request, at most.
pub const EXPORT_BATCH: usize = 512;
/// Spans waiting for export, at most; more are dropped.
pub const QUEUE: usize = 4096;

#[cfg(test)]
mod tests;

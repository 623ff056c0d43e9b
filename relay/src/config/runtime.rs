//! `pipeline` and `telemetry`.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{err, ConfigError};

/// `pipeline`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Bytes of events accepted but not yet acknowledged by the broker. When full, the
    /// relay stops reading the replication stream (PostgreSQL keeps the WAL) instead of
    /// growing; this is what bounds memory whatever the transaction size.
    pub inflight_bytes: usize,
    /// Most events handed to the sink in one batch.
    pub max_batch_events: usize,
    /// Most of `inflight_bytes` one destination may hold (0 < share ≤ 1); beyond it, its
    /// events are parked and redriven once it has caught up, so a slow destination cannot
    /// take the budget from the others. 1 = off. Needs `circuit_breaker.on_open: park`.
    pub destination_share: f64,
    /// How long a graceful shutdown waits for in-flight events.
    #[serde(
        rename = "shutdown_timeout_ms",
        with = "outbox_connectors::duration_ms"
    )]
    pub shutdown_timeout: Duration,
    /// First delay before reconnecting after a retryable failure; doubles up to the max.
    #[serde(rename = "restart_backoff_ms", with = "outbox_connectors::duration_ms")]
    pub restart_backoff: Duration,
    #[serde(
        rename = "restart_backoff_max_ms",
        with = "outbox_connectors::duration_ms"
    )]
    pub restart_backoff_max: Duration,
    /// The same event failing this many sessions in a row (the sink and the dead-letter
    /// destination both refusing it, a connector that breaks on it) stops the relay with
    /// an error naming the event, instead of restarting forever.
    pub max_repeated_failures: u32,
    /// How long an authentication failure (a password rotated on the server before the
    /// relay's secret) is retried before the relay stops; 0 = stop at once.
    #[serde(
        rename = "auth_failure_retry_ms",
        with = "outbox_connectors::duration_ms"
    )]
    pub auth_failure_retry: Duration,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            inflight_bytes: 16 * 1024 * 1024,
            max_batch_events: 1000,
            destination_share: 1.0,
            shutdown_timeout: Duration::from_millis(30_000),
            restart_backoff: Duration::from_millis(500),
            restart_backoff_max: Duration::from_millis(30_000),
            max_repeated_failures: 5,
            auth_failure_retry: Duration::from_millis(60_000),
        }
    }
}

impl PipelineConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.inflight_bytes < 64 * 1024 {
            return Err(err(format!(
                "pipeline.inflight_bytes: must be at least 65536 (got {})",
                self.inflight_bytes
            )));
        }
        if !(self.destination_share > 0.0 && self.destination_share <= 1.0) {
            return Err(err(format!(
                "pipeline.destination_share: must be above 0 and at most 1 (got {})",
                self.destination_share
            )));
        }
        if self.max_batch_events == 0 {
            return Err(err("pipeline.max_batch_events: must be at least 1"));
        }
        if self.max_repeated_failures == 0 {
            return Err(err("pipeline.max_repeated_failures: must be at least 1"));
        }
        if self.restart_backoff.is_zero() || self.restart_backoff_max < self.restart_backoff {
            return Err(err(
                "pipeline.restart_backoff_ms: must be at least 1 and not above restart_backoff_max_ms",
            ));
        }
        Ok(())
    }
}

/// `telemetry.log_format`
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `telemetry`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Address of the HTTP server for `/metrics`, `/healthz` and `/readyz`; empty disables it.
    /// Loopback by default: the endpoints are unauthenticated, so listening on other
    /// interfaces (`0.0.0.0:10187` in a container, which the Helm chart sets) is a choice.
    /// The port is outside 9100–9999, the exporter range of Prometheus's port allocations
    /// (full): a relay often runs beside postgres_exporter (9187), its old default.
    pub listen: String,
    /// Most HTTP connections open at once; further ones are closed on accept. The server
    /// never uses more than a quarter of the process's file-descriptor limit either, so
    /// clients cannot take the descriptors the replication and broker connections need.
    pub max_connections: usize,
    /// Deadline for a whole HTTP connection (request head, response); a client that has not
    /// finished by then is disconnected. One request per connection.
    #[serde(rename = "request_timeout_ms", with = "outbox_connectors::duration_ms")]
    pub request_timeout: Duration,
    /// Destinations that get their own `destination` label value in the per-destination
    /// metrics; later ones are counted together as `_other` (the route template can make
    /// one destination per aggregate type, without bound). 0 = never label by destination.
    pub max_destination_labels: usize,
    /// OpenTelemetry: a span per published batch, exported with OTLP/HTTP.
    pub otlp: OtlpConfig,
    pub log_format: LogFormat,
    /// A tracing filter such as `info` or `outbox_relay=debug,info`; `RUST_LOG` wins when set.
    pub log_level: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            listen: "127.0.0.1:10187".into(),
            max_connections: 32,
            request_timeout: Duration::from_millis(5_000),
            max_destination_labels: 100,
            otlp: OtlpConfig::default(),
            log_format: LogFormat::Text,
            log_level: "info".into(),
        }
    }
}

impl TelemetryConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !self.listen.is_empty() {
            self.listen.parse::<SocketAddr>().map_err(|e| {
                err(format!(
                    "telemetry.listen: {:?} is not host:port: {e}",
                    self.listen
                ))
            })?;
        }
        if self.max_connections == 0 {
            return Err(err("telemetry.max_connections: must be at least 1"));
        }
        if self.otlp.enabled() {
            self.otlp.target()?;
            if self.otlp.timeout.is_zero() {
                return Err(err("telemetry.otlp.timeout_ms: must be at least 1"));
            }
        }
        if self.request_timeout.is_zero() {
            return Err(err("telemetry.request_timeout_ms: must be at least 1"));
        }
        Ok(())
    }

    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen.parse().ok()
    }
}

/// `telemetry.otlp`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpConfig {
    /// Base URL of an OTLP/HTTP receiver, normally a collector next to the relay, e.g.
    /// `http://127.0.0.1:4318`; spans are sent to `<endpoint>/v1/traces` as JSON. Plain
    /// HTTP only: TLS to a remote backend is the collector's job. Empty: no spans.
    pub endpoint: String,
    /// The resource's `service.name`.
    pub service_name: String,
    /// Deadline of one export request.
    #[serde(rename = "timeout_ms", with = "outbox_connectors::duration_ms")]
    pub timeout: Duration,
    /// HTTP headers sent with every request (e.g. a collector's token); printed as `***`.
    pub headers: std::collections::BTreeMap<String, super::Secret>,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        OtlpConfig {
            endpoint: String::new(),
            service_name: "outbox-relay".into(),
            timeout: Duration::from_millis(5_000),
            headers: Default::default(),
        }
    }
}

/// Where an export goes: `host:port` and the request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpTarget {
    pub authority: String,
    pub path: String,
}

impl OtlpConfig {
    pub fn enabled(&self) -> bool {
        !self.endpoint.is_empty()
    }

    /// The endpoint as an address and the `/v1/traces` path under it.
    pub fn target(&self) -> Result<OtlpTarget, ConfigError> {
        let e = &self.endpoint;
        if e.starts_with("https://") {
            return Err(err(format!(
                "telemetry.otlp.endpoint: {e:?}: https is not supported; export to a collector next to the relay over http:// and let the collector use TLS"
            )));
        }
        let rest = e.strip_prefix("http://").ok_or_else(|| {
            err(format!(
                "telemetry.otlp.endpoint: {e:?} is not an http:// URL (e.g. http://127.0.0.1:4318)"
            ))
        })?;
        let (authority, base) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(err(format!("telemetry.otlp.endpoint: {e:?} names no host")));
        }
        let authority = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            && !authority.ends_with(']')
        {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Ok(OtlpTarget {
            authority,
            path: format!("{base}/v1/traces"),
        })
    }
}

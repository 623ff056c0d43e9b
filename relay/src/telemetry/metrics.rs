//! Prometheus metrics. Names follow `outbox_relay_<name>_<unit>[_total]`, except the
//! standard `process_*` series, which keep their unprefixed names so that generic
//! dashboards and alerts (process CPU, memory, open files) find the relay like any other
//! process.

use std::sync::Arc;

use super::build;
use super::connector::{ConnectorCollector, ConnectorStats};
use super::destination_labels::DestinationLabels;
use prometheus::{
    exponential_buckets, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

/// Every metric the relay exports. Cloning shares the underlying series.
#[derive(Clone)]
pub struct Metrics {
    /// The relay's own series, under `outbox_relay_`.
    pub registry: Registry,
    /// The standard `process_*` series, unprefixed.
    pub process: Registry,
    /// The `destination` label's values, capped (`telemetry.max_destination_labels`).
    pub destinations: Arc<DestinationLabels>,
    /// Events handed to the sink and finished: `result` is `ok`, `dead_lettered` or `failed`.
    pub events_published: IntCounterVec,
    /// Seconds from accepting a batch to the broker acknowledging all of it.
    pub publish_duration: HistogramVec,
    /// Seconds from the source transaction's commit to the broker acknowledging the event.
    pub end_to_end_latency: HistogramVec,
    /// Server WAL end minus confirmed flush LSN.
    pub replication_lag_bytes: IntGauge,
    pub confirmed_flush_lsn: IntGauge,
    pub received_lsn: IntGauge,
    pub inflight_events: IntGauge,
    pub inflight_bytes: IntGauge,
    pub oldest_inflight_age: Gauge,
    /// Errors by kind (`replication`, `sink_<kind>`, `config`...).
    pub errors: IntCounterVec,
    /// Rows or messages that could not become an event, by reason.
    pub invalid_events: IntCounterVec,
    pub dead_letter_events: IntCounterVec,
    pub transactions: IntCounter,
    /// Transactions the server resent that the relay had already delivered (at or below
    /// its recorded progress) and skipped.
    pub replayed_transactions_skipped: IntCounter,
    /// Each destination's circuit: 0 closed, 1 half-open, 2 open.
    pub circuit_state: IntGaugeVec,
    /// Circuit transitions by destination and the state entered.
    pub circuit_transitions: IntCounterVec,
    /// Events in the parking table, by original destination.
    pub parked_events: IntGaugeVec,
    /// Aggregates with parked events (their later events are parked too).
    pub parked_aggregates: IntGauge,
    /// Seconds since the oldest parked event was parked (0 when none).
    pub parked_oldest_age: Gauge,
    pub replication_bytes: IntCounter,
    /// Changes on published tables that are not outbox inserts (updates, deletes, truncates).
    pub ignored_changes: IntCounterVec,
    pub replicating: IntGauge,
    pub sink_up: IntGauge,
    pub restarts: IntCounter,
    /// Events a connector sent again after a retryable failure (SNS/SQS; Kafka retries
    /// inside librdkafka and reports 0).
    pub sink_retries: IntCounterVec,
    /// Batch requests the connector sent (SNS/SQS; 0 for Kafka, which batches inside
    /// librdkafka).
    pub sink_requests: IntCounter,
    /// Events delivered with their body offloaded to S3 (SNS/SQS `large_payloads`), and
    /// those bodies' bytes, by destination.
    pub offloaded_events: IntCounterVec,
    pub offloaded_bytes: IntCounterVec,
    /// The connector whose own counters (retries, requests, circuits) are read at scrape
    /// time.
    pub connector: ConnectorStats,
    /// Events per batch handed to the sink.
    pub batch_events: HistogramVec,

    // Source safety (README "Slot lifecycle" and "WAL safety").
    /// Replication slots the relay created (first start only; a lost slot is not
    /// re-created).
    pub slot_created: IntCounter,
    /// Outbox rows deleted after their events were delivered (`outbox.cleanup`).
    pub outbox_rows_deleted: IntCounter,
    /// Outbox rows a snapshot read and handed to the pipeline (README "Snapshots").
    pub snapshot_rows: IntCounter,
    /// Snapshots completed (every row delivered).
    pub snapshots_completed: IntCounter,
    /// `pg_replication_slots.safe_wal_size`: WAL that can still be written before the
    /// slot is invalidated; -1 when unlimited (`max_slot_wal_keep_size = -1`) or unknown.
    pub slot_safe_wal_size: IntGauge,
    /// `max_slot_wal_keep_size` in bytes; -1 when unlimited.
    pub slot_max_wal_keep_size: IntGauge,
    /// 1 for the slot's current `wal_status` (reserved, extended, unreserved, lost, or
    /// missing), 0 for the others.
    pub slot_wal_status: IntGaugeVec,
    /// Server time at which the newest heartbeat transaction the sink has acknowledged
    /// was written: everything committed before it is delivered.
    pub last_acked_commit_timestamp: Gauge,
    /// Seconds since that heartbeat: how far delivery trails the source.
    pub source_lag_seconds: Gauge,
    /// Always 1; labelled with the slot, publication, database and sink kind, to join
    /// with postgres_exporter's slot series.
    pub info: IntGaugeVec,
    /// Batch spans the OTLP receiver accepted, and those dropped (`telemetry.otlp`).
    pub otlp_spans_exported: IntCounter,
    pub otlp_spans_dropped: IntCounter,
    /// Exactly-once: replayed events the broker already held, skipped.
    pub committed_events_skipped: IntCounter,
    /// 1 while this process leads its slot (always, without `ha.enabled`), 0 as a standby.
    pub leader: IntGauge,
    /// Times this process became the leader.
    pub leader_transitions: IntCounter,
    /// Where batch spans go, with `telemetry.otlp.endpoint` set.
    pub spans: Option<super::otlp::SpanSink>,
}

impl Metrics {
    /// With the default cap of 100 `destination` label values.
    pub fn new() -> Self {
        Self::with_destination_labels(100)
    }

    pub fn with_destination_labels(max_destination_labels: usize) -> Self {
        Self::build(max_destination_labels, false)
    }

    /// For `source.shards` > 1: the per-slot gauges are left out of the registry, to be
    /// registered once per shard with a `slot` label by [`Metrics::for_slots`] (the
    /// registry keeps a name's label set for good, even after unregistering it).
    pub fn sharded(max_destination_labels: usize) -> Self {
        Self::build(max_destination_labels, true)
    }

    fn build(max_destination_labels: usize, sharded: bool) -> Self {
        let destinations = Arc::new(DestinationLabels::new(max_destination_labels));
        let registry = Registry::new_custom(Some("outbox_relay".into()), None)
            .expect("static namespace is valid");
        let m = Metrics {
            events_published: IntCounterVec::new(
                Opts::new("events_published_total", "Events finished by the sink, by sink, destination and result (ok, dead_lettered, failed)."),
                &["sink", "destination", "result"],
            )
            .unwrap(),
            publish_duration: HistogramVec::new(
                HistogramOpts::new("publish_duration_seconds", "Seconds from handing a batch to the sink until the broker acknowledged all of it.")
                    .buckets(exponential_buckets(0.0005, 2.0, 16).unwrap()),
                &["sink"],
            )
            .unwrap(),
            end_to_end_latency: HistogramVec::new(
                HistogramOpts::new("end_to_end_latency_seconds", "Seconds from the source transaction's commit to the broker's acknowledgement of the event.")
                    .buckets(exponential_buckets(0.001, 2.0, 18).unwrap()),
                &["sink", "destination"],
            )
            .unwrap(),
            replication_lag_bytes: IntGauge::new("replication_lag_bytes", "Bytes of WAL between the server's current end and the confirmed flush LSN.").unwrap(),
            confirmed_flush_lsn: IntGauge::new("confirmed_flush_lsn", "The flush LSN last reported to PostgreSQL, as a number.").unwrap(),
            received_lsn: IntGauge::new("received_lsn", "The newest WAL position received from PostgreSQL, as a number.").unwrap(),
            inflight_events: IntGauge::new("inflight_events", "Events handed to the sink and not yet acknowledged.").unwrap(),
            inflight_bytes: IntGauge::new("inflight_bytes", "Budget bytes held by events not yet acknowledged.").unwrap(),
            oldest_inflight_age: Gauge::new("oldest_inflight_age_seconds", "Seconds the oldest event handed to the sink has waited for the broker's acknowledgement; 0 when none is waiting. Unlike replication lag, it grows while the relay is stuck even if no new WAL is written.").unwrap(),
            errors: IntCounterVec::new(Opts::new("errors_total", "Errors by kind."), &["kind"]).unwrap(),
            invalid_events: IntCounterVec::new(
                Opts::new("invalid_events_total", "Outbox rows or messages that could not become an event, by reason."),
                &["reason"],
            )
            .unwrap(),
            dead_letter_events: IntCounterVec::new(
                Opts::new("dead_letter_events_total", "Events published to the dead-letter destination, by reason."),
                &["reason"],
            )
            .unwrap(),
            transactions: IntCounter::new("transactions_total", "Committed transactions received from the replication stream.").unwrap(),
            circuit_state: IntGaugeVec::new(Opts::new("circuit_state", "Circuit breaker state per destination: 0 closed, 1 half-open, 2 open."), &["destination"]).unwrap(),
            circuit_transitions: IntCounterVec::new(Opts::new("circuit_transitions_total", "Circuit breaker transitions by destination and the state entered (closed, half_open, open)."), &["destination", "state"]).unwrap(),
            parked_events: IntGaugeVec::new(Opts::new("parked_events", "Events in the parking table, by original destination."), &["destination"]).unwrap(),
            parked_aggregates: IntGauge::new("parked_aggregates", "Aggregates with parked events; their later events are parked behind them until redrive.").unwrap(),
            parked_oldest_age: Gauge::new("parked_oldest_age_seconds", "Seconds since the oldest parked event was parked (0 when none).").unwrap(),
            replayed_transactions_skipped: IntCounter::new("replayed_transactions_skipped_total", "Transactions the server resent that were already delivered (at or below the recorded progress), skipped.").unwrap(),
            replication_bytes: IntCounter::new("replication_received_bytes_total", "Bytes of pgoutput data received.").unwrap(),
            ignored_changes: IntCounterVec::new(
                Opts::new("ignored_changes_total", "Changes on published tables that are not outbox inserts, by operation."),
                &["operation"],
            )
            .unwrap(),
            replicating: IntGauge::new("replicating", "1 while the replication stream is open.").unwrap(),
            sink_up: IntGauge::new("sink_up", "1 when the last sink probe succeeded.").unwrap(),
            restarts: IntCounter::new("restarts_total", "Replication sessions restarted after a retryable failure.").unwrap(),
            sink_requests: IntCounter::new("sink_requests_total", "Batch requests the sink connector sent (SNS/SQS).").unwrap(),
            batch_events: HistogramVec::new(
                HistogramOpts::new("publish_batch_events", "Events per batch handed to the sink.")
                    .buckets(vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0]),
                &["sink"],
            )
            .unwrap(),
            sink_retries: IntCounterVec::new(
                Opts::new("sink_retries_total", "Events the sink connector sent again after a retryable failure, by destination."),
                &["destination"],
            )
            .unwrap(),
            offloaded_events: IntCounterVec::new(
                Opts::new("offloaded_events_total", "Events delivered as a pointer with their body stored in S3 (SNS/SQS large_payloads), by destination."),
                &["destination"],
            )
            .unwrap(),
            offloaded_bytes: IntCounterVec::new(
                Opts::new("offloaded_bytes_total", "Bytes of bodies stored in S3 for delivered events (SNS/SQS large_payloads), by destination."),
                &["destination"],
            )
            .unwrap(),
            connector: ConnectorStats::default(),
            slot_created: IntCounter::new("slot_created_total", "Replication slots the relay created. A lost slot is never re-created silently.").unwrap(),
            outbox_rows_deleted: IntCounter::new("outbox_rows_deleted_total", "Outbox rows deleted after their events were delivered (outbox.cleanup: delete_published).").unwrap(),
            snapshot_rows: IntCounter::new("snapshot_rows_total", "Outbox rows read by snapshots and handed to the pipeline.").unwrap(),
            snapshots_completed: IntCounter::new("snapshots_completed_total", "Snapshots whose every row was delivered.").unwrap(),
            slot_safe_wal_size: IntGauge::new("slot_safe_wal_size_bytes", "Bytes of WAL that can still be written before PostgreSQL invalidates the slot (pg_replication_slots.safe_wal_size); -1 when max_slot_wal_keep_size is unlimited.").unwrap(),
            slot_max_wal_keep_size: IntGauge::new("slot_max_wal_keep_size_bytes", "The server's max_slot_wal_keep_size in bytes; -1 when unlimited.").unwrap(),
            slot_wal_status: IntGaugeVec::new(
                Opts::new("slot_wal_status", "1 for the slot's current wal_status (reserved, extended, unreserved, lost, missing), 0 for the others."),
                &["wal_status"],
            )
            .unwrap(),
            last_acked_commit_timestamp: Gauge::new("last_acked_commit_timestamp_seconds", "Unix time of the newest heartbeat transaction acknowledged by the sink: everything committed before it is delivered. Alert on time() - this.").unwrap(),
            source_lag_seconds: Gauge::new("source_lag_seconds", "Seconds since the newest acknowledged heartbeat transaction was written: how far delivery trails the source, in time.").unwrap(),
            info: IntGaugeVec::new(
                Opts::new("info", "Always 1; labelled with the slot, publication, database and sink kind."),
                &["slot", "publication", "database", "sink"],
            )
            .unwrap(),
            otlp_spans_exported: IntCounter::new("otlp_spans_exported_total", "Batch spans the OTLP receiver accepted (telemetry.otlp).").unwrap(),
            otlp_spans_dropped: IntCounter::new("otlp_spans_dropped_total", "Batch spans dropped: the export queue was full or the receiver failed (telemetry.otlp).").unwrap(),
            committed_events_skipped: IntCounter::new("committed_events_skipped_total", "Replayed events the broker already held in a committed transaction (sink.kafka.exactly_once), skipped.").unwrap(),
            leader: IntGauge::new("leader", "1 while this replica leads its slot (always 1 without ha.enabled), 0 as a standby.").unwrap(),
            leader_transitions: IntCounter::new("leader_transitions_total", "Times this replica became the leader of its slot.").unwrap(),
            spans: None,
            registry,
            process: Registry::new(),
            destinations,
        };
        let r = &m.registry;
        r.register(Box::new(ConnectorCollector {
            stats: m.connector.clone(),
            destinations: m.destinations.clone(),
            retries: m.sink_retries.clone(),
            requests: m.sink_requests.clone(),
            circuit_state: m.circuit_state.clone(),
            circuit_transitions: m.circuit_transitions.clone(),
            offloaded_events: m.offloaded_events.clone(),
            offloaded_bytes: m.offloaded_bytes.clone(),
        }))
        .unwrap();
        if !sharded {
            // One slot: its gauges unlabelled (with shards, per slot: shard_metrics.rs).
            r.register(Box::new(m.replication_lag_bytes.clone()))
                .unwrap();
            r.register(Box::new(m.confirmed_flush_lsn.clone())).unwrap();
            r.register(Box::new(m.received_lsn.clone())).unwrap();
            r.register(Box::new(m.parked_events.clone())).unwrap();
            r.register(Box::new(m.parked_aggregates.clone())).unwrap();
            r.register(Box::new(m.parked_oldest_age.clone())).unwrap();
            r.register(Box::new(m.slot_safe_wal_size.clone())).unwrap();
            r.register(Box::new(m.slot_wal_status.clone())).unwrap();
            r.register(Box::new(m.last_acked_commit_timestamp.clone()))
                .unwrap();
            r.register(Box::new(m.source_lag_seconds.clone())).unwrap();
            r.register(Box::new(m.oldest_inflight_age.clone())).unwrap();
        }
        r.register(Box::new(m.events_published.clone())).unwrap();
        r.register(Box::new(m.publish_duration.clone())).unwrap();
        r.register(Box::new(m.end_to_end_latency.clone())).unwrap();
        r.register(Box::new(m.inflight_events.clone())).unwrap();
        r.register(Box::new(m.inflight_bytes.clone())).unwrap();
        r.register(Box::new(m.errors.clone())).unwrap();
        r.register(Box::new(m.invalid_events.clone())).unwrap();
        r.register(Box::new(m.dead_letter_events.clone())).unwrap();
        r.register(Box::new(m.transactions.clone())).unwrap();
        r.register(Box::new(m.replayed_transactions_skipped.clone()))
            .unwrap();
        r.register(Box::new(m.replication_bytes.clone())).unwrap();
        r.register(Box::new(m.ignored_changes.clone())).unwrap();
        r.register(Box::new(m.replicating.clone())).unwrap();
        r.register(Box::new(m.sink_up.clone())).unwrap();
        r.register(Box::new(m.restarts.clone())).unwrap();
        r.register(Box::new(m.batch_events.clone())).unwrap();
        r.register(Box::new(m.slot_created.clone())).unwrap();
        r.register(Box::new(m.outbox_rows_deleted.clone())).unwrap();
        r.register(Box::new(m.snapshot_rows.clone())).unwrap();
        r.register(Box::new(m.snapshots_completed.clone())).unwrap();
        r.register(Box::new(m.slot_max_wal_keep_size.clone()))
            .unwrap();
        r.register(Box::new(m.info.clone())).unwrap();
        r.register(Box::new(m.otlp_spans_exported.clone())).unwrap();
        r.register(Box::new(m.leader.clone())).unwrap();
        r.register(Box::new(m.committed_events_skipped.clone()))
            .unwrap();
        r.register(Box::new(m.leader_transitions.clone())).unwrap();
        r.register(Box::new(m.otlp_spans_dropped.clone())).unwrap();
        #[cfg(target_os = "linux")]
        m.process
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .unwrap();
        let build = IntGauge::with_opts(
            Opts::new(
                "build_info",
                "Always 1; labelled with the relay's version and source revision.",
            )
            .const_label("version", build::VERSION)
            .const_label("revision", build::REVISION),
        )
        .unwrap();
        build.set(1);
        r.register(Box::new(build)).unwrap();
        // A labelled counter appears at its first increment, and `rate()`/`increase()`
        // cannot see that first one (there is no earlier sample): the first invalid row
        // would go unnoticed by OutboxRelayInvalidEvents-style alerts. Every reason
        // exists at 0 from the start.
        for reason in crate::outbox::InvalidReason::ALL {
            m.invalid_events.with_label_values(&[reason.label()]);
        }
        m
    }

    /// Every series: the relay's and the process's.
    pub fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        let mut families = self.registry.gather();
        families.extend(self.process.gather());
        families
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let encoder = prometheus::TextEncoder::new();
        encoder
            .encode_to_string(&self.gather())
            .unwrap_or_else(|e| format!("# encoding failed: {e}\n"))
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::Metrics;

    #[test]
    fn every_invalid_reason_is_exported_at_zero_before_any_event() {
        let text = Metrics::new().render();
        for reason in crate::outbox::InvalidReason::ALL {
            let line = format!(
                "outbox_relay_invalid_events_total{{reason=\"{}\"}} 0",
                reason.label()
            );
            assert!(text.contains(&line), "missing {line}");
        }
    }
}

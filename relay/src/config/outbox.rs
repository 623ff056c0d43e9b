//! `outbox`: which rows and messages are events, and where they are routed.

use serde::{Deserialize, Serialize};

use super::{err, ConfigError};

/// `outbox`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxConfig {
    /// The outbox tables. Default: one table, `public.outbox`, with Debezium's column names.
    #[serde(default = "default_tables")]
    pub tables: Vec<TableConfig>,
    /// Table-less events written with `pg_logical_emit_message(true, '<prefix>', '<json>')`.
    #[serde(default)]
    pub messages: Option<MessagesConfig>,
    /// Where each event goes.
    #[serde(default)]
    pub route: RouteConfig,
    /// What happens to a row that cannot become an event (NULL aggregate id, payload that is
    /// not JSON where JSON is required, no route) or that the broker permanently rejects.
    #[serde(default)]
    pub on_invalid: InvalidEventPolicy,
    /// Destination of dead-lettered events (with `on_invalid: dead_letter`).
    #[serde(default = "default_dead_letter")]
    pub dead_letter_destination: String,
    /// Add the header `outbox-relay-commit-lsn` (the transaction's commit LSN) to every
    /// event, so consumers can de-duplicate replays after a crash. Off by default to keep
    /// messages identical to Debezium's.
    #[serde(default)]
    pub commit_lsn_header: bool,
    /// Largest row or logical message accepted as an event, in bytes of its column
    /// values or message content; a larger one is an invalid event (`too_large`) whose
    /// dead-letter record names its size but leaves the big values out.
    #[serde(default = "default_max_event_bytes")]
    pub max_event_bytes: usize,
    /// `none` keeps every row; `delete_published` deletes outbox rows once their events
    /// are durable at the broker (or parked durably), in batches, so the table does not
    /// grow without bound (README "Outbox cleanup").
    #[serde(default)]
    pub cleanup: CleanupPolicy,
    /// Rows deleted by one statement of the cleanup, at most.
    #[serde(default = "default_cleanup_batch_rows")]
    pub cleanup_batch_rows: usize,
    /// Publish events as CloudEvents (binary or structured content mode). Absent = off:
    /// messages stay identical to Debezium's.
    #[serde(default)]
    pub cloudevents: Option<CloudEventsConfig>,
}

/// `outbox.cloudevents`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CloudEventsConfig {
    /// `binary`: the payload stays the message body and the attributes travel as `ce_*`
    /// headers (message attributes on SNS/SQS); `structured`: the body is the JSON
    /// CloudEvent (`application/cloudevents+json`).
    #[serde(default)]
    pub mode: CloudEventsMode,
    /// The `source` attribute, a URI-reference naming the producer (e.g.
    /// `/orders-service`); required.
    pub source: String,
    /// The `datacontenttype` attribute: the media type of the payload. Empty = omitted.
    #[serde(default = "default_data_content_type")]
    pub data_content_type: String,
}

fn default_data_content_type() -> String {
    "application/json".into()
}

/// `outbox.cloudevents.mode`
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CloudEventsMode {
    #[default]
    Binary,
    Structured,
}

/// `outbox.cleanup`
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CleanupPolicy {
    /// The relay never deletes outbox rows (the application does, or nobody).
    #[default]
    None,
    /// Delete each outbox row (by its `columns.id`, which must be unique) after its
    /// event is delivered.
    DeletePublished,
}

fn default_cleanup_batch_rows() -> usize {
    1000
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            tables: default_tables(),
            messages: None,
            route: RouteConfig::default(),
            on_invalid: InvalidEventPolicy::default(),
            dead_letter_destination: default_dead_letter(),
            commit_lsn_header: false,
            max_event_bytes: default_max_event_bytes(),
            cleanup: CleanupPolicy::default(),
            cleanup_batch_rows: default_cleanup_batch_rows(),
            cloudevents: None,
        }
    }
}

fn default_max_event_bytes() -> usize {
    8 * 1024 * 1024
}

fn default_tables() -> Vec<TableConfig> {
    vec![TableConfig {
        table: "public.outbox".into(),
        columns: ColumnNames::default(),
        header_columns: Vec::new(),
        partition_column: None,
        validate_json: false,
        snapshot_order_by: Vec::new(),
    }]
}

fn default_dead_letter() -> String {
    "outbox-relay.dead-letter".into()
}

/// `outbox.tables[]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// `schema.table` (schema defaults to `public`).
    pub table: String,
    #[serde(default)]
    pub columns: ColumnNames,
    /// Extra columns copied into headers / message attributes.
    #[serde(default)]
    pub header_columns: Vec<HeaderColumn>,
    /// Kafka only: an integer column whose value is the record's partition (Debezium's
    /// `column:partition` placement); NULL = the partitioner hashes the key. The value
    /// must be the same for every event of an aggregate, or their order is lost.
    #[serde(default)]
    pub partition_column: Option<String>,
    /// Reject (dead-letter) rows whose text payload is not valid JSON. json/jsonb
    /// payload columns are always valid; this matters for text and varchar columns.
    #[serde(default)]
    pub validate_json: bool,
    /// Columns a snapshot reads the table's rows in (`ORDER BY`, ascending), so each
    /// aggregate's events are published in this order: e.g. a `bigserial` sequence
    /// column, or the timestamp column followed by a tie-breaker. Empty: the table's
    /// `columns.timestamp` column, then `columns.id`.
    #[serde(default)]
    pub snapshot_order_by: Vec<String>,
}

impl TableConfig {
    /// `(schema, table)`
    pub fn qualified(&self) -> (&str, &str) {
        self.table
            .split_once('.')
            .unwrap_or(("public", &self.table))
    }

    /// The columns a snapshot orders the rows by.
    pub fn snapshot_order(&self) -> Vec<&str> {
        if self.snapshot_order_by.is_empty() {
            vec![&self.columns.timestamp, &self.columns.id]
        } else {
            self.snapshot_order_by.iter().map(String::as_str).collect()
        }
    }
}

/// Column names of an outbox table; defaults are Debezium's Outbox Event Router's.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ColumnNames {
    pub id: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub event_type: String,
    pub payload: String,
    /// Optional: used as the record timestamp when the table has it.
    pub timestamp: String,
    /// Optional: W3C trace context carried into a `traceparent` header when present.
    pub tracing_span_context: String,
}

impl Default for ColumnNames {
    fn default() -> Self {
        ColumnNames {
            id: "id".into(),
            aggregate_type: "aggregatetype".into(),
            aggregate_id: "aggregateid".into(),
            event_type: "type".into(),
            payload: "payload".into(),
            timestamp: "timestamp".into(),
            tracing_span_context: "tracingspancontext".into(),
        }
    }
}

/// `outbox.tables[].header_columns[]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HeaderColumn {
    pub column: String,
    /// Header name; defaults to the column name.
    #[serde(default)]
    pub header: Option<String>,
}

/// `outbox.messages`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MessagesConfig {
    /// Logical messages with exactly this prefix are events; their content is a JSON object
    /// with the fields `id`, `aggregatetype`, `aggregateid`, `type` and `payload`
    /// (any JSON, published as its exact text).
    pub prefix: String,
}

/// `outbox.route`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Destination template; `{aggregatetype}` is replaced by the event's aggregate type.
    /// Set to an empty string to route only through `overrides`.
    #[serde(default = "default_template")]
    pub template: String,
    /// Explicit destinations for some aggregate types (matched exactly, before the template).
    #[serde(default)]
    pub overrides: Vec<RouteOverride>,
    /// Debezium's `route.topic.regex`: a regular expression the whole aggregate type must
    /// match; the destination is then `replacement` with `$1` / `${name}` replaced by its
    /// groups. An aggregate type it does not match is its own destination (as Debezium's
    /// RegexRouter leaves the topic unchanged). Replaces `template`.
    #[serde(default)]
    pub regex: Option<String>,
    /// Debezium's `route.topic.replacement` (Java syntax: `$1`, `${name}`, `\$` for `$`);
    /// required with `regex`.
    #[serde(default)]
    pub replacement: Option<String>,
}

impl Default for RouteConfig {
    fn default() -> Self {
        RouteConfig {
            template: default_template(),
            overrides: Vec::new(),
            regex: None,
            replacement: None,
        }
    }
}

fn default_template() -> String {
    "outbox.event.{aggregatetype}".into()
}

/// `outbox.route.overrides[]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RouteOverride {
    pub aggregate_type: String,
    pub destination: String,
}

/// `outbox.on_invalid`
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum InvalidEventPolicy {
    /// Write the event, and every later event of its aggregate, to the parking table
    /// (`<state.schema>.parked`) in commit order until it is redriven or discarded
    /// (`outbox-relay parked …`); other aggregates go on, and the slot advances.
    #[default]
    Park,
    /// Publish the row, with the error in headers, to `dead_letter_destination`, count it,
    /// and go on (Debezium's behaviour: later events of the aggregate are published).
    DeadLetter,
    /// Stop the relay without acknowledging the row; it is read again at the next start.
    Halt,
}

impl OutboxConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_event_bytes < 1024 {
            return Err(err(format!(
                "outbox.max_event_bytes: must be at least 1024 (got {})",
                self.max_event_bytes
            )));
        }
        if self.tables.is_empty() && self.messages.is_none() {
            return Err(err(
                "outbox.tables: at least one table (or outbox.messages) is required",
            ));
        }
        for (i, t) in self.tables.iter().enumerate() {
            let (schema, table) = t.qualified();
            if schema.is_empty() || table.is_empty() || table.contains('.') {
                return Err(err(format!(
                    "outbox.tables[{i}].table: {:?} must be table or schema.table",
                    t.table
                )));
            }
            let c = &t.columns;
            for (key, name) in [
                ("id", &c.id),
                ("aggregate_type", &c.aggregate_type),
                ("aggregate_id", &c.aggregate_id),
                ("event_type", &c.event_type),
                ("payload", &c.payload),
            ] {
                if name.is_empty() {
                    return Err(err(format!(
                        "outbox.tables[{i}].columns.{key}: must not be empty"
                    )));
                }
            }
        }
        if let Some(m) = &self.messages {
            if m.prefix.is_empty() {
                return Err(err("outbox.messages.prefix: must not be empty"));
            }
        }
        crate::outbox::RouteRegex::from_config(&self.route).map_err(err)?;
        for (i, t) in self.tables.iter().enumerate() {
            if t.partition_column.as_deref() == Some("") {
                return Err(err(format!(
                    "outbox.tables[{i}].partition_column: must not be empty"
                )));
            }
        }
        if let Some(ce) = &self.cloudevents {
            crate::outbox::cloudevents::validate(ce).map_err(err)?;
            // The CloudEvents headers must not be shadowed by a column's header.
            for (i, t) in self.tables.iter().enumerate() {
                for (j, h) in t.header_columns.iter().enumerate() {
                    let name = h
                        .header
                        .as_deref()
                        .unwrap_or(&h.column)
                        .to_ascii_lowercase();
                    if name.starts_with("ce_") || name == "content-type" {
                        return Err(err(format!(
                            "outbox.tables[{i}].header_columns[{j}]: header {name:?} is reserved for CloudEvents attributes (outbox.cloudevents is on)"
                        )));
                    }
                }
            }
        }
        if self.route.template.is_empty()
            && self.route.overrides.is_empty()
            && self.route.regex.is_none()
        {
            return Err(err(
                "outbox.route: set a template or at least one override, or no event has a destination",
            ));
        }
        if self.cleanup_batch_rows == 0 || self.cleanup_batch_rows > 100_000 {
            return Err(err(format!(
                "outbox.cleanup_batch_rows: must be 1 to 100000 (got {})",
                self.cleanup_batch_rows
            )));
        }
        if self.dead_letter_destination.is_empty()
            && self.on_invalid == InvalidEventPolicy::DeadLetter
        {
            return Err(err(
                "outbox.dead_letter_destination: must not be empty with on_invalid: dead_letter",
            ));
        }
        Ok(())
    }
}

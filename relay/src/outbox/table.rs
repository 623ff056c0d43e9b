//! Resolving an outbox table's columns from a Relation message.

use outbox_connectors::Text;
use outbox_pgoutput::Relation;

use super::text::oid;
use crate::config::TableConfig;

/// How the payload column's text is turned into message bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadKind {
    /// json / jsonb: the text PostgreSQL sends, unchanged.
    Json,
    /// text / varchar: unchanged; validated as JSON when the table asks for it.
    Text { validate_json: bool },
    /// bytea: the raw bytes.
    Bytea,
}

/// Column positions of one outbox table, as of its latest Relation message.
#[derive(Debug, Clone)]
pub struct OutboxTable {
    /// `schema.table`, for errors and dead letters.
    pub name: String,
    pub id: usize,
    pub aggregate_type: usize,
    pub aggregate_id: usize,
    pub event_type: usize,
    pub payload: usize,
    pub payload_kind: PayloadKind,
    /// Position and type OID.
    pub timestamp: Option<(usize, u32)>,
    pub tracing_span_context: Option<usize>,
    /// Position and header name.
    pub headers: Vec<(usize, Text)>,
    /// Position and type OID of `partition_column`.
    pub partition: Option<(usize, u32)>,
    /// All column names, for dead-letter records.
    pub column_names: Vec<String>,
}

/// The table does not have the shape the configuration says. The relay stops rather than
/// skip events: every later row of the table would be wrong too.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("outbox table {table}: {problem}")]
pub struct SchemaError {
    pub table: String,
    pub problem: String,
}

const TEXTUAL: &[u32] = &[oid::TEXT, oid::VARCHAR, oid::BPCHAR];

impl OutboxTable {
    /// Checks `relation` against `config` and records the column positions.
    pub fn resolve(config: &TableConfig, relation: &Relation) -> Result<Self, SchemaError> {
        let name = format!("{}.{}", relation.namespace, relation.name);
        let fail = |problem: String| SchemaError {
            table: name.clone(),
            problem,
        };
        let find = |col: &str| relation.columns.iter().position(|c| c.name == col);
        let require = |key: &str, col: &str| {
            find(col).ok_or_else(|| {
                fail(format!(
                    "required column {col:?} (outbox.tables[].columns.{key}) is missing; the table has {:?}",
                    relation.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>()
                ))
            })
        };
        let c = &config.columns;
        let id = require("id", &c.id)?;
        let aggregate_type = require("aggregate_type", &c.aggregate_type)?;
        let aggregate_id = require("aggregate_id", &c.aggregate_id)?;
        let event_type = require("event_type", &c.event_type)?;
        let payload = require("payload", &c.payload)?;

        let payload_oid = relation.columns[payload].type_oid;
        let payload_kind = match payload_oid {
            oid::JSON | oid::JSONB => PayloadKind::Json,
            oid::BYTEA => PayloadKind::Bytea,
            t if TEXTUAL.contains(&t) => PayloadKind::Text {
                validate_json: config.validate_json,
            },
            other => {
                return Err(fail(format!(
                    "payload column {:?} has type oid {other}; supported are jsonb, json, text, varchar and bytea",
                    c.payload
                )))
            }
        };
        let timestamp = match find(&c.timestamp) {
            Some(i) => {
                let t = relation.columns[i].type_oid;
                if !matches!(t, oid::TIMESTAMPTZ | oid::TIMESTAMP | oid::INT8) {
                    return Err(fail(format!(
                        "timestamp column {:?} has type oid {t}; supported are timestamptz, timestamp and bigint (epoch ms)",
                        c.timestamp
                    )));
                }
                Some((i, t))
            }
            None => None,
        };
        let tracing_span_context = find(&c.tracing_span_context);
        let mut headers = Vec::with_capacity(config.header_columns.len());
        for h in &config.header_columns {
            let i = find(&h.column).ok_or_else(|| {
                fail(format!(
                    "header column {:?} (outbox.tables[].header_columns) is missing",
                    h.column
                ))
            })?;
            headers.push((
                i,
                Text::from(h.header.clone().unwrap_or_else(|| h.column.clone())),
            ));
        }
        let partition = match &config.partition_column {
            Some(col) => {
                let i = find(col).ok_or_else(|| {
                    fail(format!(
                        "partition column {col:?} (outbox.tables[].partition_column) is missing"
                    ))
                })?;
                let t = relation.columns[i].type_oid;
                if !matches!(t, oid::INT2 | oid::INT4 | oid::INT8) {
                    return Err(fail(format!(
                        "partition column {col:?} has type oid {t}; supported are smallint, integer and bigint"
                    )));
                }
                Some((i, t))
            }
            None => None,
        };
        Ok(OutboxTable {
            name: name.clone(),
            partition,
            id,
            aggregate_type,
            aggregate_id,
            event_type,
            payload,
            payload_kind,
            timestamp,
            tracing_span_context,
            headers,
            column_names: relation.columns.iter().map(|c| c.name.clone()).collect(),
        })
    }
}

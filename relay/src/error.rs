//! The relay's errors, classified in one place: restart the session, or stop.

use outbox_connectors::PublishError;
use outbox_pgoutput::{DecodeError, Lsn};
use outbox_pgwire::PgWireError;

use crate::config::ConfigError;
use crate::outbox::SchemaError;

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("postgres: {0}")]
    Postgres(#[from] PgWireError),
    /// The database is not set up the way the relay needs (wal_level, slot, publication).
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("malformed pgoutput message: {0}")]
    Decode(#[from] DecodeError),
    #[error("replication protocol: {0}")]
    Protocol(String),
    #[error("sink: {0}")]
    Sink(#[from] PublishError),
    /// The sink could not take one event (and, for a permanent rejection, neither could
    /// the dead-letter destination). Naming the event lets the supervisor see the same
    /// failure repeat at the same place and stop instead of looping.
    #[error("event {} (commit {}, destination {}): {error}", .event.id, .event.commit_lsn, .event.destination)]
    EventFailed {
        event: FailedEvent,
        error: PublishError,
    },
    /// `on_invalid: halt` met an invalid event.
    #[error("halted on an invalid event (outbox.on_invalid = halt): {0}")]
    Halted(String),
    /// The slot the relay was reading is gone or invalidated: events may have been
    /// written that no WAL the relay can read still holds (`source.on_slot_lost`).
    #[error("{0}")]
    SlotLost(String),
    /// Another process is reading the slot.
    #[error("{0}")]
    SlotBusy(String),
    #[error("the replication stream ended: {0}")]
    StreamEnded(String),
}

/// SQL errors take the same classification as the replication connection's (one SQLSTATE
/// table, `outbox_pgwire::sqlstate_is_retryable`), so there is one PostgreSQL error type.
impl From<tokio_postgres::Error> for RelayError {
    fn from(e: tokio_postgres::Error) -> Self {
        RelayError::Postgres(PgWireError::from(e))
    }
}

/// Where a delivery failed: the event and its transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedEvent {
    pub id: String,
    pub commit_lsn: Lsn,
    pub destination: String,
}

impl FailedEvent {
    pub fn of(event: &outbox_connectors::OutboxEvent) -> Self {
        FailedEvent {
            id: event.id.to_string(),
            commit_lsn: Lsn(event.commit_lsn),
            destination: event.destination.to_string(),
        }
    }
}

impl RelayError {
    /// Whether a new session (reconnect, new producer, replay from the confirmed flush
    /// LSN) can help. Everything else stops the process with the message, because
    /// retrying would only repeat it.
    pub fn is_retryable(&self) -> bool {
        match self {
            // One SQLSTATE table for SQL and replication: a query cut off by a shutdown
            // (57P01) or refused while the server starts (57P03) is worth a retry, and so is
            // an I/O or closed-connection error.
            RelayError::Postgres(e) => e.is_retryable(),
            RelayError::Sink(_)
            | RelayError::EventFailed { .. }
            | RelayError::SlotBusy(_)
            | RelayError::StreamEnded(_) => true,
            RelayError::Config(_)
            | RelayError::Setup(_)
            | RelayError::Schema(_)
            | RelayError::Decode(_)
            | RelayError::Protocol(_)
            | RelayError::Halted(_)
            | RelayError::SlotLost(_) => false,
        }
    }

    /// The server refused the relay's credentials (SQLSTATE 28P01 invalid password, 28000
    /// invalid authorization). Usually final, but during a password rotation the server
    /// may change before the relay's secret does, so the supervisor retries it for a while.
    pub fn is_auth_failure(&self) -> bool {
        let code = match self {
            RelayError::Postgres(e) => e.sqlstate(),
            _ => None,
        };
        matches!(code, Some("28P01" | "28000"))
    }

    /// The event a delivery failure is about, if it is about one.
    pub fn failed_event(&self) -> Option<&FailedEvent> {
        match self {
            RelayError::EventFailed { event, .. } => Some(event),
            _ => None,
        }
    }

    /// Label for `outbox_relay_errors_total{kind}`.
    pub fn kind(&self) -> &'static str {
        match self {
            RelayError::Config(_) => "config",
            RelayError::Postgres(_) => "postgres",
            RelayError::Setup(_) => "setup",
            RelayError::Schema(_) => "schema",
            RelayError::Decode(_) | RelayError::Protocol(_) => "protocol",
            RelayError::Sink(_) | RelayError::EventFailed { .. } => "sink",
            RelayError::Halted(_) => "halted",
            RelayError::SlotBusy(_) => "slot_busy",
            RelayError::SlotLost(_) => "slot_lost",
            RelayError::StreamEnded(_) => "stream_ended",
        }
    }
}

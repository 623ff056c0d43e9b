//! PostgreSQL connections for the relay.
//!
//! - [`ReplicationClient`]: our own streaming replication client (tokio-postgres
//!   has none): startup with `replication=database`, replication commands,
//!   and the CopyBoth stream split into [`ReplicationStream`] and
//!   [`StatusSender`].
//! - [`connect_sql`]: an ordinary tokio-postgres connection with the same
//!   `sslmode` semantics (rustls, ring).
//!
//! All failures are [`PgWireError`], whose [`PgWireError::is_retryable`] is
//! the one place that decides whether reconnecting may help.

mod auth;
mod client;
mod config;
mod error;
mod frame;
mod low_water;
mod silence;
mod sql;
mod sql_guard;
mod stream;
pub mod tls;
mod transport;

pub use client::{quote_ident, quote_literal, CreatedSlot, IdentifySystem, ReplicationClient};
pub use config::{
    AuthMethod, ChannelBinding, ConnectOptions, Liveness, ParseChannelBindingError,
    ParseRequireAuthError, ParseSslModeError, RequireAuth, SslMode, TcpKeepalive,
};
pub use error::{sqlstate_is_retryable, PgWireError, ServerError};
pub use frame::MAX_MESSAGE_LEN;
pub use outbox_pgoutput::Lsn;
pub use sql::{connect_sql, tokio_postgres_config};
pub use stream::{pg_now_micros, ReplicationMessage, ReplicationStream, StatusSender};

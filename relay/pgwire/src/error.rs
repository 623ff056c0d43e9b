//! One error type for everything this crate does, and the single place that
//! decides whether a failure is worth retrying.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::time::Duration;

use crate::config::SslMode;

/// An ErrorResponse (or a notice) sent by the server, reduced to the fields
/// callers act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    /// `ERROR`, `FATAL`, `PANIC` (or `WARNING`, `NOTICE`, ... for notices), non-localized.
    pub severity: String,
    /// Five-character SQLSTATE, e.g. `28P01`.
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.severity, self.code, self.message)?;
        if let Some(detail) = &self.detail {
            write!(f, " (detail: {detail})")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

impl StdError for ServerError {}

#[derive(Debug, thiserror::Error)]
pub enum PgWireError {
    #[error("I/O error talking to PostgreSQL: {0}")]
    Io(#[from] io::Error),

    #[error("timed out after {timeout:?} connecting to PostgreSQL at {addr}")]
    ConnectTimeout { addr: String, timeout: Duration },

    #[error("PostgreSQL closed the connection unexpectedly")]
    ConnectionClosed,

    /// Nothing arrived on the replication stream for `timeout`, although the
    /// server had been asked for a keepalive: the connection is presumed dead.
    #[error("no data from PostgreSQL for {timeout:?} on the replication stream; presuming the connection dead")]
    ReceiveTimeout { timeout: Duration },

    /// A backend message longer than the configured limit. Refused before
    /// anything is allocated for it; reconnecting would meet it again.
    #[error("backend message {tag:?} of {len} bytes exceeds the limit of {limit} bytes")]
    MessageTooLarge { tag: char, len: usize, limit: usize },

    #[error("PostgreSQL reported {0}")]
    Server(ServerError),

    /// Authentication could not proceed on our side (no password, unsupported
    /// method, the server's SCRAM proof did not verify). A rejected password
    /// comes back from the server instead, as `Server` with SQLSTATE 28P01.
    #[error("cannot authenticate as user {user:?}: {reason}")]
    Auth { user: String, reason: String },

    #[error("TLS handshake with PostgreSQL at {addr} failed: {source}")]
    Tls {
        addr: String,
        #[source]
        source: rustls::Error,
    },

    #[error("sslmode={sslmode} requires TLS but the server at {addr} does not support it")]
    TlsNotSupported { addr: String, sslmode: SslMode },

    #[error("TLS configuration: {0}")]
    TlsConfig(String),

    #[error("invalid connection settings: {0}")]
    Config(String),

    #[error("PostgreSQL protocol violation: {0}")]
    Protocol(String),

    /// From the tokio-postgres SQL connection, when it is neither a server
    /// error nor a TLS failure (those are converted to `Server` and `Tls`).
    #[error("PostgreSQL SQL connection: {0}")]
    Sql(#[source] tokio_postgres::Error),
}

impl PgWireError {
    /// Whether the same operation may succeed if tried again later
    /// (reconnecting first). Configuration, authentication, TLS verification
    /// and protocol problems will not fix themselves, so they are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            PgWireError::Io(_)
            | PgWireError::ConnectTimeout { .. }
            | PgWireError::ConnectionClosed
            | PgWireError::ReceiveTimeout { .. } => true,
            PgWireError::Server(e) => sqlstate_is_retryable(&e.code),
            PgWireError::Auth { .. }
            | PgWireError::Tls { .. }
            | PgWireError::TlsNotSupported { .. }
            | PgWireError::TlsConfig(_)
            | PgWireError::Config(_)
            | PgWireError::Protocol(_)
            | PgWireError::MessageTooLarge { .. } => false,
            PgWireError::Sql(e) => {
                if let Some(code) = e.code() {
                    return sqlstate_is_retryable(code.code());
                }
                // tokio-postgres keeps its error kinds private; a closed
                // connection or an I/O cause is the transient case.
                e.is_closed() || find_io_error(e).is_some()
            }
        }
    }

    /// The SQLSTATE, when the server sent one.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            PgWireError::Server(e) => Some(&e.code),
            PgWireError::Sql(e) => e.code().map(|c| c.code()),
            _ => None,
        }
    }

    /// The server's error, when this is one.
    pub fn server_error(&self) -> Option<&ServerError> {
        match self {
            PgWireError::Server(e) => Some(e),
            _ => None,
        }
    }

    /// Authentication failed, on the server's side (SQLSTATE class 28) or ours.
    pub fn is_auth_failure(&self) -> bool {
        matches!(self, PgWireError::Auth { .. })
            || self.sqlstate().is_some_and(|c| c.starts_with("28"))
    }

    pub(crate) fn protocol(msg: impl Into<String>) -> Self {
        PgWireError::Protocol(msg.into())
    }

    /// Maps an error from a TLS handshake: a rustls verdict (certificate,
    /// alert) is final; anything else is the transport failing.
    pub(crate) fn from_tls_io(addr: &str, e: io::Error) -> Self {
        match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(tls) => PgWireError::Tls {
                addr: addr.to_owned(),
                source: tls.clone(),
            },
            None => PgWireError::Io(e),
        }
    }
}

impl From<ServerError> for PgWireError {
    fn from(e: ServerError) -> Self {
        PgWireError::Server(e)
    }
}

/// Converts so that `?` on tokio-postgres results gives the same
/// classification as the replication client.
impl From<tokio_postgres::Error> for PgWireError {
    fn from(e: tokio_postgres::Error) -> Self {
        if let Some(db) = e.as_db_error() {
            return PgWireError::Server(ServerError {
                severity: db
                    .parsed_severity()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| db.severity().to_owned()),
                code: db.code().code().to_owned(),
                message: db.message().to_owned(),
                detail: db.detail().map(str::to_owned),
                hint: db.hint().map(str::to_owned),
            });
        }
        if let Some(tls) = find_rustls_error(&e) {
            return PgWireError::Tls {
                addr: String::from("(sql connection)"),
                source: tls.clone(),
            };
        }
        PgWireError::Sql(e)
    }
}

/// SQLSTATEs that describe a passing condition of the server or the
/// connection rather than of the request.
pub fn sqlstate_is_retryable(code: &str) -> bool {
    if code.starts_with("08") || code.starts_with("53") {
        // connection exceptions; insufficient resources (too many connections, out of memory, disk full)
        return true;
    }
    matches!(
        code,
        "57P01" // admin_shutdown (also pg_terminate_backend)
            | "57P02" // crash_shutdown
            | "57P03" // cannot_connect_now (starting up, recovering)
            | "57P05" // idle_session_timeout
            | "57014" // query_canceled (statement timeout, cancel request)
            | "40001" // serialization_failure
            | "40P01" // deadlock_detected
            | "55006" // object_in_use: a replication slot still held by a dying walsender
            | "55P03" // lock_not_available
            | "58000" // system_error
            | "58030" // io_error
    )
}

fn sources<'a>(
    e: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    // io::Error::source() skips the wrapped error itself, so look inside
    // io::Errors explicitly on the way down.
    let mut next = Some(e);
    std::iter::from_fn(move || {
        let cur = next?;
        next = match cur.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => cur.source(),
        };
        Some(cur)
    })
}

fn find_rustls_error(e: &tokio_postgres::Error) -> Option<&rustls::Error> {
    sources(e).find_map(|s| s.downcast_ref::<rustls::Error>())
}

fn find_io_error(e: &tokio_postgres::Error) -> Option<&io::Error> {
    sources(e).find_map(|s| s.downcast_ref::<io::Error>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: &str) -> PgWireError {
        PgWireError::Server(ServerError {
            severity: "FATAL".into(),
            code: code.into(),
            message: "m".into(),
            detail: None,
            hint: None,
        })
    }

    #[test]
    fn classification() {
        for code in ["57P01", "57P02", "57P03", "53300", "08006", "55006"] {
            assert!(server(code).is_retryable(), "{code}");
        }
        for code in ["28P01", "28000", "42704", "42601", "3D000", "XX000"] {
            assert!(!server(code).is_retryable(), "{code}");
        }
        assert!(PgWireError::Io(io::Error::from(io::ErrorKind::ConnectionRefused)).is_retryable());
        assert!(PgWireError::ConnectionClosed.is_retryable());
        assert!(PgWireError::ReceiveTimeout {
            timeout: Duration::from_secs(1)
        }
        .is_retryable());
        assert!(!PgWireError::MessageTooLarge {
            tag: 'd',
            len: 2,
            limit: 1
        }
        .is_retryable());
        assert!(!PgWireError::protocol("x").is_retryable());
        assert!(!PgWireError::Auth {
            user: "u".into(),
            reason: "r".into()
        }
        .is_retryable());
        let tls = PgWireError::Tls {
            addr: "a".into(),
            source: rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        };
        assert!(!tls.is_retryable());
        assert!(server("28P01").is_auth_failure());
    }

    #[test]
    fn tls_errors_are_found_inside_io_errors() {
        let io = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName),
        );
        assert!(matches!(
            PgWireError::from_tls_io("h:1", io),
            PgWireError::Tls { .. }
        ));
        let io = io::Error::from(io::ErrorKind::ConnectionReset);
        assert!(matches!(
            PgWireError::from_tls_io("h:1", io),
            PgWireError::Io(_)
        ));
    }
}

//! Connection settings shared by the replication client and SQL connections.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// libpq's `sslmode`, minus `allow` (which only exists to talk to servers
/// that refuse TLS, and this relay never wants to downgrade on purpose).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SslMode {
    /// Never encrypt.
    Disable,
    /// Encrypt when the server offers it, without verifying the certificate;
    /// fall back to plaintext when it does not. (A failed TLS handshake is an
    /// error, not retried in plaintext as libpq would.)
    #[default]
    Prefer,
    /// Always encrypt; do not verify the certificate. Unlike libpq, a given
    /// `sslrootcert` does not turn this into `VerifyCa`: ask for that
    /// explicitly.
    Require,
    /// Always encrypt; the certificate must chain to `sslrootcert`. The host
    /// name is not checked.
    VerifyCa,
    /// Like `VerifyCa`, and the certificate must name the host we connect to.
    VerifyFull,
}

impl SslMode {
    pub const ALL: [SslMode; 5] = [
        SslMode::Disable,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Whether a plaintext connection is unacceptable.
    pub fn requires_tls(self) -> bool {
        matches!(
            self,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull
        )
    }

    /// Whether the server certificate is checked against trusted roots.
    pub fn verifies_certificate(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid sslmode {0:?}: expected one of disable, prefer, require, verify-ca, verify-full")]
pub struct ParseSslModeError(pub String);

impl FromStr for SslMode {
    type Err = ParseSslModeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SslMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| ParseSslModeError(s.to_owned()))
    }
}

/// Where and how to connect. One host only: failover between hosts is the
/// caller's business.
#[derive(Clone)]
pub struct ConnectOptions {
    /// DNS name or IP address (TCP only).
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub dbname: String,
    pub sslmode: SslMode,
    /// PEM file of trusted CA certificates for verify-ca / verify-full. When
    /// absent, the system bundle is used.
    pub sslrootcert: Option<PathBuf>,
    pub application_name: String,
    /// Bounds the whole connection setup: TCP connect, TLS and authentication.
    pub connect_timeout: Duration,

    // Dead peers and oversized messages.
    /// How a silently vanished server is noticed (TCP options, receive timeout).
    pub liveness: Liveness,
    /// Largest backend message body accepted; a longer one is
    /// [`PgWireError::MessageTooLarge`](crate::PgWireError::MessageTooLarge),
    /// refused before anything is allocated for it.
    pub max_message_len: usize,
}

/// How a connection notices a server that has silently gone away (a NAT or
/// firewall dropping the flow, a failed-over load balancer): without these,
/// only TCP's own retransmission limit (many minutes) ends the wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    /// TCP keepalive probes on idle connections (`None`: keepalive off).
    pub keepalive: Option<TcpKeepalive>,
    /// `TCP_USER_TIMEOUT` (Linux; ignored elsewhere): how long sent data may
    /// stay unacknowledged before the kernel drops the connection. `None`: the
    /// OS default (retransmissions for about 15 minutes).
    pub tcp_user_timeout: Option<Duration>,
    /// While streaming: the longest wait for any byte from the walsender before
    /// [`ReplicationStream::next`](crate::ReplicationStream::next) fails with
    /// [`PgWireError::ReceiveTimeout`](crate::PgWireError::ReceiveTimeout). The
    /// [`StatusSender`](crate::StatusSender) asks the server for a keepalive once
    /// half of it has passed in silence, so a live server always answers in
    /// time unless it is itself stuck (see the README on `wal_sender_timeout`).
    /// `None`: wait forever.
    pub receive_timeout: Option<Duration>,
}

/// TCP keepalive timing; each `None` keeps the OS default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpKeepalive {
    /// Idle time before the first probe.
    pub idle: Option<Duration>,
    /// Time between unanswered probes.
    pub interval: Option<Duration>,
    /// Unanswered probes before the connection is dropped.
    pub retries: Option<u32>,
}

impl Default for Liveness {
    /// Keepalive after 30 s idle, every 10 s, 3 probes; unacknowledged data
    /// gives up after 60 s; a stream silent for 40 s is dead. 40 s: a healthy
    /// walsender busy decoding a large transaction it sends nothing of answers
    /// our keepalive request only after `wal_sender_timeout` / 2 (30 s by
    /// default), so a shorter timeout would abandon it and restart the same work.
    fn default() -> Self {
        Liveness {
            keepalive: Some(TcpKeepalive {
                idle: Some(Duration::from_secs(30)),
                interval: Some(Duration::from_secs(10)),
                retries: Some(3),
            }),
            tcp_user_timeout: Some(Duration::from_secs(60)),
            receive_timeout: Some(Duration::from_secs(40)),
        }
    }
}

impl ConnectOptions {
    /// Options with the usual defaults (prefer TLS, 10 s connect timeout,
    /// [`Liveness::default`], PostgreSQL's own message size limit).
    pub fn new(
        host: impl Into<String>,
        port: u16,
        user: impl Into<String>,
        dbname: impl Into<String>,
    ) -> Self {
        ConnectOptions {
            host: host.into(),
            port,
            user: user.into(),
            password: None,
            dbname: dbname.into(),
            sslmode: SslMode::default(),
            sslrootcert: None,
            application_name: String::from("outbox-relay"),
            connect_timeout: Duration::from_secs(10),
            liveness: Liveness::default(),
            max_message_len: crate::frame::MAX_MESSAGE_LEN,
        }
    }

    /// `host:port`, as used in error messages.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("dbname", &self.dbname)
            .field("sslmode", &self.sslmode)
            .field("sslrootcert", &self.sslrootcert)
            .field("application_name", &self.application_name)
            .field("connect_timeout", &self.connect_timeout)
            .field("liveness", &self.liveness)
            .field("max_message_len", &self.max_message_len)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_round_trips() {
        for m in SslMode::ALL {
            assert_eq!(m.to_string().parse::<SslMode>().unwrap(), m);
        }
        let err = "verify_full".parse::<SslMode>().unwrap_err();
        assert!(err.to_string().contains("verify-full"), "{err}");
        assert!("allow".parse::<SslMode>().is_err());
    }

    #[test]
    fn debug_hides_password() {
        let mut o = ConnectOptions::new("h", 5432, "u", "d");
        o.password = Some("s3cret-pw".into());
        let s = format!("{o:?}");
        assert!(!s.contains("s3cret-pw"), "{s}");
        assert!(s.contains("***"), "{s}");
    }
}

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
}

impl ConnectOptions {
    /// Options with the usual defaults (prefer TLS, 10 s timeout).
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

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

/// libpq's `channel_binding`: whether SCRAM binds the authentication to the
/// TLS session (`SCRAM-SHA-256-PLUS` with `tls-server-end-point`), which
/// defeats a man in the middle who relays the exchange through a TLS session
/// of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ChannelBinding {
    /// Never bind, even when the server offers it.
    Disable,
    /// Bind when TLS and the server allow it.
    #[default]
    Prefer,
    /// Only SCRAM-SHA-256-PLUS is acceptable: every other method (trust,
    /// cleartext, MD5, unbound SCRAM) is refused.
    Require,
}

impl ChannelBinding {
    pub const ALL: [ChannelBinding; 3] = [
        ChannelBinding::Disable,
        ChannelBinding::Prefer,
        ChannelBinding::Require,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChannelBinding::Disable => "disable",
            ChannelBinding::Prefer => "prefer",
            ChannelBinding::Require => "require",
        }
    }
}

impl fmt::Display for ChannelBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid channel_binding {0:?}: expected one of disable, prefer, require")]
pub struct ParseChannelBindingError(pub String);

impl FromStr for ChannelBinding {
    type Err = ParseChannelBindingError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ChannelBinding::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| ParseChannelBindingError(s.to_owned()))
    }
}

/// An authentication method as libpq's `require_auth` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// The server asks for nothing (`trust`, `peer` over TCP does not exist).
    None,
    /// Cleartext password (`password` in pg_hba.conf).
    Password,
    Md5,
    Gss,
    Sspi,
    ScramSha256,
}

impl AuthMethod {
    pub const ALL: [AuthMethod; 6] = [
        AuthMethod::None,
        AuthMethod::Password,
        AuthMethod::Md5,
        AuthMethod::Gss,
        AuthMethod::Sspi,
        AuthMethod::ScramSha256,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::None => "none",
            AuthMethod::Password => "password",
            AuthMethod::Md5 => "md5",
            AuthMethod::Gss => "gss",
            AuthMethod::Sspi => "sspi",
            AuthMethod::ScramSha256 => "scram-sha-256",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// libpq's `require_auth`: the methods the server may use, as a
/// comma-separated list (`scram-sha-256`, `md5,password`) or a list of
/// exclusions (`!password,!md5`); the two forms do not mix. The default
/// allows every method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequireAuth {
    allowed: u8,
}

impl Default for RequireAuth {
    fn default() -> Self {
        RequireAuth::ANY
    }
}

impl RequireAuth {
    pub const ANY: RequireAuth = RequireAuth { allowed: 0x3f };

    /// Exactly these methods.
    pub fn only(methods: &[AuthMethod]) -> Self {
        RequireAuth {
            allowed: methods.iter().fold(0, |acc, m| acc | m.bit()),
        }
    }

    pub fn allows(self, method: AuthMethod) -> bool {
        self.allowed & method.bit() != 0
    }

    /// The allowed methods, in libpq's spelling.
    pub fn allowed(self) -> Vec<AuthMethod> {
        AuthMethod::ALL
            .into_iter()
            .filter(|m| self.allows(*m))
            .collect()
    }
}

impl fmt::Display for RequireAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.allowed().into_iter().map(AuthMethod::as_str).collect();
        f.write_str(&names.join(","))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid require_auth {value:?}: {reason}")]
pub struct ParseRequireAuthError {
    pub value: String,
    pub reason: String,
}

impl FromStr for RequireAuth {
    type Err = ParseRequireAuthError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |reason: String| ParseRequireAuthError {
            value: s.to_owned(),
            reason,
        };
        if s.is_empty() {
            return Ok(RequireAuth::ANY);
        }
        let mut negated = None;
        let mut listed = 0u8;
        for item in s.split(',') {
            let (neg, name) = match item.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, item),
            };
            if *negated.get_or_insert(neg) != neg {
                return Err(fail("negative and positive methods cannot be mixed".into()));
            }
            let method = AuthMethod::ALL
                .into_iter()
                .find(|m| m.as_str() == name)
                .ok_or_else(|| {
                    fail(format!(
                        "unknown method {name:?} (expected none, password, md5, gss, sspi or scram-sha-256, optionally prefixed with '!')"
                    ))
                })?;
            if listed & method.bit() != 0 {
                return Err(fail(format!("{name:?} is listed twice")));
            }
            listed |= method.bit();
        }
        let allowed = if negated == Some(true) {
            RequireAuth::ANY.allowed & !listed
        } else {
            listed
        };
        if allowed == 0 {
            return Err(fail("no method is left allowed".into()));
        }
        Ok(RequireAuth { allowed })
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

    // Authentication policy (issue 11, item 5).
    /// The authentication methods the server may ask for.
    pub require_auth: RequireAuth,
    pub channel_binding: ChannelBinding,
    /// Whether to answer a cleartext or MD5 password request on a connection
    /// whose server is not authenticated (plaintext, or TLS under `prefer` /
    /// `require`). Off by default: whoever sits in the middle of such a
    /// connection reads the password (or a replayable MD5 answer).
    pub allow_password_without_verified_tls: bool,
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
            require_auth: RequireAuth::ANY,
            channel_binding: ChannelBinding::default(),
            allow_password_without_verified_tls: false,
            liveness: Liveness::default(),
            max_message_len: crate::frame::MAX_MESSAGE_LEN,
        }
    }

    /// Whether the server is authenticated: TLS with a verified certificate.
    /// Only then may a password travel to it in a form a listener could use.
    pub fn verifies_server(&self) -> bool {
        self.sslmode.verifies_certificate()
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
            .field("require_auth", &self.require_auth.to_string())
            .field("channel_binding", &self.channel_binding)
            .field(
                "allow_password_without_verified_tls",
                &self.allow_password_without_verified_tls,
            )
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
    fn channel_binding_round_trips() {
        for m in ChannelBinding::ALL {
            assert_eq!(m.to_string().parse::<ChannelBinding>().unwrap(), m);
        }
        assert_eq!(ChannelBinding::default(), ChannelBinding::Prefer);
        let err = "required".parse::<ChannelBinding>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid channel_binding \"required\": expected one of disable, prefer, require"
        );
    }

    #[test]
    fn require_auth_as_libpq_reads_it() {
        let parse = |s: &str| s.parse::<RequireAuth>().map(|r| r.to_string());
        assert_eq!(
            parse("").unwrap(),
            "none,password,md5,gss,sspi,scram-sha-256"
        );
        assert_eq!(parse("scram-sha-256").unwrap(), "scram-sha-256");
        assert_eq!(parse("md5,none").unwrap(), "none,md5");
        assert_eq!(
            parse("!password,!md5").unwrap(),
            "none,gss,sspi,scram-sha-256"
        );
        let err = |s: &str| s.parse::<RequireAuth>().unwrap_err().to_string();
        assert!(
            err("md5,!password").contains("cannot be mixed"),
            "{}",
            err("md5,!password")
        );
        assert!(
            err("scram").contains("unknown method \"scram\""),
            "{}",
            err("scram")
        );
        assert!(
            err("md5,md5").contains("listed twice"),
            "{}",
            err("md5,md5")
        );
        assert!(
            err("!none,!password,!md5,!gss,!sspi,!scram-sha-256").contains("no method"),
            "{}",
            err("!none,!password,!md5,!gss,!sspi,!scram-sha-256")
        );
        let only = RequireAuth::only(&[AuthMethod::ScramSha256]);
        assert!(only.allows(AuthMethod::ScramSha256));
        assert!(!only.allows(AuthMethod::None) && !only.allows(AuthMethod::Md5));
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

//! The authentication policy on tokio-postgres connections.
//!
//! tokio-postgres answers whatever the server asks: a cleartext or MD5 password request
//! over plaintext or unverified TLS gets the password, and it has no `require_auth`. The
//! relay's SQL connection therefore runs over a [`Guarded`] stream that reads the server's
//! messages as they pass and, before tokio-postgres sees an authentication request the
//! policy forbids, fails the read with the same refusal the replication client gives
//! ([`crate::auth::Policy`]): nothing is ever sent in answer.
//!
//! Two places see plaintext protocol: the TCP stream itself when no TLS is negotiated
//! (after the server's `N` to SSLRequest, or `sslmode: disable`), and the stream inside
//! TLS. Each gets a guard; the outer one stands aside once the server answers `S`.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::auth::{
    Channel, Policy, AUTH_CLEARTEXT, AUTH_GSS, AUTH_MD5, AUTH_OK, AUTH_SASL, AUTH_SSPI,
};
use crate::config::{AuthMethod, ChannelBinding, ConnectOptions, RequireAuth};
use crate::error::PgWireError;

/// The policy in owned form, and where a refusal is left for the caller.
#[derive(Clone)]
pub(crate) struct GuardPolicy {
    user: String,
    require_auth: RequireAuth,
    channel_binding: ChannelBinding,
    allow_password_without_verified_tls: bool,
    verifies_server: bool,
    /// The refusal, for `connect_sql` to report instead of tokio-postgres's I/O error.
    pub refused: Arc<Mutex<Option<PgWireError>>>,
}

impl GuardPolicy {
    pub fn new(opts: &ConnectOptions) -> Self {
        GuardPolicy {
            user: opts.user.clone(),
            require_auth: opts.require_auth,
            channel_binding: opts.channel_binding,
            allow_password_without_verified_tls: opts.allow_password_without_verified_tls,
            verifies_server: opts.verifies_server(),
            refused: Arc::new(Mutex::new(None)),
        }
    }

    /// The guard for the TCP stream (`tls_requested`: an SSLRequest goes first).
    pub fn outer(&self, tls_requested: bool) -> Guard {
        Guard {
            policy: self.clone(),
            channel: Channel::Plain,
            state: if tls_requested {
                State::SslResponse
            } else {
                State::Header {
                    buf: [0; 5],
                    have: 0,
                }
            },
        }
    }

    /// The guard for the stream inside TLS.
    pub fn inner(&self) -> Guard {
        Guard {
            policy: self.clone(),
            channel: Channel::Tls {
                verified: self.verifies_server,
                // tokio-postgres does the binding itself; only `verified` matters here.
                end_point: None,
            },
            state: State::Header {
                buf: [0; 5],
                have: 0,
            },
        }
    }

    fn check(&self, code: i32, channel: &Channel) -> Result<(), PgWireError> {
        let policy = Policy {
            user: &self.user,
            password: None,
            require_auth: self.require_auth,
            channel_binding: self.channel_binding,
            allow_password_without_verified_tls: self.allow_password_without_verified_tls,
        };
        match code {
            AUTH_CLEARTEXT => policy.check_password_method(AuthMethod::Password, channel),
            AUTH_MD5 => policy.check_password_method(AuthMethod::Md5, channel),
            AUTH_SASL => policy.check_method(AuthMethod::ScramSha256),
            AUTH_GSS => policy.check_method(AuthMethod::Gss),
            AUTH_SSPI => policy.check_method(AuthMethod::Sspi),
            _ => Ok(()),
        }
    }
}

/// Where the parser is in the server's byte stream.
#[derive(Debug, Clone, Copy)]
enum State {
    /// The one-byte answer to SSLRequest.
    SslResponse,
    /// A message header (type byte and length).
    Header { buf: [u8; 5], have: usize },
    /// The first four bytes of an Authentication message (the request code).
    AuthCode {
        buf: [u8; 4],
        have: usize,
        rest: usize,
    },
    /// Skipping the rest of a message body.
    Skip { remaining: usize },
    /// Authentication is over (or TLS took over): nothing more to look at.
    Done,
}

/// Parses the server's side of the startup exchange.
pub(crate) struct Guard {
    policy: GuardPolicy,
    channel: Channel,
    state: State,
}

impl Guard {
    /// Feeds bytes the server sent; an error means they must not reach the client.
    fn feed(&mut self, mut data: &[u8]) -> Result<(), PgWireError> {
        while !data.is_empty() {
            match &mut self.state {
                State::Done => return Ok(()),
                State::SslResponse => {
                    self.state = if data[0] == b'N' {
                        State::Header {
                            buf: [0; 5],
                            have: 0,
                        }
                    } else {
                        // `S`: TLS follows, and the guard inside it takes over.
                        State::Done
                    };
                    data = &data[1..];
                }
                State::Header { buf, have } => {
                    let n = (5 - *have).min(data.len());
                    buf[*have..*have + n].copy_from_slice(&data[..n]);
                    *have += n;
                    data = &data[n..];
                    if *have == 5 {
                        let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
                        let body = (len.max(4) - 4) as usize;
                        self.state = match buf[0] {
                            b'R' if body >= 4 => State::AuthCode {
                                buf: [0; 4],
                                have: 0,
                                rest: body - 4,
                            },
                            // An error ends the exchange; anything else before
                            // authentication is for tokio-postgres to judge.
                            _ => State::Skip { remaining: body },
                        };
                    }
                }
                State::AuthCode { buf, have, rest } => {
                    let n = (4 - *have).min(data.len());
                    buf[*have..*have + n].copy_from_slice(&data[..n]);
                    *have += n;
                    data = &data[n..];
                    if *have == 4 {
                        let code = i32::from_be_bytes(*buf);
                        let rest = *rest;
                        self.policy.check(code, &self.channel)?;
                        self.state = if code == AUTH_OK {
                            State::Done
                        } else {
                            State::Skip { remaining: rest }
                        };
                    }
                }
                State::Skip { remaining } => {
                    let n = (*remaining).min(data.len());
                    *remaining -= n;
                    data = &data[n..];
                    if *remaining == 0 {
                        self.state = State::Header {
                            buf: [0; 5],
                            have: 0,
                        };
                    }
                }
            }
        }
        Ok(())
    }
}

/// A stream whose incoming bytes pass a [`Guard`] first.
pub struct Guarded<S> {
    inner: S,
    guard: Guard,
}

impl<S> Guarded<S> {
    pub(crate) fn new(inner: S, guard: Guard) -> Self {
        Guarded { inner, guard }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let start = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if let Err(refusal) = this.guard.feed(&buf.filled()[start..]) {
                    let message = refusal.to_string();
                    *this
                        .guard
                        .policy
                        .refused
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) = Some(refusal);
                    buf.set_filled(start);
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        message,
                    )));
                }
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: bool, verifies: bool) -> GuardPolicy {
        GuardPolicy {
            user: "relay".into(),
            require_auth: RequireAuth::ANY,
            channel_binding: ChannelBinding::Prefer,
            allow_password_without_verified_tls: allow,
            verifies_server: verifies,
            refused: Arc::new(Mutex::new(None)),
        }
    }

    fn auth(code: i32) -> Vec<u8> {
        let mut m = vec![b'R'];
        m.extend_from_slice(&8i32.to_be_bytes());
        m.extend_from_slice(&code.to_be_bytes());
        m
    }

    #[test]
    fn a_password_request_on_a_plain_connection_is_refused_byte_by_byte() {
        let mut g = policy(false, false).outer(true);
        let mut bytes = vec![b'N'];
        bytes.extend(auth(AUTH_CLEARTEXT));
        let mut result = Ok(());
        for b in &bytes {
            result = result.and_then(|_| g.feed(std::slice::from_ref(b)));
        }
        let err = result.unwrap_err();
        assert!(
            err.to_string().contains("cleartext") || err.to_string().contains("password"),
            "{err}"
        );
    }

    #[test]
    fn md5_inside_unverified_tls_is_refused_and_inside_verified_tls_allowed() {
        assert!(policy(false, false).inner().feed(&auth(AUTH_MD5)).is_err());
        assert!(policy(false, true).inner().feed(&auth(AUTH_MD5)).is_ok());
        assert!(policy(true, false).inner().feed(&auth(AUTH_MD5)).is_ok());
    }

    #[test]
    fn scram_passes_and_tls_takes_over_after_s() {
        let mut outer = policy(false, false).outer(true);
        // After `S` the outer guard sees ciphertext and must not parse it.
        assert!(outer.feed(b"S\x16\x03\x01garbage").is_ok());
        let mut inner = policy(false, false).inner();
        let mut sasl = vec![b'R'];
        let body = b"SCRAM-SHA-256\0\0";
        sasl.extend_from_slice(&((8 + body.len()) as i32).to_be_bytes());
        sasl.extend_from_slice(&AUTH_SASL.to_be_bytes());
        sasl.extend_from_slice(body);
        sasl.extend(auth(AUTH_OK));
        assert!(inner.feed(&sasl).is_ok());
        assert!(matches!(inner.state, State::Done));
    }

    #[test]
    fn require_auth_refuses_a_method_it_does_not_list() {
        let mut p = policy(true, true);
        p.require_auth = RequireAuth::only(&[AuthMethod::ScramSha256]);
        assert!(p.inner().feed(&auth(AUTH_MD5)).is_err());
    }
}

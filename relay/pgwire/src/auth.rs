//! The authentication exchange after the startup message: trust, cleartext,
//! MD5 and SCRAM-SHA-256 (with channel binding when TLS provides it).

use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{self, ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::{AuthMethod, ChannelBinding as ChannelBindingMode, RequireAuth};
use crate::error::PgWireError;
use crate::frame::{parse_error_fields, tag, Body, FrameReader};
use crate::transport::MessageWriter;

pub(crate) const AUTH_OK: i32 = 0;
const AUTH_KERBEROS_V5: i32 = 2;
pub(crate) const AUTH_CLEARTEXT: i32 = 3;
pub(crate) const AUTH_MD5: i32 = 5;
const AUTH_SCM_CREDENTIAL: i32 = 6;
pub(crate) const AUTH_GSS: i32 = 7;
pub(crate) const AUTH_SSPI: i32 = 9;
pub(crate) const AUTH_SASL: i32 = 10;
const AUTH_SASL_CONTINUE: i32 = 11;
const AUTH_SASL_FINAL: i32 = 12;

/// A request from the server during authentication.
#[derive(Debug, PartialEq, Eq)]
enum AuthRequest {
    Ok,
    Cleartext,
    Md5 { salt: [u8; 4] },
    Sasl { mechanisms: Vec<String> },
    SaslContinue(Vec<u8>),
    SaslFinal(Vec<u8>),
    Unsupported(&'static str),
}

fn parse_auth(body: &[u8]) -> Result<AuthRequest, PgWireError> {
    let mut b = Body::new(body, "Authentication");
    Ok(match b.i32()? {
        AUTH_OK => AuthRequest::Ok,
        AUTH_CLEARTEXT => AuthRequest::Cleartext,
        AUTH_MD5 => AuthRequest::Md5 {
            salt: b.bytes(4)?.try_into().unwrap(),
        },
        AUTH_SASL => {
            let mut mechanisms = Vec::new();
            loop {
                let m = b.cstr()?;
                if m.is_empty() {
                    break;
                }
                mechanisms.push(String::from_utf8_lossy(m).into_owned());
            }
            AuthRequest::Sasl { mechanisms }
        }
        AUTH_SASL_CONTINUE => AuthRequest::SaslContinue(b.rest().to_vec()),
        AUTH_SASL_FINAL => AuthRequest::SaslFinal(b.rest().to_vec()),
        AUTH_KERBEROS_V5 => AuthRequest::Unsupported("Kerberos V5"),
        AUTH_SCM_CREDENTIAL => AuthRequest::Unsupported("SCM credentials"),
        AUTH_GSS => AuthRequest::Unsupported("GSSAPI"),
        AUTH_SSPI => AuthRequest::Unsupported("SSPI"),
        other => {
            return Err(PgWireError::protocol(format!(
                "unknown authentication request {other}"
            )))
        }
    })
}

/// What the transport under the authentication exchange offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Channel {
    Plain,
    /// `end_point` is the `tls-server-end-point` binding data, `None` when
    /// the certificate's signature algorithm defines no hash for it
    /// (RSASSA-PSS, EdDSA).
    Tls {
        verified: bool,
        end_point: Option<Vec<u8>>,
    },
}

impl Channel {
    fn is_authenticated(&self) -> bool {
        matches!(self, Channel::Tls { verified: true, .. })
    }

    fn describe(&self) -> &'static str {
        match self {
            Channel::Plain => "a plaintext connection",
            Channel::Tls {
                verified: false, ..
            } => "TLS whose certificate is not verified (sslmode prefer or require)",
            Channel::Tls { verified: true, .. } => "verified TLS",
        }
    }
}

/// The rules an authentication exchange is held to.
pub(crate) struct Policy<'a> {
    pub user: &'a str,
    pub password: Option<&'a str>,
    pub require_auth: RequireAuth,
    pub channel_binding: ChannelBindingMode,
    pub allow_password_without_verified_tls: bool,
}

impl Policy<'_> {
    fn refuse(&self, reason: impl Into<String>) -> PgWireError {
        PgWireError::Auth {
            user: self.user.to_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn check_method(&self, method: AuthMethod) -> Result<(), PgWireError> {
        if !self.require_auth.allows(method) {
            return Err(self.refuse(format!(
                "the server asks for authentication method {method}, which require_auth={} does not allow",
                self.require_auth
            )));
        }
        Ok(())
    }

    /// Cleartext and MD5 hand the listener something it can log in with
    /// (the password, or an answer to a salt it chose and may relay).
    pub(crate) fn check_password_method(
        &self,
        method: AuthMethod,
        channel: &Channel,
    ) -> Result<(), PgWireError> {
        self.check_method(method)?;
        if self.channel_binding == ChannelBindingMode::Require {
            return Err(self.refuse(format!(
                "channel_binding=require, but the server asks for {} authentication, which has no channel binding",
                method_name(method)
            )));
        }
        if !channel.is_authenticated() && !self.allow_password_without_verified_tls {
            return Err(self.refuse(format!(
                "the server asks for the password by {} over {}, where a man in the middle could read \
                 and reuse it; use sslmode=verify-full (or verify-ca), or switch the role to SCRAM, \
                 or set allow_password_without_verified_tls=true to accept the risk",
                method_name(method),
                channel.describe()
            )));
        }
        Ok(())
    }

    /// Picks the SASL mechanism and the channel-binding flag to send.
    fn choose_sasl(
        &self,
        mechanisms: &[String],
        channel: &Channel,
    ) -> Result<(&'static str, ChannelBinding), PgWireError> {
        let plain = mechanisms.iter().any(|m| m == sasl::SCRAM_SHA_256);
        let plus = mechanisms.iter().any(|m| m == sasl::SCRAM_SHA_256_PLUS);
        if !plain && !plus {
            return Err(self.refuse(format!("no supported SASL mechanism among {mechanisms:?}")));
        }
        let end_point = match channel {
            Channel::Tls {
                end_point: Some(data),
                ..
            } => Some(data.clone()),
            _ => None,
        };
        match self.channel_binding {
            ChannelBindingMode::Disable if plain => {
                Ok((sasl::SCRAM_SHA_256, ChannelBinding::unsupported()))
            }
            ChannelBindingMode::Disable => Err(self
                .refuse("the server offers only SCRAM-SHA-256-PLUS, and channel_binding=disable")),
            ChannelBindingMode::Require => match (plus, end_point) {
                (true, Some(data)) => Ok((
                    sasl::SCRAM_SHA_256_PLUS,
                    ChannelBinding::tls_server_end_point(data),
                )),
                (false, _) => Err(self.refuse(format!(
                    "channel_binding=require, but the server offers only {mechanisms:?} over {} \
                     (SCRAM-SHA-256-PLUS needs TLS on both ends)",
                    channel.describe()
                ))),
                (true, None) => Err(self.refuse(format!(
                    "channel_binding=require, but {}",
                    no_binding_data(channel)
                ))),
            },
            ChannelBindingMode::Prefer => match (plain, plus, end_point) {
                (_, true, Some(data)) => Ok((
                    sasl::SCRAM_SHA_256_PLUS,
                    ChannelBinding::tls_server_end_point(data),
                )),
                // "y": we could bind but the server did not offer it. The
                // server rejects "y" when it did offer binding, hence "n" then.
                (true, false, Some(_)) => Ok((sasl::SCRAM_SHA_256, ChannelBinding::unrequested())),
                (true, offered, None) => {
                    if offered {
                        tracing::warn!(
                            user = self.user,
                            "SCRAM proceeds without channel binding: {}",
                            no_binding_data(channel)
                        );
                    }
                    Ok((sasl::SCRAM_SHA_256, ChannelBinding::unsupported()))
                }
                (false, _, None) => Err(self.refuse(format!(
                    "the server offers only SCRAM-SHA-256-PLUS, but {}",
                    no_binding_data(channel)
                ))),
                (false, false, Some(_)) => unreachable!("checked above"),
            },
        }
    }
}

fn no_binding_data(channel: &Channel) -> &'static str {
    match channel {
        Channel::Plain => "there is no TLS to bind to",
        _ => {
            "the server certificate's signature algorithm (RSASSA-PSS or EdDSA) defines no \
              hash for tls-server-end-point channel binding"
        }
    }
}

fn method_name(method: AuthMethod) -> &'static str {
    match method {
        AuthMethod::Password => "cleartext password",
        AuthMethod::Md5 => "MD5",
        other => other.as_str(),
    }
}

/// Where the SCRAM exchange stands: the server must finish it with a
/// signature that proves it knows the password before AuthenticationOk counts.
enum Scram {
    NotStarted,
    Started(Box<ScramSha256>),
    Verified,
}

pub(crate) async fn authenticate<R, W>(
    reader: &mut FrameReader<R>,
    writer: &mut MessageWriter<W>,
    policy: &Policy<'_>,
    channel: &Channel,
) -> Result<(), PgWireError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let need_password = || {
        policy
            .password
            .ok_or_else(|| policy.refuse("the server asks for a password and none was given"))
    };
    let mut scram = Scram::NotStarted;
    let mut used_password = false;
    loop {
        let request = next_auth_request(reader).await?;
        match request {
            AuthRequest::Ok => {
                return match scram {
                    Scram::Started(_) => Err(policy.refuse(
                        "the server sent AuthenticationOk without its SCRAM final message, so it \
                         never proved that it knows the password",
                    )),
                    // choose_sasl already refused unbound SCRAM under
                    // channel_binding=require.
                    Scram::Verified => Ok(()),
                    Scram::NotStarted if used_password => Ok(()),
                    Scram::NotStarted => {
                        if !policy.require_auth.allows(AuthMethod::None) {
                            return Err(policy.refuse(format!(
                                "the server let us in without authentication, which require_auth={} \
                                 does not allow",
                                policy.require_auth
                            )));
                        }
                        if policy.channel_binding == ChannelBindingMode::Require {
                            return Err(policy.refuse(
                                "channel_binding=require, but the server let us in without \
                                 authentication",
                            ));
                        }
                        Ok(())
                    }
                };
            }
            AuthRequest::Cleartext => {
                policy.check_password_method(AuthMethod::Password, channel)?;
                let pw = need_password()?;
                writer
                    .send(|buf| frontend::password_message(pw.as_bytes(), buf))
                    .await?;
                used_password = true;
            }
            AuthRequest::Md5 { salt } => {
                policy.check_password_method(AuthMethod::Md5, channel)?;
                let hash = md5_hash(policy.user.as_bytes(), need_password()?.as_bytes(), salt);
                writer
                    .send(|buf| frontend::password_message(hash.as_bytes(), buf))
                    .await?;
                used_password = true;
            }
            AuthRequest::Sasl { mechanisms } => {
                if !matches!(scram, Scram::NotStarted) {
                    return Err(PgWireError::protocol(
                        "a second SASL request during authentication",
                    ));
                }
                policy.check_method(AuthMethod::ScramSha256)?;
                let pw = need_password()?;
                let (mechanism, binding) = policy.choose_sasl(&mechanisms, channel)?;
                let s = ScramSha256::new(pw.as_bytes(), binding);
                writer
                    .send(|buf| frontend::sasl_initial_response(mechanism, s.message(), buf))
                    .await?;
                scram = Scram::Started(Box::new(s));
            }
            AuthRequest::SaslContinue(data) => {
                let Scram::Started(s) = &mut scram else {
                    return Err(PgWireError::protocol(
                        "SASLContinue outside a SASL exchange",
                    ));
                };
                s.update(&data).map_err(|e| {
                    policy.refuse(format!("invalid SCRAM server-first message: {e}"))
                })?;
                writer
                    .send(|buf| frontend::sasl_response(s.message(), buf))
                    .await?;
            }
            AuthRequest::SaslFinal(data) => {
                let Scram::Started(s) = &mut scram else {
                    return Err(PgWireError::protocol("SASLFinal outside a SASL exchange"));
                };
                // Proves the server knows the password too, not just accepts ours.
                s.finish(&data).map_err(|e| {
                    policy.refuse(format!("the server's SCRAM signature did not verify: {e}"))
                })?;
                scram = Scram::Verified;
            }
            AuthRequest::Unsupported(method) => {
                return Err(policy.refuse(format!(
                    "the server asks for {method} authentication, which is not supported"
                )))
            }
        }
    }
}

async fn next_auth_request<R: AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
) -> Result<AuthRequest, PgWireError> {
    loop {
        let frame = reader.next_frame().await?;
        match frame.tag {
            tag::AUTHENTICATION => return parse_auth(&frame.body),
            tag::ERROR_RESPONSE => {
                return Err(PgWireError::Server(parse_error_fields(&frame.body)?))
            }
            tag::NOTICE_RESPONSE => crate::client::log_notice(&frame.body),
            // The server speaks an older 3.x minor version; nothing we use depends on it.
            tag::NEGOTIATE_PROTOCOL_VERSION => {}
            other => {
                return Err(PgWireError::protocol(format!(
                    "unexpected message {:?} during authentication",
                    char::from(other)
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests() {
        assert_eq!(parse_auth(&0i32.to_be_bytes()).unwrap(), AuthRequest::Ok);
        let mut md5 = 5i32.to_be_bytes().to_vec();
        md5.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(
            parse_auth(&md5).unwrap(),
            AuthRequest::Md5 { salt: [1, 2, 3, 4] }
        );
        assert!(parse_auth(&md5[..6]).is_err());
        let mut sasl = 10i32.to_be_bytes().to_vec();
        sasl.extend_from_slice(b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0");
        assert_eq!(
            parse_auth(&sasl).unwrap(),
            AuthRequest::Sasl {
                mechanisms: vec!["SCRAM-SHA-256-PLUS".into(), "SCRAM-SHA-256".into()]
            }
        );
        assert!(matches!(
            parse_auth(&7i32.to_be_bytes()).unwrap(),
            AuthRequest::Unsupported(_)
        ));
    }

    fn policy(channel_binding: ChannelBindingMode) -> Policy<'static> {
        Policy {
            user: "relay",
            password: Some("pw"),
            require_auth: RequireAuth::ANY,
            channel_binding,
            allow_password_without_verified_tls: false,
        }
    }

    fn tls(end_point: Option<Vec<u8>>) -> Channel {
        Channel::Tls {
            verified: false,
            end_point,
        }
    }

    /// Mechanism and the GS2 header the client-first message starts with.
    fn chosen(
        mode: ChannelBindingMode,
        mechanisms: &[&str],
        channel: Channel,
    ) -> Result<(&'static str, String), PgWireError> {
        let mechanisms: Vec<String> = mechanisms.iter().map(|m| m.to_string()).collect();
        let (mechanism, binding) = policy(mode).choose_sasl(&mechanisms, &channel)?;
        let first = ScramSha256::new(b"pw", binding).message().to_vec();
        let gs2 = String::from_utf8(first)
            .unwrap()
            .split(",,")
            .next()
            .unwrap()
            .to_owned();
        Ok((mechanism, gs2))
    }

    #[test]
    fn sasl_choice() {
        use ChannelBindingMode::*;
        let both = ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"];
        let plus = ("SCRAM-SHA-256-PLUS", "p=tls-server-end-point".to_string());
        let unbound = ("SCRAM-SHA-256", "n".to_string());
        assert_eq!(chosen(Prefer, &both, tls(Some(vec![1]))).unwrap(), plus);
        assert_eq!(chosen(Require, &both, tls(Some(vec![1]))).unwrap(), plus);
        assert_eq!(chosen(Disable, &both, tls(Some(vec![1]))).unwrap(), unbound);
        assert_eq!(chosen(Prefer, &both, Channel::Plain).unwrap(), unbound);
        // A certificate without binding data: no longer silent under require.
        assert_eq!(chosen(Prefer, &both, tls(None)).unwrap(), unbound);
        let e = chosen(Require, &both, tls(None)).unwrap_err().to_string();
        assert!(
            e.contains("channel_binding=require") && e.contains("RSASSA-PSS"),
            "{e}"
        );
        assert_eq!(
            chosen(Prefer, &["SCRAM-SHA-256"], tls(Some(vec![1]))).unwrap(),
            ("SCRAM-SHA-256", "y".into())
        );
        assert_eq!(
            chosen(Prefer, &["SCRAM-SHA-256"], Channel::Plain).unwrap(),
            unbound
        );
        let e = chosen(Require, &["SCRAM-SHA-256"], tls(Some(vec![1])))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("channel_binding=require") && e.contains("relay"),
            "{e}"
        );
        let err = chosen(Prefer, &["SCRAM-SHA-256-PLUS"], Channel::Plain).unwrap_err();
        assert!(
            err.to_string().contains("SCRAM-SHA-256-PLUS") && err.to_string().contains("relay"),
            "{err}"
        );
        assert!(chosen(Disable, &["SCRAM-SHA-256-PLUS"], tls(Some(vec![1]))).is_err());
        assert!(chosen(Prefer, &["OAUTHBEARER"], Channel::Plain).is_err());
    }
}

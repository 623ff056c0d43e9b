//! The authentication exchange after the startup message: trust, cleartext,
//! MD5 and SCRAM-SHA-256 (with channel binding when TLS provides it).

use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{self, ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::PgWireError;
use crate::frame::{parse_error_fields, tag, Body, FrameReader};
use crate::transport::MessageWriter;

const AUTH_OK: i32 = 0;
const AUTH_KERBEROS_V5: i32 = 2;
const AUTH_CLEARTEXT: i32 = 3;
const AUTH_MD5: i32 = 5;
const AUTH_SCM_CREDENTIAL: i32 = 6;
const AUTH_GSS: i32 = 7;
const AUTH_SSPI: i32 = 9;
const AUTH_SASL: i32 = 10;
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

/// Picks the SASL mechanism and the channel-binding flag to send.
fn choose_sasl(
    user: &str,
    mechanisms: &[String],
    tls_end_point: Option<Vec<u8>>,
) -> Result<(&'static str, ChannelBinding), PgWireError> {
    let plain = mechanisms.iter().any(|m| m == sasl::SCRAM_SHA_256);
    let plus = mechanisms.iter().any(|m| m == sasl::SCRAM_SHA_256_PLUS);
    match (plain, plus, tls_end_point) {
        (_, true, Some(data)) => Ok((sasl::SCRAM_SHA_256_PLUS, ChannelBinding::tls_server_end_point(data))),
        // "y": we could bind but the server did not offer it. The server
        // rejects "y" when it did offer binding, hence "n" in that case.
        (true, false, Some(_)) => Ok((sasl::SCRAM_SHA_256, ChannelBinding::unrequested())),
        (true, _, _) => Ok((sasl::SCRAM_SHA_256, ChannelBinding::unsupported())),
        (false, true, None) => Err(PgWireError::Auth {
            user: user.to_owned(),
            reason: "the server offers only SCRAM-SHA-256-PLUS, which needs channel binding this TLS session \
                     cannot provide (or there is no TLS)"
                .into(),
        }),
        (false, false, _) => Err(PgWireError::Auth {
            user: user.to_owned(),
            reason: format!("no supported SASL mechanism among {mechanisms:?}"),
        }),
    }
}

pub(crate) async fn authenticate<R, W>(
    reader: &mut FrameReader<R>,
    writer: &mut MessageWriter<W>,
    user: &str,
    password: Option<&str>,
    tls_end_point: Option<Vec<u8>>,
) -> Result<(), PgWireError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let need_password = || {
        password.ok_or_else(|| PgWireError::Auth {
            user: user.to_owned(),
            reason: "the server asks for a password and none was given".into(),
        })
    };
    let mut tls_end_point = tls_end_point;
    let mut scram: Option<ScramSha256> = None;
    loop {
        let request = next_auth_request(reader).await?;
        match request {
            AuthRequest::Ok => return Ok(()),
            AuthRequest::Cleartext => {
                let pw = need_password()?;
                writer
                    .send(|buf| frontend::password_message(pw.as_bytes(), buf))
                    .await?;
            }
            AuthRequest::Md5 { salt } => {
                let hash = md5_hash(user.as_bytes(), need_password()?.as_bytes(), salt);
                writer
                    .send(|buf| frontend::password_message(hash.as_bytes(), buf))
                    .await?;
            }
            AuthRequest::Sasl { mechanisms } => {
                let pw = need_password()?;
                let (mechanism, binding) = choose_sasl(user, &mechanisms, tls_end_point.take())?;
                let s = ScramSha256::new(pw.as_bytes(), binding);
                writer
                    .send(|buf| frontend::sasl_initial_response(mechanism, s.message(), buf))
                    .await?;
                scram = Some(s);
            }
            AuthRequest::SaslContinue(data) => {
                let s = scram
                    .as_mut()
                    .ok_or_else(|| PgWireError::protocol("SASLContinue before SASL"))?;
                s.update(&data).map_err(|e| PgWireError::Auth {
                    user: user.to_owned(),
                    reason: format!("invalid SCRAM server-first message: {e}"),
                })?;
                writer
                    .send(|buf| frontend::sasl_response(s.message(), buf))
                    .await?;
            }
            AuthRequest::SaslFinal(data) => {
                let s = scram
                    .as_mut()
                    .ok_or_else(|| PgWireError::protocol("SASLFinal before SASL"))?;
                // Proves the server knows the password too, not just accepts ours.
                s.finish(&data).map_err(|e| PgWireError::Auth {
                    user: user.to_owned(),
                    reason: format!("the server's SCRAM signature did not verify: {e}"),
                })?;
            }
            AuthRequest::Unsupported(method) => {
                return Err(PgWireError::Auth {
                    user: user.to_owned(),
                    reason: format!(
                        "the server asks for {method} authentication, which is not supported"
                    ),
                })
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

    /// Mechanism and the GS2 header the client-first message starts with.
    fn chosen(
        mechanisms: &[&str],
        tls: Option<Vec<u8>>,
    ) -> Result<(&'static str, String), PgWireError> {
        let mechanisms: Vec<String> = mechanisms.iter().map(|m| m.to_string()).collect();
        let (mechanism, binding) = choose_sasl("relay", &mechanisms, tls)?;
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
        let both = ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"];
        assert_eq!(
            chosen(&both, Some(vec![1])).unwrap(),
            ("SCRAM-SHA-256-PLUS", "p=tls-server-end-point".into())
        );
        assert_eq!(chosen(&both, None).unwrap(), ("SCRAM-SHA-256", "n".into()));
        assert_eq!(
            chosen(&["SCRAM-SHA-256"], Some(vec![1])).unwrap(),
            ("SCRAM-SHA-256", "y".into())
        );
        assert_eq!(
            chosen(&["SCRAM-SHA-256"], None).unwrap(),
            ("SCRAM-SHA-256", "n".into())
        );
        let err = chosen(&["SCRAM-SHA-256-PLUS"], None).unwrap_err();
        assert!(
            err.to_string().contains("SCRAM-SHA-256-PLUS") && err.to_string().contains("relay"),
            "{err}"
        );
        assert!(chosen(&["OAUTHBEARER"], None).is_err());
    }
}

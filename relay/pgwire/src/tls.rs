//! rustls configuration per `sslmode`, and a tokio-postgres `MakeTlsConnect`
//! that uses it, so replication and SQL connections verify servers alike.

use std::fmt;
use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::TlsConnector;

use crate::config::{ConnectOptions, SslMode};
use crate::error::PgWireError;

/// CA bundles of the common distributions, tried in order when no
/// `sslrootcert` is given.
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// ALPN name PostgreSQL 17+ understands; older servers ignore it. libpq 17
/// sends it too.
const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// Always ring, chosen explicitly so that no process-wide default provider
/// has to be installed (and no other crate's choice can interfere).
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The rustls client configuration for `sslmode`. `Disable` gets an
/// unverifying configuration too, because tokio-postgres asks for a
/// connector even when it will not use it.
pub fn client_config(
    sslmode: SslMode,
    sslrootcert: Option<&Path>,
) -> Result<Arc<ClientConfig>, PgWireError> {
    let provider = provider();
    let algorithms = provider.signature_verification_algorithms;
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| PgWireError::TlsConfig(e.to_string()))?;
    let mut config = match sslmode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NameBlindVerification {
                roots: None,
                algorithms,
            }))
            .with_no_client_auth(),
        SslMode::VerifyCa => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NameBlindVerification {
                roots: Some(Arc::new(load_roots(sslrootcert)?)),
                algorithms,
            }))
            .with_no_client_auth(),
        SslMode::VerifyFull => builder
            .with_root_certificates(load_roots(sslrootcert)?)
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
    Ok(Arc::new(config))
}

/// Trusted roots from `sslrootcert`, or the system bundle when it is absent
/// or is libpq's special value `system`.
pub fn load_roots(sslrootcert: Option<&Path>) -> Result<RootCertStore, PgWireError> {
    let path = match sslrootcert {
        Some(p) if p != Path::new("system") => p.to_path_buf(),
        _ => {
            let env = std::env::var_os("SSL_CERT_FILE").map(std::path::PathBuf::from);
            env.into_iter()
                .chain(SYSTEM_CA_BUNDLES.iter().map(Into::into))
                .find(|p| p.is_file())
                .ok_or_else(|| {
                    PgWireError::TlsConfig(format!(
                        "certificate verification needs sslrootcert, and no system CA bundle was found (tried {})",
                        SYSTEM_CA_BUNDLES.join(", ")
                    ))
                })?
        }
    };
    let pem = std::fs::read(&path).map_err(|e| {
        PgWireError::TlsConfig(format!("cannot read sslrootcert {}: {e}", path.display()))
    })?;
    let certs = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            PgWireError::TlsConfig(format!("cannot parse sslrootcert {}: {e}", path.display()))
        })?;
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(PgWireError::TlsConfig(format!(
            "no usable CA certificates in {}",
            path.display()
        )));
    }
    Ok(roots)
}

/// The name the certificate is checked against (and SNI, for DNS names).
pub fn server_name(host: &str) -> Result<ServerName<'static>, PgWireError> {
    ServerName::try_from(host.to_owned()).map_err(|e| {
        PgWireError::Config(format!(
            "host {host:?} is neither a DNS name nor an IP address: {e}"
        ))
    })
}

/// The verifier of the modes that do not check the server's name.
///
/// - `sslmode=prefer/require` (`roots: None`): the server is not authenticated.
/// - `sslmode=verify-ca` (`roots: Some`): the chain must lead to a trusted root; the
///   names in the certificate are not looked at.
///
/// In both, the handshake signatures are still checked, so that the session keys really
/// belong to whoever holds the presented certificate (channel binding relies on that).
struct NameBlindVerification {
    roots: Option<Arc<RootCertStore>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for NameBlindVerification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NameBlindVerification")
            .field("roots", &self.roots.as_ref().map(|r| r.len()))
            .finish()
    }
}

impl ServerCertVerifier for NameBlindVerification {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// `tls-server-end-point` channel binding data (RFC 5929): a hash of the
/// server certificate, with the hash named by its signature algorithm (MD5
/// and SHA-1 upgraded to SHA-256). `None` where no hash is defined
/// (RSASSA-PSS, EdDSA: PostgreSQL cannot bind to those either), which the
/// authentication policy then reports instead of binding silently failing.
pub(crate) fn tls_server_end_point(conn: &rustls::ClientConnection) -> Option<Vec<u8>> {
    end_point_of(conn.peer_certificates()?.first()?)
}

fn end_point_of(cert: &[u8]) -> Option<Vec<u8>> {
    use sha2::Digest;
    Some(match signature_algorithm_oid(cert)? {
        // sha384WithRSAEncryption, ecdsa-with-SHA384
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c]
        | [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03] => sha2::Sha384::digest(cert).to_vec(),
        // sha512WithRSAEncryption, ecdsa-with-SHA512
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d]
        | [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04] => sha2::Sha512::digest(cert).to_vec(),
        // RSASSA-PSS, Ed25519, Ed448: no single hash is defined.
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a]
        | [0x2b, 0x65, 0x70]
        | [0x2b, 0x65, 0x71] => return None,
        _ => sha2::Sha256::digest(cert).to_vec(),
    })
}

/// The signatureAlgorithm OID of a DER certificate:
/// `SEQUENCE { tbsCertificate, SEQUENCE { OID, .. }, BIT STRING }`.
fn signature_algorithm_oid(cert: &[u8]) -> Option<&[u8]> {
    fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (first as usize, rest)
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | b as usize);
            (len, &rest[n..])
        };
        if rest.len() < len {
            return None;
        }
        Some((tag, &rest[..len], &rest[len..]))
    }
    let (0x30, cert, _) = tlv(cert)? else {
        return None;
    };
    let (_, _tbs, rest) = tlv(cert)?;
    let (0x30, alg, _) = tlv(rest)? else {
        return None;
    };
    let (0x06, oid, _) = tlv(alg)? else {
        return None;
    };
    Some(oid)
}

/// tokio-postgres TLS with the same per-`sslmode` verification as the
/// replication client.
#[derive(Clone)]
pub struct MakeRustlsConnect {
    config: Arc<ClientConfig>,
}

impl MakeRustlsConnect {
    pub fn new(config: Arc<ClientConfig>) -> Self {
        MakeRustlsConnect { config }
    }

    pub fn from_options(opts: &ConnectOptions) -> Result<Self, PgWireError> {
        Ok(Self::new(client_config(
            opts.sslmode,
            opts.sslrootcert.as_deref(),
        )?))
    }
}

impl<S> tokio_postgres::tls::MakeTlsConnect<S> for MakeRustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, host: &str) -> io::Result<RustlsConnect> {
        let name = server_name(host)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        Ok(RustlsConnect {
            connector: TlsConnector::from(self.config.clone()),
            name,
        })
    }
}

pub struct RustlsConnect {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl<S> tokio_postgres::tls::TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            self.connector
                .connect(self.name, stream)
                .await
                .map(RustlsStream)
        })
    }
}

pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> tokio_postgres::tls::ChannelBinding {
        match tls_server_end_point(self.0.get_ref().1) {
            Some(data) => tokio_postgres::tls::ChannelBinding::tls_server_end_point(data),
            None => tokio_postgres::tls::ChannelBinding::none(),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names() {
        assert!(matches!(
            server_name("localhost").unwrap(),
            ServerName::DnsName(_)
        ));
        assert!(matches!(
            server_name("127.0.0.1").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("::1").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(server_name("not a host").is_err());
    }

    #[test]
    fn missing_root_file_is_a_config_error() {
        let err =
            client_config(SslMode::VerifyFull, Some(Path::new("/nonexistent/ca.crt"))).unwrap_err();
        assert!(matches!(err, PgWireError::TlsConfig(_)), "{err}");
        assert!(err.to_string().contains("/nonexistent/ca.crt"), "{err}");
        assert!(client_config(SslMode::Require, Some(Path::new("/nonexistent/ca.crt"))).is_ok());
    }

    #[test]
    fn finds_signature_algorithm() {
        // SEQUENCE { SEQUENCE {}, SEQUENCE { OID 1.2.840.10045.4.3.2 }, BIT STRING {} }
        let cert = [
            0x30, 0x10, 0x30, 0x00, 0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04,
            0x03, 0x02, 0x03, 0x00,
        ];
        assert_eq!(
            signature_algorithm_oid(&cert),
            Some(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02][..])
        );
        assert_eq!(signature_algorithm_oid(&cert[..10]), None);
        assert_eq!(end_point_of(&cert).map(|h| h.len()), Some(32));
        assert_eq!(signature_algorithm_oid(&[]), None);
    }

    /// Same shape with another signatureAlgorithm OID (8 or 9 bytes, or 3).
    fn cert_signed_with(oid: &[u8]) -> Vec<u8> {
        let alg_len = 2 + oid.len();
        let mut v = vec![
            0x30,
            (2 + 2 + alg_len + 2) as u8,
            0x30,
            0x00,
            0x30,
            alg_len as u8,
        ];
        v.extend_from_slice(&[0x06, oid.len() as u8]);
        v.extend_from_slice(oid);
        v.extend_from_slice(&[0x03, 0x00]);
        v
    }

    #[test]
    fn end_point_hash_follows_the_signature_algorithm() {
        let len = |oid: &[u8]| end_point_of(&cert_signed_with(oid)).map(|h| h.len());
        // sha256WithRSAEncryption, sha1WithRSAEncryption (upgraded to SHA-256)
        assert_eq!(
            len(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b]),
            Some(32)
        );
        assert_eq!(
            len(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05]),
            Some(32)
        );
        assert_eq!(
            len(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03]),
            Some(48)
        );
        // SHA-512 signatures used to lose channel binding without a word.
        assert_eq!(
            len(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d]),
            Some(64)
        );
        assert_eq!(
            len(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04]),
            Some(64)
        );
        assert_eq!(
            len(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a]),
            None
        );
        assert_eq!(len(&[0x2b, 0x65, 0x70]), None);
    }
}

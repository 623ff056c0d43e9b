//! sslmode semantics against the local cluster, whose certificate is signed
//! by `ca.crt` and names only DNS:localhost.

mod common;

use std::path::PathBuf;

use common::*;
use outbox_pgwire::{connect_sql, ConnectOptions, PgWireError, ReplicationClient, SslMode};

fn tls_opts(host: &str, sslmode: SslMode, root: Option<&str>) -> ConnectOptions {
    let mut o = opts("relay_scram", Some("relay_scram"));
    o.host = host.to_owned();
    o.sslmode = sslmode;
    o.sslrootcert = root.map(|f| tls_dir().join(f));
    o
}

/// Connects both ways and returns whether each connection is encrypted, as
/// the server sees it.
async fn connect_both(o: &ConnectOptions) -> Result<(bool, bool), (PgWireError, PgWireError)> {
    let _ = admin().await;
    let repl = ReplicationClient::connect(o).await;
    let sql = connect_sql(o).await;
    match (repl, sql) {
        (Ok(mut repl), Ok((sql, _task))) => {
            let repl_ssl = repl_scalar(
                &mut repl,
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            )
            .await;
            assert_eq!(repl.is_tls(), repl_ssl.as_deref() == Some("t"));
            repl.close().await.unwrap();
            Ok((repl_ssl.as_deref() == Some("t"), sql_uses_ssl(&sql).await))
        }
        (Err(a), Err(b)) => Err((a, b)),
        (repl, sql) => panic!(
            "replication and SQL connections disagree for {o:?}: replication {:?}, sql {:?}",
            repl.map(|_| ()),
            sql.map(|_| ())
        ),
    }
}

async fn expect_encrypted(o: ConnectOptions) {
    let (repl, sql) = connect_both(&o)
        .await
        .unwrap_or_else(|e| panic!("{o:?} should connect: {e:?}"));
    assert!(repl && sql, "{o:?}: replication ssl={repl}, sql ssl={sql}");
}

async fn expect_certificate_rejected(
    o: ConnectOptions,
    want: &str,
    is_wanted: fn(&rustls::CertificateError) -> bool,
) {
    let Err((repl, sql)) = connect_both(&o).await else {
        panic!("{o:?} must not connect")
    };
    for e in [repl, sql] {
        match &e {
            PgWireError::Tls {
                source: rustls::Error::InvalidCertificate(got),
                ..
            } => {
                assert!(is_wanted(got), "{o:?}: expected {want}, got {got:?}");
            }
            other => panic!("{o:?}: expected a certificate error, got {other:?}"),
        }
        assert!(!e.is_retryable(), "{e}");
    }
}

#[tokio::test]
async fn disable_is_plaintext() {
    let (repl, sql) = connect_both(&tls_opts("127.0.0.1", SslMode::Disable, None))
        .await
        .unwrap();
    assert!(!repl && !sql);
}

#[tokio::test]
async fn prefer_encrypts_when_offered() {
    expect_encrypted(tls_opts("127.0.0.1", SslMode::Prefer, None)).await;
}

#[tokio::test]
async fn require_without_ca_encrypts() {
    expect_encrypted(tls_opts("127.0.0.1", SslMode::Require, None)).await;
    // Not verifying means an unrelated CA does not matter either.
    expect_encrypted(tls_opts(
        "127.0.0.1",
        SslMode::Require,
        Some("other-ca.crt"),
    ))
    .await;
}

#[tokio::test]
async fn verify_full_by_dns_name() {
    expect_encrypted(tls_opts("localhost", SslMode::VerifyFull, Some("ca.crt"))).await;
}

#[tokio::test]
async fn verify_full_by_ip_fails_on_the_name() {
    expect_certificate_rejected(
        tls_opts("127.0.0.1", SslMode::VerifyFull, Some("ca.crt")),
        "a name mismatch",
        |e| {
            matches!(
                e,
                rustls::CertificateError::NotValidForName
                    | rustls::CertificateError::NotValidForNameContext { .. }
            )
        },
    )
    .await;
}

#[tokio::test]
async fn verify_ca_ignores_the_name() {
    expect_encrypted(tls_opts("127.0.0.1", SslMode::VerifyCa, Some("ca.crt"))).await;
    expect_encrypted(tls_opts("localhost", SslMode::VerifyCa, Some("ca.crt"))).await;
}

#[tokio::test]
async fn verify_ca_with_other_ca_fails() {
    expect_certificate_rejected(
        tls_opts("127.0.0.1", SslMode::VerifyCa, Some("other-ca.crt")),
        "an unknown issuer",
        |e| matches!(e, rustls::CertificateError::UnknownIssuer),
    )
    .await;
    expect_certificate_rejected(
        tls_opts("localhost", SslMode::VerifyFull, Some("other-ca.crt")),
        "an unknown issuer",
        |e| matches!(e, rustls::CertificateError::UnknownIssuer),
    )
    .await;
}

#[tokio::test]
async fn verify_without_system_trust_fails() {
    // The throwaway CA is in no system bundle, so relying on system roots
    // must reject the server.
    let o = tls_opts("localhost", SslMode::VerifyFull, None);
    if !PathBuf::from("/etc/ssl/certs/ca-certificates.crt").is_file() {
        let e = ReplicationClient::connect(&o).await.unwrap_err();
        assert!(matches!(e, PgWireError::TlsConfig(_)), "{e:?}");
        return;
    }
    expect_certificate_rejected(o, "an unknown issuer", |e| {
        matches!(e, rustls::CertificateError::UnknownIssuer)
    })
    .await;
}

#[tokio::test]
async fn unreadable_root_file_is_a_config_error() {
    let mut o = tls_opts("localhost", SslMode::VerifyFull, None);
    o.sslrootcert = Some(PathBuf::from("/nonexistent/outbox-relay/ca.crt"));
    for e in [
        ReplicationClient::connect(&o).await.unwrap_err(),
        connect_sql(&o).await.unwrap_err(),
    ] {
        assert!(matches!(e, PgWireError::TlsConfig(_)), "{e:?}");
        assert!(!e.is_retryable());
    }
}

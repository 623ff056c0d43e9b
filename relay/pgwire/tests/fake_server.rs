//! Protocol paths the real test cluster cannot show (a server without TLS,
//! SCRAM-PLUS only, hand-made replication messages), against a scripted
//! server on a loopback socket. Needs no database.

#[path = "common/scram_server.rs"]
mod scram_server;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use outbox_pgwire::{
    AuthMethod, ChannelBinding, ConnectOptions, Lsn, PgWireError, ReplicationClient,
    ReplicationMessage, RequireAuth, SslMode,
};
use scram_server::ScramServer;
use sha2::Digest;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// The server's end, plaintext or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
type Conn = Box<dyn Io>;

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn auth(code: i32, extra: &[u8]) -> Vec<u8> {
    let mut body = code.to_be_bytes().to_vec();
    body.extend_from_slice(extra);
    msg(b'R', &body)
}

fn ready_sequence() -> Vec<u8> {
    let mut v = auth(0, b"");
    v.extend(msg(b'S', b"server_version\x0015.0\0"));
    v.extend(msg(b'K', &[0, 0, 0, 42, 0, 0, 0, 7]));
    v.extend(msg(
        b'N',
        b"SNOTICE\0VNOTICE\0C00000\0Mhello from the fake\0\0",
    ));
    v.extend(msg(b'Z', b"I"));
    v
}

/// Reads one untagged startup-phase packet (SSLRequest or StartupMessage).
async fn read_startup_packet<S: AsyncRead + Unpin>(s: &mut S) -> Vec<u8> {
    let len = s.read_i32().await.unwrap() as usize;
    let mut body = vec![0; len - 4];
    s.read_exact(&mut body).await.unwrap();
    body
}

/// Reads one tagged frontend message.
async fn read_message<S: AsyncRead + Unpin>(s: &mut S) -> (u8, Vec<u8>) {
    let tag = s.read_u8().await.unwrap();
    let len = s.read_i32().await.unwrap() as usize;
    let mut body = vec![0; len - 4];
    s.read_exact(&mut body).await.unwrap();
    (tag, body)
}

/// Answers SSLRequest with 'N', checks the startup message, then runs `rest`.
async fn fake_server<F, Fut>(rest: F) -> (ConnectOptions, tokio::task::JoinHandle<()>)
where
    F: FnOnce(Conn) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    fake_server_with(None, rest).await
}

/// The local cluster's TLS material (deploy/local/postgres.sh): a server
/// certificate for `localhost` (ECDSA with SHA-256) and the CA that signed it.
fn tls_dir() -> PathBuf {
    let run = std::env::var("OUTBOX_RELAY_RUN").unwrap_or_else(|_| "/tmp/outbox-relay".into());
    std::env::var("OUTBOX_RELAY_PG_TLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(format!("{run}/pg-tls")))
}

fn server_tls() -> (Arc<rustls::ServerConfig>, Vec<u8>) {
    let dir = tls_dir();
    let pem = |name: &str| {
        std::fs::read(dir.join(name)).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run deploy/local/postgres.sh start once to create it)",
                dir.join(name).display()
            )
        })
    };
    let certs = rustls_pemfile::certs(&mut &pem("server.crt")[..])
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pemfile::private_key(&mut &pem("server.key")[..])
        .unwrap()
        .unwrap();
    let end_point = sha2::Sha256::digest(certs[0].as_ref()).to_vec();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    (Arc::new(config), end_point)
}

/// Like `fake_server`, but answers SSLRequest with 'S' and runs TLS with the
/// local cluster's server certificate when `tls` is given.
async fn fake_server_with<F, Fut>(
    tls: Option<Arc<rustls::ServerConfig>>,
    rest: F,
) -> (ConnectOptions, tokio::task::JoinHandle<()>)
where
    F: FnOnce(Conn) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let first = read_startup_packet(&mut tcp).await;
        let (mut s, startup): (Conn, Vec<u8>) = if first == 80877103i32.to_be_bytes() {
            match tls {
                Some(config) => {
                    tcp.write_all(b"S").await.unwrap();
                    let mut s = tokio_rustls::TlsAcceptor::from(config)
                        .accept(tcp)
                        .await
                        .unwrap();
                    let startup = read_startup_packet(&mut s).await;
                    (Box::new(s), startup)
                }
                None => {
                    tcp.write_all(b"N").await.unwrap();
                    let startup = read_startup_packet(&mut tcp).await;
                    (Box::new(tcp), startup)
                }
            }
        } else {
            (Box::new(tcp), first)
        };
        assert_eq!(&startup[..4], &0x0003_0000i32.to_be_bytes(), "protocol 3.0");
        let params = String::from_utf8_lossy(&startup[4..]).into_owned();
        assert!(params.contains("replication\0database\0"), "{params:?}");
        assert!(params.contains("user\0tester\0"), "{params:?}");
        s.flush().await.unwrap();
        rest(s).await;
    });
    let mut o = ConnectOptions::new("127.0.0.1", port, "tester", "db");
    o.password = Some("pw".into());
    o.connect_timeout = Duration::from_secs(5);
    (o, task)
}

#[tokio::test]
async fn prefer_falls_back_to_plaintext() {
    let (mut o, server) = fake_server(|mut s| async move {
        s.write_all(&ready_sequence()).await.unwrap();
        assert_eq!(read_message(&mut s).await.0, b'X', "Terminate");
    })
    .await;
    o.sslmode = SslMode::Prefer;
    let c = ReplicationClient::connect(&o).await.unwrap();
    assert!(!c.is_tls());
    assert_eq!(c.backend_pid(), Some(42));
    assert_eq!(c.parameter("server_version"), Some("15.0"));
    c.close().await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn require_refuses_a_server_without_tls() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        assert_eq!(read_startup_packet(&mut s).await, 80877103i32.to_be_bytes());
        s.write_all(b"N").await.unwrap();
    });
    let mut o = ConnectOptions::new("127.0.0.1", port, "tester", "db");
    o.sslmode = SslMode::Require;
    let e = ReplicationClient::connect(&o).await.unwrap_err();
    assert!(matches!(e, PgWireError::TlsNotSupported { .. }), "{e:?}");
    assert!(!e.is_retryable());
    server.await.unwrap();
}

#[tokio::test]
async fn scram_plus_only_without_tls_is_a_clear_error() {
    let (mut o, server) = fake_server(|mut s| async move {
        s.write_all(&auth(10, b"SCRAM-SHA-256-PLUS\0\0"))
            .await
            .unwrap();
        // The client gives up; it must not send a SASL response.
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
        assert!(rest.is_empty() || rest[0] == b'X', "{rest:?}");
    })
    .await;
    o.sslmode = SslMode::Disable;
    let e = ReplicationClient::connect(&o).await.unwrap_err();
    assert!(matches!(e, PgWireError::Auth { .. }), "{e:?}");
    assert!(
        e.to_string().contains("SCRAM-SHA-256-PLUS") && e.to_string().contains("tester"),
        "{e}"
    );
    server.await.unwrap();
}

#[tokio::test]
async fn cleartext_password_is_sent_on_plaintext_only_when_allowed() {
    let (mut o, server) = fake_server(|mut s| async move {
        s.write_all(&auth(3, b"")).await.unwrap();
        assert_eq!(read_message(&mut s).await, (b'p', b"pw\0".to_vec()));
        s.write_all(&ready_sequence()).await.unwrap();
    })
    .await;
    o.sslmode = SslMode::Disable;
    o.allow_password_without_verified_tls = true;
    ReplicationClient::connect(&o).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn server_that_never_answers_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (_s, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
    });
    let mut o = ConnectOptions::new("127.0.0.1", port, "tester", "db");
    o.connect_timeout = Duration::from_millis(300);
    let e = ReplicationClient::connect(&o).await.unwrap_err();
    assert!(matches!(e, PgWireError::ConnectTimeout { .. }), "{e:?}");
    assert!(e.is_retryable());
    server.abort();
}

#[tokio::test]
async fn streams_hand_made_messages_and_encodes_status() {
    let (mut o, server) = fake_server(|mut s| async move {
        s.write_all(&ready_sequence()).await.unwrap();
        let (tag, body) = read_message(&mut s).await;
        assert_eq!(tag, b'Q');
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "START_REPLICATION SLOT \"s\" LOGICAL 1/2 (\"proto_version\" '1', \"publication_names\" '\"p\"')\0"
        );
        s.write_all(&msg(b'W', &[0, 0, 0])).await.unwrap();

        let mut out = BytesMut::new();
        // Keepalive asking for a reply.
        let mut k = vec![b'k'];
        k.extend_from_slice(&0x1_0000_0100u64.to_be_bytes());
        k.extend_from_slice(&123i64.to_be_bytes());
        k.push(1);
        out.extend_from_slice(&msg(b'd', &k));
        // XLogData of 1 MB, sent in small pieces below.
        let mut w = vec![b'w'];
        w.extend_from_slice(&0x1_0000_0200u64.to_be_bytes());
        w.extend_from_slice(&0x1_0000_0300u64.to_be_bytes());
        w.extend_from_slice(&456i64.to_be_bytes());
        w.push(b'I');
        w.extend(std::iter::repeat_n(b'x', 1 << 20));
        out.extend_from_slice(&msg(b'd', &w));
        out.extend_from_slice(&msg(b'S', b"application_name\0x\0"));
        out.extend_from_slice(&msg(b'c', b""));
        for piece in out.chunks(1000) {
            s.write_all(piece).await.unwrap();
        }

        let (tag, body) = read_message(&mut s).await;
        assert_eq!(tag, b'd');
        assert_eq!(body.len(), 34);
        assert_eq!(body[0], b'r');
        assert_eq!(&body[1..9], &0x1_0000_0300u64.to_be_bytes(), "write");
        assert_eq!(&body[9..17], &0x1_0000_0200u64.to_be_bytes(), "flush");
        assert_eq!(&body[17..25], &0u64.to_be_bytes(), "apply");
        assert_eq!(body[33], 0);
        assert_eq!(read_message(&mut s).await, (b'c', vec![]));
        assert_eq!(read_message(&mut s).await, (b'X', vec![]));
    })
    .await;
    o.sslmode = SslMode::Prefer;
    let c = ReplicationClient::connect(&o).await.unwrap();
    let (mut stream, mut status) = c
        .start_logical_replication(
            "s",
            Lsn(0x1_0000_0002),
            &[("proto_version", "1"), ("publication_names", "\"p\"")],
        )
        .await
        .unwrap();
    assert_eq!(
        stream.next().await.unwrap(),
        Some(ReplicationMessage::PrimaryKeepalive {
            wal_end: Lsn(0x1_0000_0100),
            server_time: 123,
            reply_requested: true
        })
    );
    match stream.next().await.unwrap() {
        Some(ReplicationMessage::XLogData {
            wal_start,
            wal_end,
            server_time,
            data,
        }) => {
            assert_eq!(
                (wal_start, wal_end, server_time),
                (Lsn(0x1_0000_0200), Lsn(0x1_0000_0300), 456)
            );
            assert_eq!(data.len(), 1 + (1 << 20));
            assert_eq!(data[0], b'I');
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        stream.next().await.unwrap(),
        None,
        "CopyDone ends the stream"
    );
    assert_eq!(stream.next().await.unwrap(), None);
    status
        .send_status(Lsn(0x1_0000_0300), Lsn(0x1_0000_0200), Lsn(0), false)
        .await
        .unwrap();
    status.finish().await.unwrap();
    server.await.unwrap();
}

/// A walsender whose server is shutting down (fast or smart) ends the stream with
/// CommandComplete "COPY 0" and no CopyDone (walsender.c, WalSndDone), then exits: the end
/// of the stream, not a protocol violation.
#[tokio::test]
async fn a_server_shutdown_ends_the_stream_with_command_complete() {
    let (mut o, server) = fake_server(|mut s| async move {
        s.write_all(&ready_sequence()).await.unwrap();
        read_message(&mut s).await;
        let mut out = BytesMut::new();
        out.put_slice(&msg(b'W', &[0, 0, 0]));
        let mut k = vec![b'k'];
        k.extend_from_slice(&0x500u64.to_be_bytes());
        k.extend_from_slice(&1i64.to_be_bytes());
        k.push(0);
        out.put_slice(&msg(b'd', &k));
        out.put_slice(&msg(b'C', b"COPY 0\0"));
        s.write_all(&out).await.unwrap();
    })
    .await;
    o.sslmode = SslMode::Disable;
    let c = ReplicationClient::connect(&o).await.unwrap();
    let (mut stream, _status) = c.start_logical_replication("s", Lsn(0), &[]).await.unwrap();
    assert!(matches!(
        stream.next().await.unwrap(),
        Some(ReplicationMessage::PrimaryKeepalive { .. })
    ));
    assert_eq!(
        stream.next().await.unwrap(),
        None,
        "CommandComplete ends the stream"
    );
    assert_eq!(stream.next().await.unwrap(), None);
    server.await.unwrap();
}

#[tokio::test]
async fn error_during_streaming_carries_the_sqlstate() {
    let (mut o, server) = fake_server(|mut s| async move {
        s.write_all(&ready_sequence()).await.unwrap();
        read_message(&mut s).await;
        let mut out = BytesMut::new();
        out.put_slice(&msg(b'W', &[0, 0, 0]));
        out.put_slice(&msg(
            b'E',
            b"SFATAL\0VFATAL\0C57P01\0Mterminating connection due to administrator command\0\0",
        ));
        s.write_all(&out).await.unwrap();
    })
    .await;
    o.sslmode = SslMode::Disable;
    let c = ReplicationClient::connect(&o).await.unwrap();
    let (mut stream, _status) = c.start_logical_replication("s", Lsn(0), &[]).await.unwrap();
    let e = stream.next().await.unwrap_err();
    assert_eq!(e.sqlstate(), Some("57P01"));
    assert_eq!(e.server_error().unwrap().severity, "FATAL");
    assert!(e.is_retryable(), "{e}");
    server.await.unwrap();
    // The server is gone now: reading further is a closed connection.
    assert!(matches!(
        stream.next().await,
        Err(PgWireError::ConnectionClosed)
    ));
}

// Authentication policy (issue 11, item 5): what a man in the middle, or a
// server that merely pretends, can get out of the client.

async fn send(s: &mut Conn, bytes: &[u8]) {
    s.write_all(bytes).await.unwrap();
    s.flush().await.unwrap();
}

/// The client hung up without answering: nothing, or only Terminate.
async fn assert_nothing_answered(mut s: Conn) {
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest).await;
    assert!(
        rest.is_empty() || rest[0] == b'X',
        "the client answered: {rest:?}"
    );
}

fn assert_refused(e: &PgWireError, words: &[&str]) {
    assert!(matches!(e, PgWireError::Auth { .. }), "{e:?}");
    assert!(!e.is_retryable(), "a refusal is final: {e}");
    let text = e.to_string();
    assert!(text.contains("tester"), "names the user: {text}");
    for w in words {
        assert!(text.contains(w), "{w:?} missing from: {text}");
    }
}

fn md5_request() -> Vec<u8> {
    auth(5, &[1, 2, 3, 4])
}

/// Runs a SCRAM exchange as the server up to (not including) the server-final
/// message; returns the server-final message it would send.
async fn scram_until_final(s: &mut Conn, mechanisms: &[u8], binding_data: &[u8]) -> String {
    send(s, &auth(10, mechanisms)).await;
    let (tag, initial) = read_message(s).await;
    assert_eq!(tag, b'p');
    let (scram, mechanism, server_first) = ScramServer::start("pw", &initial);
    let expected = if binding_data.is_empty() {
        "SCRAM-SHA-256"
    } else {
        "SCRAM-SHA-256-PLUS"
    };
    assert_eq!(mechanism, expected, "{}", scram.gs2_header());
    send(s, &auth(11, server_first.as_bytes())).await;
    let (tag, client_final) = read_message(s).await;
    assert_eq!(tag, b'p');
    scram.finish(&client_final, binding_data)
}

#[tokio::test]
async fn prefer_downgraded_to_plaintext_sends_no_cleartext_password() {
    let (mut o, server) = fake_server(|mut s| async move {
        send(&mut s, &auth(3, b"")).await;
        assert_nothing_answered(s).await;
    })
    .await;
    o.sslmode = SslMode::Prefer;
    let e = ReplicationClient::connect(&o).await.unwrap_err();
    assert_refused(
        &e,
        &[
            "cleartext password",
            "plaintext",
            "verify-full",
            "allow_password_without_verified_tls",
        ],
    );
    server.await.unwrap();
}

#[tokio::test]
async fn md5_over_plaintext_is_refused() {
    let (mut o, server) = fake_server(|mut s| async move {
        send(&mut s, &md5_request()).await;
        assert_nothing_answered(s).await;
    })
    .await;
    o.sslmode = SslMode::Disable;
    let e = ReplicationClient::connect(&o).await.unwrap_err();
    assert_refused(
        &e,
        &["MD5", "plaintext", "allow_password_without_verified_tls"],
    );
    server.await.unwrap();
}

#[tokio::test]
async fn md5_over_unverified_tls_is_refused() {
    let (config, _) = server_tls();
    let (mut o, server) = fake_server_with(Some(config), |mut s| async move {
        send(&mut s, &md5_request()).await;
        assert_nothing_answered(s).await;
    })
    .await;
    o.sslmode = SslMode::Require;
    let e = ReplicationClient::connect(&o).await.unwrap_err();
    assert_refused(&e, &["MD5", "not verified"]);
    server.await.unwrap();
}

#[tokio::test]
async fn md5_is_answered_when_allowed() {
    let (mut o, server) = fake_server(|mut s| async move {
        send(&mut s, &md5_request()).await;
        let expected = postgres_protocol::authentication::md5_hash(b"tester", b"pw", [1, 2, 3, 4]);
        let mut body = expected.into_bytes();
        body.push(0);
        assert_eq!(read_message(&mut s).await, (b'p', body));
        send(&mut s, &ready_sequence()).await;
    })
    .await;
    o.sslmode = SslMode::Disable;
    o.allow_password_without_verified_tls = true;
    ReplicationClient::connect(&o).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn cleartext_over_verified_tls_needs_no_allowance() {
    let (config, _) = server_tls();
    let (mut o, server) = fake_server_with(Some(config), |mut s| async move {
        send(&mut s, &auth(3, b"")).await;
        assert_eq!(read_message(&mut s).await, (b'p', b"pw\0".to_vec()));
        send(&mut s, &ready_sequence()).await;
    })
    .await;
    o.host = "localhost".into();
    o.sslmode = SslMode::VerifyFull;
    o.sslrootcert = Some(tls_dir().join("ca.crt"));
    let c = ReplicationClient::connect(&o).await.unwrap();
    assert!(c.is_tls());
    server.await.unwrap();
}

#[tokio::test]
async fn scram_with_a_wrong_server_signature_is_refused() {
    let (mut o, server) = fake_server(|mut s| async move {
        let good = scram_until_final(&mut s, b"SCRAM-SHA-256\0\0", b"").await;
        // Same length, wrong bytes: a server that does not know the password.
        let forged = format!("v={}", "A".repeat(good.len() - 2));
        send(&mut s, &auth(12, forged.as_bytes())).await;
        send(&mut s, &ready_sequence()).await;
        let _ = s.read_to_end(&mut Vec::new()).await;
    })
    .await;
    o.sslmode = SslMode::Disable;
    let e = ReplicationClient::connect(&o).await.unwrap_err();
    assert_refused(&e, &["SCRAM signature did not verify"]);
    server.await.unwrap();
}

#[tokio::test]
async fn authentication_ok_without_the_scram_final_message_is_refused() {
    let (mut o, server) = fake_server(|mut s| async move {
        scram_until_final(&mut s, b"SCRAM-SHA-256\0\0", b"").await;
        // Straight to AuthenticationOk: the server never proves it knows the password.
        send(&mut s, &ready_sequence()).await;
        let _ = s.read_to_end(&mut Vec::new()).await;
    })
    .await;
    o.sslmode = SslMode::Disable;
    let e = ReplicationClient::connect(&o).await.unwrap_err();
    assert_refused(&e, &["without its SCRAM final message"]);
    server.await.unwrap();
}

#[tokio::test]
async fn scram_completes_with_a_verified_signature_under_require_auth_scram() {
    let (mut o, server) = fake_server(|mut s| async move {
        let fin = scram_until_final(&mut s, b"SCRAM-SHA-256\0\0", b"").await;
        send(&mut s, &auth(12, fin.as_bytes())).await;
        send(&mut s, &ready_sequence()).await;
        assert_eq!(read_message(&mut s).await.0, b'X', "Terminate");
    })
    .await;
    o.sslmode = SslMode::Disable;
    o.require_auth = RequireAuth::only(&[AuthMethod::ScramSha256]);
    let c = ReplicationClient::connect(&o).await.unwrap();
    assert_eq!(c.backend_pid(), Some(42));
    c.close().await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn require_auth_scram_refuses_md5_even_when_passwords_are_allowed() {
    let (mut o, server) = fake_server(|mut s| async move {
        send(&mut s, &md5_request()).await;
        assert_nothing_answered(s).await;
    })
    .await;
    o.sslmode = SslMode::Disable;
    o.allow_password_without_verified_tls = true;
    o.require_auth = "scram-sha-256".parse().unwrap();
    let e = ReplicationClient::connect(&o).await.unwrap_err();
    assert_refused(&e, &["md5", "require_auth=scram-sha-256"]);
    server.await.unwrap();
}

#[tokio::test]
async fn require_auth_without_none_refuses_a_server_that_asks_nothing() {
    let (mut o, server) = fake_server(|mut s| async move {
        send(&mut s, &ready_sequence()).await;
        let _ = s.read_to_end(&mut Vec::new()).await;
    })
    .await;
    o.sslmode = SslMode::Disable;
    o.require_auth = "!none".parse().unwrap();
    let e = ReplicationClient::connect(&o).await.unwrap_err();
    assert_refused(&e, &["without authentication", "require_auth="]);
    server.await.unwrap();
}

#[tokio::test]
async fn channel_binding_require_refuses_scram_without_plus() {
    let (config, _) = server_tls();
    let (mut o, server) = fake_server_with(Some(config), |mut s| async move {
        send(&mut s, &auth(10, b"SCRAM-SHA-256\0\0")).await;
        assert_nothing_answered(s).await;
    })
    .await;
    o.sslmode = SslMode::Require;
    o.channel_binding = ChannelBinding::Require;
    let e = ReplicationClient::connect(&o).await.unwrap_err();
    assert_refused(&e, &["channel_binding=require", "SCRAM-SHA-256"]);
    server.await.unwrap();
}

#[tokio::test]
async fn channel_binding_require_refuses_cleartext_even_over_verified_tls() {
    let (config, _) = server_tls();
    let (mut o, server) = fake_server_with(Some(config), |mut s| async move {
        send(&mut s, &auth(3, b"")).await;
        assert_nothing_answered(s).await;
    })
    .await;
    o.host = "localhost".into();
    o.sslmode = SslMode::VerifyFull;
    o.sslrootcert = Some(tls_dir().join("ca.crt"));
    o.channel_binding = ChannelBinding::Require;
    let e = ReplicationClient::connect(&o).await.unwrap_err();
    assert_refused(&e, &["channel_binding=require", "cleartext password"]);
    server.await.unwrap();
}

#[tokio::test]
async fn channel_binding_require_binds_to_the_server_certificate() {
    let (config, end_point) = server_tls();
    let (mut o, server) = fake_server_with(Some(config), |mut s| async move {
        // The server checks the binding data: a hash of its own certificate.
        let fin =
            scram_until_final(&mut s, b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0", &end_point).await;
        send(&mut s, &auth(12, fin.as_bytes())).await;
        send(&mut s, &ready_sequence()).await;
        let _ = s.read_to_end(&mut Vec::new()).await;
    })
    .await;
    o.sslmode = SslMode::Require;
    o.channel_binding = ChannelBinding::Require;
    let c = ReplicationClient::connect(&o).await.unwrap();
    assert!(c.is_tls());
    drop(c);
    server.await.unwrap();
}

/// Issue 11, item 2: the walsender prints values with its session settings,
/// so the startup packet pins every one that changes pgoutput's text.
#[tokio::test]
async fn startup_packet_pins_the_output_settings() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let startup = read_startup_packet(&mut s).await;
        s.write_all(&ready_sequence()).await.unwrap();
        let mut pairs = Vec::new();
        let mut fields = startup[4..]
            .split(|&b| b == 0)
            .map(|f| String::from_utf8(f.to_vec()).unwrap());
        while let (Some(k), Some(v)) = (fields.next(), fields.next()) {
            if k.is_empty() {
                break;
            }
            pairs.push((k, v));
        }
        pairs
    });
    let mut o = ConnectOptions::new("127.0.0.1", port, "tester", "db");
    o.sslmode = SslMode::Disable;
    o.application_name = "app".into();
    let c = ReplicationClient::connect(&o).await.unwrap();
    drop(c);
    let pairs = server.await.unwrap();
    let expected: Vec<(String, String)> = [
        ("user", "tester"),
        ("database", "db"),
        ("replication", "database"),
        ("application_name", "app"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO"),
        ("IntervalStyle", "postgres"),
        ("extra_float_digits", "3"),
        ("bytea_output", "hex"),
        ("TimeZone", "UTC"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(pairs, expected);
}

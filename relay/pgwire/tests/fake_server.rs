//! Protocol paths the real test cluster cannot show (a server without TLS,
//! SCRAM-PLUS only, hand-made replication messages), against a scripted
//! server on a loopback socket. Needs no database.

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use outbox_pgwire::{
    ConnectOptions, Lsn, PgWireError, ReplicationClient, ReplicationMessage, SslMode,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

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
async fn read_startup_packet(s: &mut TcpStream) -> Vec<u8> {
    let len = s.read_i32().await.unwrap() as usize;
    let mut body = vec![0; len - 4];
    s.read_exact(&mut body).await.unwrap();
    body
}

/// Reads one tagged frontend message.
async fn read_message(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let tag = s.read_u8().await.unwrap();
    let len = s.read_i32().await.unwrap() as usize;
    let mut body = vec![0; len - 4];
    s.read_exact(&mut body).await.unwrap();
    (tag, body)
}

/// Answers SSLRequest with 'N', checks the startup message, then runs `rest`.
async fn fake_server<F, Fut>(rest: F) -> (ConnectOptions, tokio::task::JoinHandle<()>)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let first = read_startup_packet(&mut s).await;
        let startup = if first == 80877103i32.to_be_bytes() {
            s.write_all(b"N").await.unwrap();
            read_startup_packet(&mut s).await
        } else {
            first
        };
        assert_eq!(&startup[..4], &0x0003_0000i32.to_be_bytes(), "protocol 3.0");
        let params = String::from_utf8_lossy(&startup[4..]).into_owned();
        assert!(params.contains("replication\0database\0"), "{params:?}");
        assert!(params.contains("user\0tester\0"), "{params:?}");
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
async fn cleartext_password_is_sent_when_asked() {
    let (mut o, server) = fake_server(|mut s| async move {
        s.write_all(&auth(3, b"")).await.unwrap();
        assert_eq!(read_message(&mut s).await, (b'p', b"pw\0".to_vec()));
        s.write_all(&ready_sequence()).await.unwrap();
    })
    .await;
    o.sslmode = SslMode::Disable;
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

//! A replication server that goes silent, and one that sends a message above the
//! size limit, against a scripted server on a loopback socket. Needs no database.

use std::time::{Duration, Instant};

use outbox_pgwire::{
    ConnectOptions, Lsn, PgWireError, ReplicationClient, ReplicationMessage, ReplicationStream,
    SslMode, StatusSender,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn keepalive(wal_end: u64) -> Vec<u8> {
    let mut k = vec![b'k'];
    k.extend_from_slice(&wal_end.to_be_bytes());
    k.extend_from_slice(&0i64.to_be_bytes());
    k.push(0);
    msg(b'd', &k)
}

async fn read_message(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let tag = s.read_u8().await.unwrap();
    let len = s.read_i32().await.unwrap() as usize;
    let mut body = vec![0; len - 4];
    s.read_exact(&mut body).await.unwrap();
    (tag, body)
}

/// Accepts one connection, skips the startup packet, says it is ready, waits for
/// START_REPLICATION, enters CopyBoth and hands the socket to `rest`.
async fn replication_server<F, Fut>(rest: F) -> (ConnectOptions, tokio::task::JoinHandle<()>)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let len = s.read_i32().await.unwrap() as usize;
        let mut startup = vec![0; len - 4];
        s.read_exact(&mut startup).await.unwrap();
        let mut ready = msg(b'R', &0i32.to_be_bytes());
        ready.extend(msg(b'Z', b"I"));
        s.write_all(&ready).await.unwrap();
        let (tag, _) = read_message(&mut s).await;
        assert_eq!(tag, b'Q', "START_REPLICATION");
        s.write_all(&msg(b'W', &[0, 0, 0])).await.unwrap();
        rest(s).await;
    });
    let mut o = ConnectOptions::new("127.0.0.1", port, "tester", "db");
    o.sslmode = SslMode::Disable;
    o.connect_timeout = Duration::from_secs(5);
    (o, task)
}

async fn start(o: &ConnectOptions) -> (ReplicationStream, StatusSender) {
    ReplicationClient::connect(o)
        .await
        .unwrap()
        .start_logical_replication("s", Lsn(0), &[])
        .await
        .unwrap()
}

/// What the status task of the relay does: an update every `every`, never asking for
/// a reply itself.
fn send_status_every(mut status: StatusSender, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            if status
                .send_status(Lsn(1), Lsn(1), Lsn(1), false)
                .await
                .is_err()
            {
                return;
            }
        }
    })
}

/// Seconds after `start` at which each status update arrived, with its replyRequested.
async fn record_status_updates(
    s: &mut TcpStream,
    start: Instant,
    until: Duration,
    answer_pings: bool,
) -> Vec<(Duration, bool)> {
    let mut seen = Vec::new();
    let _ = tokio::time::timeout(until, async {
        loop {
            let (tag, body) = read_message(s).await;
            assert_eq!((tag, body.len(), body[0]), (b'd', 34, b'r'));
            let ping = body[33] == 1;
            seen.push((start.elapsed(), ping));
            if ping && answer_pings {
                s.write_all(&keepalive(7)).await.unwrap();
            }
        }
    })
    .await;
    seen
}

#[tokio::test]
async fn a_silent_server_is_pinged_then_the_stream_times_out() {
    let timeout = Duration::from_millis(800);
    let began = Instant::now();
    let (mut o, server) = replication_server(move |mut s| async move {
        s.write_all(&keepalive(5)).await.unwrap();
        // Then silence, while still reading (and never answering) status updates.
        let seen = record_status_updates(&mut s, began, Duration::from_secs(3), false).await;
        let first_ping = seen.iter().find(|(_, ping)| *ping).map(|(at, _)| *at);
        let first_ping = first_ping.unwrap_or_else(|| panic!("never pinged: {seen:?}"));
        assert!(
            first_ping >= timeout / 2 && first_ping < timeout,
            "first ping at {first_ping:?}: {seen:?}"
        );
        assert!(
            seen.iter()
                .filter(|(at, _)| *at < timeout / 2)
                .all(|(_, ping)| !ping),
            "no ping while the stream was recently heard: {seen:?}"
        );
    })
    .await;
    o.liveness.receive_timeout = Some(timeout);
    let (mut stream, status) = start(&o).await;
    let status_task = send_status_every(status, Duration::from_millis(50));
    assert_eq!(
        stream.next().await.unwrap(),
        Some(ReplicationMessage::PrimaryKeepalive {
            wal_end: Lsn(5),
            server_time: 0,
            reply_requested: false
        })
    );
    let waiting = Instant::now();
    let e = stream.next().await.unwrap_err();
    let waited = waiting.elapsed();
    assert!(
        matches!(e, PgWireError::ReceiveTimeout { timeout: t } if t == timeout),
        "{e:?}"
    );
    assert!(e.is_retryable());
    assert!(e.to_string().contains("800ms"), "{e}");
    assert!(
        waited >= timeout - Duration::from_millis(50)
            && waited < timeout + Duration::from_millis(400),
        "timed out after {waited:?}"
    );
    server.await.unwrap();
    status_task.abort();
}

#[tokio::test]
async fn a_quiet_server_that_answers_pings_is_not_timed_out() {
    let timeout = Duration::from_millis(600);
    let began = Instant::now();
    let (mut o, server) = replication_server(move |mut s| async move {
        let seen = record_status_updates(&mut s, began, Duration::from_millis(2500), true).await;
        assert!(seen.iter().any(|(_, ping)| *ping), "{seen:?}");
        s.write_all(&msg(b'c', b"")).await.unwrap();
        // The client's CopyDone, if it gets that far, is not awaited.
    })
    .await;
    o.liveness.receive_timeout = Some(timeout);
    let (mut stream, status) = start(&o).await;
    let status_task = send_status_every(status, Duration::from_millis(50));
    // Over four timeouts long, the stream only ever carries the answers to pings.
    let mut keepalives = 0;
    while let Some(m) = stream.next().await.unwrap() {
        assert!(matches!(
            m,
            ReplicationMessage::PrimaryKeepalive {
                wal_end: Lsn(7),
                ..
            }
        ));
        keepalives += 1;
    }
    assert!(began.elapsed() >= Duration::from_millis(2500));
    assert!(keepalives >= 3, "{keepalives} keepalives");
    server.await.unwrap();
    status_task.abort();
}

#[tokio::test]
async fn a_message_above_the_limit_is_refused_by_its_header() {
    let (mut o, server) = replication_server(|mut s| async move {
        // The header of a 300 MiB CopyData, and no body: a client that believed the
        // length would reserve 300 MiB and wait for it.
        let mut header = vec![b'd'];
        header.extend_from_slice(&(300i32 * 1024 * 1024 + 4).to_be_bytes());
        s.write_all(&header).await.unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
    })
    .await;
    o.max_message_len = 1024 * 1024;
    let (mut stream, status) = start(&o).await;
    let e = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("refused at once")
        .unwrap_err();
    match &e {
        PgWireError::MessageTooLarge { tag, len, limit } => {
            assert_eq!((*tag, *len, *limit), ('d', 300 * 1024 * 1024, 1024 * 1024))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        e.to_string(),
        "backend message 'd' of 314572800 bytes exceeds the limit of 1048576 bytes"
    );
    assert!(!e.is_retryable());
    drop((stream, status));
    server.await.unwrap();
}

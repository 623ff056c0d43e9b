//! The server's limits, against a real socket.

use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

async fn start(max_connections: usize, request_timeout: Duration) -> SocketAddr {
    let limits = HttpLimits {
        max_connections,
        request_timeout,
    };
    let health = Arc::new(Health::default());
    health.set_replicating(true);
    let (addr, _task) = serve(
        "127.0.0.1:0".parse().unwrap(),
        limits,
        Metrics::new(),
        health,
    )
    .await
    .unwrap();
    addr
}

/// Sends `request` and reads until the server closes: (status line, headers, body bytes).
async fn exchange(addr: SocketAddr, request: &[u8]) -> (String, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut raw))
        .await
        .expect("server closes the connection after one response")
        .unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let (status, headers) = head.split_once("\r\n").unwrap_or((&head, ""));
    (
        status.to_string(),
        headers.to_ascii_lowercase(),
        raw[split + 4..].to_vec(),
    )
}

fn content_length(headers: &str) -> usize {
    headers
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .expect("content-length")
        .parse()
        .unwrap()
}

/// True when the peer closed `s` (EOF or reset) within `within`, without sending anything.
async fn closed_without_response(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(within, s.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(n)) => panic!(
            "unexpected response {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(_) => false,
    }
}

#[tokio::test]
async fn serves_the_three_endpoints_and_head_without_a_body() {
    let addr = start(8, Duration::from_secs(5)).await;
    let (status, headers, body) = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(headers.contains("content-type: text/plain; version=0.0.4"));
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains("outbox_relay_build_info"), "{text}");
    assert_eq!(content_length(&headers), text.len());

    let (status, head_headers, body) =
        exchange(addr, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body, b"", "HEAD has no body");
    assert!(
        content_length(&head_headers) > 0,
        "HEAD keeps GET's length: {head_headers}"
    );

    let (status, _, body) = exchange(addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(
        (status.as_str(), &body[..]),
        ("HTTP/1.1 200 OK", &b"ok\n"[..])
    );
    let (status, _, body) = exchange(addr, b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(
        (status.as_str(), &body[..]),
        (
            "HTTP/1.1 503 Service Unavailable",
            &b"sink unreachable\n"[..]
        )
    );
    let (status, _, _) = exchange(addr, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, headers, _) = exchange(
        addr,
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    assert!(headers.contains("allow: get, head"), "{headers}");
}

#[tokio::test]
async fn a_request_head_over_the_limit_is_refused() {
    let addr = start(8, Duration::from_secs(5)).await;
    let big = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Filler: {}\r\n\r\n",
        "a".repeat(MAX_HEAD_BYTES * 2)
    );
    let (status, _, _) = exchange(addr, big.as_bytes()).await;
    assert_eq!(status, "HTTP/1.1 431 Request Header Fields Too Large");
    let many: String = (0..MAX_HEADERS + 1)
        .map(|i| format!("X-H{i}: v\r\n"))
        .collect();
    let request = format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    let (status, _, _) = exchange(addr, request.as_bytes()).await;
    assert_eq!(status, "HTTP/1.1 431 Request Header Fields Too Large");
}

#[tokio::test]
async fn a_request_sent_byte_by_byte_is_answered() {
    let addr = start(8, Duration::from_secs(5)).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" {
        s.write_all(&[*b]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    assert!(raw.starts_with(b"HTTP/1.1 200 OK"));
    assert!(raw.ends_with(b"\r\n\r\nok\n"));
}

#[tokio::test]
async fn a_client_that_never_finishes_is_disconnected_at_the_deadline() {
    let timeout = Duration::from_millis(300);
    let addr = start(8, timeout).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    s.write_all(b"GET /metr").await.unwrap();
    // Keep trickling: the deadline is for the whole request, not per read.
    let trickle = async {
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if s.write_all(b"i").await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), trickle).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= timeout && elapsed < timeout + Duration::from_secs(1),
        "disconnected after {elapsed:?}"
    );
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_and_slots_come_back_at_the_deadline() {
    let timeout = Duration::from_millis(500);
    let addr = start(2, timeout).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /").await.unwrap();
        held.push(s);
    }
    // Let the server accept both before the third arrives.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut third = TcpStream::connect(addr).await.unwrap();
    let _ = third.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").await;
    assert!(
        closed_without_response(&mut third, Duration::from_millis(200)).await,
        "a connection over the cap is closed at once"
    );
    for s in &mut held {
        assert!(
            !closed_without_response(s, Duration::from_millis(10)).await,
            "held connections are still open before their deadline"
        );
    }
    tokio::time::sleep(timeout).await;
    for s in &mut held {
        assert!(closed_without_response(s, Duration::from_millis(500)).await);
    }
    let (status, _, body) = exchange(addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(
        (status.as_str(), &body[..]),
        ("HTTP/1.1 200 OK", &b"ok\n"[..])
    );
}

#[test]
fn the_cap_never_exceeds_a_quarter_of_the_open_files_limit() {
    let limit = open_files_limit().expect("Linux") as usize;
    let huge = HttpLimits {
        max_connections: usize::MAX,
        request_timeout: Duration::from_secs(1),
    };
    assert_eq!(huge.effective_max_connections(), (limit / 4).max(1));
    let small = HttpLimits {
        max_connections: 3,
        ..huge
    };
    assert_eq!(small.effective_max_connections(), 3);
}

#[test]
fn repeated_warnings_are_throttled_and_counted() {
    let mut t = Throttled::default();
    assert_eq!(t.due(), Some(0));
    assert_eq!(t.due(), None);
    assert_eq!(t.due(), None);
    t.last = Some(Instant::now() - WARN_EVERY);
    assert_eq!(t.due(), Some(2));
}

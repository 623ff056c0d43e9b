//! An HTTP/1.1 proxy in front of the SNS/SQS emulator that can cut one destination off
//! while the others keep working, as when one queue's region, key or policy fails: a
//! request whose body names the destination gets its connection closed unanswered (a
//! retryable dispatch failure for the SDK); everything else is forwarded.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Forwards `127.0.0.1:<port>` to a target. Stops on drop.
pub struct HttpFaultProxy {
    port: u16,
    cut: Arc<Mutex<Option<String>>>,
    refused: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl HttpFaultProxy {
    pub async fn start(target: SocketAddr) -> HttpFaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let cut: Arc<Mutex<Option<String>>> = Arc::default();
        let refused = Arc::new(AtomicUsize::new(0));
        let (c, r) = (cut.clone(), refused.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (c, r) = (c.clone(), r.clone());
                tokio::spawn(async move {
                    let _ = serve(client, target, c, r).await;
                });
            }
        });
        HttpFaultProxy {
            port,
            cut,
            refused,
            task,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// From now on, requests whose body contains `needle` are refused.
    pub fn cut(&self, needle: &str) {
        *self.cut.lock().unwrap() = Some(needle.to_owned());
    }

    pub fn heal(&self) {
        *self.cut.lock().unwrap() = None;
    }

    /// Requests refused so far.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::Relaxed)
    }
}

impl Drop for HttpFaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One client connection: requests in turn, each forwarded on a fresh upstream
/// connection (`Connection: close`), its response passed back as it came.
async fn serve(
    mut client: TcpStream,
    target: SocketAddr,
    cut: Arc<Mutex<Option<String>>>,
    refused: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    loop {
        let Some((head, body)) = read_request(&mut client, &mut buf).await? else {
            return Ok(());
        };
        let needle = cut.lock().unwrap().clone();
        if needle.is_some_and(|n| contains(&body, n.as_bytes())) {
            refused.fetch_add(1, Ordering::Relaxed);
            return Ok(()); // dropped unanswered
        }
        let mut upstream = TcpStream::connect(target).await?;
        let mut request = Vec::with_capacity(head.len() + body.len() + 32);
        for line in head.split("\r\n") {
            if !line.to_ascii_lowercase().starts_with("connection:") {
                request.extend_from_slice(line.as_bytes());
                request.extend_from_slice(b"\r\n");
            }
        }
        request.extend_from_slice(b"Connection: close\r\n\r\n");
        request.extend_from_slice(&body);
        upstream.write_all(&request).await?;
        let mut response = Vec::new();
        upstream.read_to_end(&mut response).await?;
        client.write_all(&response).await?;
    }
}

/// Reads one request (head without its final blank line, and a Content-Length body).
async fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let mut chunk = [0u8; 16384];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end + 4);
    let length = head
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    while buf.len() < length {
        let mut chunk = [0u8; 16384];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf.drain(..length).collect();
    Ok(Some((head, body)))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

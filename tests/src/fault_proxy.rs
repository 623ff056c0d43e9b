//! A TCP proxy that can make a connection go silent, as a NAT or firewall that drops
//! a flow's packets does: `blackhole` stops forwarding in both directions without
//! closing anything, so neither side gets an error, only silence; `heal` resumes it.
//!
//! While blackholed, nothing is read from either socket, so what was sent waits in
//! the kernel buffers and is delivered on `heal` (as TCP would retransmit it), and new
//! connections are accepted but get no answer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Forwards `127.0.0.1:<port>` to a target. Stops on drop.
pub struct FaultProxy {
    port: u16,
    open: watch::Sender<bool>,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards each connection to `target`.
    pub async fn start(target: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let (open, open_rx) = watch::channel(true);
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            let mut connections = Vec::new();
            while let Ok((client, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let open = open_rx.clone();
                connections.push(AbortOnDrop(tokio::spawn(forward(client, target, open))));
            }
        });
        FaultProxy {
            port,
            open,
            accepted,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Stops forwarding, in both directions, on every connection, old and new.
    pub fn blackhole(&self) {
        self.open.send_replace(false);
    }

    /// Forwards again.
    pub fn heal(&self) {
        self.open.send_replace(true);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn forward(client: TcpStream, target: SocketAddr, mut open: watch::Receiver<bool>) {
    // A blackholed network does not even let the connection attempt through.
    if wait_open(&mut open).await.is_err() {
        return;
    }
    let Ok(server) = TcpStream::connect(target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::join!(
        pump(client_read, server_write, open.clone()),
        pump(server_read, client_write, open),
    );
}

/// Copies one direction while open; ends (and passes the end on) at EOF or an error.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut open: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if wait_open(&mut open).await.is_err() {
            break;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Bytes read just as the blackhole began are held back with the rest.
        if wait_open(&mut open).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

async fn wait_open(open: &mut watch::Receiver<bool>) -> Result<(), watch::error::RecvError> {
    open.wait_for(|o| *o).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn forwards_goes_silent_and_resumes_without_closing() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = echo.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = echo.accept().await.unwrap();
            let mut buf = [0u8; 64];
            loop {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    return;
                }
                s.write_all(&buf[..n]).await.unwrap();
            }
        });
        let proxy = FaultProxy::start(target).await;
        let mut c = TcpStream::connect(("127.0.0.1", proxy.port()))
            .await
            .unwrap();
        let mut buf = [0u8; 5];
        c.write_all(b"hello").await.unwrap();
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");

        proxy.blackhole();
        c.write_all(b"again").await.unwrap();
        let silent = tokio::time::timeout(Duration::from_millis(500), c.read(&mut buf)).await;
        assert!(silent.is_err(), "no answer and no EOF while blackholed");

        proxy.heal();
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"again", "held bytes arrive after heal, in order");
        assert_eq!(proxy.accepted(), 1);
    }
}

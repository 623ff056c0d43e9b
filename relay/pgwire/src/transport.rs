//! The byte stream under a connection: TCP, optionally wrapped in TLS after
//! PostgreSQL's SSLRequest negotiation.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;

use crate::config::{ConnectOptions, Liveness, SslMode};
use crate::error::PgWireError;
use crate::tls;

/// Plain or TLS; one type so that `tokio::io::split` gives the same halves
/// either way.
pub(crate) enum Transport {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Transport {
    /// The TCP socket under it (for socket options while streaming).
    pub(crate) fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        match self {
            Transport::Plain(s) => s.as_raw_fd(),
            Transport::Tls(s) => s.get_ref().0.as_raw_fd(),
        }
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A connected transport and what the TLS session offers for SCRAM channel
/// binding.
pub(crate) struct Established {
    pub transport: Transport,
    pub channel_binding: Option<Vec<u8>>,
}

/// TCP connect, then TLS as `sslmode` demands.
pub(crate) async fn establish(opts: &ConnectOptions) -> Result<Established, PgWireError> {
    // Built first: a bad CA file should fail without touching the network.
    let tls_config = match opts.sslmode {
        SslMode::Disable => None,
        mode => Some(tls::client_config(mode, opts.sslrootcert.as_deref())?),
    };
    let mut tcp = connect_tcp(&opts.host, opts.port, &opts.liveness).await?;
    let Some(tls_config) = tls_config else {
        return Ok(Established {
            transport: Transport::Plain(tcp),
            channel_binding: None,
        });
    };

    let mut request = BytesMut::with_capacity(8);
    postgres_protocol::message::frontend::ssl_request(&mut request);
    tcp.write_all(&request).await?;
    tcp.flush().await?;
    // Exactly one byte: anything the server (or a man in the middle) sends
    // after it must go through TLS, not be buffered as if it were trusted.
    let answer = tcp.read_u8().await.map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => PgWireError::ConnectionClosed,
        _ => PgWireError::Io(e),
    })?;
    match answer {
        b'S' => {
            let name = tls::server_name(&opts.host)?;
            let stream = TlsConnector::from(tls_config)
                .connect(name, tcp)
                .await
                .map_err(|e| PgWireError::from_tls_io(&opts.addr(), e))?;
            let channel_binding = tls::tls_server_end_point(stream.get_ref().1);
            Ok(Established {
                transport: Transport::Tls(Box::new(stream)),
                channel_binding,
            })
        }
        b'N' if opts.sslmode.requires_tls() => Err(PgWireError::TlsNotSupported {
            addr: opts.addr(),
            sslmode: opts.sslmode,
        }),
        b'N' => Ok(Established {
            transport: Transport::Plain(tcp),
            channel_binding: None,
        }),
        other => Err(PgWireError::protocol(format!(
            "unexpected answer {:?} to SSLRequest (expected 'S' or 'N')",
            char::from(other)
        ))),
    }
}

/// Connects to the first address of `host` that accepts, with the socket
/// options of `liveness` so that a silently vanished server is noticed on
/// idle connections (keepalive) and on unacknowledged writes
/// (`TCP_USER_TIMEOUT`).
pub(crate) async fn connect_tcp(
    host: &str,
    port: u16,
    liveness: &Liveness,
) -> Result<TcpStream, PgWireError> {
    if host.is_empty() || host.starts_with('/') {
        return Err(PgWireError::Config(format!(
            "host {host:?} is not a TCP host name or address (Unix sockets are not supported)"
        )));
    }
    let mut last_err = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        apply_liveness(socket2::SockRef::from(&socket), liveness)?;
        match socket.connect(addr).await {
            Ok(stream) => {
                // Status updates are small and latency-sensitive.
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(e) => last_err = Some(e),
        }
    }
    Err(PgWireError::Io(last_err.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("host {host:?} resolved to no addresses"),
        )
    })))
}

/// Keepalive timing and `TCP_USER_TIMEOUT` on a socket about to connect.
pub(crate) fn apply_liveness(socket: socket2::SockRef<'_>, liveness: &Liveness) -> io::Result<()> {
    match &liveness.keepalive {
        Some(k) => {
            let mut params = socket2::TcpKeepalive::new();
            if let Some(idle) = k.idle {
                params = params.with_time(idle);
            }
            #[cfg(any(target_os = "linux", target_os = "macos", target_os = "freebsd"))]
            {
                if let Some(interval) = k.interval {
                    params = params.with_interval(interval);
                }
                if let Some(retries) = k.retries {
                    params = params.with_retries(retries);
                }
            }
            socket.set_tcp_keepalive(&params)?;
        }
        None => socket.set_keepalive(false)?,
    }
    #[cfg(target_os = "linux")]
    socket.set_tcp_user_timeout(liveness.tcp_user_timeout)?;
    Ok(())
}

/// Buffers one frontend message at a time and writes it out whole.
pub(crate) struct MessageWriter<W> {
    inner: W,
    buf: BytesMut,
}

impl<W: AsyncWrite + Unpin> MessageWriter<W> {
    pub fn new(inner: W) -> Self {
        MessageWriter {
            inner,
            buf: BytesMut::with_capacity(256),
        }
    }

    /// Encodes with `build` and sends, flushing so that nothing waits in a
    /// buffer (TLS included) while we wait for the answer.
    pub async fn send(
        &mut self,
        build: impl FnOnce(&mut BytesMut) -> io::Result<()>,
    ) -> Result<(), PgWireError> {
        self.buf.clear();
        build(&mut self.buf)
            .map_err(|e| PgWireError::Config(format!("cannot encode message: {e}")))?;
        self.inner.write_all(&self.buf).await?;
        self.inner.flush().await?;
        Ok(())
    }

    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.inner.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::TcpKeepalive;

    #[test]
    fn socket_options_follow_liveness() {
        let socket = TcpSocket::new_v4().unwrap();
        let liveness = Liveness {
            keepalive: Some(TcpKeepalive {
                idle: Some(Duration::from_secs(7)),
                interval: Some(Duration::from_secs(3)),
                retries: Some(4),
            }),
            tcp_user_timeout: Some(Duration::from_millis(12_500)),
            receive_timeout: None,
        };
        apply_liveness(socket2::SockRef::from(&socket), &liveness).unwrap();
        let s = socket2::SockRef::from(&socket);
        assert!(s.keepalive().unwrap());
        assert_eq!(s.tcp_keepalive_time().unwrap(), Duration::from_secs(7));
        #[cfg(target_os = "linux")]
        {
            assert_eq!(s.tcp_keepalive_interval().unwrap(), Duration::from_secs(3));
            assert_eq!(s.tcp_keepalive_retries().unwrap(), 4);
            assert_eq!(
                s.tcp_user_timeout().unwrap(),
                Some(Duration::from_millis(12_500))
            );
        }

        let off = Liveness {
            keepalive: None,
            tcp_user_timeout: None,
            receive_timeout: None,
        };
        apply_liveness(socket2::SockRef::from(&socket), &off).unwrap();
        assert!(!s.keepalive().unwrap());
        #[cfg(target_os = "linux")]
        assert_eq!(s.tcp_user_timeout().unwrap(), None);
    }
}

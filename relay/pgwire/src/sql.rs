//! Ordinary SQL connections through tokio-postgres, with the same TLS rules
//! as the replication client.

use tokio::task::JoinHandle;

use crate::config::{ChannelBinding, ConnectOptions, SslMode};
use crate::error::PgWireError;
use crate::sql_guard::{GuardPolicy, Guarded};
use crate::tls::{MakeRustlsConnect, RustlsConnect, RustlsStream};
use crate::transport::connect_tcp;

/// The tokio-postgres configuration for `opts`. tokio-postgres only knows
/// disable/prefer/require; certificate verification for verify-ca/verify-full
/// lives in the TLS connector, so those map to `Require`.
pub fn tokio_postgres_config(opts: &ConnectOptions) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&opts.host)
        .port(opts.port)
        .user(&opts.user)
        .dbname(&opts.dbname)
        .application_name(&opts.application_name)
        .connect_timeout(opts.connect_timeout)
        .ssl_mode(match opts.sslmode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        });
    if let Some(password) = &opts.password {
        config.password(password);
    }
    // Authentication policy: tokio-postgres knows channel_binding (and refuses
    // trust, cleartext and MD5 under Require, as the replication client does); the
    // rest (require_auth, no password over an unverified channel) is enforced by
    // the guard `connect_sql` puts on the stream (sql_guard).
    config.channel_binding(match opts.channel_binding {
        ChannelBinding::Disable => tokio_postgres::config::ChannelBinding::Disable,
        ChannelBinding::Prefer => tokio_postgres::config::ChannelBinding::Prefer,
        ChannelBinding::Require => tokio_postgres::config::ChannelBinding::Require,
    });
    // TCP is connected by `connect_sql` itself (`connect_tcp`), with the same keepalive
    // and TCP_USER_TIMEOUT as the replication connection, so tokio-postgres's own socket
    // options are not used.
    config
}

/// Opens an SQL connection and spawns the task that drives it. The task ends
/// when the client is dropped or the connection fails (logged).
pub async fn connect_sql(
    opts: &ConnectOptions,
) -> Result<(tokio_postgres::Client, JoinHandle<()>), PgWireError> {
    if opts.host.is_empty() || opts.host.starts_with('/') {
        return Err(PgWireError::Config(format!(
            "host {:?} is not a TCP host name or address (Unix sockets are not supported)",
            opts.host
        )));
    }
    // The authentication policy is enforced on the bytes tokio-postgres reads (see
    // sql_guard): below TLS when there is none, inside it when there is.
    let guard = GuardPolicy::new(opts);
    let make_tls = MakeRustlsConnect::from_options(opts)?;
    let connect = async {
        let tcp = connect_tcp(&opts.host, opts.port, &opts.liveness).await?;
        let outer = Guarded::new(tcp, guard.outer(opts.sslmode != SslMode::Disable));
        let tls = GuardedTls {
            inner: tokio_postgres::tls::MakeTlsConnect::<Guarded<tokio::net::TcpStream>>::make_tls_connect(
                &mut make_tls.clone(),
                &opts.host,
            )?,
            guard: guard.clone(),
        };
        tokio_postgres_config(opts)
            .connect_raw(outer, tls)
            .await
            .map_err(PgWireError::from)
    };
    let connected = match tokio::time::timeout(opts.connect_timeout, connect).await {
        Ok(r) => r,
        Err(_) => Err(PgWireError::ConnectTimeout {
            addr: opts.addr(),
            timeout: opts.connect_timeout,
        }),
    };
    let refused = guard
        .refused
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    let (client, connection) = match (connected, refused) {
        (_, Some(refusal)) => return Err(refusal),
        (Ok(c), None) => c,
        (Err(PgWireError::Tls { source, .. }), None) => {
            return Err(PgWireError::Tls {
                addr: opts.addr(),
                source,
            })
        }
        (Err(e), None) => return Err(e),
    };
    let addr = opts.addr();
    let handle = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(%addr, error = %e, "PostgreSQL SQL connection ended with an error");
        }
    });
    Ok((client, handle))
}

/// TLS for tokio-postgres with a guard on the stream inside it.
struct GuardedTls {
    inner: RustlsConnect,
    guard: GuardPolicy,
}

impl<S> tokio_postgres::tls::TlsConnect<S> for GuardedTls
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    type Stream = Guarded<RustlsStream<S>>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = std::io::Result<Guarded<RustlsStream<S>>>> + Send>,
    >;

    fn connect(self, stream: S) -> Self::Future {
        let inner = self.guard.inner();
        let tls = tokio_postgres::tls::TlsConnect::<S>::connect(self.inner, stream);
        Box::pin(async move { tls.await.map(|s| Guarded::new(s, inner)) })
    }
}

impl<S> tokio_postgres::tls::TlsStream for Guarded<RustlsStream<S>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    fn channel_binding(&self) -> tokio_postgres::tls::ChannelBinding {
        tokio_postgres::tls::TlsStream::channel_binding(self.get_ref())
    }
}

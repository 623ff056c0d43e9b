//! A minimal connection pool for a service's own database. Connections that broke (a
//! database restart) are dropped and replaced on the next `get`, so a service rides out a
//! restart by retrying its transaction.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, NoTls};

#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    idle: Mutex<Vec<Client>>,
    slots: Arc<Semaphore>,
}

/// A connection borrowed from the pool; returned to it on drop unless it broke.
pub struct Conn {
    client: Option<Client>,
    pool: Arc<Inner>,
    _permit: OwnedSemaphorePermit,
}

impl std::ops::Deref for Conn {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("client present until drop")
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("client present until drop")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            if !c.is_closed() {
                if let Ok(mut idle) = self.pool.idle.try_lock() {
                    idle.push(c);
                }
            }
        }
    }
}

impl Pool {
    pub fn new(url: &str, size: usize) -> Pool {
        Pool {
            inner: Arc::new(Inner {
                url: url.to_string(),
                idle: Mutex::new(Vec::new()),
                slots: Arc::new(Semaphore::new(size)),
            }),
        }
    }

    pub async fn get(&self) -> crate::Result<Conn> {
        let permit = self
            .inner
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("pool semaphore never closed");
        let reused = {
            let mut idle = self.inner.idle.lock().await;
            let mut found = None;
            while let Some(c) = idle.pop() {
                if !c.is_closed() {
                    found = Some(c);
                    break;
                }
            }
            found
        };
        let client = match reused {
            Some(c) => c,
            None => connect(&self.inner.url).await?,
        };
        Ok(Conn {
            client: Some(client),
            pool: self.inner.clone(),
            _permit: permit,
        })
    }

    /// Waits until the database accepts connections (start-up, or after a restart).
    pub async fn wait_ready(&self, timeout: Duration) -> crate::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.get().await {
                Ok(_) => return Ok(()),
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }
}

pub async fn connect(url: &str) -> crate::Result<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        // Ends when the connection closes; the pool notices through `is_closed`.
        let _ = connection.await;
    });
    Ok(client)
}

/// A tokio-postgres connection string for `database` on the given server.
pub fn url(host: &str, port: u16, user: &str, password: &str, database: &str) -> String {
    format!("host={host} port={port} user={user} password={password} dbname={database} connect_timeout=5")
}

/// The tables every service has: its inbox (idempotent consumption).
pub const INBOX_DDL: &str = "
CREATE TABLE IF NOT EXISTS inbox (
  event_id     uuid PRIMARY KEY,
  event_type   text NOT NULL,
  source       text NOT NULL,
  received_at  timestamptz NOT NULL DEFAULT now(),
  redeliveries integer NOT NULL DEFAULT 0
);";

/// Debezium's outbox table plus the schema version, copied into a header by the relay.
pub const OUTBOX_DDL: &str = "
CREATE TABLE IF NOT EXISTS outbox (
  id             uuid PRIMARY KEY,
  aggregatetype  varchar(255) NOT NULL,
  aggregateid    varchar(255) NOT NULL,
  type           varchar(255) NOT NULL,
  payload        jsonb,
  timestamp      timestamptz NOT NULL DEFAULT now(),
  tracingspancontext varchar(512),
  schema_version integer NOT NULL DEFAULT 1
);";

//! The server's current WAL position, for replication lag.
//!
//! For logical replication the walsender fills XLogData's and keepalives' "WAL end" with
//! the position it has *decoded* up to, not the server's insert position, so a relay far
//! behind would see a lag of zero. The real end comes from `pg_current_wal_insert_lsn()`.

use std::sync::Arc;
use std::time::Duration;

use outbox_pgoutput::Lsn;
use tokio_postgres::Client;
use tracing::debug;

use crate::pipeline::Progress;

pub async fn run(client: Arc<Client>, progress: Arc<Progress>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match client
            .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
            .await
        {
            Ok(row) => {
                if let Ok(lsn) = row.get::<_, String>(0).parse::<Lsn>() {
                    progress.note_server_wal_end(lsn);
                }
            }
            Err(e) => {
                debug!(error = %e, "pg_current_wal_insert_lsn() failed; lag uses the stream's positions")
            }
        }
    }
}

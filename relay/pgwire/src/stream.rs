//! The CopyBoth phase of a replication connection: WAL data and keepalives
//! in, standby status updates out, on halves that can live on different
//! tasks.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes};
use outbox_pgoutput::Lsn;
use postgres_protocol::message::frontend;
use tokio::io::{ReadHalf, WriteHalf};

use crate::error::PgWireError;
use crate::frame::{parse_error_fields, tag, Body, FrameReader};
use crate::silence::PingPolicy;
use crate::transport::{MessageWriter, Transport};

/// Seconds from the Unix epoch to PostgreSQL's, 2000-01-01 00:00:00 UTC.
const PG_EPOCH_OFFSET_SECS: u64 = 946_684_800;

const XLOG_DATA: u8 = b'w';
const PRIMARY_KEEPALIVE: u8 = b'k';
const STANDBY_STATUS_UPDATE: u8 = b'r';
/// Subtype byte plus three LSNs and a timestamp.
const XLOG_DATA_HEADER_LEN: usize = 1 + 8 + 8 + 8;

/// A message from the walsender inside CopyData.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationMessage {
    XLogData {
        wal_start: Lsn,
        wal_end: Lsn,
        /// Microseconds since 2000-01-01 UTC.
        server_time: i64,
        /// One output plugin message (for pgoutput: B, R, I, U, D, C, ...).
        data: Bytes,
    },
    PrimaryKeepalive {
        wal_end: Lsn,
        server_time: i64,
        /// The server wants a status update soon, or it will drop us at
        /// `wal_sender_timeout`.
        reply_requested: bool,
    },
}

impl ReplicationMessage {
    /// Parses the payload of one CopyData message. `data` of an XLogData
    /// shares `copy_data`'s memory.
    pub fn parse(copy_data: Bytes) -> Result<Self, PgWireError> {
        let mut b = Body::new(&copy_data, "replication CopyData");
        match b.u8()? {
            XLOG_DATA => {
                let wal_start = Lsn(b.u64()?);
                let wal_end = Lsn(b.u64()?);
                let server_time = b.i64()?;
                Ok(ReplicationMessage::XLogData {
                    wal_start,
                    wal_end,
                    server_time,
                    data: copy_data.slice(XLOG_DATA_HEADER_LEN..),
                })
            }
            PRIMARY_KEEPALIVE => {
                let wal_end = Lsn(b.u64()?);
                let server_time = b.i64()?;
                let reply_requested = b.u8()? != 0;
                Ok(ReplicationMessage::PrimaryKeepalive {
                    wal_end,
                    server_time,
                    reply_requested,
                })
            }
            other => Err(PgWireError::protocol(format!(
                "unknown replication message {:?} inside CopyData",
                char::from(other)
            ))),
        }
    }
}

/// The read half of a streaming replication connection.
pub struct ReplicationStream {
    reader: FrameReader<ReadHalf<Transport>>,
    done: bool,
}

impl std::fmt::Debug for ReplicationStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationStream")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl ReplicationStream {
    /// `reader` should already watch for silence (`FrameReader::watch_silence`).
    pub(crate) fn new(reader: FrameReader<ReadHalf<Transport>>) -> Self {
        ReplicationStream {
            reader,
            done: false,
        }
    }

    /// With `Some(gap)`: once the socket is drained, the next read waits until `gap`
    /// after the last one, so that one wake-up takes what arrived meanwhile (fewer
    /// wake-ups, up to `gap` more latency). `None`: read as soon as bytes arrive.
    pub fn coalesce_reads(&mut self, gap: Option<std::time::Duration>) {
        self.reader.coalesce_reads(gap);
    }

    /// The next message, or `None` once the server has ended the copy: CopyDone
    /// (the answer to our `finish`), or CommandComplete without one, which is how a
    /// walsender ends the stream when the server shuts down (`WalSndDone`: "COPY 0",
    /// then exit).
    ///
    /// Fails with [`PgWireError::ReceiveTimeout`] (retryable) when no byte at
    /// all arrives for the connection's receive timeout while waiting here;
    /// time spent not calling `next` (a caller paused on a full budget) does
    /// not count, since unread bytes may be waiting in the socket.
    ///
    /// Cancel-safe (usable in `select!`): a partly received message stays
    /// buffered for the next call.
    pub async fn next(&mut self) -> Result<Option<ReplicationMessage>, PgWireError> {
        if self.done {
            return Ok(None);
        }
        loop {
            let frame = self.reader.next_frame().await?;
            match frame.tag {
                tag::COPY_DATA => return ReplicationMessage::parse(frame.body).map(Some),
                tag::COPY_DONE | tag::COMMAND_COMPLETE => {
                    self.done = true;
                    return Ok(None);
                }
                tag::ERROR_RESPONSE => {
                    return Err(PgWireError::Server(parse_error_fields(&frame.body)?))
                }
                tag::NOTICE_RESPONSE => crate::client::log_notice(&frame.body),
                tag::PARAMETER_STATUS | tag::NOTIFICATION_RESPONSE => {}
                other => {
                    return Err(PgWireError::protocol(format!(
                        "unexpected message {:?} during replication",
                        char::from(other)
                    )))
                }
            }
        }
    }
}

/// The write half of a streaming replication connection.
pub struct StatusSender {
    writer: MessageWriter<WriteHalf<Transport>>,
    ping: PingPolicy,
}

impl std::fmt::Debug for StatusSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusSender").finish_non_exhaustive()
    }
}

impl StatusSender {
    pub(crate) fn new(writer: MessageWriter<WriteHalf<Transport>>, ping: PingPolicy) -> Self {
        StatusSender { writer, ping }
    }

    /// Standby status update: `flush` is what the slot's
    /// `confirmed_flush_lsn` advances to, so only report what is durably
    /// handled downstream.
    ///
    /// `reply_requested` is also set, whatever the caller says, once the stream
    /// has been silent for half the receive timeout: the server's answer is
    /// what tells a quiet connection from a dead one.
    ///
    /// Not cancel-safe: dropping the future mid-write leaves a partial message
    /// on the wire, after which the connection must be abandoned.
    pub async fn send_status(
        &mut self,
        write: Lsn,
        flush: Lsn,
        apply: Lsn,
        reply_requested: bool,
    ) -> Result<(), PgWireError> {
        let reply_requested = reply_requested || self.ping.wants_ping();
        let payload = encode_status(write, flush, apply, pg_now_micros(), reply_requested);
        self.writer
            .send(|buf| {
                frontend::CopyData::new(&payload[..])?.write(buf);
                Ok(())
            })
            .await
    }

    /// Ends the copy (CopyDone) and the session (Terminate), then closes our
    /// side of the connection.
    pub async fn finish(mut self) -> Result<(), PgWireError> {
        self.writer
            .send(|buf| {
                frontend::copy_done(buf);
                frontend::terminate(buf);
                Ok(())
            })
            .await?;
        if let Err(e) = self.writer.shutdown().await {
            tracing::debug!(error = %e, "closing the replication connection");
        }
        Ok(())
    }
}

fn encode_status(
    write: Lsn,
    flush: Lsn,
    apply: Lsn,
    clock: i64,
    reply_requested: bool,
) -> [u8; 34] {
    let mut out = [0u8; 34];
    let mut buf = &mut out[..];
    buf.put_u8(STANDBY_STATUS_UPDATE);
    buf.put_u64(write.0);
    buf.put_u64(flush.0);
    buf.put_u64(apply.0);
    buf.put_i64(clock);
    buf.put_u8(u8::from(reply_requested));
    out
}

/// Now, in microseconds since 2000-01-01 UTC (PostgreSQL's TimestampTz).
pub fn pg_now_micros() -> i64 {
    let since_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    since_unix.as_micros() as i64 - (PG_EPOCH_OFFSET_SECS as i64 * 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_xlog_data_without_copying() {
        let mut wire = vec![b'w'];
        wire.extend_from_slice(&0x1_0000_0010u64.to_be_bytes());
        wire.extend_from_slice(&0x1_0000_0020u64.to_be_bytes());
        wire.extend_from_slice(&777i64.to_be_bytes());
        wire.extend_from_slice(b"Bpayload");
        let copy = Bytes::from(wire);
        let msg = ReplicationMessage::parse(copy.clone()).unwrap();
        let ReplicationMessage::XLogData {
            wal_start,
            wal_end,
            server_time,
            data,
        } = msg
        else {
            panic!("{msg:?}")
        };
        assert_eq!(
            (wal_start, wal_end, server_time),
            (Lsn(0x1_0000_0010), Lsn(0x1_0000_0020), 777)
        );
        assert_eq!(&data[..], b"Bpayload");
        assert_eq!(
            data.as_ptr(),
            copy[25..].as_ptr(),
            "data must be a slice of the frame"
        );
        // Empty payload is legal; a short header is not.
        assert!(ReplicationMessage::parse(copy.slice(..25)).is_ok());
        assert!(ReplicationMessage::parse(copy.slice(..24)).is_err());
    }

    #[test]
    fn parses_keepalives() {
        for reply in [0u8, 1] {
            let mut wire = vec![b'k'];
            wire.extend_from_slice(&0xAB_0000_0001u64.to_be_bytes());
            wire.extend_from_slice(&(-5i64).to_be_bytes());
            wire.push(reply);
            assert_eq!(
                ReplicationMessage::parse(Bytes::from(wire.clone())).unwrap(),
                ReplicationMessage::PrimaryKeepalive {
                    wal_end: Lsn(0xAB_0000_0001),
                    server_time: -5,
                    reply_requested: reply == 1
                }
            );
            assert!(ReplicationMessage::parse(Bytes::from(wire[..17].to_vec())).is_err());
        }
        assert!(ReplicationMessage::parse(Bytes::from_static(b"x")).is_err());
        assert!(ReplicationMessage::parse(Bytes::new()).is_err());
    }

    #[test]
    fn encodes_status_update() {
        let m = encode_status(Lsn(1), Lsn(2), Lsn(3), 4, true);
        assert_eq!(m[0], b'r');
        assert_eq!(&m[1..9], &1u64.to_be_bytes());
        assert_eq!(&m[9..17], &2u64.to_be_bytes());
        assert_eq!(&m[17..25], &3u64.to_be_bytes());
        assert_eq!(&m[25..33], &4i64.to_be_bytes());
        assert_eq!(m[33], 1);
    }

    #[test]
    fn clock_is_pg_epoch_based() {
        // 2020-01-01 is 631152000 s after 2000-01-01; anything earlier means
        // the Unix epoch was not subtracted correctly.
        let now = pg_now_micros();
        assert!(now > 631_152_000_000_000, "{now}");
        assert!(now < 4_000_000_000_000_000, "{now}");
    }
}

//! Decoder for PostgreSQL's `pgoutput` logical replication protocol, versions 1
//! and 2 (the message formats of the PostgreSQL manual's "Logical Replication
//! Message Formats" page).
//!
//! Pure: bytes in, typed messages out. No I/O, no allocation per column, and no
//! panics on any input: every malformed buffer is a [`DecodeError`].
//!
//! ```
//! use bytes::Bytes;
//! use outbox_pgoutput::{decode, DecodeContext, LogicalReplicationMessage, Lsn};
//!
//! // Stream Abort: tag 'A', xid 7, subtransaction xid 9.
//! let buf = Bytes::from_static(b"A\0\0\0\x07\0\0\0\x09");
//! let LogicalReplicationMessage::StreamAbort(abort) = decode(&buf, DecodeContext::TOP_LEVEL)? else {
//!     unreachable!()
//! };
//! assert_eq!((abort.xid, abort.subxid), (7, 9));
//! # Ok::<(), outbox_pgoutput::DecodeError>(())
//! ```
//!
//! # Modules
//!
//! - [`message`]: [`LogicalReplicationMessage`], one variant per message on the
//!   protocol page, and a struct per message with the spec's field descriptions.
//! - [`tuple`](mod@tuple): [`TupleData`], [`TupleValue`] and [`OldTuple`], the row images in
//!   Insert, Update and Delete. Column values are zero-copy [`bytes::Bytes`]
//!   slices of the input buffer.
//! - [`decode`](mod@decode): [`decode()`] and [`DecodeContext`] (whether the message is
//!   inside a Stream Start / Stream Stop block, which decides whether the v2 xid
//!   prefix is present).
//! - [`error`]: [`DecodeError`], naming the message and field at fault.
//! - [`lsn`]: [`Lsn`], a WAL position, printed and parsed as `16/B374D848`.
//! - [`time`]: converting PostgreSQL timestamps (microseconds since 2000-01-01)
//!   to Unix microseconds.
//! - `encode` (feature `test-utils`): the inverse of [`decode()`], for tests.
//! - `cursor` (private): the bounds-checked reader the decoder is built on.
//!
//! # Not covered
//!
//! Protocol version 3 (two-phase commit: Begin Prepare, Prepare, Commit Prepared,
//! Rollback Prepared, Stream Prepare) and the version 4 Stream Abort fields: their
//! tags are [`DecodeError::UnknownTag`], and a v4 Stream Abort is
//! [`DecodeError::TrailingBytes`]. The replication-protocol framing around each
//! message (XLogData `w`, keepalive `k`) is not this crate's business either.

mod cursor;
pub mod decode;
#[cfg(any(test, feature = "test-utils"))]
pub mod encode;
pub mod error;
pub mod lsn;
pub mod message;
pub mod time;
pub mod tuple;

#[cfg(test)]
mod tests;

pub use decode::{decode, DecodeContext};
pub use error::DecodeError;
pub use lsn::Lsn;
pub use message::{
    Begin, Column, Commit, Delete, Insert, LogicalMessage, LogicalReplicationMessage, Origin,
    Relation, ReplicaIdentity, StreamAbort, StreamCommit, StreamStart, Truncate, TypeMessage,
    Update,
};
pub use time::{pg_timestamp_to_unix_micros, unix_micros_to_pg_timestamp, PG_EPOCH_UNIX_MICROS};
pub use tuple::{OldTuple, TupleData, TupleValue};

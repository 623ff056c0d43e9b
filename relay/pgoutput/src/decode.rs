//! Bytes to [`LogicalReplicationMessage`].

use bytes::Bytes;

use crate::cursor::Cursor;
use crate::error::DecodeError;
use crate::message::*;
use crate::tuple::{read_tuple_data, OldTuple, MARKER_KEY, MARKER_NEW, MARKER_OLD};

/// What the decoder needs to know that the bytes do not say.
///
/// Protocol version 2 prefixes Message, Relation, Type, Insert, Update, Delete and
/// Truncate with the transaction's xid when they are sent inside a Stream Start /
/// Stream Stop block, and nothing in the message itself marks that. The caller
/// tracks the block (it sees the Stream Start and Stream Stop messages) and says
/// so here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct DecodeContext {
    /// The message is between a Stream Start and its Stream Stop.
    pub in_stream: bool,
}

impl DecodeContext {
    /// Outside any streamed block (always the case with protocol version 1).
    pub const TOP_LEVEL: DecodeContext = DecodeContext { in_stream: false };
    /// Inside a Stream Start / Stream Stop block.
    pub const IN_STREAM: DecodeContext = DecodeContext { in_stream: true };
}

/// Decodes one pgoutput message: the payload of one XLogData (`w`) message.
///
/// The whole buffer must be exactly one message: leftover bytes are
/// [`DecodeError::TrailingBytes`]. Column values and Message content are
/// zero-copy slices of `buf`. Never panics.
pub fn decode(buf: &Bytes, ctx: DecodeContext) -> Result<LogicalReplicationMessage, DecodeError> {
    use LogicalReplicationMessage as M;

    let mut cur = Cursor::new(buf);
    let tag = cur.u8("tag").map_err(|_| DecodeError::Empty)?;
    let name = message_name(tag).ok_or(DecodeError::UnknownTag(tag))?;
    cur.set_message(name);
    let c = &mut cur;

    let msg = match tag {
        tag::BEGIN => M::Begin(Begin {
            final_lsn: c.lsn("final LSN")?,
            commit_ts: c.i64("commit timestamp")?,
            xid: c.u32("xid")?,
        }),
        tag::MESSAGE => M::Message(LogicalMessage {
            xid: stream_xid(c, ctx)?,
            transactional: c.u8("flags")? & 1 != 0,
            lsn: c.lsn("LSN")?,
            prefix: c.cstr("prefix")?,
            content: {
                let len = c.len_i32("content length")?;
                c.bytes(len, "content")?
            },
        }),
        tag::COMMIT => M::Commit(Commit {
            flags: c.u8("flags")?,
            commit_lsn: c.lsn("commit LSN")?,
            end_lsn: c.lsn("end LSN")?,
            commit_ts: c.i64("commit timestamp")?,
        }),
        tag::ORIGIN => M::Origin(Origin {
            commit_lsn: c.lsn("origin commit LSN")?,
            name: c.cstr("origin name")?,
        }),
        tag::RELATION => M::Relation(read_relation(c, ctx)?),
        tag::TYPE => M::Type(TypeMessage {
            xid: stream_xid(c, ctx)?,
            oid: c.u32("type OID")?,
            namespace: c.cstr("namespace")?,
            name: c.cstr("type name")?,
        }),
        tag::INSERT => {
            let xid = stream_xid(c, ctx)?;
            let rel_id = c.u32("relation OID")?;
            expect_marker(c, MARKER_NEW, "'N'")?;
            M::Insert(Insert {
                xid,
                rel_id,
                new: read_tuple_data(c)?,
            })
        }
        tag::UPDATE => {
            let xid = stream_xid(c, ctx)?;
            let rel_id = c.u32("relation OID")?;
            let old = match c.u8("tuple marker")? {
                MARKER_KEY => Some(OldTuple::Key(read_tuple_data(c)?)),
                MARKER_OLD => Some(OldTuple::Full(read_tuple_data(c)?)),
                MARKER_NEW => None,
                found => return Err(unexpected_marker(c, "'K', 'O' or 'N'", found)),
            };
            if old.is_some() {
                expect_marker(c, MARKER_NEW, "'N'")?;
            }
            M::Update(Update {
                xid,
                rel_id,
                old,
                new: read_tuple_data(c)?,
            })
        }
        tag::DELETE => {
            let xid = stream_xid(c, ctx)?;
            let rel_id = c.u32("relation OID")?;
            let old = match c.u8("tuple marker")? {
                MARKER_KEY => OldTuple::Key(read_tuple_data(c)?),
                MARKER_OLD => OldTuple::Full(read_tuple_data(c)?),
                found => return Err(unexpected_marker(c, "'K' or 'O'", found)),
            };
            M::Delete(Delete { xid, rel_id, old })
        }
        tag::TRUNCATE => {
            let xid = stream_xid(c, ctx)?;
            let n = c.len_i32("number of relations")?;
            let options = c.u8("options")?;
            let mut rel_ids = Vec::with_capacity(n.min(c.remaining() / 4));
            for _ in 0..n {
                rel_ids.push(c.u32("relation OID")?);
            }
            M::Truncate(Truncate {
                xid,
                options,
                rel_ids,
            })
        }
        tag::STREAM_START => M::StreamStart(StreamStart {
            xid: c.u32("xid")?,
            first_segment: c.u8("first segment")? == 1,
        }),
        tag::STREAM_STOP => M::StreamStop,
        tag::STREAM_COMMIT => M::StreamCommit(StreamCommit {
            xid: c.u32("xid")?,
            flags: c.u8("flags")?,
            commit_lsn: c.lsn("commit LSN")?,
            end_lsn: c.lsn("end LSN")?,
            commit_ts: c.i64("commit timestamp")?,
        }),
        tag::STREAM_ABORT => M::StreamAbort(StreamAbort {
            xid: c.u32("xid")?,
            subxid: c.u32("subtransaction xid")?,
        }),
        other => return Err(DecodeError::UnknownTag(other)),
    };
    cur.finish()?;
    Ok(msg)
}

fn stream_xid(c: &mut Cursor<'_>, ctx: DecodeContext) -> Result<Option<u32>, DecodeError> {
    if ctx.in_stream {
        c.u32("xid").map(Some)
    } else {
        Ok(None)
    }
}

fn unexpected_marker(c: &Cursor<'_>, expected: &'static str, found: u8) -> DecodeError {
    DecodeError::UnexpectedTupleMarker {
        message: c.message(),
        expected,
        found,
    }
}

fn expect_marker(
    c: &mut Cursor<'_>,
    marker: u8,
    expected: &'static str,
) -> Result<(), DecodeError> {
    match c.u8("tuple marker")? {
        found if found == marker => Ok(()),
        found => Err(unexpected_marker(c, expected, found)),
    }
}

fn read_relation(c: &mut Cursor<'_>, ctx: DecodeContext) -> Result<Relation, DecodeError> {
    let xid = stream_xid(c, ctx)?;
    let rel_id = c.u32("relation OID")?;
    let namespace = c.cstr("namespace")?;
    let name = c.cstr("relation name")?;
    let ident = c.u8("replica identity")?;
    let replica_identity =
        ReplicaIdentity::from_byte(ident).ok_or(DecodeError::UnknownReplicaIdentity(ident))?;
    let n = usize::from(c.u16("number of columns")?);
    // A column is at least 10 bytes (flags, empty name, type OID, modifier).
    let mut columns = Vec::with_capacity(n.min(c.remaining() / 10));
    for _ in 0..n {
        columns.push(Column {
            flags: c.u8("column flags")?,
            name: c.cstr("column name")?,
            type_oid: c.u32("column type OID")?,
            type_modifier: c.i32("column type modifier")?,
        });
    }
    Ok(Relation {
        xid,
        rel_id,
        namespace,
        name,
        replica_identity,
        columns,
    })
}

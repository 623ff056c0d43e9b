//! [`LogicalReplicationMessage`] to bytes: the inverse of [`decode`](crate::decode()).
//!
//! Available with the `test-utils` feature (and in this crate's own tests). It is
//! for tests: round-trip properties here, and synthesized replication streams in
//! other crates.
//!
//! The v2 xid prefix is written exactly when a message's `xid` is `Some`; decode
//! such bytes with [`DecodeContext::IN_STREAM`](crate::DecodeContext::IN_STREAM)
//! (see [`LogicalReplicationMessage::stream_xid`]).

use bytes::{BufMut, Bytes, BytesMut};

use crate::message::*;
use crate::tuple::{OldTuple, TupleData, TupleValue, MARKER_NEW};

/// A message that has no wire form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A `String` field contains a NUL byte, which would end it early.
    #[error("{field} contains a NUL byte")]
    InteriorNul { field: &'static str },
    /// A count or length does not fit its wire field (`Int16` or `Int32`).
    #[error("{field} is too large for the wire format ({len})")]
    TooLarge { field: &'static str, len: usize },
}

/// Encodes one message into a new buffer.
pub fn encode(msg: &LogicalReplicationMessage) -> Result<Bytes, EncodeError> {
    let mut out = BytesMut::new();
    encode_into(msg, &mut out)?;
    Ok(out.freeze())
}

/// Appends one message to `out`. On error `out` is left as it was.
pub fn encode_into(msg: &LogicalReplicationMessage, out: &mut BytesMut) -> Result<(), EncodeError> {
    let start = out.len();
    let result = write_message(msg, out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn write_message(msg: &LogicalReplicationMessage, out: &mut BytesMut) -> Result<(), EncodeError> {
    use LogicalReplicationMessage as M;

    out.put_u8(msg.tag());
    match msg {
        M::Begin(m) => {
            out.put_u64(m.final_lsn.0);
            out.put_i64(m.commit_ts);
            out.put_u32(m.xid);
        }
        M::Message(m) => {
            put_xid(out, m.xid);
            out.put_u8(u8::from(m.transactional));
            out.put_u64(m.lsn.0);
            put_cstr(out, &m.prefix, "prefix")?;
            out.put_i32(len_i32(m.content.len(), "content length")?);
            out.put_slice(&m.content);
        }
        M::Commit(m) => {
            out.put_u8(m.flags);
            out.put_u64(m.commit_lsn.0);
            out.put_u64(m.end_lsn.0);
            out.put_i64(m.commit_ts);
        }
        M::Origin(m) => {
            out.put_u64(m.commit_lsn.0);
            put_cstr(out, &m.name, "origin name")?;
        }
        M::Relation(m) => {
            put_xid(out, m.xid);
            out.put_u32(m.rel_id);
            put_cstr(out, &m.namespace, "namespace")?;
            put_cstr(out, &m.name, "relation name")?;
            out.put_u8(m.replica_identity.as_byte());
            out.put_u16(len_u16(m.columns.len(), "number of columns")?);
            for col in &m.columns {
                out.put_u8(col.flags);
                put_cstr(out, &col.name, "column name")?;
                out.put_u32(col.type_oid);
                out.put_i32(col.type_modifier);
            }
        }
        M::Type(m) => {
            put_xid(out, m.xid);
            out.put_u32(m.oid);
            put_cstr(out, &m.namespace, "namespace")?;
            put_cstr(out, &m.name, "type name")?;
        }
        M::Insert(m) => {
            put_xid(out, m.xid);
            out.put_u32(m.rel_id);
            out.put_u8(MARKER_NEW);
            write_tuple_data(&m.new, out)?;
        }
        M::Update(m) => {
            put_xid(out, m.xid);
            out.put_u32(m.rel_id);
            if let Some(old) = &m.old {
                write_old_tuple(old, out)?;
            }
            out.put_u8(MARKER_NEW);
            write_tuple_data(&m.new, out)?;
        }
        M::Delete(m) => {
            put_xid(out, m.xid);
            out.put_u32(m.rel_id);
            write_old_tuple(&m.old, out)?;
        }
        M::Truncate(m) => {
            put_xid(out, m.xid);
            out.put_i32(len_i32(m.rel_ids.len(), "number of relations")?);
            out.put_u8(m.options);
            for id in &m.rel_ids {
                out.put_u32(*id);
            }
        }
        M::StreamStart(m) => {
            out.put_u32(m.xid);
            out.put_u8(u8::from(m.first_segment));
        }
        M::StreamStop => {}
        M::StreamCommit(m) => {
            out.put_u32(m.xid);
            out.put_u8(m.flags);
            out.put_u64(m.commit_lsn.0);
            out.put_u64(m.end_lsn.0);
            out.put_i64(m.commit_ts);
        }
        M::StreamAbort(m) => {
            out.put_u32(m.xid);
            out.put_u32(m.subxid);
        }
    }
    Ok(())
}

/// Appends a TupleData submessage (column count and columns, no marker byte).
pub fn write_tuple_data(tuple: &TupleData, out: &mut BytesMut) -> Result<(), EncodeError> {
    out.put_u16(len_u16(tuple.len(), "number of columns")?);
    for value in tuple {
        out.put_u8(value.kind());
        match value {
            TupleValue::Null | TupleValue::UnchangedToast => {}
            TupleValue::Text(b) | TupleValue::Binary(b) => {
                out.put_i32(len_i32(b.len(), "column value length")?);
                out.put_slice(b);
            }
        }
    }
    Ok(())
}

fn write_old_tuple(old: &OldTuple, out: &mut BytesMut) -> Result<(), EncodeError> {
    out.put_u8(old.marker());
    write_tuple_data(old.tuple(), out)
}

fn put_xid(out: &mut BytesMut, xid: Option<u32>) {
    if let Some(xid) = xid {
        out.put_u32(xid);
    }
}

fn put_cstr(out: &mut BytesMut, s: &str, field: &'static str) -> Result<(), EncodeError> {
    if s.as_bytes().contains(&0) {
        return Err(EncodeError::InteriorNul { field });
    }
    out.put_slice(s.as_bytes());
    out.put_u8(0);
    Ok(())
}

fn len_u16(len: usize, field: &'static str) -> Result<u16, EncodeError> {
    u16::try_from(len).map_err(|_| EncodeError::TooLarge { field, len })
}

fn len_i32(len: usize, field: &'static str) -> Result<i32, EncodeError> {
    i32::try_from(len).map_err(|_| EncodeError::TooLarge { field, len })
}

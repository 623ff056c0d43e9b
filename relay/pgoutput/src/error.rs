//! The decoder's error type.

use std::str::Utf8Error;

/// Why a buffer is not a valid pgoutput message.
///
/// `message` fields carry the protocol page's name for the message being decoded
/// (`"Begin"`, `"Stream Commit"`, …) and `field` fields name the field that was
/// being read, in the spec's words where it has them (`"final LSN"`, `"xid"`, …).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The buffer was empty: not even a tag byte.
    #[error("empty buffer: no message tag")]
    Empty,

    /// The first byte is not the tag of a protocol version 1 or 2 message.
    #[error("unknown message tag {0:#04x} ({c:?})", c = char::from(*.0))]
    UnknownTag(u8),

    /// The buffer ended in the middle of a field.
    #[error("{message} message truncated while reading {field}")]
    UnexpectedEof {
        message: &'static str,
        field: &'static str,
    },

    /// A `String` field ran to the end of the buffer without its NUL terminator.
    #[error("{message} message: {field} is not NUL-terminated")]
    UnterminatedString {
        message: &'static str,
        field: &'static str,
    },

    /// A `String` field is not valid UTF-8.
    #[error("{message} message: {field} is not valid UTF-8")]
    InvalidUtf8 {
        message: &'static str,
        field: &'static str,
        #[source]
        source: Utf8Error,
    },

    /// A signed length or count field was negative.
    #[error("{message} message: {field} is negative ({value})")]
    NegativeLength {
        message: &'static str,
        field: &'static str,
        value: i32,
    },

    /// A TupleData column kind byte other than `n`, `u`, `t`, `b`.
    #[error("unknown TupleData column kind {0:#04x} ({c:?})", c = char::from(*.0))]
    UnknownTupleKind(u8),

    /// A Relation message's replica identity byte other than `d`, `n`, `f`, `i`.
    #[error("unknown replica identity {0:#04x} ({c:?})", c = char::from(*.0))]
    UnknownReplicaIdentity(u8),

    /// The byte announcing a TupleData in Insert, Update or Delete (`N`, `K`, `O`)
    /// was not one the message allows at that point.
    #[error("{message} message: expected {expected} before TupleData, found {found:#04x} ({c:?})", c = char::from(*.found))]
    UnexpectedTupleMarker {
        message: &'static str,
        expected: &'static str,
        found: u8,
    },

    /// A complete message was decoded but bytes were left over.
    #[error("{message} message followed by {remaining} trailing bytes")]
    TrailingBytes {
        message: &'static str,
        remaining: usize,
    },
}

//! One test per [`DecodeError`] and [`EncodeError`] variant.

use bytes::{Bytes, BytesMut};

use super::cat;
use crate::encode::{encode, encode_into, EncodeError};
use crate::*;

const TOP: DecodeContext = DecodeContext::TOP_LEVEL;
const STREAM: DecodeContext = DecodeContext::IN_STREAM;

fn err(buf: Bytes, ctx: DecodeContext) -> DecodeError {
    decode(&buf, ctx).unwrap_err()
}

#[test]
fn empty() {
    assert_eq!(err(Bytes::new(), TOP), DecodeError::Empty);
}

#[test]
fn unknown_tag() {
    assert_eq!(
        err(Bytes::from_static(b"Z"), TOP),
        DecodeError::UnknownTag(b'Z')
    );
    // Protocol version 3 (two-phase) messages are not decoded.
    for t in [b'b', b'P', b'K', b'r', b'p'] {
        assert_eq!(err(cat(&[&[t], &[0; 16]]), TOP), DecodeError::UnknownTag(t));
    }
    assert_eq!(
        DecodeError::UnknownTag(b'Z').to_string(),
        "unknown message tag 0x5a ('Z')"
    );
}

#[test]
fn unexpected_eof_names_message_and_field() {
    assert_eq!(
        err(cat(&[b"B", &[0; 8], &[0; 3]]), TOP),
        DecodeError::UnexpectedEof {
            message: "Begin",
            field: "commit timestamp"
        }
    );
    assert_eq!(
        err(
            cat(&[b"I", &[0; 4], b"N", &[0, 1], b"t", &[0, 0, 0, 5], b"abcd"]),
            TOP
        ),
        DecodeError::UnexpectedEof {
            message: "Insert",
            field: "column value"
        }
    );
    assert_eq!(
        err(cat(&[b"M", &[0; 4]]), STREAM),
        DecodeError::UnexpectedEof {
            message: "Message",
            field: "flags"
        }
    );
    assert_eq!(
        err(Bytes::from_static(b"A\0\0\0\x01\0\0"), TOP).to_string(),
        "Stream Abort message truncated while reading subtransaction xid"
    );
}

#[test]
fn huge_counts_are_eof_not_allocations() {
    // Truncate claiming i32::MAX relations.
    assert_eq!(
        err(
            cat(&[b"T", &[0x7f, 0xff, 0xff, 0xff], &[0], &[0, 0, 0, 1]]),
            TOP
        ),
        DecodeError::UnexpectedEof {
            message: "Truncate",
            field: "relation OID"
        }
    );
    // TupleData claiming 65535 columns.
    assert_eq!(
        err(cat(&[b"I", &[0; 4], b"N", &[0xff, 0xff], b"n"]), TOP),
        DecodeError::UnexpectedEof {
            message: "Insert",
            field: "column kind"
        }
    );
    // Relation claiming 65535 columns.
    assert_eq!(
        err(cat(&[b"R", &[0; 4], b"s\0t\0f", &[0xff, 0xff]]), TOP),
        DecodeError::UnexpectedEof {
            message: "Relation",
            field: "column flags"
        }
    );
}

#[test]
fn unterminated_string() {
    assert_eq!(
        err(cat(&[b"O", &[0; 8], b"node"]), TOP),
        DecodeError::UnterminatedString {
            message: "Origin",
            field: "origin name"
        }
    );
}

#[test]
fn invalid_utf8() {
    let e = err(
        cat(&[b"Y", &[0; 4], b"public\0", &[0xff, 0xfe], b"\0"]),
        TOP,
    );
    assert!(
        matches!(
            e,
            DecodeError::InvalidUtf8 {
                message: "Type",
                field: "type name",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(std::error::Error::source(&e).is_some());
}

#[test]
fn negative_length() {
    assert_eq!(
        err(
            cat(&[b"M", &[1], &[0; 8], b"p\0", &[0xff, 0xff, 0xff, 0xff]]),
            TOP
        ),
        DecodeError::NegativeLength {
            message: "Message",
            field: "content length",
            value: -1
        }
    );
    assert_eq!(
        err(
            cat(&[b"I", &[0; 4], b"N", &[0, 1], b"b", &[0x80, 0, 0, 0]]),
            TOP
        ),
        DecodeError::NegativeLength {
            message: "Insert",
            field: "column value length",
            value: i32::MIN
        }
    );
    assert_eq!(
        err(cat(&[b"T", &[0xff, 0xff, 0xff, 0xfe], &[0]]), TOP),
        DecodeError::NegativeLength {
            message: "Truncate",
            field: "number of relations",
            value: -2
        }
    );
}

#[test]
fn unknown_tuple_kind() {
    assert_eq!(
        err(cat(&[b"I", &[0; 4], b"N", &[0, 2], b"n", b"x"]), TOP),
        DecodeError::UnknownTupleKind(b'x')
    );
}

#[test]
fn unknown_replica_identity() {
    assert_eq!(
        err(cat(&[b"R", &[0; 4], b"s\0t\0x", &[0, 0]]), TOP),
        DecodeError::UnknownReplicaIdentity(b'x')
    );
}

#[test]
fn unexpected_tuple_marker() {
    let empty_tuple: &[u8] = &[0, 0];
    assert_eq!(
        err(cat(&[b"I", &[0; 4], b"K", empty_tuple]), TOP),
        DecodeError::UnexpectedTupleMarker {
            message: "Insert",
            expected: "'N'",
            found: b'K'
        }
    );
    assert_eq!(
        err(cat(&[b"U", &[0; 4], b"X", empty_tuple]), TOP),
        DecodeError::UnexpectedTupleMarker {
            message: "Update",
            expected: "'K', 'O' or 'N'",
            found: b'X'
        }
    );
    // After an old tuple, only the new one may follow.
    assert_eq!(
        err(
            cat(&[b"U", &[0; 4], b"K", empty_tuple, b"K", empty_tuple]),
            TOP
        ),
        DecodeError::UnexpectedTupleMarker {
            message: "Update",
            expected: "'N'",
            found: b'K'
        }
    );
    assert_eq!(
        err(cat(&[b"D", &[0; 4], b"N", empty_tuple]), TOP),
        DecodeError::UnexpectedTupleMarker {
            message: "Delete",
            expected: "'K' or 'O'",
            found: b'N'
        }
    );
}

#[test]
fn trailing_bytes() {
    assert_eq!(
        err(Bytes::from_static(b"EE"), TOP),
        DecodeError::TrailingBytes {
            message: "Stream Stop",
            remaining: 1
        }
    );
    // The protocol-version-4 Stream Abort (abort LSN and timestamp) is not v2.
    assert_eq!(
        err(cat(&[b"A", &[0, 0, 0, 1], &[0, 0, 0, 1], &[0; 16]]), TOP),
        DecodeError::TrailingBytes {
            message: "Stream Abort",
            remaining: 16
        }
    );
}

#[test]
fn wrong_stream_context_is_an_error() {
    let streamed = cat(&[
        b"I",
        &[0, 0, 0x03, 0xe8],
        &[0, 0, 0x40, 0x01],
        b"N",
        &[0, 1],
        b"n",
    ]);
    // Read as top-level, the relation OID's first byte lands where 'N' should be.
    assert_eq!(
        err(streamed, TOP),
        DecodeError::UnexpectedTupleMarker {
            message: "Insert",
            expected: "'N'",
            found: 0
        }
    );
    let top = cat(&[b"I", &[0, 0, 0x40, 0x01], b"N", &[0, 1], b"n"]);
    assert!(decode(&top, STREAM).is_err());
}

#[test]
fn encode_errors() {
    let mut msg = LogicalReplicationMessage::Origin(Origin {
        commit_lsn: Lsn::ZERO,
        name: "a\0b".into(),
    });
    assert_eq!(
        encode(&msg),
        Err(EncodeError::InteriorNul {
            field: "origin name"
        })
    );
    let mut out = BytesMut::from(&b"prior"[..]);
    assert!(encode_into(&msg, &mut out).is_err());
    assert_eq!(&out[..], b"prior", "buffer restored on error");

    msg = LogicalReplicationMessage::Insert(Insert {
        xid: None,
        rel_id: 1,
        new: TupleData(vec![TupleValue::Null; 70_000]),
    });
    assert_eq!(
        encode(&msg),
        Err(EncodeError::TooLarge {
            field: "number of columns",
            len: 70_000
        })
    );
}

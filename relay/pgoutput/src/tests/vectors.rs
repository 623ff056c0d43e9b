//! Hand-written byte vectors, decoded and re-encoded.

use bytes::Bytes;

use super::cat;
use crate::encode::encode;
use crate::*;

const TOP: DecodeContext = DecodeContext::TOP_LEVEL;
const STREAM: DecodeContext = DecodeContext::IN_STREAM;

/// 16/B374D848
const LSN: &[u8] = &[0x00, 0x00, 0x00, 0x16, 0xb3, 0x74, 0xd8, 0x48];
/// 16/B374D878
const END_LSN: &[u8] = &[0x00, 0x00, 0x00, 0x16, 0xb3, 0x74, 0xd8, 0x78];
/// 2024-01-01T00:00:00Z = 757382400000000 µs after 2000-01-01.
const TS: &[u8] = &[0x00, 0x02, 0xb0, 0xd5, 0xd4, 0xe9, 0x40, 0x00];
const TS_VALUE: i64 = 757_382_400_000_000;

/// Decodes, checks the result, and checks the encoder gives back the same bytes.
fn check(buf: Bytes, ctx: DecodeContext, expected: LogicalReplicationMessage) {
    let msg = decode(&buf, ctx).unwrap();
    assert_eq!(msg, expected);
    assert_eq!(encode(&msg).unwrap(), buf);
}

fn text(s: &'static str) -> TupleValue {
    TupleValue::Text(Bytes::from_static(s.as_bytes()))
}

#[test]
fn begin() {
    check(
        cat(&[b"B", LSN, TS, &[0, 0, 0x02, 0xf1]]),
        TOP,
        LogicalReplicationMessage::Begin(Begin {
            final_lsn: "16/B374D848".parse().unwrap(),
            commit_ts: TS_VALUE,
            xid: 753,
        }),
    );
    assert_eq!(pg_timestamp_to_unix_micros(TS_VALUE), 1_704_067_200_000_000);
}

#[test]
fn commit() {
    check(
        cat(&[b"C", &[0], LSN, END_LSN, TS]),
        TOP,
        LogicalReplicationMessage::Commit(Commit {
            flags: 0,
            commit_lsn: Lsn(0x16_B374_D848),
            end_lsn: Lsn(0x16_B374_D878),
            commit_ts: TS_VALUE,
        }),
    );
}

#[test]
fn origin() {
    check(
        cat(&[b"O", LSN, b"node_a\0"]),
        TOP,
        LogicalReplicationMessage::Origin(Origin {
            commit_lsn: Lsn(0x16_B374_D848),
            name: "node_a".into(),
        }),
    );
}

#[test]
fn relation() {
    let buf = cat(&[
        b"R",
        &[0, 0, 0x40, 0x01], // 16385
        b"public\0outbox\0d",
        &[0, 3],
        &[1],
        b"id\0",
        &[0, 0, 0, 20], // int8
        &[0xff, 0xff, 0xff, 0xff],
        &[0],
        b"payload\0",
        &[0, 0, 0x0e, 0xda], // jsonb
        &[0xff, 0xff, 0xff, 0xff],
        &[0],
        b"topic\0",
        &[0, 0, 0x04, 0x13], // varchar
        &[0, 0, 0, 104],     // varchar(100)
    ]);
    let expected = Relation {
        xid: None,
        rel_id: 16385,
        namespace: "public".into(),
        name: "outbox".into(),
        replica_identity: ReplicaIdentity::Default,
        columns: vec![
            Column {
                flags: 1,
                name: "id".into(),
                type_oid: 20,
                type_modifier: -1,
            },
            Column {
                flags: 0,
                name: "payload".into(),
                type_oid: 3802,
                type_modifier: -1,
            },
            Column {
                flags: 0,
                name: "topic".into(),
                type_oid: 1043,
                type_modifier: 104,
            },
        ],
    };
    assert!(expected.columns[0].is_key());
    assert!(!expected.columns[1].is_key());
    check(
        buf,
        TOP,
        LogicalReplicationMessage::Relation(expected.clone()),
    );

    // Streamed: the same with the xid first.
    let streamed = cat(&[
        b"R",
        &[0, 0, 0x03, 0xe8],
        &[0, 0, 0x40, 0x01],
        b"public\0outbox\0d",
        &[0, 0],
    ]);
    check(
        streamed,
        STREAM,
        LogicalReplicationMessage::Relation(Relation {
            xid: Some(1000),
            columns: vec![],
            ..expected
        }),
    );
}

#[test]
fn relation_replica_identities() {
    for (b, ri) in [
        (b'd', ReplicaIdentity::Default),
        (b'n', ReplicaIdentity::Nothing),
        (b'f', ReplicaIdentity::Full),
        (b'i', ReplicaIdentity::Index),
    ] {
        let buf = cat(&[b"R", &[0, 0, 0, 1], b"\0t\0", &[b], &[0, 0]]);
        let LogicalReplicationMessage::Relation(rel) = decode(&buf, TOP).unwrap() else {
            panic!("not a Relation")
        };
        assert_eq!(rel.replica_identity, ri);
        assert_eq!(rel.namespace, "", "empty namespace is pg_catalog");
        assert_eq!(ri.as_byte(), b);
    }
}

#[test]
fn type_message() {
    check(
        cat(&[b"Y", &[0, 0, 0x40, 0x10], b"public\0mood\0"]),
        TOP,
        LogicalReplicationMessage::Type(TypeMessage {
            xid: None,
            oid: 16400,
            namespace: "public".into(),
            name: "mood".into(),
        }),
    );
}

#[test]
fn insert_with_text_null_and_unchanged_columns() {
    let buf = cat(&[
        b"I",
        &[0, 0, 0x40, 0x01],
        b"N",
        &[0, 4],
        b"t",
        &[0, 0, 0, 2],
        b"42",
        b"n",
        b"u",
        b"t",
        &[0, 0, 0, 0], // empty string, not NULL
    ]);
    check(
        buf.clone(),
        TOP,
        LogicalReplicationMessage::Insert(Insert {
            xid: None,
            rel_id: 16385,
            new: TupleData(vec![
                text("42"),
                TupleValue::Null,
                TupleValue::UnchangedToast,
                text(""),
            ]),
        }),
    );
}

#[test]
fn insert_values_are_slices_of_the_input() {
    let buf = cat(&[
        b"I",
        &[0, 0, 0, 1],
        b"N",
        &[0, 2],
        b"t",
        &[0, 0, 0, 3],
        b"abc",
        b"b",
        &[0, 0, 0, 2],
        &[0xde, 0xad],
    ]);
    let LogicalReplicationMessage::Insert(insert) = decode(&buf, TOP).unwrap() else {
        panic!("not an Insert")
    };
    let range = buf.as_ptr_range();
    for value in &insert.new {
        let bytes = value.as_bytes().unwrap();
        assert!(range.contains(&bytes.as_ptr()), "{value:?} was copied");
    }
    assert_eq!(
        insert.new.get(1),
        Some(&TupleValue::Binary(Bytes::from_static(&[0xde, 0xad])))
    );
    assert_eq!(insert.new.values()[0].kind(), b't');
}

#[test]
fn streamed_insert() {
    check(
        cat(&[
            b"I",
            &[0, 0, 0x03, 0xe8],
            &[0, 0, 0x40, 0x01],
            b"N",
            &[0, 1],
            b"n",
        ]),
        STREAM,
        LogicalReplicationMessage::Insert(Insert {
            xid: Some(1000),
            rel_id: 16385,
            new: TupleData(vec![TupleValue::Null]),
        }),
    );
}

#[test]
fn update_forms() {
    let rel = &[0, 0, 0x40, 0x01][..];
    let new = TupleData(vec![text("1"), text("b")]);
    let new_bytes = cat(&[
        b"N",
        &[0, 2],
        b"t",
        &[0, 0, 0, 1],
        b"1",
        b"t",
        &[0, 0, 0, 1],
        b"b",
    ]);
    let key_bytes = cat(&[&[0, 2], b"t", &[0, 0, 0, 1], b"1", b"n"]);
    let key = TupleData(vec![text("1"), TupleValue::Null]);

    // No old tuple.
    check(
        cat(&[b"U", rel, &new_bytes]),
        TOP,
        LogicalReplicationMessage::Update(Update {
            xid: None,
            rel_id: 16385,
            old: None,
            new: new.clone(),
        }),
    );
    // Old key.
    check(
        cat(&[b"U", rel, b"K", &key_bytes, &new_bytes]),
        TOP,
        LogicalReplicationMessage::Update(Update {
            xid: None,
            rel_id: 16385,
            old: Some(OldTuple::Key(key.clone())),
            new: new.clone(),
        }),
    );
    // Whole old row (REPLICA IDENTITY FULL).
    check(
        cat(&[b"U", rel, b"O", &key_bytes, &new_bytes]),
        TOP,
        LogicalReplicationMessage::Update(Update {
            xid: None,
            rel_id: 16385,
            old: Some(OldTuple::Full(key)),
            new,
        }),
    );
}

#[test]
fn delete() {
    check(
        cat(&[
            b"D",
            &[0, 0, 0x40, 0x01],
            b"K",
            &[0, 1],
            b"t",
            &[0, 0, 0, 1],
            b"7",
        ]),
        TOP,
        LogicalReplicationMessage::Delete(Delete {
            xid: None,
            rel_id: 16385,
            old: OldTuple::Key(TupleData(vec![text("7")])),
        }),
    );
}

#[test]
fn truncate() {
    let buf = cat(&[
        b"T",
        &[0, 0, 0, 2],
        &[3],
        &[0, 0, 0x40, 0x01],
        &[0, 0, 0x40, 0x02],
    ]);
    let expected = Truncate {
        xid: None,
        options: 3,
        rel_ids: vec![16385, 16386],
    };
    assert!(expected.cascade() && expected.restart_identity());
    check(buf, TOP, LogicalReplicationMessage::Truncate(expected));
}

#[test]
fn message() {
    let buf = cat(&[b"M", &[1], LSN, b"outbox\0", &[0, 0, 0, 5], b"hello"]);
    check(
        buf,
        TOP,
        LogicalReplicationMessage::Message(LogicalMessage {
            xid: None,
            transactional: true,
            lsn: Lsn(0x16_B374_D848),
            prefix: "outbox".into(),
            content: Bytes::from_static(b"hello"),
        }),
    );
    // Non-transactional, empty content, streamed.
    check(
        cat(&[b"M", &[0, 0, 0x03, 0xe8], &[0], LSN, b"p\0", &[0, 0, 0, 0]]),
        STREAM,
        LogicalReplicationMessage::Message(LogicalMessage {
            xid: Some(1000),
            transactional: false,
            lsn: Lsn(0x16_B374_D848),
            prefix: "p".into(),
            content: Bytes::new(),
        }),
    );
}

#[test]
fn stream_start_stop_commit() {
    check(
        cat(&[b"S", &[0, 0, 0x03, 0xe8], &[1]]),
        TOP,
        LogicalReplicationMessage::StreamStart(StreamStart {
            xid: 1000,
            first_segment: true,
        }),
    );
    check(
        cat(&[b"S", &[0, 0, 0x03, 0xe8], &[0]]),
        TOP,
        LogicalReplicationMessage::StreamStart(StreamStart {
            xid: 1000,
            first_segment: false,
        }),
    );
    check(
        Bytes::from_static(b"E"),
        STREAM,
        LogicalReplicationMessage::StreamStop,
    );
    check(
        cat(&[b"c", &[0, 0, 0x03, 0xe8], &[0], LSN, END_LSN, TS]),
        TOP,
        LogicalReplicationMessage::StreamCommit(StreamCommit {
            xid: 1000,
            flags: 0,
            commit_lsn: Lsn(0x16_B374_D848),
            end_lsn: Lsn(0x16_B374_D878),
            commit_ts: TS_VALUE,
        }),
    );
}

#[test]
fn stream_abort() {
    let msg = LogicalReplicationMessage::StreamAbort(StreamAbort {
        xid: 1000,
        subxid: 1001,
    });
    check(
        cat(&[b"A", &[0, 0, 0x03, 0xe8], &[0, 0, 0x03, 0xe9]]),
        TOP,
        msg.clone(),
    );
    assert_eq!(msg.tag(), b'A');
    assert_eq!(msg.name(), "Stream Abort");
    assert_eq!(msg.stream_xid(), None);
}

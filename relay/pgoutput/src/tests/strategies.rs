//! proptest strategies for every message type.

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;

use crate::*;

pub fn lsn() -> impl Strategy<Value = Lsn> {
    any::<u64>().prop_map(Lsn)
}

/// Any string without NUL (a `String` field cannot hold one).
pub fn string() -> impl Strategy<Value = String> {
    vec(any::<char>().prop_filter("no NUL", |c| *c != '\0'), 0..10)
        .prop_map(|cs| cs.into_iter().collect())
}

pub fn bytes() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..20).prop_map(Bytes::from)
}

pub fn tuple_value() -> impl Strategy<Value = TupleValue> {
    prop_oneof![
        Just(TupleValue::Null),
        Just(TupleValue::UnchangedToast),
        bytes().prop_map(TupleValue::Text),
        bytes().prop_map(TupleValue::Binary),
    ]
}

pub fn tuple_data() -> impl Strategy<Value = TupleData> {
    vec(tuple_value(), 0..6).prop_map(TupleData)
}

pub fn old_tuple() -> impl Strategy<Value = OldTuple> {
    prop_oneof![
        tuple_data().prop_map(OldTuple::Key),
        tuple_data().prop_map(OldTuple::Full),
    ]
}

fn replica_identity() -> impl Strategy<Value = ReplicaIdentity> {
    prop_oneof![
        Just(ReplicaIdentity::Default),
        Just(ReplicaIdentity::Nothing),
        Just(ReplicaIdentity::Full),
        Just(ReplicaIdentity::Index),
    ]
}

fn column() -> impl Strategy<Value = Column> {
    (any::<u8>(), string(), any::<u32>(), any::<i32>()).prop_map(
        |(flags, name, type_oid, type_modifier)| Column {
            flags,
            name,
            type_oid,
            type_modifier,
        },
    )
}

/// The v2 xid prefix: present exactly inside a streamed block.
fn xid(in_stream: bool) -> BoxedStrategy<Option<u32>> {
    if in_stream {
        any::<u32>().prop_map(Some).boxed()
    } else {
        Just(None).boxed()
    }
}

/// Any message that is valid in the given context.
pub fn message(in_stream: bool) -> BoxedStrategy<LogicalReplicationMessage> {
    use LogicalReplicationMessage as M;
    let xid = move || xid(in_stream);
    prop_oneof![
        (lsn(), any::<i64>(), any::<u32>()).prop_map(|(final_lsn, commit_ts, xid)| {
            M::Begin(Begin {
                final_lsn,
                commit_ts,
                xid,
            })
        }),
        (xid(), any::<bool>(), lsn(), string(), bytes()).prop_map(
            |(xid, transactional, lsn, prefix, content)| M::Message(LogicalMessage {
                xid,
                transactional,
                lsn,
                prefix,
                content,
            })
        ),
        (any::<u8>(), lsn(), lsn(), any::<i64>()).prop_map(
            |(flags, commit_lsn, end_lsn, commit_ts)| M::Commit(Commit {
                flags,
                commit_lsn,
                end_lsn,
                commit_ts,
            })
        ),
        (lsn(), string()).prop_map(|(commit_lsn, name)| M::Origin(Origin { commit_lsn, name })),
        (
            xid(),
            any::<u32>(),
            string(),
            string(),
            replica_identity(),
            vec(column(), 0..5)
        )
            .prop_map(
                |(xid, rel_id, namespace, name, replica_identity, columns)| {
                    M::Relation(Relation {
                        xid,
                        rel_id,
                        namespace,
                        name,
                        replica_identity,
                        columns,
                    })
                }
            ),
        (xid(), any::<u32>(), string(), string()).prop_map(|(xid, oid, namespace, name)| {
            M::Type(TypeMessage {
                xid,
                oid,
                namespace,
                name,
            })
        }),
        (xid(), any::<u32>(), tuple_data()).prop_map(|(xid, rel_id, new)| M::Insert(Insert {
            xid,
            rel_id,
            new
        })),
        (
            xid(),
            any::<u32>(),
            proptest::option::of(old_tuple()),
            tuple_data()
        )
            .prop_map(|(xid, rel_id, old, new)| M::Update(Update {
                xid,
                rel_id,
                old,
                new
            })),
        (xid(), any::<u32>(), old_tuple()).prop_map(|(xid, rel_id, old)| M::Delete(Delete {
            xid,
            rel_id,
            old
        })),
        (xid(), any::<u8>(), vec(any::<u32>(), 0..6)).prop_map(|(xid, options, rel_ids)| {
            M::Truncate(Truncate {
                xid,
                options,
                rel_ids,
            })
        }),
        (any::<u32>(), any::<bool>()).prop_map(|(xid, first_segment)| {
            M::StreamStart(StreamStart { xid, first_segment })
        }),
        Just(M::StreamStop),
        (any::<u32>(), any::<u8>(), lsn(), lsn(), any::<i64>()).prop_map(
            |(xid, flags, commit_lsn, end_lsn, commit_ts)| M::StreamCommit(StreamCommit {
                xid,
                flags,
                commit_lsn,
                end_lsn,
                commit_ts,
            })
        ),
        (any::<u32>(), any::<u32>())
            .prop_map(|(xid, subxid)| M::StreamAbort(StreamAbort { xid, subxid })),
    ]
    .boxed()
}

/// A context and a message valid in it.
pub fn message_in_context() -> impl Strategy<Value = (DecodeContext, LogicalReplicationMessage)> {
    any::<bool>().prop_flat_map(|in_stream| (Just(DecodeContext { in_stream }), message(in_stream)))
}

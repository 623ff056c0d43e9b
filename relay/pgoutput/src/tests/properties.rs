//! Property tests: round trip through the encoder, and no panics on any input.

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;

use super::strategies::message_in_context;
use crate::encode::encode;
use crate::message::tag;
use crate::*;

/// Whether this kind of message has the v2 xid prefix when streamed.
fn has_stream_prefix(msg: &LogicalReplicationMessage) -> bool {
    use LogicalReplicationMessage as M;
    matches!(
        msg,
        M::Message(_)
            | M::Relation(_)
            | M::Type(_)
            | M::Insert(_)
            | M::Update(_)
            | M::Delete(_)
            | M::Truncate(_)
    )
}

const TAGS: [u8; 14] = [
    tag::BEGIN,
    tag::MESSAGE,
    tag::COMMIT,
    tag::ORIGIN,
    tag::RELATION,
    tag::TYPE,
    tag::INSERT,
    tag::UPDATE,
    tag::DELETE,
    tag::TRUNCATE,
    tag::STREAM_START,
    tag::STREAM_STOP,
    tag::STREAM_COMMIT,
    tag::STREAM_ABORT,
];

/// Random bytes, half the time behind a valid tag so the decoder gets past it.
fn junk() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        vec(any::<u8>(), 0..64),
        (
            proptest::sample::select(TAGS.to_vec()),
            vec(any::<u8>(), 0..64)
        )
            .prop_map(|(t, mut rest)| {
                rest.insert(0, t);
                rest
            }),
    ]
    .prop_map(Bytes::from)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encode_then_decode_is_identity((ctx, msg) in message_in_context()) {
        let buf = encode(&msg).unwrap();
        prop_assert_eq!(buf.first().copied(), Some(msg.tag()));
        prop_assert_eq!(decode(&buf, ctx), Ok(msg.clone()));
        prop_assert_eq!(msg.stream_xid().is_some(), ctx.in_stream && has_stream_prefix(&msg));
        if !has_stream_prefix(&msg) {
            // No prefix: the context makes no difference.
            let other = DecodeContext { in_stream: !ctx.in_stream };
            prop_assert_eq!(decode(&buf, other), Ok(msg));
        }
    }

    #[test]
    fn every_strict_prefix_is_an_error((ctx, msg) in message_in_context()) {
        let buf = encode(&msg).unwrap();
        for len in 0..buf.len() {
            prop_assert!(decode(&buf.slice(..len), ctx).is_err(), "prefix of {} bytes decoded", len);
        }
    }

    #[test]
    fn an_extra_byte_is_trailing((ctx, msg) in message_in_context(), extra in any::<u8>()) {
        let mut bytes = encode(&msg).unwrap().to_vec();
        bytes.push(extra);
        prop_assert_eq!(
            decode(&Bytes::from(bytes), ctx),
            Err(DecodeError::TrailingBytes { message: msg.name(), remaining: 1 })
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic(buf in junk()) {
        for ctx in [DecodeContext::TOP_LEVEL, DecodeContext::IN_STREAM] {
            // Whatever decodes must survive a round trip of its own.
            if let Ok(msg) = decode(&buf, ctx) {
                let again = encode(&msg).unwrap();
                prop_assert_eq!(decode(&again, ctx), Ok(msg));
            }
        }
    }
}

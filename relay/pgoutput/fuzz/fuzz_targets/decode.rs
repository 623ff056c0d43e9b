//! Decodes arbitrary bytes in both contexts. The decoder must never panic, and
//! whatever it accepts must survive encode → decode unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use outbox_pgoutput::encode::encode;
use outbox_pgoutput::{decode, DecodeContext};

fuzz_target!(|data: &[u8]| {
    let buf = bytes::Bytes::copy_from_slice(data);
    for ctx in [DecodeContext::TOP_LEVEL, DecodeContext::IN_STREAM] {
        if let Ok(msg) = decode(&buf, ctx) {
            let again = encode(&msg).expect("a decoded message must be encodable");
            assert_eq!(
                decode(&again, ctx).as_ref(),
                Ok(&msg),
                "round trip changed {msg:?}"
            );
        }
    }
});

//! Tests: hand-written byte vectors, one per error kind, and property tests
//! against the encoder.

mod errors;
mod properties;
mod strategies;
mod vectors;

use bytes::Bytes;

/// Concatenates byte pieces into one buffer.
fn cat(parts: &[&[u8]]) -> Bytes {
    Bytes::from(parts.concat())
}

//! Claim-check offload of large bodies to S3, in the Amazon SQS / SNS Extended Client
//! Libraries' wire format.
//!
//! With `large_payloads.mode: s3`, a message whose body and attributes are over
//! `threshold_bytes` (or every message, with `always`) is sent as a *pointer*: its body is
//! stored as an S3 object first, and the message carries instead
//!
//! - the body `["software.amazon.payloadoffloading.PayloadS3Pointer",{"s3BucketName":"<bucket>","s3Key":"<key>"}]`,
//! - the message attribute `ExtendedPayloadSize` (data type `Number`), the stored body's
//!   length in bytes,
//!
//! exactly what the extended client libraries (Java `amazon-sqs-java-extended-client-lib`
//! / `amazon-sns-java-extended-client-lib` through `payloadoffloading-common`, Python
//! `amazon-sqs-extended-client`) write, so their consumers read the original body with no
//! code change (for SNS, through a subscription with raw message delivery, which keeps
//! attributes as message attributes). Since that attribute takes one of SQS's 10, an
//! offloaded message carries at most 9 of its own.
//!
//! The object key is `<prefix><event id>` (an event id S3 keys cannot carry safely becomes
//! `h-` + its hex SHA-256), so the event written again after a crash overwrites the same
//! object: replays never create a second object. The relay never deletes objects; a
//! lifecycle rule on the prefix expires them.
//!
//! The put goes through the publisher's request path (`sink.rs`): it is made before the
//! message is sent, in the same request future, and a message whose object is not
//! confirmed is not sent; a failed put is classified by the one table (`error.rs`) and is
//! the entry's result, so it is retried, counted by the destination's circuit breaker and
//! given up on exactly like a failed publish.

use aws_config::SdkConfig;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::config::LargePayloads;
use super::error::classify_sdk_error;
use crate::PublishError;

/// The pointer class the current extended clients write and read.
pub const POINTER_CLASS: &str = "software.amazon.payloadoffloading.PayloadS3Pointer";

/// The reserved message attribute that marks a pointer (`SQSLargePayloadSize` is the
/// legacy name, still read by the libraries; the relay writes the current one).
pub const RESERVED_ATTRIBUTE: &str = "ExtendedPayloadSize";

/// The object key of an event's body: `prefix` + the event id when it consists only of
/// characters S3 documents as safe in keys (letters, digits, ``!-_.*'()``) and is at most
/// 128 characters, else `prefix` + `h-` + the hex SHA-256 of the id. Deterministic.
pub fn object_key(prefix: &str, event_id: &str) -> String {
    let safe = !event_id.is_empty()
        && event_id.len() <= 128
        && event_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!-_.*'()".contains(&b))
        && event_id != "."
        && event_id != "..";
    if safe {
        format!("{prefix}{event_id}")
    } else {
        format!(
            "{prefix}h-{}",
            hex::encode(Sha256::digest(event_id.as_bytes()))
        )
    }
}

/// The pointer body, as the extended clients serialise it (compact JSON array).
pub fn pointer_body(bucket: &str, key: &str) -> String {
    serde_json::json!([POINTER_CLASS, { "s3BucketName": bucket, "s3Key": key }]).to_string()
}

/// Where one message's body goes, and the body.
#[derive(Debug)]
pub struct Offload {
    pub bucket: String,
    pub key: String,
    /// The message body as it would have been sent inline.
    pub body: Bytes,
    /// The object was written and confirmed (a retry of the publish does not put it
    /// again).
    pub stored: std::sync::atomic::AtomicBool,
}

/// Writes objects; [`S3Store`] in production, scripted in tests.
#[async_trait::async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// PutObject `body` at `bucket`/`key`; `Ok` once S3 confirmed it.
    async fn put(&self, bucket: &str, key: &str, body: Bytes) -> Result<(), PublishError>;
}

/// The S3 client of `large_payloads`.
#[derive(Clone, Debug)]
pub struct S3Store(aws_sdk_s3::Client);

impl S3Store {
    /// On the sink's SDK configuration (region, credentials, timeouts, SDK retries off),
    /// with `large_payloads.endpoint` / `force_path_style` instead of the sink's endpoint.
    pub fn new(sdk: &SdkConfig, settings: &LargePayloads) -> Self {
        let mut builder = aws_sdk_s3::config::Builder::from(sdk);
        builder.set_endpoint_url(settings.endpoint.clone());
        let config = builder.force_path_style(settings.force_path_style).build();
        S3Store(aws_sdk_s3::Client::from_conf(config))
    }
}

#[async_trait::async_trait]
impl ObjectStore for S3Store {
    async fn put(&self, bucket: &str, key: &str, body: Bytes) -> Result<(), PublishError> {
        self.0
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify_sdk_error(&e, &format!("S3 PutObject s3://{bucket}/{key}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_deterministic_and_safe() {
        assert_eq!(
            object_key("relay/", "4f1c2a9e-0b7d-4c55-9d3e-1a2b3c4d5e6f"),
            "relay/4f1c2a9e-0b7d-4c55-9d3e-1a2b3c4d5e6f"
        );
        assert_eq!(object_key("", "e-1"), "e-1");
        for odd in ["a/b", "with space", "ü", "", "..", &"x".repeat(129)] {
            let key = object_key("p/", odd);
            assert!(key.starts_with("p/h-") && key.len() == 2 + 66, "{key}");
            assert_eq!(key, object_key("p/", odd));
        }
    }

    #[test]
    fn pointer_is_the_extended_client_format() {
        assert_eq!(
            pointer_body("outbox-bodies", "relay/e-1"),
            r#"["software.amazon.payloadoffloading.PayloadS3Pointer",{"s3BucketName":"outbox-bodies","s3Key":"relay/e-1"}]"#
        );
    }
}

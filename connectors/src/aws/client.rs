//! The one interface to the two services: a batch of messages to one destination in, one
//! result per entry out ([`Client`], implemented by [`SnsClient`](super::sns::SnsClient)
//! and [`SqsClient`](super::sqs::SqsClient)), and what both share: loading the SDK
//! configuration and reading a batch response. Ordering, batching and retries are the
//! publisher's (`sink`), the same for both.

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

use super::error::classify_code;
use super::message::Message;
use super::AwsConfig;
use crate::{ErrorClass, PublishError};

/// The result of one entry of a batch.
pub type EntryResult = Result<(), PublishError>;

/// A client of one of the two services, as the publisher uses it.
#[async_trait::async_trait]
pub trait Client: Clone + Send + Sync + 'static {
    /// `"sns"` or `"sqs"`: the publisher's `kind()` and the configuration section
    /// (`sink.sns` / `sink.sqs`).
    const NAME: &'static str;

    /// A client on the loaded SDK configuration.
    fn new(sdk: &SdkConfig) -> Self;

    /// Checks that `destination` is a topic ARN / queue URL, FIFO exactly when `fifo`.
    fn validate_destination(destination: &str, fifo: bool) -> Result<(), String>;

    /// Sends `messages` (1 to 10) to `destination` in one PublishBatch / SendMessageBatch.
    /// Returns one result per message, in order: `Successful` entries `Ok`, `Failed` ones
    /// classified, entries missing from the response retryable. A failed request gives
    /// every entry the request's error.
    async fn send_batch(&self, destination: &str, messages: &[&Message]) -> Vec<EntryResult>;

    /// A cheap authenticated call (ListTopics / ListQueues).
    async fn probe(&self) -> Result<(), PublishError>;
}

/// Loads the shared SDK configuration: the default credential chain, rustls (ring) over
/// hyper, SDK-level retries off (the connector retries per entry, in order).
pub(crate) async fn load(name: &str, config: &AwsConfig) -> Result<SdkConfig, PublishError> {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(config.connect_timeout)
                .operation_attempt_timeout(config.request_timeout)
                .build(),
        );
    if let Some(region) = &config.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(endpoint) = &config.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    let sdk = loader.load().await;
    if sdk.region().is_none() {
        return Err(PublishError::new(
            ErrorClass::Fatal,
            "config",
            format!(
                "sink.{}.region: not set, and neither AWS_REGION nor the profile names one",
                name
            ),
        ));
    }
    if sdk.credentials_provider().is_none() {
        return Err(PublishError::new(
            ErrorClass::Fatal,
            "invalid_credentials",
            "no AWS credentials provider could be set up",
        ));
    }
    Ok(sdk)
}

/// Every entry of a failed request gets the request's error.
pub(crate) fn request_failed(messages: usize, err: PublishError) -> Vec<EntryResult> {
    vec![Err(err); messages]
}

/// An entry the SDK refused to build (an attribute or body it considers invalid).
pub(crate) fn build_error(e: impl std::fmt::Display) -> PublishError {
    PublishError::new(ErrorClass::Permanent, "invalid_parameter", e.to_string())
}

/// Merges the `Successful` ids and `Failed` entries of a response into per-entry results.
pub(crate) fn entry_results(
    count: usize,
    destination: &str,
    successful: impl Iterator<Item = String>,
    failed: impl Iterator<Item = (String, String, bool, Option<String>)>,
) -> Vec<EntryResult> {
    let mut results: Vec<Option<EntryResult>> = vec![None; count];
    for id in successful {
        if let Some(slot) = id.parse::<usize>().ok().and_then(|i| results.get_mut(i)) {
            *slot = Some(Ok(()));
        }
    }
    for (id, code, sender_fault, message) in failed {
        if let Some(slot) = id.parse::<usize>().ok().and_then(|i| results.get_mut(i)) {
            let (class, kind) = classify_code(&code, Some(sender_fault), None);
            *slot = Some(Err(PublishError::new(
                class,
                kind,
                format!(
                    "{destination}: {code}: {}",
                    message.as_deref().unwrap_or("(no message)")
                ),
            )));
        }
    }
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                Err(PublishError::new(
                    ErrorClass::Retryable,
                    "bad_response",
                    format!("{destination}: the batch response did not mention the entry"),
                ))
            })
        })
        .collect()
}

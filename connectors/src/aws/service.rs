//! The two services behind one interface: a batch of messages to one destination in, one
//! result per entry out. Everything else (ordering, batching, retries) is shared.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

use super::error::{classify_code, classify_sdk_error};
use super::message::Message;
use super::AwsConfig;
use crate::{ErrorClass, PublishError};

/// Which service a publisher talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Sns,
    Sqs,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::Sns => "sns",
            Service::Sqs => "sqs",
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) enum Client {
    Sns(aws_sdk_sns::Client),
    Sqs(aws_sdk_sqs::Client),
}

/// Loads the shared SDK configuration: the default credential chain, rustls (ring) over
/// hyper, SDK-level retries off (the connector retries per entry, in order).
pub(crate) async fn client(service: Service, config: &AwsConfig) -> Result<Client, PublishError> {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
                .operation_attempt_timeout(Duration::from_millis(config.request_timeout_ms))
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
                service.name()
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
    Ok(match service {
        Service::Sns => Client::Sns(aws_sdk_sns::Client::new(&sdk)),
        Service::Sqs => Client::Sqs(aws_sdk_sqs::Client::new(&sdk)),
    })
}

/// The result of one entry of a batch.
pub(crate) type EntryResult = Result<(), PublishError>;

impl Client {
    /// Sends `messages` (1 to 10) to `destination` in one PublishBatch / SendMessageBatch.
    /// Returns one result per message, in order: `Successful` entries `Ok`, `Failed` ones
    /// classified, entries missing from the response retryable. A failed request gives
    /// every entry the request's error.
    pub async fn send_batch(&self, destination: &str, messages: &[&Message]) -> Vec<EntryResult> {
        match self {
            Client::Sns(client) => send_sns(client, destination, messages).await,
            Client::Sqs(client) => send_sqs(client, destination, messages).await,
        }
    }

    /// A cheap authenticated call (ListTopics / ListQueues).
    pub async fn probe(&self) -> Result<(), PublishError> {
        match self {
            Client::Sns(client) => client
                .list_topics()
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify_sdk_error(&e, "SNS ListTopics")),
            Client::Sqs(client) => client
                .list_queues()
                .max_results(1)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify_sdk_error(&e, "SQS ListQueues")),
        }
    }
}

fn request_failed(messages: usize, err: PublishError) -> Vec<EntryResult> {
    vec![Err(err); messages]
}

/// Merges the `Successful` ids and `Failed` entries of a response into per-entry results.
fn entry_results(
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

async fn send_sns(
    client: &aws_sdk_sns::Client,
    topic_arn: &str,
    messages: &[&Message],
) -> Vec<EntryResult> {
    use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};
    let mut entries = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let mut entry = PublishBatchRequestEntry::builder()
            .id(i.to_string())
            .message(m.body.clone())
            .set_message_group_id(m.group_id.clone())
            .set_message_deduplication_id(m.deduplication_id.clone());
        for (name, value) in &m.attributes {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value.clone())
                .build();
            match value {
                Ok(value) => entry = entry.message_attributes(name.clone(), value),
                Err(e) => return request_failed(messages.len(), build_error(e)),
            }
        }
        match entry.build() {
            Ok(entry) => entries.push(entry),
            Err(e) => return request_failed(messages.len(), build_error(e)),
        }
    }
    match client
        .publish_batch()
        .topic_arn(topic_arn)
        .set_publish_batch_request_entries(Some(entries))
        .send()
        .await
    {
        Ok(out) => entry_results(
            messages.len(),
            topic_arn,
            out.successful()
                .iter()
                .filter_map(|s| s.id().map(str::to_string)),
            out.failed().iter().map(|f| {
                (
                    f.id().to_string(),
                    f.code().to_string(),
                    f.sender_fault(),
                    f.message().map(str::to_string),
                )
            }),
        ),
        Err(e) => request_failed(
            messages.len(),
            classify_sdk_error(&e, &format!("SNS PublishBatch to {topic_arn}")),
        ),
    }
}

async fn send_sqs(
    client: &aws_sdk_sqs::Client,
    queue_url: &str,
    messages: &[&Message],
) -> Vec<EntryResult> {
    use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
    let mut entries = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let mut entry = SendMessageBatchRequestEntry::builder()
            .id(i.to_string())
            .message_body(m.body.clone())
            .set_message_group_id(m.group_id.clone())
            .set_message_deduplication_id(m.deduplication_id.clone());
        for (name, value) in &m.attributes {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value.clone())
                .build();
            match value {
                Ok(value) => entry = entry.message_attributes(name.clone(), value),
                Err(e) => return request_failed(messages.len(), build_error(e)),
            }
        }
        match entry.build() {
            Ok(entry) => entries.push(entry),
            Err(e) => return request_failed(messages.len(), build_error(e)),
        }
    }
    match client
        .send_message_batch()
        .queue_url(queue_url)
        .set_entries(Some(entries))
        .send()
        .await
    {
        Ok(out) => entry_results(
            messages.len(),
            queue_url,
            out.successful().iter().map(|s| s.id().to_string()),
            out.failed().iter().map(|f| {
                (
                    f.id().to_string(),
                    f.code().to_string(),
                    f.sender_fault(),
                    f.message().map(str::to_string),
                )
            }),
        ),
        Err(e) => request_failed(
            messages.len(),
            classify_sdk_error(&e, &format!("SQS SendMessageBatch to {queue_url}")),
        ),
    }
}

fn build_error(e: impl std::fmt::Display) -> PublishError {
    PublishError::new(ErrorClass::Permanent, "invalid_parameter", e.to_string())
}

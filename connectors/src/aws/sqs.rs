//! [`Client`] for SQS: SendMessageBatch to queue URLs.

use aws_config::SdkConfig;

use super::client::{build_error, entry_results, request_failed, Client, EntryResult};
use super::destination;
use super::error::classify_sdk_error;
use super::message::Message;
use crate::PublishError;

/// Sends to SQS queues; destinations are queue URLs.
#[derive(Clone, Debug)]
pub struct SqsClient(aws_sdk_sqs::Client);

#[async_trait::async_trait]
impl Client for SqsClient {
    const NAME: &'static str = "sqs";

    fn new(sdk: &SdkConfig) -> Self {
        SqsClient(aws_sdk_sqs::Client::new(sdk))
    }

    fn validate_destination(destination: &str, fifo: bool) -> Result<(), String> {
        destination::validate_queue_url(destination, fifo)
    }

    async fn send_batch(&self, queue_url: &str, messages: &[&Message]) -> Vec<EntryResult> {
        send_message_batch(&self.0, queue_url, messages).await
    }

    async fn probe(&self) -> Result<(), PublishError> {
        self.0
            .list_queues()
            .max_results(1)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify_sdk_error(&e, "SQS ListQueues"))
    }
}

async fn send_message_batch(
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
        for (name, data_type, value) in m.typed_attributes() {
            let value = MessageAttributeValue::builder()
                .data_type(data_type)
                .string_value(value)
                .build();
            match value {
                Ok(value) => entry = entry.message_attributes(name, value),
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

//! [`Client`] for SNS: PublishBatch to topic ARNs.

use aws_config::SdkConfig;

use super::client::{build_error, entry_results, request_failed, Client, EntryResult};
use super::destination;
use super::error::classify_sdk_error;
use super::message::Message;
use crate::PublishError;

/// Publishes to SNS topics; destinations are topic ARNs.
#[derive(Clone, Debug)]
pub struct SnsClient(aws_sdk_sns::Client);

#[async_trait::async_trait]
impl Client for SnsClient {
    const NAME: &'static str = "sns";

    fn new(sdk: &SdkConfig) -> Self {
        SnsClient(aws_sdk_sns::Client::new(sdk))
    }

    fn validate_destination(destination: &str, fifo: bool) -> Result<(), String> {
        destination::validate_topic_arn(destination, fifo)
    }

    async fn send_batch(&self, topic_arn: &str, messages: &[&Message]) -> Vec<EntryResult> {
        publish_batch(&self.0, topic_arn, messages).await
    }

    async fn probe(&self) -> Result<(), PublishError> {
        self.0
            .list_topics()
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify_sdk_error(&e, "SNS ListTopics"))
    }
}

async fn publish_batch(
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

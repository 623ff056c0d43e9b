//! SNS/SQS clients for the emulator, and the inventory fan-out: one SNS topic with an SQS
//! queue per consumer, subscribed with raw message delivery (the body is the event payload
//! and the relay's message attributes — id, type, traceparent, schema-version — arrive as
//! SQS message attributes).

use aws_sdk_sqs::types::QueueAttributeName;

use crate::config::{Names, AWS_REGION};
use crate::Error;

/// Consumers of the inventory topic, each with its own queue.
pub const INVENTORY_CONSUMERS: [&str; 3] = ["orders", "payments", "console"];

/// SDK configuration. With an endpoint URL (an emulator) the emulator's fixed test
/// credentials; with `aws` (or empty), AWS itself with the default credential chain.
pub async fn sdk(endpoint: &str) -> aws_config::SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http);
    if endpoint.is_empty() || endpoint == "aws" {
        return loader.load().await;
    }
    loader
        .region(aws_config::Region::new(AWS_REGION))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "example",
        ))
        .load()
        .await
}

/// The ARNs the emulator gave the inventory topic and its dead-letter topic (emulators
/// differ in account id).
pub struct Topics {
    pub inventory: String,
    pub dead_letter: String,
}

/// Creates the inventory topic, the consumers' queues and the raw-delivery subscriptions
/// (all idempotent).
pub async fn provision(sdk: &aws_config::SdkConfig, names: &Names) -> crate::Result<Topics> {
    let sns = aws_sdk_sns::Client::new(sdk);
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let topic_arn = sns
        .create_topic()
        .name(names.inventory_sns_topic())
        .send()
        .await
        .map_err(|e| Error::aws("sns", "CreateTopic", e))?
        .topic_arn
        .unwrap_or_default();
    let dead_letter = sns
        .create_topic()
        .name(format!("{}_dead_letter", names.prefix))
        .send()
        .await
        .map_err(|e| Error::aws("sns", "CreateTopic", e))?
        .topic_arn
        .unwrap_or_default();
    for consumer in INVENTORY_CONSUMERS {
        let url = sqs
            .create_queue()
            .queue_name(names.inventory_queue(consumer))
            .send()
            .await
            .map_err(|e| Error::aws("sqs", "CreateQueue", e))?
            .queue_url
            .unwrap_or_default();
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| Error::aws("sqs", "GetQueueAttributes", e))?
            .attributes
            .unwrap_or_default();
        let queue_arn = attrs
            .get(&QueueAttributeName::QueueArn)
            .cloned()
            .unwrap_or_default();
        let existing = sns
            .list_subscriptions_by_topic()
            .topic_arn(&topic_arn)
            .send()
            .await
            .map_err(|e| Error::aws("sns", "ListSubscriptionsByTopic", e))?;
        let subscribed = existing
            .subscriptions()
            .iter()
            .any(|s| s.endpoint() == Some(queue_arn.as_str()));
        if !subscribed {
            sns.subscribe()
                .topic_arn(&topic_arn)
                .protocol("sqs")
                .endpoint(&queue_arn)
                .attributes("RawMessageDelivery", "true")
                .send()
                .await
                .map_err(|e| Error::aws("sns", "Subscribe", e))?;
        }
    }
    Ok(Topics {
        inventory: topic_arn,
        dead_letter,
    })
}

/// Deletes the topic and the queues (test teardown).
pub async fn teardown(sdk: &aws_config::SdkConfig, names: &Names) {
    let sns = aws_sdk_sns::Client::new(sdk);
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let ours = [
        names.inventory_sns_topic(),
        format!("{}_dead_letter", names.prefix),
    ];
    if let Ok(list) = sns.list_topics().send().await {
        for t in list.topics() {
            let arn = t.topic_arn().unwrap_or_default();
            if ours.iter().any(|n| arn.ends_with(&format!(":{n}"))) {
                let _ = sns.delete_topic().topic_arn(arn).send().await;
            }
        }
    }
    for consumer in INVENTORY_CONSUMERS {
        if let Ok(out) = sqs
            .get_queue_url()
            .queue_name(names.inventory_queue(consumer))
            .send()
            .await
        {
            let _ = sqs
                .delete_queue()
                .queue_url(out.queue_url.unwrap_or_default())
                .send()
                .await;
        }
    }
}

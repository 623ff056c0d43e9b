//! The AWS sinks of a chaos run, on the fast emulator (fauxqs, `deploy/local/aws.sh
//! fauxqs-start`, shared: never stopped, its outages are Toxiproxy's): SQS FIFO queues,
//! SQS standard queues, or SNS FIFO topics each subscribed by an SQS FIFO queue (raw
//! delivery). One destination per aggregate type; the relay reaches the emulator through
//! the sink proxy. Reading back drains every queue (receive, delete) into the checker.

use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};

use super::catalog::TYPES;
use super::check::{Checker, Observed};
use crate::aws;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkKind {
    Kafka,
    SqsFifo,
    Sqs,
    SnsFifo,
}

impl SinkKind {
    pub fn parse(s: &str) -> Option<SinkKind> {
        match s {
            "kafka" => Some(SinkKind::Kafka),
            "sqs-fifo" => Some(SinkKind::SqsFifo),
            "sqs" => Some(SinkKind::Sqs),
            "sns-fifo" => Some(SinkKind::SnsFifo),
            _ => None,
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            SinkKind::Kafka => "kafka",
            SinkKind::SqsFifo => "sqs-fifo",
            SinkKind::Sqs => "sqs",
            SinkKind::SnsFifo => "sns-fifo",
        }
    }
}

/// What a run needs to know of its AWS destinations.
pub struct AwsDestinations {
    pub sdk: aws_config::SdkConfig,
    /// Per aggregate type (in [`TYPES`] order): the queue its events end up in.
    pub queues: Vec<String>,
    pub sink_yaml: String,
    pub route_template: String,
    pub dead_letter: String,
}

/// Creates the queues (and topics) of run `name` and the relay's sink section, the relay
/// reaching the emulator at `proxy_endpoint`.
pub async fn prepare(
    kind: SinkKind,
    name: &str,
    proxy_endpoint: &str,
) -> Result<AwsDestinations, String> {
    let endpoint = aws::fauxqs_endpoint();
    let sdk = aws::sdk_at(&endpoint).await;
    let fifo = kind != SinkKind::Sqs;
    let suffix = if fifo { ".fifo" } else { "" };
    let mut queues = Vec::new();
    let mut targets = Vec::new();
    for t in TYPES.iter().chain(["dlq"].iter()) {
        let (url, arn) = aws::create_queue(&sdk, &format!("{name}-{t}-q{suffix}")).await;
        let target = if kind == SinkKind::SnsFifo {
            aws::create_topic_into(&sdk, &format!("{name}-{t}{suffix}"), &arn).await
        } else {
            url.clone()
        };
        queues.push(url);
        targets.push(target);
    }
    let dead_letter = targets.pop().expect("dlq");
    queues.pop();
    // Emulators differ in the host and account they put in URLs and ARNs: take them from
    // what was created.
    let route_template = targets[0].replace(
        &format!("{name}-{}", TYPES[0]),
        &format!("{name}-{{aggregatetype}}"),
    );
    let service = if kind == SinkKind::SnsFifo {
        "sns"
    } else {
        "sqs"
    };
    let sink_yaml = format!(
        "  kind: {service}
  {service}:
    region: {}
    endpoint: {proxy_endpoint}
    fifo: {fifo}
    retry_initial_backoff_ms: 50
    retry_max_backoff_ms: 1000
    max_concurrency: 32
",
        aws::REGION
    );
    Ok(AwsDestinations {
        sdk,
        queues,
        sink_yaml,
        route_template,
        dead_letter,
    })
}

/// Drains each queue into the checker (destination = the queue URL, key = the
/// `aggregateid` attribute, headers = the message attributes, stored at SentTimestamp), in
/// the order received; stops on a queue after `idle` without a message.
pub async fn read(
    sdk: &aws_config::SdkConfig,
    queues: &[String],
    checker: &mut Checker,
    idle: Duration,
) -> Result<u64, String> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let mut read = 0u64;
    for url in queues {
        let mut last = Instant::now();
        while last.elapsed() < idle {
            let resp = sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .message_attribute_names("All")
                .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
                .visibility_timeout(600)
                .send()
                .await
                .map_err(|e| format!("receive from {url}: {e:?}"))?;
            let messages = resp.messages.unwrap_or_default();
            if messages.is_empty() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            last = Instant::now();
            let mut entries = Vec::new();
            for m in messages {
                let attrs: Vec<(String, Vec<u8>)> = m
                    .message_attributes
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.string_value.unwrap_or_default().into_bytes()))
                    .collect();
                let key = attrs
                    .iter()
                    .find(|(k, _)| k == "aggregateid")
                    .map(|(_, v)| v.clone());
                let sent = m
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
                    .and_then(|v| v.parse::<i64>().ok());
                checker.observe(&Observed {
                    destination: url,
                    partition: 0,
                    key: key.as_deref(),
                    payload: m.body.as_deref().map(str::as_bytes),
                    headers: attrs
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_slice()))
                        .collect(),
                    append_ms: sent,
                });
                read += 1;
                entries.push(
                    DeleteMessageBatchRequestEntry::builder()
                        .id(entries.len().to_string())
                        .receipt_handle(m.receipt_handle.unwrap_or_default())
                        .build()
                        .map_err(|e| e.to_string())?,
                );
            }
            sqs.delete_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| format!("delete from {url}: {e:?}"))?;
        }
    }
    Ok(read)
}

/// Deletes the run's queues and topics.
pub async fn cleanup(d: &AwsDestinations) {
    let sqs = aws_sdk_sqs::Client::new(&d.sdk);
    for q in &d.queues {
        let _ = sqs.delete_queue().queue_url(q).send().await;
    }
}

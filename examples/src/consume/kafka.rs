//! Kafka consumer loop: manual offset commits, after the handler's transaction.

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::ClientConfig;

use super::{apply_until_ok, Handler};
use crate::events::{Delivery, Origin};

pub fn consumer(brokers: &str, group: &str) -> crate::Result<StreamConsumer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("topic.metadata.refresh.interval.ms", "2000")
        .create()?)
}

/// Consumes `topics` forever. Each record is applied (until it succeeds) and then its offset
/// is committed; a crash in between redelivers the record, which the inbox absorbs.
pub async fn run(
    name: String,
    brokers: String,
    group: String,
    topics: Vec<String>,
    handler: Handler,
) -> crate::Result<()> {
    let consumer = consumer(&brokers, &group)?;
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&refs)?;
    loop {
        let msg = match consumer.recv().await {
            Ok(m) => m,
            Err(e) => {
                // Broker down or rebalancing: librdkafka reconnects by itself.
                eprintln!("{name}: kafka: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                continue;
            }
        };
        let header = |key: &str| -> Option<String> {
            let hs = msg.headers()?;
            hs.iter()
                .find(|h| h.key == key)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let origin = Origin::Kafka {
            topic: msg.topic().to_string(),
            partition: msg.partition(),
            offset: msg.offset(),
        };
        let key = msg.key().map(|k| String::from_utf8_lossy(k).into_owned());
        match Delivery::assemble(header, key, msg.payload().unwrap_or(b"null"), origin) {
            Ok(d) => apply_until_ok(&name, &handler, &d).await,
            // A record no consumer can read would block the partition forever: log it and
            // move on (the relay's dead-letter handling keeps such events out of topics).
            Err(e) => eprintln!("{name}: skipping unreadable record: {e}"),
        }
        // Commit failures (broker just restarted) are harmless: the next commit covers it,
        // or the record is redelivered and the inbox absorbs it.
        if let Err(e) = consumer.commit_message(&msg, CommitMode::Async) {
            eprintln!("{name}: offset commit: {e}");
        }
    }
}

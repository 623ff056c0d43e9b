//! Kafka consumer loop: manual offset commits, after the handler's transaction.

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset};

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

/// How long without a record before the consumer checks that it is not stuck.
const STALL_CHECK: std::time::Duration = std::time::Duration::from_secs(15);

/// Whether an assigned partition has records beyond the consumer's position (a blocking
/// metadata round trip per partition; only called after `STALL_CHECK` of silence).
fn unread_records(consumer: &StreamConsumer) -> bool {
    let Ok(positions) = consumer.position() else {
        return false;
    };
    positions.elements().iter().any(|tp| {
        let Offset::Offset(at) = tp.offset() else {
            return false;
        };
        consumer
            .fetch_watermarks(
                tp.topic(),
                tp.partition(),
                std::time::Duration::from_secs(5),
            )
            .is_ok_and(|(_, high)| high > at)
    })
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
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    let mut consumer = consumer(&brokers, &group)?;
    consumer.subscribe(&refs)?;
    loop {
        let msg = match tokio::time::timeout(STALL_CHECK, consumer.recv()).await {
            Err(_quiet) => {
                let multi_thread = tokio::runtime::Handle::current().runtime_flavor()
                    == tokio::runtime::RuntimeFlavor::MultiThread;
                let stuck = if multi_thread {
                    tokio::task::block_in_place(|| unread_records(&consumer))
                } else {
                    unread_records(&consumer)
                };
                if stuck {
                    // librdkafka can stop fetching a partition after a broker restart
                    // while its group membership stays healthy (seen once in the
                    // 1,000-order chaos test: 25 events in the topic, none delivered in
                    // 120 s). A new consumer resumes from the committed offsets; the
                    // inbox absorbs what is delivered again.
                    eprintln!(
                        "{name}: kafka: no record for {STALL_CHECK:?} while assigned partitions have unread records; recreating the consumer"
                    );
                    drop(consumer);
                    consumer = self::consumer(&brokers, &group)?;
                    consumer.subscribe(&refs)?;
                }
                continue;
            }
            Ok(Ok(m)) => m,
            Ok(Err(e)) => {
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

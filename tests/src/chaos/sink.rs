//! Reading back the sink's full history, record by record into the checker, without
//! holding it in memory: every partition of the run's Kafka topics from offset 0 to its
//! high watermark (read_committed; the relay's producer is idempotent, not transactional,
//! so that is every record).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::check::{Checker, Observed};

/// Creates the run's topics (3 partitions, as the broker's default) with the broker's
/// append time as record timestamp: when each copy of an event was stored is what ties a
/// duplicate to the fault that caused it.
pub async fn create_topics(bootstrap: &str, topics: &[String]) -> Result<(), String> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| format!("admin client: {e}"))?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| {
            NewTopic::new(t, 3, TopicReplication::Fixed(1))
                .set("message.timestamp.type", "LogAppendTime")
        })
        .collect();
    for r in admin
        .create_topics(&new, &AdminOptions::new())
        .await
        .map_err(|e| format!("create topics: {e}"))?
    {
        r.map_err(|(t, e)| format!("create topic {t}: {e}"))?;
    }
    Ok(())
}

/// Reads `topics` (those that exist) into `checker`; returns the records read.
pub fn read_kafka(
    bootstrap: &str,
    topics: &[String],
    checker: &mut Checker,
) -> Result<u64, String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("chaos-check-{}", rand::random::<u32>()))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .map_err(|e| format!("consumer: {e}"))?;
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(30))
        .map_err(|e| format!("metadata: {e}"))?;
    let mut assignment = TopicPartitionList::new();
    let mut high: HashMap<(String, i32), i64> = HashMap::new();
    for t in metadata.topics() {
        if !topics.iter().any(|x| x == t.name()) {
            continue;
        }
        for p in t.partitions() {
            let (_, hi) = consumer
                .fetch_watermarks(t.name(), p.id(), Duration::from_secs(30))
                .map_err(|e| format!("watermarks of {}:{}: {e}", t.name(), p.id()))?;
            if hi > 0 {
                high.insert((t.name().to_string(), p.id()), hi);
                assignment
                    .add_partition_offset(t.name(), p.id(), Offset::Beginning)
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    consumer.assign(&assignment).map_err(|e| e.to_string())?;
    let mut next: HashMap<(String, i32), i64> = HashMap::new();
    let mut read = 0u64;
    let mut last_progress = Instant::now();
    while high
        .iter()
        .any(|(k, hi)| next.get(k).copied().unwrap_or(0) < *hi)
    {
        if last_progress.elapsed() > Duration::from_secs(60) {
            return Err(format!(
                "no progress reading back for 60 s: {read} records read, partitions left: {:?}",
                high.iter()
                    .filter(|(k, hi)| next.get(*k).copied().unwrap_or(0) < **hi)
                    .collect::<Vec<_>>()
            ));
        }
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                let k = (m.topic().to_string(), m.partition());
                let expected = next.get(&k).copied().unwrap_or(0);
                if m.offset() < expected {
                    continue; // read again after a fetch retry: one record, not two
                }
                next.insert(k, m.offset() + 1);
                let headers: Vec<(&str, &[u8])> = m
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| (h.key, h.value.unwrap_or_default()))
                            .collect()
                    })
                    .unwrap_or_default();
                let append_ms = match m.timestamp() {
                    rdkafka::Timestamp::LogAppendTime(t) => Some(t),
                    _ => None,
                };
                checker.observe(&Observed {
                    destination: m.topic(),
                    partition: m.partition(),
                    key: m.key(),
                    payload: m.payload(),
                    headers,
                    append_ms,
                });
                read += 1;
                last_progress = Instant::now();
            }
            Some(Err(e)) => eprintln!("chaos: consumer error (continuing): {e}"),
            None => {}
        }
    }
    crate::kafka::close_bounded(consumer, "chaos check");
    Ok(read)
}

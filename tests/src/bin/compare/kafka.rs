//! Topic administration and reading the outputs back.

use super::*;
use rdkafka::error::KafkaError;

/// Creates topics with the broker's append time as record timestamp.
pub(crate) async fn create_topics(topics: &[String]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", env::kafka_bootstrap())
        .create()
        .expect("admin client");
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| {
            NewTopic::new(t, PARTITIONS, TopicReplication::Fixed(1))
                .set("message.timestamp.type", "LogAppendTime")
        })
        .collect();
    for r in admin
        .create_topics(&new, &AdminOptions::new())
        .await
        .expect("create topics")
    {
        r.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
    }
}

pub(crate) async fn delete_topics(topics: &[String]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", env::kafka_bootstrap())
        .create()
        .expect("admin client");
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let _ = admin.delete_topics(&names, &AdminOptions::new()).await;
}

pub(crate) fn watermark_consumer() -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", env::kafka_bootstrap())
        .set("group.id", "compare-watermarks")
        .create()
        .expect("kafka consumer")
}

/// Records in a topic: the sum of its partitions' high watermarks.
pub(crate) fn topic_count(c: &BaseConsumer, topic: &str) -> i64 {
    (0..PARTITIONS)
        .map(|p| {
            c.fetch_watermarks(topic, p, Duration::from_secs(5))
                .map(|(_, high)| high)
                .unwrap_or(0)
        })
        .sum()
}

/// Reads every record of `topic` up to the end of each partition (its end as the
/// consumer sees it, not a record count: an exactly-once topic's offsets include the
/// transactions' commit markers, which are not records): `f(key, payload, header id,
/// timestamp ms)`.
pub(crate) fn read_topic(topic: &str, mut f: impl FnMut(&[u8], &[u8], Option<&[u8]>, Option<i64>)) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", env::kafka_bootstrap())
        .set("group.id", "compare-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        .create()
        .expect("kafka consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).expect("assign");
    let mut open: std::collections::HashSet<i32> = (0..PARTITIONS).collect();
    let mut idle = Instant::now();
    while !open.is_empty() {
        match c.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                idle = Instant::now();
                let id = m
                    .headers()
                    .and_then(|hs| hs.iter().find(|h| h.key == "id").and_then(|h| h.value));
                f(
                    m.key().unwrap_or_default(),
                    m.payload().unwrap_or_default(),
                    id,
                    m.timestamp().to_millis(),
                );
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
            }
            Some(Err(e)) => eprintln!("compare: consumer error (continuing): {e}"),
            None => assert!(
                idle.elapsed() < Duration::from_secs(60),
                "reading {topic}: partitions {open:?} never reached their end"
            ),
        }
    }
}

/// The integer after `field` in a JSON text (`"seq":` / `"seq": `).
pub(crate) fn json_int(payload: &[u8], field: &str) -> Option<i64> {
    let text = std::str::from_utf8(payload).ok()?;
    let at = text.find(field)? + field.len();
    let rest = text[at..].trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '-'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

pub(crate) fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100000001b3)
    })
}

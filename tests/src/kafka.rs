//! Reading back what the relay published.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::ClientConfig;

use crate::env;

/// One consumed record, with everything a test compares byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub timestamp_ms: Option<i64>,
}

impl Record {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }
    pub fn header_str(&self, name: &str) -> Option<String> {
        self.header(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
    pub fn key_str(&self) -> String {
        String::from_utf8_lossy(self.key.as_deref().unwrap_or_default()).into_owned()
    }
}

/// A consumer of every topic whose name starts with `prefix.`, from the beginning.
pub struct TopicReader {
    consumer: BaseConsumer,
    pub records: Vec<Record>,
}

impl TopicReader {
    pub fn new(prefix: &str) -> Self {
        Self::subscribe(prefix, &format!("^{}\\..*", prefix.replace('.', "\\.")))
    }

    /// A consumer of exactly one topic, from the beginning.
    pub fn exact(topic: &str) -> Self {
        Self::subscribe(topic, topic)
    }

    /// As [`TopicReader::exact`], but `read_uncommitted`: it also sees the records of
    /// aborted and open Kafka transactions.
    pub fn exact_uncommitted(topic: &str) -> Self {
        Self::subscribe_with(topic, topic, "read_uncommitted")
    }

    fn subscribe(prefix: &str, pattern: &str) -> Self {
        Self::subscribe_with(prefix, pattern, "read_committed")
    }

    /// A `read_committed` consumer of one topic on another broker than the shared one.
    pub fn exact_on(bootstrap: &str, topic: &str) -> Self {
        Self::subscribe_on(bootstrap, topic, topic, "read_committed")
    }

    fn subscribe_with(prefix: &str, pattern: &str, isolation: &str) -> Self {
        Self::subscribe_on(&env::kafka_bootstrap(), prefix, pattern, isolation)
    }

    fn subscribe_on(bootstrap: &str, prefix: &str, pattern: &str, isolation: &str) -> Self {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set(
                "group.id",
                format!("test-{prefix}-{}", rand::random::<u32>()),
            )
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("topic.metadata.refresh.interval.ms", "500")
            .set("isolation.level", isolation)
            .create()
            .expect("kafka consumer");
        consumer.subscribe(&[pattern]).expect("subscribe");
        TopicReader {
            consumer,
            records: Vec::new(),
        }
    }

    /// Polls until `done(records)` holds or nothing new arrived for `idle`.
    pub fn read_until(
        &mut self,
        idle: Duration,
        mut done: impl FnMut(&[Record]) -> bool,
    ) -> &[Record] {
        let mut last_progress = Instant::now();
        while !done(&self.records) && last_progress.elapsed() < idle {
            match self.consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    let headers = m
                        .headers()
                        .map(|hs| {
                            hs.iter()
                                .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                                .collect()
                        })
                        .unwrap_or_default();
                    self.records.push(Record {
                        topic: m.topic().to_string(),
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(<[u8]>::to_vec),
                        payload: m.payload().map(<[u8]>::to_vec),
                        headers,
                        timestamp_ms: m.timestamp().to_millis(),
                    });
                    last_progress = Instant::now();
                }
                Some(Err(e)) => eprintln!("consumer error (continuing): {e}"),
                None => {}
            }
        }
        &self.records
    }

    /// Reads until at least `n` records arrived (or `idle` without progress).
    pub fn read_at_least(&mut self, n: usize, idle: Duration) -> &[Record] {
        self.read_until(idle, |r| r.len() >= n)
    }

    /// Reads until `n` distinct `id` headers arrived (or `idle` without progress), then
    /// two seconds more for replayed copies right behind: for runs where duplicates are
    /// allowed, so a record count says nothing.
    pub fn read_distinct_ids(&mut self, n: usize, idle: Duration) -> &[Record] {
        let mut ids = std::collections::HashSet::new();
        let mut counted = 0;
        self.read_until(idle, |r| {
            for rec in &r[counted..] {
                if let Some(id) = rec.header("id") {
                    ids.insert(id.to_vec());
                }
            }
            counted = r.len();
            ids.len() >= n
        });
        self.read_until(Duration::from_secs(2), |_| false)
    }
}

/// Groups records by key in the order they were read. One key maps to one partition, so
/// this is the broker's order for that key.
pub fn by_key(records: &[Record]) -> HashMap<String, Vec<&Record>> {
    let mut out: HashMap<String, Vec<&Record>> = HashMap::new();
    for r in records {
        out.entry(r.key_str()).or_default().push(r);
    }
    out
}

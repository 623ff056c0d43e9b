//! Reading back what the relay published.

use std::collections::{HashMap, HashSet};
use std::mem::ManuallyDrop;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

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

/// A consumer of every topic whose name starts with `prefix.` (or of one topic), from the
/// beginning.
///
/// It joins no consumer group: it finds the matching topics' partitions in the broker's
/// metadata (again every half second, for topics that appear later) and assigns each one
/// from its first offset. A group subscription cost CI two kinds of flakes: a pattern
/// subscription rebalances whenever a matching topic appears, and without committed
/// offsets a reassigned partition was read again from an earlier position (offsets 1 and
/// 2 before 0); and once a reader got no records at all in 60 s. Without a group there is
/// no rebalance and no coordinator to wait for.
///
/// `records` still holds each broker record once, and (after each read) the records of
/// one partition in offset order, should librdkafka ever fetch a range twice; a duplicate
/// the relay published has its own offset and is kept.
pub struct TopicReader {
    /// Closed by [`close_bounded`] when the reader is dropped.
    consumer: ManuallyDrop<BaseConsumer>,
    topics: Topics,
    /// Partitions assigned so far, each from its beginning.
    assigned: HashSet<(String, i32)>,
    discovered_at: Option<Instant>,
    pub records: Vec<Record>,
    seen: HashSet<(String, i32, i64)>,
    /// Highest offset taken per partition, to notice a record that arrives late.
    highest: HashMap<(String, i32), i64>,
    rewound: HashSet<(String, i32)>,
}

impl Drop for TopicReader {
    fn drop(&mut self) {
        // SAFETY: the field is never used again; this is the reader's drop.
        let consumer = unsafe { ManuallyDrop::take(&mut self.consumer) };
        close_bounded(consumer, "test reader");
    }
}

/// How long a consumer's close may take before it is abandoned.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// Closes a group consumer, waiting at most [`CLOSE_WAIT`].
///
/// rdkafka's own drop polls until librdkafka reports the consumer closed, with no bound
/// (librdkafka has had close hangs, e.g. confluentinc/librdkafka#4527). A CI run once
/// hung for 80 minutes inside one test after every record had been published and the
/// test's last bounded wait had passed, which points at a drop. A consumer that does not
/// close in time is leaked with a message (a test process ends soon after) instead of
/// hanging the suite.
pub fn close_bounded(consumer: BaseConsumer, what: &str) {
    let _ = consumer.unassign();
    if consumer.close_queue().is_err() {
        return; // dropped below: nothing to wait for
    }
    let deadline = Instant::now() + CLOSE_WAIT;
    while !consumer.closed() {
        if Instant::now() > deadline {
            eprintln!("{what}: the Kafka consumer did not close in {CLOSE_WAIT:?}; left open");
            std::mem::forget(consumer);
            return;
        }
        consumer.poll(Duration::from_millis(100));
    }
}

/// Which topics a reader reads.
enum Topics {
    Exact(String),
    /// Names starting with this (`<prefix>.`).
    Prefix(String),
}

impl Topics {
    fn matches(&self, name: &str) -> bool {
        match self {
            Topics::Exact(t) => name == t,
            Topics::Prefix(p) => name.starts_with(p.as_str()),
        }
    }
}

/// How often the metadata is asked for new matching topics and partitions.
const DISCOVERY_INTERVAL: Duration = Duration::from_millis(500);

impl TopicReader {
    pub fn new(prefix: &str) -> Self {
        Self::create(
            &env::kafka_bootstrap(),
            Topics::Prefix(format!("{prefix}.")),
            "read_committed",
        )
    }

    /// A consumer of exactly one topic, from the beginning.
    pub fn exact(topic: &str) -> Self {
        Self::create(
            &env::kafka_bootstrap(),
            Topics::Exact(topic.to_string()),
            "read_committed",
        )
    }

    /// As [`TopicReader::exact`], but `read_uncommitted`: it also sees the records of
    /// aborted and open Kafka transactions.
    pub fn exact_uncommitted(topic: &str) -> Self {
        Self::create(
            &env::kafka_bootstrap(),
            Topics::Exact(topic.to_string()),
            "read_uncommitted",
        )
    }

    /// A `read_committed` consumer of one topic on another broker than the shared one.
    pub fn exact_on(bootstrap: &str, topic: &str) -> Self {
        Self::create(
            bootstrap,
            Topics::Exact(topic.to_string()),
            "read_committed",
        )
    }

    fn create(bootstrap: &str, topics: Topics, isolation: &str) -> Self {
        // librdkafka wants a group id for assign(); the reader never joins it.
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", format!("test-reader-{}", rand::random::<u32>()))
            .set("enable.auto.commit", "false")
            .set("allow.auto.create.topics", "false")
            .set("isolation.level", isolation)
            .create()
            .expect("kafka consumer");
        TopicReader {
            consumer: ManuallyDrop::new(consumer),
            topics,
            assigned: HashSet::new(),
            discovered_at: None,
            records: Vec::new(),
            seen: HashSet::new(),
            highest: HashMap::new(),
            rewound: HashSet::new(),
        }
    }

    /// Assigns, from their first offset, the matching partitions not assigned yet (at
    /// most every [`DISCOVERY_INTERVAL`]).
    fn discover(&mut self) {
        if self
            .discovered_at
            .is_some_and(|at| at.elapsed() < DISCOVERY_INTERVAL)
        {
            return;
        }
        self.discovered_at = Some(Instant::now());
        let one = match &self.topics {
            Topics::Exact(t) => Some(t.as_str()),
            Topics::Prefix(_) => None,
        };
        let metadata = match self.consumer.fetch_metadata(one, Duration::from_secs(5)) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("reader metadata (retrying): {e}");
                return;
            }
        };
        let mut new = TopicPartitionList::new();
        for topic in metadata.topics() {
            if topic.error().is_some() || !self.topics.matches(topic.name()) {
                continue;
            }
            for p in topic.partitions() {
                if self.assigned.insert((topic.name().to_string(), p.id())) {
                    new.add_partition_offset(topic.name(), p.id(), Offset::Beginning)
                        .expect("partition offset");
                }
            }
        }
        if new.count() > 0 {
            self.consumer.incremental_assign(&new).expect("assign");
        }
    }

    /// What a short read leaves to look at: per assigned partition, the consumer's
    /// position and the broker's low and high watermarks (does the topic hold records the
    /// reader did not get, or did they never arrive?).
    fn describe_short_read(&self, want: usize) {
        let positions = self.consumer.position().ok();
        let mut parts: Vec<&(String, i32)> = self.assigned.iter().collect();
        parts.sort();
        let mut lines = Vec::new();
        for (topic, partition) in parts {
            let position = positions
                .as_ref()
                .and_then(|l| l.find_partition(topic, *partition))
                .map(|e| format!("{:?}", e.offset()))
                .unwrap_or_else(|| "?".into());
            let marks = self
                .consumer
                .fetch_watermarks(topic, *partition, Duration::from_secs(5))
                .map(|(lo, hi)| format!("low {lo}, high {hi}"))
                .unwrap_or_else(|e| format!("watermarks: {e}"));
            lines.push(format!(
                "  {topic}[{partition}]: position {position}, {marks}"
            ));
        }
        eprintln!(
            "short read: {} of {want} records; {} partitions assigned\n{}",
            self.records.len(),
            self.assigned.len(),
            lines.join("\n")
        );
    }

    /// Everything read, in the order [`TopicReader::read_until`] leaves it.
    pub fn into_records(mut self) -> Vec<Record> {
        std::mem::take(&mut self.records)
    }

    /// Polls until `done(records)` holds or nothing new arrived for `idle`.
    pub fn read_until(
        &mut self,
        idle: Duration,
        mut done: impl FnMut(&[Record]) -> bool,
    ) -> &[Record] {
        let mut last_progress = Instant::now();
        self.discover();
        while !done(&self.records) && last_progress.elapsed() < idle {
            self.discover();
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
                    self.take(Record {
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
        self.restore_partition_order();
        &self.records
    }

    /// Keeps `record` unless it was read before, and notes a partition that went back.
    fn take(&mut self, record: Record) {
        if !self
            .seen
            .insert((record.topic.clone(), record.partition, record.offset))
        {
            return;
        }
        let highest = self
            .highest
            .entry((record.topic.clone(), record.partition))
            .or_insert(i64::MIN);
        if record.offset < *highest {
            self.rewound
                .insert((record.topic.clone(), record.partition));
        }
        *highest = (*highest).max(record.offset);
        self.records.push(record);
    }

    /// Puts the records of each partition that went back into offset order, in the
    /// slots its records already occupy: other partitions' records keep their places.
    fn restore_partition_order(&mut self) {
        for (topic, partition) in std::mem::take(&mut self.rewound) {
            let slots: Vec<usize> = (0..self.records.len())
                .filter(|&i| {
                    self.records[i].topic == topic && self.records[i].partition == partition
                })
                .collect();
            let mut in_order: Vec<Record> =
                slots.iter().map(|&i| self.records[i].clone()).collect();
            in_order.sort_by_key(|r| r.offset);
            for (slot, record) in slots.into_iter().zip(in_order) {
                self.records[slot] = record;
            }
        }
    }

    /// Reads until at least `n` records arrived (or `idle` without progress).
    pub fn read_at_least(&mut self, n: usize, idle: Duration) -> &[Record] {
        self.read_until(idle, |r| r.len() >= n);
        if self.records.len() < n {
            self.describe_short_read(n);
        }
        &self.records
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
        if ids.len() < n {
            self.describe_short_read(n);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(partition: i32, offset: i64) -> Record {
        Record {
            topic: "t".into(),
            partition,
            offset,
            key: None,
            payload: None,
            headers: vec![],
            timestamp_ms: None,
        }
    }

    #[test]
    fn a_partition_read_again_from_an_earlier_offset_yields_each_record_once_in_offset_order() {
        let mut reader = TopicReader::exact("t");
        // What CI saw: offsets 1 and 2 of a partition first, then a rewind to 0 that
        // re-reads 1; another partition's records in between keep their places.
        for (p, o) in [(0, 1), (1, 0), (0, 2), (0, 0), (0, 1), (1, 1)] {
            reader.take(rec(p, o));
        }
        reader.restore_partition_order();
        let got: Vec<(i32, i64)> = reader
            .records
            .iter()
            .map(|r| (r.partition, r.offset))
            .collect();
        assert_eq!(got, [(0, 0), (1, 0), (0, 1), (0, 2), (1, 1)]);
    }
}

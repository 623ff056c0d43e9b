//! librdkafka's statistics (`statistics.interval.ms`) as gauges: broker round trips, the
//! time records wait in the producer's queue, queue depth, in-flight records and batch
//! sizes, the numbers that say whether a slow relay waits on the broker or on itself.

use std::sync::{Arc, Mutex};

use rdkafka::statistics::{Statistics, Window};

use crate::client_stats::ClientGauge;

/// The latest statistics, converted when librdkafka emits them (every
/// `statistics.interval.ms`) and read at every scrape.
#[derive(Clone, Default)]
pub struct StatsCell(Arc<Mutex<Vec<ClientGauge>>>);

impl StatsCell {
    pub fn set(&self, statistics: &Statistics) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = gauges(statistics);
    }

    pub fn get(&self) -> Vec<ClientGauge> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

const RTT: &str = "kafka_broker_rtt_seconds";
const RTT_HELP: &str = "librdkafka: broker request round-trip time over the last statistics window, by broker and stat (avg, p99).";
const INT_LATENCY: &str = "kafka_queue_latency_seconds";
const INT_LATENCY_HELP: &str = "librdkafka: time records waited in the producer queue before being sent (int_latency), by broker and stat (avg, p99).";
const OUTBUF: &str = "kafka_broker_outbuf_records";
const OUTBUF_HELP: &str = "librdkafka: records waiting to be sent to the broker.";
const WAITRESP: &str = "kafka_broker_inflight_records";
const WAITRESP_HELP: &str = "librdkafka: records sent to the broker and waiting for its response.";
const QUEUE_RECORDS: &str = "kafka_producer_queue_records";
const QUEUE_RECORDS_HELP: &str =
    "librdkafka: records in the producer queues (queue.buffering.max.messages is the cap).";
const QUEUE_BYTES: &str = "kafka_producer_queue_bytes";
const QUEUE_BYTES_HELP: &str =
    "librdkafka: bytes of records in the producer queues (queue.buffering.max.kbytes is the cap).";
const BATCH_RECORDS: &str = "kafka_batch_records";
const BATCH_RECORDS_HELP: &str =
    "librdkafka: records per produce batch over the last statistics window, by topic and stat (avg, p99).";
const BATCH_BYTES: &str = "kafka_batch_bytes";
const BATCH_BYTES_HELP: &str =
    "librdkafka: bytes per produce batch over the last statistics window, by topic and stat (avg, p99).";

/// The gauges of one statistics report. Bootstrap entries (node id -1, the configured
/// addresses before metadata names the brokers) are left out, and so are windows with no
/// samples, whose zeros would read as "instant".
pub fn gauges(s: &Statistics) -> Vec<ClientGauge> {
    let mut out = vec![
        gauge(QUEUE_RECORDS, QUEUE_RECORDS_HELP, vec![], s.msg_cnt as f64),
        gauge(QUEUE_BYTES, QUEUE_BYTES_HELP, vec![], s.msg_size as f64),
    ];
    let mut brokers: Vec<_> = s.brokers.values().filter(|b| b.nodeid >= 0).collect();
    brokers.sort_by(|a, b| a.name.cmp(&b.name));
    for b in brokers {
        let broker = || vec![("broker", b.name.clone())];
        out.push(gauge(
            OUTBUF,
            OUTBUF_HELP,
            broker(),
            b.outbuf_msg_cnt as f64,
        ));
        out.push(gauge(
            WAITRESP,
            WAITRESP_HELP,
            broker(),
            b.waitresp_msg_cnt as f64,
        ));
        window(&mut out, RTT, RTT_HELP, broker(), b.rtt.as_ref(), 1e-6);
        window(
            &mut out,
            INT_LATENCY,
            INT_LATENCY_HELP,
            broker(),
            b.int_latency.as_ref(),
            1e-6,
        );
    }
    let mut topics: Vec<_> = s.topics.values().collect();
    topics.sort_by(|a, b| a.topic.cmp(&b.topic));
    for t in topics {
        let topic = || vec![("topic", t.topic.clone())];
        window(
            &mut out,
            BATCH_RECORDS,
            BATCH_RECORDS_HELP,
            topic(),
            Some(&t.batchcnt),
            1.0,
        );
        window(
            &mut out,
            BATCH_BYTES,
            BATCH_BYTES_HELP,
            topic(),
            Some(&t.batchsize),
            1.0,
        );
    }
    out
}

fn gauge(
    name: &'static str,
    help: &'static str,
    labels: Vec<(&'static str, String)>,
    value: f64,
) -> ClientGauge {
    ClientGauge {
        name,
        help,
        labels,
        value,
    }
}

/// `avg` and `p99` of a window, scaled (librdkafka's latencies are microseconds).
fn window(
    out: &mut Vec<ClientGauge>,
    name: &'static str,
    help: &'static str,
    labels: Vec<(&'static str, String)>,
    w: Option<&Window>,
    scale: f64,
) {
    let Some(w) = w.filter(|w| w.cnt > 0) else {
        return;
    };
    for (stat, v) in [("avg", w.avg), ("p99", w.p99)] {
        let mut l = labels.clone();
        l.push(("stat", stat.to_string()));
        out.push(gauge(name, help, l, v as f64 * scale));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report as librdkafka 2.x emits it (trimmed to the fields read), with a bootstrap
    /// broker, one learned broker and one topic.
    const REPORT: &str = r#"{
      "name": "outbox-relay#producer-1", "client_id": "outbox-relay", "type": "producer",
      "ts": 1, "time": 1, "age": 1, "replyq": 0, "msg_cnt": 7, "msg_size": 700,
      "msg_max": 1000000, "msg_size_max": 67108864, "simple_cnt": 0, "metadata_cache_cnt": 1,
      "tx": 0, "tx_bytes": 0, "rx": 0, "rx_bytes": 0, "txmsgs": 0, "txmsg_bytes": 0,
      "rxmsgs": 0, "rxmsg_bytes": 0,
      "brokers": {
        "127.0.0.1:19092/bootstrap": {"name": "127.0.0.1:19092/bootstrap", "nodeid": -1,
          "nodename": "127.0.0.1:19092", "source": "configured", "state": "UP", "stateage": 1,
          "outbuf_cnt": 0, "outbuf_msg_cnt": 0, "waitresp_cnt": 0, "waitresp_msg_cnt": 0,
          "tx": 0, "txbytes": 0, "txerrs": 0, "txretries": 0, "txidle": 0, "req_timeouts": 0,
          "rx": 0, "rxbytes": 0, "rxerrs": 0, "rxcorriderrs": 0, "rxpartial": 0, "rxidle": 0,
          "zbuf_grow": 0, "buf_grow": 0, "wakeups": 0, "connects": 1, "disconnects": 0,
          "rtt": {"min": 900, "max": 900, "avg": 900, "sum": 900, "cnt": 1, "stddev": 0,
                  "hdrsize": 0, "p50": 900, "p75": 900, "p90": 900, "p95": 900, "p99": 900,
                  "p99_99": 900, "outofrange": 0},
          "req": {}, "toppars": {}},
        "127.0.0.1:19092/1": {"name": "127.0.0.1:19092/1", "nodeid": 1,
          "nodename": "127.0.0.1:19092", "source": "learned", "state": "UP", "stateage": 1,
          "outbuf_cnt": 1, "outbuf_msg_cnt": 40, "waitresp_cnt": 2, "waitresp_msg_cnt": 300,
          "tx": 0, "txbytes": 0, "txerrs": 0, "txretries": 0, "txidle": 0, "req_timeouts": 0,
          "rx": 0, "rxbytes": 0, "rxerrs": 0, "rxcorriderrs": 0, "rxpartial": 0, "rxidle": 0,
          "zbuf_grow": 0, "buf_grow": 0, "wakeups": 0, "connects": 1, "disconnects": 0,
          "int_latency": {"min": 10, "max": 5000, "avg": 250, "sum": 1, "cnt": 9, "stddev": 0,
                  "hdrsize": 0, "p50": 100, "p75": 200, "p90": 300, "p95": 400, "p99": 4000,
                  "p99_99": 5000, "outofrange": 0},
          "rtt": {"min": 1000, "max": 3000, "avg": 1500, "sum": 1, "cnt": 4, "stddev": 0,
                  "hdrsize": 0, "p50": 1200, "p75": 1500, "p90": 2000, "p95": 2500, "p99": 3000,
                  "p99_99": 3000, "outofrange": 0},
          "req": {}, "toppars": {}}
      },
      "topics": {
        "orders": {"topic": "orders", "age": 1, "metadata_age": 1,
          "batchsize": {"min": 1, "max": 9000, "avg": 4096, "sum": 1, "cnt": 3, "stddev": 0,
                  "hdrsize": 0, "p50": 1, "p75": 1, "p90": 1, "p95": 1, "p99": 8192,
                  "p99_99": 9000, "outofrange": 0},
          "batchcnt": {"min": 1, "max": 90, "avg": 40, "sum": 1, "cnt": 3, "stddev": 0,
                  "hdrsize": 0, "p50": 1, "p75": 1, "p90": 1, "p95": 1, "p99": 88,
                  "p99_99": 90, "outofrange": 0},
          "partitions": {}}
      }
    }"#;

    fn value(gauges: &[ClientGauge], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        gauges
            .iter()
            .find(|g| {
                g.name == name
                    && g.labels.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| g.labels.iter().any(|(gk, gv)| gk == k && gv == v))
            })
            .map(|g| g.value)
    }

    #[test]
    fn a_report_becomes_gauges_in_seconds_without_bootstrap_brokers() {
        let s: Statistics = serde_json::from_str(REPORT).unwrap();
        let g = gauges(&s);
        let b = "127.0.0.1:19092/1";
        assert_eq!(value(&g, QUEUE_RECORDS, &[]), Some(7.0));
        assert_eq!(value(&g, QUEUE_BYTES, &[]), Some(700.0));
        assert_eq!(value(&g, OUTBUF, &[("broker", b)]), Some(40.0));
        assert_eq!(value(&g, WAITRESP, &[("broker", b)]), Some(300.0));
        assert_eq!(
            value(&g, RTT, &[("broker", b), ("stat", "avg")]),
            Some(0.0015)
        );
        assert_eq!(
            value(&g, RTT, &[("broker", b), ("stat", "p99")]),
            Some(0.003)
        );
        assert_eq!(
            value(&g, INT_LATENCY, &[("broker", b), ("stat", "p99")]),
            Some(0.004)
        );
        assert_eq!(
            value(&g, BATCH_RECORDS, &[("topic", "orders"), ("stat", "p99")]),
            Some(88.0)
        );
        assert_eq!(
            value(&g, BATCH_BYTES, &[("topic", "orders"), ("stat", "avg")]),
            Some(4096.0)
        );
        assert!(
            g.iter()
                .all(|x| x.labels.iter().all(|(_, v)| !v.contains("bootstrap"))),
            "{g:?}"
        );
        // 2 queue + 2 broker counts + 2x2 broker windows + 2x2 topic windows.
        assert_eq!(g.len(), 12, "{g:?}");
    }
}

//! The relays' key figures for the console, read from their Prometheus `/metrics`:
//! events/s, replication lag, and end-to-end latency p99 over a sliding window.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde::Serialize;

/// One scrape, reduced to what the console shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    pub published_ok: f64,
    pub lag_bytes: f64,
    pub replicating: bool,
    pub oldest_inflight_s: f64,
    /// Cumulative latency histogram summed over destinations: upper bound → count.
    pub latency_buckets: BTreeMap<String, f64>,
}

/// Series name and labels of one exposition line, and its value.
fn line(l: &str) -> Option<(&str, &str, f64)> {
    if l.starts_with('#') || l.is_empty() {
        return None;
    }
    let (series, value) = l.rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    match series.split_once('{') {
        Some((name, labels)) => Some((name, labels.trim_end_matches('}'), value)),
        None => Some((series, "", value)),
    }
}

fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    labels.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"'))
    })
}

pub fn parse(text: &str) -> Sample {
    let mut s = Sample::default();
    for (name, labels, v) in text.lines().filter_map(line) {
        match name {
            "outbox_relay_events_published_total" if label(labels, "result") == Some("ok") => {
                s.published_ok += v
            }
            "outbox_relay_replication_lag_bytes" => s.lag_bytes = v,
            "outbox_relay_replicating" => s.replicating = v >= 1.0,
            "outbox_relay_oldest_inflight_age_seconds" => s.oldest_inflight_s = v,
            "outbox_relay_end_to_end_latency_seconds_bucket" => {
                if let Some(le) = label(labels, "le") {
                    *s.latency_buckets.entry(le.to_string()).or_default() += v;
                }
            }
            _ => {}
        }
    }
    s
}

/// The 99th percentile (a bucket's upper bound) of the events between two cumulative
/// histograms; None without events.
pub fn p99(older: &BTreeMap<String, f64>, newer: &BTreeMap<String, f64>) -> Option<f64> {
    let mut buckets: Vec<(f64, f64)> = newer
        .iter()
        .map(|(le, n)| {
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap_or(f64::INFINITY)
            };
            (bound, n - older.get(le).copied().unwrap_or(0.0))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    buckets
        .iter()
        .find(|(_, n)| *n >= total * 0.99)
        .map(|(b, _)| *b)
}

/// What the page shows for one relay.
#[derive(Clone, Debug, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RelayFigures {
    pub up: bool,
    pub replicating: bool,
    pub events_per_s: f64,
    pub published: f64,
    pub lag_bytes: f64,
    pub oldest_inflight_s: f64,
    /// Seconds, over the last 10 s; None when nothing was published then.
    pub latency_p99_s: Option<f64>,
    pub restarts: u64,
    pub pid: Option<u32>,
}

/// Scrapes of one relay over the last window.
pub struct Window {
    samples: VecDeque<(Instant, Sample)>,
    span: Duration,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            samples: VecDeque::new(),
            span: Duration::from_secs(10),
        }
    }
}

impl Window {
    /// Adds a scrape (None: the relay did not answer) and returns the figures.
    pub fn add(&mut self, now: Instant, sample: Option<Sample>) -> RelayFigures {
        let Some(sample) = sample else {
            return RelayFigures::default();
        };
        // A restarted relay starts its counters at zero: forget the older samples.
        if self
            .samples
            .back()
            .is_some_and(|(_, s)| s.published_ok > sample.published_ok)
        {
            self.samples.clear();
        }
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > self.span)
        {
            self.samples.pop_front();
        }
        let figures = match self.samples.front() {
            Some((t0, s0)) => {
                let dt = now.duration_since(*t0).as_secs_f64().max(0.001);
                RelayFigures {
                    events_per_s: (sample.published_ok - s0.published_ok) / dt,
                    latency_p99_s: p99(&s0.latency_buckets, &sample.latency_buckets),
                    ..Default::default()
                }
            }
            None => RelayFigures::default(),
        };
        let out = RelayFigures {
            up: true,
            replicating: sample.replicating,
            published: sample.published_ok,
            lag_bytes: sample.lag_bytes,
            oldest_inflight_s: sample.oldest_inflight_s,
            ..figures
        };
        self.samples.push_back((now, sample));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# TYPE outbox_relay_events_published_total counter
outbox_relay_events_published_total{sink="kafka",destination="a",result="ok"} 7
outbox_relay_events_published_total{sink="kafka",destination="b",result="ok"} 3
outbox_relay_events_published_total{sink="kafka",destination="b",result="failed"} 5
outbox_relay_replication_lag_bytes 1024
outbox_relay_replicating 1
outbox_relay_end_to_end_latency_seconds_bucket{sink="kafka",destination="a",le="0.01"} 5
outbox_relay_end_to_end_latency_seconds_bucket{sink="kafka",destination="a",le="0.1"} 7
outbox_relay_end_to_end_latency_seconds_bucket{sink="kafka",destination="a",le="+Inf"} 7
outbox_relay_end_to_end_latency_seconds_bucket{sink="kafka",destination="b",le="0.01"} 3
outbox_relay_end_to_end_latency_seconds_bucket{sink="kafka",destination="b",le="0.1"} 3
outbox_relay_end_to_end_latency_seconds_bucket{sink="kafka",destination="b",le="+Inf"} 3
"#;

    #[test]
    fn parses_the_figures() {
        let s = parse(TEXT);
        assert_eq!(s.published_ok, 10.0);
        assert_eq!(s.lag_bytes, 1024.0);
        assert!(s.replicating);
        assert_eq!(s.latency_buckets["0.01"], 8.0);
        assert_eq!(s.latency_buckets["+Inf"], 10.0);
    }

    #[test]
    fn p99_is_the_bucket_holding_the_99th_percentile_of_the_window() {
        let newer = parse(TEXT).latency_buckets;
        assert_eq!(p99(&BTreeMap::new(), &newer), Some(0.1));
        // Only the events since `older`: 3 more, all under 10 ms.
        let mut older = newer.clone();
        for v in older.values_mut() {
            *v -= 3.0;
        }
        older.insert("0.1".into(), 7.0);
        older.insert("+Inf".into(), 7.0);
        assert_eq!(p99(&older, &newer), Some(0.01));
        assert_eq!(p99(&newer, &newer), None);
    }

    #[test]
    fn window_rate_and_restart() {
        let mut w = Window::default();
        let t0 = Instant::now();
        let mut s = parse(TEXT);
        w.add(t0, Some(s.clone()));
        s.published_ok = 30.0;
        let f = w.add(t0 + Duration::from_secs(2), Some(s.clone()));
        assert_eq!(f.events_per_s, 10.0);
        s.published_ok = 1.0; // restarted
        let f = w.add(t0 + Duration::from_secs(3), Some(s));
        assert_eq!(f.events_per_s, 0.0);
        assert!(f.up);
        assert!(!w.add(t0, None).up);
    }
}

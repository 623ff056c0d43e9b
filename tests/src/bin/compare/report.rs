//! The markdown report and its section in docs/benchmarks.md.

use super::*;
use crate::drain::DrainReport;
use crate::processes::broker_jvm;
use crate::steady::percentile;

pub(crate) fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb: f64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!(
        "{nproc} CPUs ({model}), {:.1} GiB RAM",
        mem_kb / 1024.0 / 1024.0
    )
}

pub(crate) fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

pub(crate) fn render_report(
    args: &Args,
    pg_version: &str,
    drain: Option<&DrainReport>,
    steady: &[(System, SteadyResult)],
) -> String {
    let mut s = String::new();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    writeln!(s, "Run {date} on {}.", machine()).unwrap();
    writeln!(
        s,
        "Versions: outbox-relay {}, Debezium {} (Kafka Connect standalone, connect-runtime {}, JVM heap -Xmx{}), Kafka broker {} ({}), PostgreSQL {pg_version}.",
        args.relay_commit, args.debezium_version, args.connect_version, args.jvm_heap, args.kafka_version, broker_jvm()
    )
    .unwrap();
    writeln!(s, "\nCommand: `{}`\n", args.command).unwrap();
    writeln!(
        s,
        "| metric | pg_recvlogical | outbox-relay | Debezium | relay ÷ Debezium |"
    )
    .unwrap();
    writeln!(s, "|---|---:|---:|---:|---:|").unwrap();
    let mut targets: Vec<(String, String, bool)> = Vec::new();
    if let Some(d) = drain {
        let n = args.backlog.events as f64;
        let rate = |u: &Usage| n / u.wall;
        let (rr, rd, rp) = (rate(&d.relay.0), rate(&d.dbz.0), rate(&d.recvlogical));
        let fail = |c: &Check, v: String| if c.ok() { v } else { format!("FAILED ({v})") };
        writeln!(
            s,
            "| drain: events/s ({} events, from process start) | {:.0} | {} | {} | {:.1}× |",
            args.backlog.events,
            rp,
            fail(&d.relay.1, format!("{rr:.0}")),
            fail(&d.dbz.1, format!("{rd:.0}")),
            rr / rd
        )
        .unwrap();
        writeln!(
            s,
            "| drain: wall s (process start → last event in Kafka) | {:.1} | {:.1} | {:.1} | |",
            d.recvlogical.wall, d.relay.0.wall, d.dbz.0.wall
        )
        .unwrap();
        writeln!(
            s,
            "| drain: s from process start to first event in Kafka | – | {:.1} | {:.1} | |",
            d.relay.0.first_event.unwrap_or(f64::NAN),
            d.dbz.0.first_event.unwrap_or(f64::NAN)
        )
        .unwrap();
        writeln!(
            s,
            "| drain: % of pg_recvlogical's events/s | 100% | {:.0}% | {:.0}% | |",
            100.0 * rr / rp,
            100.0 * rd / rp
        )
        .unwrap();
        let per_m = |u: &Usage| u.cpu * 1e6 / n;
        writeln!(
            s,
            "| drain: CPU s per 1M events | {:.1} | {:.1} | {:.1} | {:.2} |",
            per_m(&d.recvlogical),
            per_m(&d.relay.0),
            per_m(&d.dbz.0),
            per_m(&d.relay.0) / per_m(&d.dbz.0)
        )
        .unwrap();
        writeln!(
            s,
            "| drain: peak RSS MiB | {:.1} | {:.1} | {:.1} | {:.3} |",
            mib(d.recvlogical.peak_rss_kb),
            mib(d.relay.0.peak_rss_kb),
            mib(d.dbz.0.peak_rss_kb),
            d.relay.0.peak_rss_kb as f64 / d.dbz.0.peak_rss_kb as f64
        )
        .unwrap();
        writeln!(
            s,
            "| drain: output check (all ids and seqs, per-aggregate order) | – | {} | {} | |",
            d.relay.1.verdict(),
            d.dbz.1.verdict()
        )
        .unwrap();
        writeln!(
            s,
            "| drain: payload bytes identical to the relay's | – | – | {} | |",
            match d.dbz.1.payload_diff {
                Some(0) => "yes, all".to_string(),
                Some(k) => format!("{k} differ"),
                None => "–".into(),
            }
        )
        .unwrap();
        targets.push((
            "drain events/s ≥ 3× Debezium's".into(),
            format!("{:.1}×", rr / rd),
            rr >= 3.0 * rd && d.relay.1.ok(),
        ));
        targets.push((
            "drain events/s ≥ 80% of pg_recvlogical's".into(),
            format!("{:.0}%", 100.0 * rr / rp),
            rr >= 0.8 * rp && d.relay.1.ok(),
        ));
        targets.push((
            "peak RSS ≤ 1/20 of Debezium's (drain)".into(),
            format!(
                "1/{:.0}",
                d.dbz.0.peak_rss_kb as f64 / d.relay.0.peak_rss_kb as f64
            ),
            d.relay.0.peak_rss_kb * 20 <= d.dbz.0.peak_rss_kb,
        ));
    }
    let mut relay_max_rss = drain.map(|d| d.relay.0.peak_rss_kb).unwrap_or(0);
    let visible = |x: &SteadyResult| {
        let v = &x.visible_ms;
        format!(
            "{} / {} / {}",
            percentile(v, 0.50),
            percentile(v, 0.99),
            percentile(v, 1.0)
        )
    };
    for &rate in &args.rates {
        let get = |sys: System| {
            steady
                .iter()
                .find(|(s, r)| *s == sys && r.rate == rate)
                .map(|(_, r)| r)
        };
        let Some(r) = get(System::Relay) else {
            continue;
        };
        // Without a Debezium run (--steady-systems relay), its cells stay empty.
        let empty = SteadyResult {
            rate,
            achieved: f64::NAN,
            written: 0,
            check: Check::default(),
            cpu_pct: f64::NAN,
            peak_rss_kb: 0,
            relay_histograms: None,
            broker_pauses: None,
            visible_ms: Vec::new(),
        };
        let d = get(System::Debezium).unwrap_or(&empty);
        relay_max_rss = relay_max_rss.max(r.peak_rss_kb);
        let lat = |x: &SteadyResult| {
            let l = &x.check.latencies_ms;
            let v = format!(
                "{} / {} / {}",
                percentile(l, 0.50),
                percentile(l, 0.99),
                percentile(l, 1.0)
            );
            if x.check.ok() {
                v
            } else {
                format!("FAILED ({v})")
            }
        };
        writeln!(
            s,
            "| {rate}/s: achieved write rate (events) | – | {:.0} ({}) | {:.0} ({}) | |",
            r.achieved, r.written, d.achieved, d.written
        )
        .unwrap();
        writeln!(
            s,
            "| {rate}/s: end-to-end latency ms p50 / p99 / max | – | {} | {} | |",
            lat(r),
            lat(d)
        )
        .unwrap();
        writeln!(
            s,
            "| {rate}/s: insert → readable by a read_committed consumer, ms p50 / p99 / max | – | {} | {} | |",
            visible(r),
            visible(d)
        )
        .unwrap();
        writeln!(
            s,
            "| {rate}/s: CPU % of one core / peak RSS MiB | – | {:.0}% / {:.1} | {:.0}% / {:.1} | |",
            r.cpu_pct,
            mib(r.peak_rss_kb),
            d.cpu_pct,
            mib(d.peak_rss_kb)
        )
        .unwrap();
        if let Some(h) = &r.relay_histograms {
            writeln!(
                s,
                "| {rate}/s: relay's own histograms p50 / p99 | – | {h} | | |"
            )
            .unwrap();
        }
        writeln!(
            s,
            "| {rate}/s: broker JVM pauses ≥ 1 ms: count, total / max ms | – | {} | {} | |",
            r.broker_pauses.as_deref().unwrap_or("–"),
            d.broker_pauses.as_deref().unwrap_or("–")
        )
        .unwrap();
        writeln!(
            s,
            "| {rate}/s: output check | – | {} | {} | |",
            r.check.verdict(),
            d.check.verdict()
        )
        .unwrap();
        if rate == 5000 {
            let p99: i64 = percentile(&r.check.latencies_ms, 0.99)
                .parse()
                .unwrap_or(i64::MAX);
            targets.push((
                "p99 end-to-end latency ≤ 20 ms at 5k events/s".into(),
                format!("{p99} ms"),
                p99 <= 20 && r.check.ok(),
            ));
        }
    }
    exactly_once_table(&mut s, args, steady, &visible);
    if relay_max_rss > 0 {
        targets.push((
            "relay peak RSS ≤ 64 MB (all runs)".into(),
            format!("{:.1} MiB", mib(relay_max_rss)),
            relay_max_rss * 1024 <= 64 * 1000 * 1000,
        ));
    }
    if let Some(d) = drain {
        writeln!(
            s,
            "\nDrain: {} events, {} aggregates, {} rows per transaction, average payload {:.0} bytes; each reader from its own slot created before the backlog, one after another; walsenders with logical_decoding_work_mem={}.",
            args.backlog.events, args.backlog.aggregates, args.backlog.txn_rows, d.avg_payload, args.logical_decoding_work_mem
        )
        .unwrap();
    }
    if !steady.is_empty() {
        writeln!(
            s,
            "Steady state: {} s per rate, {} paced writer connections, single-row autocommit inserts; relay runs first, then Debezium, each from a fresh slot. Debezium poll.interval.ms={}, max.batch.size={}. Relay extra Kafka properties: {}.",
            args.steady_secs,
            args.writers,
            args.debezium_poll_interval_ms,
            args.debezium_max_batch_size,
            if args.relay_kafka_properties.is_empty() {
                "none (linger.ms=5 default)".to_string()
            } else {
                args.relay_kafka_properties.join(", ")
            }
        )
        .unwrap();
        if let Some(limit) = args.relay_cpu_limit {
            writeln!(
                s,
                "The relay ran in a cgroup limited to {limit} CPU (period 100 ms)."
            )
            .unwrap();
        }
        if args.extra_slots > 0 {
            writeln!(
                s,
                "{} more active slot(s) on the same publication, each streamed by pg_recvlogical to /dev/null, during every steady-state run.",
                args.extra_slots
            )
            .unwrap();
        }
    }
    if !targets.is_empty() {
        writeln!(s, "\n| relay target | measured | met |").unwrap();
        writeln!(s, "|---|---:|---|").unwrap();
        for (t, v, ok) in &targets {
            writeln!(s, "| {t} | {v} | {} |", if *ok { "yes" } else { "**no**" }).unwrap();
        }
    }
    s
}

/// The relay with and without `sink.kafka.exactly_once`, rate by rate: what the
/// guarantee costs in latency (readable by a `read_committed` consumer) and CPU.
fn exactly_once_table(
    s: &mut String,
    args: &Args,
    steady: &[(System, SteadyResult)],
    visible: &dyn Fn(&SteadyResult) -> String,
) {
    let runs: Vec<(&SteadyResult, &SteadyResult)> = args
        .rates
        .iter()
        .filter_map(|&rate| {
            let get = |sys: System| {
                steady
                    .iter()
                    .find(|(x, r)| *x == sys && r.rate == rate)
                    .map(|(_, r)| r)
            };
            Some((get(System::Relay)?, get(System::RelayExactlyOnce)?))
        })
        .collect();
    if runs.is_empty() {
        return;
    }
    writeln!(
        s,
        "\n| rate | at-least-once: readable ms p50 / p99 / max | exactly-once (transaction every {} ms): readable ms p50 / p99 / max | CPU % at-least-once / exactly-once | output check at-least-once / exactly-once |",
        args.relay_transaction_interval_ms
            .map(|ms| ms.to_string())
            .unwrap_or_else(|| "100".into())
    )
    .unwrap();
    writeln!(s, "|---:|---:|---:|---:|---|").unwrap();
    for (alo, eo) in runs {
        writeln!(
            s,
            "| {}/s | {} | {} | {:.0}% / {:.0}% | {} / {} |",
            alo.rate,
            visible(alo),
            visible(eo),
            alo.cpu_pct,
            eo.cpu_pct,
            alo.check.verdict(),
            eo.check.verdict()
        )
        .unwrap();
    }
}

pub(crate) const SECTION: &str = "## Relay vs Debezium";
pub(crate) const RESULTS_BEGIN: &str = "<!-- compare.rs results: begin -->";
pub(crate) const RESULTS_END: &str = "<!-- compare.rs results: end -->";

/// Replaces the results block inside `## Relay vs Debezium` (creating the section, or the
/// block at the section's end, if missing). Other sections are left alone.
pub(crate) fn write_section(doc: &Path, report: &str) {
    let text = std::fs::read_to_string(doc).unwrap_or_default();
    let block = format!("{RESULTS_BEGIN}\n{report}{RESULTS_END}\n");
    let new = if let (Some(b), Some(e)) = (text.find(RESULTS_BEGIN), text.find(RESULTS_END)) {
        format!(
            "{}{block}{}",
            &text[..b],
            &text[e + RESULTS_END.len() + 1..]
        )
    } else if let Some(start) = text.find(SECTION) {
        let after = start + SECTION.len();
        let end = text[after..]
            .find("\n## ")
            .map(|i| after + i + 1)
            .unwrap_or(text.len());
        let mut head = text[..end].trim_end().to_string();
        head.push_str("\n\n");
        format!("{head}{block}\n{}", &text[end..])
    } else {
        let mut head = text.trim_end().to_string();
        if !head.is_empty() {
            head.push_str("\n\n");
        }
        format!("{head}{SECTION}\n\n{block}")
    };
    std::fs::write(doc, new).unwrap();
}

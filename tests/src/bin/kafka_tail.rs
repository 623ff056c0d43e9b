//! Prints the records of every topic matching a prefix, from the beginning: the demo's
//! view of what the relay published.

use std::time::Duration;

use clap::Parser;
use outbox_relay_tests::kafka::TopicReader;

#[derive(Parser)]
struct Args {
    /// Topic prefix: reads `<prefix>.*`.
    #[arg(long, default_value = "outbox.event")]
    prefix: String,
    /// Stop after this many records.
    #[arg(long, default_value_t = usize::MAX)]
    count: usize,
    /// Stop when nothing arrives for this many seconds.
    #[arg(long, default_value_t = 10)]
    idle_secs: u64,
}

fn main() {
    let args = Args::parse();
    let mut reader = TopicReader::new(&args.prefix);
    let mut printed = 0;
    while printed < args.count {
        reader.read_until(Duration::from_secs(args.idle_secs), |r| r.len() > printed);
        if reader.records.len() == printed {
            break;
        }
        for r in &reader.records[printed..] {
            let headers: Vec<String> = r
                .headers
                .iter()
                .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v)))
                .collect();
            println!(
                "{} [{}@{}] key={} headers={{{}}}\n    {}",
                r.topic,
                r.partition,
                r.offset,
                r.key_str(),
                headers.join(", "),
                r.payload
                    .as_deref()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .unwrap_or_else(|| "(tombstone)".into())
            );
        }
        printed = reader.records.len();
    }
    eprintln!("kafka-tail: {printed} records");
}

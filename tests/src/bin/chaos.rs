//! The chaos suite's command (issue 13): `tests/chaos.sh` runs it. Prints the fault
//! schedule as it goes, then the summary table, and writes the JSON summary.
//!
//!   chaos --variant full                 ≥ 1M events, ≥ 100 faults (tens of minutes)
//!   chaos --variant short --seed 42      the test suite's variant, replayed
//!
//! Exit status 0 when every check held, 1 when one did not, 2 when the harness failed.

use clap::Parser;
use outbox_relay_tests::chaos::{self, report, ChaosConfig};

#[derive(Parser)]
struct Args {
    /// `short` (≥ 50k events, every fault kind once: 19 faults) or `full` (≥ 1M events, 110 faults).
    #[arg(long, default_value = "full")]
    variant: String,
    /// Seed of the fault schedule and the load (random when absent; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Override the variant's event target.
    #[arg(long)]
    events: Option<u64>,
    /// Override the variant's fault count.
    #[arg(long)]
    faults: Option<usize>,
    /// Override the seconds the faults are spread over.
    #[arg(long)]
    window: Option<f64>,
    /// Override the writers' events per second.
    #[arg(long)]
    rate: Option<f64>,
    /// kafka, sqs-fifo, sqs (standard) or sns-fifo (SNS FIFO → SQS FIFO), the last three on
    /// fauxqs (deploy/local/aws.sh fauxqs-start).
    #[arg(long, default_value = "kafka")]
    sink: String,
    /// Relay replicas: 2 runs them with ha.enabled and adds leader failover.
    #[arg(long)]
    replicas: Option<usize>,
    /// Where to write the JSON summary.
    #[arg(long, default_value = "chaos-summary.json")]
    json: String,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let a = Args::parse();
    let seed = a.seed.unwrap_or_else(|| u64::from(rand::random::<u32>()));
    let mut cfg = match a.variant.as_str() {
        "short" => ChaosConfig::short(seed),
        "full" => ChaosConfig::full(seed),
        v => {
            eprintln!("unknown variant {v}: short or full");
            std::process::exit(2);
        }
    };
    match chaos::aws_sink::SinkKind::parse(&a.sink) {
        Some(k) => cfg = cfg.with_sink(k),
        None => {
            eprintln!("unknown sink {}: kafka, sqs-fifo, sqs or sns-fifo", a.sink);
            std::process::exit(2);
        }
    }
    if let Some(e) = a.events {
        cfg.events = e;
    }
    if let Some(f) = a.faults {
        cfg.faults = f;
    }
    if let Some(w) = a.window {
        cfg.window_s = w;
    }
    if let Some(r) = a.rate {
        cfg.load.rate = r;
    }
    if let Some(r) = a.replicas {
        cfg.replicas = r;
    }
    match chaos::run(&cfg).await {
        Ok(summary) => {
            let text = serde_json::to_string_pretty(&summary).unwrap();
            std::fs::write(&a.json, &text).unwrap_or_else(|e| eprintln!("{}: {e}", a.json));
            println!("{text}");
            println!("{}", report::table(&summary));
            std::process::exit(if summary["ok"] == serde_json::json!(true) {
                0
            } else {
                1
            });
        }
        Err(e) => {
            eprintln!("chaos harness failed: {e}");
            std::process::exit(2);
        }
    }
}

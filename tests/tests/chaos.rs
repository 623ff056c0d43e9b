//! The chaos suite's short variant (issue 13) in the test suite: ≥ 50k events from
//! concurrent writers through 19 seeded faults, every kind once (relay SIGKILL, also in the
//! middle of a sink outage, and SIGSTOP; PostgreSQL immediate and fast restarts; Kafka
//! broker SIGKILL; network faults between the relay and PostgreSQL and between the relay
//! and Kafka), against the suite's private PostgreSQL, Kafka and Toxiproxy (the shared
//! services are not touched).
//! Asserts the checker's verdict: nothing lost, no phantom, nothing reordered, every
//! duplicate inside a fault's replay window, records byte-exact, the slot's confirmed flush
//! never moving back, the relay recovering from every fault.
//!
//! `OUTBOX_RELAY_CHAOS_SEED` replays a schedule; `tests/chaos.sh` runs the full variant.

use outbox_relay_tests::chaos::{self, report, ChaosConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn short_chaos_run_loses_nothing_reorders_nothing_and_explains_every_duplicate() {
    let seed = std::env::var("OUTBOX_RELAY_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::random::<u32>() as u64);
    let cfg = ChaosConfig::short(seed);
    let summary = chaos::run(&cfg).await.expect("chaos harness");
    println!("{}", serde_json::to_string_pretty(&summary).unwrap());
    let table = report::table(&summary);
    println!("{table}");
    assert_eq!(
        summary["ok"], true,
        "seed {seed} (OUTBOX_RELAY_CHAOS_SEED={seed} replays it):\n{table}"
    );
    assert!(summary["check"]["committed_events"].as_u64().unwrap() >= 50_000);
    assert!(summary["faults"]["total"].as_u64().unwrap() >= 10);
}

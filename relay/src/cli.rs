//! Command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Relays PostgreSQL transactional-outbox rows to Kafka, SNS or SQS, in commit order per aggregate.
#[derive(Debug, Parser)]
#[command(name = "outbox-relay", version)]
pub struct Cli {
    /// Configuration file (YAML or TOML); `RELAY__SECTION__KEY` variables override it.
    #[arg(short, long, global = true, env = "RELAY_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Replicate and publish until SIGTERM or SIGINT.
    Run,
    /// Check configuration, connectivity, wal_level, outbox tables, publication, slot and
    /// sink; print PASS/FAIL for each and exit non-zero if any failed.
    Check,
    /// Inspect, redrive or discard parked events (`outbox.on_invalid: park`).
    Parked {
        #[command(subcommand)]
        action: ParkedAction,
    },
}

/// `outbox-relay parked …`
#[derive(Debug, Subcommand)]
pub enum ParkedAction {
    /// Parked events, per aggregate in commit order.
    List(ParkedArgs),
    /// One parked event in full (payload, headers, error).
    Show {
        /// The event id.
        event_id: String,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Publishes the parked events of every aggregate the filters select, in commit
    /// order, one at a time; an aggregate is unparked once all its events are delivered.
    /// An event that fails again stays parked with its new error, and so does the rest of
    /// its aggregate.
    Redrive(ParkedArgs),
    /// Deletes the parked events the filters select (they are never published).
    Discard(ParkedArgs),
}

/// Filters of the `parked` commands. `redrive` and `discard` need at least one, or `--all`.
#[derive(Debug, clap::Args)]
pub struct ParkedArgs {
    #[arg(long)]
    pub destination: Option<String>,
    #[arg(long)]
    pub aggregate: Option<String>,
    /// The reason label, e.g. `message_too_large`, `null_aggregate_id`, `behind_parked`.
    #[arg(long)]
    pub reason: Option<String>,
    #[arg(long = "event-id")]
    pub event_id: Option<String>,
    /// Parked at least this many seconds ago.
    #[arg(long = "older-than")]
    pub older_than_secs: Option<u64>,
    /// Every parked event of the slot.
    #[arg(long)]
    pub all: bool,
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

//! Command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Relays PostgreSQL transactional-outbox rows to Kafka, SNS or SQS, in commit order per aggregate.
///
/// Exit codes: 0 success; 1 a check failed, `status` found the slot missing or lost,
/// `run` stopped on an error, or `parked redrive` left events parked; 2 the configuration
/// or the command line is invalid (or a `parked` command failed); 3 `run` lost its
/// leadership lease (`ha.enabled`; restart it, it comes back as a standby); 130 a second
/// signal during shutdown.
#[derive(Debug, Parser)]
#[command(name = "outbox-relay", version = crate::telemetry::build::VERSION_LINE)]
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
    /// sink; print PASS, INFO or FAIL for each and exit 1 if any failed. Safe next to a
    /// running relay: a slot it holds is INFO.
    Check {
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// The slot (active process, confirmed and received LSN, lag, wal_status,
    /// safe_wal_size), the publication's tables, parked events and, when its telemetry
    /// endpoint answers, the running relay's own view. Exit 1 when the slot is missing or
    /// lost. Needs nothing but the relay binary (works in the distroless image).
    Status {
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// The effective configuration (file, `RELAY__` variables and defaults) with secrets
    /// shown as `***`.
    Config {
        #[arg(long, value_enum, default_value = "yaml")]
        output: ConfigOutput,
    },
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

/// Formats of `outbox-relay config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConfigOutput {
    Yaml,
    Json,
}

//! Command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Relays PostgreSQL transactional-outbox rows to Kafka, in commit order per aggregate.
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
}

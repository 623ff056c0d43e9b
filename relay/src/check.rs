//! `outbox-relay check`: everything `run` needs, verified without changing anything.

use std::time::Duration;

use outbox_pgwire::{connect_sql, ReplicationClient};

use crate::config::Config;
use crate::error::RelayError;
use crate::pipeline::build_publisher;
use crate::source::setup;

/// One line of the report.
#[derive(Debug)]
pub struct CheckResult {
    pub name: &'static str,
    pub result: Result<String, String>,
}

impl CheckResult {
    fn new(name: &'static str, r: Result<String, RelayError>) -> Self {
        CheckResult {
            name,
            result: r.map_err(|e| e.to_string()),
        }
    }
}

/// Runs every check it can; a failed connection skips the checks that need it and says so.
pub async fn run_checks(config: &Config) -> Vec<CheckResult> {
    let mut out = vec![CheckResult {
        name: "config",
        result: Ok("valid".into()),
    }];
    let opts = match config.source.connect_options() {
        Ok(o) => o,
        Err(e) => {
            out.push(CheckResult::new("connectivity", Err(e.into())));
            return out;
        }
    };
    match connect_sql(&opts).await {
        Err(e) => out.push(CheckResult::new("connectivity", Err(e.into()))),
        Ok((sql, conn)) => {
            let repl = async {
                let mut c = ReplicationClient::connect(&opts).await?;
                let sys = c.identify_system().await?;
                Ok::<_, RelayError>(format!(
                    "connected to {}:{} (SQL and replication; system {}, timeline {})",
                    opts.host, opts.port, sys.systemid, sys.timeline
                ))
            };
            out.push(CheckResult::new("connectivity", repl.await));
            out.push(CheckResult::new(
                "wal_level",
                setup::check_wal_level(&sql).await,
            ));
            for t in &config.outbox.tables {
                out.push(CheckResult::new(
                    "outbox_table",
                    setup::check_table(&sql, t).await,
                ));
            }
            out.push(CheckResult::new(
                "publication",
                if config.source.create_publication {
                    publication_or_creatable(&sql, config).await
                } else {
                    setup::ensure_publication(&sql, config, true).await
                },
            ));
            let slot = match setup::inspect_slot(&sql, &config.source.slot).await {
                Ok(Some(info)) => {
                    setup::verify_slot(&info, &config.source.slot, &config.source.database)
                }
                Ok(None) if config.source.create_slot => Ok(format!(
                    "slot {:?} does not exist yet; run will create it",
                    config.source.slot
                )),
                Ok(None) => Err(RelayError::Setup(format!(
                    "slot {:?} does not exist and source.create_slot is false",
                    config.source.slot
                ))),
                Err(e) => Err(e),
            };
            out.push(CheckResult::new("slot", slot));
            out.push(CheckResult::new(
                "state",
                crate::state::inspect(&sql, config).await,
            ));
            conn.abort();
        }
    }
    let sink = async {
        let publisher = build_publisher(config).await?;
        publisher.probe(Duration::from_secs(10)).await?;
        Ok::<_, RelayError>(format!("{} sink reachable", publisher.kind()))
    };
    out.push(CheckResult::new("sink", sink.await));
    out
}

/// With `create_publication`, a missing publication is fine: `run` creates it.
async fn publication_or_creatable(
    sql: &tokio_postgres::Client,
    config: &Config,
) -> Result<String, RelayError> {
    match setup::ensure_publication(sql, config, true).await {
        Ok(s) => Ok(s),
        Err(RelayError::Setup(msg))
            if msg.contains("does not exist") || msg.contains("does not include") =>
        {
            Ok(format!(
                "publication {:?} will be created or extended by run",
                config.source.publication
            ))
        }
        Err(e) => Err(e),
    }
}

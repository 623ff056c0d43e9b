//! `outbox-relay check`: everything `run` needs, verified without changing anything.

use std::time::Duration;

use outbox_pgwire::{connect_sql, ReplicationClient};

use crate::config::Config;
use crate::error::RelayError;
use crate::pipeline::build_publisher;
use crate::source::{setup, slot};
use crate::state;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    /// Nothing wrong, but worth knowing: a slot held by a running relay (so `check` can
    /// run next to one, e.g. as a `helm test`).
    Info,
    Fail,
}

/// One line of the report.
#[derive(Debug, serde::Serialize)]
pub struct CheckResult {
    pub name: &'static str,
    pub outcome: Outcome,
    pub detail: String,
}

impl CheckResult {
    fn new(name: &'static str, r: Result<String, RelayError>) -> Self {
        match r {
            Ok(detail) => CheckResult {
                name,
                outcome: Outcome::Pass,
                detail,
            },
            // The slot is in use: by the relay this check runs next to, or another; `run`
            // would wait for it, so it is not a failure of the setup.
            Err(RelayError::SlotBusy(detail)) => CheckResult {
                name,
                outcome: Outcome::Info,
                detail,
            },
            Err(e) => CheckResult {
                name,
                outcome: Outcome::Fail,
                detail: e.to_string(),
            },
        }
    }

    /// The text form: `PASS name: detail`.
    pub fn line(&self) -> String {
        let tag = match self.outcome {
            Outcome::Pass => "PASS",
            Outcome::Info => "INFO",
            Outcome::Fail => "FAIL",
        };
        format!("{tag} {}: {}", self.name, self.detail)
    }
}

/// The whole report as JSON: `{"ok": bool, "checks": [{"name", "outcome", "detail"}]}`.
pub fn report_json(results: &[CheckResult]) -> String {
    let ok = results.iter().all(|r| r.outcome != Outcome::Fail);
    serde_json::json!({ "ok": ok, "checks": results }).to_string()
}

/// Runs every check it can; a failed connection skips the checks that need it and says so.
pub async fn run_checks(config: &Config) -> Vec<CheckResult> {
    let mut out = vec![CheckResult::new("config", Ok("valid".into()))];
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
                Ok::<_, RelayError>(sys)
            };
            let system = match repl.await {
                Ok(sys) => {
                    out.push(CheckResult::new(
                        "connectivity",
                        Ok(format!(
                            "connected to {}:{} (SQL and replication; system {}, timeline {})",
                            opts.host, opts.port, sys.systemid, sys.timeline
                        )),
                    ));
                    Some(sys.systemid)
                }
                Err(e) => {
                    out.push(CheckResult::new("connectivity", Err(e)));
                    None
                }
            };
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
            // With source.shards, each shard's publication and slot (the details name them).
            for shard in config.shard_configs() {
                out.push(CheckResult::new(
                    "publication",
                    if shard.source.create_publication {
                        publication_or_creatable(&sql, &shard).await
                    } else {
                        setup::ensure_publication(&sql, &shard, true).await
                    },
                ));
                let slot_check = check_slot(&sql, &shard, system.as_deref()).await;
                out.push(CheckResult::new("slot", slot_check));
                if shard.source.slot_failover {
                    out.push(CheckResult::new(
                        "slot_failover",
                        slot::failover_readiness(&sql, &shard).await,
                    ));
                }
            }
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

/// The slot exists and is usable, or can be created because the relay never read one
/// here; a slot the relay has a record of that is gone or invalidated is the error `run`
/// stops with.
async fn check_slot(
    sql: &tokio_postgres::Client,
    config: &Config,
    system_id: Option<&str>,
) -> Result<String, RelayError> {
    let name = &config.source.slot;
    let info = setup::inspect_slot(sql, name).await?;
    let record = match system_id {
        Some(id) => state::peek_record(sql, config, id).await?,
        None => None,
    };
    if let Some(cause) = slot::loss(info.as_ref(), record.as_ref()) {
        if config.source.snapshot_on_loss() {
            return Ok(format!(
                "slot {name:?} was lost ({cause:?}); run will create a new one and publish the outbox rows still in the tables (source.on_slot_lost: snapshot)"
            ));
        }
        let table = format!(
            "{}.progress",
            outbox_pgwire::quote_ident(&config.state.schema)
        );
        return Err(slot::on_lost(config, Some(&table), record.as_ref(), &cause));
    }
    match info {
        Some(info) => match setup::verify_slot(&info, name, &config.source.database) {
            Err(RelayError::SlotBusy(_)) => Err(RelayError::SlotBusy(format!(
                "slot {name:?} is in use by server process {} (a running relay, or another client); run would wait for it",
                info.active_pid.unwrap_or_default()
            ))),
            other => other,
        },
        None if config.source.create_slot => Ok(format!(
            "slot {name:?} does not exist yet; run will create it{}",
            if config.source.snapshot == crate::config::SnapshotMode::Never {
                ""
            } else {
                " and publish the rows already in the outbox tables (source.snapshot)"
            }
        )),
        None => Err(RelayError::Setup(format!(
            "slot {name:?} does not exist and source.create_slot is false"
        ))),
    }
}

//! The chaos actions behind the page's buttons and `saga chaos`: each breaks one part of
//! the system the way production breaks it, while the saga keeps running.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::children::Supervised;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// SIGKILL a relay: it restarts and resumes from its slot's confirmed position;
    /// events since then are published again (at least once), consumers' inboxes absorb them.
    KillRelay { target: String },
    /// SIGKILL a service: its uncommitted offsets and undeleted SQS messages are redelivered.
    KillService { target: String },
    /// Stop the Kafka broker for `seconds`: relays hold events (the WAL keeps them) and
    /// consumers wait; everything resumes when it is back.
    KafkaOutage { seconds: u64 },
    /// Restart PostgreSQL (all three databases): relays reconnect to their slots, services'
    /// transactions fail and are retried.
    RestartPostgres,
}

/// The scripts that stop and start the shared servers (deploy/local/*.sh).
#[derive(Clone, Debug)]
pub struct Scripts {
    pub kafka: Option<PathBuf>,
    pub postgres: Option<PathBuf>,
}

async fn script(path: &Option<PathBuf>, args: &[&str]) -> Result<(), String> {
    let path = path
        .as_ref()
        .ok_or("no script configured for this action (--kafka-script / --postgres-script)")?;
    let out = tokio::process::Command::new(path)
        .args(args)
        .output()
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} {}: {}: {}",
            path.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `action`; `log` receives progress lines. Returns once the fault is injected (a
/// Kafka outage finishes in the background).
pub async fn run(
    action: Action,
    children: &[Arc<Supervised>],
    scripts: &Scripts,
    log: impl Fn(String) + Send + Sync + 'static,
) -> Result<String, String> {
    let find = |name: String| {
        children
            .iter()
            .find(|c| c.name == name)
            .cloned()
            .ok_or(format!("no process {name}"))
    };
    match action {
        Action::KillRelay { target } | Action::KillService { target } if target.is_empty() => {
            Err("no target".into())
        }
        Action::KillRelay { target } => {
            let c = find(format!("relay-{target}"))?;
            let pid = c.kill9().ok_or(format!("{} is not running", c.name))?;
            Ok(format!(
                "SIGKILL {} (pid {pid}); the supervisor restarts it",
                c.name
            ))
        }
        Action::KillService { target } => {
            let c = find(target)?;
            let pid = c.kill9().ok_or(format!("{} is not running", c.name))?;
            Ok(format!(
                "SIGKILL {} (pid {pid}); the supervisor restarts it",
                c.name
            ))
        }
        Action::KafkaOutage { seconds } => {
            script(&scripts.kafka, &["stop"]).await?;
            let kafka = scripts.kafka.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(seconds)).await;
                match script(&kafka, &["start"]).await {
                    Ok(()) => log(format!("Kafka is back after {seconds} s")),
                    Err(e) => log(format!("Kafka restart failed: {e}")),
                }
            });
            Ok(format!("Kafka stopped for {seconds} s"))
        }
        Action::RestartPostgres => {
            script(&scripts.postgres, &["restart", "fast"]).await?;
            Ok("PostgreSQL restarted".into())
        }
    }
}

//! The `parked` commands: list, show, redrive and discard parked events.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use outbox_pgwire::{connect_sql, ReplicationClient};

use crate::cli::{Output, ParkedAction, ParkedArgs};
use crate::config::{Config, StateMode};
use crate::error::RelayError;
use crate::pipeline::build_publisher;
use crate::state::{self, redrive_aggregate, ParkedEvent, ParkedFilter, Redriven, StateStore};

/// Runs one `parked` command; `Ok(false)` when something could not be redriven.
///
/// Parked events are kept per slot; with `source.shards` every shard's slot is asked and
/// the answers are reported together.
pub async fn run(config: &Config, action: ParkedAction) -> Result<bool, RelayError> {
    let mut stores = Vec::new();
    for shard in config.shard_configs() {
        let (store, connection) = open(&shard).await?;
        stores.push((shard, store, connection));
    }
    let parked = |filter: ParkedFilter| {
        let stores = &stores;
        async move {
            let mut events = Vec::new();
            for (_, store, _) in stores {
                events.extend(store.parked_events(&filter).await?);
            }
            Ok::<_, RelayError>(events)
        }
    };
    match action {
        ParkedAction::List(args) => {
            let events = parked(filter(&args)).await?;
            print_events(&events, args.output);
            Ok(true)
        }
        ParkedAction::Show { event_id, output } => {
            let events = parked(ParkedFilter {
                event_id: Some(event_id.clone()),
                ..ParkedFilter::default()
            })
            .await?;
            if events.is_empty() {
                return Err(RelayError::Setup(format!(
                    "no parked event with id {event_id:?}"
                )));
            }
            for e in &events {
                match output {
                    Output::Json => println!("{}", detail_json(e)),
                    Output::Text => print_detail(e),
                }
            }
            Ok(true)
        }
        ParkedAction::Discard(args) => {
            require_filter(&args)?;
            let mut removed = 0;
            for (_, store, _) in &stores {
                for e in &store.parked_events(&filter(&args)).await? {
                    removed += store.remove_parked(&e.commit_lsn, e.seq).await?;
                }
            }
            match args.output {
                Output::Json => println!("{}", serde_json::json!({ "discarded": removed })),
                Output::Text => println!("discarded {removed} parked events"),
            }
            Ok(true)
        }
        ParkedAction::Redrive(args) => {
            require_filter(&args)?;
            let mut report = BTreeMap::new();
            for (shard, store, _) in &stores {
                report.extend(redrive(shard, store, &args).await?);
            }
            print_redriven(&report, args.output);
            Ok(report.values().all(|(_, failure)| failure.is_none()))
        }
    }
}

/// Per aggregate: events redriven, and the event that failed again with its error.
type RedriveReport = BTreeMap<String, (usize, Option<(String, String)>)>;

async fn redrive(
    config: &Config,
    store: &StateStore,
    args: &ParkedArgs,
) -> Result<RedriveReport, RelayError> {
    let publisher = build_publisher(config).await?;
    let mut aggregates: Vec<String> = store
        .parked_events(&filter(args))
        .await?
        .into_iter()
        .map(|e| e.aggregate_id)
        .collect();
    aggregates.dedup();
    let mut report = BTreeMap::new();
    for aggregate in aggregates {
        let Redriven { delivered, failure } =
            redrive_aggregate(store, &*publisher, &aggregate).await?;
        report.insert(aggregate, (delivered, failure));
    }
    if let Err(e) = publisher.flush(Duration::from_secs(10)).await {
        tracing::warn!(error = %e, "flush after redrive");
    }
    Ok(report)
}

fn print_redriven(report: &RedriveReport, output: Output) {
    match output {
        Output::Json => {
            let json: Vec<_> = report
                .iter()
                .map(|(aggregate, (delivered, failure))| {
                    serde_json::json!({
                        "aggregate_id": aggregate,
                        "redriven": delivered,
                        "failed_event_id": failure.as_ref().map(|f| &f.0),
                        "error": failure.as_ref().map(|f| &f.1),
                    })
                })
                .collect();
            println!("{}", serde_json::Value::Array(json));
        }
        Output::Text => {
            for (aggregate, (delivered, failure)) in report {
                match failure {
                    None => println!("{aggregate}: redriven {delivered} events; unparked"),
                    Some((id, error)) => println!(
                        "{aggregate}: redriven {delivered} events; event {id} failed again and stays parked with the rest of the aggregate: {error}"
                    ),
                }
            }
        }
    }
}

async fn open(config: &Config) -> Result<(StateStore, tokio::task::JoinHandle<()>), RelayError> {
    if config.state.mode == StateMode::Off {
        return Err(RelayError::Config(crate::config::ConfigError(
            "state.mode is off: there is no parking table".into(),
        )));
    }
    let opts = config.source.connect_options()?;
    let (sql, connection) = connect_sql(&opts).await?;
    let mut repl = ReplicationClient::connect(&opts).await?;
    let system = repl.identify_system().await?;
    let _ = repl.close().await;
    let sql = Arc::new(sql);
    let mut strict = config.clone();
    strict.state.mode = StateMode::Required;
    let store = state::open(&sql, &strict, &system.systemid)
        .await?
        .expect("required mode opens or fails");
    Ok((store, connection))
}

fn filter(args: &ParkedArgs) -> ParkedFilter {
    ParkedFilter {
        destination: args.destination.clone(),
        aggregate: args.aggregate.clone(),
        reason: args.reason.clone(),
        event_id: args.event_id.clone(),
        older_than_secs: args.older_than_secs,
    }
}

fn require_filter(args: &ParkedArgs) -> Result<(), RelayError> {
    let any = args.destination.is_some()
        || args.aggregate.is_some()
        || args.reason.is_some()
        || args.event_id.is_some()
        || args.older_than_secs.is_some();
    if any || args.all {
        Ok(())
    } else {
        Err(RelayError::Config(crate::config::ConfigError(
            "name the parked events: --aggregate, --destination, --reason, --event-id, --older-than, or --all".into(),
        )))
    }
}

fn print_events(events: &[ParkedEvent], output: Output) {
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string(events).expect("parked events serialize")
        ),
        Output::Text => {
            println!("{} parked events", events.len());
            for e in events {
                println!(
                    "{}  aggregate {}  commit {}#{}  {} → {}  reason {}  attempts {}  parked {}\n    {}",
                    e.event_id,
                    e.aggregate_id,
                    e.commit_lsn,
                    e.seq,
                    e.event_type,
                    if e.destination.is_empty() { "(none)" } else { &e.destination },
                    e.reason,
                    e.attempts,
                    e.parked_at,
                    e.error
                );
            }
        }
    }
}

fn detail_json(e: &ParkedEvent) -> serde_json::Value {
    let mut v = serde_json::to_value(e).expect("parked event serializes");
    v["headers"] = e
        .event
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                serde_json::Value::String(String::from_utf8_lossy(v).into_owned()),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into();
    v
}

fn print_detail(e: &ParkedEvent) {
    println!("{:#}", detail_json(e));
}

//! One replication session: prepare the source, stream, drain — in that order, each a
//! function below.

use std::sync::Arc;
use std::time::Duration;

use outbox_connectors::Publisher;
use outbox_pgoutput::Lsn;
use outbox_pgwire::{connect_sql, ReplicationClient, ReplicationMessage, ReplicationStream};
use tokio::sync::{oneshot, watch, Notify};
use tokio::task::JoinHandle;
use tokio_postgres::Client;
use tracing::{info, warn};

use super::bulkhead::Bulkhead;
use super::cleanup::{self, Cleanup, CleanupTable};
use super::diversion::{watch_circuits, Diversion};
use super::flow::{Flow, FlowMemory, FlowSettings, FlowState};
use super::redriver;
use super::snapshot::Snapshot;
use super::{status, Progress};
use crate::config::Config;
use crate::config::{CleanupPolicy, InvalidEventPolicy};
use crate::error::RelayError;
use crate::outbox::{Mapper, Router};
use crate::source::{heartbeat, setup, slot, slot_metrics, wal_position};
use crate::state::{self, Parking, StateStore};
use crate::telemetry::{Health, Metrics};

/// Everything a session shares with the process.
pub struct SessionContext {
    pub config: Arc<Config>,
    pub metrics: Metrics,
    pub health: Arc<Health>,
    /// Held while a session prepares its source: shards start side by side, and two
    /// concurrent `CREATE TABLE IF NOT EXISTS` of the state tables (or publications and
    /// slots created at once) can fail on PostgreSQL's catalog unique indexes.
    pub setup: Arc<tokio::sync::Mutex<()>>,
}

/// How a session ended.
pub struct SessionEnd {
    pub result: Result<(), RelayError>,
    /// The flush watermark moved past where the session started: it delivered something
    /// new, so the source and the sink worked.
    pub progressed: bool,
}

pub async fn run_session(
    ctx: &SessionContext,
    publisher: Arc<dyn Publisher>,
    memory: FlowMemory,
    shutdown: &mut watch::Receiver<bool>,
) -> SessionEnd {
    let mut started: Option<(Lsn, Arc<Progress>)> = None;
    let result = session(ctx, publisher, memory, shutdown, &mut started).await;
    SessionEnd {
        result,
        progressed: started.is_some_and(|(resume_at, p)| p.flushed() > resume_at),
    }
}

async fn session(
    ctx: &SessionContext,
    publisher: Arc<dyn Publisher>,
    memory: FlowMemory,
    shutdown: &mut watch::Receiver<bool>,
    started: &mut Option<(Lsn, Arc<Progress>)>,
) -> Result<(), RelayError> {
    let config = &ctx.config;
    // Routes and the dead-letter destination are checked before anything is read.
    let mapper = build_mapper(config, &publisher)?;
    // Start-up waits (a slot creation behind old transactions, a server that does not
    // answer) give way to a shutdown request.
    let source = tokio::select! {
        source = async {
            let _one_at_a_time = ctx.setup.lock().await;
            prepare_source(config, &ctx.metrics).await
        } => source?,
        _ = shutdown.changed() => return Ok(()),
    };

    let progress = Arc::new(Progress::default());
    progress.advance_flushed(source.resume_at);
    progress.note_received(source.resume_at);
    *started = Some((source.resume_at, progress.clone()));
    let mut background = start_background(config, &source.sql, &progress, &ctx.metrics);
    let cleanup_state = source.cleanup.as_ref().map(|(c, _)| c.clone());
    let cleanup = source.cleanup.map(|(cleanup, client)| {
        // Rows of transactions from the slot's position on may still be in the table.
        progress.hold_confirmation(source.slot_confirmed);
        let observer = cleanup.observer();
        background.push(AbortOnDrop(tokio::spawn(cleanup::run(
            cleanup,
            client,
            progress.clone(),
            ctx.metrics.clone(),
            config.outbox.cleanup_batch_rows,
            config.source.status_interval,
        ))));
        observer
    });
    if let Some(parking) = &source.parking {
        background.push(AbortOnDrop(tokio::spawn(state::report_parked(
            parking.clone(),
            ctx.metrics.clone(),
            config.source.status_interval.max(Duration::from_secs(1)),
        ))));
    }
    if let Some(store) = &source.state {
        background.push(AbortOnDrop(tokio::spawn(state::run_writer(
            store.clone(),
            progress.clone(),
            ctx.metrics.clone(),
            config.source.status_interval,
        ))));
    }

    // `on_open: park`: follow the connector's circuits, and redrive what they diverted.
    let bulkhead = Bulkhead::new(
        config.pipeline.inflight_bytes,
        config.pipeline.destination_share,
    )
    .map(Arc::new);
    let diversion = match (&source.parking, &source.state, config.sink.parks_on_open()) {
        (Some(parking), Some(store), true) => {
            let diversion = Arc::new(Diversion::default());
            background.push(AbortOnDrop(tokio::spawn(watch_circuits(
                publisher.clone(),
                diversion.clone(),
            ))));
            if config
                .sink
                .circuit_breaker()
                .is_some_and(|b| b.redrive_on_close)
            {
                background.push(AbortOnDrop(tokio::spawn(redriver::run(
                    store.clone(),
                    parking.clone(),
                    publisher.clone(),
                    diversion.clone(),
                    bulkhead.clone(),
                ))));
            }
            Some(diversion)
        }
        _ => None,
    };
    let mut flow = Flow::start(
        publisher.clone(),
        mapper,
        progress.clone(),
        ctx.metrics.clone(),
        FlowSettings {
            policy: config.outbox.on_invalid,
            inflight_bytes: config.pipeline.inflight_bytes,
            max_batch_events: config.pipeline.max_batch_events,
            skip_before: source.resume_at,
        },
        FlowState {
            memory,
            parking: source.parking.clone(),
            diversion: diversion.clone(),
            bulkhead,
            cleanup,
        },
        shutdown.clone(),
    );
    // A new slot's snapshot is delivered before the stream starts.
    let started = match &source.snapshot {
        Some(snapshot) => {
            deliver_snapshot(
                ctx,
                snapshot,
                &mut flow,
                source.state.as_deref(),
                cleanup_state.as_deref(),
            )
            .await
        }
        None => Ok(true),
    };
    let (outcome, status) = match started {
        Ok(true) => match source.replication.start().await {
            Ok((stream_rx, sender)) => {
                let reply_now = Arc::new(Notify::new());
                let (stop_status, stop_rx) = oneshot::channel();
                let status_task = tokio::spawn(status::run(
                    sender,
                    progress.clone(),
                    ctx.metrics.clone(),
                    reply_now.clone(),
                    stop_rx,
                    config.source.status_interval,
                ));
                // `replicating` is 1 while every shard's stream is open (the one, unsharded).
                ctx.health.set_replicating(true);
                ctx.metrics
                    .replicating
                    .set(ctx.health.all_replicating().into());
                let outcome = stream(stream_rx, &mut flow, &reply_now, shutdown).await;
                ctx.health.set_replicating(false);
                ctx.metrics.replicating.set(0);
                (outcome, Some((stop_status, status_task)))
            }
            Err(e) => (Err(e), None),
        },
        Ok(false) => (Ok(()), None),
        Err(e) => (Err(e), None),
    };
    drop(background);

    let drained = flow
        .finish(&outcome, config.pipeline.shutdown_timeout)
        .await;
    if outcome.is_ok() {
        if let Err(e) = publisher.flush(Duration::from_secs(5)).await {
            warn!(error = %e, "producer flush at shutdown");
        }
    }
    // Final status update with the final watermark, then CopyDone.
    if let Some((stop_status, status_task)) = status {
        let _ = stop_status.send(());
        match tokio::time::timeout(Duration::from_secs(5), status_task).await {
            Ok(Ok(Ok(()))) => info!(flush = %progress.flushed(), "final status sent"),
            Ok(Ok(Err(e))) if outcome.is_ok() => warn!(error = %e, "final status update failed"),
            _ => {}
        }
    }
    if let Some(store) = &source.state {
        let record = tokio::time::timeout(
            Duration::from_secs(5),
            store.record_progress(progress.flushed()),
        );
        if let Ok(Err(e)) = record.await {
            warn!(error = %e, "could not record the final progress");
        }
    }
    outcome.and(drained)
}

/// Publishes the snapshot and, once every event is delivered, deletes its rows (with
/// `outbox.cleanup`) and clears the incomplete-snapshot mark. `Ok(false)`: shutdown
/// came first; the mark stays, and the next start snapshots again.
async fn deliver_snapshot(
    ctx: &SessionContext,
    snapshot: &Snapshot,
    flow: &mut Flow,
    state: Option<&StateStore>,
    cleanup: Option<&Cleanup>,
) -> Result<bool, RelayError> {
    let config = &ctx.config;
    let Some(published) = snapshot
        .publish(flow, &config.outbox.tables, cleanup.is_some(), &ctx.metrics)
        .await?
    else {
        return Ok(false);
    };
    if let Some(cleanup) = cleanup {
        snapshot
            .delete_published(
                cleanup,
                &published,
                config.outbox.cleanup_batch_rows,
                &ctx.metrics,
            )
            .await?;
    }
    if let Some(store) = state {
        store.end_snapshot().await?;
    }
    ctx.metrics.snapshots_completed.inc();
    Ok(true)
}

fn build_mapper(config: &Config, publisher: &Arc<dyn Publisher>) -> Result<Mapper, RelayError> {
    let config_error = |e: String| RelayError::Config(crate::config::ConfigError(e));
    let p = publisher.clone();
    let router = Router::new(
        &config.outbox.route,
        Arc::new(move |d: &str| p.validate_destination(d)),
    )
    .map_err(config_error)?;
    let mapper = Mapper::new(config.outbox.clone(), router);
    publisher
        .validate_destination(&mapper.dead_letter_destination())
        .map_err(|e| config_error(format!("outbox.dead_letter_destination: {e}")))?;
    Ok(mapper)
}

/// A source ready to stream: the SQL connection, the replication stream started at the
/// slot, and the position the session resumes from (already delivered: the slot's
/// confirmed flush, or the relay's own newer record of it).
struct PreparedSource {
    sql: Arc<Client>,
    _sql_connection: AbortOnDrop<()>,
    state: Option<Arc<StateStore>>,
    /// Parked aggregates and the parking writer (with `on_invalid: park`).
    parking: Option<Arc<Parking>>,
    _parking_connection: Option<AbortOnDrop<()>>,
    /// Started once the snapshot (if any) is delivered.
    replication: StartReplication,
    /// A new slot's imported snapshot, to publish before streaming.
    snapshot: Option<Snapshot>,
    resume_at: Lsn,
    /// The slot's own confirmed position: the server streams from here.
    slot_confirmed: Lsn,
    /// With `outbox.cleanup: delete_published`: its state and its own connection.
    cleanup: Option<(Arc<Cleanup>, Client)>,
    _cleanup_connection: Option<AbortOnDrop<()>>,
}

/// Checks the database, makes sure the publication and the slot exist, and starts
/// replication.
async fn prepare_source(config: &Config, metrics: &Metrics) -> Result<PreparedSource, RelayError> {
    let src = &config.source;
    let opts = src.connect_options()?;

    // Ordinary SQL: checks, publication, slot inspection, heartbeats.
    let (sql, sql_conn) = connect_sql(&opts).await?;
    let sql_connection = AbortOnDrop(sql_conn);
    setup::check_wal_level(&sql).await?;
    for table in &config.outbox.tables {
        setup::check_table(&sql, table).await?;
    }
    let note = setup::ensure_publication(&sql, config, false).await?;
    info!("{note}");

    let mut repl = ReplicationClient::connect(&opts).await?;
    let system = repl.identify_system().await?;
    let sql = Arc::new(sql);
    // The state table first: its record of this slot is what tells a lost slot from a
    // first start.
    let state = state::open(&sql, config, &system.systemid)
        .await?
        .map(Arc::new);
    // Where the slot resumes is already acknowledged: start the watermark there, so lag
    // and the status updates are meaningful before the first event is durable.
    let slot_start = slot::ensure(&sql, &mut repl, config, state.as_deref(), metrics).await?;
    // Imported before the replication connection sends anything else (which would end
    // the exported snapshot).
    let snapshot = match &slot_start.snapshot {
        Some(name) => Some(Snapshot::import(&opts, name, slot_start.confirmed).await?),
        None => None,
    };
    let slot_confirmed = slot_start.confirmed;
    let resume_at = slot_confirmed;
    let resume_at = match &state {
        Some(store) => match store.load_progress().await? {
            Some(recorded) if recorded > resume_at => {
                info!(slot = %src.slot, slot_confirmed = %resume_at, %recorded,
                    "the relay's record is ahead of the slot (the server kept an older position); transactions up to the record are skipped");
                recorded
            }
            _ => resume_at,
        },
        None => resume_at,
    };

    let parks = config.outbox.on_invalid == InvalidEventPolicy::Park || config.sink.parks_on_open();
    let (parking, parking_connection) = match (&state, parks) {
        (Some(store), true) => {
            let (writer, connection) = connect_sql(&opts).await?;
            let parking = Parking::load(store.clone(), writer).await?;
            (Some(Arc::new(parking)), Some(AbortOnDrop(connection)))
        }
        (None, true) => {
            return Err(RelayError::Setup(format!(
                "outbox.on_invalid or circuit_breaker.on_open is park, but the state tables in schema {:?} cannot be used (see the warning above); grant the role access to them, or choose dead_letter / halt and stall",
                config.state.schema
            )))
        }
        _ => (None, None),
    };

    let (cleanup, cleanup_connection) = match config.outbox.cleanup {
        CleanupPolicy::None => (None, None),
        CleanupPolicy::DeletePublished => {
            let mut tables = Vec::new();
            for table in &config.outbox.tables {
                tables.push(CleanupTable::resolve(&sql, table).await?);
            }
            let (client, connection) = connect_sql(&opts).await?;
            (
                Some((Cleanup::new(tables, slot_confirmed), client)),
                Some(AbortOnDrop(connection)),
            )
        }
    };

    let version = setup::server_version_num(&sql).await?;
    setup::check_proto_version(version, config)?;
    let messages = setup::pgoutput_messages(version, config)?;
    let mut options = vec![
        ("proto_version", src.proto_version.to_string()),
        ("publication_names", setup::quote_ident(&src.publication)),
    ];
    if messages {
        options.push(("messages", "true".to_string()));
    }
    let replication = StartReplication {
        repl,
        slot: src.slot.clone(),
        options,
        timeline: system.timeline,
        server_lsn: system.xlogpos,
    };
    Ok(PreparedSource {
        sql,
        _sql_connection: sql_connection,
        state,
        parking,
        _parking_connection: parking_connection,
        replication,
        snapshot,
        resume_at,
        slot_confirmed,
        cleanup,
        _cleanup_connection: cleanup_connection,
    })
}

/// START_REPLICATION, deferred until a snapshot is delivered.
struct StartReplication {
    repl: ReplicationClient,
    slot: String,
    options: Vec<(&'static str, String)>,
    timeline: u32,
    server_lsn: Lsn,
}

impl StartReplication {
    async fn start(self) -> Result<(ReplicationStream, outbox_pgwire::StatusSender), RelayError> {
        let options: Vec<(&str, &str)> =
            self.options.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let started = self
            .repl
            .start_logical_replication(&self.slot, Lsn::ZERO, &options)
            .await?;
        info!(slot = %self.slot, timeline = self.timeline, server_lsn = %self.server_lsn, "replicating");
        Ok(started)
    }
}

/// Heartbeats and the server WAL position poll; they stop when the returned guards drop.
fn start_background(
    config: &Config,
    sql: &Arc<Client>,
    progress: &Arc<Progress>,
    metrics: &Metrics,
) -> Vec<AbortOnDrop<()>> {
    let src = &config.source;
    let mut tasks = vec![AbortOnDrop(tokio::spawn(wal_position::run(
        sql.clone(),
        progress.clone(),
        src.status_interval,
    )))];
    if !src.heartbeat_interval.is_zero() {
        tasks.push(AbortOnDrop(tokio::spawn(heartbeat::run(
            heartbeat::SqlHeartbeat(sql.clone()),
            progress.clone(),
            src.heartbeat_interval,
            metrics.clone(),
        ))));
    }
    metrics
        .info
        .with_label_values(&[
            &src.slot,
            &src.publication,
            &src.database,
            &format!("{:?}", config.sink.kind()).to_lowercase(),
        ])
        .set(1);
    tasks.push(AbortOnDrop(tokio::spawn(slot_metrics::run(
        sql.clone(),
        src.slot.clone(),
        metrics.clone(),
        src.status_interval.max(Duration::from_secs(1)),
    ))));
    tasks
}

/// The read loop. It ends on shutdown (Ok), on an error, or when the acker fails.
async fn stream(
    mut stream: ReplicationStream,
    flow: &mut Flow,
    reply_now: &Notify,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), RelayError> {
    loop {
        let msg = tokio::select! {
            biased;
            _ = shutdown.changed() => return Ok(()),
            Some(e) = flow.acker_stopped() => return Err(e),
            msg = stream.next() => msg,
        };
        let msg = match msg {
            Ok(Some(m)) => m,
            Ok(None) => {
                return Err(RelayError::StreamEnded(
                    "the server ended the replication stream".into(),
                ))
            }
            Err(e) => return Err(e.into()),
        };
        if let ReplicationMessage::PrimaryKeepalive {
            reply_requested: true,
            ..
        } = msg
        {
            reply_now.notify_one();
        }
        // Handing a batch over can wait (a full producer queue, a budget held by an
        // unreachable broker); a shutdown request ends that wait. Whatever was not
        // acknowledged is replayed by the next start.
        let go_on = tokio::select! {
            go_on = flow.on_message(msg) => go_on?,
            _ = shutdown.changed() => false,
        };
        if !go_on {
            return Ok(()); // shutdown while waiting
        }
        if let Some(pace) = flow.take_read_pace() {
            stream.coalesce_reads(pace.gap());
        }
    }
}

/// Aborts a background task when the session ends, however it ends.
pub(super) struct AbortOnDrop<T>(pub(super) JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

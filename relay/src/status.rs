//! `outbox-relay status`: what an on-call engineer asks first, answered from the database
//! and, when it answers, the running relay's telemetry endpoint. Needs nothing but the
//! binary, so it works with `kubectl exec` in the distroless image (no shell, psql or
//! curl there).
//!
//! Read-only: it never creates, alters or acknowledges anything, so it is safe next to a
//! live relay.

use std::time::Duration;

use outbox_pgwire::{connect_sql, quote_ident};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::Client;

use crate::cli::Output;
use crate::config::Config;
use crate::error::RelayError;

/// Everything `status` reports; `--output json` prints it as is.
#[derive(Debug, Serialize)]
pub struct Status {
    pub slot: SlotStatus,
    pub server: ServerStatus,
    pub publication: PublicationStatus,
    pub state: Option<StateStatus>,
    pub relay: RelayView,
    /// What is wrong; empty when nothing is. Non-empty makes the exit code 1.
    pub problems: Vec<String>,
    /// With `source.shards` > 1, every shard's slot, publication and state (`slot` and
    /// `publication` above are then shard 0's, and `state` is null); absent without.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardStatus>,
}

/// One shard's slot, publication and state.
#[derive(Debug, Serialize)]
pub struct ShardStatus {
    pub slot: SlotStatus,
    pub publication: PublicationStatus,
    pub state: Option<StateStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SlotStatus {
    pub name: String,
    pub exists: bool,
    pub plugin: Option<String>,
    pub database: Option<String>,
    pub active: bool,
    /// The server process streaming the slot (the relay's walsender).
    pub active_pid: Option<i32>,
    /// reserved, extended, unreserved or lost (PostgreSQL 13+).
    pub wal_status: Option<String>,
    /// WAL that can still be written before the slot is invalidated; null when
    /// `max_slot_wal_keep_size` is unlimited.
    pub safe_wal_size_bytes: Option<i64>,
    pub restart_lsn: Option<String>,
    /// Everything before it is delivered and acknowledged.
    pub confirmed_flush_lsn: Option<String>,
    /// WAL the server has sent to the active client, and what the client reported
    /// receiving (pg_stat_replication sent_lsn / write_lsn).
    pub sent_lsn: Option<String>,
    pub received_lsn: Option<String>,
    /// Bytes of WAL between the server's current position and `confirmed_flush_lsn`.
    pub lag_bytes: Option<i64>,
    /// Bytes of WAL the slot keeps on disk (current position minus `restart_lsn`).
    pub retained_wal_bytes: Option<i64>,
    /// pg_stat_replication's flush_lag: null when the client is caught up.
    pub flush_lag_seconds: Option<f64>,
    pub invalidation_reason: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ServerStatus {
    pub version: String,
    pub current_wal_lsn: String,
    pub in_recovery: bool,
    pub max_slot_wal_keep_size: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PublicationStatus {
    pub name: String,
    pub exists: bool,
    pub tables: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct StateStatus {
    pub schema: String,
    /// The relay's own progress record: what it last knew was delivered.
    pub progress_confirmed_lsn: Option<String>,
    pub progress_updated_at: Option<String>,
    pub parked_events: i64,
    pub parked_aggregates: i64,
    pub oldest_parked_at: Option<String>,
    /// `[reason, destination, events, aggregates]`
    pub parked: Vec<ParkedGroup>,
    /// A snapshot of the outbox tables is incomplete.
    pub snapshot_in_progress: bool,
}

#[derive(Debug, Serialize)]
pub struct ParkedGroup {
    pub reason: String,
    pub destination: String,
    pub events: i64,
    pub aggregates: i64,
}

/// The running relay, as its telemetry endpoint (`telemetry.listen`) tells it.
#[derive(Debug, Default, Serialize)]
pub struct RelayView {
    pub endpoint: Option<String>,
    pub reachable: bool,
    pub ready: Option<bool>,
    pub version: Option<String>,
    /// `ha.enabled`: whether this replica leads (false: a standby).
    pub leader: Option<bool>,
    pub replicating: Option<bool>,
    pub sink_up: Option<bool>,
    pub source_lag_seconds: Option<f64>,
    pub inflight_events: Option<f64>,
    pub oldest_inflight_age_seconds: Option<f64>,
    /// Destinations whose circuit is not closed, with `half_open` or `open`.
    pub circuits_not_closed: Vec<(String, String)>,
}

/// Prints the status; `Ok(false)` when it found a problem (exit 1).
pub async fn run(config: &Config, output: Output) -> Result<bool, RelayError> {
    let status = gather(config).await?;
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&status).expect("status serializes")
        ),
        Output::Text => print!("{}", text(&status)),
    }
    Ok(status.problems.is_empty())
}

/// Reads everything; a database that cannot be reached is an error.
pub async fn gather(config: &Config) -> Result<Status, RelayError> {
    let opts = config.source.connect_options()?;
    let (sql, connection) = connect_sql(&opts).await?;
    let result = async {
        let server = server(&sql).await?;
        let mut shards = Vec::new();
        for shard in config.shard_configs() {
            shards.push(ShardStatus {
                slot: slot(&sql, &shard.source.slot).await?,
                publication: publication(&sql, &shard.source.publication).await?,
                state: state(&sql, &shard).await?,
            });
        }
        Ok::<_, RelayError>((server, shards))
    }
    .await;
    connection.abort();
    let (server, mut shards) = result?;
    let relay = relay_view(&config.telemetry.listen).await;
    let mut problems = Vec::new();
    for shard in &shards {
        shard_problems(config, shard, &mut problems);
    }
    // Unsharded, the one slot is reported as before; sharded, `slot` and `publication`
    // are shard 0's and `shards` lists every shard.
    let (slot, publication, state) = if shards.len() == 1 {
        let only = shards.remove(0);
        (only.slot, only.publication, only.state)
    } else {
        (shards[0].slot.clone(), shards[0].publication.clone(), None)
    };
    Ok(Status {
        slot,
        server,
        publication,
        state,
        relay,
        problems,
        shards,
    })
}

/// What is wrong with one shard's slot and publication (the only one, unsharded).
fn shard_problems(config: &Config, shard: &ShardStatus, problems: &mut Vec<String>) {
    let (slot, publication, state) = (&shard.slot, &shard.publication, &shard.state);
    if !slot.exists {
        problems.push(format!(
            "slot {:?} does not exist{}",
            slot.name,
            match state {
                Some(s) if s.progress_confirmed_lsn.is_some() =>
                    " although the relay has a progress record for it: it was dropped or lost",
                _ if config.source.create_slot => " (run creates it at its first start)",
                _ => "",
            }
        ));
    }
    if slot.wal_status.as_deref() == Some("lost") {
        problems.push(format!(
            "slot {:?} is lost (wal_status lost{}): its WAL was removed; see source.on_slot_lost",
            slot.name,
            slot.invalidation_reason
                .as_ref()
                .map(|r| format!(", {r}"))
                .unwrap_or_default()
        ));
    }
    if !publication.exists {
        problems.push(format!(
            "publication {:?} does not exist{}",
            publication.name,
            if config.source.create_publication {
                " (run creates it)"
            } else {
                ""
            }
        ));
    }
}

async fn slot(sql: &Client, name: &str) -> Result<SlotStatus, RelayError> {
    // to_jsonb reads columns that only some versions have (invalidation_reason from 17).
    let row = sql
        .query_opt(
            "WITH cur AS (SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
                                      ELSE pg_current_wal_lsn() END AS lsn)
             SELECT s.plugin::text, s.database::text, s.active, s.active_pid, s.wal_status,
                    s.safe_wal_size, s.restart_lsn::text, s.confirmed_flush_lsn::text,
                    r.sent_lsn::text, r.write_lsn::text,
                    pg_wal_lsn_diff(cur.lsn, s.confirmed_flush_lsn)::bigint,
                    pg_wal_lsn_diff(cur.lsn, s.restart_lsn)::bigint,
                    extract(epoch FROM r.flush_lag)::float8,
                    to_jsonb(s) ->> 'invalidation_reason'
               FROM pg_replication_slots s
               CROSS JOIN cur
               LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
              WHERE s.slot_name = $1",
            &[&name],
        )
        .await?;
    Ok(match row {
        None => SlotStatus {
            name: name.to_string(),
            exists: false,
            plugin: None,
            database: None,
            active: false,
            active_pid: None,
            wal_status: None,
            safe_wal_size_bytes: None,
            restart_lsn: None,
            confirmed_flush_lsn: None,
            sent_lsn: None,
            received_lsn: None,
            lag_bytes: None,
            retained_wal_bytes: None,
            flush_lag_seconds: None,
            invalidation_reason: None,
        },
        Some(r) => SlotStatus {
            name: name.to_string(),
            exists: true,
            plugin: r.get(0),
            database: r.get(1),
            active: r.get(2),
            active_pid: r.get(3),
            wal_status: r.get(4),
            safe_wal_size_bytes: r.get(5),
            restart_lsn: r.get(6),
            confirmed_flush_lsn: r.get(7),
            sent_lsn: r.get(8),
            received_lsn: r.get(9),
            lag_bytes: r.get(10),
            retained_wal_bytes: r.get(11),
            flush_lag_seconds: r.get(12),
            invalidation_reason: r.get(13),
        },
    })
}

async fn server(sql: &Client) -> Result<ServerStatus, RelayError> {
    let r = sql
        .query_one(
            "SELECT current_setting('server_version'),
                    CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
                         ELSE pg_current_wal_lsn() END::text,
                    pg_is_in_recovery(),
                    current_setting('max_slot_wal_keep_size')",
            &[],
        )
        .await?;
    Ok(ServerStatus {
        version: r.get(0),
        current_wal_lsn: r.get::<_, Option<String>>(1).unwrap_or_default(),
        in_recovery: r.get(2),
        max_slot_wal_keep_size: r.get(3),
    })
}

async fn publication(sql: &Client, name: &str) -> Result<PublicationStatus, RelayError> {
    let exists: bool = sql
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)",
            &[&name],
        )
        .await?
        .get(0);
    let tables = sql
        .query(
            "SELECT schemaname || '.' || tablename FROM pg_publication_tables
              WHERE pubname = $1 ORDER BY 1",
            &[&name],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(PublicationStatus {
        name: name.to_string(),
        exists,
        tables,
    })
}

/// The state tables, when they exist (`state.mode: off`, or a role that cannot create
/// them, leaves none).
async fn state(sql: &Client, config: &Config) -> Result<Option<StateStatus>, RelayError> {
    let schema = &config.state.schema;
    let s = quote_ident(schema);
    let present: bool = sql
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL
                AND to_regclass($3) IS NOT NULL",
            &[
                &format!("{s}.progress"),
                &format!("{s}.parked"),
                &format!("{s}.snapshot"),
            ],
        )
        .await?
        .get(0);
    if !present {
        return Ok(None);
    }
    let slot = &config.source.slot;
    let progress = sql
        .query_opt(
            &format!(
                "SELECT confirmed_lsn::text, to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
                   FROM {s}.progress WHERE slot = $1"
            ),
            &[slot],
        )
        .await?;
    let totals = sql
        .query_one(
            &format!(
                "SELECT count(*), count(DISTINCT aggregate_id),
                        to_char(min(parked_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
                   FROM {s}.parked WHERE slot = $1"
            ),
            &[slot],
        )
        .await?;
    let parked = sql
        .query(
            &format!(
                "SELECT reason, destination, count(*), count(DISTINCT aggregate_id)
                   FROM {s}.parked WHERE slot = $1 GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2"
            ),
            &[slot],
        )
        .await?
        .iter()
        .map(|r| ParkedGroup {
            reason: r.get(0),
            destination: r.get(1),
            events: r.get(2),
            aggregates: r.get(3),
        })
        .collect();
    let snapshot_in_progress: bool = sql
        .query_one(
            &format!("SELECT EXISTS (SELECT 1 FROM {s}.snapshot WHERE slot = $1)"),
            &[slot],
        )
        .await?
        .get(0);
    Ok(Some(StateStatus {
        schema: schema.clone(),
        progress_confirmed_lsn: progress.as_ref().map(|r| r.get(0)),
        progress_updated_at: progress.as_ref().map(|r| r.get(1)),
        parked_events: totals.get(0),
        parked_aggregates: totals.get(1),
        oldest_parked_at: totals.get(2),
        parked,
        snapshot_in_progress,
    }))
}

/// How long the telemetry endpoint may take to answer.
const HTTP_TIMEOUT: Duration = Duration::from_secs(2);

/// Asks the relay's own endpoint; in a pod, `kubectl exec` runs this next to it.
async fn relay_view(listen: &str) -> RelayView {
    let Some(addr) = local_address(listen) else {
        return RelayView::default();
    };
    let mut view = RelayView {
        endpoint: Some(addr.clone()),
        ..RelayView::default()
    };
    let Some((_, metrics)) = http_get(&addr, "/metrics").await else {
        return view;
    };
    view.reachable = true;
    view.ready = http_get(&addr, "/readyz")
        .await
        .map(|(code, _)| code == 200);
    let sample = |name: &str| {
        metrics.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?;
            rest.strip_prefix(' ')?.trim().parse::<f64>().ok()
        })
    };
    view.leader = sample("outbox_relay_leader").map(|v| v == 1.0);
    view.replicating = sample("outbox_relay_replicating").map(|v| v == 1.0);
    view.sink_up = sample("outbox_relay_sink_up").map(|v| v == 1.0);
    // With shards there is one series per slot (`{slot="…"}`): the largest counts.
    let max_sample = |name: &str| {
        metrics
            .lines()
            .filter_map(|l| {
                let rest = l.strip_prefix(name)?;
                let value = match rest.strip_prefix('{') {
                    Some(labelled) => labelled.split_once("} ")?.1,
                    None => rest.strip_prefix(' ')?,
                };
                value.trim().parse::<f64>().ok()
            })
            .reduce(f64::max)
    };
    view.source_lag_seconds = max_sample("outbox_relay_source_lag_seconds");
    view.inflight_events = sample("outbox_relay_inflight_events");
    view.oldest_inflight_age_seconds = max_sample("outbox_relay_oldest_inflight_age_seconds");
    view.version = metrics.lines().find_map(|l| {
        let rest = l.strip_prefix("outbox_relay_build_info{")?;
        let v = rest.split("version=\"").nth(1)?;
        Some(v.split('"').next()?.to_string())
    });
    for l in metrics.lines() {
        let Some(rest) = l.strip_prefix("outbox_relay_circuit_state{destination=\"") else {
            continue;
        };
        let Some((destination, value)) = rest.split_once("\"} ") else {
            continue;
        };
        let state = match value.trim() {
            "1" => "half_open",
            "2" => "open",
            _ => continue,
        };
        view.circuits_not_closed
            .push((destination.to_string(), state.to_string()));
    }
    view
}

/// `telemetry.listen` as an address to connect to: a wildcard means this host.
fn local_address(listen: &str) -> Option<String> {
    let addr: std::net::SocketAddr = listen.parse().ok()?;
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_string(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => "[::1]".to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    Some(format!("{ip}:{}", addr.port()))
}

/// One HTTP/1.0 GET: `(status code, body)`, or `None` when nothing answers in time.
async fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let text = String::from_utf8_lossy(&response).into_owned();
        let (head, body) = text.split_once("\r\n\r\n")?;
        let code = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((code, body.to_string()))
    };
    tokio::time::timeout(HTTP_TIMEOUT, exchange).await.ok()?
}

fn or_dash<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(T::to_string).unwrap_or_else(|| "-".into())
}

fn slot_text(slot: &SlotStatus, line: &mut impl FnMut(String)) {
    if slot.exists {
        line(format!(
            "slot {:?}: {} ({}), wal_status {}, safe_wal_size {}",
            slot.name,
            if slot.active { "active" } else { "inactive" },
            match slot.active_pid {
                Some(pid) => format!("server process {pid}"),
                None => "no process".into(),
            },
            or_dash(&slot.wal_status),
            match slot.safe_wal_size_bytes {
                Some(b) => format!("{b} bytes"),
                None => "unlimited".into(),
            }
        ));
        line(format!(
            "  confirmed {}  received {}  sent {}  restart {}",
            or_dash(&slot.confirmed_flush_lsn),
            or_dash(&slot.received_lsn),
            or_dash(&slot.sent_lsn),
            or_dash(&slot.restart_lsn)
        ));
        line(format!(
            "  lag {} bytes, flush lag {}, WAL retained {} bytes",
            or_dash(&slot.lag_bytes),
            match slot.flush_lag_seconds {
                Some(secs) => format!("{secs:.3} s"),
                None => "- (caught up or no active client)".into(),
            },
            or_dash(&slot.retained_wal_bytes)
        ));
    } else {
        line(format!("slot {:?}: does not exist", slot.name));
    }
}

fn publication_text(publication: &PublicationStatus, line: &mut impl FnMut(String)) {
    line(format!(
        "publication {:?}: {}",
        publication.name,
        if !publication.exists {
            "does not exist".to_string()
        } else if publication.tables.is_empty() {
            "no tables".to_string()
        } else {
            publication.tables.join(", ")
        }
    ));
}

fn state_text(state: &Option<StateStatus>, line: &mut impl FnMut(String)) {
    match state {
        None => line("state tables: none (state.mode off, or not created)".into()),
        Some(st) => {
            line(format!(
                "progress record ({}): confirmed {} at {}{}",
                st.schema,
                or_dash(&st.progress_confirmed_lsn),
                or_dash(&st.progress_updated_at),
                if st.snapshot_in_progress {
                    "; a snapshot is incomplete"
                } else {
                    ""
                }
            ));
            line(format!(
                "parked: {} events of {} aggregates{}",
                st.parked_events,
                st.parked_aggregates,
                st.oldest_parked_at
                    .as_ref()
                    .map(|t| format!(", oldest parked at {t}"))
                    .unwrap_or_default()
            ));
            for g in &st.parked {
                line(format!(
                    "  {} -> {}: {} events, {} aggregates",
                    g.reason, g.destination, g.events, g.aggregates
                ));
            }
        }
    }
}

/// The text form, one fact per line.
pub fn text(s: &Status) -> String {
    let mut out = String::new();
    let mut line = |l: String| {
        out.push_str(&l);
        out.push('\n');
    };
    if s.shards.is_empty() {
        slot_text(&s.slot, &mut line);
    } else {
        for shard in &s.shards {
            slot_text(&shard.slot, &mut line);
        }
    }
    line(format!(
        "server: PostgreSQL {}, current WAL {}{}, max_slot_wal_keep_size {}",
        s.server.version,
        s.server.current_wal_lsn,
        if s.server.in_recovery {
            " (standby)"
        } else {
            ""
        },
        s.server.max_slot_wal_keep_size
    ));
    if s.shards.is_empty() {
        publication_text(&s.publication, &mut line);
        state_text(&s.state, &mut line);
    } else {
        for shard in &s.shards {
            publication_text(&shard.publication, &mut line);
            state_text(&shard.state, &mut line);
        }
    }
    let r = &s.relay;
    match &r.endpoint {
        None => line("relay: telemetry.listen is off; no live view".into()),
        Some(endpoint) if !r.reachable => line(format!("relay: nothing answers at {endpoint}")),
        Some(endpoint) => {
            let yes_no = |b: Option<bool>| match b {
                Some(true) => "yes",
                Some(false) => "no",
                None => "-",
            };
            line(format!(
                "relay at {endpoint}: version {}, {}, ready {}, replicating {}, sink up {}",
                or_dash(&r.version),
                match r.leader {
                    Some(false) => "standby (another replica leads)",
                    _ => "leader",
                },
                yes_no(r.ready),
                yes_no(r.replicating),
                yes_no(r.sink_up)
            ));
            line(format!(
                "  in flight {} events, oldest {} s, source lag {} s",
                or_dash(&r.inflight_events),
                or_dash(&r.oldest_inflight_age_seconds),
                or_dash(&r.source_lag_seconds)
            ));
            for (destination, state) in &r.circuits_not_closed {
                line(format!("  circuit {state}: {destination}"));
            }
        }
    }
    if s.problems.is_empty() {
        line("problems: none".into());
    } else {
        for p in &s.problems {
            line(format!("PROBLEM {p}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_listen_address_is_reached_on_loopback() {
        assert_eq!(
            local_address("0.0.0.0:10187").as_deref(),
            Some("127.0.0.1:10187")
        );
        assert_eq!(local_address("[::]:10187").as_deref(), Some("[::1]:10187"));
        assert_eq!(local_address("10.1.2.3:9").as_deref(), Some("10.1.2.3:9"));
        assert_eq!(local_address(""), None);
    }
}

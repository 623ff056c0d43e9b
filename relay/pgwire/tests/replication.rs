//! Logical replication against the local cluster, with pgoutput. Only the
//! tag byte of each pgoutput message is looked at: decoding is another
//! crate's job.

mod common;

use std::time::Duration;

use common::*;
use outbox_pgwire::{quote_ident, Lsn, PgWireError, ReplicationClient, ReplicationMessage};

/// A table and a publication for it; the slot is made by the test.
struct Fixture {
    table: String,
    publication: String,
    slot: String,
}

impl Fixture {
    async fn new(prefix: &str) -> Fixture {
        let name = unique(prefix);
        let f = Fixture {
            table: format!("{name}_t"),
            publication: format!("{name}_pub"),
            slot: format!("{name}_slot"),
        };
        admin()
            .await
            .batch_execute(&format!(
                "CREATE TABLE {t} (id bigserial PRIMARY KEY, body text NOT NULL);
                 CREATE PUBLICATION {p} FOR TABLE {t};",
                t = quote_ident(&f.table),
                p = quote_ident(&f.publication)
            ))
            .await
            .expect("create table and publication");
        f
    }

    fn pgoutput_options(&self) -> Vec<(String, String)> {
        vec![
            ("proto_version".into(), "1".into()),
            ("publication_names".into(), quote_ident(&self.publication)),
            ("messages".into(), "true".into()),
        ]
    }

    async fn cleanup(self) {
        // The streaming connection may still be on its way out: WAIT.
        if let Ok(mut c) = ReplicationClient::connect(&main_opts()).await {
            match c.drop_slot(&self.slot, true).await {
                Ok(()) => {}
                Err(e) if e.sqlstate() == Some("42704") => {} // the test never made it
                Err(e) => eprintln!("dropping slot {}: {e}", self.slot),
            }
            let _ = c.close().await;
        }
        let _ = admin()
            .await
            .batch_execute(&format!(
                "DROP PUBLICATION IF EXISTS {}; DROP TABLE IF EXISTS {};",
                quote_ident(&self.publication),
                quote_ident(&self.table)
            ))
            .await;
    }
}

const SLOT_WAIT: &str = "CREATE_REPLICATION_SLOT (it waits for every transaction open on the \
                         cluster to finish; look for a long-running one in pg_stat_activity)";
const SLOT_WAIT_SECS: u64 = 120;

async fn create_slot(c: &mut ReplicationClient, slot: &str) -> outbox_pgwire::CreatedSlot {
    within(
        SLOT_WAIT,
        SLOT_WAIT_SECS,
        c.create_logical_slot(slot, "pgoutput"),
    )
    .await
    .unwrap_or_else(|e| panic!("creating slot {slot}: {e}"))
}

async fn confirmed_flush(slot: &str) -> Option<Lsn> {
    let row = admin()
        .await
        .query_one(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .expect("slot exists");
    row.get::<_, Option<String>>(0).map(|s| s.parse().unwrap())
}

fn opts_ref(o: &[(String, String)]) -> Vec<(&str, &str)> {
    o.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[tokio::test]
async fn identify_system_matches_the_cluster() {
    let mut c = replication().await;
    let id = c.identify_system().await.unwrap();
    let admin = admin().await;
    let row = admin
        .query_one(
            "SELECT (SELECT system_identifier::text FROM pg_control_system()),
                    (SELECT timeline_id FROM pg_control_checkpoint()),
                    pg_current_wal_lsn()::text",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(id.systemid, row.get::<_, String>(0));
    assert_eq!(i64::from(id.timeline), i64::from(row.get::<_, i32>(1)));
    let current: Lsn = row.get::<_, String>(2).parse().unwrap();
    assert!(
        id.xlogpos > Lsn(0x100_0000) && id.xlogpos <= current,
        "xlogpos {} vs current {current}",
        id.xlogpos
    );
    assert_eq!(id.dbname.as_deref(), Some(dbname().as_str()));
    c.close().await.unwrap();
}

/// Reads from the stream in its own task and feeds messages back, so the
/// read half and the write half really are used from different tasks.
fn spawn_reader(
    mut stream: outbox_pgwire::ReplicationStream,
) -> (
    tokio::sync::mpsc::Receiver<Result<Option<ReplicationMessage>, PgWireError>>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let task = tokio::spawn(async move {
        loop {
            let msg = stream.next().await;
            let end = !matches!(msg, Ok(Some(_)));
            if tx.send(msg).await.is_err() || end {
                return;
            }
        }
    });
    (rx, task)
}

#[tokio::test]
async fn streams_pgoutput_and_confirms_flush() {
    let f = Fixture::new("pgwire_stream").await;
    let (table, slot, options) = (f.table.clone(), f.slot.clone(), f.pgoutput_options());
    let body = async move {
        let mut c = replication().await;
        let created = create_slot(&mut c, &slot).await;
        assert_eq!(created.slot_name, slot);
        assert!(created.consistent_point > Lsn(0));
        assert_eq!(created.output_plugin.as_deref(), Some("pgoutput"));
        // A second slot of the same name is a server error, and the
        // connection stays usable afterwards.
        let dup = c.create_logical_slot(&slot, "pgoutput").await.unwrap_err();
        assert_eq!(dup.sqlstate(), Some("42710"), "{dup}");
        assert!(!dup.is_retryable());

        admin()
            .await
            .batch_execute(&format!(
                "BEGIN; INSERT INTO {t} (body) VALUES ('one'), ('two'), ('three'); COMMIT;",
                t = quote_ident(&table)
            ))
            .await
            .unwrap();

        let (stream, mut status) = c
            .start_logical_replication(&slot, Lsn(0), &opts_ref(&options))
            .await
            .expect("START_REPLICATION");
        let (mut rx, reader) = spawn_reader(stream);

        // Other sessions on the shared cluster may emit logical messages
        // ('M', sent to every slot with messages=true) or commit other
        // transactions; only the transaction with our inserts is checked.
        let mut txn = Vec::new();
        let mut tags = Vec::new();
        let mut commit_end = None;
        let mut keepalives = 0;
        within("B, R, I, C and a keepalive", 60, async {
            while commit_end.is_none() || keepalives == 0 {
                match rx
                    .recv()
                    .await
                    .expect("reader ended")
                    .expect("stream error")
                {
                    Some(ReplicationMessage::XLogData {
                        wal_start,
                        wal_end,
                        data,
                        ..
                    }) => {
                        assert!(wal_end >= wal_start || wal_end == Lsn(0));
                        match data[0] {
                            b'M' => {}
                            b'B' => txn = vec![b'B'],
                            b'C' if txn.contains(&b'I') => {
                                txn.push(b'C');
                                tags = std::mem::take(&mut txn);
                                // Commit: flags, commit LSN, end LSN, timestamp.
                                let end = Lsn(u64::from_be_bytes(data[10..18].try_into().unwrap()));
                                assert!(wal_start >= end || wal_start == Lsn(0));
                                commit_end = Some(end);
                            }
                            tag => txn.push(tag),
                        }
                    }
                    Some(ReplicationMessage::PrimaryKeepalive { wal_end, .. }) => {
                        assert!(wal_end > Lsn(0));
                        keepalives += 1;
                    }
                    None => panic!("server ended the copy"),
                }
            }
        })
        .await;
        assert_eq!(tags, b"BRIIIC", "pgoutput tags");

        let end = commit_end.unwrap();
        status.send_status(end, end, end, false).await.unwrap();
        within("confirmed_flush_lsn to move", 10, async {
            loop {
                if confirmed_flush(&slot).await == Some(end) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;

        status.finish().await.unwrap();
        // After our CopyDone and Terminate the server either echoes CopyDone
        // or just hangs up.
        within("the stream to end", 10, async {
            while let Some(msg) = rx.recv().await {
                match msg {
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(PgWireError::ConnectionClosed) => break,
                    Err(e) => panic!("unexpected error at the end of the stream: {e}"),
                }
            }
        })
        .await;
        reader.await.unwrap();
        // The slot survives the connection and kept its position.
        assert_eq!(confirmed_flush(&slot).await, Some(end));
    };
    with_cleanup(body, f.cleanup()).await;
}

#[tokio::test]
async fn keepalive_with_reply_requested() {
    let f = Fixture::new("pgwire_keepalive").await;
    let (slot, options) = (f.slot.clone(), f.pgoutput_options());
    let body = async move {
        let mut c = replication().await;
        create_slot(&mut c, &slot).await;
        // The walsender asks for a reply once half of wal_sender_timeout has
        // passed without one.
        c.simple_query("SET wal_sender_timeout = '2s'")
            .await
            .unwrap();
        let (mut stream, mut status) = c
            .start_logical_replication(&slot, Lsn(0), &opts_ref(&options))
            .await
            .unwrap();
        let wal_end = within("a keepalive with reply_requested", 20, async {
            loop {
                match stream.next().await.unwrap() {
                    Some(ReplicationMessage::PrimaryKeepalive {
                        wal_end,
                        reply_requested: true,
                        ..
                    }) => break wal_end,
                    Some(_) => {}
                    None => panic!("server ended the copy"),
                }
            }
        })
        .await;
        status
            .send_status(wal_end, Lsn(0), Lsn(0), false)
            .await
            .unwrap();
        // Keep answering past the timeout: the connection must stay up.
        let until = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::time::Instant::now() < until {
            let msg = tokio::time::timeout(Duration::from_millis(500), stream.next()).await;
            match msg {
                Ok(Ok(Some(ReplicationMessage::PrimaryKeepalive {
                    wal_end,
                    reply_requested,
                    ..
                }))) => {
                    if reply_requested {
                        status
                            .send_status(wal_end, Lsn(0), Lsn(0), false)
                            .await
                            .unwrap();
                    }
                }
                Ok(Ok(Some(_))) | Err(_) => {}
                Ok(Ok(None)) => panic!("server ended the copy"),
                Ok(Err(e)) => panic!("replication connection failed despite replies: {e}"),
            }
            status
                .send_status(wal_end, Lsn(0), Lsn(0), false)
                .await
                .unwrap();
        }
        status.finish().await.unwrap();
    };
    with_cleanup(body, f.cleanup()).await;
}

#[tokio::test]
async fn large_transaction_and_large_values() {
    // logical_decoding_work_mem is 64kB on the test cluster, so this
    // transaction spills to disk on the server; the 3 MB value arrives as one
    // XLogData far bigger than a single read.
    let f = Fixture::new("pgwire_large").await;
    let (table, slot, options) = (f.table.clone(), f.slot.clone(), f.pgoutput_options());
    let body = async move {
        let mut c = replication().await;
        create_slot(&mut c, &slot).await;
        admin()
            .await
            .batch_execute(&format!(
                "BEGIN;
                 INSERT INTO {t} (body) SELECT 'row ' || g FROM generate_series(1, 5000) g;
                 INSERT INTO {t} (body) SELECT string_agg(md5(g::text), '') FROM generate_series(1, 100000) g;
                 COMMIT;",
                t = quote_ident(&table)
            ))
            .await
            .unwrap();
        let (mut stream, status) = c
            .start_logical_replication(&slot, Lsn(0), &opts_ref(&options))
            .await
            .unwrap();
        let (mut inserts, mut biggest) = (0, 0);
        within("the large transaction", 60, async {
            loop {
                if let Some(ReplicationMessage::XLogData { data, .. }) =
                    stream.next().await.unwrap()
                {
                    match data[0] {
                        b'I' => {
                            inserts += 1;
                            biggest = biggest.max(data.len());
                        }
                        b'C' if inserts > 0 => break,
                        _ => {}
                    }
                }
            }
        })
        .await;
        assert_eq!(inserts, 5001);
        assert!(
            biggest > 3_200_000,
            "the big row's message is only {biggest} bytes"
        );
        status.finish().await.unwrap();
    };
    with_cleanup(body, f.cleanup()).await;
}

#[tokio::test]
async fn unknown_slot_is_not_retryable() {
    let c = replication().await;
    let e = c
        .start_logical_replication(&unique("pgwire_missing"), Lsn(0), &[])
        .await
        .unwrap_err();
    assert_eq!(e.sqlstate(), Some("42704"), "{e}");
    assert!(!e.is_retryable());
}

#[tokio::test]
async fn temporary_slot_goes_away_with_the_connection() {
    let slot = unique("pgwire_temp");
    let mut c = replication().await;
    within(
        SLOT_WAIT,
        SLOT_WAIT_SECS,
        c.create_temporary_logical_slot(&slot, "pgoutput"),
    )
    .await
    .unwrap();
    let count = |slot: String| async move {
        admin()
            .await
            .query_one(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    assert_eq!(count(slot.clone()).await, 1);
    c.close().await.unwrap();
    within("the temporary slot to disappear", 10, async {
        while count(slot.clone()).await != 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn sql_errors_keep_the_connection_usable() {
    let mut c = replication().await;
    let e = c
        .simple_query("SELECT * FROM no_such_table_for_pgwire")
        .await
        .unwrap_err();
    assert_eq!(e.sqlstate(), Some("42P01"), "{e}");
    let rows = c
        .simple_query("SELECT 1, NULL::text, 'x'; SELECT 2")
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![
            vec![Some("1".into()), None, Some("x".into())],
            vec![Some("2".into())]
        ]
    );
    assert_eq!(
        c.simple_query("").await.unwrap(),
        Vec::<Vec<Option<String>>>::new()
    );
    c.close().await.unwrap();
}

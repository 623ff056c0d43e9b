//! SIGTERM is honoured during start-up waits too (issue 11.8): creating a slot waits for
//! every transaction that was running when it started, and before, the relay sat in that
//! wait, deaf to SIGTERM, until the transaction ended.

use std::time::{Duration, Instant};

use outbox_relay_tests::relay::{Relay, RelaySetup};
use outbox_relay_tests::{pg, unique};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_a_slot_creation_stuck_behind_an_open_transaction() {
    let name = unique("stuckslot");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    pg::create_outbox_table(&client, &table, "jsonb", false).await;
    // A transaction with an xid, left open: CREATE_REPLICATION_SLOT waits for it.
    let blocker = pg::connect().await;
    blocker
        .batch_execute(&format!(
            "BEGIN; INSERT INTO {table} (aggregatetype, aggregateid, type, payload) VALUES ('Order', 'a', 'T', '{{}}');"
        ))
        .await
        .unwrap();
    let mut relay = Relay::start(&RelaySetup::new(&name, &table));
    // The relay reaches the slot creation and waits there.
    let mut waiting = false;
    for _ in 0..100 {
        let row = client
            .query_opt(
                "SELECT 1 FROM pg_stat_activity WHERE backend_type = 'walsender' AND wait_event IS NOT NULL AND query LIKE 'CREATE_REPLICATION_SLOT%' AND query LIKE $1",
                &[&format!("%{name}%")],
            )
            .await
            .unwrap();
        if row.is_some() {
            waiting = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        waiting,
        "the slot creation never waited:\n{}",
        relay.log_tail()
    );
    let t = Instant::now();
    let status = relay.terminate(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", relay.log_tail());
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    blocker.batch_execute("ROLLBACK").await.unwrap();
    pg::cleanup(&client, &name, &name, &[&table]).await;
}

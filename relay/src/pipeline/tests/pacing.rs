//! The flow tells the session how to pace the stream's reads (`pacing.rs`): paced while
//! the transactions it reads committed long ago, immediate once they are recent.

use outbox_pgoutput::{Begin, Commit, LogicalReplicationMessage as M, Lsn};

use super::super::ack::unix_now_us;
use super::super::pacing::{ReadPace, READ_GAP};
use super::*;

/// Microseconds from 1970 to PostgreSQL's epoch (2000-01-01).
const PG_EPOCH_US: i64 = 946_684_800_000_000;

async fn empty_tx(h: &mut Harness, commit_ts: i64) {
    let lsn = Lsn(0x1000);
    h.feed(M::Begin(Begin {
        final_lsn: lsn,
        commit_ts,
        xid: 1,
    }))
    .await
    .unwrap();
    h.feed(M::Commit(Commit {
        flags: 0,
        commit_lsn: lsn,
        end_lsn: lsn,
        commit_ts,
    }))
    .await
    .unwrap();
}

#[tokio::test]
async fn reads_are_paced_while_catching_up_and_immediate_once_caught_up() {
    let mut h = Harness::start(Setup::default()).await;
    assert_eq!(h.flow.take_read_pace(), None, "nothing read yet");
    let now_pg = unix_now_us() - PG_EPOCH_US;
    empty_tx(&mut h, now_pg).await;
    assert_eq!(
        h.flow.take_read_pace(),
        None,
        "recent: reads stay immediate"
    );
    empty_tx(&mut h, now_pg - 60_000_000).await;
    assert_eq!(
        h.flow.take_read_pace(),
        Some(ReadPace::Gap(READ_GAP)),
        "a minute old"
    );
    assert_eq!(h.flow.take_read_pace(), None, "told once");
    empty_tx(&mut h, now_pg - 30_000_000).await;
    assert_eq!(h.flow.take_read_pace(), None, "still behind");
    empty_tx(&mut h, unix_now_us() - PG_EPOCH_US).await;
    assert_eq!(
        h.flow.take_read_pace(),
        Some(ReadPace::Immediate),
        "caught up"
    );
}

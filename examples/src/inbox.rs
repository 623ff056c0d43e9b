//! Idempotent consumption: the event id goes into the consumer's `inbox` table in the same
//! transaction as the state change it causes. A redelivery (the broker offset or SQS
//! delete was lost in a crash, or a relay published again after its own crash) finds the
//! id already there: the transaction only counts the redelivery, and the state change is
//! not applied a second time.

use tokio_postgres::Transaction;

use crate::events::Delivery;

/// True if this is the first delivery of the event (apply it), false for a redelivery.
pub async fn first_delivery(tx: &Transaction<'_>, d: &Delivery) -> crate::Result<bool> {
    let source = match &d.origin {
        crate::events::Origin::Kafka { topic, .. } => topic.clone(),
        crate::events::Origin::Sqs { queue, .. } => queue.clone(),
    };
    let inserted = tx
        .execute(
            "INSERT INTO inbox (event_id, event_type, source) VALUES ($1, $2, $3)
             ON CONFLICT (event_id) DO NOTHING",
            &[&d.id, &d.event_type, &source],
        )
        .await?;
    if inserted == 0 {
        tx.execute(
            "UPDATE inbox SET redeliveries = redeliveries + 1 WHERE event_id = $1",
            &[&d.id],
        )
        .await?;
    }
    Ok(inserted == 1)
}

/// Inbox figures for the audit: events applied, redeliveries suppressed.
pub async fn stats(client: &tokio_postgres::Client) -> crate::Result<(i64, i64)> {
    let row = client
        .query_one(
            "SELECT count(*), coalesce(sum(redeliveries), 0)::bigint FROM inbox",
            &[],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

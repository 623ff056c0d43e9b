//! `payments`: authorizes or rejects each placed order by a fixed rule, and refunds when
//! inventory reports a shortage (the saga's compensation). It has no outbox table: its
//! events are written with `pg_logical_emit_message` inside the same transaction as the
//! payment row, so they exist only in the WAL — the payments relay publishes them to Kafka.

use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio_postgres::Transaction;
use uuid::Uuid;

use super::ApiError;
use crate::config::{Names, ServiceArgs};
use crate::consume;
use crate::db::{Pool, INBOX_DDL};
use crate::events::*;
use crate::inbox;

const DDL: &str = "
CREATE TABLE IF NOT EXISTS payments (
  order_id     uuid PRIMARY KEY,
  amount_cents bigint NOT NULL,
  currency     text NOT NULL,
  status       text NOT NULL,         -- AUTHORIZED, REJECTED, REFUNDED
  reason       text,
  updated_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);";

/// Orders above this amount are rejected.
pub const LIMIT_CENTS: i64 = 50_000;
/// A card number ending in this always fails (the test card of the demo).
pub const DECLINED_CARD_SUFFIX: &str = "0002";

/// The payment decision: `Err(reason)` rejects.
pub fn decide(e: &OrderPlaced) -> Result<(), String> {
    if e.card.ends_with(DECLINED_CARD_SUFFIX) {
        Err("card declined".into())
    } else if e.amount_cents > LIMIT_CENTS {
        Err(format!("amount over the {} limit", LIMIT_CENTS / 100))
    } else {
        Ok(())
    }
}

#[derive(Clone)]
struct App {
    pool: Pool,
    names: Names,
}

pub async fn run(args: ServiceArgs) -> crate::Result<()> {
    let names = Names::new(&args.prefix)?;
    let pool = Pool::new(&args.database, 8);
    pool.wait_ready(Duration::from_secs(60)).await?;
    pool.get()
        .await?
        .batch_execute(&format!("{DDL}{INBOX_DDL}"))
        .await?;
    let app = App {
        pool: pool.clone(),
        names: names.clone(),
    };
    let router = Router::new()
        .route("/audit", get(audit))
        .with_state(app.clone());
    let a = app.clone();
    let h = consume::handler(move |d| apply(a.clone(), d));
    let sdk = crate::aws::sdk(&args.aws_endpoint).await;
    super::run_all(vec![
        tokio::spawn(consume::kafka::run(
            "payments".into(),
            args.kafka.clone(),
            names.consumer_group("payments"),
            vec![names.order_topic()],
            h.clone(),
        )),
        tokio::spawn(consume::sqs::run(
            "payments".into(),
            sdk,
            names.inventory_queue("payments"),
            h,
        )),
        tokio::spawn(super::serve(args.listen, router)),
    ])
    .await
}

/// Writes an event as a transactional logical message: published if and only if the
/// transaction commits, like an outbox row, but nothing to insert or clean up.
async fn emit(
    tx: &Transaction<'_>,
    names: &Names,
    event_type: &str,
    order_id: Uuid,
    payload: serde_json::Value,
    traceparent: &str,
) -> crate::Result<()> {
    let message = json!({
        "id": Uuid::new_v4(),
        "aggregatetype": "Payment",
        "aggregateid": order_id,
        "type": event_type,
        "payload": payload,
        "tracingspancontext": traceparent,
    });
    tx.execute(
        "SELECT pg_logical_emit_message(true, $1::text, $2::text)",
        &[&names.payment_message_prefix(), &message.to_string()],
    )
    .await?;
    Ok(())
}

async fn apply(app: App, d: Delivery) -> crate::Result<()> {
    let mut c = app.pool.get().await?;
    let tx = c.transaction().await?;
    let traceparent = crate::trace::child_of(d.traceparent.as_deref());
    if inbox::first_delivery(&tx, &d).await? {
        match d.event_type.as_str() {
            // Any version: v1 has no currency and reads as EUR (tolerant reader).
            "OrderPlaced" => {
                let e: OrderPlaced = d.parse()?;
                let (status, reason) = match decide(&e) {
                    Ok(()) => ("AUTHORIZED", None),
                    Err(r) => ("REJECTED", Some(r)),
                };
                let inserted = tx
                    .execute(
                        "INSERT INTO payments (order_id, amount_cents, currency, status, reason)
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (order_id) DO NOTHING",
                        &[&e.order_id, &e.amount_cents, &e.currency, &status, &reason],
                    )
                    .await?;
                if inserted == 1 {
                    let payload = match reason {
                        None => tagged(
                            "PaymentAuthorized",
                            1,
                            &PaymentAuthorized {
                                order_id: e.order_id,
                                amount_cents: e.amount_cents,
                                currency: e.currency.clone(),
                                sku: e.sku.clone(),
                                qty: e.qty,
                            },
                        ),
                        Some(reason) => tagged(
                            "PaymentRejected",
                            1,
                            &PaymentRejected {
                                order_id: e.order_id,
                                reason,
                            },
                        ),
                    };
                    let t = payload["type"].as_str().unwrap_or_default().to_string();
                    emit(&tx, &app.names, &t, e.order_id, payload, &traceparent).await?;
                }
            }
            // Compensation: the stock ran out after the payment was taken, or the customer
            // cancelled the confirmed order.
            "StockShortage" | "OrderCancelled" => {
                let order_id = if d.event_type == "StockShortage" {
                    d.parse::<StockShortage>()?.order_id
                } else {
                    d.parse::<OrderCancelled>()?.order_id
                };
                let refunded = tx
                    .query_opt(
                        "UPDATE payments SET status = 'REFUNDED', updated_at = clock_timestamp()
                         WHERE order_id = $1 AND status = 'AUTHORIZED'
                         RETURNING amount_cents, currency",
                        &[&order_id],
                    )
                    .await?;
                if let Some(r) = refunded {
                    let payload = tagged(
                        "PaymentRefunded",
                        1,
                        &PaymentRefunded {
                            order_id,
                            amount_cents: r.get(0),
                            currency: r.get(1),
                        },
                    );
                    emit(
                        &tx,
                        &app.names,
                        "PaymentRefunded",
                        order_id,
                        payload,
                        &traceparent,
                    )
                    .await?;
                }
            }
            _ => {}
        }
    }
    tx.commit().await?;
    Ok(())
}

async fn audit(State(app): State<App>) -> Result<Json<serde_json::Value>, ApiError> {
    let c = app.pool.get().await?;
    let mut by_status = serde_json::Map::new();
    for r in c
        .query(
            "SELECT status, count(*), coalesce(sum(amount_cents), 0)::bigint FROM payments GROUP BY status",
            &[],
        )
        .await?
    {
        by_status.insert(
            r.get::<_, String>(0),
            json!({ "count": r.get::<_, i64>(1), "amountCents": r.get::<_, i64>(2) }),
        );
    }
    let (applied, redeliveries) = inbox::stats(&c).await?;
    Ok(Json(json!({
        "byStatus": by_status,
        "inbox": { "applied": applied, "redeliveries": redeliveries },
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(card: &str, amount_cents: i64) -> OrderPlaced {
        OrderPlaced {
            order_id: Uuid::nil(),
            customer: "c".into(),
            sku: "widget".into(),
            qty: 1,
            amount_cents,
            card: card.into(),
            currency: "EUR".into(),
        }
    }

    #[test]
    fn the_rule() {
        assert_eq!(decide(&order("4242424242424242", 50_000)), Ok(()));
        assert_eq!(
            decide(&order("4000000000000002", 100)),
            Err("card declined".into())
        );
        assert_eq!(
            decide(&order("4242424242424242", 50_001)),
            Err("amount over the 500 limit".into())
        );
    }
}

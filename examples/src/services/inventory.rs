//! `inventory`: reserves stock for each authorized payment, or reports a shortage (which
//! makes payments refund and orders cancel); releases the stock of an order the customer
//! cancelled. Its outbox rows go out through its relay to an
//! SNS topic, fanned out to one SQS queue per consumer: the other sink of the relay.

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
use crate::db::{Pool, INBOX_DDL, OUTBOX_DDL};
use crate::events::*;
use crate::inbox;

const DDL: &str = "
CREATE TABLE IF NOT EXISTS stock (
  sku       text PRIMARY KEY,
  initial   integer NOT NULL,
  available integer NOT NULL CHECK (available >= 0)
);
CREATE TABLE IF NOT EXISTS reservations (
  order_id   uuid PRIMARY KEY,
  sku        text NOT NULL,
  qty        integer NOT NULL,
  status     text NOT NULL,           -- RESERVED, SHORTAGE, or RELEASED (cancelled)
  created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);";

/// The catalogue: plenty of widgets and gadgets, a limited edition that runs out under a
/// burst, and one item that is never in stock.
pub const STOCK: [(&str, i32); 4] = [
    ("widget", 1_000_000),
    ("gadget", 1_000_000),
    ("limited", 20),
    ("unobtainium", 0),
];

pub async fn run(args: ServiceArgs) -> crate::Result<()> {
    let names = Names::new(&args.prefix)?;
    let pool = Pool::new(&args.database, 8);
    pool.wait_ready(Duration::from_secs(60)).await?;
    {
        let c = pool.get().await?;
        c.batch_execute(&format!("{DDL}{OUTBOX_DDL}{INBOX_DDL}"))
            .await?;
        for (sku, n) in STOCK {
            c.execute(
                "INSERT INTO stock VALUES ($1, $2, $2) ON CONFLICT (sku) DO NOTHING",
                &[&sku, &n],
            )
            .await?;
        }
    }
    let router = Router::new()
        .route("/audit", get(audit))
        .with_state(pool.clone());
    let p = pool.clone();
    let h = consume::handler(move |d| apply(p.clone(), d));
    super::run_all(vec![
        tokio::spawn(consume::kafka::run(
            "inventory".into(),
            args.kafka.clone(),
            names.consumer_group("inventory"),
            vec![names.payment_topic(), names.order_topic()],
            h,
        )),
        tokio::spawn(super::serve(args.listen, router)),
    ])
    .await
}

async fn apply(pool: Pool, d: Delivery) -> crate::Result<()> {
    let mut c = pool.get().await?;
    let tx = c.transaction().await?;
    if inbox::first_delivery(&tx, &d).await? {
        let traceparent = crate::trace::child_of(d.traceparent.as_deref());
        let answer = match d.event_type.as_str() {
            "PaymentAuthorized" => Some(reserve(&tx, d.parse()?).await?),
            "OrderCancelled" => release(&tx, d.parse()?).await?,
            // OrderPlaced, PaymentRejected, PaymentRefunded: nothing to do here.
            _ => None,
        };
        if let Some((order_id, event_type, payload)) = answer {
            tx.execute(
                "INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload, tracingspancontext, schema_version)
                 VALUES ($1, 'Stock', $2, $3, $4, $5, 1)",
                &[
                    &Uuid::new_v4(),
                    &order_id.to_string(),
                    &event_type,
                    &payload,
                    &traceparent,
                ],
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// An event inventory writes: order id, type, payload.
type Answer = (Uuid, &'static str, serde_json::Value);

/// Reserves the stock the payment event names (event-carried state: no call to orders).
async fn reserve(tx: &Transaction<'_>, e: PaymentAuthorized) -> crate::Result<Answer> {
    let reserved = tx
        .query_opt(
            "UPDATE stock SET available = available - $2 WHERE sku = $1 AND available >= $2
             RETURNING available",
            &[&e.sku, &e.qty],
        )
        .await?;
    let (event_type, status, payload) = match reserved {
        Some(_) => (
            "StockReserved",
            "RESERVED",
            tagged(
                "StockReserved",
                1,
                &StockReserved {
                    order_id: e.order_id,
                    sku: e.sku.clone(),
                    qty: e.qty,
                },
            ),
        ),
        None => {
            let available: i32 = tx
                .query_opt("SELECT available FROM stock WHERE sku = $1", &[&e.sku])
                .await?
                .map(|r| r.get(0))
                .unwrap_or(0);
            (
                "StockShortage",
                "SHORTAGE",
                tagged(
                    "StockShortage",
                    1,
                    &StockShortage {
                        order_id: e.order_id,
                        sku: e.sku.clone(),
                        qty: e.qty,
                        available,
                        amount_cents: e.amount_cents,
                    },
                ),
            )
        }
    };
    tx.execute(
        "INSERT INTO reservations (order_id, sku, qty, status) VALUES ($1, $2, $3, $4)",
        &[&e.order_id, &e.sku, &e.qty, &status],
    )
    .await?;
    Ok((e.order_id, event_type, payload))
}

/// Compensation for a cancelled order: puts its reserved stock back.
async fn release(tx: &Transaction<'_>, e: OrderCancelled) -> crate::Result<Option<Answer>> {
    let released = tx
        .query_opt(
            "UPDATE reservations SET status = 'RELEASED'
             WHERE order_id = $1 AND status = 'RESERVED' RETURNING sku, qty",
            &[&e.order_id],
        )
        .await?;
    let Some(r) = released else {
        return Ok(None);
    };
    let (sku, qty): (String, i32) = (r.get(0), r.get(1));
    tx.execute(
        "UPDATE stock SET available = available + $2 WHERE sku = $1",
        &[&sku, &qty],
    )
    .await?;
    let payload = tagged(
        "StockReleased",
        1,
        &StockReleased {
            order_id: e.order_id,
            sku,
            qty,
        },
    );
    Ok(Some((e.order_id, "StockReleased", payload)))
}

async fn audit(State(pool): State<Pool>) -> Result<Json<serde_json::Value>, ApiError> {
    let c = pool.get().await?;
    let mut stock = serde_json::Map::new();
    for r in c
        .query(
            "SELECT s.sku, s.initial, s.available,
                    coalesce((SELECT sum(qty) FROM reservations r
                              WHERE r.sku = s.sku AND r.status = 'RESERVED'), 0)::bigint
             FROM stock s ORDER BY s.sku",
            &[],
        )
        .await?
    {
        stock.insert(
            r.get::<_, String>(0),
            json!({
                "initial": r.get::<_, i32>(1),
                "available": r.get::<_, i32>(2),
                "reserved": r.get::<_, i64>(3),
            }),
        );
    }
    let count = |status: &'static str| {
        let c = &c;
        async move {
            c.query_one(
                "SELECT count(*) FROM reservations WHERE status = $1",
                &[&status],
            )
            .await
            .map(|r| r.get::<_, i64>(0))
        }
    };
    let shortages = count("SHORTAGE").await?;
    let released = count("RELEASED").await?;
    let (applied, redeliveries) = inbox::stats(&c).await?;
    Ok(Json(json!({
        "stock": stock,
        "shortages": shortages,
        "released": released,
        "inbox": { "applied": applied, "redeliveries": redeliveries },
    })))
}

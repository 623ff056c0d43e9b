//! `inventory`: reserves stock for each authorized payment, or reports a shortage (which
//! makes payments refund and orders cancel). Its outbox rows go out through its relay to an
//! SNS topic, fanned out to one SQS queue per consumer: the other sink of the relay.

use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
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
  status     text NOT NULL,           -- RESERVED or SHORTAGE
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
            vec![names.payment_topic()],
            h,
        )),
        tokio::spawn(super::serve(args.listen, router)),
    ])
    .await
}

async fn apply(pool: Pool, d: Delivery) -> crate::Result<()> {
    let mut c = pool.get().await?;
    let tx = c.transaction().await?;
    if inbox::first_delivery(&tx, &d).await? && d.event_type == "PaymentAuthorized" {
        // Event-carried state: the payment event says what to reserve.
        let e: PaymentAuthorized = d.parse()?;
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
        let traceparent = crate::trace::child_of(d.traceparent.as_deref());
        tx.execute(
            "INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload, tracingspancontext, schema_version)
             VALUES ($1, 'Stock', $2, $3, $4, $5, 1)",
            &[
                &Uuid::new_v4(),
                &e.order_id.to_string(),
                &event_type,
                &payload,
                &traceparent,
            ],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
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
    let shortages: i64 = c
        .query_one(
            "SELECT count(*) FROM reservations WHERE status = 'SHORTAGE'",
            &[],
        )
        .await?
        .get(0);
    let (applied, redeliveries) = inbox::stats(&c).await?;
    Ok(Json(json!({
        "stock": stock,
        "shortages": shortages,
        "inbox": { "applied": applied, "redeliveries": redeliveries },
    })))
}

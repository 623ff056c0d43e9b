//! `orders`: the HTTP API that places and shows orders. Placing an order writes the order
//! row and its `OrderPlaced` outbox row in one transaction (no broker call); the orders
//! relay publishes it to Kafka. The service then follows the saga by consuming payment
//! events (Kafka) and stock events (SQS, fed by the inventory relay's SNS topic).
//!
//! The `traceparent` of the placing HTTP request becomes the parent of the outbox row's
//! trace context, so one trace spans the whole saga.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::ApiError;
use crate::config::{Names, ServiceArgs};
use crate::consume;
use crate::db::{Pool, INBOX_DDL, OUTBOX_DDL};
use crate::events::*;
use crate::inbox;

const DDL: &str = "
CREATE TABLE IF NOT EXISTS orders (
  id             uuid PRIMARY KEY,
  customer       text NOT NULL,
  sku            text NOT NULL,
  qty            integer NOT NULL,
  amount_cents   bigint NOT NULL,
  card           text NOT NULL,
  currency       text NOT NULL,
  status         text NOT NULL,       -- PLACED, PAID, then CONFIRMED, REJECTED or CANCELLED
  reason         text,
  refunded       boolean NOT NULL DEFAULT false,
  placed_version integer NOT NULL,
  traceparent    text NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
  updated_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS orders_updated ON orders (updated_at);
CREATE TABLE IF NOT EXISTS settings (key text PRIMARY KEY, value text NOT NULL);";

/// The final states of an order.
pub const FINAL: [&str; 3] = ["CONFIRMED", "REJECTED", "CANCELLED"];

#[derive(Clone)]
struct App {
    pool: Pool,
    /// The `OrderPlaced` version written now (switchable at run time: the demo's schema
    /// evolution). Persisted in `settings`.
    version: Arc<AtomicI32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlaceOrder {
    pub customer: String,
    pub sku: String,
    pub qty: i32,
    pub amount_cents: i64,
    pub card: String,
    #[serde(default)]
    pub currency: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub id: Uuid,
    pub customer: String,
    pub sku: String,
    pub qty: i32,
    pub amount_cents: i64,
    pub card: String,
    pub currency: String,
    pub status: String,
    pub reason: Option<String>,
    pub refunded: bool,
    pub placed_version: i32,
    pub traceparent: String,
    pub updated_ms: i64,
}

const ORDER_COLUMNS: &str =
    "id, customer, sku, qty, amount_cents, card, currency, status, reason, refunded,
    placed_version, traceparent, (extract(epoch FROM updated_at) * 1000)::bigint";

fn order(r: &tokio_postgres::Row) -> Order {
    Order {
        id: r.get(0),
        customer: r.get(1),
        sku: r.get(2),
        qty: r.get(3),
        amount_cents: r.get(4),
        card: r.get(5),
        currency: r.get(6),
        status: r.get(7),
        reason: r.get(8),
        refunded: r.get(9),
        placed_version: r.get(10),
        traceparent: r.get(11),
        updated_ms: r.get(12),
    }
}

pub async fn run(args: ServiceArgs) -> crate::Result<()> {
    let names = Names::new(&args.prefix)?;
    let pool = Pool::new(&args.database, 16);
    pool.wait_ready(Duration::from_secs(60)).await?;
    let version = {
        let c = pool.get().await?;
        c.batch_execute(&format!("{DDL}{OUTBOX_DDL}{INBOX_DDL}"))
            .await?;
        c.query_opt(
            "SELECT value FROM settings WHERE key = 'order_placed_version'",
            &[],
        )
        .await?
        .and_then(|r| r.get::<_, String>(0).parse().ok())
        .unwrap_or(ORDER_PLACED_LATEST)
    };
    let app = App {
        pool: pool.clone(),
        version: Arc::new(AtomicI32::new(version)),
    };
    let router = Router::new()
        .route("/orders", post(place).get(list))
        .route("/orders/{id}", get(one))
        .route("/orders/{id}/cancel", post(cancel))
        .route("/audit", get(audit))
        .route("/admin/order-placed-version", post(set_version))
        .with_state(app);

    let p = pool.clone();
    let h = consume::handler(move |d| apply(p.clone(), d));
    let sdk = crate::aws::sdk(&args.aws_endpoint).await;
    run_tasks(args, names, router, h, sdk).await
}

async fn run_tasks(
    args: ServiceArgs,
    names: Names,
    router: Router,
    h: consume::Handler,
    sdk: aws_config::SdkConfig,
) -> crate::Result<()> {
    super::run_all(vec![
        tokio::spawn(consume::kafka::run(
            "orders".into(),
            args.kafka.clone(),
            names.consumer_group("orders"),
            vec![names.payment_topic()],
            h.clone(),
        )),
        tokio::spawn(consume::sqs::run(
            "orders".into(),
            sdk,
            names.inventory_queue("orders"),
            h,
        )),
        tokio::spawn(super::serve(args.listen, router)),
    ])
    .await
}

async fn place(
    State(app): State<App>,
    headers: HeaderMap,
    Json(req): Json<PlaceOrder>,
) -> Result<(StatusCode, Json<Order>), ApiError> {
    if req.qty <= 0 || req.amount_cents <= 0 || req.sku.is_empty() {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "qty and amountCents must be positive and sku not empty".into(),
        ));
    }
    let parent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let traceparent = crate::trace::child_of(parent.as_deref());
    let version = app.version.load(Ordering::Relaxed);
    let placed = OrderPlaced {
        order_id: Uuid::new_v4(),
        customer: req.customer,
        sku: req.sku,
        qty: req.qty,
        amount_cents: req.amount_cents,
        card: req.card,
        currency: req.currency.unwrap_or_else(|| "EUR".into()),
    };
    let mut c = app.pool.get().await?;
    let tx = c.transaction().await?;
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO orders (id, customer, sku, qty, amount_cents, card, currency, status,
                   placed_version, traceparent)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'PLACED', $8, $9) RETURNING {ORDER_COLUMNS}"
            ),
            &[
                &placed.order_id,
                &placed.customer,
                &placed.sku,
                &placed.qty,
                &placed.amount_cents,
                &placed.card,
                &placed.currency,
                &version,
                &traceparent,
            ],
        )
        .await?;
    tx.execute(
        "INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload, tracingspancontext, schema_version)
         VALUES ($1, 'Order', $2, 'OrderPlaced', $3, $4, $5)",
        &[
            &Uuid::new_v4(),
            &placed.order_id.to_string(),
            &placed.payload(version),
            &traceparent,
            &version,
        ],
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(order(&row))))
}

/// The customer cancels a confirmed order: the order and an `OrderCancelled` outbox row in
/// one transaction; payments refunds and inventory releases the stock when they read it.
/// An order still in the saga (or already final otherwise) cannot be cancelled.
async fn cancel(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
) -> Result<Json<Order>, ApiError> {
    let parent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut c = app.pool.get().await?;
    let tx = c.transaction().await?;
    let row = tx
        .query_opt(
            &format!(
                "UPDATE orders SET status = 'CANCELLED', reason = 'cancelled by the customer',
                   updated_at = clock_timestamp()
                 WHERE id = $1 AND status = 'CONFIRMED' RETURNING {ORDER_COLUMNS}"
            ),
            &[&id],
        )
        .await?
        .ok_or_else(|| {
            ApiError(
                StatusCode::CONFLICT,
                format!("order {id} is not CONFIRMED (only confirmed orders can be cancelled)"),
            )
        })?;
    let o = order(&row);
    let traceparent = crate::trace::child_of(parent.as_deref().or(Some(&o.traceparent)));
    let payload = tagged(
        "OrderCancelled",
        1,
        &OrderCancelled {
            order_id: o.id,
            sku: o.sku.clone(),
            qty: o.qty,
            amount_cents: o.amount_cents,
        },
    );
    tx.execute(
        "INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload, tracingspancontext, schema_version)
         VALUES ($1, 'Order', $2, 'OrderCancelled', $3, $4, 1)",
        &[&Uuid::new_v4(), &o.id.to_string(), &payload, &traceparent],
    )
    .await?;
    tx.commit().await?;
    Ok(Json(o))
}

#[derive(Deserialize)]
struct Since {
    /// Orders changed at or after this time (ms since the epoch); all orders without it.
    since_ms: Option<i64>,
}

async fn list(
    State(app): State<App>,
    Query(q): Query<Since>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let c = app.pool.get().await?;
    let now: i64 = c
        .query_one(
            "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint",
            &[],
        )
        .await?
        .get(0);
    let rows = c
        .query(
            &format!(
                "SELECT {ORDER_COLUMNS} FROM orders
                 WHERE updated_at >= to_timestamp($1::bigint / 1000.0) ORDER BY created_at"
            ),
            &[&q.since_ms.unwrap_or(0)],
        )
        .await?;
    let orders: Vec<Order> = rows.iter().map(order).collect();
    Ok(Json(json!({ "nowMs": now, "orders": orders })))
}

async fn one(State(app): State<App>, Path(id): Path<Uuid>) -> Result<Json<Order>, ApiError> {
    let c = app.pool.get().await?;
    let row = c
        .query_opt(
            &format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1"),
            &[&id],
        )
        .await?
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no order {id}")))?;
    Ok(Json(order(&row)))
}

#[derive(Deserialize)]
struct Version {
    version: i32,
}

async fn set_version(
    State(app): State<App>,
    Json(v): Json<Version>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !(1..=ORDER_PLACED_LATEST).contains(&v.version) {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("OrderPlaced versions are 1..={ORDER_PLACED_LATEST}"),
        ));
    }
    let c = app.pool.get().await?;
    c.execute(
        "INSERT INTO settings VALUES ('order_placed_version', $1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&v.version.to_string()],
    )
    .await?;
    app.version.store(v.version, Ordering::Relaxed);
    Ok(Json(json!({ "orderPlacedVersion": v.version })))
}

/// Totals for the console's conservation checks.
async fn audit(State(app): State<App>) -> Result<Json<serde_json::Value>, ApiError> {
    let c = app.pool.get().await?;
    let mut by_status = serde_json::Map::new();
    for r in c
        .query(
            "SELECT status, count(*), coalesce(sum(amount_cents), 0)::bigint FROM orders GROUP BY status",
            &[],
        )
        .await?
    {
        by_status.insert(
            r.get::<_, String>(0),
            json!({ "count": r.get::<_, i64>(1), "amountCents": r.get::<_, i64>(2) }),
        );
    }
    let mut confirmed_qty = serde_json::Map::new();
    for r in c
        .query(
            "SELECT sku, sum(qty)::bigint FROM orders WHERE status = 'CONFIRMED' GROUP BY sku",
            &[],
        )
        .await?
    {
        confirmed_qty.insert(r.get::<_, String>(0), r.get::<_, i64>(1).into());
    }
    let refunded: i64 = c
        .query_one("SELECT count(*) FROM orders WHERE refunded", &[])
        .await?
        .get(0);
    let customer_cancelled: i64 = c
        .query_one(
            "SELECT count(*) FROM outbox WHERE type = 'OrderCancelled'",
            &[],
        )
        .await?
        .get(0);
    let (applied, redeliveries) = inbox::stats(&c).await?;
    Ok(Json(json!({
        "byStatus": by_status,
        "confirmedQtyBySku": confirmed_qty,
        "refundedOrders": refunded,
        "customerCancelled": customer_cancelled,
        "orderPlacedVersion": app.version.load(Ordering::Relaxed),
        "inbox": { "applied": applied, "redeliveries": redeliveries },
    })))
}

/// Follows the saga: payment events from Kafka, stock events from SQS (`StockReleased`, the
/// answer to a customer's cancellation, changes nothing here). Events of one order
/// arrive over two transports, so their order is not guaranteed: a final state is never
/// left, and `PAID` only follows `PLACED`.
async fn apply(pool: Pool, d: Delivery) -> crate::Result<()> {
    let mut c = pool.get().await?;
    let tx = c.transaction().await?;
    if inbox::first_delivery(&tx, &d).await? {
        match d.event_type.as_str() {
            "PaymentAuthorized" => {
                let e: PaymentAuthorized = d.parse()?;
                tx.execute(
                    "UPDATE orders SET status = 'PAID', updated_at = clock_timestamp()
                     WHERE id = $1 AND status = 'PLACED'",
                    &[&e.order_id],
                )
                .await?;
            }
            "PaymentRejected" => {
                let e: PaymentRejected = d.parse()?;
                tx.execute(
                    "UPDATE orders SET status = 'REJECTED', reason = $2, updated_at = clock_timestamp()
                     WHERE id = $1 AND status IN ('PLACED', 'PAID')",
                    &[&e.order_id, &e.reason],
                )
                .await?;
            }
            "PaymentRefunded" => {
                let e: PaymentRefunded = d.parse()?;
                tx.execute(
                    "UPDATE orders SET refunded = true, updated_at = clock_timestamp() WHERE id = $1",
                    &[&e.order_id],
                )
                .await?;
            }
            "StockReserved" => {
                let e: StockReserved = d.parse()?;
                tx.execute(
                    "UPDATE orders SET status = 'CONFIRMED', updated_at = clock_timestamp()
                     WHERE id = $1 AND status IN ('PLACED', 'PAID')",
                    &[&e.order_id],
                )
                .await?;
            }
            "StockShortage" => {
                let e: StockShortage = d.parse()?;
                let reason = format!("out of stock: {} x{} ({} left)", e.sku, e.qty, e.available);
                tx.execute(
                    "UPDATE orders SET status = 'CANCELLED', reason = $2, updated_at = clock_timestamp()
                     WHERE id = $1 AND status IN ('PLACED', 'PAID')",
                    &[&e.order_id, &reason],
                )
                .await?;
            }
            // Other events on these channels are not for orders (recorded in the inbox).
            _ => {}
        }
    }
    tx.commit().await?;
    Ok(())
}

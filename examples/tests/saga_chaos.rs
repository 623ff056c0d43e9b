//! 1,000 orders from concurrent clients while the orders relay is SIGKILLed twice and the
//! Kafka broker is stopped and started once; then customers cancel 25 confirmed orders
//! (stock released, payments refunded). Every order must reach exactly the final state its
//! inputs call for, every consumer must have applied every event exactly once (inbox), and
//! money and stock must balance.
//!
//! NOTE: this test stops and restarts the local Kafka broker (deploy/local/kafka.sh), which
//! other tests running at the same time would notice.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use outbox_saga_example::services::orders::PlaceOrder;
use outbox_saga_example::workload::{burst_order, expected_status, GOOD_CARD};
use serde_json::{json, Value};
use uuid::Uuid;

const ORDERS: usize = 1000;
const CLIENTS: usize = 16;
/// Stock of the `limited` SKU (see services::inventory::STOCK).
const LIMITED_STOCK: i64 = 20;
/// Confirmed orders the customers cancel after the saga settled.
const CUSTOMER_CANCELS: usize = 25;

/// Order `i`: the burst mix, and every 25th one a `limited` item (40 orders for 20 units:
/// which ones win depends on timing, how many does not).
fn order(i: usize) -> PlaceOrder {
    if i % 25 == 12 {
        PlaceOrder {
            customer: format!("limited-{i}"),
            sku: "limited".into(),
            qty: 1,
            amount_cents: 1_000,
            card: GOOD_CARD.into(),
            currency: None,
        }
    } else {
        burst_order(i)
    }
}

async fn wait_chaos_log(stack: &common::Stack, needle: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let s = stack.get("/api/snapshot").await;
        if s["chaos"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["text"].as_str().unwrap_or("").contains(needle))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("no chaos log line {needle:?} within {timeout:?}");
}

async fn wait_relay_restarted(stack: &common::Stack, relay: &str, restarts: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let r = &stack.get("/api/snapshot").await["relays"][relay];
        if r["restarts"] == restarts && r["replicating"] == true {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("relay {relay} did not come back (restart {restarts})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousand_orders_survive_relay_kills_and_a_kafka_restart() {
    let started = Instant::now();
    let kafka_sh = common::repo_root().join("deploy/local/kafka.sh");
    let mut stack = common::Stack::start("chaos", &["--kafka-script", kafka_sh.to_str().unwrap()]);
    stack.wait_ready().await;
    let stack = Arc::new(stack);

    // Concurrent clients place the orders straight on the orders API.
    let placed = Arc::new(AtomicUsize::new(0));
    let clients = {
        let stack = stack.clone();
        let placed = placed.clone();
        tokio::spawn(async move {
            futures::stream::iter(0..ORDERS)
                .map(|i| {
                    let stack = stack.clone();
                    let placed = placed.clone();
                    async move {
                        let o = order(i);
                        // A refused request (never expected) fails the test below.
                        let r = stack
                            .http
                            .post(format!("{}/orders", stack.orders))
                            .json(&o)
                            .send()
                            .await
                            .and_then(|r| r.error_for_status());
                        placed.fetch_add(1, Ordering::SeqCst);
                        let v: Value = r.expect("place order").json().await.unwrap();
                        (Uuid::parse_str(v["id"].as_str().unwrap()).unwrap(), i)
                    }
                })
                .buffer_unordered(CLIENTS)
                .collect::<Vec<_>>()
                .await
        })
    };

    let at = |n: usize| {
        let placed = placed.clone();
        async move {
            while placed.load(Ordering::SeqCst) < n {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    at(200).await;
    stack
        .post(
            "/api/chaos",
            &json!({"action": "kill-relay", "target": "orders"}),
        )
        .await;
    wait_relay_restarted(&stack, "orders", 1).await;
    at(450).await;
    stack
        .post(
            "/api/chaos",
            &json!({"action": "kafka-outage", "seconds": 5}),
        )
        .await;
    let outage = Instant::now();
    at(700).await;
    stack
        .post(
            "/api/chaos",
            &json!({"action": "kill-relay", "target": "orders"}),
        )
        .await;
    let ids: HashMap<Uuid, usize> = clients.await.unwrap().into_iter().collect();
    assert_eq!(ids.len(), ORDERS);
    wait_chaos_log(&stack, "Kafka is back", Duration::from_secs(120)).await;
    eprintln!(
        "placed {ORDERS} orders in {:?}; Kafka back after {:?}",
        started.elapsed(),
        outage.elapsed()
    );

    let verdict = stack
        .wait_settled(ORDERS as i64, Duration::from_secs(300))
        .await;
    eprintln!("settled after {:?}: {verdict}", started.elapsed());

    // Customers cancel confirmed orders (not `limited` ones, whose winners vary).
    let mut by_index: Vec<(usize, Uuid)> = ids.iter().map(|(id, i)| (*i, *id)).collect();
    by_index.sort();
    let cancelled_by_customer: Vec<Uuid> = by_index
        .iter()
        .filter(|(i, _)| {
            let o = order(*i);
            o.sku != "limited" && expected_status(&o.sku, o.amount_cents, &o.card) == "CONFIRMED"
        })
        .take(CUSTOMER_CANCELS)
        .map(|(_, id)| *id)
        .collect();
    for id in &cancelled_by_customer {
        let r = stack
            .http
            .post(format!("{}/orders/{id}/cancel", stack.orders))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    // Only a confirmed order can be cancelled.
    let again = stack
        .http
        .post(format!(
            "{}/orders/{}/cancel",
            stack.orders, cancelled_by_customer[0]
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
    let verdict = stack
        .wait_settled(ORDERS as i64, Duration::from_secs(120))
        .await;
    eprintln!(
        "settled after the cancellations, {:?}: {verdict}",
        started.elapsed()
    );

    // Every order in exactly its expected state.
    let list = stack
        .http
        .get(format!("{}/orders", stack.orders))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let orders = list["orders"].as_array().unwrap();
    assert_eq!(orders.len(), ORDERS);
    let mut limited: HashMap<String, i64> = HashMap::new();
    let mut want_counts: HashMap<&str, i64> = HashMap::new();
    let mut status_of: HashMap<Uuid, String> = HashMap::new();
    for o in orders {
        let id = Uuid::parse_str(o["id"].as_str().unwrap()).unwrap();
        let i = ids[&id];
        let req = order(i);
        let status = o["status"].as_str().unwrap().to_string();
        if req.sku == "limited" {
            *limited.entry(status.clone()).or_default() += 1;
        } else {
            let want = if cancelled_by_customer.contains(&id) {
                "CANCELLED"
            } else {
                expected_status(&req.sku, req.amount_cents, &req.card)
            };
            assert_eq!(status, want, "order {i} ({req:?}): {o}");
            *want_counts.entry(want).or_default() += 1;
        }
        // A cancelled order was refunded.
        assert_eq!(o["refunded"] == true, status == "CANCELLED", "{o}");
        status_of.insert(id, status);
    }
    assert_eq!(
        limited,
        HashMap::from([
            ("CONFIRMED".to_string(), LIMITED_STOCK),
            ("CANCELLED".to_string(), 40 - LIMITED_STOCK)
        ])
    );

    // Each service's own state agrees, order by order.
    let payments = stack.db("payments").await;
    let mut n = 0;
    for r in payments
        .query("SELECT order_id, status FROM payments", &[])
        .await
        .unwrap()
    {
        let id: Uuid = r.get(0);
        let want = match status_of[&id].as_str() {
            "CONFIRMED" => "AUTHORIZED",
            "REJECTED" => "REJECTED",
            _ => "REFUNDED",
        };
        assert_eq!(r.get::<_, String>(1), want, "payment of {id}");
        n += 1;
    }
    assert_eq!(n, ORDERS);
    let inventory = stack.db("inventory").await;
    let mut reservations = 0;
    for r in inventory
        .query("SELECT order_id, status FROM reservations", &[])
        .await
        .unwrap()
    {
        let id: Uuid = r.get(0);
        let want = match status_of[&id].as_str() {
            "CONFIRMED" => "RESERVED",
            "CANCELLED" if cancelled_by_customer.contains(&id) => "RELEASED",
            "CANCELLED" => "SHORTAGE",
            s => panic!("a {s} order has a reservation"),
        };
        assert_eq!(r.get::<_, String>(1), want, "reservation of {id}");
        reservations += 1;
    }
    let rejected = want_counts["REJECTED"];
    assert_eq!(reservations, ORDERS as i64 - rejected);

    // The books: exactly-once application, money and stock conserved.
    let confirmed = want_counts["CONFIRMED"] + LIMITED_STOCK;
    let cancelled = want_counts["CANCELLED"] + 40 - LIMITED_STOCK;
    assert!(want_counts["CANCELLED"] > CUSTOMER_CANCELS as i64);
    assert_eq!(verdict["exactlyOnce"], true, "{verdict}");
    assert_eq!(verdict["moneyConserved"], true, "{verdict}");
    assert_eq!(verdict["stockConserved"], true, "{verdict}");
    assert_eq!(
        (
            &verdict["confirmed"],
            &verdict["rejected"],
            &verdict["cancelled"]
        ),
        (&json!(confirmed), &json!(rejected), &json!(cancelled))
    );
    // Every inbox row is one applied event; redeliveries were counted, not applied.
    for s in ["orders", "payments", "inventory"] {
        let db = stack.db(s).await;
        let dup: i64 = db
            .query_one(
                "SELECT count(*) FROM (SELECT event_id FROM inbox GROUP BY event_id HAVING count(*) > 1) d",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(dup, 0);
    }
    let snapshot = stack.get("/api/snapshot").await;
    assert_eq!(snapshot["relays"]["orders"]["restarts"], 2);
    eprintln!(
        "redeliveries absorbed (orders, payments, inventory): {}; total {:?}",
        verdict["redeliveries"],
        started.elapsed()
    );
}

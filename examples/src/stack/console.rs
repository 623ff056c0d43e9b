//! The live page's server: places orders (through the orders service's API), follows the
//! saga (orders' API, the Kafka topics, the inventory SQS queue), reads the relays'
//! `/metrics` and the services' books, pushes all of it to the page as server-sent events,
//! and runs the chaos actions.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::Html;
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::stream::{self, Stream};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::broadcast;

use super::audit::{verdict, Verdict};
use super::chaos::{self, Action, Scripts};
use super::children::Supervised;
use super::metrics::{self, Window};
use crate::config::{Names, Service};
use crate::events::{Delivery, Origin};
use crate::services::orders::PlaceOrder;
use crate::workload::burst_order;

const PAGE: &str = include_str!("../../page/index.html");
const KEPT_EVENTS: usize = 3000;

pub struct Console {
    pub names: Names,
    pub service_urls: Vec<(Service, String)>,
    pub relay_ports: Vec<(Service, u16)>,
    pub children: Vec<Arc<Supervised>>,
    pub scripts: Scripts,
    http: reqwest::Client,
    tx: broadcast::Sender<String>,
    events: Mutex<VecDeque<Value>>,
    orders: Mutex<HashMap<String, Value>>,
    relays: Mutex<Value>,
    audit: Mutex<Option<Verdict>>,
    chaos: Mutex<Vec<Value>>,
    burst_next: AtomicUsize,
}

impl Console {
    pub fn new(
        names: Names,
        service_urls: Vec<(Service, String)>,
        relay_ports: Vec<(Service, u16)>,
        children: Vec<Arc<Supervised>>,
        scripts: Scripts,
    ) -> Arc<Console> {
        Arc::new(Console {
            names,
            service_urls,
            relay_ports,
            children,
            scripts,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("http client"),
            tx: broadcast::channel(20_000).0,
            events: Mutex::new(VecDeque::new()),
            orders: Mutex::new(HashMap::new()),
            relays: Mutex::new(json!({})),
            audit: Mutex::new(None),
            chaos: Mutex::new(Vec::new()),
            burst_next: AtomicUsize::new(0),
        })
    }

    fn url(&self, s: Service) -> &str {
        &self
            .service_urls
            .iter()
            .find(|(x, _)| *x == s)
            .expect("every service has a URL")
            .1
    }

    fn push(&self, kind: &str, data: &Value) {
        let _ = self
            .tx
            .send(json!({ "kind": kind, "data": data }).to_string());
    }

    fn observed(&self, d: Delivery) {
        let (sink, place) = match &d.origin {
            Origin::Kafka {
                topic,
                partition,
                offset,
            } => (
                "kafka",
                json!({"topic": topic, "partition": partition, "offset": offset}),
            ),
            Origin::Sqs { queue, message_id } => (
                "sns→sqs",
                json!({"topic": self.names.inventory_sns_topic(), "queue": queue, "messageId": message_id}),
            ),
        };
        let e = json!({
            "id": d.id, "type": d.event_type, "version": d.schema_version,
            "aggregate": d.aggregate_id, "traceparent": d.traceparent,
            "sink": sink, "place": place, "payload": d.payload,
            "seenMs": now_ms(),
        });
        {
            let mut events = self.events.lock().expect("lock");
            events.push_back(e.clone());
            while events.len() > KEPT_EVENTS {
                events.pop_front();
            }
        }
        self.push("event", &e);
    }

    fn chaos_log(&self, line: String) {
        let entry = json!({ "atMs": now_ms(), "text": line });
        self.chaos.lock().expect("lock").push(entry.clone());
        self.push("chaos", &entry);
    }

    /// Places one order through the orders API, as a new trace.
    pub async fn place(&self, o: &PlaceOrder) -> crate::Result<Value> {
        let traceparent = crate::trace::child_of(None);
        let order: Value = self
            .http
            .post(format!("{}/orders", self.url(Service::Orders)))
            .header("traceparent", traceparent)
            .json(o)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        self.seen_order(order.clone());
        Ok(order)
    }

    fn seen_order(&self, o: Value) {
        let id = o["id"].as_str().unwrap_or_default().to_string();
        let changed = {
            let mut orders = self.orders.lock().expect("lock");
            let prev = orders.get(&id);
            let newer = prev.is_none_or(|p| {
                p["status"] != o["status"]
                    || p["refunded"] != o["refunded"]
                    || p["updatedMs"].as_i64() < o["updatedMs"].as_i64()
            });
            if newer {
                orders.insert(id, o.clone());
            }
            newer
        };
        if changed {
            self.push("order", &o);
        }
    }

    /// Follows the orders' states through the orders API. Rows changed in the last 5 s are
    /// fetched again each time (a transaction that commits late is not missed), and all
    /// rows every 10 s.
    async fn poll_orders(self: Arc<Self>) {
        let mut since: i64 = 0;
        let mut until_full: u32 = 0;
        loop {
            let from = if until_full == 0 {
                until_full = 33;
                0
            } else {
                until_full -= 1;
                since
            };
            let url = format!("{}/orders?since_ms={from}", self.url(Service::Orders));
            if let Ok(r) = self.http.get(url).send().await {
                if let Ok(v) = r.json::<Value>().await {
                    for o in v["orders"].as_array().into_iter().flatten() {
                        self.seen_order(o.clone());
                    }
                    if let Some(now) = v["nowMs"].as_i64() {
                        since = now - 5_000;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    async fn poll_relays(self: Arc<Self>) {
        let mut windows: HashMap<Service, Window> = HashMap::new();
        loop {
            let mut all = serde_json::Map::new();
            for (s, port) in &self.relay_ports {
                let sample = match self
                    .http
                    .get(format!("http://127.0.0.1:{port}/metrics"))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                {
                    Ok(r) => r.text().await.ok().map(|t| metrics::parse(&t)),
                    Err(_) => None,
                };
                let mut f = windows.entry(*s).or_default().add(Instant::now(), sample);
                if let Some(c) = self
                    .children
                    .iter()
                    .find(|c| c.name == format!("relay-{}", s.name()))
                {
                    f.restarts = c.restarts.load(Ordering::SeqCst);
                    f.pid = c.pid();
                }
                let sink = if *s == Service::Inventory {
                    "sns"
                } else {
                    "kafka"
                };
                let mut v = serde_json::to_value(f).expect("serializable");
                v["sink"] = sink.into();
                all.insert(s.name().into(), v);
            }
            let all = Value::Object(all);
            *self.relays.lock().expect("lock") = all.clone();
            self.push("relays", &all);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// The three services' books combined.
    pub async fn audit(&self) -> crate::Result<Verdict> {
        let mut books = Vec::new();
        for s in Service::ALL {
            books.push(
                self.http
                    .get(format!("{}/audit", self.url(s)))
                    .send()
                    .await?
                    .error_for_status()?
                    .json::<Value>()
                    .await?,
            );
        }
        Ok(verdict(&books[0], &books[1], &books[2]))
    }

    async fn poll_audit(self: Arc<Self>) {
        loop {
            if let Ok(v) = self.audit().await {
                let changed = self.audit.lock().expect("lock").as_ref() != Some(&v);
                if changed {
                    *self.audit.lock().expect("lock") = Some(v.clone());
                    self.push("audit", &serde_json::to_value(&v).expect("serializable"));
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Starts the console's background tasks.
    pub fn spawn_tasks(self: &Arc<Self>, kafka: String, sdk: aws_config::SdkConfig) {
        tokio::spawn(self.clone().poll_orders());
        tokio::spawn(self.clone().poll_relays());
        tokio::spawn(self.clone().poll_audit());
        let me = self.clone();
        let h = crate::consume::handler(move |d| {
            me.observed(d);
            async { Ok(()) }
        });
        tokio::spawn(crate::consume::kafka::run(
            "console".into(),
            kafka,
            self.names.consumer_group("console"),
            vec![self.names.order_topic(), self.names.payment_topic()],
            h.clone(),
        ));
        tokio::spawn(crate::consume::sqs::run(
            "console".into(),
            sdk,
            self.names.inventory_queue("console"),
            h,
        ));
    }

    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/", get(|| async { Html(PAGE) }))
            .route("/api/snapshot", get(snapshot))
            .route("/api/stream", get(stream_events))
            .route("/api/orders", post(place))
            .route("/api/burst", post(burst))
            .route("/api/orders/{id}/cancel", post(cancel))
            .route("/api/chaos", post(run_chaos))
            .route("/api/audit", get(audit))
            .route("/api/order-placed-version", post(set_version))
            .with_state(self.clone())
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

type Shared = State<Arc<Console>>;
type ApiResult = Result<Json<Value>, (StatusCode, String)>;

fn unavailable(e: impl std::fmt::Display) -> (StatusCode, String) {
    (StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

async fn snapshot(State(c): Shared) -> Json<Value> {
    let mut orders: Vec<Value> = c.orders.lock().expect("lock").values().cloned().collect();
    orders.sort_by_key(|o| o["updatedMs"].as_i64());
    let events: Vec<Value> = c
        .events
        .lock()
        .expect("lock")
        .iter()
        .rev()
        .take(1000)
        .cloned()
        .collect();
    Json(json!({
        "orders": orders,
        "events": events,
        "relays": *c.relays.lock().expect("lock"),
        "audit": *c.audit.lock().expect("lock"),
        "chaos": *c.chaos.lock().expect("lock"),
        "prefix": c.names.prefix,
    }))
}

async fn stream_events(State(c): Shared) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = c.tx.subscribe();
    let s = stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(m) => return Some((Ok(Event::default().data(m)), rx)),
                // A slow page misses some updates; the next snapshot or poll repairs it.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(s).keep_alive(KeepAlive::default())
}

async fn place(State(c): Shared, Json(o): Json<PlaceOrder>) -> ApiResult {
    c.place(&o).await.map(Json).map_err(unavailable)
}

async fn cancel(
    State(c): Shared,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> ApiResult {
    let r = c
        .http
        .post(format!("{}/orders/{id}/cancel", c.url(Service::Orders)))
        .header("traceparent", crate::trace::child_of(None))
        .send()
        .await
        .map_err(unavailable)?;
    let status = r.status();
    let body: Value = r.json().await.map_err(unavailable)?;
    if status.is_success() {
        c.seen_order(body.clone());
        Ok(Json(body))
    } else {
        Err((StatusCode::CONFLICT, body.to_string()))
    }
}

#[derive(Deserialize)]
struct Burst {
    count: usize,
}

/// Places `count` orders of the burst mix, 32 at a time.
async fn burst(State(c): Shared, Json(b): Json<Burst>) -> ApiResult {
    use futures::StreamExt;
    let first = c.burst_next.fetch_add(b.count, Ordering::SeqCst);
    let results: Vec<bool> = stream::iter(first..first + b.count)
        .map(|i| {
            let c = c.clone();
            async move { c.place(&burst_order(i)).await.is_ok() }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let placed = results.iter().filter(|ok| **ok).count();
    Ok(Json(
        json!({ "placed": placed, "failed": b.count - placed }),
    ))
}

async fn run_chaos(State(c): Shared, Json(a): Json<Action>) -> ApiResult {
    c.chaos_log(format!("chaos: {a:?}"));
    let me = c.clone();
    let result = chaos::run(a, &c.children, &c.scripts, move |l| me.chaos_log(l)).await;
    match result {
        Ok(text) => {
            c.chaos_log(text.clone());
            Ok(Json(json!({ "ok": text })))
        }
        Err(e) => {
            c.chaos_log(format!("failed: {e}"));
            Err((StatusCode::CONFLICT, e))
        }
    }
}

async fn audit(State(c): Shared) -> ApiResult {
    let v = c.audit().await.map_err(unavailable)?;
    Ok(Json(serde_json::to_value(v).expect("serializable")))
}

async fn set_version(State(c): Shared, Json(v): Json<Value>) -> ApiResult {
    let r = c
        .http
        .post(format!(
            "{}/admin/order-placed-version",
            c.url(Service::Orders)
        ))
        .json(&v)
        .send()
        .await
        .map_err(unavailable)?;
    let status = r.status();
    let body: Value = r.json().await.map_err(unavailable)?;
    if status.is_success() {
        c.chaos_log(format!("OrderPlaced is now written as v{}", v["version"]));
        Ok(Json(body))
    } else {
        Err((StatusCode::UNPROCESSABLE_ENTITY, body.to_string()))
    }
}

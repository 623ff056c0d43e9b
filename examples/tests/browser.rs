//! The console page in headless Chromium (WebDriver): place orders through the form with
//! `OrderPlaced` v1, switch to v2, press "Burst of 100", and check that the page shows every
//! order in the final state its inputs call for, both schema versions, an order's event
//! stream with its Kafka topic/partition/offset, and balanced books. Screenshots go to
//! `<target dir>/test-artifacts/saga-browser/`.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use outbox_saga_example::workload::expected_status;
use serde_json::{json, Value};

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn artifacts() -> PathBuf {
    // <target>/debug/saga → <target>/test-artifacts/saga-browser
    let dir = PathBuf::from(env!("CARGO_BIN_EXE_saga"))
        .parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .join("test-artifacts/saga-browser");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// chromedriver on a free port (installing Chromium first if needed).
async fn driver() -> (Driver, u16) {
    if Command::new("chromedriver")
        .arg("--version")
        .output()
        .is_err()
    {
        let ok = Command::new(common::repo_root().join("deploy/local/browser.sh"))
            .status()
            .expect("deploy/local/browser.sh")
            .success();
        assert!(ok, "could not install chromium and chromium-driver");
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let d = Driver(child);
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return (d, port);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not listen on {port}");
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(artifacts().join(format!("{name}.png")), png).unwrap();
}

async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.unwrap()
}

async fn set(c: &Client, id: &str, value: &str) {
    let e = c.find(Locator::Id(id)).await.unwrap();
    e.clear().await.unwrap();
    e.send_keys(value).await.unwrap();
}

async fn click(c: &Client, css: &str) {
    // Into the middle of its scroll box, away from the sticky table header.
    c.execute(
        "document.querySelector(arguments[0]).scrollIntoView({block: 'center'});",
        vec![json!(css)],
    )
    .await
    .unwrap();
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Places one order through the form.
async fn place(c: &Client, sku: &str, qty: i32, amount: i64, card: &str) {
    c.find(Locator::Id("sku"))
        .await
        .unwrap()
        .select_by_value(sku)
        .await
        .unwrap();
    set(c, "qty", &qty.to_string()).await;
    set(c, "amount", &amount.to_string()).await;
    c.find(Locator::Id("card"))
        .await
        .unwrap()
        .select_by_value(card)
        .await
        .unwrap();
    click(c, "#place").await;
}

const ROWS: &str = "return [...document.querySelectorAll('#orders tr[data-id]')].map(tr => ({
    id: tr.dataset.id, status: tr.dataset.status, sku: tr.dataset.sku,
    amount: +tr.dataset.amount, card: tr.dataset.card, version: +tr.dataset.version }));";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_every_order_reach_its_final_state() {
    let mut stack = common::Stack::start("browser", &[]);
    stack.wait_ready().await;
    let (_driver, port) = driver().await;
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                        "--disable-dev-shm-usage", "--window-size=1680,1050"]}),
    );
    let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("WebDriver session");
    c.goto(&stack.console).await.unwrap();
    c.wait()
        .for_element(Locator::XPath("//span[@id='conn' and text()='live']"))
        .await
        .unwrap();
    shot(&c, "01-empty").await;

    // Four orders through the form, written as OrderPlaced v1.
    click(&c, "#v1").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let good = "4242424242424242";
    let declined = "4000000000000002";
    place(&c, "widget", 1, 2500, good).await;
    place(&c, "gadget", 2, 1500, declined).await;
    place(&c, "unobtainium", 1, 900, good).await;
    place(&c, "widget", 1, 90_000, good).await;
    // Then the schema evolves: the burst is written as v2.
    let deadline = Instant::now() + Duration::from_secs(20);
    while js(&c, ROWS).await.as_array().unwrap().len() < 4 {
        assert!(Instant::now() < deadline, "form orders did not appear");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    click(&c, "#v2").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    click(&c, "#burst").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    shot(&c, "02-burst-in-flight").await;

    // Wait until the page shows all 104 orders final and the books settled.
    let started = Instant::now();
    let rows = loop {
        let rows = js(&c, ROWS).await;
        let rows = rows.as_array().unwrap().clone();
        let settled = js(&c, "return document.body.dataset.settled === 'true';").await;
        let all_final = rows.len() == 104
            && rows.iter().all(|r| {
                ["CONFIRMED", "REJECTED", "CANCELLED"].contains(&r["status"].as_str().unwrap())
            });
        if all_final && settled == true {
            break rows;
        }
        if started.elapsed() > Duration::from_secs(120) {
            shot(&c, "99-timeout").await;
            panic!("page not settled after 120 s: {} rows", rows.len());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!("page settled {:?} after the burst", started.elapsed());
    shot(&c, "03-settled").await;

    let mut by_version = [0, 0];
    let mut by_status = std::collections::BTreeMap::new();
    for r in &rows {
        let want = expected_status(
            r["sku"].as_str().unwrap(),
            r["amount"].as_i64().unwrap(),
            r["card"].as_str().unwrap(),
        );
        assert_eq!(r["status"], want, "{r}");
        by_version[(r["version"].as_i64().unwrap() - 1) as usize] += 1;
        *by_status.entry(want).or_insert(0) += 1;
    }
    assert_eq!(by_version, [4, 100]);
    assert_eq!(
        by_status.into_iter().collect::<Vec<_>>(),
        vec![("CANCELLED", 11), ("CONFIRMED", 71), ("REJECTED", 22)]
    );
    let pill = |id: &'static str| {
        let c = c.clone();
        async move { c.find(Locator::Id(id)).await.unwrap().text().await.unwrap() }
    };
    assert_eq!(pill("a-final").await, "orders final: 104/104");
    assert_eq!(pill("a-once").await, "exactly once: yes");
    assert_eq!(pill("a-money").await, "money: balanced");
    assert_eq!(pill("a-stock").await, "stock: balanced");

    // One v1 order's events: click its row; the stream shows the saga with where each
    // event was (Kafka topic/partition/offset, SNS→SQS).
    let v1_confirmed = rows
        .iter()
        .find(|r| r["version"] == 1 && r["status"] == "CONFIRMED")
        .unwrap();
    let id = v1_confirmed["id"].as_str().unwrap();
    click(&c, &format!("#orders tr[data-id='{id}']")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stream = js(
        &c,
        "return [...document.querySelectorAll('#events tr')].map(tr => [...tr.cells].map(td => td.textContent));",
    )
    .await;
    let stream: Vec<Vec<String>> = serde_json::from_value(stream).unwrap();
    let types: Vec<(&str, &str)> = stream
        .iter()
        .map(|r| (r[0].as_str(), r[1].as_str()))
        .rev()
        .collect();
    assert_eq!(
        types,
        vec![
            ("OrderPlaced", "v1"),
            ("PaymentAuthorized", "v1"),
            ("StockReserved", "v1")
        ],
        "{stream:?}"
    );
    let placed_where = &stream.last().unwrap()[3];
    assert!(
        placed_where.starts_with(&format!("kafka {}.Order / p", stack.prefix)),
        "{placed_where}"
    );
    assert!(stream[0][3].starts_with("sns "), "{:?}", stream[0]);
    // One trace id across the saga.
    let traces: std::collections::HashSet<&str> = stream.iter().map(|r| r[4].as_str()).collect();
    assert_eq!(traces.len(), 1, "{stream:?}");
    shot(&c, "04-one-order-events").await;

    // The customer cancels a confirmed v2 order: stock released, payment refunded.
    let victim = rows
        .iter()
        .find(|r| r["version"] == 2 && r["status"] == "CONFIRMED")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    click(&c, &format!("#orders tr[data-id='{victim}'] button.cancel")).await;
    let started = Instant::now();
    loop {
        let row = js(
            &c,
            &format!(
                "const tr = document.querySelector(\"#orders tr[data-id='{victim}']\");
                 return [tr.dataset.status, tr.dataset.refunded, tr.dataset.reason,
                         document.body.dataset.settled];"
            ),
        )
        .await;
        if row == json!(["CANCELLED", "true", "cancelled by the customer", "true"]) {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            shot(&c, "99-cancel-timeout").await;
            panic!("cancellation not settled: {row}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    click(&c, &format!("#orders tr[data-id='{victim}']")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stream = js(
        &c,
        "return [...document.querySelectorAll('#events tr')].map(tr => tr.cells[0].textContent);",
    )
    .await;
    let mut types: Vec<String> = serde_json::from_value(stream).unwrap();
    types.reverse();
    // The saga, then the cancellation's two compensations (in either order: they travel
    // through different relays).
    assert_eq!(
        types[..4],
        [
            "OrderPlaced",
            "PaymentAuthorized",
            "StockReserved",
            "OrderCancelled"
        ]
    );
    let mut compensations = types[4..].to_vec();
    compensations.sort();
    assert_eq!(compensations, ["PaymentRefunded", "StockReleased"]);
    assert_eq!(pill("a-money").await, "money: balanced");
    assert_eq!(pill("a-stock").await, "stock: balanced");
    shot(&c, "05-cancelled-by-customer").await;
    c.close().await.unwrap();
}

//! CloudEvents (`outbox.cloudevents`) against the real Kafka and the SQS emulator:
//! the exact headers / message attributes and bodies received, each checked against the
//! CloudEvents spec and the Kafka protocol binding, tombstones, and events parked and
//! redriven carrying exactly the attributes of directly published ones.

use std::process::Command;
use std::time::Duration;

use outbox_relay_tests::aws::{self, ACCOUNT, REGION};
use outbox_relay_tests::cloudevents::{assert_unique_ids, check_binary, check_structured};
use outbox_relay_tests::kafka::{Record, TopicReader};
use outbox_relay_tests::relay::{Relay, RelaySetup};
use outbox_relay_tests::{env, pg, unique};

const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
/// The timestamp column of every row, and so the `time` attribute.
const TS: &str = "2026-11-18 13:06:40.123456+02";
const TIME: &str = "2026-11-18T11:06:40.123Z";

fn cloudevents_yaml(mode: &str) -> String {
    format!("  cloudevents:\n    mode: {mode}\n    source: /orders-service\n")
}

/// Runs `outbox-relay parked <args> --output json`; (exit code, parsed JSON).
fn parked(relay: &Relay, args: &[&str]) -> (i32, serde_json::Value) {
    let out = Command::new(env::relay_bin())
        .arg("--config")
        .arg(&relay.config)
        .arg("parked")
        .args(args)
        .args(["--output", "json"])
        .output()
        .expect("run outbox-relay parked");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with('[') || l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON: {stdout} {}", String::from_utf8_lossy(&out.stderr)));
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_str(line).unwrap(),
    )
}

fn insert(table: &str, agg: &str, ty: &str, payload: &str) -> String {
    format!(
        "INSERT INTO {table} (aggregatetype, aggregateid, type, payload, timestamp, tracingspancontext)
         VALUES ('Order', '{agg}', '{ty}', {payload}, '{TS}', 'traceparent={TP}');"
    )
}

fn headers_str(r: &Record) -> Vec<(String, String)> {
    r.headers
        .iter()
        .map(|(k, v)| (k.clone(), String::from_utf8(v.clone()).unwrap()))
        .collect()
}

/// The headers a binary-mode event of `aggregate` with id `id` and type `ty` carries, in
/// order (the harness turns the commit-LSN header on: its value is per transaction).
fn expected_binary(
    r: &Record,
    id: &str,
    aggregate: &str,
    ty: &str,
    data: bool,
) -> Vec<(String, String)> {
    let lsn = r.header_str("outbox-relay-commit-lsn").expect("commit lsn");
    let mut h: Vec<(String, String)> = [
        ("id", id),
        ("traceparent", TP),
        ("outbox-relay-commit-lsn", &lsn),
        ("ce_specversion", "1.0"),
        ("ce_id", id),
        ("ce_source", "/orders-service"),
        ("ce_type", ty),
        ("ce_subject", aggregate),
        ("ce_time", TIME),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if data {
        h.push(("content-type".into(), "application/json".into()));
    }
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_binary_mode_headers_tombstones_and_parked_events_redriven_alike() {
    let name = unique("cebin");
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    pg::create_outbox_table(&client, &table, "jsonb", true).await;
    let mut setup = RelaySetup::new(&name, &table);
    setup.outbox_extra = cloudevents_yaml("binary");
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));

    // A1 goes out; A2 has an empty type, which no CloudEvent may have: parked, and A3
    // parked behind it. B1 is a tombstone, B2 an ordinary event.
    client
        .batch_execute(&format!(
            "BEGIN; {} {} COMMIT; BEGIN; {} {} {} COMMIT;",
            insert(&table, "A", "OrderCreated", "'{\"n\": 1}'"),
            insert(&table, "B", "OrderDeleted", "NULL"),
            insert(&table, "A", "", "'{\"n\": 2}'"),
            insert(&table, "A", "OrderPaid", "'{\"n\": 3}'"),
            insert(&table, "B", "OrderCreated", "'{\"n\":  2}'"),
        ))
        .await
        .unwrap();
    let ids: Vec<(String, String, String)> = client
        .query(
            &format!("SELECT id::text, aggregateid, type FROM {table} ORDER BY ctid"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let topic = format!("{}.Order", setup.topic_prefix);
    let direct = {
        let topic = topic.clone();
        tokio::task::spawn_blocking(move || {
            let mut r = TopicReader::exact(&topic);
            r.read_at_least(3, Duration::from_secs(60));
            r.read_until(Duration::from_secs(2), |_| false);
            r.into_records()
        })
        .await
        .unwrap()
    };
    assert_eq!(direct.len(), 3, "{direct:#?}");
    let (a1, b1, b2) = (&direct[0], &direct[1], &direct[2]);
    assert_eq!(a1.key_str(), "A");
    assert_eq!(
        a1.payload.as_deref(),
        Some(&b"{\"n\": 1}"[..]),
        "data as-is"
    );
    assert_eq!(
        headers_str(a1),
        expected_binary(a1, &ids[0].0, "A", "OrderCreated", true)
    );
    // The tombstone is the binary-mode CloudEvent without data: no value, no content-type.
    assert_eq!((b1.key_str(), b1.payload.clone()), ("B".to_string(), None));
    assert_eq!(
        headers_str(b1),
        expected_binary(b1, &ids[1].0, "B", "OrderDeleted", false)
    );
    assert_eq!(b2.payload.as_deref(), Some(&b"{\"n\": 2}"[..]));
    assert_eq!(
        headers_str(b2),
        expected_binary(b2, &ids[4].0, "B", "OrderCreated", true)
    );
    let mut seen = Vec::new();
    for r in &direct {
        seen.push(check_binary(&r.headers, r.payload.is_some()));
    }

    // A2 is parked as invalid (its message names the attribute), A3 behind it, stored
    // with its CloudEvents headers.
    let (code, listed) = parked(&relay, &["list", "--aggregate", "A"]);
    assert_eq!(code, 0, "{listed}");
    let listed = listed.as_array().unwrap().clone();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0]["reason"], "null_event_type");
    assert!(
        listed[0]["error"].as_str().unwrap().contains("CloudEvent"),
        "{listed:?}"
    );
    assert_eq!(listed[1]["reason"], "behind_parked");
    let (code, out) = parked(
        &relay,
        &[
            "discard",
            "--event-id",
            listed[0]["event_id"].as_str().unwrap(),
        ],
    );
    assert_eq!((code, out["discarded"].as_i64()), (0, Some(1)), "{out}");
    let (code, out) = parked(&relay, &["redrive", "--aggregate", "A"]);
    assert_eq!(code, 0, "{out}");
    let all = tokio::task::spawn_blocking(move || {
        let mut r = TopicReader::exact(&topic);
        r.read_at_least(4, Duration::from_secs(60));
        r.read_until(Duration::from_secs(2), |_| false);
        r.into_records()
    })
    .await
    .unwrap();
    assert_eq!(all.len(), 4, "{all:#?}");
    let a3 = &all[3];
    assert_eq!(
        (a3.key_str(), a3.payload.as_deref()),
        ("A".to_string(), Some(&b"{\"n\": 3}"[..]))
    );
    // Exactly the headers a directly published A3 would have had, in the same order.
    assert_eq!(
        headers_str(a3),
        expected_binary(a3, &ids[3].0, "A", "OrderPaid", true)
    );
    seen.push(check_binary(&a3.headers, true));
    assert_unique_ids(seen.iter().map(String::as_str));

    relay.terminate(Duration::from_secs(30));
    pg::cleanup(&client, &setup.slot(), &setup.publication(), &[&table]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_structured_mode_bodies_are_the_json_event_format() {
    let name = unique("cestr");
    let (t_json, t_bytes) = (format!("{name}_outbox"), format!("{name}_bin_outbox"));
    let client = pg::connect().await;
    pg::create_outbox_table(&client, &t_json, "jsonb", true).await;
    pg::create_outbox_table(&client, &t_bytes, "bytea", true).await;
    let mut setup = RelaySetup::new(&name, &t_json);
    setup.tables = vec![t_json.clone(), t_bytes.clone()];
    setup.outbox_extra = cloudevents_yaml("structured");
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));

    client
        .batch_execute(&format!(
            "BEGIN; {} {} {} COMMIT;",
            insert(
                &t_json,
                "A",
                "OrderCreated",
                "'{\"total\": 12.50, \"items\": [1, 2]}'"
            ),
            insert(&t_bytes, "A", "OrderScanned", "'\\x00ff7b7d'"),
            insert(&t_json, "A", "OrderDeleted", "NULL"),
        ))
        .await
        .unwrap();
    let ids: Vec<String> = client
        .query(
            &format!(
                "SELECT id::text FROM (SELECT id, 1 AS n FROM {t_json} WHERE type = 'OrderCreated'
                  UNION ALL SELECT id, 2 FROM {t_bytes} UNION ALL SELECT id, 3 FROM {t_json} WHERE type = 'OrderDeleted') x ORDER BY n"
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let topic = format!("{}.Order", setup.topic_prefix);
    let records = tokio::task::spawn_blocking(move || {
        let mut r = TopicReader::exact(&topic);
        r.read_at_least(3, Duration::from_secs(60));
        r.read_until(Duration::from_secs(2), |_| false);
        r.into_records()
    })
    .await
    .unwrap();
    assert_eq!(records.len(), 3, "{records:#?}");
    // JSON data inline, byte for byte as PostgreSQL printed the jsonb.
    let json = &records[0];
    assert_eq!(
        String::from_utf8(json.payload.clone().unwrap()).unwrap(),
        format!(
            r#"{{"specversion":"1.0","id":"{}","source":"/orders-service","type":"OrderCreated","subject":"A","time":"{TIME}","datacontenttype":"application/json","data":{{"items": [1, 2], "total": 12.50}}}}"#,
            ids[0]
        )
    );
    let lsn = json.header_str("outbox-relay-commit-lsn").unwrap();
    assert_eq!(
        headers_str(json),
        [
            ("id", ids[0].as_str()),
            ("traceparent", TP),
            ("outbox-relay-commit-lsn", &lsn),
            (
                "content-type",
                "application/cloudevents+json; charset=UTF-8"
            ),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<Vec<_>>()
    );
    // Bytes that are not JSON travel as data_base64.
    let v = check_structured(records[1].payload.as_deref().unwrap());
    assert_eq!(v["data_base64"], "AP97fQ==");
    assert_eq!(v["id"], ids[1].as_str());
    assert!(v.get("data").is_none());
    check_structured(json.payload.as_deref().unwrap());
    // A NULL payload stays a tombstone (a structured event would not be one): the
    // binary-mode CloudEvent without data.
    let tomb = &records[2];
    assert_eq!(tomb.payload, None);
    let tomb_id = check_binary(&tomb.headers, false);
    assert_eq!(tomb_id, ids[2]);
    assert_unique_ids([ids[0].as_str(), ids[1].as_str(), tomb_id.as_str()]);

    relay.terminate(Duration::from_secs(30));
    pg::cleanup(
        &client,
        &setup.slot(),
        &setup.publication(),
        &[&t_json, &t_bytes],
    )
    .await;
}

/// The attributes of an SQS message, sorted by name (SQS returns a map).
fn sorted(headers: &[(String, Vec<u8>)]) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.clone(), String::from_utf8(v.clone()).unwrap()))
        .collect();
    h.sort();
    h
}

async fn sqs_run(mode: &str) -> (Vec<outbox_relay_tests::kafka::Record>, Vec<String>) {
    let name = unique(&format!("cesqs{mode}"));
    let table = format!("{name}_outbox");
    let client = pg::connect().await;
    pg::create_outbox_table(&client, &table, "jsonb", true).await;
    let sdk = aws::sdk().await;
    let (queue_url, _) = aws::create_queue(&sdk, &format!("{name}-Order")).await;
    let (dl_url, _) = aws::create_queue(&sdk, &format!("{name}-dlq")).await;
    let mut setup = RelaySetup::new(&name, &table).with_env(&aws::relay_env());
    setup.sink_yaml = Some(format!(
        "  kind: sqs\n  sqs:\n    region: {REGION}\n    endpoint: {}\n    retry_initial_backoff_ms: 50\n",
        aws::endpoint()
    ));
    setup.route_template = Some(format!(
        "{}/{ACCOUNT}/{name}-{{aggregatetype}}",
        aws::endpoint()
    ));
    setup.dead_letter = Some(dl_url);
    setup.outbox_extra = cloudevents_yaml(mode);
    let mut relay = Relay::start(&setup);
    relay.wait_ready(Duration::from_secs(60));
    client
        .batch_execute(&format!(
            "BEGIN; {} {} COMMIT;",
            insert(&table, "A", "OrderCreated", "'{\"n\": 1}'"),
            insert(&table, "A", "OrderPaid", "'{\"n\": 2}'"),
        ))
        .await
        .unwrap();
    let ids: Vec<String> = client
        .query(&format!("SELECT id::text FROM {table} ORDER BY ctid"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let got = aws::receive(&sdk, &queue_url, "q", Duration::from_secs(60), |r| {
        r.len() >= 2
    })
    .await;
    relay.terminate(Duration::from_secs(30));
    pg::cleanup(&client, &setup.slot(), &setup.publication(), &[&table]).await;
    (got, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_binary_mode_sends_ce_attributes_within_the_ten() {
    let (got, ids) = sqs_run("binary").await;
    assert_eq!(got.len(), 2, "{got:#?}");
    // Standard queue, one aggregate: in order.
    for (m, (id, ty, n)) in got
        .iter()
        .zip([(&ids[0], "OrderCreated", 1), (&ids[1], "OrderPaid", 2)])
    {
        assert_eq!(
            m.payload.as_deref(),
            Some(format!("{{\"n\": {n}}}").as_bytes())
        );
        let mut expected: Vec<(String, String)> = [
            ("ce_specversion", "1.0"),
            ("ce_id", id.as_str()),
            ("ce_source", "/orders-service"),
            ("ce_type", ty),
            ("ce_subject", "A"),
            ("ce_time", TIME),
            ("content-type", "application/json"),
            ("aggregatetype", "Order"),
            ("traceparent", TP),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        // The tenth: the commit-LSN header the harness turns on.
        let lsn = m
            .header_str("outbox-relay-commit-lsn")
            .expect("commit lsn attribute");
        expected.push(("outbox-relay-commit-lsn".into(), lsn));
        expected.sort();
        assert_eq!(sorted(&m.headers), expected);
        check_binary(&m.headers, true);
    }
    assert_unique_ids(ids.iter().map(String::as_str));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_structured_mode_body_is_the_json_event() {
    let (got, ids) = sqs_run("structured").await;
    assert_eq!(got.len(), 2, "{got:#?}");
    for (m, (id, ty, n)) in got
        .iter()
        .zip([(&ids[0], "OrderCreated", 1), (&ids[1], "OrderPaid", 2)])
    {
        assert_eq!(
            String::from_utf8(m.payload.clone().unwrap()).unwrap(),
            format!(
                r#"{{"specversion":"1.0","id":"{id}","source":"/orders-service","type":"{ty}","subject":"A","time":"{TIME}","datacontenttype":"application/json","data":{{"n": {n}}}}}"#
            )
        );
        check_structured(m.payload.as_deref().unwrap());
        let h = sorted(&m.headers);
        let names: Vec<&str> = h.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "aggregateid",
                "aggregatetype",
                "content-type",
                "id",
                "outbox-relay-commit-lsn",
                "traceparent",
                "type"
            ]
        );
        assert_eq!(
            m.header_str("content-type").as_deref(),
            Some("application/cloudevents+json; charset=UTF-8")
        );
    }
}

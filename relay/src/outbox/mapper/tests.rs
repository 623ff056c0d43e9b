use std::sync::Arc;

use bytes::Bytes;
use outbox_pgoutput::{
    Column, Insert, LogicalMessage, Lsn, Relation, ReplicaIdentity, TupleData, TupleValue,
};

use super::*;
use crate::config::{HeaderColumn, MessagesConfig, OutboxConfig};
use crate::outbox::text::oid;

fn col(name: &str, type_oid: u32) -> Column {
    Column {
        flags: 0,
        name: name.into(),
        type_oid,
        type_modifier: -1,
    }
}

fn relation(payload_oid: u32) -> Relation {
    Relation {
        xid: None,
        rel_id: 42,
        namespace: "public".into(),
        name: "outbox".into(),
        replica_identity: ReplicaIdentity::Default,
        columns: vec![
            col("id", oid::UUID),
            col("aggregatetype", oid::VARCHAR),
            col("aggregateid", oid::VARCHAR),
            col("type", oid::VARCHAR),
            col("payload", payload_oid),
            col("timestamp", oid::TIMESTAMPTZ),
            col("tracingspancontext", oid::VARCHAR),
            col("tenant", oid::TEXT),
        ],
    }
}

fn t(s: &str) -> TupleValue {
    TupleValue::Text(Bytes::copy_from_slice(s.as_bytes()))
}

const ID: &str = "5f0b1d7e-3a47-4c1c-9b1e-2a8f6d3c4b5a";
const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn row(aggregate_id: TupleValue, payload: TupleValue) -> Insert {
    Insert {
        xid: None,
        rel_id: 42,
        new: TupleData(vec![
            t(ID),
            t("Order"),
            aggregate_id,
            t("OrderCreated"),
            payload,
            t("2026-11-18 11:06:40.123+00"),
            t(&format!("traceparent={TP}")),
            t("acme"),
        ]),
    }
}

fn mapper(config: OutboxConfig) -> Mapper {
    let router = Router::new(
        &config.route,
        Arc::new(|d: &str| {
            if d.contains(' ') {
                Err("spaces are not allowed".into())
            } else {
                Ok(())
            }
        }),
    )
    .unwrap();
    Mapper::new(config, router)
}

fn tx() -> TxContext {
    TxContext {
        commit_lsn: Lsn(0x1_0000_0010),
        commit_time_us: 1_795_000_000_000_000,
    }
}

#[test]
fn maps_a_debezium_shaped_row_byte_for_byte() {
    let mut config = OutboxConfig::default();
    config.tables[0].header_columns = vec![HeaderColumn {
        column: "tenant".into(),
        header: None,
    }];
    config.commit_lsn_header = true;
    let mut m = mapper(config);
    m.on_relation(&relation(oid::JSONB)).unwrap();
    let Mapped::Event(e) = m
        .map_insert(&row(t("order-1"), t(r#"{"total": 12.5}"#)), &tx())
        .unwrap()
    else {
        panic!("expected an event")
    };
    assert_eq!(e.id, ID);
    assert_eq!(&*e.destination, "outbox.event.Order");
    assert_eq!(e.aggregate_id, "order-1");
    assert_eq!(e.event_type, "OrderCreated");
    assert_eq!(e.payload.as_deref(), Some(&br#"{"total": 12.5}"#[..]));
    assert_eq!(e.timestamp_ms, 1_795_000_000_123);
    let headers: Vec<(&str, &[u8])> = e
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_ref()))
        .collect();
    assert_eq!(
        headers,
        vec![
            ("id", ID.as_bytes()),
            ("traceparent", TP.as_bytes()),
            ("tenant", &b"acme"[..]),
            ("outbox-relay-commit-lsn", &b"1/10"[..]),
        ]
    );
    assert_eq!(e.seq, 1);
}

#[test]
fn each_transaction_gets_its_own_commit_lsn_header() {
    let mut m = mapper(OutboxConfig {
        commit_lsn_header: true,
        ..Default::default()
    });
    m.on_relation(&relation(oid::JSONB)).unwrap();
    let mut lsn_of = |commit_lsn: u64| {
        let tx = TxContext {
            commit_lsn: Lsn(commit_lsn),
            ..tx()
        };
        let Mapped::Event(e) = m.map_insert(&row(t("o-1"), t("{}")), &tx).unwrap() else {
            panic!("expected an event")
        };
        let (_, v) = e
            .headers
            .iter()
            .find(|(k, _)| k == HEADER_COMMIT_LSN)
            .expect("commit LSN header");
        String::from_utf8(v.to_vec()).unwrap()
    };
    // The value is formatted once per transaction and reused for its events.
    let got: Vec<String> = [0x10, 0x10, 0x2_0000_0020, 0x10]
        .into_iter()
        .map(&mut lsn_of)
        .collect();
    assert_eq!(got, ["0/10", "0/10", "2/20", "0/10"]);
}

#[test]
fn null_aggregate_id_is_invalid_with_the_row_kept() {
    let mut m = mapper(OutboxConfig::default());
    m.on_relation(&relation(oid::JSONB)).unwrap();
    let Mapped::Invalid(inv) = m
        .map_insert(&row(TupleValue::Null, t("{}")), &tx())
        .unwrap()
    else {
        panic!("expected invalid")
    };
    assert_eq!(inv.reason, InvalidReason::NullAggregateId);
    assert!(
        inv.message.contains("\"aggregateid\" is NULL"),
        "{}",
        inv.message
    );
    assert_eq!(inv.row["id"], ID);
    assert_eq!(inv.row["aggregateid"], serde_json::Value::Null);
    let dl = m.dead_letter(&inv);
    assert_eq!(&*dl.destination, "outbox-relay.dead-letter");
    let doc: serde_json::Value = serde_json::from_slice(dl.payload.as_ref().unwrap()).unwrap();
    assert_eq!(doc["reason"], "null_aggregate_id");
    assert_eq!(doc["row"]["type"], "OrderCreated");
}

#[test]
fn text_payloads_are_validated_only_when_asked() {
    let mut config = OutboxConfig::default();
    config.tables[0].validate_json = true;
    let mut m = mapper(config);
    m.on_relation(&relation(oid::TEXT)).unwrap();
    let bad = m.map_insert(&row(t("a"), t("{not json")), &tx()).unwrap();
    assert!(matches!(bad, Mapped::Invalid(ref i) if i.reason == InvalidReason::InvalidJson));
    let good = m.map_insert(&row(t("a"), t("[1,2]")), &tx()).unwrap();
    assert!(matches!(good, Mapped::Event(_)));

    let mut lax = mapper(OutboxConfig::default());
    lax.on_relation(&relation(oid::TEXT)).unwrap();
    assert!(matches!(
        lax.map_insert(&row(t("a"), t("{not json")), &tx()).unwrap(),
        Mapped::Event(_)
    ));
}

#[test]
fn bytea_payloads_are_decoded_and_null_payloads_are_tombstones() {
    let mut m = mapper(OutboxConfig::default());
    m.on_relation(&relation(oid::BYTEA)).unwrap();
    let Mapped::Event(e) = m.map_insert(&row(t("a"), t("\\x00ff")), &tx()).unwrap() else {
        panic!()
    };
    assert_eq!(e.payload.as_deref(), Some(&[0u8, 255][..]));
    let Mapped::Event(e) = m.map_insert(&row(t("a"), TupleValue::Null), &tx()).unwrap() else {
        panic!()
    };
    assert_eq!(e.payload, None);
}

#[test]
fn unroutable_aggregate_types_are_invalid() {
    let mut m = mapper(OutboxConfig::default());
    m.on_relation(&relation(oid::JSONB)).unwrap();
    let mut r = row(t("a"), t("{}"));
    r.new.0[1] = t("has space");
    let Mapped::Invalid(inv) = m.map_insert(&r, &tx()).unwrap() else {
        panic!()
    };
    assert_eq!(inv.reason, InvalidReason::NoRoute);
    assert!(inv.message.contains("has space"));
}

#[test]
fn schema_problems_stop_the_relay_with_a_clear_message() {
    let mut m = mapper(OutboxConfig::default());
    let mut rel = relation(oid::JSONB);
    rel.columns.retain(|c| c.name != "aggregateid");
    let e = m.on_relation(&rel).unwrap_err();
    assert!(
        e.to_string().contains("required column \"aggregateid\""),
        "{e}"
    );
    let e = m.on_relation(&relation(oid::INT8)).unwrap_err();
    assert!(e.to_string().contains("payload column"), "{e}");
    // An Insert for an undescribed relation is a protocol violation, not a silent skip.
    assert!(m
        .map_insert(
            &Insert {
                xid: None,
                rel_id: 7,
                new: TupleData(vec![])
            },
            &tx()
        )
        .is_err());
}

#[test]
fn other_published_tables_are_not_outbox() {
    let mut m = mapper(OutboxConfig::default());
    let mut rel = relation(oid::JSONB);
    rel.name = "orders".into();
    m.on_relation(&rel).unwrap();
    assert!(matches!(
        m.map_insert(&row(t("a"), t("{}")), &tx()).unwrap(),
        Mapped::NotOutbox
    ));
}

fn message(content: &str) -> LogicalMessage {
    LogicalMessage {
        xid: None,
        transactional: true,
        lsn: Lsn(5),
        prefix: "outbox".into(),
        content: Bytes::copy_from_slice(content.as_bytes()),
    }
}

#[test]
fn logical_messages_map_with_the_exact_payload_text() {
    let config = OutboxConfig {
        messages: Some(MessagesConfig {
            prefix: "outbox".into(),
        }),
        ..OutboxConfig::default()
    };
    let mut m = mapper(config);
    let content = r#"{"id": "e1", "aggregatetype": "Order", "aggregateid": 17, "type": "Paid", "payload": {"b": [1, 2],  "a": "x"}}"#;
    let Mapped::Event(e) = m.map_message(&message(content), &tx()) else {
        panic!()
    };
    assert_eq!(e.aggregate_id, "17");
    assert_eq!(
        e.payload.as_deref(),
        Some(&br#"{"b": [1, 2],  "a": "x"}"#[..])
    );
    assert_eq!(&*e.destination, "outbox.event.Order");

    let Mapped::Invalid(inv) = m.map_message(&message("{not json"), &tx()) else {
        panic!()
    };
    assert_eq!(inv.reason, InvalidReason::InvalidMessage);
    let Mapped::Invalid(inv) = m.map_message(
        &message(r#"{"id":"e2","aggregatetype":"Order","type":"T","payload":1}"#),
        &tx(),
    ) else {
        panic!()
    };
    assert_eq!(inv.reason, InvalidReason::NullAggregateId);
    assert_eq!(inv.id.as_deref(), Some("e2"));

    let mut other = message(content);
    other.prefix = "something-else".into();
    assert!(matches!(m.map_message(&other, &tx()), Mapped::NotOutbox));
}

/// Whether `inner` lies inside `outer`'s memory.
fn within(inner: &[u8], outer: &[u8]) -> bool {
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    i >= o && i + inner.len() <= o + outer.len()
}

#[test]
fn events_own_their_bytes_instead_of_pinning_the_read_buffer() {
    let mut config = OutboxConfig::default();
    config.tables[0].header_columns = vec![HeaderColumn {
        column: "tenant".into(),
        header: None,
    }];
    config.messages = Some(MessagesConfig {
        prefix: "outbox".into(),
    });
    let mut m = mapper(config);
    m.on_relation(&relation(oid::JSONB)).unwrap();
    // All values are slices of one big buffer, as decoded values are of a read chunk.
    let chunk = Bytes::from(format!(
        "{ID}order-1{{\"n\": 1}}acme{}",
        "x".repeat(256 * 1024)
    ));
    let mut insert = row(t("-"), t("-"));
    insert.new.0[0] = TupleValue::Text(chunk.slice(0..36));
    insert.new.0[2] = TupleValue::Text(chunk.slice(36..43));
    insert.new.0[4] = TupleValue::Text(chunk.slice(43..51));
    insert.new.0[7] = TupleValue::Text(chunk.slice(51..55));
    let Mapped::Event(e) = m.map_insert(&insert, &tx()).unwrap() else {
        panic!()
    };
    assert_eq!(e.payload.as_deref(), Some(&br#"{"n": 1}"#[..]));
    assert!(!within(e.payload.as_ref().unwrap(), &chunk));
    for (name, value) in &e.headers {
        assert!(
            !within(value, &chunk),
            "header {name} points into the chunk"
        );
    }

    let content = r#"{"id": "e1", "aggregatetype": "Order", "aggregateid": 17, "type": "Paid", "payload": {"a": 1}}"#;
    let mut msg = message(content);
    let big = Bytes::from(format!("{content}{}", " ".repeat(256 * 1024)));
    msg.content = big.slice(..content.len());
    let Mapped::Event(e) = m.map_message(&msg, &tx()) else {
        panic!()
    };
    assert_eq!(e.payload.as_deref(), Some(&br#"{"a": 1}"#[..]));
    assert!(!within(e.payload.as_ref().unwrap(), &big));
}

#[test]
fn rows_and_messages_above_max_event_bytes_are_invalid_without_their_big_values() {
    let config = OutboxConfig {
        max_event_bytes: 4096,
        messages: Some(MessagesConfig {
            prefix: "outbox".into(),
        }),
        ..OutboxConfig::default()
    };
    let mut m = mapper(config);
    m.on_relation(&relation(oid::JSONB)).unwrap();
    let payload = format!("\"{}\"", "z".repeat(5000));
    let Mapped::Invalid(inv) = m
        .map_insert(&row(t("order-9"), t(&payload)), &tx())
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(inv.reason, InvalidReason::TooLarge);
    assert_eq!(inv.reason.label(), "too_large");
    let size = ID.len()
        + "Order".len()
        + "order-9".len()
        + "OrderCreated".len()
        + 5002
        + "2026-11-18 11:06:40.123+00".len()
        + format!("traceparent={TP}").len()
        + "acme".len();
    assert_eq!(
        inv.message,
        format!("row of {size} bytes exceeds outbox.max_event_bytes (4096)")
    );
    assert_eq!(inv.id.as_deref(), Some(ID));
    assert_eq!(inv.aggregate_id.as_deref(), Some("order-9"));
    assert_eq!(
        inv.row["payload"],
        serde_json::json!({"omitted_bytes": 5002})
    );
    assert_eq!(inv.row["aggregateid"], "order-9");
    assert_eq!(inv.row["tenant"], "acme");
    // At the limit is fine: 4096 bytes in all.
    let fits = format!("\"{}\"", "z".repeat(5000 - (size - 4096) - 2));
    assert!(matches!(
        m.map_insert(&row(t("order-9"), t(&fits)), &tx()).unwrap(),
        Mapped::Event(_)
    ));

    let content = format!(
        r#"{{"id": "e1", "aggregatetype": "Order", "aggregateid": 1, "type": "T", "payload": "{}"}}"#,
        "y".repeat(5000)
    );
    let Mapped::Invalid(inv) = m.map_message(&message(&content), &tx()) else {
        panic!()
    };
    assert_eq!(inv.reason, InvalidReason::TooLarge);
    assert_eq!(
        inv.message,
        format!(
            "logical message of {} bytes exceeds outbox.max_event_bytes (4096)",
            content.len()
        )
    );
    assert_eq!(inv.row, serde_json::json!({"omitted_bytes": content.len()}));
    // Another prefix is not ours, whatever its size.
    let mut other = message(&content);
    other.prefix = "something-else".into();
    assert!(matches!(m.map_message(&other, &tx()), Mapped::NotOutbox));
}

#[test]
fn partition_column_sets_the_partition_and_null_leaves_it_to_the_key() {
    let mut config = OutboxConfig::default();
    config.tables[0].partition_column = Some("tenant".into());
    let mut m = mapper(config.clone());
    // tenant is text in the common relation: refused by type, naming the column.
    let e = m.on_relation(&relation(oid::JSONB)).unwrap_err();
    assert!(
        e.problem
            .contains("partition column \"tenant\" has type oid 25"),
        "{e}"
    );
    let mut rel = relation(oid::JSONB);
    rel.columns[7] = col("tenant", oid::INT4);
    m.on_relation(&rel).unwrap();
    let mut r = row(t("order-1"), t("{}"));
    r.new.0[7] = t("7");
    let Mapped::Event(e) = m.map_insert(&r, &tx()).unwrap() else {
        panic!()
    };
    assert_eq!(e.partition, Some(7));
    r.new.0[7] = TupleValue::Null;
    let Mapped::Event(e) = m.map_insert(&r, &tx()).unwrap() else {
        panic!()
    };
    assert_eq!(e.partition, None);
    for bad in ["-1", "2147483648"] {
        r.new.0[7] = t(bad);
        let Mapped::Invalid(inv) = m.map_insert(&r, &tx()).unwrap() else {
            panic!("{bad}")
        };
        assert_eq!(inv.reason, InvalidReason::InvalidPartition);
        assert!(inv.message.contains(bad), "{}", inv.message);
    }
    // Its dead letter goes to the dead-letter topic's own partitioning.
    r.new.0[7] = t("3");
    let Mapped::Event(e) = m.map_insert(&r, &tx()).unwrap() else {
        panic!()
    };
    let err = outbox_connectors::PublishError::new(
        outbox_connectors::ErrorClass::Permanent,
        "unknown_topic",
        "no such partition",
    );
    let dl = crate::outbox::dead_letter_of_rejected(&e, &err, Arc::from("dlq"));
    assert_eq!(dl.partition, None);
    let summary = crate::outbox::dead_letter_summary(&e, &err, Arc::from("dlq"));
    assert_eq!(summary.partition, None);
    // A missing column stops the relay naming it.
    config.tables[0].partition_column = Some("shard".into());
    let mut m = mapper(config);
    let e = m.on_relation(&rel).unwrap_err();
    assert!(e.problem.contains("partition column \"shard\""), "{e}");
}

#[test]
fn cloudevents_attributes_are_part_of_mapped_rows_and_messages() {
    let mut config = OutboxConfig::default();
    config.messages = Some(MessagesConfig {
        prefix: "outbox".into(),
    });
    config.cloudevents = Some(crate::config::CloudEventsConfig {
        mode: crate::config::CloudEventsMode::Binary,
        source: "/orders-service".into(),
        data_content_type: "application/json".into(),
    });
    let mut m = mapper(config);
    m.on_relation(&relation(oid::JSONB)).unwrap();
    let Mapped::Event(e) = m
        .map_insert(&row(t("order-1"), t(r#"{"total": 12.5}"#)), &tx())
        .unwrap()
    else {
        panic!()
    };
    let headers: Vec<(&str, &[u8])> = e
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_ref()))
        .collect();
    assert_eq!(
        headers,
        vec![
            ("id", ID.as_bytes()),
            ("traceparent", TP.as_bytes()),
            ("ce_specversion", &b"1.0"[..]),
            ("ce_id", ID.as_bytes()),
            ("ce_source", &b"/orders-service"[..]),
            ("ce_type", &b"OrderCreated"[..]),
            ("ce_subject", &b"order-1"[..]),
            // The timestamp column's instant (the record timestamp), in UTC.
            ("ce_time", &b"2026-11-18T11:06:40.123Z"[..]),
            ("content-type", &b"application/json"[..]),
        ]
    );
    assert_eq!(e.seq, 1);
    // An empty id cannot be a CloudEvent: invalid, and it takes no place in the
    // transaction (its dead letter does).
    let mut r = row(t("order-1"), t("{}"));
    r.new.0[0] = t("");
    let Mapped::Invalid(inv) = m.map_insert(&r, &tx()).unwrap() else {
        panic!()
    };
    assert_eq!(inv.reason, InvalidReason::NullId);
    assert!(inv.message.contains("non-empty id"), "{}", inv.message);
    assert_eq!(m.dead_letter(&inv).seq, 2);
    // Logical messages get the same attributes; time is their timestamp field.
    let Mapped::Event(e) = m.map_message(
        &message(r#"{"id": "m-1", "aggregatetype": "Order", "aggregateid": "order-2", "type": "OrderPaid", "timestamp": 1795000000123, "payload": {"a": 1}}"#),
        &tx(),
    ) else {
        panic!()
    };
    let ce_time = e.headers.iter().find(|(k, _)| k == "ce_time").unwrap();
    assert_eq!(&ce_time.1[..], b"2026-11-18T11:06:40.123Z");
    assert_eq!(e.payload.as_deref(), Some(&br#"{"a": 1}"#[..]));
    let Mapped::Invalid(inv) = m.map_message(
        &message(r#"{"id": "m-2", "aggregatetype": "Order", "aggregateid": "order-2", "type": "", "payload": {}}"#),
        &tx(),
    ) else {
        panic!()
    };
    assert_eq!(inv.reason, InvalidReason::NullEventType);
}

/// One allocation for an event's strings and payload (issue 17: allocations were a third
/// of the relay's instructions per event), and the id header is the id's own bytes.
#[test]
fn an_events_strings_and_payload_share_one_buffer() {
    let mut m = mapper(OutboxConfig::default());
    m.on_relation(&relation(oid::JSONB)).unwrap();
    let Mapped::Event(e) = m
        .map_insert(&row(t("order-1"), t(r#"{"n": 1}"#)), &tx())
        .unwrap()
    else {
        panic!()
    };
    let payload = e.payload.clone().unwrap();
    let parts: [&[u8]; 5] = [
        e.id.as_bytes(),
        e.aggregate_type.as_bytes(),
        e.aggregate_id.as_bytes(),
        e.event_type.as_bytes(),
        &payload,
    ];
    assert_eq!(
        &parts[2..],
        [&b"order-1"[..], b"OrderCreated", br#"{"n": 1}"#]
    );
    let mut at = e.id.as_ptr() as usize;
    for part in parts {
        assert_eq!(part.as_ptr() as usize, at, "laid out one after the other");
        at += part.len();
    }
    let (_, id_header) = e.headers.iter().find(|(k, _)| k == "id").unwrap();
    assert_eq!(
        id_header.as_ptr(),
        e.id.as_ptr(),
        "the id header is the id's bytes"
    );
}

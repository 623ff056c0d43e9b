//! The saga's events: what each carries (event-carried state transfer: a consumer never
//! calls back the producer), and how a consumer reads them (tolerant reader: unknown
//! fields are ignored, fields added in a later version have defaults).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where a delivery came from, for the console's event stream.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "sink", rename_all = "lowercase")]
pub enum Origin {
    Kafka {
        topic: String,
        partition: i32,
        offset: i64,
    },
    Sqs {
        queue: String,
        message_id: String,
    },
}

/// One received event, whatever the transport.
#[derive(Clone, Debug, Serialize)]
pub struct Delivery {
    pub id: Uuid,
    pub event_type: String,
    pub schema_version: i32,
    pub aggregate_id: String,
    pub traceparent: Option<String>,
    pub payload: serde_json::Value,
    pub origin: Origin,
}

impl Delivery {
    /// Assembles a delivery from transport headers/attributes and the body. The type and
    /// version come from headers when present (table events), else from the payload's own
    /// `type` / `schemaVersion` fields (the payments service's logical messages, which the
    /// relay publishes without extra headers).
    pub fn assemble(
        header: impl Fn(&str) -> Option<String>,
        key: Option<String>,
        body: &[u8],
        origin: Origin,
    ) -> crate::Result<Delivery> {
        let payload: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| crate::Error::BadEvent {
                id: header("id").unwrap_or_default(),
                reason: format!("payload is not JSON: {e}"),
            })?;
        let id_text = header("id").unwrap_or_default();
        let id = Uuid::parse_str(&id_text).map_err(|_| crate::Error::BadEvent {
            id: id_text.clone(),
            reason: "no event id (header/attribute `id`) or not a UUID".into(),
        })?;
        let event_type = header("type")
            .or_else(|| payload["type"].as_str().map(str::to_string))
            .ok_or_else(|| crate::Error::BadEvent {
                id: id_text.clone(),
                reason: "no event type".into(),
            })?;
        let schema_version = header("schema-version")
            .and_then(|v| v.parse().ok())
            .or_else(|| payload["schemaVersion"].as_i64().map(|v| v as i32))
            .unwrap_or(1);
        let aggregate_id = key
            .or_else(|| header("aggregateid"))
            .or_else(|| payload["orderId"].as_str().map(str::to_string))
            .unwrap_or_default();
        Ok(Delivery {
            id,
            event_type,
            schema_version,
            aggregate_id,
            traceparent: header("traceparent"),
            payload,
            origin,
        })
    }

    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> crate::Result<T> {
        serde_json::from_value(self.payload.clone()).map_err(|e| crate::Error::BadEvent {
            id: self.id.to_string(),
            reason: format!("{} v{}: {e}", self.event_type, self.schema_version),
        })
    }
}

fn default_currency() -> String {
    "EUR".into()
}

/// `OrderPlaced`, written by orders. v1: the order. v2 adds `currency` (v1 orders are in
/// EUR) — the field a v1 reader would not know and a v2 reader defaults.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OrderPlaced {
    pub order_id: Uuid,
    pub customer: String,
    pub sku: String,
    pub qty: i32,
    pub amount_cents: i64,
    pub card: String,
    #[serde(default = "default_currency")]
    pub currency: String,
}

/// The current version of `OrderPlaced` the orders service writes by default.
pub const ORDER_PLACED_LATEST: i32 = 2;

impl OrderPlaced {
    /// The payload of the given version.
    pub fn payload(&self, version: i32) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("serializable");
        v["type"] = "OrderPlaced".into();
        v["schemaVersion"] = version.into();
        if version < 2 {
            v.as_object_mut().expect("object").remove("currency");
        }
        v
    }
}

/// `PaymentAuthorized`: carries what inventory needs (sku, qty) and what a refund needs.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PaymentAuthorized {
    pub order_id: Uuid,
    pub amount_cents: i64,
    pub currency: String,
    pub sku: String,
    pub qty: i32,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRejected {
    pub order_id: Uuid,
    pub reason: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRefunded {
    pub order_id: Uuid,
    pub amount_cents: i64,
    pub currency: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StockReserved {
    pub order_id: Uuid,
    pub sku: String,
    pub qty: i32,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StockShortage {
    pub order_id: Uuid,
    pub sku: String,
    pub qty: i32,
    pub available: i32,
    pub amount_cents: i64,
}

/// `OrderCancelled`: the customer cancelled a confirmed order. Carries what the
/// compensations need: inventory releases the stock, payments refunds the amount.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OrderCancelled {
    pub order_id: Uuid,
    pub sku: String,
    pub qty: i32,
    pub amount_cents: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StockReleased {
    pub order_id: Uuid,
    pub sku: String,
    pub qty: i32,
}

/// A payload with its type and version fields, as every service writes them.
pub fn tagged<T: Serialize>(event_type: &str, version: i32, body: &T) -> serde_json::Value {
    let mut v = serde_json::to_value(body).expect("serializable");
    v["type"] = event_type.into();
    v["schemaVersion"] = version.into();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placed() -> OrderPlaced {
        OrderPlaced {
            order_id: Uuid::nil(),
            customer: "ada".into(),
            sku: "widget".into(),
            qty: 2,
            amount_cents: 1999,
            card: "4242".into(),
            currency: "USD".into(),
        }
    }

    #[test]
    fn v1_has_no_currency_and_reads_as_eur() {
        let v1 = placed().payload(1);
        assert!(v1.get("currency").is_none());
        let back: OrderPlaced = serde_json::from_value(v1).unwrap();
        assert_eq!(back.currency, "EUR");
    }

    #[test]
    fn v2_round_trips_and_unknown_fields_are_ignored() {
        let mut v2 = placed().payload(2);
        v2["giftWrap"] = true.into();
        let back: OrderPlaced = serde_json::from_value(v2).unwrap();
        assert_eq!(back, placed());
    }

    #[test]
    fn delivery_takes_type_and_version_from_headers_then_payload() {
        let body = serde_json::to_vec(&tagged(
            "PaymentRejected",
            1,
            &PaymentRejected {
                order_id: Uuid::nil(),
                reason: "card declined".into(),
            },
        ))
        .unwrap();
        let origin = Origin::Sqs {
            queue: "q".into(),
            message_id: "m".into(),
        };
        let id = Uuid::new_v4().to_string();
        let d = Delivery::assemble(
            |h| (h == "id").then(|| id.clone()),
            None,
            &body,
            origin.clone(),
        )
        .unwrap();
        assert_eq!(
            (d.event_type.as_str(), d.schema_version),
            ("PaymentRejected", 1)
        );
        assert_eq!(d.aggregate_id, Uuid::nil().to_string());
        let d = Delivery::assemble(
            |h| match h {
                "id" => Some(id.clone()),
                "type" => Some("X".into()),
                "schema-version" => Some("7".into()),
                _ => None,
            },
            Some("k".into()),
            &body,
            origin,
        )
        .unwrap();
        assert_eq!(
            (
                d.event_type.as_str(),
                d.schema_version,
                d.aggregate_id.as_str()
            ),
            ("X", 7, "k")
        );
    }
}

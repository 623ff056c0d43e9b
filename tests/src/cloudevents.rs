//! The CloudEvents 1.0 rules a received message must satisfy, checked the same way for
//! Kafka headers and SNS/SQS message attributes (the relay names them alike).

use std::collections::HashSet;

/// Attribute names: lowercase a-z and 0-9 (spec 3.1.1, "Attribute Naming Convention").
fn valid_attribute_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// RFC 3339 `date-time` (spec: `time` is a Timestamp in RFC 3339).
fn rfc3339(value: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(value).is_ok()
}

/// Checks a binary-mode message's headers against the Kafka protocol binding (3.2) and
/// the spec: `ce_specversion` "1.0"; `ce_id`, `ce_source`, `ce_type` present and
/// non-empty; optional attributes non-empty when present; `ce_time` RFC 3339; every
/// `ce_` name a valid attribute name; values UTF-8; `content-type` present exactly when
/// there is data. Returns the `id`.
pub fn check_binary(headers: &[(String, Vec<u8>)], has_data: bool) -> String {
    let text = |name: &str| -> Option<String> {
        let mut values = headers.iter().filter(|(k, _)| k == name);
        let v = values.next()?;
        assert!(values.next().is_none(), "{name} appears twice: {headers:?}");
        Some(String::from_utf8(v.1.clone()).unwrap_or_else(|_| panic!("{name} is not UTF-8")))
    };
    assert_eq!(
        text("ce_specversion").as_deref(),
        Some("1.0"),
        "{headers:?}"
    );
    for required in ["ce_id", "ce_source", "ce_type"] {
        let v = text(required).unwrap_or_else(|| panic!("{required} missing: {headers:?}"));
        assert!(!v.is_empty(), "{required} is empty");
    }
    for (name, value) in headers.iter().filter(|(k, _)| k.starts_with("ce_")) {
        assert!(
            valid_attribute_name(&name[3..]),
            "{name}: attribute names are lowercase a-z0-9"
        );
        assert!(
            !value.is_empty(),
            "{name}: present attributes are non-empty"
        );
    }
    if let Some(time) = text("ce_time") {
        assert!(rfc3339(&time), "ce_time {time:?} is not RFC 3339");
    }
    assert_eq!(
        text("content-type").is_some(),
        has_data,
        "content-type (datacontenttype) goes with data: {headers:?}"
    );
    text("ce_id").unwrap()
}

/// Checks a structured-mode body against the JSON event format: a JSON object with
/// `specversion` "1.0", non-empty string `id`, `source`, `type`; `time` RFC 3339;
/// extension-style member names valid; at most one of `data` / `data_base64`. Returns
/// the parsed event.
pub fn check_structured(body: &[u8]) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_slice(body).expect("the body is JSON");
    let o = v.as_object().expect("the event is a JSON object");
    assert_eq!(o["specversion"], "1.0");
    for required in ["id", "source", "type"] {
        let s = o[required]
            .as_str()
            .unwrap_or_else(|| panic!("{required} is a string"));
        assert!(!s.is_empty(), "{required} is empty");
    }
    if let Some(time) = o.get("time") {
        assert!(
            rfc3339(time.as_str().unwrap()),
            "time {time} is not RFC 3339"
        );
    }
    for name in o.keys() {
        assert!(
            name == "data_base64" || valid_attribute_name(name),
            "member {name:?} is not a valid attribute name"
        );
    }
    assert!(!(o.contains_key("data") && o.contains_key("data_base64")));
    v
}

/// `source` + `id` identify an event (spec 3.1.1): distinct for distinct events.
pub fn assert_unique_ids<'a>(ids: impl IntoIterator<Item = &'a str>) {
    let mut seen = HashSet::new();
    for id in ids {
        assert!(seen.insert(id.to_string()), "id {id} used twice");
    }
}

//! Durations in the configuration: the keys keep their `_ms` names and whole-millisecond
//! values (the documented format, and what environment overrides set), while the code
//! gets a `Duration`, so no caller converts milliseconds by hand.
//!
//! Use on a field: `#[serde(rename = "x_ms", with = "…::duration_ms")]`.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Milliseconds (an unsigned integer) as a `Duration`.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    u64::deserialize(deserializer).map(Duration::from_millis)
}

/// A `Duration` as whole milliseconds under the same key (`outbox-relay config` prints the
/// effective configuration in the format it is written in).
pub fn serialize<S: Serializer>(d: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A `Duration` as whole milliseconds, for messages that name the configuration key.
pub fn ms(d: Duration) -> u128 {
    d.as_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, serde::Serialize)]
    struct C {
        #[serde(rename = "wait_ms", with = "super")]
        wait: Duration,
    }

    #[test]
    fn milliseconds_become_a_duration_under_the_same_key() {
        let c: C = serde_json::from_str(r#"{"wait_ms": 1500}"#).unwrap();
        assert_eq!(c.wait, Duration::from_millis(1500));
        assert!(serde_json::from_str::<C>(r#"{"wait_ms": -1}"#).is_err());
        assert!(serde_json::from_str::<C>(r#"{"wait": 1500}"#).is_err());
    }

    #[test]
    fn a_duration_is_written_back_as_milliseconds_under_the_same_key() {
        let c = C {
            wait: Duration::from_millis(1500),
        };
        assert_eq!(serde_json::to_string(&c).unwrap(), r#"{"wait_ms":1500}"#);
    }
}

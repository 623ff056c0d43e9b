//! Decoding PostgreSQL text-format values.

use bytes::Bytes;
use chrono::{DateTime, NaiveDateTime};

/// Type OIDs the relay understands (from pg_type.dat).
#[allow(dead_code)] // a reference table; not every entry is matched on
pub mod oid {
    pub const BYTEA: u32 = 17;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const JSON: u32 = 114;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
}

/// Decodes bytea's text output (`\x` followed by hex digits).
pub fn decode_bytea(text: &[u8]) -> Result<Bytes, String> {
    let hex = text
        .strip_prefix(b"\\x")
        .ok_or("bytea value is not in hex format (bytea_output = 'hex')")?;
    if hex.len() % 2 != 0 {
        return Err("bytea hex value has an odd number of digits".into());
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(format!("bytea hex value contains {:?}", c as char)),
    };
    let mut out = Vec::with_capacity(hex.len() / 2);
    for pair in hex.chunks_exact(2) {
        out.push((nibble(pair[0])? << 4) | nibble(pair[1])?);
    }
    Ok(Bytes::from(out))
}

/// Parses a timestamp column value to Unix milliseconds: timestamptz and timestamp
/// (taken as UTC) text output, or an integer column holding epoch milliseconds.
pub fn parse_timestamp_ms(type_oid: u32, text: &str) -> Result<i64, String> {
    match type_oid {
        oid::INT8 | oid::INT4 | oid::INT2 => text
            .parse::<i64>()
            .map_err(|_| format!("{text:?} is not an integer of epoch milliseconds")),
        oid::TIMESTAMP => NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
            .map(|t| t.and_utc().timestamp_millis())
            .map_err(|e| format!("{text:?} is not a timestamp: {e}")),
        _ => DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z")
            .map(|t| t.timestamp_millis())
            .map_err(|e| format!("{text:?} is not a timestamp with time zone: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytea_hex_round_trips() {
        assert_eq!(
            decode_bytea(b"\\x00ff10Ab").unwrap().as_ref(),
            &[0, 255, 16, 171]
        );
        assert_eq!(decode_bytea(b"\\x").unwrap().len(), 0);
        assert!(decode_bytea(b"\\x0").is_err());
        assert!(decode_bytea(b"\\xzz").is_err());
        assert!(decode_bytea(b"abc").is_err());
    }

    #[test]
    fn timestamps_parse_in_every_shape_postgres_prints() {
        let ms = 1_795_000_000_123; // 2026-11-18T11:06:40.123Z
        let tz = parse_timestamp_ms(oid::TIMESTAMPTZ, "2026-11-18 11:06:40.123+00").unwrap();
        assert_eq!(tz, ms);
        let tz2 = parse_timestamp_ms(oid::TIMESTAMPTZ, "2026-11-18 13:06:40.123456+02").unwrap();
        assert_eq!(tz2, ms);
        let tz3 = parse_timestamp_ms(oid::TIMESTAMPTZ, "2026-11-18 11:36:40.123+00:30").unwrap();
        assert_eq!(tz3, ms);
        let naive = parse_timestamp_ms(oid::TIMESTAMP, "2026-11-18 11:06:40.123").unwrap();
        assert_eq!(naive, ms);
        assert_eq!(parse_timestamp_ms(oid::INT8, "42").unwrap(), 42);
        assert!(parse_timestamp_ms(oid::TIMESTAMPTZ, "infinity").is_err());
    }
}

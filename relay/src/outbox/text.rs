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
/// As [`parse_timestamp_ms`], from the column's bytes: the common ISO layout is read
/// without a separate UTF-8 pass (it is ASCII by construction).
pub fn parse_timestamp_ms_bytes(type_oid: u32, bytes: &[u8]) -> Result<i64, String> {
    if !matches!(type_oid, oid::INT8 | oid::INT4 | oid::INT2) {
        if let Some(ms) = fast_iso(bytes, type_oid) {
            return Ok(ms);
        }
    }
    parse_timestamp_ms(type_oid, std::str::from_utf8(bytes).unwrap_or(""))
}

pub fn parse_timestamp_ms(type_oid: u32, text: &str) -> Result<i64, String> {
    if matches!(type_oid, oid::INT8 | oid::INT4 | oid::INT2) {
        return text
            .parse::<i64>()
            .map_err(|_| format!("{text:?} is not an integer of epoch milliseconds"));
    }
    // Every event of a Debezium-shaped table has one: the fixed layout PostgreSQL prints
    // (ISO DateStyle) is read directly; chrono's format-string parser took about a tenth
    // of the relay's user CPU per event (perf, null-sink drain).
    if let Some(ms) = fast_iso(text.as_bytes(), type_oid) {
        return Ok(ms);
    }
    if type_oid == oid::TIMESTAMP {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
            .map(|t| t.and_utc().timestamp_millis())
            .map_err(|e| format!("{text:?} is not a timestamp: {e}"))
    } else {
        DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z")
            .map(|t| t.timestamp_millis())
            .map_err(|e| format!("{text:?} is not a timestamp with time zone: {e}"))
    }
}

/// `YYYY-MM-DD HH:MM:SS[.f{1,6}]` followed, for timestamptz, by `±HH[:MM[:SS]]`, in
/// Unix milliseconds (fractions truncated, as chrono does); `None` for anything else
/// (years past 9999, BC, infinity, other DateStyles), which takes the general parser.
fn fast_iso(b: &[u8], type_oid: u32) -> Option<i64> {
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b' '
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let mut n = 0i64;
        for &c in b.get(range)? {
            if !c.is_ascii_digit() {
                return None;
            }
            n = n * 10 + i64::from(c - b'0');
        }
        Some(n)
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = i - start;
        if digits == 0 || digits > 6 {
            return None;
        }
        for (k, &c) in b[start..i].iter().take(3).enumerate() {
            millis += i64::from(c - b'0') * [100, 10, 1][k];
        }
    }
    let mut offset_secs = 0i64;
    // As in the general parser: anything but `timestamp` is read as timestamptz.
    if type_oid != oid::TIMESTAMP {
        let sign = match b.get(i)? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        // `HH`, `HH:MM` or `HH:MM:SS`.
        let rest = &b[i + 1..];
        if !matches!(rest.len(), 2 | 5 | 8) {
            return None;
        }
        let mut unit = 3600;
        for (k, part) in rest.split(|&c| c == b':').enumerate() {
            let [h, l] = part else { return None };
            if k > 2 || !h.is_ascii_digit() || !l.is_ascii_digit() {
                return None;
            }
            offset_secs += i64::from((h - b'0') * 10 + (l - b'0')) * unit;
            unit /= 60;
        }
        offset_secs *= sign;
    } else if i != b.len() {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    Some(secs * 1000 + millis)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The general parser, for comparison.
    fn chrono_ms(type_oid: u32, text: &str) -> Option<i64> {
        if type_oid == oid::TIMESTAMP {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
                .ok()
                .map(|t| t.and_utc().timestamp_millis())
        } else {
            DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z")
                .ok()
                .map(|t| t.timestamp_millis())
        }
    }

    proptest! {
        /// Whatever PostgreSQL prints, the direct reading equals chrono's.
        #[test]
        fn the_direct_reading_equals_the_general_parser(
            secs in 0i64..253_402_300_799, // 1970 to 9999-12-31
            micros in 0u32..1_000_000,
            digits in 0usize..=6,
            offset_min in -15 * 60i32..=15 * 60,
            with_seconds_offset in any::<bool>(),
            tz in any::<bool>(),
        ) {
            let t = chrono::DateTime::from_timestamp(secs, micros * 1000).unwrap().naive_utc();
            let mut text = t.format("%Y-%m-%d %H:%M:%S").to_string();
            if digits > 0 {
                let f = format!("{micros:06}");
                text.push('.');
                text.push_str(&f[..digits]);
            }
            let type_oid = if tz { oid::TIMESTAMPTZ } else { oid::TIMESTAMP };
            if tz {
                let sign = if offset_min < 0 { '-' } else { '+' };
                let m = offset_min.abs();
                text.push_str(&format!("{sign}{:02}", m / 60));
                if m % 60 != 0 || with_seconds_offset {
                    text.push_str(&format!(":{:02}", m % 60));
                }
            }
            let fast = fast_iso(text.as_bytes(), type_oid);
            prop_assert!(fast.is_some(), "{text}");
            prop_assert_eq!(fast, chrono_ms(type_oid, &text), "{}", text);
        }
    }

    #[test]
    fn shapes_the_direct_reading_leaves_to_the_general_parser() {
        for text in [
            "infinity",
            "2026-11-18 11:06:40 BC",
            "12026-11-18 11:06:40+00",
            "2026-02-30 00:00:00+00",
            "2026-11-18T11:06:40+00",
            "2026-11-18 11:06:40.1234567+00",
        ] {
            assert_eq!(fast_iso(text.as_bytes(), oid::TIMESTAMPTZ), None, "{text}");
        }
        assert_eq!(fast_iso(b"2026-11-18 11:06:40+00", oid::TIMESTAMP), None);
        assert_eq!(
            fast_iso(b"2024-02-29 00:00:00", oid::TIMESTAMP),
            Some(1_709_164_800_000)
        );
    }

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

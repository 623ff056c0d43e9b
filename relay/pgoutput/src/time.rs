//! PostgreSQL timestamps.
//!
//! pgoutput sends `TimestampTz` values as microseconds since the PostgreSQL epoch,
//! 2000-01-01 00:00:00 UTC. The decoder keeps them as they are on the wire; these
//! helpers convert to and from the Unix epoch.

/// The PostgreSQL epoch (2000-01-01T00:00:00Z) in microseconds since the Unix epoch.
pub const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

/// Converts microseconds since 2000-01-01 into microseconds since 1970-01-01.
///
/// PostgreSQL's `infinity` and `-infinity` (`i64::MAX`, `i64::MIN`) are passed
/// through unchanged; other values saturate instead of overflowing.
pub const fn pg_timestamp_to_unix_micros(pg_micros: i64) -> i64 {
    match pg_micros {
        i64::MAX | i64::MIN => pg_micros,
        v => v.saturating_add(PG_EPOCH_UNIX_MICROS),
    }
}

/// Converts microseconds since 1970-01-01 into microseconds since 2000-01-01,
/// the inverse of [`pg_timestamp_to_unix_micros`].
pub const fn unix_micros_to_pg_timestamp(unix_micros: i64) -> i64 {
    match unix_micros {
        i64::MAX | i64::MIN => unix_micros,
        v => v.saturating_sub(PG_EPOCH_UNIX_MICROS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_offsets() {
        assert_eq!(pg_timestamp_to_unix_micros(0), 946_684_800_000_000);
        // 2024-01-01T00:00:00Z
        assert_eq!(
            pg_timestamp_to_unix_micros(757_382_400_000_000),
            1_704_067_200_000_000
        );
        assert_eq!(unix_micros_to_pg_timestamp(PG_EPOCH_UNIX_MICROS), 0);
        assert_eq!(pg_timestamp_to_unix_micros(i64::MAX), i64::MAX);
        assert_eq!(pg_timestamp_to_unix_micros(i64::MIN), i64::MIN);
        assert_eq!(pg_timestamp_to_unix_micros(i64::MAX - 1), i64::MAX);
        assert_eq!(unix_micros_to_pg_timestamp(i64::MIN + 1), i64::MIN);
    }
}

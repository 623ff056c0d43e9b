//! W3C trace context carried from the outbox row into headers.

use bytes::Bytes;
use outbox_connectors::Text;

/// Extracts `traceparent` (and `tracestate`) from a tracing-span-context column.
///
/// Debezium's tracing writes the column as Java properties (`traceparent=00-…`, one per
/// line); a bare `traceparent` value is accepted too. Anything else yields no headers:
/// trace context is best-effort metadata, not part of the event.
pub fn trace_headers(text: &str) -> Vec<(Text, Bytes)> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (key, value) = match line.split_once(['=', ':']) {
            Some((k, v)) => (k.trim(), v.trim()),
            None if looks_like_traceparent(line) => ("traceparent", line),
            None => continue,
        };
        match key {
            "traceparent" if looks_like_traceparent(value) => out.push((
                Text::from_static("traceparent"),
                Bytes::copy_from_slice(value.as_bytes()),
            )),
            "tracestate" if !value.is_empty() => out.push((
                Text::from_static("tracestate"),
                Bytes::copy_from_slice(value.as_bytes()),
            )),
            _ => {}
        }
    }
    out
}

/// `version-traceid-parentid-flags`: 2, 32, 16 and 2 lowercase hex digits.
fn looks_like_traceparent(v: &str) -> bool {
    let parts: Vec<&str> = v.split('-').collect();
    parts.len() == 4
        && [2, 32, 16, 2]
            .iter()
            .zip(&parts)
            .all(|(n, p)| p.len() == *n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn reads_debezium_properties_and_bare_values() {
        let props = format!("#Mon Jan 01\ntraceparent={TP}\ntracestate=congo=t61rcWkgMzE\n");
        let h = trace_headers(&props);
        assert_eq!(h[0], ("traceparent".into(), Bytes::from(TP)));
        assert_eq!(
            h[1],
            ("tracestate".into(), Bytes::from("congo=t61rcWkgMzE"))
        );
        assert_eq!(
            trace_headers(TP),
            vec![("traceparent".into(), Bytes::from(TP))]
        );
        assert!(trace_headers("traceparent=garbage").is_empty());
        assert!(trace_headers("").is_empty());
    }
}

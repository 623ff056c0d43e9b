//! W3C trace context: each hop of the saga continues the trace it received with a new span,
//! so one trace id spans the HTTP request, every event and every consumer.

use rand::Rng;

/// A `traceparent` value for a new span in the trace of `parent` (a new trace without a
/// valid parent).
pub fn child_of(parent: Option<&str>) -> String {
    let mut rng = rand::rng();
    let trace = parent
        .and_then(trace_id)
        .unwrap_or_else(|| format!("{:032x}", rng.random::<u128>() | 1));
    let span = format!("{:016x}", rng.random::<u64>() | 1);
    format!("00-{trace}-{span}-01")
}

/// The trace id of a valid `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`).
pub fn trace_id(traceparent: &str) -> Option<String> {
    let parts: Vec<&str> = traceparent.trim().split('-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    match parts.as_slice() {
        [v, t, s, f] if hex(v, 2) && hex(t, 32) && hex(s, 16) && hex(f, 2) => {
            Some(t.to_ascii_lowercase())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_keeps_the_trace_and_makes_a_new_span() {
        let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let child = child_of(Some(parent));
        assert_eq!(
            trace_id(&child).as_deref(),
            Some("0af7651916cd43dd8448eb211c80319c")
        );
        assert_ne!(child, parent);
        assert_eq!(child.len(), parent.len());
    }

    #[test]
    fn invalid_parent_starts_a_new_trace() {
        let child = child_of(Some("garbage"));
        assert!(trace_id(&child).is_some());
        assert_eq!(trace_id("00-xyz-abc-01"), None);
    }
}

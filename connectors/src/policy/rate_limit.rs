//! Holding back repeated log messages: the first of a kind is logged at once, repeats
//! within a window are counted, and the next one logged after the window says how many
//! were held back. Nothing is hidden for long: a condition that persists is reported again
//! every window. Shared by the connectors (librdkafka's reconnect storms, the SNS/SQS
//! "still retrying" and "failed permanently" warnings of many aggregates at once).

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The window the connectors use: repeats of one message are held back this long.
pub const LOG_WINDOW: Duration = Duration::from_secs(30);

/// Past this many distinct kinds, kinds not seen for a window are forgotten.
const MAX_KINDS: usize = 256;

/// Decides, per kind of message, whether to log it now.
#[derive(Debug)]
pub struct RateLimiter {
    window: Duration,
    kinds: HashMap<String, Kind>,
}

#[derive(Debug)]
struct Kind {
    logged_at: Instant,
    held: u64,
}

impl RateLimiter {
    pub fn new(window: Duration) -> Self {
        RateLimiter {
            window,
            kinds: HashMap::new(),
        }
    }

    /// `Some(held)` if a message of `kind` arriving at `now` is to be logged, with the
    /// number of its kind held back since the last one logged; `None` to hold it back.
    pub fn admit(&mut self, kind: &str, now: Instant) -> Option<u64> {
        if let Some(k) = self.kinds.get_mut(kind) {
            if now.duration_since(k.logged_at) < self.window {
                k.held += 1;
                return None;
            }
            let held = k.held;
            k.logged_at = now;
            k.held = 0;
            return Some(held);
        }
        if self.kinds.len() >= MAX_KINDS {
            let window = self.window;
            self.kinds
                .retain(|_, k| now.duration_since(k.logged_at) < window);
        }
        self.kinds.insert(
            kind.to_string(),
            Kind {
                logged_at: now,
                held: 0,
            },
        );
        Some(0)
    }

    /// Like [`admit`](Self::admit), as the text to append to the message logged: `""`, or
    /// `" (N more like it in the last 30s)"`.
    pub fn admit_suffix(&mut self, kind: &str, now: Instant) -> Option<String> {
        let window = self.window;
        self.admit(kind, now).map(|held| match held {
            0 => String::new(),
            n => format!(" ({n} more like it in the last {}s)", window.as_secs()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_within_the_window_are_held_back_and_counted_in_the_next_one_logged() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(Duration::from_secs(30));
        assert_eq!(l.admit("FAIL refused", t0), Some(0));
        for ms in [50, 100, 29_999] {
            assert_eq!(
                l.admit("FAIL refused", t0 + Duration::from_millis(ms)),
                None
            );
        }
        // Another kind is independent.
        assert_eq!(
            l.admit("AllBrokersDown", t0 + Duration::from_millis(60)),
            Some(0)
        );
        assert_eq!(
            l.admit("FAIL refused", t0 + Duration::from_secs(30)),
            Some(3)
        );
        assert_eq!(l.admit("FAIL refused", t0 + Duration::from_secs(31)), None);
        assert_eq!(
            l.admit("FAIL refused", t0 + Duration::from_secs(60)),
            Some(1)
        );
    }

    #[test]
    fn kinds_are_forgotten_only_when_many_and_stale() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(Duration::from_secs(30));
        for i in 0..MAX_KINDS {
            assert_eq!(l.admit(&format!("k{i}"), t0), Some(0));
        }
        // Full, but every kind is within its window: nothing forgotten, k0 still held.
        assert_eq!(l.admit("new", t0 + Duration::from_secs(1)), Some(0));
        assert_eq!(l.admit("k0", t0 + Duration::from_secs(2)), None);
        // A window later the stale kinds go when the next new kind arrives.
        assert_eq!(l.admit("newer", t0 + Duration::from_secs(40)), Some(0));
        assert!(l.kinds.len() <= 3, "{}", l.kinds.len());
    }

    #[test]
    fn the_suffix_counts_what_was_held_back() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(Duration::from_secs(30));
        assert_eq!(l.admit_suffix("x", t0).as_deref(), Some(""));
        assert_eq!(l.admit_suffix("x", t0 + Duration::from_secs(1)), None);
        assert_eq!(
            l.admit_suffix("x", t0 + Duration::from_secs(30)).as_deref(),
            Some(" (1 more like it in the last 30s)")
        );
    }
}

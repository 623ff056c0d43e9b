//! Exponential backoff with jitter: the project's one retry schedule (SNS/SQS lanes,
//! session restarts).

use std::time::Duration;

use rand::Rng;

/// Delays that double from `initial` up to `max`, with "equal jitter": half of each step
/// is fixed and half random, so many clients retrying at once spread out while each still
/// waits at least half the step.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max: max.max(initial),
            attempt: 0,
        }
    }

    /// The delay before the next attempt; each call counts one more failure.
    pub fn next_delay(&mut self) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        Self::delay(self.attempt, self.initial, self.max)
    }

    /// Failures counted since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Back to `initial` (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The delay after the `attempt`-th consecutive failure (1-based).
    pub fn delay(attempt: u32, initial: Duration, max: Duration) -> Duration {
        let step = initial
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(max);
        let half = step / 2;
        half + half.mul_f64(rand::rng().random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_is_capped_and_resets() {
        let initial = Duration::from_millis(100);
        let max = Duration::from_secs(5);
        let mut b = Backoff::new(initial, max);
        let d1 = b.next_delay();
        assert!(d1 >= Duration::from_millis(50) && d1 <= initial, "{d1:?}");
        b.next_delay();
        b.next_delay();
        let d4 = b.next_delay();
        assert!(
            d4 >= Duration::from_millis(400) && d4 <= Duration::from_millis(800),
            "{d4:?}"
        );
        for _ in 0..40 {
            b.next_delay();
        }
        let capped = b.next_delay();
        assert!(capped >= max / 2 && capped <= max, "{capped:?}");
        assert_eq!(b.attempts(), 45);
        b.reset();
        assert!(b.next_delay() <= initial);
    }

    #[test]
    fn jitter_spreads_the_delays() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            seen.insert(Backoff::delay(
                3,
                Duration::from_millis(100),
                Duration::from_secs(1),
            ));
        }
        assert!(seen.len() > 10, "{} distinct delays out of 50", seen.len());
    }
}

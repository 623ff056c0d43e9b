//! The circuit breaker: one policy for every sink, kept per destination.
//!
//! **Closed** (requests flow) → after `failure_threshold` consecutive retryable failures,
//! **Open**: nothing is sent to the destination for a cool-down that grows with each
//! opening in a row (the shared [`Backoff`], capped, jittered) → **HalfOpen**: exactly one
//! probe request goes → its success closes the circuit, its failure opens it again for a
//! longer cool-down. A failing destination is then tried about once per cool-down instead
//! of at full rate, and its state is visible (`outbox_relay_circuit_state`).
//!
//! The breaker only decides *when* to send; it never drops or reorders anything: what
//! waits behind an open circuit is sent, in order, once it closes.

use std::time::Duration;

use tokio::time::Instant;

use super::Backoff;

/// The configuration block of a sink's breaker (`sink.<kind>.circuit_breaker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Consecutive failed requests to one destination that open its circuit; 0 = no
    /// breaker (retry at the retry backoff only).
    pub failure_threshold: u32,
    /// First cool-down of an open circuit, in ms; doubles per opening in a row.
    #[serde(rename = "open_initial_ms", with = "crate::duration_ms")]
    pub open_initial: Duration,
    /// Longest cool-down, in ms.
    #[serde(rename = "open_max_ms", with = "crate::duration_ms")]
    pub open_max: Duration,
    /// What happens to events for a destination whose circuit is open: `stall` (they wait,
    /// and so does everything behind them; the slot holds WAL) or `park` (they go to the
    /// parking table, in order per aggregate, so the slot keeps advancing and other
    /// destinations keep flowing; needs the state tables).
    pub on_open: OnOpen,
    /// With `on_open: park`: redrive the aggregates parked because a circuit was open as
    /// soon as it closes again.
    pub redrive_on_close: bool,
}

/// `circuit_breaker.on_open`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnOpen {
    #[default]
    Stall,
    Park,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        let d = BreakerSettings::default();
        BreakerConfig {
            failure_threshold: d.failure_threshold,
            open_initial: d.open_initial,
            open_max: d.open_max,
            on_open: OnOpen::Stall,
            redrive_on_close: true,
        }
    }
}

impl BreakerConfig {
    /// `None` when the breaker is off.
    pub fn settings(&self) -> Option<BreakerSettings> {
        let open_initial = self.open_initial.max(Duration::from_millis(1));
        (self.failure_threshold > 0).then(|| BreakerSettings {
            failure_threshold: self.failure_threshold,
            open_initial,
            open_max: self.open_max.max(open_initial),
        })
    }

    /// Whether events for an open circuit go to parking.
    pub fn parks(&self) -> bool {
        self.failure_threshold > 0 && self.on_open == OnOpen::Park
    }
}

/// A destination's circuit, as reported for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitReport {
    pub destination: std::sync::Arc<str>,
    pub state: CircuitState,
    /// Transitions into each state since the connector started: closed, half-open, open.
    pub transitions: [u64; 3],
}

/// Breaker settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive retryable failures that open the circuit.
    pub failure_threshold: u32,
    /// First cool-down; doubles per opening in a row, up to `open_max`.
    pub open_initial: Duration,
    pub open_max: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            failure_threshold: 5,
            open_initial: Duration::from_secs(1),
            open_max: Duration::from_secs(60),
        }
    }
}

/// A circuit's state; the number is the metric's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CircuitState {
    Closed = 0,
    HalfOpen = 1,
    Open = 2,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::HalfOpen => "half_open",
            CircuitState::Open => "open",
        }
    }
}

/// One destination's breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    settings: BreakerSettings,
    state: CircuitState,
    consecutive_failures: u32,
    /// Openings since the circuit was last closed (sets the cool-down).
    openings: u32,
    open_until: Option<Instant>,
    /// When the circuit last opened: an answer to a request sent before it says nothing
    /// about the destination now.
    opened_at: Option<Instant>,
    probe_in_flight: bool,
}

impl Breaker {
    pub fn new(settings: BreakerSettings) -> Self {
        Breaker {
            settings,
            state: CircuitState::Closed,
            consecutive_failures: 0,
            openings: 0,
            open_until: None,
            opened_at: None,
            probe_in_flight: false,
        }
    }

    pub fn state(&self) -> CircuitState {
        self.state
    }

    /// Whether a request may go now. An open circuit whose cool-down has passed turns
    /// half-open and lets exactly one request (the probe) through; the returned
    /// transition, if any, is for the caller to report.
    pub fn try_acquire(&mut self, now: Instant) -> (bool, Option<CircuitState>) {
        match self.state {
            CircuitState::Closed => (true, None),
            CircuitState::Open if self.open_until.is_some_and(|t| now >= t) => {
                self.state = CircuitState::HalfOpen;
                self.probe_in_flight = true;
                (true, Some(CircuitState::HalfOpen))
            }
            CircuitState::Open => (false, None),
            CircuitState::HalfOpen if !self.probe_in_flight => {
                self.probe_in_flight = true;
                (true, None)
            }
            CircuitState::HalfOpen => (false, None),
        }
    }

    /// When an open circuit will let a probe through (for scheduling a wake-up).
    pub fn reopens_at(&self) -> Option<Instant> {
        match self.state {
            CircuitState::Open => self.open_until,
            _ => None,
        }
    }

    /// A request sent at `sent_at` succeeded: a closed circuit's failure count starts
    /// over, a half-open one closes. An answer to a request sent before the circuit opened
    /// (still in flight then) changes nothing: only the probe after the cool-down may close
    /// it — otherwise every late answer would flap the circuit closed and open again.
    pub fn on_success(&mut self, sent_at: Instant) -> Option<CircuitState> {
        match self.state {
            CircuitState::Closed => {
                self.consecutive_failures = 0;
                return None;
            }
            _ if self.is_late(sent_at) => return None,
            CircuitState::Open => return None,
            CircuitState::HalfOpen => {}
        }
        self.consecutive_failures = 0;
        self.probe_in_flight = false;
        self.state = CircuitState::Closed;
        self.openings = 0;
        self.open_until = None;
        Some(CircuitState::Closed)
    }

    fn is_late(&self, sent_at: Instant) -> bool {
        self.opened_at.is_some_and(|opened| sent_at < opened)
    }

    /// A request sent at `sent_at` failed retryably: after enough of them (or a failed
    /// probe) the circuit opens for a cool-down. A late failure of a request sent before
    /// the circuit opened is already counted.
    pub fn on_failure(&mut self, sent_at: Instant, now: Instant) -> Option<CircuitState> {
        if self.state != CircuitState::Closed && self.is_late(sent_at) {
            return None;
        }
        self.probe_in_flight = false;
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let open = match self.state {
            CircuitState::Closed => self.consecutive_failures >= self.settings.failure_threshold,
            CircuitState::HalfOpen => true,
            CircuitState::Open => false,
        };
        if !open {
            return None;
        }
        self.openings = self.openings.saturating_add(1);
        let cool_down = Backoff::delay(
            self.openings,
            self.settings.open_initial,
            self.settings.open_max,
        );
        self.open_until = Some(now + cool_down);
        self.opened_at = Some(now);
        self.state = CircuitState::Open;
        Some(CircuitState::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BreakerSettings {
        BreakerSettings {
            failure_threshold: 3,
            open_initial: Duration::from_secs(2),
            open_max: Duration::from_secs(8),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_probes_after_the_cool_down_and_closes() {
        let mut b = Breaker::new(settings());
        let now = Instant::now();
        assert_eq!(b.on_failure(now, now), None);
        assert_eq!(b.on_success(now), None, "a success resets the count");
        assert_eq!(b.on_failure(now, now), None);
        assert_eq!(b.on_failure(now, now), None);
        assert_eq!(b.on_failure(now, now), Some(CircuitState::Open));
        assert_eq!(b.try_acquire(now), (false, None));
        let reopens = b.reopens_at().unwrap();
        // Equal jitter: the first cool-down is 1–2 s.
        assert!(reopens >= now + Duration::from_secs(1) && reopens <= now + Duration::from_secs(2));

        tokio::time::advance(Duration::from_secs(2)).await;
        let later = Instant::now();
        assert_eq!(b.try_acquire(later), (true, Some(CircuitState::HalfOpen)));
        assert_eq!(b.try_acquire(later), (false, None), "one probe at a time");
        assert_eq!(b.on_success(later), Some(CircuitState::Closed));
        assert_eq!(b.try_acquire(later), (true, None));
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_answer_to_a_request_sent_before_the_opening_changes_nothing() {
        let mut b = Breaker::new(settings());
        let before = Instant::now();
        tokio::time::advance(Duration::from_millis(10)).await;
        for _ in 0..3 {
            b.on_failure(Instant::now(), Instant::now());
        }
        assert_eq!(b.state(), CircuitState::Open);
        assert_eq!(b.on_success(before), None);
        assert_eq!(b.state(), CircuitState::Open, "only the probe may close it");
        tokio::time::advance(Duration::from_secs(2)).await;
        let probe = Instant::now();
        assert!(b.try_acquire(probe).0);
        assert_eq!(b.on_success(before), None, "late, even while half-open");
        assert_eq!(b.on_failure(before, probe), None, "late failures too");
        assert_eq!(b.state(), CircuitState::HalfOpen);
        assert_eq!(b.on_success(probe), Some(CircuitState::Closed));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens_for_longer_up_to_the_cap() {
        let mut b = Breaker::new(settings());
        for _ in 0..3 {
            b.on_failure(Instant::now(), Instant::now());
        }
        let mut cool_downs = Vec::new();
        for _ in 0..5 {
            let opened = Instant::now();
            let reopens = b.reopens_at().unwrap();
            cool_downs.push(reopens - opened);
            tokio::time::advance(reopens - opened).await;
            assert!(b.try_acquire(Instant::now()).0);
            let now = Instant::now();
            assert_eq!(b.on_failure(now, now), Some(CircuitState::Open));
        }
        // 1–2 s, 2–4 s, 4–8 s, then capped at 4–8 s.
        let bounds = [(1, 2), (2, 4), (4, 8), (4, 8), (4, 8)];
        for (d, (lo, hi)) in cool_downs.iter().zip(bounds) {
            assert!(
                *d >= Duration::from_secs(lo) && *d <= Duration::from_secs(hi),
                "{cool_downs:?}"
            );
        }
    }
}

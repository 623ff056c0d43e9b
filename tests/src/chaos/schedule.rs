//! The fault schedule: drawn from a seed, printed before the run, so that a failing run can
//! be replayed with the same faults, each after the same quiet time following the relay's
//! recovery from the one before (`--seed`). Gaps rather than absolute times: faults whose
//! recovery takes long (a broker restart) would otherwise pile the rest up back to back.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// Every kind of fault the suite injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// SIGKILL the relay (the leader, with replicas) and start it again.
    RelaySigkill,
    /// The sink unreachable (param 0) or slow (param: latency ms), and the relay SIGKILLed
    /// in the middle of it, with events accepted but not acknowledged; started again once
    /// the sink is back: whatever it had confirmed must have been delivered.
    RelaySigkillSinkDegraded,
    /// SIGSTOP the relay for a while (sometimes past `wal_sender_timeout`), then SIGCONT.
    RelaySigstop,
    /// `pg_ctl restart -m immediate`: a crash, recovery from WAL.
    PgRestartImmediate,
    /// `pg_ctl restart -m fast`.
    PgRestartFast,
    /// SIGKILL the Kafka broker, start it again after a while.
    KafkaSigkill,
    /// Network faults between the relay and PostgreSQL (`Pg`) or its sink (`Sink`): every
    /// connection closed and new ones refused (cut), delay, a bandwidth limit, a reset,
    /// connections whose bytes are sliced into small delayed pieces, a server-side close
    /// that reaches the relay slowly, or connections that go silent (half-open).
    NetCut(Side),
    NetLatency(Side),
    NetBandwidth(Side),
    NetReset(Side),
    NetSlicer(Side),
    NetSlowClose(Side),
    NetHalfOpen(Side),
    /// The SNS/SQS emulator unreachable for a while (the sink's proxy disabled).
    AwsOutage,
    /// Two replicas: SIGKILL the leader, the standby takes over.
    LeaderFailover,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    Pg,
    Sink,
}

impl Kind {
    pub fn label(&self) -> String {
        let side = |s: &Side| match s {
            Side::Pg => "pg",
            Side::Sink => "sink",
        };
        match self {
            Kind::RelaySigkill => "relay_sigkill".into(),
            Kind::RelaySigkillSinkDegraded => "relay_sigkill_sink_degraded".into(),
            Kind::RelaySigstop => "relay_sigstop".into(),
            Kind::PgRestartImmediate => "pg_restart_immediate".into(),
            Kind::PgRestartFast => "pg_restart_fast".into(),
            Kind::KafkaSigkill => "kafka_sigkill".into(),
            Kind::NetCut(s) => format!("net_{}_cut", side(s)),
            Kind::NetLatency(s) => format!("net_{}_latency", side(s)),
            Kind::NetBandwidth(s) => format!("net_{}_bandwidth", side(s)),
            Kind::NetReset(s) => format!("net_{}_reset", side(s)),
            Kind::NetSlicer(s) => format!("net_{}_slicer", side(s)),
            Kind::NetSlowClose(s) => format!("net_{}_slow_close", side(s)),
            Kind::NetHalfOpen(s) => format!("net_{}_half_open", side(s)),
            Kind::AwsOutage => "aws_outage".into(),
            Kind::LeaderFailover => "leader_failover".into(),
        }
    }
}

/// One planned fault.
#[derive(Debug, Clone)]
pub struct Fault {
    pub n: usize,
    /// Seconds of quiet before it: after the relay recovered from the previous fault (or
    /// after the load started, for the first).
    pub gap: f64,
    pub kind: Kind,
    /// How long the fault lasts (a stop, an outage, a toxic), in milliseconds.
    pub hold_ms: u64,
    /// The kind's parameter: latency ms, bandwidth KB/s, slow-close delay ms, slicer
    /// average bytes; 0 otherwise.
    pub param: u64,
}

impl Fault {
    pub fn to_json(&self) -> Value {
        json!({
            "n": self.n,
            "gap_s": (self.gap * 10.0).round() / 10.0,
            "kind": self.kind.label(),
            "hold_ms": self.hold_ms,
            "param": self.param,
        })
    }
}

/// The kinds a run draws from: `kafka` for the Kafka sink (else an AWS sink), `replicas`
/// two for leader failover.
pub fn kinds(kafka: bool, replicas: usize) -> Vec<Kind> {
    let mut k = vec![
        Kind::RelaySigkill,
        Kind::RelaySigkillSinkDegraded,
        Kind::RelaySigstop,
        Kind::PgRestartImmediate,
        Kind::PgRestartFast,
    ];
    for side in [Side::Pg, Side::Sink] {
        k.extend([
            Kind::NetCut(side),
            Kind::NetLatency(side),
            Kind::NetBandwidth(side),
            Kind::NetReset(side),
            Kind::NetSlicer(side),
            Kind::NetHalfOpen(side),
        ]);
    }
    // A server-side close exists for PostgreSQL (the walsender terminated).
    k.push(Kind::NetSlowClose(Side::Pg));
    k.push(if kafka {
        Kind::KafkaSigkill
    } else {
        Kind::AwsOutage
    });
    if replicas > 1 {
        k.push(Kind::LeaderFailover);
    }
    k
}

/// `n` faults: every kind once (in a random order) while `n` allows, then random kinds;
/// quiet gaps of `window_s / n` on average (0.2 to 1.8 times that).
pub fn draw(seed: u64, n: usize, window_s: f64, kinds: &[Kind]) -> Vec<Fault> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut order: Vec<Kind> = kinds.to_vec();
    order.shuffle(&mut rng);
    order.truncate(n);
    while order.len() < n {
        order.push(kinds[rng.random_range(0..kinds.len())]);
    }
    let mean_gap = window_s / n as f64;
    order
        .into_iter()
        .enumerate()
        .map(|(i, kind)| {
            let gap = mean_gap * rng.random_range(0.2..1.8);
            let (hold_ms, param) = match kind {
                Kind::RelaySigkill | Kind::LeaderFailover => (rng.random_range(0..2000), 0),
                Kind::RelaySigkillSinkDegraded => (
                    rng.random_range(3000..10000),
                    if rng.random_bool(0.5) {
                        0
                    } else {
                        rng.random_range(300..2000)
                    },
                ),
                // Half of the stops outlast the 6 s wal_sender_timeout the suite sets.
                Kind::RelaySigstop => {
                    if rng.random_bool(0.5) {
                        (rng.random_range(500..4000), 0)
                    } else {
                        (rng.random_range(8000..14000), 0)
                    }
                }
                Kind::PgRestartImmediate | Kind::PgRestartFast => (0, 0),
                Kind::KafkaSigkill => (rng.random_range(1000..8000), 0),
                Kind::AwsOutage => (rng.random_range(5000..30000), 0),
                Kind::NetCut(_) | Kind::NetReset(_) => (rng.random_range(500..8000), 0),
                Kind::NetLatency(_) => (rng.random_range(3000..15000), rng.random_range(50..1500)),
                Kind::NetBandwidth(_) => (rng.random_range(3000..15000), rng.random_range(8..256)),
                Kind::NetSlicer(_) => (rng.random_range(3000..15000), rng.random_range(1..64)),
                Kind::NetSlowClose(_) => {
                    (rng.random_range(3000..10000), rng.random_range(500..5000))
                }
                Kind::NetHalfOpen(_) => (rng.random_range(2000..20000), 0),
            };
            Fault {
                n: i + 1,
                gap,
                kind,
                hold_ms,
                param,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_schedule_covering_every_kind() {
        let k = kinds(true, 1);
        let a = draw(7, 40, 300.0, &k);
        let b = draw(7, 40, 300.0, &k);
        let c = draw(8, 40, 300.0, &k);
        let j = |s: &[Fault]| s.iter().map(Fault::to_json).collect::<Vec<_>>();
        assert_eq!(j(&a), j(&b));
        assert_ne!(j(&a), j(&c));
        for kind in &k {
            assert!(a.iter().any(|f| f.kind == *kind), "{kind:?} missing");
        }
        assert!(a.iter().all(|f| f.gap > 0.0));
    }
}

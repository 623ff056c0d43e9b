//! The restart loop on paused time: backoff that grows while nothing is delivered and
//! starts over after a session that delivered; a poison event that stops the relay after
//! `max_repeated_failures` sessions instead of looping; shutdown during a backoff.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use outbox_connectors::policy::Backoff;
use outbox_connectors::testing::error;
use outbox_connectors::ErrorClass;
use outbox_pgoutput::Lsn;
use tokio::sync::watch;
use tokio::time::Instant;

use super::super::session::SessionEnd;
use super::super::supervisor::{supervise, RestartPolicy};
use crate::error::{FailedEvent, RelayError};
use crate::telemetry::Metrics;

fn policy(max_repeated_failures: u32) -> RestartPolicy {
    RestartPolicy {
        backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(10)),
        max_repeated_failures,
        auth_failure_retry: Duration::from_secs(5),
    }
}

fn auth_failure() -> RelayError {
    RelayError::Postgres(outbox_pgwire::PgWireError::Server(
        outbox_pgwire::ServerError {
            severity: "FATAL".into(),
            code: "28P01".into(),
            message: "password authentication failed for user \"relay\"".into(),
            detail: None,
            hint: None,
        },
    ))
}

fn event_failed(id: &str) -> RelayError {
    RelayError::EventFailed {
        event: FailedEvent {
            id: id.into(),
            commit_lsn: Lsn(0x10),
            destination: "t".into(),
        },
        error: error(ErrorClass::Fatal, "producer_fatal"),
    }
}

fn stream_ended() -> RelayError {
    RelayError::StreamEnded("server restarted".into())
}

/// Runs `supervise` over scripted session ends; returns its result and when (virtual
/// time since start) each session began.
async fn run(
    max_repeated: u32,
    ends: Vec<(Result<(), RelayError>, bool)>,
) -> (Result<(), RelayError>, Vec<Duration>) {
    let metrics = Metrics::new();
    let (_tx, rx) = watch::channel(false);
    let t0 = Instant::now();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let ends = Arc::new(Mutex::new(ends.into_iter()));
    let result = supervise(policy(max_repeated), &metrics, rx, || {
        starts.lock().unwrap().push(t0.elapsed());
        let (result, progressed) = ends.lock().unwrap().next().unwrap_or((Ok(()), false));
        async move { SessionEnd { result, progressed } }
    })
    .await;
    let starts = starts.lock().unwrap().clone();
    (result, starts)
}

#[tokio::test(start_paused = true)]
async fn backoff_grows_without_progress_and_starts_over_after_progress() {
    let (result, starts) = run(
        5,
        vec![
            (Err(stream_ended()), false),
            (Err(stream_ended()), false),
            (Err(stream_ended()), false),
            (Err(stream_ended()), true), // this one delivered before failing
            (Err(stream_ended()), false),
        ],
    )
    .await;
    assert!(result.is_ok());
    let gaps: Vec<Duration> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    // Equal jitter: the n-th delay lies in [step/2, step], step = 100 ms · 2^(n-1).
    let within = |d: Duration, step_ms: u64| {
        d >= Duration::from_millis(step_ms / 2) && d <= Duration::from_millis(step_ms)
    };
    assert!(within(gaps[0], 100), "{gaps:?}");
    assert!(within(gaps[1], 200), "{gaps:?}");
    assert!(within(gaps[2], 400), "{gaps:?}");
    assert!(
        within(gaps[3], 100),
        "after progress the backoff starts over: {gaps:?}"
    );
    assert!(within(gaps[4], 200), "{gaps:?}");
}

#[tokio::test(start_paused = true)]
async fn the_same_event_failing_session_after_session_stops_the_relay() {
    let ends = (0..10)
        .map(|_| (Err(event_failed("poison")), true))
        .collect();
    let (result, starts) = run(5, ends).await;
    let err = result.unwrap_err();
    assert!(matches!(err, RelayError::Halted(_)), "{err}");
    assert!(!err.is_retryable());
    assert!(
        err.to_string().contains("poison") && err.to_string().contains("5 sessions"),
        "{err}"
    );
    assert_eq!(starts.len(), 5, "exactly max_repeated_failures sessions");
}

#[tokio::test(start_paused = true)]
async fn other_failures_in_between_reset_the_count() {
    let ends = vec![
        (Err(event_failed("p")), false),
        (Err(event_failed("p")), false),
        (Err(stream_ended()), false),
        (Err(event_failed("p")), false),
        (Err(event_failed("q")), false),
        (Err(event_failed("p")), false),
        (Err(event_failed("p")), false),
    ];
    let (result, starts) = run(3, ends).await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(starts.len(), 8);
}

#[tokio::test(start_paused = true)]
async fn shutdown_during_a_backoff_ends_at_once() {
    let metrics = Metrics::new();
    let (tx, rx) = watch::channel(false);
    let t0 = Instant::now();
    let sessions = Arc::new(Mutex::new(0));
    let stop = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        tx.send_replace(true);
    };
    let policy = RestartPolicy {
        backoff: Backoff::new(Duration::from_secs(60), Duration::from_secs(60)),
        max_repeated_failures: 5,
        auth_failure_retry: Duration::ZERO,
    };
    let supervised = supervise(policy, &metrics, rx, || {
        *sessions.lock().unwrap() += 1;
        async {
            SessionEnd {
                result: Err(stream_ended()),
                progressed: false,
            }
        }
    });
    let (result, ()) = tokio::join!(supervised, stop);
    assert!(result.is_ok());
    assert_eq!(*sessions.lock().unwrap(), 1);
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
}

#[tokio::test(start_paused = true)]
async fn a_failure_a_restart_cannot_heal_stops_at_once() {
    let (result, starts) = run(
        5,
        vec![(Err(RelayError::Setup("wal_level is replica".into())), false)],
    )
    .await;
    assert!(matches!(result, Err(RelayError::Setup(_))));
    assert_eq!(starts.len(), 1);
}

/// A password rotated on the server before the relay's secret: authentication failures
/// are retried for the window, then stop the relay (issue 11.8).
#[tokio::test(start_paused = true)]
async fn authentication_failures_are_retried_for_a_window_then_stop() {
    let ends = (0..100).map(|_| (Err(auth_failure()), false)).collect();
    let (result, starts) = run(100, ends).await;
    let err = result.unwrap_err();
    assert!(err.is_auth_failure(), "{err}");
    let last = *starts.last().unwrap();
    assert!(starts.len() > 3, "retried: {starts:?}");
    assert!(
        last >= Duration::from_secs(5) - Duration::from_secs(3) && last < Duration::from_secs(12),
        "stopped once the 5 s window had passed: {starts:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_healed_authentication_failure_goes_on() {
    let ends = vec![
        (Err(auth_failure()), false),
        (Err(auth_failure()), false),
        (Err(stream_ended()), true),
    ];
    let (result, starts) = run(5, ends).await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(starts.len(), 4);
}

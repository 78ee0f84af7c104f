//! The circuit breaker, on tokio's paused clock.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::time::Duration;

use foundation_core::circuit_breaker::{BreakerConfig, BreakerState, CircuitBreaker};

fn breaker() -> CircuitBreaker {
    CircuitBreaker::new(BreakerConfig { failure_threshold: 3, open_for: Duration::from_secs(10) })
}

#[tokio::test(start_paused = true)]
async fn failures_in_a_row_open_it_and_a_success_in_between_resets_the_count() {
    let b = breaker();
    b.try_call().unwrap().failure();
    b.try_call().unwrap().failure();
    b.try_call().unwrap().success();
    assert_eq!(b.state(), BreakerState::Closed { failures: 0 });
    for _ in 0..3 {
        b.try_call().unwrap().failure();
    }
    let refused = b.try_call().unwrap_err();
    assert_eq!(refused.retry_in, Duration::from_secs(10));
    assert!(!b.allows());
}

#[tokio::test(start_paused = true)]
async fn after_open_for_one_probe_decides() {
    let b = breaker();
    for _ in 0..3 {
        b.try_call().unwrap().failure();
    }
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(b.state(), BreakerState::HalfOpen { probing: false });
    let probe = b.try_call().unwrap();
    // Only one probe at a time.
    assert_eq!(b.try_call().unwrap_err().retry_in, Duration::ZERO);
    probe.failure();
    assert!(matches!(b.state(), BreakerState::Open { .. }));
    tokio::time::advance(Duration::from_secs(10)).await;
    // A probe dropped without a verdict frees the slot; a successful one closes the breaker.
    drop(b.try_call().unwrap());
    b.try_call().unwrap().success();
    assert_eq!(b.state(), BreakerState::Closed { failures: 0 });
}

#[tokio::test(start_paused = true)]
async fn late_reports_from_before_it_opened_change_nothing() {
    let b = breaker();
    let early = b.try_call().unwrap();
    for _ in 0..3 {
        b.try_call().unwrap().failure();
    }
    early.failure();
    tokio::time::advance(Duration::from_secs(10)).await;
    // Still the first opening's deadline: the late failure did not extend it.
    assert_eq!(b.state(), BreakerState::HalfOpen { probing: false });
}

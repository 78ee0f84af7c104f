//! The multi-dimensional rate limiter, on tokio's paused clock (time moves only when every task
//! waits, so these tests are exact and never sleep for real).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::time::Duration;

use foundation_core::rate_limit::{Limit, RateLimitError, RateLimiter};
use tokio::time::Instant;

/// 60 requests and 6 000 tokens per minute: one request and 100 tokens per second.
fn rpm_tpm() -> RateLimiter {
    RateLimiter::new([Limit::per_minute("requests", 60), Limit::per_minute("tokens", 6_000)]).unwrap()
}

fn level(limiter: &RateLimiter, dim: usize) -> f64 {
    limiter.available()[dim].1
}

#[tokio::test(start_paused = true)]
async fn a_grant_takes_from_every_dimension_or_from_none() {
    let limiter = rpm_tpm();
    let _p = limiter.try_acquire(&[1, 5_900]).unwrap();
    // Requests could pay, tokens cannot: refused, and requests are untouched.
    let err = limiter.try_acquire(&[1, 500]).unwrap_err();
    match &err {
        RateLimitError::WouldWait { dimension, retry_in: Some(wait) } => {
            assert_eq!(dimension, "tokens");
            // 400 tokens missing at 100 per second.
            assert!((Duration::from_millis(3_990)..=Duration::from_millis(4_010)).contains(wait), "{wait:?}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(level(&limiter, 0), 59.0);
    assert_eq!(level(&limiter, 1), 100.0);
    // After the wait it says, it is granted.
    tokio::time::advance(Duration::from_secs(4)).await;
    assert!(limiter.try_acquire(&[1, 500]).is_ok());
}

#[tokio::test(start_paused = true)]
async fn bad_costs_are_clear_errors() {
    let limiter = rpm_tpm();
    let err = limiter.try_acquire(&[1]).unwrap_err();
    assert!(err.to_string().contains("needs 2 amounts (one per limit: requests, tokens), got 1"), "{err}");
    let err = limiter.acquire(&[1, 10_000], None).await.unwrap_err();
    assert_eq!(err, RateLimitError::TooLarge { dimension: "tokens".into(), cost: 10_000, capacity: 6_000 });
    assert!(RateLimiter::new([Limit::per_minute("requests", 0)]).is_err());
    assert!(RateLimiter::new(Vec::<Limit>::new()).is_err());
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_first_come_first_served() {
    let limiter = rpm_tpm();
    let _drain = limiter.try_acquire(&[1, 6_000]).unwrap();
    let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    // A big request first, then two small ones that could be paid earlier: they wait their turn.
    for (name, tokens) in [("big", 3_000), ("small-1", 100), ("small-2", 100)] {
        let (limiter, order) = (limiter.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            limiter.acquire(&[1, tokens], None).await.unwrap();
            order.lock().unwrap().push((name, Instant::now()));
        }));
        tokio::task::yield_now().await; // queue in this order
    }
    assert_eq!(limiter.waiting(), 3);
    // try_acquire does not jump the queue either.
    assert!(matches!(limiter.try_acquire(&[1, 1]), Err(RateLimitError::WouldWait { .. })));
    for t in tasks {
        t.await.unwrap();
    }
    let order = order.lock().unwrap().clone();
    let names: Vec<&str> = order.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["big", "small-1", "small-2"]);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_or_timed_out_waiter_pays_nothing_and_lets_the_next_go() {
    let limiter = rpm_tpm();
    let _drain = limiter.try_acquire(&[1, 6_000]).unwrap();
    // Times out after 2 s waiting for 3 000 tokens (30 s away).
    let err = limiter.acquire(&[1, 3_000], Some(Duration::from_secs(2))).await.unwrap_err();
    assert!(matches!(&err, RateLimitError::Timeout { dimension, .. } if dimension == "tokens"), "{err}");
    assert_eq!(limiter.waiting(), 0);
    // Cancelled: a waiter for 5 000 tokens is dropped while at the head of the queue.
    let head = {
        let limiter = limiter.clone();
        tokio::spawn(async move { limiter.acquire(&[1, 5_000], None).await })
    };
    tokio::task::yield_now().await;
    let next = {
        let limiter = limiter.clone();
        tokio::spawn(async move {
            limiter.acquire(&[1, 500], Some(Duration::from_secs(30))).await.map(|_| Instant::now())
        })
    };
    tokio::task::yield_now().await;
    assert_eq!(limiter.waiting(), 2);
    head.abort();
    let started = Instant::now();
    let served_at = next.await.unwrap().unwrap();
    // The next waiter needed 500 tokens: about 5 s of refill after the drain at 2 s (it had
    // 200 by then), not the 50 s the cancelled head would have made it wait.
    assert!(served_at - started <= Duration::from_secs(4), "{:?}", served_at - started);
    // Nothing was taken by the two that gave up: the next one was served as soon as 500 tokens
    // had accumulated, and took exactly those.
    assert!((-1.0..1.0).contains(&level(&limiter, 1)), "{}", level(&limiter, 1));
    assert_eq!(limiter.waiting(), 0);
}

#[tokio::test(start_paused = true)]
async fn settling_refunds_or_charges_the_difference() {
    let limiter = rpm_tpm();
    let mut permit = limiter.acquire(&[1, 2_000], None).await.unwrap();
    assert_eq!(level(&limiter, 1), 4_000.0);
    permit.settle(&[1, 500]).unwrap();
    assert_eq!(level(&limiter, 1), 5_500.0);
    assert_eq!(permit.cost(), [1, 500]);
    // An underestimate goes into debt: the next grant waits for it to be paid off.
    let mut permit = limiter.acquire(&[1, 5_000], None).await.unwrap();
    permit.settle(&[1, 7_000]).unwrap();
    assert_eq!(level(&limiter, 1), -1_500.0);
    let err = limiter.try_acquire(&[1, 100]).unwrap_err();
    assert!(
        matches!(err, RateLimitError::WouldWait { retry_in: Some(d), .. } if d > Duration::from_secs(15))
    );
    // A refund never lifts a dimension above what it holds.
    tokio::time::advance(Duration::from_secs(120)).await;
    let mut permit = limiter.try_acquire(&[1, 100]).unwrap();
    permit.settle(&[1, 0]).unwrap();
    assert_eq!(level(&limiter, 1), 6_000.0);
}

#[tokio::test(start_paused = true)]
async fn provider_headers_correct_what_the_limiter_believes() {
    let limiter = rpm_tpm();
    // x-ratelimit-remaining-tokens: 1000 (others used this key too): we believe it.
    limiter.observe_remaining(1, 1_000);
    assert_eq!(level(&limiter, 1), 1_000.0);
    assert!(limiter.try_acquire(&[1, 2_000]).is_err());
    // A header claiming more than we have changes nothing (we only ever lower).
    limiter.observe_remaining(1, 5_000);
    assert_eq!(level(&limiter, 1), 1_000.0);
    // retry-after: 3 s. Nothing is granted until then, whatever the buckets say.
    limiter.pause_for(Duration::from_secs(3));
    let err = limiter.try_acquire(&[1, 1]).unwrap_err();
    assert!(
        matches!(&err, RateLimitError::WouldWait { dimension, retry_in: Some(d) }
        if dimension.contains("retry-after") && *d <= Duration::from_secs(3)),
        "{err}"
    );
    let started = Instant::now();
    limiter.acquire(&[1, 1], None).await.unwrap();
    assert!(Instant::now() - started >= Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn concurrency_limits_are_given_back_when_permits_drop() {
    let limiter =
        RateLimiter::new([Limit::per_second("requests", 1_000), Limit::concurrent("in_flight", 2)]).unwrap();
    let a = limiter.try_acquire(&[1, 1]).unwrap();
    let _b = limiter.try_acquire(&[1, 1]).unwrap();
    let err = limiter.try_acquire(&[1, 1]).unwrap_err();
    assert_eq!(err, RateLimitError::WouldWait { dimension: "in_flight".into(), retry_in: None });
    let waiter = {
        let limiter = limiter.clone();
        tokio::spawn(async move {
            limiter.acquire(&[1, 1], Some(Duration::from_secs(10))).await.map(|p| p.cost().to_vec())
        })
    };
    tokio::task::yield_now().await;
    assert_eq!(limiter.waiting(), 1);
    drop(a);
    assert_eq!(waiter.await.unwrap().unwrap(), [1, 1]);
}

#[tokio::test(start_paused = true)]
async fn response_headers_are_applied_by_name_and_bad_ones_reported() {
    let limiter = rpm_tpm();
    let report = limiter.apply_headers([
        ("X-RateLimit-Remaining-Requests", "7"),
        ("x-ratelimit-remaining-tokens", "1200"),
        ("x-ratelimit-reset-tokens", "6m0s"),
        ("content-type", "application/json"),
    ]);
    assert_eq!(report.remaining, [("requests".to_string(), 7), ("tokens".to_string(), 1_200)]);
    assert_eq!((level(&limiter, 0), level(&limiter, 1)), (7.0, 1_200.0));
    assert_eq!(report.resets, [("tokens".to_string(), Duration::from_secs(360))]);
    // Anthropic's spelling, singular or plural; a garbled value is reported, not applied.
    let report = limiter.apply_headers([
        ("anthropic-ratelimit-tokens-remaining", "900"),
        ("anthropic-ratelimit-requests-remaining", "lots"),
        ("retry-after", "2"),
    ]);
    assert_eq!(report.remaining, [("tokens".to_string(), 900)]);
    assert_eq!(
        report.unreadable,
        [("anthropic-ratelimit-requests-remaining".to_string(), "lots".to_string())]
    );
    assert_eq!(report.retry_after, Some(Duration::from_secs(2)));
    assert!(limiter.try_acquire(&[1, 1]).is_err(), "paused by retry-after");
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(limiter.try_acquire(&[1, 1]).is_ok());
}

#[test]
fn provider_durations_parse() {
    use foundation_core::rate_limit::parse_duration;
    assert_eq!(parse_duration("20"), Some(Duration::from_secs(20)));
    assert_eq!(parse_duration("1.5"), Some(Duration::from_millis(1_500)));
    assert_eq!(parse_duration("20ms"), Some(Duration::from_millis(20)));
    assert_eq!(parse_duration("6m0s"), Some(Duration::from_secs(360)));
    assert_eq!(parse_duration("1h2m3.5s"), Some(Duration::from_millis(3_723_500)));
    for bad in ["", "soon", "5 parsecs", "-3", "1x"] {
        assert_eq!(parse_duration(bad), None, "{bad}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_waiter_that_times_out_behind_others_says_so() {
    let limiter = rpm_tpm();
    let _drain = limiter.try_acquire(&[1, 6_000]).unwrap();
    let head = {
        let limiter = limiter.clone();
        tokio::spawn(async move { limiter.acquire(&[1, 5_000], None).await.map(|_| ()) })
    };
    tokio::task::yield_now().await;
    // One token would be there in 10 ms, but the head is first in line.
    let err = limiter.acquire(&[1, 1], Some(Duration::from_secs(1))).await.unwrap_err();
    assert!(
        matches!(&err, RateLimitError::Timeout { dimension, .. } if dimension.contains("queue")),
        "{err}"
    );
    head.abort();
}

#[tokio::test(start_paused = true)]
async fn a_share_scales_capacity_and_rate_and_zero_holds_waiters() {
    let limiter = rpm_tpm();
    limiter.set_share(0.5);
    // Capacity halves at once (30 requests, 3 000 tokens); nothing is created by the change.
    assert_eq!(level(&limiter, 0), 30.0);
    assert_eq!(level(&limiter, 1), 3_000.0);
    let _p = limiter.try_acquire(&[1, 3_000]).unwrap();
    // It refills at half the rate: 50 tokens per second.
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!((level(&limiter, 1) - 100.0).abs() < 0.01, "{}", level(&limiter, 1));
    // A cost above the share but within the whole limit waits rather than failing; at a share of
    // zero nothing is granted until the share grows.
    limiter.set_share(0.0);
    let waiter = {
        let limiter = limiter.clone();
        tokio::spawn(async move { limiter.acquire(&[1, 4_000], None).await })
    };
    tokio::time::advance(Duration::from_secs(120)).await;
    assert!(!waiter.is_finished());
    assert_eq!(limiter.waiting(), 1);
    limiter.set_share(1.0);
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(waiter.await.unwrap().unwrap().cost(), [1, 4_000]);
    // Above the whole limit is an error whatever the share.
    assert!(matches!(limiter.try_acquire(&[1, 6_001]), Err(RateLimitError::TooLarge { .. })));
    // Remaining counts from a provider are shared too: half of the 1 000 left is ours.
    limiter.set_share(0.5);
    tokio::time::advance(Duration::from_secs(60)).await;
    limiter.observe_remaining(1, 1_000);
    assert_eq!(level(&limiter, 1), 500.0);
}

#[tokio::test(start_paused = true)]
async fn new_limits_keep_what_was_used_and_held_permits() {
    let limiter =
        RateLimiter::new([Limit::per_minute("requests", 60), Limit::concurrent("concurrent", 4)]).unwrap();
    let held: Vec<_> = (0..3).map(|_| limiter.try_acquire(&[1, 1]).unwrap()).collect();
    assert_eq!(level(&limiter, 0), 57.0);
    // Lower to 6 per minute and 2 at once: the 3 requests of this minute still count (3 left,
    // not 6: the provider counts them too), and the 3 permits held count against the new
    // concurrency (one over it).
    limiter.set_limits([Limit::per_minute("requests", 6), Limit::concurrent("concurrent", 2)]).unwrap();
    assert_eq!(level(&limiter, 0), 3.0);
    assert_eq!(level(&limiter, 1), -1.0);
    assert!(matches!(limiter.try_acquire(&[1, 1]), Err(RateLimitError::WouldWait { retry_in: None, .. })));
    drop(held);
    let a = limiter.try_acquire(&[1, 1]).unwrap();
    let b = limiter.try_acquire(&[1, 1]).unwrap();
    assert!(limiter.try_acquire(&[1, 1]).is_err(), "a third at once over a concurrency of 2");
    drop((a, b));
    let _c = limiter.try_acquire(&[1, 1]).unwrap();
    // 6 requests in this window: the 7th waits for the new rate, one per 10 s.
    assert_eq!(level(&limiter, 0), 0.0);
    assert!(limiter.try_acquire(&[1, 1]).is_err());
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!((level(&limiter, 0) - 1.0).abs() < 1e-6, "{}", level(&limiter, 0));
    // Raise: the difference is available at once, what was used still counts.
    limiter.set_limits([Limit::per_minute("requests", 600), Limit::concurrent("concurrent", 8)]).unwrap();
    assert!((level(&limiter, 0) - 595.0).abs() < 1e-6, "{}", level(&limiter, 0));
    // A change of dimensions or of kind is refused, and nothing changes.
    let err = limiter.set_limits([Limit::per_minute("requests", 6)]).unwrap_err();
    assert!(err.to_string().contains("other dimensions"), "{err}");
    let err = limiter
        .set_limits([Limit::per_minute("requests", 6), Limit::per_minute("concurrent", 2)])
        .unwrap_err();
    assert!(err.to_string().contains("between a rate and a concurrency limit"), "{err}");
    let err = limiter
        .set_limits([Limit::per_minute("requests", 0), Limit::concurrent("concurrent", 2)])
        .unwrap_err();
    assert!(err.to_string().contains("positive amount"), "{err}");
    assert!((level(&limiter, 0) - 595.0).abs() < 1e-6);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_that_no_longer_fits_after_a_reload_is_refused_and_blocks_no_one() {
    let limiter = RateLimiter::new([Limit::per_minute("tokens", 100)]).unwrap();
    let _spent = limiter.try_acquire(&[100]).unwrap();
    let big = {
        let limiter = limiter.clone();
        tokio::spawn(async move { limiter.acquire(&[80], None).await.map(|_| ()) })
    };
    tokio::task::yield_now().await;
    let small = {
        let limiter = limiter.clone();
        tokio::spawn(async move { limiter.acquire(&[10], Some(Duration::from_secs(120))).await.map(|_| ()) })
    };
    tokio::task::yield_now().await;
    // Lowered to 50 per minute: 80 can never be paid; it is refused, and 10 is served once the
    // 100 spent refill at the new rate (72 s).
    limiter.set_limits([Limit::per_minute("tokens", 50)]).unwrap();
    let big = tokio::time::timeout(Duration::from_secs(300), big).await.expect("refused, not left waiting");
    assert!(matches!(big.unwrap(), Err(RateLimitError::TooLarge { cost: 80, capacity: 50, .. })));
    assert!(small.await.unwrap().is_ok());
}

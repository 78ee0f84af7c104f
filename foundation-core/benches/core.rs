//! Hot-path costs of foundation-core: recording a histogram value, adding a step to an error
//! context, and an uncontended rate-limiter grant. Run with `cargo bench -p foundation-core --bench core`; figures are kept in
//! docs/BENCHMARKS.md.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use foundation_core::config::TelemetryConfig;
use foundation_core::{ErrorContext, Telemetry};
use metrics::Recorder;
use metrics_exporter_prometheus::PrometheusBuilder;

fn histogram(c: &mut Criterion) {
    let mut group = c.benchmark_group("histogram_record");
    let telemetry = Telemetry::new(&TelemetryConfig::default()).unwrap();
    let key = metrics::Key::from_parts("bench_seconds", vec![metrics::Label::new("actor", "worker")]);
    let meta = metrics::Metadata::new(module_path!(), metrics::Level::INFO, None);

    let handle = telemetry.register_histogram(&key, &meta);
    let mut v = 0.0001;
    group.bench_function("foundation/cached_handle", |b| {
        b.iter(|| {
            v = if v > 10.0 { 0.0001 } else { v * 1.001 };
            handle.record(black_box(v));
        })
    });

    group.bench_function("foundation/macro_with_label", |b| {
        metrics::with_local_recorder(&telemetry, || {
            b.iter(|| {
                v = if v > 10.0 { 0.0001 } else { v * 1.001 };
                metrics::histogram!("bench_seconds", "actor" => "worker").record(black_box(v));
            })
        })
    });

    // Baseline: the exporter's own histogram (a lock-free append buffer, drained at scrape or
    // upkeep). It cannot report percentiles in code; drained outside the timed part so that
    // memory stays flat.
    let prometheus = PrometheusBuilder::new().build_recorder();
    let prometheus_handle = prometheus.handle();
    let baseline = prometheus.register_histogram(&key, &meta);
    group.bench_function("baseline/metrics_exporter_prometheus_cached_handle", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(1_000_000);
                let start = Instant::now();
                for _ in 0..n {
                    v = if v > 10.0 { 0.0001 } else { v * 1.001 };
                    baseline.record(black_box(v));
                }
                spent += start.elapsed();
                prometheus_handle.run_upkeep();
                left -= n;
            }
            spent
        })
    });
    group.finish();
}

fn error_context(c: &mut Criterion) {
    let mut group = c.benchmark_group("error_context_step");

    // Steady state of a long operation: the step lands in the "last children" window and evicts
    // the oldest one, the most expensive path.
    let ctx = ErrorContext::new("bench");
    group.bench_function("step_sync/steady_state", |b| {
        b.iter(|| ctx.step_sync("step", |_| Ok::<_, &str>(black_box(1))))
    });

    // A step that captures one small value.
    let ctx = ErrorContext::new("bench");
    group.bench_function("step_sync/with_capture", |b| {
        b.iter(|| {
            ctx.step_sync("step", |ctx| {
                ctx.record("n", &42u32);
                Ok::<_, &str>(black_box(1))
            })
        })
    });

    // A fresh context with ten steps, per step: the short-operation case.
    group.bench_function("fresh_context_10_steps/per_step", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters.div_ceil(10) {
                let ctx = ErrorContext::new("bench");
                for _ in 0..10 {
                    let _ = black_box(ctx.step_sync("step", |_| Ok::<_, &str>(1)));
                }
            }
            start.elapsed().mul_f64(iters as f64 / (iters.div_ceil(10) * 10) as f64)
        })
    });
    group.finish();
}

fn rate_limit(c: &mut Criterion) {
    use foundation_core::rate_limit::{Limit, RateLimiter};
    let mut group = c.benchmark_group("rate_limit");
    // Limits far above what the loop asks: every call is granted (the uncontended path).
    let limiter = RateLimiter::new([
        Limit::per_minute("requests", u64::MAX / 4),
        Limit::per_minute("tokens", u64::MAX / 4),
    ])
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let _guard = runtime.enter();
    group.bench_function("try_acquire_two_buckets", |b| {
        b.iter(|| drop(black_box(limiter.try_acquire(black_box(&[1, 500])).unwrap())))
    });
    group.bench_function("try_acquire_and_settle_two_buckets", |b| {
        b.iter(|| {
            let mut permit = limiter.try_acquire(black_box(&[1, 500])).unwrap();
            permit.settle(black_box(&[1, 420])).unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, histogram, error_context, rate_limit);
criterion_main!(benches);

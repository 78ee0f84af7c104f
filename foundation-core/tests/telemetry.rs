//! Telemetry: percentile accuracy against exact quantiles, Prometheus text, the HTTP exporter.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::net::SocketAddr;
use std::time::Duration;

use foundation_core::config::TelemetryConfig;
use foundation_core::telemetry::{Telemetry, TelemetryError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// SplitMix64: deterministic samples without a rand dependency.
struct Rng(u64);
impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.next_f64().max(f64::MIN_POSITIVE), self.next_f64());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

fn exact_quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[(q * (sorted.len() - 1) as f64).floor() as usize]
}

fn check_accuracy(alpha: f64, samples: Vec<f64>, what: &str) {
    let config = TelemetryConfig { max_relative_error: alpha, ..Default::default() };
    let telemetry = Telemetry::new(&config).unwrap();
    metrics::with_local_recorder(&telemetry, || {
        let h = metrics::histogram!("latency_seconds");
        for v in &samples {
            h.record(*v);
        }
    });
    let reading = telemetry.percentiles("latency_seconds", &[]).unwrap();
    let mut sorted = samples.clone();
    sorted.sort_by(f64::total_cmp);
    assert_eq!(reading.count(), samples.len() as u64);
    assert_eq!(reading.min(), Some(sorted[0]));
    assert_eq!(reading.max(), Some(*sorted.last().unwrap()));
    let mut worst: f64 = 0.0;
    for q in [0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999] {
        let exact = exact_quantile(&sorted, q);
        let estimate = reading.quantile(q).unwrap();
        let error = (estimate - exact).abs() / exact.abs();
        worst = worst.max(error);
        // A hair of slack for floating-point rounding in the bucket boundaries.
        assert!(
            error <= alpha * (1.0 + 1e-9),
            "{what}: q={q} exact={exact} estimate={estimate} relative error {error} > {alpha}"
        );
    }
    // The bound is not vacuous: the sketch really approximates (it is not storing every value).
    assert!(worst > 0.0, "{what}: estimates were exact; the test would not catch a looser sketch");
}

#[test]
fn percentiles_are_within_the_documented_relative_error() {
    let mut rng = Rng(42);
    let lognormal: Vec<f64> = (0..200_000).map(|_| (rng.normal() * 1.2 - 4.0).exp()).collect();
    check_accuracy(0.01, lognormal.clone(), "lognormal, 1%");
    check_accuracy(0.001, lognormal, "lognormal, 0.1%");
    let uniform: Vec<f64> = (0..100_000).map(|_| 1.0 + rng.next_f64() * 999.0).collect();
    check_accuracy(0.01, uniform, "uniform");
    // Bimodal: a fast path at ~2 ms and a slow path at ~800 ms, like a cache in front of an LLM.
    let bimodal: Vec<f64> = (0..100_000)
        .map(|i| if i % 10 == 0 { 0.8 + rng.next_f64() * 0.1 } else { 0.002 + rng.next_f64() * 0.001 })
        .collect();
    check_accuracy(0.02, bimodal, "bimodal");
    // Twelve decades (a microsecond to eleven days) at 0.1 %: no bucket may collapse.
    let wide: Vec<f64> = (0..100_000).map(|_| 10f64.powf(rng.next_f64() * 12.0 - 6.0)).collect();
    check_accuracy(0.001, wide, "twelve decades, 0.1%");
}

#[test]
fn labels_match_as_a_set_and_unknown_names_are_none() {
    let telemetry = Telemetry::new(&TelemetryConfig::default()).unwrap();
    metrics::with_local_recorder(&telemetry, || {
        metrics::histogram!("h", "a" => "1", "b" => "2").record(5.0);
        metrics::histogram!("h", "a" => "9").record(7.0);
    });
    let p = telemetry.percentiles("h", &[("b", "2"), ("a", "1")]).unwrap();
    assert_eq!((p.count(), p.max()), (1, Some(5.0)));
    assert_eq!(telemetry.percentiles("h", &[("a", "9")]).unwrap().max(), Some(7.0));
    assert!(telemetry.percentiles("h", &[("a", "1")]).is_none());
    assert!(telemetry.percentiles("nope", &[]).is_none());
    assert_eq!(telemetry.histograms().len(), 2);
}

#[test]
fn readings_merge_across_nodes() {
    let nodes: Vec<Telemetry> =
        (0..3).map(|_| Telemetry::new(&TelemetryConfig::default()).unwrap()).collect();
    for (i, t) in nodes.iter().enumerate() {
        metrics::with_local_recorder(t, || {
            for v in 0..1000 {
                metrics::histogram!("rt").record((i * 1000 + v + 1) as f64);
            }
        });
    }
    let mut merged = nodes[0].percentiles("rt", &[]).unwrap();
    for t in &nodes[1..] {
        merged.merge(&t.percentiles("rt", &[]).unwrap()).unwrap();
    }
    assert_eq!(merged.count(), 3000);
    assert_eq!(merged.total_sum(), (1..=3000).sum::<usize>() as f64);
    let p50 = merged.p50().unwrap();
    assert!((p50 - 1500.0).abs() <= 1500.0 * 0.01, "{p50}");

    let coarse = Telemetry::new(&TelemetryConfig { max_relative_error: 0.05, ..Default::default() }).unwrap();
    metrics::with_local_recorder(&coarse, || metrics::histogram!("rt").record(1.0));
    let err = merged.merge(&coarse.percentiles("rt", &[]).unwrap()).unwrap_err();
    assert!(matches!(err, TelemetryError::IncompatibleSketches));
}

#[test]
fn render_has_summaries_with_quantiles_help_and_counters() {
    let telemetry = Telemetry::new(&TelemetryConfig::default()).unwrap();
    metrics::with_local_recorder(&telemetry, || {
        metrics::describe_histogram!("request_seconds", metrics::Unit::Seconds, "Time to answer a request.");
        for i in 1..=1000 {
            metrics::histogram!("request_seconds", "route" => "/chat").record(i as f64 / 1000.0);
        }
        metrics::counter!("requests_total", "route" => "/chat").increment(1000);
        metrics::gauge!("workers").set(4.0);
    });
    let text = telemetry.render();
    assert!(text.contains("# HELP request_seconds Time to answer a request."), "{text}");
    assert!(text.contains("# TYPE request_seconds summary"), "{text}");
    for q in ["0.5", "0.9", "0.99", "0.999"] {
        assert!(text.contains(&format!("request_seconds{{route=\"/chat\",quantile=\"{q}\"}} 0.")), "{text}");
    }
    assert!(text.contains("request_seconds_sum{route=\"/chat\"} 500.5"), "{text}");
    assert!(text.contains("request_seconds_count{route=\"/chat\"} 1000"), "{text}");
    assert!(text.contains("requests_total{route=\"/chat\"} 1000"), "{text}");
    assert!(text.contains("workers 4"), "{text}");
}

#[test]
fn invalid_config_is_refused_with_the_key() {
    let err = Telemetry::new(&TelemetryConfig { window_buckets: 0, ..Default::default() }).unwrap_err();
    assert!(err.to_string().contains("telemetry.window_buckets"), "{err}");
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn exporter_serves_prometheus_text_over_http() {
    let telemetry = Telemetry::new(&TelemetryConfig::default()).unwrap();
    metrics::with_local_recorder(&telemetry, || {
        for i in 1..=100 {
            metrics::histogram!("step_seconds").record(f64::from(i));
        }
    });
    let server = telemetry.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);

    let response = http_get(addr, "/metrics").await;
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(response.contains("content-type: text/plain; version=0.0.4"), "{response}");
    assert!(response.contains("step_seconds{quantile=\"0.99\"} 9"), "{response}");
    assert!(response.contains("step_seconds_count 100"), "{response}");

    // New samples show up in the next scrape: the endpoint renders live data.
    metrics::with_local_recorder(&telemetry, || metrics::histogram!("late_seconds").record(1.0));
    assert!(http_get(addr, "/metrics").await.contains("late_seconds_count 1"));

    assert!(http_get(addr, "/nope").await.starts_with("HTTP/1.1 404"));

    // A second exporter on the same address fails with an error naming it.
    let err = telemetry.serve(addr).await.unwrap_err();
    assert!(matches!(err, TelemetryError::Bind { .. }), "{err}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");

    server.shutdown().await;
    let refused = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr)).await;
    assert!(matches!(refused, Ok(Err(_))), "the port should be closed after shutdown");
}

#[test]
fn install_global_is_explicit_and_only_once() {
    let telemetry = Telemetry::new(&TelemetryConfig::default()).unwrap();
    telemetry.install_global().unwrap();
    metrics::histogram!("global_seconds").record(0.5);
    assert_eq!(telemetry.percentiles("global_seconds", &[]).unwrap().count(), 1);
    let other = Telemetry::new(&TelemetryConfig::default()).unwrap();
    assert!(matches!(other.install_global(), Err(TelemetryError::AlreadyInstalled)));
}

//! Untrusted text never panics the parsers that read it (issue 20, point 8: fuzzing on stable
//! Rust, with proptest). In the suite each property runs a few thousand cases (seconds); for a
//! long run: `PROPTEST_CASES=1000000 cargo test -p foundation-core --test untrusted_inputs`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use foundation_core::config::ConfigLoader;
use foundation_core::rate_limit::{Limit, MAX_PAUSE, RateLimiter, parse_duration};
use proptest::prelude::*;

/// TOML-looking text: sections and keys of the real configuration mixed with garbage.
fn config_text() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("[cluster]".to_string()),
        Just("[node]".to_string()),
        Just("[llm]".to_string()),
        Just("[llm.providers.x]".to_string()),
        Just("[telemetry]".to_string()),
        "[a-z_]{1,12} = [0-9a-z\"\\[\\]{}.,:-]{0,24}",
        "listen = \"[0-9.:]{0,21}\"",
        "cookie = \"[ -~]{0,20}\"",
        "expected_nodes = -?[0-9]{1,20}",
        "window = \"[0-9]{0,6}[a-z]{0,2}\"",
        any::<String>(),
    ];
    prop::collection::vec(key, 0..12).prop_map(|lines| lines.join("\n"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    /// Any configuration text loads or is refused with an error; never a panic.
    #[test]
    fn any_configuration_text_loads_or_is_refused(text in config_text()) {
        match ConfigLoader::new().toml_str(&text).load() {
            Ok(config) => prop_assert!(config.cluster.max_frame_bytes >= 1024),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    /// Any duration a provider writes parses to a duration or to nothing; never a panic.
    #[test]
    fn any_duration_text_parses_or_is_refused(text in prop_oneof![any::<String>(), "[0-9.eE+-]{0,30}[hmsuµn]{0,3}", "([0-9.]{0,8}(h|m|s|ms|us|ns)){0,5}"]) {
        let _ = parse_duration(&text);
    }

    /// Any rate-limit headers pause a limiter at most MAX_PAUSE; never a panic.
    #[test]
    fn any_rate_limit_headers_are_applied_within_bounds(
        headers in prop::collection::vec((
            prop_oneof![Just("retry-after".to_string()), Just("x-ratelimit-remaining-requests".to_string()),
                        Just("x-ratelimit-reset-tokens".to_string()), Just("anthropic-ratelimit-tokens-remaining".to_string()),
                        "[a-z-]{0,30}"],
            prop_oneof![any::<String>(), "-?[0-9.eE+]{0,25}", "[0-9]{1,30}[a-z]{0,2}"],
        ), 0..6)
    ) {
        let limiter = RateLimiter::new([Limit::per_minute("requests", 60), Limit::per_minute("tokens", 1000)]).unwrap();
        let report = limiter.apply_headers(headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        prop_assert!(report.retry_after.is_none_or(|d| d <= MAX_PAUSE));
    }
}

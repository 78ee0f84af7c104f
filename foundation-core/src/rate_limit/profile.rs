//! The limits of an LLM provider's account, as one limiter: named profiles with the published
//! figures of common tiers, overridable per limit.

use serde::{Deserialize, Serialize};

use super::{Limit, RateLimitError, RateLimiter};
use crate::config::reference::KeyKind;

crate::config::keys::config_section! {
    /// An account's limits; `None` is "no such limit". Dimension names match the providers'
    /// header names, so [`RateLimiter::apply_headers`] corrects them: `requests`, `tokens`,
    /// `input-tokens`, `output-tokens` (per minute), `requests-per-day`, `concurrent`. As
    /// `[llm.providers.NAME.limits]` they are live: a reload applies them at once
    /// (`LlmRouter::follow` in foundation-actors).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    pub struct ProviderLimits in "llm.providers.NAME.limits" {
        rpm: Option<u64> = None => KeyKind::Integer,
            unset "the profile's", live true,
            check(|c: &Self| c.rpm != Some(0), POSITIVE),
            doc "Requests per minute.";
        tpm: Option<u64> = None => KeyKind::Integer,
            unset "the profile's", live true,
            check(|c: &Self| c.tpm != Some(0), POSITIVE),
            doc "Tokens per minute, input and output together.";
        input_tpm: Option<u64> = None => KeyKind::Integer,
            unset "the profile's", live true,
            check(|c: &Self| c.input_tpm != Some(0), POSITIVE),
            doc "Input tokens per minute (Anthropic counts them apart).";
        output_tpm: Option<u64> = None => KeyKind::Integer,
            unset "the profile's", live true,
            check(|c: &Self| c.output_tpm != Some(0), POSITIVE),
            doc "Output tokens per minute (Anthropic counts them apart).";
        rpd: Option<u64> = None => KeyKind::Integer,
            unset "the profile's", live true,
            check(|c: &Self| c.rpd != Some(0), POSITIVE),
            doc "Requests per day.";
        concurrent: Option<u64> = None => KeyKind::Integer,
            unset "the profile's", live true,
            check(|c: &Self| c.concurrent != Some(0), POSITIVE),
            doc "Requests in flight at once.";
    }
}

/// What a limit accepts.
const POSITIVE: &str = "a positive integer (leave the limit out for none)";

/// What one call is expected (or turned out) to use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCost {
    /// Prompt tokens.
    pub input: u64,
    /// Completion tokens (before the call: the most it may use, `max_tokens`).
    pub output: u64,
}

/// The named profiles, with the figures their providers published for the entry tier of a
/// mid-size model (checked 2026-11; accounts differ: override what yours says).
const PROFILES: &[(&str, ProviderLimits)] = &[
    // OpenAI tier 1, gpt-4o-mini class: 500 RPM, 200 000 TPM, 10 000 RPD.
    ("openai-tier-1", ProviderLimits { rpm: Some(500), tpm: Some(200_000), rpd: Some(10_000), ..NONE }),
    // OpenAI tier 2: 5 000 RPM, 2 000 000 TPM.
    ("openai-tier-2", ProviderLimits { rpm: Some(5_000), tpm: Some(2_000_000), ..NONE }),
    // Anthropic tier 1, Sonnet class: 50 RPM, 30 000 input and 8 000 output tokens per minute.
    (
        "anthropic-tier-1",
        ProviderLimits { rpm: Some(50), input_tpm: Some(30_000), output_tpm: Some(8_000), ..NONE },
    ),
    // Anthropic tier 2: 1 000 RPM, 450 000 input and 90 000 output tokens per minute.
    (
        "anthropic-tier-2",
        ProviderLimits { rpm: Some(1_000), input_tpm: Some(450_000), output_tpm: Some(90_000), ..NONE },
    ),
    // Gemini free tier, Flash class: 15 RPM, 1 000 000 TPM, 1 500 RPD.
    ("gemini-free", ProviderLimits { rpm: Some(15), tpm: Some(1_000_000), rpd: Some(1_500), ..NONE }),
    // Gemini paid tier 1, Flash class: 2 000 RPM, 4 000 000 TPM.
    ("gemini-tier-1", ProviderLimits { rpm: Some(2_000), tpm: Some(4_000_000), ..NONE }),
    // A local server (vLLM, Ollama, llama.cpp): no rate limits; its capacity is how many
    // requests it serves at once.
    ("local", ProviderLimits { concurrent: Some(64), ..NONE }),
];

const NONE: ProviderLimits =
    ProviderLimits { rpm: None, tpm: None, input_tpm: None, output_tpm: None, rpd: None, concurrent: None };

impl ProviderLimits {
    /// The limits of a named profile: `openai-tier-1`, `openai-tier-2`, `anthropic-tier-1`,
    /// `anthropic-tier-2`, `gemini-free`, `gemini-tier-1`, `local`.
    pub fn profile(name: &str) -> Option<ProviderLimits> {
        PROFILES.iter().find(|(n, _)| *n == name).map(|(_, l)| *l)
    }

    /// The names of the profiles.
    pub fn profile_names() -> impl Iterator<Item = &'static str> {
        PROFILES.iter().map(|(n, _)| *n)
    }

    /// These limits with every limit that `overrides` sets replacing ours.
    pub fn overridden_by(self, overrides: &ProviderLimits) -> ProviderLimits {
        ProviderLimits {
            rpm: overrides.rpm.or(self.rpm),
            tpm: overrides.tpm.or(self.tpm),
            input_tpm: overrides.input_tpm.or(self.input_tpm),
            output_tpm: overrides.output_tpm.or(self.output_tpm),
            rpd: overrides.rpd.or(self.rpd),
            concurrent: overrides.concurrent.or(self.concurrent),
        }
    }

    fn dimensions(&self) -> impl Iterator<Item = (Option<u64>, fn(u64) -> Limit)> {
        [
            (self.rpm, (|n| Limit::per_minute("requests", n)) as fn(u64) -> Limit),
            (self.tpm, |n| Limit::per_minute("tokens", n)),
            (self.input_tpm, |n| Limit::per_minute("input-tokens", n)),
            (self.output_tpm, |n| Limit::per_minute("output-tokens", n)),
            (self.rpd, |n| Limit::per_day("requests-per-day", n)),
            (self.concurrent, |n| Limit::concurrent("concurrent", n)),
        ]
        .into_iter()
    }

    /// Every limit set, in the order of [`limiter`](Self::limiter)'s dimensions (for
    /// [`RateLimiter::set_limits`] after a reload).
    pub fn to_limits(&self) -> Vec<Limit> {
        self.dimensions().filter_map(|(n, make)| n.map(make)).collect()
    }

    /// One limiter over every limit set (`None` when there is none: nothing to wait for).
    pub fn limiter(&self) -> Result<Option<RateLimiter>, RateLimitError> {
        let limits = self.to_limits();
        if limits.is_empty() { Ok(None) } else { RateLimiter::new(limits).map(Some) }
    }

    /// A call's cost in the order of [`limiter`](Self::limiter)'s dimensions.
    pub fn cost(&self, tokens: TokenCost) -> Vec<u64> {
        let amounts = [1, tokens.input + tokens.output, tokens.input, tokens.output, 1, 1];
        self.dimensions().zip(amounts).filter(|((n, _), _)| n.is_some()).map(|(_, a)| a).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_builds_a_limiter_and_costs_fit_it() {
        for name in ProviderLimits::profile_names() {
            let limits = ProviderLimits::profile(name).unwrap();
            let limiter = limits.limiter().unwrap().unwrap();
            let cost = limits.cost(TokenCost { input: 10, output: 5 });
            assert_eq!(cost.len(), limiter.dimensions().len(), "{name}");
            assert!(limiter.try_acquire(&cost).is_ok(), "{name}");
        }
        assert_eq!(ProviderLimits::profile("nope"), None);
    }

    #[test]
    fn overrides_replace_only_what_they_set() {
        let limits = ProviderLimits::profile("openai-tier-1").unwrap().overridden_by(&ProviderLimits {
            tpm: Some(40_000),
            concurrent: Some(8),
            ..NONE
        });
        assert_eq!((limits.rpm, limits.tpm, limits.concurrent), (Some(500), Some(40_000), Some(8)));
        let limiter = limits.limiter().unwrap().unwrap();
        assert_eq!(limiter.dimensions(), ["requests", "tokens", "requests-per-day", "concurrent"]);
        assert_eq!(limits.cost(TokenCost { input: 100, output: 20 }), [1, 120, 1, 1]);
        assert!(ProviderLimits::default().limiter().unwrap().is_none());
    }
}

//! `[llm]`: the language-model providers a node may call, their limits, and the order in which
//! they are tried.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::validate::Validator;
use crate::rate_limit::ProviderLimits;

/// Default per-request timeout of a provider.
pub const DEFAULT_PROVIDER_TIMEOUT: Duration = Duration::from_secs(60);
/// Default attempts per request (the first one included) before the next provider is tried.
pub const DEFAULT_PROVIDER_ATTEMPTS: u32 = 3;
/// Default profile: a local server with no rate limits.
pub const DEFAULT_PROVIDER_PROFILE: &str = "local";
/// Default model name.
pub const DEFAULT_MODEL: &str = "simulated";

/// What kind of endpoint a provider is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    /// The built-in simulated model: no network.
    #[default]
    Simulated,
    /// An OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama, llama.cpp server).
    OpenaiCompatible,
}

/// `[llm.providers.NAME]`: one provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderConfig {
    /// What it is. Default `simulated`.
    pub kind: ProviderKind,
    /// The model asked for. Default [`DEFAULT_MODEL`].
    pub model: String,
    /// Base URL of an OpenAI-compatible endpoint (up to `/v1`). Default: `OPENAI_BASE_URL`, or
    /// `https://api.openai.com/v1`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// API key. Default: `OPENAI_API_KEY`, or none (local servers need none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// Named limits of the account's tier (see
    /// [`ProviderLimits::profile`](crate::rate_limit::ProviderLimits::profile)). Default
    /// [`DEFAULT_PROVIDER_PROFILE`]: no rate limits, 64 requests at once.
    pub profile: String,
    /// Limits that replace the profile's, e.g. `limits = { rpm = 600, tpm = 40000 }`.
    pub limits: ProviderLimits,
    /// Per-request timeout. Default [`DEFAULT_PROVIDER_TIMEOUT`] (60 s).
    #[serde(with = "super::duration")]
    pub timeout: Duration,
    /// Attempts per request, the first included, 1–10. Default [`DEFAULT_PROVIDER_ATTEMPTS`]:
    /// a 5xx or a timeout is retried twice (with backoff, or after `retry-after`) before the
    /// next provider of the chain is tried.
    pub attempts: u32,
}

impl Default for ProviderConfig {
    fn default() -> Self {
        ProviderConfig {
            kind: ProviderKind::Simulated,
            model: DEFAULT_MODEL.to_string(),
            base_url: None,
            api_key: None,
            profile: DEFAULT_PROVIDER_PROFILE.to_string(),
            limits: ProviderLimits::default(),
            timeout: DEFAULT_PROVIDER_TIMEOUT,
            attempts: DEFAULT_PROVIDER_ATTEMPTS,
        }
    }
}

impl ProviderConfig {
    /// The profile's limits with this provider's overrides (the profile name is validated
    /// first; an unknown one gives no limits).
    pub fn effective_limits(&self) -> ProviderLimits {
        ProviderLimits::profile(&self.profile).unwrap_or_default().overridden_by(&self.limits)
    }
}

/// `[llm]`: providers by name and the chain they are tried in.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmConfig {
    /// Provider names in the order they are tried: the next one serves when one is
    /// open-circuited, over budget or failing. Default: none (every provider, by name).
    pub chain: Vec<String>,
    /// The providers. Default: none (the simulated model is built in without configuration).
    pub providers: BTreeMap<String, ProviderConfig>,
}

impl LlmConfig {
    pub(crate) fn validate(&self, v: &mut Validator) {
        for name in &self.chain {
            v.check(
                "llm.chain",
                name,
                self.providers.contains_key(name),
                "names of providers defined under [llm.providers]",
            );
        }
        for (name, p) in &self.providers {
            let key = |field: &str| format!("llm.providers.{name}.{field}");
            let profiles: Vec<&str> = ProviderLimits::profile_names().collect();
            v.check(
                &key("profile"),
                &p.profile,
                ProviderLimits::profile(&p.profile).is_some(),
                &format!("one of {}", profiles.join(", ")),
            );
            v.check(&key("attempts"), p.attempts, (1..=10).contains(&p.attempts), "an integer from 1 to 10");
            v.check(&key("timeout"), format!("{:?}", p.timeout), !p.timeout.is_zero(), "a positive duration");
            if let Some(url) = &p.base_url {
                v.check(
                    &key("base_url"),
                    url,
                    url.starts_with("http://") || url.starts_with("https://"),
                    "an http:// or https:// URL",
                );
            }
            let l = &p.limits;
            let zero = [l.rpm, l.tpm, l.input_tpm, l.output_tpm, l.rpd, l.concurrent].contains(&Some(0));
            v.check(&key("limits"), format!("{l:?}"), !zero, "positive limits (leave a limit out for none)");
        }
    }
}

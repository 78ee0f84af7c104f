//! `[llm]`: the language-model providers a node may call, their limits, and the order in which
//! they are tried.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::keys::{Section, config_section};
use super::reference::KeyKind;
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
/// Default `llm.cache_max_bytes`: 64 MiB of cached model answers per process.
pub const DEFAULT_CALL_CACHE_BYTES: u64 = 64 << 20;
/// Longest `llm.cache_ttl`: a year.
pub const MAX_CALL_CACHE_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// Default `llm.semantic_dims`: 256.
pub const DEFAULT_SEMANTIC_DIMS: u64 = 256;
/// Default `llm.semantic_threshold`: 0.9.
pub const DEFAULT_SEMANTIC_THRESHOLD: f64 = 0.9;
/// Default `llm.semantic_max_entries`: 10 000.
pub const DEFAULT_SEMANTIC_MAX_ENTRIES: u64 = 10_000;
/// Default `llm.cache_ttl`: a cached model answer is kept a day.
pub const DEFAULT_CALL_CACHE_TTL: Duration = Duration::from_secs(24 * 3600);

/// What kind of endpoint a provider is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    /// The built-in simulated model: no network.
    #[default]
    Simulated,
    /// An OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama, llama.cpp server).
    OpenaiCompatible,
    /// Anthropic's Messages API (foundation-actors' `anthropic` feature).
    Anthropic,
}

/// In which order a router tries its providers for a request (`llm.routing`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Routing {
    /// The chain's order.
    #[default]
    Chain,
    /// The cheapest first: by the request's expected cost at each model's price (its prompt
    /// and `max_tokens` of answer); models without a price last, in chain order.
    Cheapest,
    /// The lowest observed latency first (a moving average over its recent successful
    /// calls); providers not yet observed first, so that they get observed.
    Fastest,
}

config_section! {
    /// `[llm.providers.NAME]`: one provider.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    pub struct ProviderConfig in "llm.providers.NAME" {
        kind: ProviderKind = ProviderKind::Simulated => KeyKind::OneOf(&["simulated", "openai-compatible", "anthropic"]),
            doc "`simulated`: the built-in model, no network. `openai-compatible`: a chat-completions endpoint (OpenAI, vLLM, Ollama, llama.cpp server). `anthropic`: Anthropic's Messages API (`base_url` unset: `ANTHROPIC_BASE_URL`, else `https://api.anthropic.com`; `api_key` unset: `ANTHROPIC_API_KEY`).";
        model: String = DEFAULT_MODEL.to_string() => KeyKind::String,
            doc "The model asked for.";
        base_url: Option<String> = None => KeyKind::String,
            unset "`OPENAI_BASE_URL`, else `https://api.openai.com/v1`",
            check(
                |c: &Self| c.base_url.as_ref().is_none_or(|u| u.starts_with("http://") || u.starts_with("https://")),
                "an http:// or https:// URL"
            ),
            serde(skip_serializing_if = "Option::is_none"),
            doc "The endpoint, up to `/v1`; an `http://` or `https://` URL.";
        api_key: Option<String> = None => KeyKind::String,
            unset "`OPENAI_API_KEY`, else none",
            serde(skip_serializing_if = "Option::is_none"),
            doc "Sent as a bearer token; local servers need none.";
        profile: String = DEFAULT_PROVIDER_PROFILE.to_string() => KeyKind::String,
            live true,
            check(
                |c: &Self| ProviderLimits::profile(&c.profile).is_some(),
                format!("one of {}", ProviderLimits::profile_names().collect::<Vec<_>>().join(", "))
            ),
            doc "Named limits of the account's tier (the figures providers published for their entry tiers, checked 2026-11; set your account's in `limits`), one of:";
        timeout: Duration = DEFAULT_PROVIDER_TIMEOUT => KeyKind::Duration,
            check(|c: &Self| !c.timeout.is_zero(), "a positive duration"),
            serde(with = "super::duration"),
            doc "Longest one request may take; positive.";
        embedding_model: Option<String> = None => KeyKind::String,
            unset "no embeddings from this provider",
            check(|c: &Self| c.embedding_model.as_ref().is_none_or(|m| !m.is_empty()), "a model name"),
            serde(skip_serializing_if = "Option::is_none"),
            doc "An embedding model at the same endpoint (`/v1/embeddings`; for `simulated`, the built-in hashing embedder), called under this provider's limits, breaker and retries: what `semantic_provider` embeds questions with.";
        attempts: u32 = DEFAULT_PROVIDER_ATTEMPTS => KeyKind::Integer,
            check(|c: &Self| (1..=10).contains(&c.attempts), "an integer from 1 to 10"),
            doc "Attempts per request, the first included (1 to 10): by default a 5xx or a timeout is retried twice, with backoff or after `retry-after`, before the next provider of the chain is tried.";
    }
    tables {
        limits: ProviderLimits = ProviderLimits::default(),
            doc "`[llm.providers.NAME.limits]`: limits that replace the profile's, e.g. `limits = { rpm = 600, tpm = 40000 }`.";
    }
}

impl ProviderConfig {
    /// The profile's limits with this provider's overrides (the profile name is validated
    /// first; an unknown one gives no limits).
    pub fn effective_limits(&self) -> ProviderLimits {
        ProviderLimits::profile(&self.profile).unwrap_or_default().overridden_by(&self.limits)
    }
}

config_section! {
    /// `[llm]`: providers by name and the chain they are tried in.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    pub struct LlmConfig in "llm" {
        chain: Vec<String> = Vec::new() => KeyKind::Strings,
            doc "Provider names, each defined under `[llm.providers]`, in the order they are tried: the next one serves when one is open-circuited, over budget, too small for the prompt or failing. Empty: every provider, in name order.";
        routing: Routing = Routing::Chain => KeyKind::OneOf(&["chain", "cheapest", "fastest"]),
            doc "The order providers are tried in for each request: `chain` (as listed), `cheapest` (by the request's expected cost at each model's price; models without one last), `fastest` (by observed latency; providers not yet observed first). Whatever the order, a provider whose recent calls mostly failed is tried after the others, and a disabled or retired model is not called.";
        cache: bool = true => KeyKind::Boolean,
            doc "Model calls are cached by (model, prompt, parameters) in the process and, on a cluster node serving optimization, the cluster cache: a call made again is answered without a provider call. Calls at a temperature above 0 bypass it unless the request asks (`CachePolicy::Always`); `false` turns it off for every call.";
        cache_max_bytes: u64 = DEFAULT_CALL_CACHE_BYTES => KeyKind::Integer,
            check(|c: &Self| c.cache_max_bytes >= 1024, "at least 1024"),
            doc "The bound on cached model answers, in bytes, of the process's tier and (on a node serving optimization) of the node's part of the cluster tier, each.";
        cache_ttl: Duration = DEFAULT_CALL_CACHE_TTL => KeyKind::Duration,
            check(
                |c: &Self| !c.cache_ttl.is_zero() && c.cache_ttl <= MAX_CALL_CACHE_TTL,
                "a positive duration of at most 365 days"
            ),
            serde(with = "super::duration"),
            doc "How long a cached model answer is kept in each tier (at most 365 days; an answer copied from the cluster tier into the process's lives that long again).";
        semantic_provider: Option<String> = None => KeyKind::String,
            unset "no semantic tier",
            serde(skip_serializing_if = "Option::is_none"),
            doc "A provider (under `[llm.providers]`, with an `embedding_model`) whose embeddings give the router a semantic tier: a question of an opted-in tenant (`semantic_tenants`) or request, similar enough to one answered before in the same conversation context and tenant, is answered from it without a provider call.";
        semantic_dims: u64 = DEFAULT_SEMANTIC_DIMS => KeyKind::Integer,
            check(|c: &Self| (1..=8192).contains(&c.semantic_dims), "an integer from 1 to 8192"),
            doc "The length of the embedding vectors (asked of the model as its `dimensions`; 1 to 8192).";
        semantic_threshold: f64 = DEFAULT_SEMANTIC_THRESHOLD => KeyKind::Number,
            check(|c: &Self| (0.0..=1.0).contains(&c.semantic_threshold), "a similarity from 0 to 1"),
            doc "The cosine similarity from which a stored answer is reused for the tenants of `semantic_tenants` (a request may give its own).";
        semantic_tenants: Vec<String> = Vec::new() => KeyKind::Strings,
            doc "Tenants whose requests use the semantic tier (a request may opt in by itself).";
        semantic_max_entries: u64 = DEFAULT_SEMANTIC_MAX_ENTRIES => KeyKind::Integer,
            check(|c: &Self| c.semantic_max_entries >= 1, "at least 1"),
            doc "The most answers the semantic tier keeps in the process, the least recently used evicted.";
    }
    tables {
        providers: BTreeMap<String, ProviderConfig> = BTreeMap::new(),
            doc "`[llm.providers.NAME]`: the providers. Default: none (the simulated model is built in without configuration).";
    }
}

impl LlmConfig {
    /// Checks every key of `[llm]`, each provider's and its limits'.
    pub(crate) fn validate(&self, v: &mut Validator) {
        self.check_keys("llm", v);
        // Between keys, one issue per name (the declaration's checks see one key at a time).
        for name in &self.chain {
            let known = self.providers.contains_key(name);
            v.check("llm.chain", name, known, "names of providers defined under [llm.providers]");
        }
        if let Some(name) = &self.semantic_provider {
            let embeds = self.providers.get(name).is_some_and(|p| p.embedding_model.is_some());
            v.check(
                "llm.semantic_provider",
                name,
                embeds,
                "the name of a provider under [llm.providers] with an embedding_model",
            );
        }
        for (name, provider) in &self.providers {
            let prefix = format!("llm.providers.{name}");
            provider.check_keys(&prefix, v);
            provider.limits.check_keys(&format!("{prefix}.limits"), v);
        }
    }
}

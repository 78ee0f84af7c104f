//! The model registry: what each model holds (its context window) and what it costs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::completion::Usage;

/// Provider name that matches any provider, for models priced the same wherever they run.
pub const ANY_PROVIDER: &str = "*";

/// One model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// The provider that serves it ([`ANY_PROVIDER`] for any).
    pub provider: String,
    /// The model's name as the provider knows it.
    pub model: String,
    /// Prompt and completion tokens it holds together.
    pub context_window: u64,
    /// US dollars per million prompt tokens.
    pub input_per_million: f64,
    /// US dollars per million completion tokens.
    pub output_per_million: f64,
    /// US dollars per million prompt tokens read from the provider's prompt cache
    /// ([`Usage::cached_prompt_tokens`]); `None`: the input price.
    #[serde(default)]
    pub cached_input_per_million: Option<f64>,
}

impl ModelSpec {
    /// A model served by `provider`.
    pub fn new(
        provider: &str,
        model: &str,
        context_window: u64,
        input_per_million: f64,
        output_per_million: f64,
    ) -> Self {
        ModelSpec {
            provider: provider.to_string(),
            model: model.to_string(),
            context_window,
            input_per_million,
            output_per_million,
            cached_input_per_million: None,
        }
    }

    /// With this price for cached prompt tokens.
    pub fn cached(mut self, per_million: f64) -> Self {
        self.cached_input_per_million = Some(per_million);
        self
    }

    /// What a call that used `usage` costs, in US dollars (cached prompt tokens at the cached
    /// price).
    pub fn cost(&self, usage: Usage) -> f64 {
        let cached = usage.cached_prompt_tokens.min(usage.prompt_tokens);
        let fresh = usage.prompt_tokens - cached;
        let cached_price = self.cached_input_per_million.unwrap_or(self.input_per_million);
        (fresh as f64 * self.input_per_million
            + cached as f64 * cached_price
            + usage.completion_tokens as f64 * self.output_per_million)
            / 1e6
    }
}

/// Models by (provider, name). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ModelRegistry {
    models: BTreeMap<(String, String), ModelSpec>,
}

impl ModelRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry with the list prices of common models (checked 2026-11; prices change: add
    /// your own to override), and the simulated model priced like a small hosted one, so that
    /// demos show realistic costs.
    pub fn with_defaults() -> Self {
        let mut r = Self::new();
        for spec in [
            ModelSpec::new(ANY_PROVIDER, "gpt-4o-mini", 128_000, 0.15, 0.60).cached(0.075),
            ModelSpec::new(ANY_PROVIDER, "gpt-4o", 128_000, 2.50, 10.00).cached(1.25),
            ModelSpec::new(ANY_PROVIDER, "gpt-4.1-mini", 1_047_576, 0.40, 1.60).cached(0.10),
            ModelSpec::new(ANY_PROVIDER, "claude-sonnet-4", 200_000, 3.00, 15.00).cached(0.30),
            ModelSpec::new(ANY_PROVIDER, "claude-haiku-3.5", 200_000, 0.80, 4.00).cached(0.08),
            ModelSpec::new(ANY_PROVIDER, "gemini-2.0-flash", 1_048_576, 0.10, 0.40).cached(0.025),
            ModelSpec::new(ANY_PROVIDER, "simulated", 32_768, 0.15, 0.60).cached(0.075),
        ] {
            r.add(spec);
        }
        r
    }

    /// Adds (or replaces) a model.
    pub fn add(&mut self, spec: ModelSpec) -> &mut Self {
        self.models.insert((spec.provider.clone(), spec.model.clone()), spec);
        self
    }

    /// The model `model` as served by `provider` (or by any provider).
    pub fn get(&self, provider: &str, model: &str) -> Option<&ModelSpec> {
        self.models
            .get(&(provider.to_string(), model.to_string()))
            .or_else(|| self.models.get(&(ANY_PROVIDER.to_string(), model.to_string())))
    }

    /// Every model.
    pub fn models(&self) -> impl Iterator<Item = &ModelSpec> {
        self.models.values()
    }
}

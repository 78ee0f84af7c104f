//! The model registry: what each model holds (its context window) and what it costs, and its
//! lifecycle: a version, deprecation dates (from the first, calls are warned about; from the
//! second, refused) and whether it is enabled (switched at run time, for every clone of the
//! registry: the router's included).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use foundation_core::sync::RwLockRecover;
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
    /// The model's version, as its provider names it (informational: shown in the registry's
    /// status).
    #[serde(default)]
    pub version: Option<String>,
    /// When calls of it are warned about, then refused.
    #[serde(default)]
    pub deprecation: Option<Deprecation>,
}

/// A model's deprecation: from `warn_from` calls succeed with a warning (a `tracing` warning at
/// most once a minute per model, and the metric `foundation_llm_deprecated_calls_total`); from
/// `refuse_from` the router does not call it ([`LmError::ModelUnavailable`](super::LmError::ModelUnavailable)).
/// Seconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deprecation {
    /// From when calls are warned about.
    pub warn_from_unix_secs: u64,
    /// From when calls are refused (the model is retired).
    pub refuse_from_unix_secs: u64,
}

/// Where a model is in its lifecycle (see [`ModelRegistry::status`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelStatus {
    /// Called as usual.
    Active,
    /// Called, with a warning: it is retired at `refuse_from_unix_secs`.
    Deprecated {
        /// When it is retired.
        refuse_from_unix_secs: u64,
    },
    /// Past its retirement date: not called.
    Retired,
    /// Disabled at run time: not called until enabled again.
    Disabled,
}

impl ModelStatus {
    /// Whether the router may call it (active or deprecated).
    pub fn callable(&self) -> bool {
        matches!(self, ModelStatus::Active | ModelStatus::Deprecated { .. })
    }
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
            version: None,
            deprecation: None,
        }
    }

    /// With this version.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// Deprecated: calls warned about from `warn_from`, refused from `refuse_from` (if earlier
    /// than `warn_from`, refused from `warn_from`).
    pub fn deprecated(mut self, warn_from: SystemTime, refuse_from: SystemTime) -> Self {
        let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let (warn, refuse) = (secs(warn_from), secs(refuse_from));
        self.deprecation =
            Some(Deprecation { warn_from_unix_secs: warn, refuse_from_unix_secs: refuse.max(warn) });
        self
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

/// Models by (provider, name). Cheap to clone; clones share which models are disabled
/// ([`disable`](Self::disable) on one is seen by the router holding another).
#[derive(Debug, Clone, Default)]
pub struct ModelRegistry {
    models: BTreeMap<(String, String), ModelSpec>,
    disabled: Arc<RwLock<BTreeSet<(String, String)>>>,
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

    /// Stops the router calling `model` of `provider` (at once, for every clone of this
    /// registry), until [`enable`](Self::enable)d.
    pub fn disable(&self, provider: &str, model: &str) {
        self.disabled.write_or_recover().insert((provider.to_string(), model.to_string()));
    }

    /// Lets the router call `model` of `provider` again.
    pub fn enable(&self, provider: &str, model: &str) {
        self.disabled.write_or_recover().remove(&(provider.to_string(), model.to_string()));
    }

    /// Where `model` of `provider` is in its lifecycle at `now`: disabled, retired, deprecated
    /// or active (a model the registry does not know is active).
    pub fn status(&self, provider: &str, model: &str, now: SystemTime) -> ModelStatus {
        if self.disabled.read_or_recover().contains(&(provider.to_string(), model.to_string())) {
            return ModelStatus::Disabled;
        }
        let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        match self.get(provider, model).and_then(|s| s.deprecation) {
            Some(d) if now >= d.refuse_from_unix_secs => ModelStatus::Retired,
            Some(d) if now >= d.warn_from_unix_secs => {
                ModelStatus::Deprecated { refuse_from_unix_secs: d.refuse_from_unix_secs }
            }
            _ => ModelStatus::Active,
        }
    }
}

//! Usage and cost per provider, model and tenant: counted in metrics and kept for queries.

use foundation_core::sync::MutexRecover;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::completion::Usage;

/// Tenant name of calls made for no tenant.
pub const NO_TENANT: &str = "-";

/// What a row of usage is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UsageKey {
    /// The provider.
    pub provider: String,
    /// The model.
    pub model: String,
    /// The tenant ([`NO_TENANT`] for none).
    pub tenant: String,
}

/// Totals for one key (or summed over several).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageTotals {
    /// Calls answered.
    pub requests: u64,
    /// Calls that failed at this provider (the chain may have served them elsewhere).
    pub failures: u64,
    /// Streams cut before their end (dropped by the caller, or failed after their first piece):
    /// their tokens (estimated: the prompt and the pieces received) and cost are counted too.
    #[serde(default)]
    pub cut: u64,
    /// Prompt tokens of answered calls and cut streams.
    pub prompt_tokens: u64,
    /// Completion tokens of answered calls and cut streams.
    pub completion_tokens: u64,
    /// Their cost in US dollars (0 for models not in the registry).
    pub cost_usd: f64,
}

impl UsageTotals {
    fn add(&mut self, other: &UsageTotals) {
        self.requests = self.requests.saturating_add(other.requests);
        self.failures = self.failures.saturating_add(other.failures);
        self.cut = self.cut.saturating_add(other.cut);
        self.prompt_tokens = self.prompt_tokens.saturating_add(other.prompt_tokens);
        self.completion_tokens = self.completion_tokens.saturating_add(other.completion_tokens);
        self.cost_usd += other.cost_usd;
    }
}

/// Which rows a query takes; `None` matches any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageFilter {
    /// Only this provider.
    pub provider: Option<String>,
    /// Only this model.
    pub model: Option<String>,
    /// Only this tenant.
    pub tenant: Option<String>,
}

impl UsageFilter {
    fn matches(&self, key: &UsageKey) -> bool {
        self.provider.as_ref().is_none_or(|p| *p == key.provider)
            && self.model.as_ref().is_none_or(|m| *m == key.model)
            && self.tenant.as_ref().is_none_or(|t| *t == key.tenant)
    }
}

/// The ledger. Cheap to clone (clones share it).
///
/// Metrics, per provider, model and tenant: `foundation_llm_requests_total{outcome="ok"|"error"}`,
/// `foundation_llm_tokens_total{kind="prompt"|"completion"}`, `foundation_llm_cost_usd_total`
/// (a gauge that only grows, since counters are integers), and the latency histogram
/// `foundation_llm_request_seconds{provider, model}`.
#[derive(Debug, Clone, Default)]
pub struct UsageLedger {
    rows: Arc<Mutex<BTreeMap<UsageKey, UsageTotals>>>,
}

impl UsageLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    fn key(provider: &str, model: &str, tenant: Option<&str>) -> UsageKey {
        UsageKey {
            provider: provider.into(),
            model: model.into(),
            tenant: tenant.unwrap_or(NO_TENANT).into(),
        }
    }

    fn update(&self, key: UsageKey, delta: UsageTotals) {
        let mut rows = self.rows.lock_or_recover();
        rows.entry(key).or_default().add(&delta);
    }

    /// The metrics of a call that used tokens: its outcome, its tokens, its cost.
    fn count(key: &UsageKey, outcome: &'static str, usage: Usage, cost_usd: f64) {
        let labels = [
            ("provider", key.provider.clone()),
            ("model", key.model.clone()),
            ("tenant", key.tenant.clone()),
        ];
        let with = |name: &'static str, value: &'static str| {
            let mut l = labels.to_vec();
            l.push((name, value.to_string()));
            l
        };
        metrics::counter!("foundation_llm_requests_total", &with("outcome", outcome)).increment(1);
        metrics::counter!("foundation_llm_tokens_total", &with("kind", "prompt"))
            .increment(usage.prompt_tokens);
        metrics::counter!("foundation_llm_tokens_total", &with("kind", "completion"))
            .increment(usage.completion_tokens);
        metrics::gauge!("foundation_llm_cost_usd_total", &labels).increment(cost_usd);
    }

    /// Records an answered call.
    pub fn record_success(
        &self,
        provider: &str,
        model: &str,
        tenant: Option<&str>,
        usage: Usage,
        cost_usd: f64,
        latency: Duration,
    ) {
        let key = Self::key(provider, model, tenant);
        Self::count(&key, "ok", usage, cost_usd);
        metrics::histogram!("foundation_llm_request_seconds", "provider" => key.provider.clone(), "model" => key.model.clone())
            .record(latency.as_secs_f64());
        let delta = UsageTotals {
            requests: 1,
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            cost_usd,
            ..Default::default()
        };
        self.update(key, delta);
    }

    /// Records a call that failed at a provider.
    pub fn record_failure(&self, provider: &str, model: &str, tenant: Option<&str>) {
        let key = Self::key(provider, model, tenant);
        metrics::counter!("foundation_llm_requests_total", "provider" => key.provider.clone(), "model" => key.model.clone(),
            "tenant" => key.tenant.clone(), "outcome" => "error")
        .increment(1);
        self.update(key, UsageTotals { failures: 1, ..Default::default() });
    }

    /// Records a stream cut before its end (`failed`: by the provider, else by the caller), with
    /// the tokens it used as far as it went and their cost.
    pub fn record_cut(
        &self,
        provider: &str,
        model: &str,
        tenant: Option<&str>,
        usage: Usage,
        cost_usd: f64,
        failed: bool,
    ) {
        let key = Self::key(provider, model, tenant);
        Self::count(&key, if failed { "error" } else { "cancelled" }, usage, cost_usd);
        let delta = UsageTotals {
            failures: u64::from(failed),
            cut: 1,
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            cost_usd,
            ..Default::default()
        };
        self.update(key, delta);
    }

    /// The rows that match, in key order.
    pub fn summary(&self, filter: &UsageFilter) -> Vec<(UsageKey, UsageTotals)> {
        let rows = self.rows.lock_or_recover();
        rows.iter().filter(|(k, _)| filter.matches(k)).map(|(k, t)| (k.clone(), *t)).collect()
    }

    /// The sum of the rows that match.
    pub fn totals(&self, filter: &UsageFilter) -> UsageTotals {
        let mut sum = UsageTotals::default();
        for (_, t) in self.summary(filter) {
            sum.add(&t);
        }
        sum
    }
}

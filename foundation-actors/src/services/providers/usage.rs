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

/// Calls this process made to model providers (answered or failed), since it started.
static PROCESS_CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// Calls this process's providers answered with 429 (each retry counted), since it started.
static PROCESS_RATE_LIMITED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// What this process's providers did since it started, over every provider and model: what a
/// node reports in its health (and the dashboard charts per second).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessCallTotals {
    /// Calls made (answered or failed), as `foundation_llm_requests_total` counts them.
    pub calls: u64,
    /// 429 answers, as `foundation_llm_rate_limited_total` counts them.
    pub rate_limited: u64,
}

/// This process's [`ProcessCallTotals`].
pub fn process_call_totals() -> ProcessCallTotals {
    use std::sync::atomic::Ordering::Relaxed;
    ProcessCallTotals { calls: PROCESS_CALLS.load(Relaxed), rate_limited: PROCESS_RATE_LIMITED.load(Relaxed) }
}

/// Counts a 429 in [`process_call_totals`] (where the metric is recorded).
pub(crate) fn count_rate_limited() {
    PROCESS_RATE_LIMITED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// The ledger. Cheap to clone (clones share it).
///
/// Metrics, per provider, model and tenant: `foundation_llm_requests_total{outcome="ok"|"error"}`,
/// `foundation_llm_tokens_total{kind="prompt"|"completion"}`, `foundation_llm_cost_usd`
/// (a gauge that only grows, since counters are integers) with each call's cost as a
/// distribution (`foundation_llm_call_cost_usd`, a histogram: percentiles of a call's cost), and
/// the latency histogram `foundation_llm_request_seconds{provider, model}`.
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
        PROCESS_CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        metrics::counter!("foundation_llm_tokens_total", &with("kind", "prompt"))
            .increment(usage.prompt_tokens);
        metrics::counter!("foundation_llm_tokens_total", &with("kind", "completion"))
            .increment(usage.completion_tokens);
        metrics::gauge!("foundation_llm_cost_usd", &labels).increment(cost_usd);
        // A histogram per series costs a sketch per sub-window: tenants (named by callers) are
        // capped, the rest counted under `other`.
        let bounded = [
            ("provider", key.provider.clone()),
            ("model", key.model.clone()),
            (
                "tenant",
                foundation_core::telemetry::bounded_label("foundation_llm_call_cost_usd", &key.tenant),
            ),
        ];
        metrics::histogram!("foundation_llm_call_cost_usd", &bounded).record(cost_usd);
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
        PROCESS_CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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

    /// Adds `rows` to the ledger (totals read from a file, or another process's).
    pub fn merge(&self, rows: &[(UsageKey, UsageTotals)]) {
        let mut own = self.rows.lock_or_recover();
        for (key, totals) in rows {
            own.entry(key.clone()).or_default().add(totals);
        }
    }

    /// Writes every row to `path` as JSON, whole: to a temporary file beside it, synced, then
    /// renamed over it (a crash leaves the old file or the new one, never half of one).
    pub fn save(&self, path: &std::path::Path) -> Result<(), LedgerFileError> {
        let file = LedgerFile { version: LEDGER_FILE_VERSION, rows: self.summary(&UsageFilter::default()) };
        let failed = |source: std::io::Error| LedgerFileError::Io { path: path.to_path_buf(), source };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| failed(std::io::Error::other(e)))?;
        let tmp = path.with_extension("json.tmp");
        {
            use std::io::Write as _;
            let mut out = std::fs::File::create(&tmp).map_err(failed)?;
            out.write_all(&bytes).map_err(failed)?;
            out.sync_all().map_err(failed)?;
        }
        std::fs::rename(&tmp, path).map_err(failed)
    }

    /// A ledger starting from the rows saved at `path` by [`save`](Self::save) (empty if there
    /// is no such file). A file that is not a ledger is an error naming it, and is left as it
    /// is.
    pub fn load(path: &std::path::Path) -> Result<UsageLedger, LedgerFileError> {
        let ledger = UsageLedger::new();
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ledger),
            Err(source) => return Err(LedgerFileError::Io { path: path.to_path_buf(), source }),
        };
        let file: LedgerFile = serde_json::from_slice(&bytes)
            .map_err(|e| LedgerFileError::Invalid { path: path.to_path_buf(), reason: e.to_string() })?;
        if file.version != LEDGER_FILE_VERSION {
            return Err(LedgerFileError::Invalid {
                path: path.to_path_buf(),
                reason: format!("version {}, this build reads {LEDGER_FILE_VERSION}", file.version),
            });
        }
        ledger.merge(&file.rows);
        Ok(ledger)
    }
}

/// The version of the ledger file [`UsageLedger::save`] writes.
pub const LEDGER_FILE_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct LedgerFile {
    version: u32,
    rows: Vec<(UsageKey, UsageTotals)>,
}

/// A ledger file that could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum LedgerFileError {
    /// Reading or writing it failed.
    #[error("usage ledger {}: {source}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// It is not a ledger this build reads.
    #[error("usage ledger {}: not a usage ledger: {reason}", path.display())]
    Invalid {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

//! What a tenant is given: quotas, a price and a configuration overlay.

use serde::{Deserialize, Serialize};

/// A tenant's quotas, enforced by its own rate limiter (`None`: no bound on that dimension).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantQuota {
    /// Requests admitted per minute.
    pub requests_per_minute: Option<u64>,
    /// Language-model tokens per minute (estimated at admission, settled with the real count).
    pub tokens_per_minute: Option<u64>,
    /// Pieces of work in flight at once.
    pub max_concurrent: Option<u64>,
}

/// Everything a tenant is registered with.
///
/// ```
/// use foundation_actors::tenants::{TenantQuota, TenantSpec};
/// let spec = TenantSpec {
///     quota: TenantQuota { requests_per_minute: Some(600), tokens_per_minute: Some(90_000), max_concurrent: Some(8) },
///     price_per_1k_tokens: 0.002,
///     overlay: Some("[telemetry]\nwindow = \"30s\"".into()),
/// };
/// # let _ = spec;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantSpec {
    /// Its quotas.
    pub quota: TenantQuota,
    /// What it is charged per 1 000 tokens (in whatever currency unit the application uses).
    pub price_per_1k_tokens: f64,
    /// TOML laid over the node's configuration for this tenant's work (same keys as the node's
    /// file; validated like it).
    pub overlay: Option<String>,
}

//! [`Tenants`], [`Tenant`] and the permit a tenant's work holds.

use foundation_core::sync::{MutexRecover, RwLockRecover};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use foundation_core::FoundationConfig;
use foundation_core::config::ConfigLoader;
use foundation_core::events::{EventStore, TenantEvents};
use foundation_core::rate_limit::{Limit, Permit, RateLimitError, RateLimiter};

use super::spec::TenantSpec;

/// Why a tenant operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    /// No tenant of this name is registered.
    #[error("unknown tenant `{0}`")]
    Unknown(String),
    /// A tenant of this name is already registered.
    #[error("tenant `{0}` is already registered")]
    Duplicate(String),
    /// The name or spec is unusable (the reason names the field).
    #[error("tenant `{tenant}`: {source}")]
    Invalid {
        /// The tenant.
        tenant: String,
        /// What is wrong (an explanation, or the underlying error).
        #[source]
        source: foundation_core::BoxError,
    },
    /// The tenant's quota did not admit the work in time (or never can).
    #[error("tenant `{tenant}` over quota: {source}")]
    OverQuota {
        /// The tenant.
        tenant: String,
        /// The limiter's verdict (which dimension, how long).
        source: RateLimitError,
    },
    /// No event store was given to [`Tenants::with_events`].
    #[error("no event store is configured for tenants")]
    NoEventStore,
}

/// What a tenant has used so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// Work admitted.
    pub requests: u64,
    /// Tokens settled.
    pub tokens: u64,
    /// `tokens / 1000 * price_per_1k_tokens`, summed.
    pub cost: f64,
    /// Admissions refused (over quota at the deadline).
    pub refused: u64,
}

struct TenantState {
    id: String,
    spec: TenantSpec,
    config: FoundationConfig,
    limiter: Option<RateLimiter>,
    /// Index of each dimension in the limiter's cost vector: requests, tokens, concurrent.
    dims: [Option<usize>; 3],
    usage: Mutex<Usage>,
    events: Option<EventStore>,
}

/// The tenants of one process.
#[derive(Clone)]
pub struct Tenants {
    base: Arc<FoundationConfig>,
    events: Option<EventStore>,
    tenants: Arc<RwLock<HashMap<String, Tenant>>>,
}

impl Tenants {
    /// No tenants yet; overlays are laid over `base`.
    pub fn new(base: FoundationConfig) -> Self {
        Tenants { base: Arc::new(base), events: None, tenants: Arc::default() }
    }

    /// Gives tenants their views of this event store ([`Tenant::events`]).
    pub fn with_events(mut self, store: EventStore) -> Self {
        self.events = Some(store);
        self
    }

    /// Registers a tenant: validates its name, quota and overlay, and builds its limiter.
    pub fn register(&self, id: &str, spec: TenantSpec) -> Result<Tenant, TenantError> {
        let invalid =
            |source: foundation_core::BoxError| TenantError::Invalid { tenant: id.to_string(), source };
        if id.is_empty()
            || id.len() > foundation_core::events::MAX_NAME_BYTES
            || !id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(invalid("a tenant id is 1 to 256 characters of [A-Za-z0-9._-]".into()));
        }
        if !(spec.price_per_1k_tokens.is_finite() && spec.price_per_1k_tokens >= 0.0) {
            let reason = format!("price_per_1k_tokens must be ≥ 0, got {}", spec.price_per_1k_tokens);
            return Err(invalid(reason.into()));
        }
        let config = match &spec.overlay {
            None => (*self.base).clone(),
            Some(overlay) => {
                let base = toml::to_string(&*self.base).map_err(|e| {
                    invalid(format!("the base configuration cannot be written out: {e}").into())
                })?;
                ConfigLoader::new()
                    .toml_str(base)
                    .toml_str(overlay.clone())
                    .load()
                    .map_err(|e| invalid(format!("configuration overlay: {e}").into()))?
            }
        };
        let q = &spec.quota;
        let wanted = [
            q.requests_per_minute.map(|n| Limit::per_minute("requests", n)),
            q.tokens_per_minute.map(|n| Limit::per_minute("tokens", n)),
            q.max_concurrent.map(|n| Limit::concurrent("concurrent", n)),
        ];
        let limits: Vec<Limit> = wanted.iter().flatten().cloned().collect();
        let limiter = if limits.is_empty() {
            None
        } else {
            Some(RateLimiter::new(limits).map_err(|e| invalid(format!("quota: {e}").into()))?)
        };
        let dims =
            ["requests", "tokens", "concurrent"].map(|d| limiter.as_ref().and_then(|l| l.dimension(d)));
        let tenant = Tenant(Arc::new(TenantState {
            id: id.to_string(),
            spec,
            config,
            limiter,
            dims,
            usage: Mutex::new(Usage::default()),
            events: self.events.clone(),
        }));
        let mut tenants = self.tenants.write_or_recover();
        if tenants.contains_key(id) {
            return Err(TenantError::Duplicate(id.to_string()));
        }
        tenants.insert(id.to_string(), tenant.clone());
        Ok(tenant)
    }

    /// A registered tenant.
    pub fn get(&self, id: &str) -> Result<Tenant, TenantError> {
        let tenants = self.tenants.read_or_recover();
        tenants.get(id).cloned().ok_or_else(|| TenantError::Unknown(id.to_string()))
    }

    /// Every tenant's usage, by id.
    pub fn usage(&self) -> Vec<(String, Usage)> {
        let tenants = self.tenants.read_or_recover();
        let mut all: Vec<_> = tenants.values().map(|t| (t.id().to_string(), t.usage())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

/// One tenant: its quota, usage, configuration and data views. Cheap to clone.
#[derive(Clone)]
pub struct Tenant(Arc<TenantState>);

impl std::fmt::Debug for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenant").field("id", &self.0.id).field("quota", &self.0.spec.quota).finish()
    }
}

impl Tenant {
    /// Its id.
    pub fn id(&self) -> &str {
        &self.0.id
    }

    /// Its spec as registered.
    pub fn spec(&self) -> &TenantSpec {
        &self.0.spec
    }

    /// The node's configuration with this tenant's overlay laid over it.
    pub fn config(&self) -> &FoundationConfig {
        &self.0.config
    }

    /// The prefix that keeps its cache keys apart from other tenants' (`tenant/ID/`).
    pub fn namespace(&self) -> String {
        format!("tenant/{}/", self.0.id)
    }

    /// Its view of the event store: appends are its own, reads see only its events.
    pub fn events(&self) -> Result<TenantEvents, TenantError> {
        self.0.events.as_ref().map(|s| s.for_tenant(self.0.id.clone())).ok_or(TenantError::NoEventStore)
    }

    /// The limiter that enforces its quota (`None`: no quota). Clones share it, so a
    /// cluster-wide budget can run it on this node's share: hold the quota for the cluster as
    /// a whole with `foundation_cluster::BudgetHandle::start(&cluster, "tenant:ID", limiter.clone(), …)`
    /// on every node that registers the tenant (the same quota everywhere). A concurrency
    /// quota is split by whole slots (each node's share rounded down): keep it at least the
    /// number of nodes that serve the tenant at once, or per node.
    pub fn limiter(&self) -> Option<&RateLimiter> {
        self.0.limiter.as_ref()
    }

    /// What it has used so far.
    pub fn usage(&self) -> Usage {
        *self.0.usage.lock_or_recover()
    }

    /// Waits (up to `timeout`) until its quota admits one request estimated at
    /// `estimated_tokens`; requests are served in arrival order. Other tenants are never
    /// delayed by this one's waiting.
    pub async fn admit(&self, estimated_tokens: u64, timeout: Duration) -> Result<TenantWork, TenantError> {
        let permit = match &self.0.limiter {
            None => None,
            Some(limiter) => {
                let mut cost = vec![0; limiter.dimensions().len()];
                let [requests, tokens, concurrent] = self.0.dims;
                for (dim, amount) in [(requests, 1), (tokens, estimated_tokens), (concurrent, 1)] {
                    if let Some(i) = dim {
                        cost[i] = amount;
                    }
                }
                match limiter.acquire(&cost, Some(timeout)).await {
                    Ok(p) => Some(p),
                    Err(source) => {
                        self.0.usage.lock_or_recover().refused += 1;
                        metrics::counter!("foundation_tenant_refused_total", "tenant" => self.0.id.clone())
                            .increment(1);
                        return Err(TenantError::OverQuota { tenant: self.0.id.clone(), source });
                    }
                }
            }
        };
        self.0.usage.lock_or_recover().requests += 1;
        metrics::counter!("foundation_tenant_requests_total", "tenant" => self.0.id.clone()).increment(1);
        Ok(TenantWork { tenant: self.clone(), permit, estimated_tokens, settled: false })
    }
}

/// Admitted work of one tenant: holds its concurrency slot until finished, cancelled or dropped.
#[derive(Debug)]
pub struct TenantWork {
    tenant: Tenant,
    permit: Option<Permit>,
    estimated_tokens: u64,
    settled: bool,
}

impl TenantWork {
    /// Settles the real token count (refunding or charging the estimate) and records usage
    /// and cost.
    pub fn finish(mut self, tokens: u64) {
        self.settle(tokens);
    }

    /// The work consumed nothing (it failed before any model was called): the estimate is
    /// refunded and no usage recorded.
    pub fn cancel(mut self) {
        self.settle(0);
    }

    fn settle(&mut self, tokens: u64) {
        if self.settled {
            return;
        }
        self.settled = true;
        let state = &self.tenant.0;
        if let (Some(permit), Some(i)) = (self.permit.as_mut(), state.dims[1]) {
            let mut actual = permit.cost().to_vec();
            actual[i] = tokens;
            let _ = permit.settle(&actual);
        }
        let cost = tokens as f64 / 1000.0 * state.spec.price_per_1k_tokens;
        {
            let mut usage = state.usage.lock_or_recover();
            usage.tokens += tokens;
            usage.cost += cost;
        }
        if tokens > 0 {
            metrics::counter!("foundation_tenant_tokens_total", "tenant" => state.id.clone())
                .increment(tokens);
            metrics::gauge!("foundation_tenant_cost", "tenant" => state.id.clone()).increment(cost);
        }
    }
}

impl Drop for TenantWork {
    /// Dropped unsettled (an error path that forgot to say what it used): the estimate is
    /// what is charged and billed, so that failing work cannot get its quota back for free.
    fn drop(&mut self) {
        self.settle(self.estimated_tokens);
    }
}

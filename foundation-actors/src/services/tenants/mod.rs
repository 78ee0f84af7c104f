//! Multi-tenancy: each tenant's quotas, usage, cost, configuration and data kept apart.
//!
//! - [`Tenants`]: the registry. [`Tenants::register`] validates a [`TenantSpec`] (its quota
//!   and its configuration overlay, laid over the node's configuration) and gives the tenant its
//!   own [`RateLimiter`](foundation_core::rate_limit::RateLimiter) over requests per minute,
//!   tokens per minute and concurrent work: one tenant exhausting its quota waits on its own
//!   limiter and never delays another.
//! - [`Tenant::admit`] waits for the tenant's quota (with a deadline) and returns a
//!   [`TenantWork`] permit; [`TenantWork::finish`] settles the real token count and records
//!   usage and cost (also as `foundation_tenant_*` metrics labelled by tenant);
//!   [`TenantWork::cancel`] refunds work that consumed nothing; dropped unsettled, work is
//!   charged its estimate.
//! - Data: [`Tenant::events`] is the tenant's view of the event store (it can neither read nor
//!   write another tenant's events); [`Tenant::namespace`] is the key prefix for caches.
//!
//! ```
//! use foundation_actors::tenants::{TenantQuota, TenantSpec, Tenants};
//! use foundation_core::FoundationConfig;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let tenants = Tenants::new(FoundationConfig::default());
//! let spec = TenantSpec {
//!     quota: TenantQuota { requests_per_minute: Some(60), tokens_per_minute: Some(10_000), max_concurrent: Some(2) },
//!     price_per_1k_tokens: 0.5,
//!     overlay: None,
//! };
//! let acme = tenants.register("acme", spec).unwrap();
//! let work = acme.admit(800, std::time::Duration::from_secs(5)).await.unwrap();
//! // … call the model …
//! work.finish(1_000);
//! assert_eq!(acme.usage().tokens, 1_000);
//! assert!((acme.usage().cost - 0.5).abs() < 1e-9);
//! # });
//! ```

mod registry;
mod spec;

pub use registry::{Tenant, TenantError, TenantWork, Tenants, Usage};
pub use spec::{TenantQuota, TenantSpec};

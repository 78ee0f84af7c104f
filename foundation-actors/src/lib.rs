//! Foundation's actors, on `ractor`, in two layers.
//!
//! **Actor building blocks** (always built; they work the same in a cluster of one):
//! [`supervision`] (OTP-style restarts), [`channels`] (pub/sub with a priority lane for control
//! traffic), [`registry`] (services by capability, health-aware balancing), [`pool`] (elastic
//! worker pools), [`pipeline`], [`wire`] (the one cross-node encoding) and [`traced`] messages.
//!
//! **Application services** (cargo features, on by default; `default-features = false` leaves
//! them and their dependencies out, and then no HTTP stack is compiled):
//! - `llm`: `providers` — the `LanguageModel` trait, the simulated model, an OpenAI-compatible
//!   client (reqwest), limits, breaker, retries, the fallback router, usage; with `sim-server`,
//!   the simulated provider server (axum);
//! - `agents`: `agents` — supervised agents with a model, memory and tools, found by capability
//!   and asked on any node (needs `llm`);
//! - `state`: `aggregates` (event sourcing and projections) and `tenants` (quotas, usage,
//!   overlays).
//!
//! ractor's `cluster` feature is always on here (a clustered build turns it on anyway), so every
//! message type implements `ractor::Message` explicitly.

// The actor building blocks: always built.
pub mod channels;
pub mod pg_scopes;
pub mod pipeline;
pub mod pool;
pub mod registry;
pub mod supervision;
pub mod traced;
pub mod wire;

// The application services (`services/`): cargo features, on by default, used from the root.
pub mod services;
#[cfg(feature = "agents")]
pub use services::agents;
#[cfg(feature = "state")]
pub use services::aggregates;
#[cfg(feature = "llm")]
pub use services::providers;
#[cfg(feature = "state")]
pub use services::tenants;

//! The application services: cargo features of this crate, on by default. Each is re-exported
//! at the crate root (`foundation_actors::providers`, `::agents`, `::aggregates`, `::tenants`).
//!
//! - `llm`: [`providers`] — language models behind limits, breakers, retries and a fallback
//!   router (the OpenAI-compatible client uses reqwest; `sim-server` adds the simulated provider
//!   server, axum).
//! - `agents`: [`agents`] — agents with a model, tools and memory (needs `llm`).
//! - `state`: [`aggregates`] (event sourcing, projections) and [`tenants`] (quotas, usage,
//!   overlays).

#[cfg(feature = "agents")]
pub mod agents;
#[cfg(feature = "state")]
pub mod aggregates;
#[cfg(feature = "llm")]
pub mod providers;
#[cfg(feature = "state")]
pub mod tenants;

//! Foundation's actors, on `ractor`, in two layers.
//!
//! **Actor building blocks** (always built; they work the same in a cluster of one):
//! [`supervision`] (OTP-style restarts), [`channels`] (pub/sub with a priority lane for control
//! traffic), [`registry`] (services by capability, health-aware balancing), [`pool`] (elastic
//! worker pools), [`pipeline`], [`wire`] (the one cross-node encoding of serde values), [`blob`] (raw bytes
//! between nodes, not copied) and [`traced`] messages.
//!
//! **Application services** (cargo features, on by default; `default-features = false` leaves
//! them and their dependencies out, and then no HTTP stack is compiled):
//! - the `llm` family: `providers`.
//!   - `llm` — the `LanguageModel` trait (`complete` and `stream`), messages with content parts,
//!     tool calls and results, tools, tool choice, JSON-schema response formats, stop sequences,
//!     seeds, usage with cached prompt tokens; the simulated model; the OpenAI-compatible client
//!     (reqwest); limits, breaker, retries, the fallback router, the call cache, usage;
//!   - `anthropic` — the native Anthropic Messages client (`AnthropicClient`);
//!   - `streaming` — answers streamed over HTTP (server-sent events) by both clients; without
//!     it a client's stream is its whole answer at once (the `stream` API stays);
//!   - `json-schema` — JSON Schemas of Rust types (schemars: `ToolSpec::of`,
//!     `ResponseFormat::of`, `schema_of`);
//!   - `sim-server` — the simulated provider server (axum), speaking OpenAI's and Anthropic's
//!     APIs;
//! - `agents`: `agents` — supervised agents with a model, memory and tools, found by capability
//!   and asked on any node (needs `llm`);
//! - `state`: `aggregates` (event sourcing and projections) and `tenants` (quotas, usage,
//!   overlays).
//!
//! ractor's `cluster` feature is always on here (a clustered build turns it on anyway), so every
//! message type implements `ractor::Message` explicitly.

// The actor building blocks: always built.
pub mod blob;
pub mod channels;
pub mod metric_catalog;
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

//! Single-node actor building blocks for Foundation, on `ractor`: supervision, channels
//! (pub/sub with a priority lane for control traffic), a service registry with capability
//! discovery and health-aware balancing, elastic worker pools, pipelines, event-sourced
//! aggregates, tenant quotas and LLM provider management.
//!
//! Built so far: [`supervision`], [`channels`], [`registry`], [`pool`], [`pipeline`], [`providers`],
//! [`agents`] (supervised agents with a model, memory and tools, found by capability and asked on any node), [`aggregates`] (event sourcing and projections), [`tenants`] (quotas, usage, overlays).
//!
//! ractor's `cluster` feature is always on here (a clustered build turns it on anyway), so every
//! message type implements `ractor::Message` explicitly.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod agents;
pub mod aggregates;
pub mod channels;
pub mod pipeline;
pub mod pool;
pub mod providers;
pub mod registry;
pub mod supervision;
pub mod tenants;
pub mod traced;
pub mod wire;

//! Single-node actor building blocks for Foundation, on `ractor`: supervision, channels
//! (pub/sub with a priority lane for control traffic), a service registry with capability
//! discovery and health-aware balancing, elastic worker pools, pipelines, event-sourced
//! aggregates, tenant quotas and LLM provider management.
//!
//! Not built yet: this crate is planned in the project's issue 3 (actors) and later issues.
//! It depends only on `foundation-core`.

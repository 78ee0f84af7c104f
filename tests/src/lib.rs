//! Workspace-level integration, multi-node and fault tests for Foundation live under
//! `tests/tests/`; tests of one crate live in that crate. This library holds the guide's pages
//! (`docs/guide/`) as documentation, so that every Rust block in them is compiled and run as a
//! doctest.

#[doc = include_str!("../../docs/guide/getting-started.md")]
pub mod getting_started {}

#[doc = include_str!("../../docs/guide/state.md")]
pub mod state {}

#[doc = include_str!("../../docs/guide/embedding.md")]
pub mod embedding {}

//! Workspace-level integration, multi-node and fault tests for Foundation live under
//! `tests/tests/`; tests of one crate live in that crate. This library holds the guide's pages
//! (`docs/guide/`) as documentation, so that every Rust block in them is compiled and run as a
//! doctest.

#[doc = include_str!("../../docs/guide/getting-started.md")]
pub mod getting_started {}

#[doc = include_str!("../../docs/guide/concepts.md")]
pub mod concepts {}

#[doc = include_str!("../../docs/guide/state.md")]
pub mod state {}

#[doc = include_str!("../../docs/guide/embedding.md")]
pub mod embedding {}

#[doc = include_str!("../../docs/guide/operating.md")]
pub mod operating {}

#[doc = include_str!("../../docs/guide/configuration.md")]
pub mod configuration {}

#[doc = include_str!("../../docs/guide/agents.md")]
pub mod agents {}

#[doc = include_str!("../../docs/guide/models.md")]
pub mod models {}

#[cfg(test)]
mod tests {
    /// The committed reference is what `foundation config reference` prints today.
    #[test]
    fn the_configuration_reference_is_generated_from_the_config_types() {
        let committed = include_str!("../../docs/guide/configuration.md");
        let generated = foundation_core::config::reference_markdown();
        assert!(
            committed == generated,
            "docs/guide/configuration.md differs from the reference generated from \
             foundation_core::config; regenerate it from the workspace root with:\n    {}",
            foundation_core::config::reference::REGENERATE_COMMAND
        );
    }
}

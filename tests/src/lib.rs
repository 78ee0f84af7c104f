//! Workspace-level integration tests for Foundation live under `tests/tests/`.

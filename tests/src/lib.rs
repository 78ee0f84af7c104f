//! Workspace-level integration, multi-node and fault tests for Foundation live under
//! `tests/tests/`; this library is empty. Tests of one crate live in that crate.

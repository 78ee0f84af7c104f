//! placeholder
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]
pub mod config;
pub mod error_context;
pub mod telemetry;
pub use error_context::{ContextError, ErrorContext};

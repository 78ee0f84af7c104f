//! Building blocks for agents (issue 9, first part): typed [`Tools`] registered by name, whose
//! arguments and results are serde types carried as JSON (so a call can come from a model's
//! output or from another node), and a bounded conversation [`Memory`].
//!
//! The `Agent` runtime itself (step function, capabilities announced through the registry,
//! supervision) is not built yet.

mod memory;
mod tools;

pub use memory::Memory;
pub use tools::{MAX_TOOL_NAME, ToolError, Tools};

//! Typed tools registered by name: arguments and results are serde types, carried as JSON, so
//! that a tool's caller needs only its name and a JSON value (a model's tool call, or a message
//! from another node).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use foundation_core::Cause;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::providers::BoxFuture;

/// Why a tool call (or registration) failed. Every variant names the tool. Serializable: a
/// tool server on another node sends it back as it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum ToolError {
    /// No tool of this name.
    #[error("unknown tool `{name}`; known tools: {}", known.join(", "))]
    Unknown {
        /// The name asked for.
        name: String,
        /// The tools there are.
        known: Vec<String>,
    },
    /// The arguments do not fit the tool's argument type (the source names the field).
    #[error("tool `{tool}`: bad arguments: {source}")]
    BadArguments {
        /// The tool.
        tool: String,
        /// What serde said, with the path of the field (the underlying error).
        #[source]
        source: Cause,
    },
    /// The tool ran and failed.
    #[error("tool `{tool}` failed: {source}")]
    Failed {
        /// The tool.
        tool: String,
        /// Its error (the underlying error).
        #[source]
        source: Cause,
    },
    /// The result could not be converted (to JSON, or to the caller's type).
    #[error("tool `{tool}`: bad result: {source}")]
    BadResult {
        /// The tool.
        tool: String,
        /// What serde said (the underlying error).
        #[source]
        source: Cause,
    },
    /// The tool is served by another actor (a [`ToolServer`](super::ToolServer)) that did not
    /// answer: it timed out, stopped while calling, or is gone.
    #[error("tool `{tool}` unreachable: {reason}")]
    Unreachable {
        /// The tool.
        tool: String,
        /// What happened to its server.
        reason: String,
    },
    /// A registration refused: an empty, over-long or duplicate name.
    #[error("cannot register tool `{name}`: {reason}")]
    Registration {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
}

type Call = dyn Fn(Value) -> BoxFuture<'static, Result<Value, ToolError>> + Send + Sync;

struct Tool {
    description: String,
    call: Box<Call>,
}

/// The longest tool name accepted.
pub const MAX_TOOL_NAME: usize = 64;

/// A set of tools by name. Cheap to clone (the tools are shared).
///
/// ```
/// use foundation_actors::agents::Tools;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Deserialize)]
/// struct Add { a: i64, b: i64 }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let mut tools = Tools::new();
/// tools.register("add", "adds two integers", |x: Add| async move { Ok::<_, foundation_core::BoxError>(x.a + x.b) }).unwrap();
/// let sum = tools.call("add", serde_json::json!({"a": 2, "b": 3})).await.unwrap();
/// assert_eq!(sum, 5);
/// # });
/// ```
#[derive(Clone, Default)]
pub struct Tools {
    tools: BTreeMap<String, Arc<Tool>>,
}

impl std::fmt::Debug for Tools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.tools.keys()).finish()
    }
}

impl Tools {
    /// No tools.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a tool: `run` takes the decoded arguments and returns a serializable result or
    /// any error ([`BoxError`](foundation_core::BoxError); its message is what the caller sees). Names are 1 to [`MAX_TOOL_NAME`] characters of `[A-Za-z0-9_.-]`,
    /// unique in the set.
    pub fn register<A, R, F, Fut>(
        &mut self,
        name: &str,
        description: &str,
        run: F,
    ) -> Result<&mut Self, ToolError>
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, foundation_core::BoxError>> + Send + 'static,
    {
        let refuse =
            |reason: &str| ToolError::Registration { name: name.to_string(), reason: reason.to_string() };
        if name.is_empty()
            || name.len() > MAX_TOOL_NAME
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return Err(refuse("a name is 1 to 64 characters of [A-Za-z0-9_.-]"));
        }
        if self.tools.contains_key(name) {
            return Err(refuse("a tool of this name is already registered"));
        }
        let run = Arc::new(run);
        let tool = name.to_string();
        let call = move |args: Value| -> BoxFuture<'static, Result<Value, ToolError>> {
            let tool = tool.clone();
            let decoded: Result<A, _> = serde_path_to_error::deserialize(args);
            let run = run.clone();
            Box::pin(async move {
                let args = decoded
                    .map_err(|e| ToolError::BadArguments { tool: tool.clone(), source: Cause::new(e) })?;
                let result = run(args)
                    .await
                    .map_err(|e| ToolError::Failed { tool: tool.clone(), source: Cause::new(e) })?;
                serde_json::to_value(result).map_err(|e| ToolError::BadResult { tool, source: Cause::new(e) })
            })
        };
        self.tools.insert(
            name.to_string(),
            Arc::new(Tool { description: description.to_string(), call: Box::new(call) }),
        );
        Ok(self)
    }

    /// The tools' names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.tools.keys().map(String::as_str).collect()
    }

    /// One line per tool, `name: description`, sorted by name (for a model's prompt).
    pub fn describe(&self) -> String {
        self.tools.iter().map(|(n, t)| format!("{n}: {}", t.description)).collect::<Vec<_>>().join("\n")
    }

    /// Calls a tool with JSON arguments; its result as JSON.
    pub async fn call(&self, name: &str, args: Value) -> Result<Value, ToolError> {
        let tool = self.tools.get(name).ok_or_else(|| ToolError::Unknown {
            name: name.to_string(),
            known: self.tools.keys().cloned().collect(),
        })?;
        metrics::counter!("foundation_agent_tool_calls_total", "tool" => name.to_string()).increment(1);
        (tool.call)(args).await
    }

    /// Calls a tool with typed arguments and reads its result as `R`.
    pub async fn call_typed<A: Serialize, R: DeserializeOwned>(
        &self,
        name: &str,
        args: &A,
    ) -> Result<R, ToolError> {
        let args = serde_json::to_value(args)
            .map_err(|e| ToolError::BadArguments { tool: name.to_string(), source: Cause::new(e) })?;
        let result = self.call(name, args).await?;
        serde_json::from_value(result)
            .map_err(|e| ToolError::BadResult { tool: name.to_string(), source: Cause::new(e) })
    }
}

//! What can go wrong running, finding and asking agents.

use std::time::Duration;

use foundation_core::Cause;

use super::tools::ToolError;
use crate::providers::LmError;
use crate::wire::WireError;

/// Why an agent could not be found, started or asked, or why its step failed. Variants about an
/// agent name it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AgentError {
    /// No live, healthy agent announces this capability.
    #[error("no healthy agent has capability `{capability}`; capabilities offered: [{}]", offered.join(", "))]
    UnknownCapability {
        /// The capability asked for.
        capability: String,
        /// The capabilities live agents do offer, sorted.
        offered: Vec<String>,
    },
    /// No live, healthy agent of this name.
    #[error("no healthy agent named `{0}` is running")]
    UnknownAgent(String),
    /// The agent did not answer in time (it may still be working on the input).
    #[error("agent `{agent}` did not answer within {after:?}")]
    Timeout {
        /// The agent.
        agent: String,
        /// The timeout.
        after: Duration,
    },
    /// The agent's step returned an error; `reason` is that error as it printed.
    #[error("agent `{agent}` failed: {reason}")]
    Failed {
        /// The agent.
        agent: String,
        /// Its error.
        reason: String,
    },
    /// The agent stopped while handling the input (its step panicked, or it was stopped): no
    /// answer will come. A supervised agent is restarted, so a later ask may succeed.
    #[error("agent `{agent}` stopped before answering (it crashed or was stopped)")]
    Crashed {
        /// The agent.
        agent: String,
    },
    /// The agent is not running (it stopped, or is being restarted).
    #[error("agent `{agent}` is not running")]
    Stopped {
        /// The agent.
        agent: String,
    },
    /// The input does not fit the agent's input type (the source names the field).
    #[error("agent `{agent}`: bad input: {source}")]
    BadInput {
        /// The agent.
        agent: String,
        /// What serde said, with the path of the field (the underlying error).
        #[source]
        source: Cause,
    },
    /// The agent's output does not fit the type the caller asked for.
    #[error("agent `{agent}`: cannot read its output: {reason}")]
    BadOutput {
        /// The agent.
        agent: String,
        /// What serde said.
        reason: String,
    },
    /// The input could not be put on the wire to another node (too large for the frame
    /// limit), or the answer from another node did not decode.
    #[error("agent `{agent}`: {error}")]
    Wire {
        /// The agent.
        agent: String,
        /// What the wire adapter said.
        #[source]
        error: WireError,
    },
    /// A call to the agent's language model failed.
    #[error(transparent)]
    Model(#[from] LmError),
    /// A tool call failed (local or remote).
    #[error(transparent)]
    Tool(#[from] ToolError),
    /// The agent asked its model but none was configured.
    #[error("agent `{agent}` has no language model (give it one with `AgentSpec::model`)")]
    NoModel {
        /// The agent.
        agent: String,
    },
    /// A tool loop ([`AgentContext::run_tools`](super::AgentContext::run_tools)) reached its
    /// step limit with the model still calling tools. The exchanges are in the agent's memory.
    #[error("agent `{agent}`: the model was still calling tools after {steps} steps (the loop's limit)")]
    StepLimit {
        /// The agent.
        agent: String,
        /// The steps taken (model calls).
        steps: usize,
        /// What the run did (its `answer` is the last model answer, with the calls that were
        /// not run).
        run: Box<super::ToolRun>,
    },
    /// An error a step reports in its own words (see [`AgentError::step`]).
    #[error("{0}")]
    Step(String),
    /// The agent (or tool server) could not be started.
    #[error("cannot start agent `{agent}`: {source}")]
    Start {
        /// The agent, or `tools` for a tool server.
        agent: String,
        /// Why (the underlying error).
        #[source]
        source: Cause,
    },
}

impl AgentError {
    /// An error for a step to return in its own words.
    pub fn step(reason: impl std::fmt::Display) -> Self {
        AgentError::Step(reason.to_string())
    }
}

//! Human approval of tool calls: a tool marked [`Tools::needs_approval`](super::Tools::needs_approval)
//! is run by a tool loop only once a person approved that call.
//!
//! When the loop reaches such a call (its arguments already checked against the schema), it
//! files a [`PendingApproval`] at the agent's [`ApprovalDesk`] and waits: the call runs if it
//! is approved ([`ApprovalDesk::approve`]), and goes back to the model as a tool error if it is
//! denied ([`ApprovalDesk::deny`], with a reason the model reads) or if no decision came within
//! the loop's [`approval_timeout`](super::ToolLoop::approval_timeout). Other calls of the same
//! answer run meanwhile. Every decision is recorded in the call's
//! [`ToolCallRecord::approval`](super::ToolCallRecord::approval) (who, what, how long it
//! waited), in the desk's bounded list of recent decisions, as a `tracing` event and in the
//! metric `foundation_agent_approvals_total{decision}`.
//!
//! The desk is the process's: `foundation node` lists and decides its pending approvals with
//! the `approvals`, `approve` and `deny` commands. The gate is in the calling agent's loop: a
//! tool server runs whatever its callers send it, so a tool that must never run unapproved
//! belongs to the agent (or its server must check approvals itself). A pending approval lives
//! only as long as the run waiting for it: an agent that stops or crashes drops its requests,
//! and a decision for one no longer pending is [`ApprovalError::Unknown`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use foundation_core::sync::MutexRecover;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// How long a tool loop waits for a decision by default (10 minutes).
pub const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(600);
/// Decisions a desk remembers (the most recent).
pub const RECENT_DECISIONS: usize = 1024;
/// Approvals that may wait at one desk at once; a request beyond is denied at once.
pub const MAX_PENDING_APPROVALS: usize = 4096;

/// A call waiting for a decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingApproval {
    /// Its id at the desk (what `approve` and `deny` take).
    pub id: u64,
    /// The agent whose run waits.
    pub agent: String,
    /// The tool.
    pub tool: String,
    /// The arguments the model wrote (checked against the tool's schema).
    pub arguments: String,
    /// The model's id of the call.
    pub call_id: String,
    /// When it was filed (milliseconds since the Unix epoch).
    pub requested_at_ms: u64,
}

/// What was decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    /// The call may run.
    Approved {
        /// Who approved it.
        by: String,
    },
    /// The call must not run; the model reads the reason.
    Denied {
        /// Who denied it.
        by: String,
        /// Why.
        reason: String,
    },
    /// Nobody decided within the loop's approval timeout: the call did not run.
    TimedOut,
}

impl Decision {
    /// `approved`, `denied` or `timed_out` (the metric label).
    pub fn kind(&self) -> &'static str {
        match self {
            Decision::Approved { .. } => "approved",
            Decision::Denied { .. } => "denied",
            Decision::TimedOut => "timed_out",
        }
    }
}

/// A decision as recorded: the request and what came of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRecord {
    /// The request.
    pub request: PendingApproval,
    /// The decision.
    pub decision: Decision,
    /// How long the call waited for it.
    pub waited: Duration,
}

/// Why a decision was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    /// No approval of this id is pending (never was, already decided, timed out, or its run
    /// is gone).
    #[error("no approval {0} is pending")]
    Unknown(u64),
}

struct Waiting {
    request: PendingApproval,
    decide: oneshot::Sender<Decision>,
}

#[derive(Default)]
struct Desk {
    pending: BTreeMap<u64, Waiting>,
    recent: VecDeque<ApprovalRecord>,
}

/// Where tool calls wait for people's decisions (see the [module](self)). Cheap to clone;
/// clones share the desk.
#[derive(Clone, Default)]
pub struct ApprovalDesk {
    inner: Arc<Mutex<Desk>>,
    next: Arc<AtomicU64>,
}

impl std::fmt::Debug for ApprovalDesk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApprovalDesk").field("pending", &self.inner.lock_or_recover().pending.len()).finish()
    }
}

impl ApprovalDesk {
    /// A desk of its own (agents use [`ApprovalDesk::global`] unless their spec names one).
    pub fn new() -> Self {
        Self::default()
    }

    /// The process's desk: the one agents use by default and `foundation node` decides at.
    pub fn global() -> ApprovalDesk {
        static GLOBAL: OnceLock<ApprovalDesk> = OnceLock::new();
        GLOBAL.get_or_init(ApprovalDesk::new).clone()
    }

    /// The calls waiting, oldest first.
    pub fn pending(&self) -> Vec<PendingApproval> {
        self.inner.lock_or_recover().pending.values().map(|w| w.request.clone()).collect()
    }

    /// The most recent decisions (at most [`RECENT_DECISIONS`]), oldest first.
    pub fn recent(&self) -> Vec<ApprovalRecord> {
        self.inner.lock_or_recover().recent.iter().cloned().collect()
    }

    /// Lets the call `id` run.
    pub fn approve(&self, id: u64, by: impl Into<String>) -> Result<(), ApprovalError> {
        self.decide(id, Decision::Approved { by: by.into() })
    }

    /// Refuses the call `id`; the model reads `reason`.
    pub fn deny(
        &self,
        id: u64,
        by: impl Into<String>,
        reason: impl Into<String>,
    ) -> Result<(), ApprovalError> {
        self.decide(id, Decision::Denied { by: by.into(), reason: reason.into() })
    }

    fn decide(&self, id: u64, decision: Decision) -> Result<(), ApprovalError> {
        let waiting = self.inner.lock_or_recover().pending.remove(&id).ok_or(ApprovalError::Unknown(id))?;
        // The run may have stopped waiting at this very moment: then it is as if unknown.
        waiting.decide.send(decision).map_err(|_| ApprovalError::Unknown(id))
    }

    /// Files `request` (its id is set here) and waits up to `timeout` for a decision; records
    /// it. A desk already holding [`MAX_PENDING_APPROVALS`] denies at once.
    pub(crate) async fn ask(
        &self,
        mut request: PendingApproval,
        timeout: Duration,
        filed: impl FnOnce(&PendingApproval),
    ) -> ApprovalRecord {
        let (decide, mut decision) = oneshot::channel();
        request.id = self.next_id();
        request.requested_at_ms = now_ms();
        let id = request.id;
        let started = std::time::Instant::now();
        let full = {
            let mut desk = self.inner.lock_or_recover();
            let full = desk.pending.len() >= MAX_PENDING_APPROVALS;
            if !full {
                desk.pending.insert(id, Waiting { request: request.clone(), decide });
            }
            full
        };
        // Taken off the desk however this ends (a decision, the timeout, the run dropped).
        let _gone = Withdraw { desk: self.clone(), id };
        let decision = if full {
            Decision::Denied {
                by: "the approval desk".into(),
                reason: format!("{MAX_PENDING_APPROVALS} approvals are already pending"),
            }
        } else {
            tracing::info!(id, agent = %request.agent, tool = %request.tool, "a tool call waits for approval");
            tracing::debug!(id, arguments = %request.arguments, "the arguments of the call waiting for approval");
            filed(&request);
            match tokio::time::timeout(timeout, &mut decision).await {
                Ok(Ok(decision)) => decision,
                Ok(Err(_)) => Decision::TimedOut,
                Err(_) => {
                    // Timed out: withdrawn now, unless a decision was taken at this very moment
                    // (its sender already took the request off the desk): then that decision
                    // stands, as the decider was told.
                    let withdrawn = self.inner.lock_or_recover().pending.remove(&id).is_some();
                    match withdrawn {
                        true => Decision::TimedOut,
                        false => decision.await.unwrap_or(Decision::TimedOut),
                    }
                }
            }
        };
        let record = ApprovalRecord { request, decision, waited: started.elapsed() };
        tracing::info!(id, decision = record.decision.kind(), "a tool call's approval was decided");
        metrics::counter!("foundation_agent_approvals_total", "decision" => record.decision.kind())
            .increment(1);
        let mut desk = self.inner.lock_or_recover();
        if desk.recent.len() == RECENT_DECISIONS {
            desk.recent.pop_front();
        }
        desk.recent.push_back(record.clone());
        record
    }

    /// A new id: the desk's first is the time it was first asked (milliseconds since the
    /// epoch), so that ids do not repeat across restarts of the process (an operator's
    /// `approve 3` meant for a call before a restart cannot approve another one after it).
    fn next_id(&self) -> u64 {
        let _ = self.next.compare_exchange(0, now_ms(), Ordering::Relaxed, Ordering::Relaxed);
        self.next.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// Removes a pending approval when its waiting run ends, whatever the reason.
struct Withdraw {
    desk: ApprovalDesk,
    id: u64,
}

impl Drop for Withdraw {
    fn drop(&mut self) {
        self.desk.inner.lock_or_recover().pending.remove(&self.id);
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

//! Declarative supervision, as in OTP: child specs, a restart strategy (one-for-one, one-for-all,
//! rest-for-one), restart intensity (at most N restarts within a period), and escalation — a
//! supervisor that exceeds its intensity stops its children and fails, and its own supervisor
//! applies its strategy to it.
//!
//! Crashes are logged with the child's error (a [`ContextError`](foundation_core::ContextError)
//! prints its step history), kept as the last [`MAX_CRASH_REPORTS`] [`CrashReport`]s, and counted
//! in `foundation_actor_crashes_total`, `foundation_actor_restarts_total` and
//! `foundation_supervisor_meltdowns_total` (labels `supervisor`, `child`).
//!
//! ```
//! use std::time::Duration;
//! use foundation_actors::supervision::{ChildSpec, Strategy, Supervisor, SupervisorSpec};
//! use ractor::{Actor, ActorProcessingErr, ActorRef};
//!
//! struct Worker;
//! impl Actor for Worker {
//!     type Msg = ();
//!     type State = ();
//!     type Arguments = ();
//!     async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
//!         Ok(())
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let spec = SupervisorSpec::new(Strategy::OneForOne)
//!     .intensity(3, Duration::from_secs(5))
//!     .child(ChildSpec::new("worker-1", || (Worker, ())))
//!     .child(ChildSpec::new("worker-2", || (Worker, ())));
//! let supervisor = Supervisor::start("workers", spec).await?;
//! assert_eq!(supervisor.children().await?.len(), 2);
//! supervisor.stop().await;
//! # Ok::<(), foundation_actors::supervision::SupervisionError>(())
//! # }).unwrap();
//! ```

mod actor;
mod intensity;
mod spec;

use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use ractor::{ActorCell, ActorRef};
use tokio::task::JoinHandle;

pub use actor::MAX_CRASH_REPORTS;
pub use spec::{
    ChildSpec, DEFAULT_MAX_RESTARTS, DEFAULT_PERIOD, DEFAULT_SHUTDOWN_TIMEOUT, Restart, Strategy,
    SupervisorSpec,
};

use actor::SupervisorMsg;

/// Errors from starting or querying a supervisor.
#[derive(Debug, thiserror::Error)]
pub enum SupervisionError {
    /// The supervisor could not start: an invalid spec, or a child failed to start.
    #[error("supervisor `{name}` failed to start: {source}")]
    StartFailed {
        /// The supervisor's name.
        name: String,
        /// Why (the underlying error).
        #[source]
        source: foundation_core::BoxError,
    },
    /// The supervisor is no longer running.
    #[error("supervisor `{0}` is not running")]
    NotRunning(String),
}

/// One child as its supervisor sees it.
#[derive(Debug, Clone)]
pub struct ChildInfo {
    /// The child's id from its spec.
    pub id: String,
    /// The running actor, or `None` between an exit and its restart.
    pub cell: Option<ActorCell>,
    /// How many times it has been restarted.
    pub restarts: u64,
    /// Its restart policy.
    pub restart: Restart,
}

/// A child's failure, as its supervisor recorded it.
#[derive(Debug, Clone)]
pub struct CrashReport {
    /// The child's id.
    pub child: String,
    /// The error as it printed (with its step history, for a `ContextError`).
    pub error: String,
    /// When it was recorded.
    pub at: SystemTime,
}

/// How a supervisor ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SupervisorExit {
    /// Stopped on request (or with its parent).
    Stopped,
    /// Exceeded its restart intensity; the reason names the last failing child and its error.
    Meltdown(String),
}

/// Starts supervisors.
#[derive(Debug)]
pub struct Supervisor;

impl Supervisor {
    /// Starts a top-level supervisor and its children, in order. `name` labels its logs and
    /// metrics (it is not registered in ractor's process-wide name registry).
    pub async fn start(
        name: impl Into<String>,
        spec: SupervisorSpec,
    ) -> Result<SupervisorHandle, SupervisionError> {
        Self::start_inner(name.into(), spec, None).await
    }

    /// Starts a supervisor linked to `parent`, which receives its failure (escalation).
    pub async fn start_linked(
        name: impl Into<String>,
        spec: SupervisorSpec,
        parent: ActorCell,
    ) -> Result<SupervisorHandle, SupervisionError> {
        Self::start_inner(name.into(), spec, Some(parent)).await
    }

    async fn start_inner(
        name: String,
        spec: SupervisorSpec,
        parent: Option<ActorCell>,
    ) -> Result<SupervisorHandle, SupervisionError> {
        let exit = Arc::new(OnceLock::new());
        let (actor, join) =
            actor::spawn_with_exit(name.clone(), spec, parent, exit.clone()).await.map_err(|e| {
                let source = match e {
                    ractor::SpawnErr::StartupFailed(inner) => inner,
                    other => other.into(),
                };
                SupervisionError::StartFailed { name: name.clone(), source }
            })?;
        Ok(SupervisorHandle { name, actor, join, exit })
    }
}

/// A running supervisor.
#[derive(Debug)]
pub struct SupervisorHandle {
    name: String,
    actor: ActorRef<SupervisorMsg>,
    join: JoinHandle<()>,
    exit: Arc<OnceLock<String>>,
}

impl SupervisorHandle {
    /// The supervisor's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The supervisor's actor cell (to link or monitor it).
    pub fn cell(&self) -> ActorCell {
        self.actor.get_cell()
    }

    /// Its children in start order (temporary children that exited are gone).
    pub async fn children(&self) -> Result<Vec<ChildInfo>, SupervisionError> {
        ractor::call!(self.actor, SupervisorMsg::Children)
            .map_err(|_| SupervisionError::NotRunning(self.name.clone()))
    }

    /// The running actor of one child, if it is running.
    pub async fn child(&self, id: &str) -> Option<ActorCell> {
        self.children().await.ok()?.into_iter().find(|c| c.id == id)?.cell
    }

    /// The most recent crash reports, oldest first.
    pub async fn crashes(&self) -> Result<Vec<CrashReport>, SupervisionError> {
        ractor::call!(self.actor, SupervisorMsg::Crashes)
            .map_err(|_| SupervisionError::NotRunning(self.name.clone()))
    }

    /// Stops the children (in reverse order, each within its shutdown timeout) and the supervisor.
    pub async fn stop(self) -> SupervisorExit {
        self.actor.stop(None);
        self.wait().await
    }

    /// Waits until the supervisor ends, and says how.
    pub async fn wait(self) -> SupervisorExit {
        let _ = self.join.await;
        match self.exit.get() {
            Some(reason) => SupervisorExit::Meltdown(reason.clone()),
            None => SupervisorExit::Stopped,
        }
    }
}

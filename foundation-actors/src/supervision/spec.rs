//! What a supervisor supervises: child specs, restart policies, strategies and intensity.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorCell, SpawnErr};

/// When a child that exited is started again (as in OTP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Always restarted, whether it stopped normally or failed.
    Permanent,
    /// Restarted only if it failed (a panic or a handler error), not after a normal stop.
    Transient,
    /// Never restarted; removed from the supervisor when it exits.
    Temporary,
}

/// What else is restarted when a child is restarted (as in OTP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Only the child that exited.
    OneForOne,
    /// Every child: the others are stopped (in reverse start order) and all are started again.
    OneForAll,
    /// The child that exited and every child started after it.
    RestForOne,
}

/// Default restart intensity: at most this many restarts ...
pub const DEFAULT_MAX_RESTARTS: u32 = 3;
/// ... within this period; one more stops the supervisor and escalates to its parent.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(5);
/// Default time a child gets to stop gracefully before it is killed.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts one child, linked to the supervisor whose cell it is given.
pub(crate) type StartFn =
    Arc<dyn Fn(ActorCell) -> Pin<Box<dyn Future<Output = Result<ActorCell, SpawnErr>> + Send>> + Send + Sync>;

/// How to start one child, and how it is restarted.
#[derive(Clone)]
pub struct ChildSpec {
    pub(crate) id: String,
    pub(crate) restart: Restart,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) start: StartFn,
}

impl ChildSpec {
    /// A child actor; `make` builds a fresh actor and its arguments for every (re)start.
    /// Permanent, with [`DEFAULT_SHUTDOWN_TIMEOUT`], unless changed.
    pub fn new<A, F>(id: impl Into<String>, make: F) -> Self
    where
        A: Actor,
        F: Fn() -> (A, A::Arguments) + Send + Sync + 'static,
    {
        let start: StartFn = Arc::new(move |supervisor: ActorCell| {
            let (actor, args) = make();
            Box::pin(async move {
                // Unnamed: ractor's name registry is process-wide, and two supervisors may well
                // both have a child called "worker". Children are found through the supervisor.
                let (actor_ref, _) = Actor::spawn_linked(None, actor, args, supervisor).await?;
                Ok(actor_ref.get_cell())
            })
        });
        ChildSpec {
            id: id.into(),
            restart: Restart::Permanent,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            start,
        }
    }

    /// A nested supervisor as a child: when it exceeds its restart intensity it fails, and this
    /// supervisor applies its own strategy to it (escalation).
    pub fn supervisor(id: impl Into<String>, spec: SupervisorSpec) -> Self {
        let id = id.into();
        let name = id.clone();
        let start: StartFn = Arc::new(move |parent: ActorCell| {
            let (name, spec) = (name.clone(), spec.clone());
            Box::pin(async move {
                let (actor_ref, _) = super::actor::spawn(name, spec, Some(parent)).await?;
                Ok(actor_ref.get_cell())
            })
        });
        ChildSpec { id, restart: Restart::Permanent, shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT, start }
    }

    /// Sets the restart policy.
    pub fn restart(mut self, restart: Restart) -> Self {
        self.restart = restart;
        self
    }

    /// Sets how long the child gets to stop gracefully before it is killed.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// The child's id, unique within its supervisor.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildSpec")
            .field("id", &self.id)
            .field("restart", &self.restart)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .finish_non_exhaustive()
    }
}

/// A supervisor's children (started in order, stopped in reverse), strategy and intensity.
#[derive(Debug, Clone)]
pub struct SupervisorSpec {
    pub(crate) strategy: Strategy,
    pub(crate) max_restarts: u32,
    pub(crate) period: Duration,
    pub(crate) children: Vec<ChildSpec>,
}

impl SupervisorSpec {
    /// A supervisor with this strategy, no children yet, and the default intensity
    /// ([`DEFAULT_MAX_RESTARTS`] in [`DEFAULT_PERIOD`]).
    pub fn new(strategy: Strategy) -> Self {
        SupervisorSpec {
            strategy,
            max_restarts: DEFAULT_MAX_RESTARTS,
            period: DEFAULT_PERIOD,
            children: Vec::new(),
        }
    }

    /// Restart intensity: more than `max_restarts` restarts within `period` stops the
    /// supervisor (after stopping its children), which its own supervisor sees as a failure.
    pub fn intensity(mut self, max_restarts: u32, period: Duration) -> Self {
        self.max_restarts = max_restarts;
        self.period = period;
        self
    }

    /// Adds a child, started after the ones already added.
    pub fn child(mut self, child: ChildSpec) -> Self {
        self.children.push(child);
        self
    }

    /// Checks the spec: child ids must be unique and the period non-zero.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.period.is_zero() {
            return Err("restart intensity period must be greater than zero".into());
        }
        let mut seen = std::collections::HashSet::new();
        for c in &self.children {
            if !seen.insert(c.id.as_str()) {
                return Err(format!("child id `{}` is used twice", c.id));
            }
        }
        Ok(())
    }
}

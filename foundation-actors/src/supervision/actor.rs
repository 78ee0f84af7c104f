//! The supervisor actor.
//!
//! Written here rather than taken from the `ractor-supervisor` crate: that crate's message types
//! rely on ractor's blanket `Message` impl, which ractor removes when its `cluster` feature is on
//! (and `ractor_cluster` turns it on for the whole build), so it cannot compile in a clustered
//! workspace. It also registers every child under a process-global name, which two supervisors
//! with a child called "worker" cannot share.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr, SupervisionEvent};
use tokio::task::JoinHandle;

use super::intensity::IntensityWindow;
use super::spec::{ChildSpec, Restart, Strategy, SupervisorSpec};
use super::{ChildInfo, CrashReport};

/// Crash reports a supervisor keeps (the most recent ones).
pub const MAX_CRASH_REPORTS: usize = 32;

pub(crate) enum SupervisorMsg {
    Children(RpcReplyPort<Vec<ChildInfo>>),
    Crashes(RpcReplyPort<Vec<CrashReport>>),
}

// Local-only messages: explicit because ractor's `cluster` feature removes the blanket impl.
impl ractor::Message for SupervisorMsg {}

pub(crate) struct SupervisorActor;

pub(crate) struct Args {
    name: String,
    spec: SupervisorSpec,
    exit: Arc<OnceLock<String>>,
}

pub(crate) struct State {
    name: String,
    strategy: Strategy,
    children: Vec<Child>,
    window: IntensityWindow,
    crashes: VecDeque<CrashReport>,
    exit: Arc<OnceLock<String>>,
}

struct Child {
    spec: ChildSpec,
    cell: Option<ActorCell>,
    restarts: u64,
    /// A temporary child that exited: never started again.
    removed: bool,
}

/// Spawns a supervisor (linked to `parent` if given). The `OnceLock` receives the reason if it
/// stops because its restart intensity was exceeded.
pub(crate) async fn spawn(
    name: String,
    spec: SupervisorSpec,
    parent: Option<ActorCell>,
) -> Result<(ActorRef<SupervisorMsg>, JoinHandle<()>), SpawnErr> {
    spawn_with_exit(name, spec, parent, Arc::default()).await
}

pub(crate) async fn spawn_with_exit(
    name: String,
    spec: SupervisorSpec,
    parent: Option<ActorCell>,
    exit: Arc<OnceLock<String>>,
) -> Result<(ActorRef<SupervisorMsg>, JoinHandle<()>), SpawnErr> {
    let args = Args { name, spec, exit };
    match parent {
        Some(parent) => Actor::spawn_linked(None, SupervisorActor, args, parent).await,
        None => Actor::spawn(None, SupervisorActor, args).await,
    }
}

impl Actor for SupervisorActor {
    type Msg = SupervisorMsg;
    type State = State;
    type Arguments = Args;

    async fn pre_start(&self, myself: ActorRef<Self::Msg>, args: Args) -> Result<State, ActorProcessingErr> {
        args.spec.validate().map_err(|e| format!("supervisor `{}`: {e}", args.name))?;
        let mut state = State {
            name: args.name,
            strategy: args.spec.strategy,
            children: args
                .spec
                .children
                .into_iter()
                .map(|spec| Child { spec, cell: None, restarts: 0, removed: false })
                .collect(),
            window: IntensityWindow::new(args.spec.max_restarts, args.spec.period),
            crashes: VecDeque::new(),
            exit: args.exit,
        };
        for i in 0..state.children.len() {
            let child = &state.children[i];
            match (child.spec.start)(myself.get_cell()).await {
                Ok(cell) => state.children[i].cell = Some(cell),
                Err(e) => {
                    let message = format!(
                        "supervisor `{}`: child `{}` failed to start: {e}",
                        state.name, child.spec.id
                    );
                    state.stop_children((0..i).collect()).await;
                    return Err(message.into());
                }
            }
        }
        tracing::debug!(supervisor = %state.name, children = state.children.len(), "supervisor started");
        Ok(state)
    }

    async fn post_stop(&self, _: ActorRef<Self::Msg>, state: &mut State) -> Result<(), ActorProcessingErr> {
        let all = (0..state.children.len()).collect();
        state.stop_children(all).await;
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        msg: SupervisorMsg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Children(reply) => {
                let info = state
                    .children
                    .iter()
                    .filter(|c| !c.removed)
                    .map(|c| ChildInfo {
                        id: c.spec.id.clone(),
                        cell: c.cell.clone(),
                        restarts: c.restarts,
                        restart: c.spec.restart,
                    })
                    .collect();
                let _ = reply.send(info);
            }
            SupervisorMsg::Crashes(reply) => {
                let _ = reply.send(state.crashes.iter().cloned().collect());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, failure) = match event {
            SupervisionEvent::ActorTerminated(cell, _, _) => (cell, None),
            SupervisionEvent::ActorFailed(cell, error) => (cell, Some(error.to_string())),
            _ => return Ok(()),
        };
        // Children we stopped on purpose (or replaced) are no longer ours: ignore their exits.
        let Some(index) =
            state.children.iter().position(|c| c.cell.as_ref().is_some_and(|x| x.get_id() == cell.get_id()))
        else {
            return Ok(());
        };
        state.children[index].cell = None;
        let id = state.children[index].spec.id.clone();
        if let Some(error) = &failure {
            state.record_crash(&id, error);
        } else {
            tracing::debug!(supervisor = %state.name, child = %id, "child stopped");
        }
        let restart = match state.children[index].spec.restart {
            Restart::Permanent => true,
            Restart::Transient => failure.is_some(),
            Restart::Temporary => false,
        };
        if !restart {
            if state.children[index].spec.restart == Restart::Temporary {
                state.children[index].removed = true;
            }
            return Ok(());
        }
        let cause = failure.unwrap_or_else(|| "stopped".to_string());
        state.restart(index, &myself.get_cell(), &cause).await
    }
}

impl State {
    async fn restart(
        &mut self,
        index: usize,
        myself: &ActorCell,
        cause: &str,
    ) -> Result<(), ActorProcessingErr> {
        let n = self.children.len();
        let set: Vec<usize> = match self.strategy {
            Strategy::OneForOne => vec![index],
            Strategy::OneForAll => (0..n).collect(),
            Strategy::RestForOne => (index..n).collect(),
        };
        // One restart of the supervisor's children counts once, whatever the strategy (as OTP).
        if !self.window.allow(Instant::now()) {
            return self.meltdown(&self.children[index].spec.id.clone(), cause).await;
        }
        let others: Vec<usize> = set.iter().copied().filter(|i| *i != index).collect();
        self.stop_children(others).await;
        for i in set {
            let child = &mut self.children[i];
            if child.removed {
                continue;
            }
            if i != index && child.spec.restart == Restart::Temporary {
                child.removed = true;
                continue;
            }
            loop {
                let child = &mut self.children[i];
                child.restarts += 1;
                metrics::counter!("foundation_actor_restarts_total", "supervisor" => self.name.clone(), "child" => child.spec.id.clone())
                    .increment(1);
                match (child.spec.start)(myself.clone()).await {
                    Ok(cell) => {
                        tracing::info!(supervisor = %self.name, child = %child.spec.id, restarts = child.restarts, "child restarted");
                        child.cell = Some(cell);
                        break;
                    }
                    Err(e) => {
                        let (id, error) = (child.spec.id.clone(), format!("failed to restart: {e}"));
                        self.record_crash(&id, &error);
                        // A failed start counts as another restart (as OTP), so a child that can
                        // never start melts the supervisor down instead of looping forever.
                        if !self.window.allow(Instant::now()) {
                            return self.meltdown(&id, &error).await;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Stops every child, records why, and fails the supervisor so its parent sees a failure.
    async fn meltdown(&mut self, child: &str, cause: &str) -> Result<(), ActorProcessingErr> {
        let all = (0..self.children.len()).collect();
        self.stop_children(all).await;
        metrics::counter!("foundation_supervisor_meltdowns_total", "supervisor" => self.name.clone())
            .increment(1);
        let reason = format!(
            "supervisor `{}` exceeded its restart intensity; last failure: child `{child}`: {cause}",
            self.name
        );
        tracing::error!(supervisor = %self.name, %reason, "supervisor stopping");
        let _ = self.exit.set(reason.clone());
        Err(reason.into())
    }

    /// Stops the given children in reverse order; each gets its shutdown timeout, then is killed.
    async fn stop_children(&mut self, indices: Vec<usize>) {
        for i in indices.into_iter().rev() {
            let child = &mut self.children[i];
            let Some(cell) = child.cell.take() else { continue };
            let reason = format!("stopped by supervisor `{}`", self.name);
            if cell.stop_and_wait(Some(reason), Some(child.spec.shutdown_timeout)).await.is_err() {
                tracing::warn!(supervisor = %self.name, child = %child.spec.id, "child did not stop in time; killing it");
                let _ = cell.kill_and_wait(Some(child.spec.shutdown_timeout)).await;
            }
        }
    }

    fn record_crash(&mut self, child: &str, error: &str) {
        // The error's Display: for a ContextError, its step history follows the message.
        tracing::error!(supervisor = %self.name, %child, "child failed: {error}");
        metrics::counter!("foundation_actor_crashes_total", "supervisor" => self.name.clone(), "child" => child.to_string())
            .increment(1);
        if self.crashes.len() == MAX_CRASH_REPORTS {
            self.crashes.pop_front();
        }
        self.crashes.push_back(CrashReport {
            child: child.to_string(),
            error: error.to_string(),
            at: SystemTime::now(),
        });
    }
}

//! [`Aggregates`]: the handle that routes commands to one actor per aggregate id.

use foundation_core::sync::MutexRecover;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use foundation_core::events::{EventId, EventStore, EventStoreError};
use ractor::{Actor, ActorRef, ActorStatus};
use tokio::sync::oneshot;

use super::actor::{AggregateActor, Args, Msg};
use super::aggregate::Aggregate;

/// How aggregates are kept.
#[derive(Debug, Clone)]
pub struct AggregateConfig {
    /// Save a snapshot every this many events of a stream (0: never). Default 100.
    pub snapshot_every: u64,
    /// At most this many aggregates are held in memory; the least recently used is retired
    /// (rebuilt on its next command). Default 10 000.
    pub max_live: usize,
}

impl Default for AggregateConfig {
    fn default() -> Self {
        AggregateConfig { snapshot_every: 100, max_live: 10_000 }
    }
}

/// What an accepted command did.
pub struct Executed<A: Aggregate> {
    /// The aggregate's version after it (unchanged if the command caused no event).
    pub version: u64,
    /// The events it caused, now stored.
    pub events: Vec<A::Event>,
    /// The store id of the first of them.
    pub first_id: Option<EventId>,
}

impl<A: Aggregate> Clone for Executed<A> {
    fn clone(&self) -> Self {
        Executed { version: self.version, events: self.events.clone(), first_id: self.first_id }
    }
}

impl<A: Aggregate> std::fmt::Debug for Executed<A>
where
    A::Event: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executed")
            .field("version", &self.version)
            .field("events", &self.events)
            .field("first_id", &self.first_id)
            .finish()
    }
}

/// Why a command was not carried out. Nothing was stored in any case (a command whose events
/// were stored is reported as done, even if its actor fails afterwards).
#[derive(Debug, thiserror::Error)]
pub enum AggregateError<E> {
    /// The aggregate refused the command.
    #[error("command refused: {0}")]
    Rejected(E),
    /// The aggregate is not at the version the caller expected (another command, perhaps from
    /// another process, changed it first): read it again and decide again.
    #[error("aggregate is at version {actual}, the command expected {expected}")]
    Conflict {
        /// What the caller expected.
        expected: u64,
        /// What it is.
        actual: u64,
    },
    /// The id is not usable as part of a stream name.
    #[error("invalid aggregate id: {0}")]
    InvalidId(String),
    /// The journal failed (or holds an event this aggregate cannot read).
    #[error(transparent)]
    Store(#[from] EventStoreError),
    /// The aggregate's actor stopped (its code panicked, or it could not rebuild): its stream,
    /// and why (the underlying error).
    #[error("aggregate `{0}` is unavailable: {1}")]
    Unavailable(String, #[source] foundation_core::BoxError),
}

/// A payload an actor takes out when it starts on it (see `Aggregates::deliver`).
type Slot<P> = Arc<Mutex<Option<P>>>;

/// The actors held, and a use counter for least-recently-used retirement.
type LiveSet<A> = (HashMap<String, Live<A>>, u64);

struct Live<A: Aggregate> {
    actor: ActorRef<Msg<A>>,
    last_used: u64,
}

/// Commands and reads for every aggregate of type `A` in one store: each id gets its own actor
/// (created on first use, rebuilt from its latest snapshot and the events after it), so commands
/// to one aggregate are decided one at a time, and different aggregates in parallel.
///
/// Clone it freely. Several processes may serve the same aggregates on one store: optimistic
/// concurrency on the stream keeps them consistent (a command that loses a race gets
/// [`AggregateError::Conflict`], and the actor catches up).
pub struct Aggregates<A: Aggregate> {
    store: EventStore,
    config: AggregateConfig,
    live: Arc<Mutex<LiveSet<A>>>,
    /// Retires every actor when the last clone of the handle is dropped.
    _owner: Arc<RetireOnDrop<A>>,
}

/// Owned by every clone of one [`Aggregates`]: the last one dropped retires the actors, which
/// nothing else would ever stop.
struct RetireOnDrop<A: Aggregate>(Arc<Mutex<LiveSet<A>>>);

impl<A: Aggregate> Drop for RetireOnDrop<A> {
    fn drop(&mut self) {
        let drained: Vec<_> = self.0.lock_or_recover().0.drain().collect();
        for (_, live) in drained {
            let _ = live.actor.cast(Msg::Passivate);
        }
    }
}

impl<A: Aggregate> Clone for Aggregates<A> {
    fn clone(&self) -> Self {
        Aggregates {
            store: self.store.clone(),
            config: self.config.clone(),
            live: self.live.clone(),
            _owner: self._owner.clone(),
        }
    }
}

impl<A: Aggregate> Aggregates<A> {
    /// Aggregates journaled in `store`.
    pub fn new(store: EventStore, config: AggregateConfig) -> Self {
        let live = Arc::new(Mutex::new((HashMap::new(), 0)));
        Aggregates { store, config, _owner: Arc::new(RetireOnDrop(live.clone())), live }
    }

    /// The stream holding aggregate `id`'s events: `KIND-id`.
    pub fn stream(id: &str) -> String {
        format!("{}-{id}", A::KIND)
    }

    /// Decides `command` on aggregate `id` and stores the events it causes.
    pub async fn execute(
        &self,
        id: &str,
        command: A::Command,
    ) -> Result<Executed<A>, AggregateError<A::Error>> {
        self.send(id, command, None, None).await
    }

    /// Like [`execute`](Self::execute), only if the aggregate is at `expected_version` (the
    /// version the caller read): [`AggregateError::Conflict`] otherwise.
    pub async fn execute_at(
        &self,
        id: &str,
        expected_version: u64,
        command: A::Command,
    ) -> Result<Executed<A>, AggregateError<A::Error>> {
        self.send(id, command, Some(expected_version), None).await
    }

    /// Like [`execute`](Self::execute), with a correlation id on the stored events.
    pub async fn execute_correlated(
        &self,
        id: &str,
        correlation: &str,
        command: A::Command,
    ) -> Result<Executed<A>, AggregateError<A::Error>> {
        self.send(id, command, None, Some(correlation.to_string())).await
    }

    /// Reads aggregate `id`'s state and version (version 0 and the default state if it has no
    /// events yet).
    pub async fn read<R, F>(&self, id: &str, reader: F) -> Result<R, AggregateError<A::Error>>
    where
        R: Send + 'static,
        F: FnOnce(&A, u64) -> R + Send + 'static,
    {
        let make = |slot: Slot<F>, tx: oneshot::Sender<R>| {
            Msg::Read(Box::new(move |a: &A, v| {
                if let Some(reader) = slot.lock_or_recover().take() {
                    let _ = tx.send(reader(a, v));
                }
            }))
        };
        self.deliver(id, reader, make, "stopped while reading").await
    }

    /// The number of aggregates held in memory.
    pub fn live(&self) -> usize {
        self.lock().0.len()
    }

    /// Stops every aggregate's actor (after the commands already queued). Commands sent later
    /// start them again.
    pub fn passivate_all(&self) {
        let drained: Vec<_> = self.lock().0.drain().collect();
        for (_, live) in drained {
            let _ = live.actor.cast(Msg::Passivate);
        }
    }

    async fn send(
        &self,
        id: &str,
        command: A::Command,
        expected: Option<u64>,
        correlation: Option<String>,
    ) -> Result<Executed<A>, AggregateError<A::Error>> {
        let make =
            |command, reply| Msg::Execute { command, expected, correlation: correlation.clone(), reply };
        let outcome =
            self.deliver(id, command, make, "stopped while deciding a command").await.and_then(|o| o);
        let label = match &outcome {
            Ok(_) => "accepted",
            Err(AggregateError::Rejected(_)) => "rejected",
            Err(AggregateError::Conflict { .. }) => "conflict",
            Err(_) => "failed",
        };
        metrics::counter!("foundation_aggregate_commands_total", "kind" => A::KIND, "outcome" => label)
            .increment(1);
        outcome
    }

    /// Sends `payload` to aggregate `id`'s actor in the message `make` builds, and waits for
    /// the answer. The actor takes the payload out of its slot when it starts on it: if the
    /// message is dropped with the payload still there (its actor was retiring), nothing was
    /// done, and it is sent to a new actor, up to three times in all.
    async fn deliver<P, T>(
        &self,
        id: &str,
        payload: P,
        make: impl Fn(Slot<P>, oneshot::Sender<T>) -> Msg<A>,
        stopped: &str,
    ) -> Result<T, AggregateError<A::Error>> {
        let slot = Arc::new(Mutex::new(Some(payload)));
        let mut attempts = 0;
        loop {
            attempts += 1;
            let actor = self.actor(id).await?;
            let (tx, rx) = oneshot::channel();
            let failure: foundation_core::BoxError = match actor.cast(make(slot.clone(), tx)) {
                Ok(()) => match rx.await {
                    Ok(answer) => return Ok(answer),
                    Err(_) => stopped.into(),
                },
                // Without the message it carries back (the payload stays in its slot).
                Err(e) => e.map(drop).into(),
            };
            let error = self.gone(id, &actor, failure);
            let unopened = slot.lock_or_recover().is_some();
            if !unopened || attempts >= 3 {
                return Err(error);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LiveSet<A>> {
        self.live.lock_or_recover()
    }

    /// Forgets a dead actor so that the next call starts a new one.
    fn gone(
        &self,
        id: &str,
        actor: &ActorRef<Msg<A>>,
        why: foundation_core::BoxError,
    ) -> AggregateError<A::Error> {
        let mut live = self.lock();
        if live.0.get(id).is_some_and(|l| l.actor.get_id() == actor.get_id()) {
            live.0.remove(id);
        }
        AggregateError::Unavailable(Self::stream(id), why)
    }

    async fn actor(&self, id: &str) -> Result<ActorRef<Msg<A>>, AggregateError<A::Error>> {
        if id.is_empty() || id.len() > 200 || id.chars().any(char::is_control) {
            return Err(AggregateError::InvalidId(format!(
                "{id:?}: an id is 1 to 200 bytes without control characters"
            )));
        }
        {
            let mut guard = self.lock();
            let (live, clock) = &mut *guard;
            *clock += 1;
            if let Some(l) = live.get_mut(id) {
                if matches!(l.actor.get_status(), ActorStatus::Running | ActorStatus::Starting) {
                    l.last_used = *clock;
                    return Ok(l.actor.clone());
                }
                live.remove(id);
            }
        }
        let args = Args {
            store: self.store.clone(),
            stream: Self::stream(id),
            snapshot_every: self.config.snapshot_every,
        };
        let (actor, _) = Actor::spawn(None, AggregateActor::<A>::new(), args).await.map_err(|e| {
            AggregateError::Unavailable(Self::stream(id), format!("could not rebuild: {e}").into())
        })?;
        let mut guard = self.lock();
        let (live, clock) = &mut *guard;
        // Another caller may have started one meanwhile: keep theirs, retire ours.
        if let Some(existing) = live.get(id)
            && matches!(existing.actor.get_status(), ActorStatus::Running)
        {
            let _ = actor.cast(Msg::Passivate);
            return Ok(existing.actor.clone());
        }
        live.insert(id.to_string(), Live { actor: actor.clone(), last_used: *clock });
        if live.len() > self.config.max_live
            && let Some(oldest) = live
                .iter()
                .filter(|(k, _)| k.as_str() != id)
                .min_by_key(|(_, l)| l.last_used)
                .map(|(k, _)| k.clone())
            && let Some(retired) = live.remove(&oldest)
        {
            let _ = retired.actor.cast(Msg::Passivate);
        }
        Ok(actor)
    }
}

//! The actor that holds one aggregate: rebuilt from its snapshot and journal, then deciding its
//! commands one at a time.

use foundation_core::events::{EventStore, EventStoreError, ExpectedVersion, MAX_LIMIT, NewEvent, Snapshot};
use foundation_core::sync::MutexRecover;
use std::sync::{Arc, Mutex};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::oneshot;

use super::aggregate::{Aggregate, event_type};
use super::handle::{AggregateError, Executed};

/// How the actor is configured (from [`AggregateConfig`](super::AggregateConfig)).
pub(crate) struct Args {
    pub store: EventStore,
    pub stream: String,
    pub snapshot_every: u64,
}

/// A closure run over an aggregate's state and version.
pub(crate) type Reader<A> = Box<dyn FnOnce(&A, u64) + Send>;

/// How often a command is decided again after losing a race to another writer.
const MAX_ATTEMPTS: u32 = 5;

pub(crate) enum Msg<A: Aggregate> {
    Execute {
        /// Taken by the actor when it starts deciding it: a command still here after its
        /// message was dropped (its actor was retiring) is safe to send again.
        command: Arc<Mutex<Option<A::Command>>>,
        expected: Option<u64>,
        correlation: Option<String>,
        reply: oneshot::Sender<Result<Executed<A>, AggregateError<A::Error>>>,
    },
    /// Runs a reader over the state and its version.
    Read(Reader<A>),
    /// Stop after the messages already queued (the handle is retiring this actor).
    Passivate,
}

impl<A: Aggregate> ractor::Message for Msg<A> {}

pub(crate) struct State<A> {
    args: Args,
    aggregate: A,
    version: u64,
    /// The version of the last snapshot saved or loaded.
    snapshot_version: u64,
    /// `apply` panicked: the state is unknown, the actor stops after its reply.
    broken: bool,
}

pub(crate) struct AggregateActor<A>(std::marker::PhantomData<fn() -> A>);

impl<A> AggregateActor<A> {
    pub fn new() -> Self {
        AggregateActor(std::marker::PhantomData)
    }
}

fn decode<A: Aggregate>(event: &foundation_core::events::Event) -> Result<A::Event, EventStoreError> {
    serde_json::from_value(event.payload.clone()).map_err(|e| {
        let reason = format!(
            "event {} ({}, version {} of its stream) cannot be read as a {} event: {e}",
            event.id,
            event.event_type,
            event.stream.as_ref().map_or(0, |p| p.version),
            A::KIND
        );
        EventStoreError::Storage(reason.into())
    })
}

/// Reads the journal after `state.version` and folds it in.
async fn catch_up<A: Aggregate>(state: &mut State<A>) -> Result<(), EventStoreError> {
    loop {
        let events = state.args.store.read_stream(&state.args.stream, state.version, MAX_LIMIT).await?;
        let n = events.len();
        for event in &events {
            state.aggregate.apply(&decode::<A>(event)?);
            state.version = event.stream.as_ref().map_or(state.version, |p| p.version);
        }
        if n < MAX_LIMIT {
            return Ok(());
        }
    }
}

impl<A: Aggregate> State<A> {
    async fn execute(
        &mut self,
        command: A::Command,
        expected: Option<u64>,
        correlation: Option<String>,
    ) -> Result<Executed<A>, AggregateError<A::Error>> {
        if let Some(expected) = expected
            && expected != self.version
        {
            // Our copy may be behind another process's writes: look before refusing.
            catch_up(self).await?;
            if expected != self.version {
                return Err(AggregateError::Conflict { expected, actual: self.version });
            }
        }
        // Another writer (another process) may append between our read and our append: then
        // fold its events in and decide again, unless the caller pinned the version.
        let mut attempts = 0;
        let (events, stored) = loop {
            attempts += 1;
            let events = self.aggregate.handle(&command).map_err(AggregateError::Rejected)?;
            if events.is_empty() {
                return Ok(Executed { version: self.version, events, first_id: None });
            }
            let new: Vec<NewEvent> = events
                .iter()
                .map(|e| {
                    let payload = serde_json::to_value(e).map_err(|err| {
                        let reason = format!("{} event: {err}", A::KIND);
                        AggregateError::Store(EventStoreError::InvalidEvent(reason.into()))
                    })?;
                    let mut event =
                        NewEvent::new(event_type::<A>(&payload), payload).schema_version(A::schema_version());
                    event.correlation_id = correlation.clone();
                    Ok(event)
                })
                .collect::<Result<_, AggregateError<A::Error>>>()?;
            let append = self.args.store.append_to_stream(
                &self.args.stream,
                ExpectedVersion::Exactly(self.version),
                new,
            );
            match append.await {
                Ok(stored) => break (events, stored),
                Err(EventStoreError::Conflict { actual, .. }) => {
                    let at = self.version;
                    catch_up(self).await?;
                    if expected.is_some() || attempts >= MAX_ATTEMPTS {
                        return Err(AggregateError::Conflict { expected: expected.unwrap_or(at), actual });
                    }
                }
                Err(e) => return Err(e.into()),
            }
        };
        // The events are stored: the command is done whatever happens next. A panic in `apply`
        // leaves the state unknown, so the actor is stopped after replying (the next command
        // rebuilds it from the journal).
        let folded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for event in &events {
                self.aggregate.apply(event);
            }
        }));
        self.version += events.len() as u64;
        if folded.is_err() {
            self.broken = true;
            return Ok(Executed { version: self.version, events, first_id: stored.first().map(|e| e.id) });
        }
        if self.args.snapshot_every > 0 && self.version - self.snapshot_version >= self.args.snapshot_every {
            self.snapshot().await;
        }
        metrics::counter!("foundation_aggregate_events_total", "kind" => A::KIND)
            .increment(events.len() as u64);
        Ok(Executed { version: self.version, events, first_id: stored.first().map(|e| e.id) })
    }

    /// Saves a snapshot; a failure is logged, not returned: the events are safe, and the next
    /// rebuild just reads more of them.
    async fn snapshot(&mut self) {
        let state = match serde_json::to_value(&self.aggregate) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(stream = %self.args.stream, error = %e, "aggregate state cannot be serialized; no snapshot");
                return;
            }
        };
        let snapshot = Snapshot { stream: self.args.stream.clone(), version: self.version, state };
        match self.args.store.save_snapshot(snapshot).await {
            Ok(()) => self.snapshot_version = self.version,
            Err(e) => tracing::warn!(stream = %self.args.stream, error = %e, "snapshot not saved"),
        }
    }
}

impl<A: Aggregate> Actor for AggregateActor<A> {
    type Msg = Msg<A>;
    type State = State<A>;
    type Arguments = Args;

    async fn pre_start(&self, _: ActorRef<Msg<A>>, args: Args) -> Result<State<A>, ActorProcessingErr> {
        let started = std::time::Instant::now();
        let mut state =
            State { aggregate: A::default(), version: 0, snapshot_version: 0, broken: false, args };
        if let Some(snapshot) = state.args.store.load_snapshot(&state.args.stream).await? {
            match serde_json::from_value::<A>(snapshot.state) {
                Ok(aggregate) => {
                    state.aggregate = aggregate;
                    state.version = snapshot.version;
                    state.snapshot_version = snapshot.version;
                }
                // A snapshot of an older shape of the state: the journal has everything.
                Err(e) => tracing::warn!(
                    stream = %state.args.stream, error = %e,
                    "snapshot unreadable; rebuilding from the whole journal"
                ),
            }
        }
        catch_up(&mut state).await?;
        metrics::histogram!("foundation_aggregate_rebuild_seconds", "kind" => A::KIND)
            .record(started.elapsed().as_secs_f64());
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Msg<A>>,
        message: Msg<A>,
        state: &mut State<A>,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            Msg::Execute { command, expected, correlation, reply } => {
                let command = command.lock_or_recover().take();
                if let Some(command) = command {
                    let result = state.execute(command, expected, correlation).await;
                    let _ = reply.send(result);
                    if state.broken {
                        tracing::error!(stream = %state.args.stream, "`apply` panicked after the events were stored; rebuilding on the next command");
                        myself.stop(Some("apply panicked".into()));
                    }
                }
            }
            Msg::Read(reader) => reader(&state.aggregate, state.version),
            Msg::Passivate => myself.stop(None),
        }
        Ok(())
    }
}

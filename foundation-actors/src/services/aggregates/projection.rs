//! Projections: read models built from the store's events, resuming after a restart from the
//! position they had recorded.

use foundation_core::sync::MutexRecover;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use foundation_core::events::{Event, EventId, EventQuery, EventStore, EventStoreError};
use tokio::sync::{Mutex, watch};

/// A read model fed with events, in store order.
///
/// Delivery is **at least once**: the position is recorded after each batch, so after a crash
/// the events since the last recorded position are applied again. Make `apply` idempotent (for
/// example, skip ids at or below one the read model stored itself) where that matters.
pub trait Projection: Send + 'static {
    /// Folds one event into the read model. An error stops the projection at that event (it is
    /// retried after `retry_after`, never skipped).
    fn apply(&mut self, event: &Event) -> impl Future<Output = Result<(), foundation_core::BoxError>> + Send;
}

/// How a projection runs.
#[derive(Debug, Clone)]
pub struct ProjectionConfig {
    /// Its name: the key of its recorded position.
    pub name: String,
    /// Which events it reads (types, tenant, fields…); its `after`, `order` and `limit` are
    /// set by the runner.
    pub filter: EventQuery,
    /// Events read per batch (the position is recorded after each). Default 500.
    pub batch: usize,
    /// How often to look for events appended by other processes (appends through this
    /// process's store wake it at once). Default 1 s.
    pub poll_interval: Duration,
    /// The wait before applying an event that failed again. Default 1 s.
    pub retry_after: Duration,
}

impl ProjectionConfig {
    /// A projection named `name` over every event.
    pub fn new(name: impl Into<String>) -> Self {
        ProjectionConfig {
            name: name.into(),
            filter: EventQuery::new(),
            batch: 500,
            poll_interval: Duration::from_secs(1),
            retry_after: Duration::from_secs(1),
        }
    }

    /// Reads only the events this query matches.
    pub fn filter(mut self, filter: EventQuery) -> Self {
        self.filter = filter;
        self
    }
}

/// A running projection: read its model, follow its position, stop it.
pub struct ProjectionHandle<P> {
    model: Arc<Mutex<P>>,
    position: watch::Receiver<EventId>,
    error: Arc<std::sync::Mutex<Option<String>>>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl<P: Projection> ProjectionHandle<P> {
    /// Starts `projection` from the position recorded under its name (the start if none).
    pub async fn start(
        store: EventStore,
        config: ProjectionConfig,
        projection: P,
    ) -> Result<Self, EventStoreError> {
        if config.batch == 0 || config.batch > foundation_core::events::MAX_LIMIT {
            return Err(EventStoreError::InvalidQuery(format!(
                "projection `{}`: batch {} is outside 1..={}",
                config.name,
                config.batch,
                foundation_core::events::MAX_LIMIT
            )));
        }
        let start = store.load_checkpoint(&config.name).await?;
        let (position_tx, position) = watch::channel(start);
        let model = Arc::new(Mutex::new(projection));
        let error = Arc::new(std::sync::Mutex::new(None));
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(store, config, model.clone(), position_tx, error.clone(), stop_rx));
        Ok(ProjectionHandle { model, position, error, stop, task: Some(task) })
    }

    /// The id of the last event applied (and recorded, or about to be).
    pub fn position(&self) -> EventId {
        *self.position.borrow()
    }

    /// Waits until the projection has applied everything up to `id`, or `timeout` passes.
    pub async fn wait_for(&self, id: EventId, timeout: Duration) -> Result<(), String> {
        let mut position = self.position.clone();
        let reached = tokio::time::timeout(timeout, position.wait_for(|p| *p >= id)).await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            _ => Err(format!(
                "projection at {} did not reach {id} in {timeout:?}{}",
                self.position(),
                self.last_error().map(|e| format!(" (last error: {e})")).unwrap_or_default()
            )),
        }
    }

    /// The last error `apply` or the store returned, if the projection is stuck on one.
    pub fn last_error(&self) -> Option<String> {
        self.error.lock_or_recover().clone()
    }

    /// Reads the model (between two events, never during one).
    pub async fn read<R>(&self, f: impl FnOnce(&P) -> R) -> R {
        f(&*self.model.lock().await)
    }

    /// Stops the projection after the event being applied (an `apply` is never cut short),
    /// records its position and returns the model.
    pub async fn stop(mut self) -> P {
        let _ = self.stop.send(true);
        let task = self.task.take();
        let model = self.model.clone();
        drop(self);
        if let Some(task) = task
            && let Err(e) = task.await
        {
            tracing::warn!(error = %e, "projection task ended abnormally");
        }
        match Arc::try_unwrap(model) {
            Ok(model) => model.into_inner(),
            Err(_) => unreachable!("the projection task held the only other reference and has ended"),
        }
    }
}

impl<P> Drop for ProjectionHandle<P> {
    fn drop(&mut self) {
        // Dropped without `stop`: the task ends at its next event boundary.
        let _ = self.stop.send(true);
    }
}

async fn run<P: Projection>(
    store: EventStore,
    config: ProjectionConfig,
    model: Arc<Mutex<P>>,
    position_tx: watch::Sender<EventId>,
    error: Arc<std::sync::Mutex<Option<String>>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut appended = store.watch_appends();
    let mut position = *position_tx.borrow();
    let mut recorded = position;
    let set_error = |e: Option<String>| *error.lock_or_recover() = e;
    // Waits `d`, or less if a stop is asked for; true if it was.
    async fn pause(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
        if *stop.borrow() {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => false,
            _ = stop.changed() => true,
        }
    }
    'reading: loop {
        let mut query = config.filter.clone().after(position).limit(config.batch);
        query.order = foundation_core::events::Order::Ascending;
        let batch = match store.query(query).await {
            Ok(batch) => batch,
            Err(e) => {
                set_error(Some(e.to_string()));
                if pause(&mut stop, config.retry_after).await {
                    break 'reading;
                }
                continue;
            }
        };
        let full = batch.len() == config.batch;
        for event in &batch {
            // Between events only: an event being applied is finished before a stop.
            if *stop.borrow() {
                break 'reading;
            }
            loop {
                // The lock is held for one event, so `read` waits at most that long, and never
                // through a retry's pause.
                let applied = model.lock().await.apply(event).await;
                match applied {
                    Ok(()) => break,
                    Err(e) => {
                        set_error(Some(format!("event {}: {e}", event.id)));
                        if pause(&mut stop, config.retry_after).await {
                            break 'reading;
                        }
                    }
                }
            }
            position = event.id;
            position_tx.send_replace(position);
        }
        if position > recorded {
            set_error(None);
            match store.save_checkpoint(&config.name, position).await {
                Ok(()) => recorded = position,
                Err(e) => set_error(Some(format!("position not recorded: {e}"))),
            }
        }
        if !full {
            // Caught up: wait for an append here, a poll for other processes' appends, or a stop.
            tokio::select! {
                _ = tokio::time::timeout(config.poll_interval, appended.changed()) => {}
                _ = stop.changed() => break 'reading,
            }
        }
    }
    if position > recorded
        && let Err(e) = store.save_checkpoint(&config.name, position).await
    {
        set_error(Some(format!("position not recorded at stop: {e}")));
    }
}

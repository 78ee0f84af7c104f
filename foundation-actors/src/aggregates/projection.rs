//! Projections: read models built from the store's events, resuming after a restart from the
//! position they had recorded.

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
    fn apply(&mut self, event: &Event) -> impl Future<Output = Result<(), String>> + Send;
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
    task: tokio::task::JoinHandle<()>,
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
        let task = tokio::spawn(run(store, config, model.clone(), position_tx, error.clone()));
        Ok(ProjectionHandle { model, position, error, task })
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
        self.error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reads the model (between two events, never during one).
    pub async fn read<R>(&self, f: impl FnOnce(&P) -> R) -> R {
        f(&*self.model.lock().await)
    }

    /// Stops the projection after the event being applied, records its position and returns
    /// the model.
    pub async fn stop(self) -> P {
        self.task.abort();
        let _ = self.task.await;
        match Arc::try_unwrap(self.model) {
            Ok(model) => model.into_inner(),
            Err(_) => unreachable!("the projection task held the only other reference and has ended"),
        }
    }
}

async fn run<P: Projection>(
    store: EventStore,
    config: ProjectionConfig,
    model: Arc<Mutex<P>>,
    position_tx: watch::Sender<EventId>,
    error: Arc<std::sync::Mutex<Option<String>>>,
) {
    let mut appended = store.watch_appends();
    let mut position = *position_tx.borrow();
    let set_error = |e: Option<String>| *error.lock().unwrap_or_else(|p| p.into_inner()) = e;
    loop {
        let mut query = config.filter.clone().after(position).limit(config.batch);
        query.order = foundation_core::events::Order::Ascending;
        let batch = match store.query(query).await {
            Ok(batch) => batch,
            Err(e) => {
                set_error(Some(e.to_string()));
                tokio::time::sleep(config.retry_after).await;
                continue;
            }
        };
        let full = batch.len() == config.batch;
        let mut applied = position;
        {
            // Held across one batch: `read` sees the model between batches only, and `stop`
            // (an abort) can only land between events, where the lock is released by the drop.
            let mut model = model.lock().await;
            for event in &batch {
                while let Err(e) = model.apply(event).await {
                    set_error(Some(format!("event {}: {e}", event.id)));
                    tokio::time::sleep(config.retry_after).await;
                }
                applied = event.id;
            }
        }
        if applied > position {
            position = applied;
            set_error(None);
            if let Err(e) = store.save_checkpoint(&config.name, position).await {
                set_error(Some(format!("position not recorded: {e}")));
            }
            position_tx.send_replace(position);
        }
        if !full {
            // Caught up: wait for an append here, or poll for other processes' appends.
            let _ = tokio::time::timeout(config.poll_interval, appended.changed()).await;
        }
    }
}

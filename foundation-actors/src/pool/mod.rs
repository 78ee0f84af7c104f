//! Elastic worker pools: between a minimum and a maximum number of workers, growing when work
//! waits (queue depth or wait time), shrinking after idle time, replacing workers that fail
//! their health check, with prioritised checkout, a timeout, and a bounded queue that sheds the
//! lowest-priority work first.
//!
//! A worker is whatever a [`WorkerFactory`] creates: an actor ref, a model server connection, a
//! browser session. [`Pool::checkout`] lends one out; dropping the [`PooledWorker`] returns it
//! (to the highest-priority waiter first), [`PooledWorker::discard`] throws it away.
//!
//! Metrics (label `pool`): gauges `foundation_pool_size`, `_busy`, `_idle`, `_waiting`;
//! histogram `foundation_pool_wait_seconds`; counters `foundation_pool_created_total`,
//! `_destroyed_total` (label `reason`: `idle`, `unhealthy`, `discarded`, `shutdown`),
//! `_shed_total`, `_overloaded_total`, `_timeouts_total`, `_create_failures_total`.
//!
//! ```
//! use std::time::Duration;
//! use foundation_actors::pool::{BoxError, Pool, PoolConfig, Priority, WorkerFactory};
//!
//! struct Connections;
//! impl WorkerFactory for Connections {
//!     type Worker = String;
//!     async fn create(&self) -> Result<String, BoxError> {
//!         Ok("connection".to_string())
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let pool = Pool::start(Connections, PoolConfig::new("db").size(1, 4)).await?;
//! let conn = pool.checkout(Priority::NORMAL, Duration::from_secs(1)).await?;
//! assert_eq!(*conn, "connection");
//! drop(conn); // back to the pool
//! assert_eq!(pool.stats().idle, 1);
//! # Ok::<(), foundation_actors::pool::PoolError>(())
//! # }).unwrap();
//! ```

// Not ractor's `factory`: a factory routes fire-and-forget jobs to worker actors, bounding its
// queue only by discarding (DiscardSettings) and sizing by a capacity controller. A pool lends a
// worker to a caller who waits for it, which a factory cannot express: the caller's timeout, a
// priority order among waiting callers, shedding the lowest of them, health checks that replace
// idle workers, and workers that are not actors at all (connections, sessions).
mod config;

use foundation_core::sync::MutexRecover;
use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

pub use config::*;

/// The error a factory returns.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Creates, checks and destroys a pool's workers.
pub trait WorkerFactory: Send + Sync + 'static {
    /// What the pool lends out.
    type Worker: Send + 'static;

    /// Creates a worker.
    fn create(&self) -> impl Future<Output = Result<Self::Worker, BoxError>> + Send;

    /// Whether an idle worker is still fit for work; unhealthy ones are destroyed and replaced.
    /// Default: always healthy.
    fn is_healthy(&self, worker: &Self::Worker) -> impl Future<Output = bool> + Send {
        let _ = worker;
        async { true }
    }

    /// Called when a worker leaves the pool. Default: drop it.
    fn destroy(&self, worker: Self::Worker) -> impl Future<Output = ()> + Send {
        drop(worker);
        async {}
    }
}

/// A checkout's priority: when the queue is full, lower priorities are shed first; returned
/// workers go to the highest-priority waiter (first come, first served within a priority).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Priority(pub u8);

impl Priority {
    /// Background work, shed first.
    pub const LOW: Priority = Priority(0);
    /// Ordinary work.
    pub const NORMAL: Priority = Priority(128);
    /// Work that must go through (interactive requests, control).
    pub const HIGH: Priority = Priority(255);
}

impl Default for Priority {
    fn default() -> Self {
        Priority::NORMAL
    }
}

/// Errors of a pool.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// The waiting queue is full of work of equal or higher priority.
    #[error("pool `{pool}` is overloaded: {waiting} checkouts already waiting")]
    Overloaded {
        /// The pool.
        pool: String,
        /// Checkouts waiting.
        waiting: usize,
    },
    /// This waiting checkout was dropped to make room for higher-priority work.
    #[error("pool `{pool}` shed this checkout for higher-priority work")]
    Shed {
        /// The pool.
        pool: String,
    },
    /// No worker became free in time.
    #[error("pool `{pool}` had no free worker within {waited:?}")]
    Timeout {
        /// The pool.
        pool: String,
        /// How long the checkout waited.
        waited: Duration,
    },
    /// The pool was shut down.
    #[error("pool `{pool}` is shut down")]
    Closed {
        /// The pool.
        pool: String,
    },
    /// The configuration is invalid.
    #[error("invalid configuration for pool `{pool}`: {reason}")]
    Config {
        /// The pool.
        pool: String,
        /// What is wrong.
        reason: String,
    },
    /// The minimum number of workers could not be created at start.
    #[error("pool `{pool}` could not create a worker: {source}")]
    Create {
        /// The pool.
        pool: String,
        /// The factory's error.
        #[source]
        source: foundation_core::Cause,
    },
}

/// A snapshot of a pool's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Workers in the pool (idle, busy, being created or health-checked).
    pub size: usize,
    /// Workers waiting for work.
    pub idle: usize,
    /// Workers lent out.
    pub busy: usize,
    /// Checkouts waiting for a worker.
    pub waiting: usize,
    /// Workers being created.
    pub creating: usize,
}

/// An elastic pool of workers. Cheap to clone.
pub struct Pool<F: WorkerFactory> {
    inner: Arc<Inner<F>>,
}

impl<F: WorkerFactory> Clone for Pool<F> {
    fn clone(&self) -> Self {
        Pool { inner: self.inner.clone() }
    }
}

struct Inner<F: WorkerFactory> {
    factory: F,
    config: PoolConfig,
    state: Mutex<State<F::Worker>>,
}

type Key = (Reverse<Priority>, u64);

struct Waiter<W> {
    tx: oneshot::Sender<Result<W, PoolError>>,
    since: Instant,
}

struct State<W> {
    /// Idle workers, least recently returned first.
    idle: Vec<(W, Instant)>,
    size: usize,
    creating: usize,
    checking: usize,
    waiters: BTreeMap<Key, Waiter<W>>,
    next_seq: u64,
    closed: bool,
    last_health_check: Instant,
}

impl<W> State<W> {
    fn stats(&self) -> PoolStats {
        PoolStats {
            size: self.size,
            idle: self.idle.len(),
            busy: self.size - self.idle.len() - self.creating - self.checking,
            waiting: self.waiters.len(),
            creating: self.creating,
        }
    }
}

impl<F: WorkerFactory> Pool<F> {
    /// Starts a pool: creates `min_size` workers (failing if one cannot be created) and the
    /// maintenance loop, on the current tokio runtime.
    pub async fn start(factory: F, config: PoolConfig) -> Result<Self, PoolError> {
        config.validate().map_err(|reason| PoolError::Config { pool: config.name.clone(), reason })?;
        let mut idle = Vec::with_capacity(config.max_size);
        for _ in 0..config.min_size {
            let worker = factory.create().await.map_err(|e| PoolError::Create {
                pool: config.name.clone(),
                source: foundation_core::Cause::new(e),
            })?;
            idle.push((worker, Instant::now()));
        }
        let state = State {
            size: idle.len(),
            idle,
            creating: 0,
            checking: 0,
            waiters: BTreeMap::new(),
            next_seq: 0,
            closed: false,
            last_health_check: Instant::now(),
        };
        let inner = Arc::new(Inner { factory, config, state: Mutex::new(state) });
        inner.counter("foundation_pool_created_total").increment(inner.config.min_size as u64);
        inner.publish(&inner.lock());
        tokio::spawn(maintain(Arc::downgrade(&inner)));
        Ok(Pool { inner })
    }

    /// Lends out a worker: an idle one at once, else waits (up to `timeout`) while the pool
    /// grows or a worker is returned. Cancel-safe: dropping the future loses no worker.
    pub async fn checkout(
        &self,
        priority: Priority,
        timeout: Duration,
    ) -> Result<PooledWorker<F>, PoolError> {
        let started = Instant::now();
        let inner = &self.inner;
        let mut wait = {
            let mut st = inner.lock();
            if st.closed {
                return Err(inner.closed());
            }
            if let Some((worker, _)) = st.idle.pop() {
                inner.publish(&st);
                drop(st);
                inner.histogram().record(0.0);
                return Ok(PooledWorker { worker: Some(worker), inner: inner.clone(), discard: false });
            }
            if st.waiters.len() >= inner.config.max_waiters {
                match st.waiters.last_key_value() {
                    Some((key, _)) if key.0.0 < priority => {
                        if let Some((_, victim)) = st.waiters.pop_last() {
                            let _ = victim.tx.send(Err(PoolError::Shed { pool: inner.config.name.clone() }));
                            inner.counter("foundation_pool_shed_total").increment(1);
                        }
                    }
                    _ => {
                        inner.counter("foundation_pool_overloaded_total").increment(1);
                        return Err(PoolError::Overloaded {
                            pool: inner.config.name.clone(),
                            waiting: st.waiters.len(),
                        });
                    }
                }
            }
            let key = (Reverse(priority), st.next_seq);
            st.next_seq += 1;
            let (tx, rx) = oneshot::channel();
            st.waiters.insert(key, Waiter { tx, since: started });
            inner.scale_up_for_queue(&mut st);
            inner.publish(&st);
            Wait { inner: inner.clone(), key, rx: Some(rx) }
        };
        let result = wait.finish(timeout).await;
        if let Err(PoolError::Timeout { .. }) = result {
            inner.counter("foundation_pool_timeouts_total").increment(1);
        }
        let worker = result.map_err(|e| match e {
            PoolError::Timeout { pool, .. } => PoolError::Timeout { pool, waited: started.elapsed() },
            other => other,
        })?;
        inner.histogram().record(started.elapsed().as_secs_f64());
        Ok(PooledWorker { worker: Some(worker), inner: inner.clone(), discard: false })
    }

    /// The pool's current size.
    pub fn stats(&self) -> PoolStats {
        self.inner.lock().stats()
    }

    /// The pool's configuration.
    pub fn config(&self) -> &PoolConfig {
        &self.inner.config
    }

    /// Stops lending: waiting checkouts fail with `Closed`, idle workers are destroyed now and
    /// lent ones when they are returned.
    pub async fn shutdown(&self) {
        let idle = {
            let mut st = self.inner.lock();
            st.closed = true;
            for (_, waiter) in std::mem::take(&mut st.waiters) {
                let _ = waiter.tx.send(Err(self.inner.closed()));
            }
            let idle = std::mem::take(&mut st.idle);
            st.size -= idle.len();
            self.inner.publish(&st);
            idle
        };
        for (worker, _) in idle {
            self.inner.destroyed("shutdown");
            self.inner.factory.destroy(worker).await;
        }
    }
}

/// A waiting checkout; on drop it leaves the queue, or hands back a worker it was sent.
struct Wait<F: WorkerFactory> {
    inner: Arc<Inner<F>>,
    key: Key,
    rx: Option<oneshot::Receiver<Result<F::Worker, PoolError>>>,
}

impl<F: WorkerFactory> Wait<F> {
    async fn finish(&mut self, timeout: Duration) -> Result<F::Worker, PoolError> {
        let Some(rx) = self.rx.as_mut() else { return Err(self.inner.closed()) };
        let result = match tokio::time::timeout(timeout, &mut *rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(self.inner.closed()),
            Err(_) => {
                let removed = self.inner.lock().waiters.remove(&self.key).is_some();
                if removed {
                    Err(PoolError::Timeout { pool: self.inner.config.name.clone(), waited: timeout })
                } else {
                    // Served (or shed) just as the time ran out: take what was sent.
                    rx.await.unwrap_or_else(|_| Err(self.inner.closed()))
                }
            }
        };
        self.rx = None;
        result
    }
}

impl<F: WorkerFactory> Drop for Wait<F> {
    fn drop(&mut self) {
        let Some(mut rx) = self.rx.take() else { return };
        let mut st = self.inner.lock();
        if st.waiters.remove(&self.key).is_none()
            && let Ok(Ok(worker)) = rx.try_recv()
        {
            // The checkout was cancelled after a worker was sent to it: pass the worker on.
            self.inner.give(&mut st, worker);
        }
        self.inner.publish(&st);
    }
}

/// A worker lent out by a [`Pool`]; returned when dropped.
pub struct PooledWorker<F: WorkerFactory> {
    worker: Option<F::Worker>,
    inner: Arc<Inner<F>>,
    discard: bool,
}

impl<F: WorkerFactory> PooledWorker<F> {
    /// Destroys the worker instead of returning it (it is broken); the pool replaces it if
    /// needed.
    pub fn discard(mut self) {
        self.discard = true;
    }
}

impl<F: WorkerFactory> Deref for PooledWorker<F> {
    type Target = F::Worker;
    fn deref(&self) -> &F::Worker {
        // Present from construction until drop.
        self.worker.as_ref().unwrap_or_else(|| unreachable!("worker taken before drop"))
    }
}

impl<F: WorkerFactory> DerefMut for PooledWorker<F> {
    fn deref_mut(&mut self) -> &mut F::Worker {
        self.worker.as_mut().unwrap_or_else(|| unreachable!("worker taken before drop"))
    }
}

impl<F: WorkerFactory> Drop for PooledWorker<F> {
    fn drop(&mut self) {
        let Some(worker) = self.worker.take() else { return };
        let mut st = self.inner.lock();
        if self.discard || st.closed {
            st.size -= 1;
            let reason = if self.discard { "discarded" } else { "shutdown" };
            self.inner.scale_up_for_queue(&mut st);
            self.inner.publish(&st);
            drop(st);
            self.inner.destroy_later(worker, reason);
        } else {
            self.inner.give(&mut st, worker);
            self.inner.publish(&st);
        }
    }
}

impl<F: WorkerFactory> std::fmt::Debug for PooledWorker<F>
where
    F::Worker: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PooledWorker").field(&self.worker).finish()
    }
}

impl<F: WorkerFactory> std::fmt::Debug for Pool<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("name", &self.inner.config.name).field("stats", &self.stats()).finish()
    }
}

impl<F: WorkerFactory> Inner<F> {
    fn lock(&self) -> MutexGuard<'_, State<F::Worker>> {
        // No user code runs under this lock; a poisoned lock means a bug here, and the counts
        // are still the best information there is.
        self.state.lock_or_recover()
    }

    fn closed(&self) -> PoolError {
        PoolError::Closed { pool: self.config.name.clone() }
    }

    /// Gives a worker to the highest-priority live waiter, or makes it idle.
    fn give(&self, st: &mut State<F::Worker>, mut worker: F::Worker) {
        while let Some((_, waiter)) = st.waiters.pop_first() {
            match waiter.tx.send(Ok(worker)) {
                Ok(()) => return,
                // That checkout was cancelled; try the next one.
                Err(Ok(w)) => worker = w,
                Err(Err(_)) => return,
            }
        }
        st.idle.push((worker, Instant::now()));
    }

    /// Adds workers while the queue is at least `scale_up_queue_depth` deep and more checkouts
    /// wait than workers are being created.
    fn scale_up_for_queue(self: &Arc<Self>, st: &mut State<F::Worker>) {
        while !st.closed
            && st.size < self.config.max_size
            && st.waiters.len() >= self.config.scale_up_queue_depth
            && st.creating < st.waiters.len()
        {
            self.spawn_create(st);
        }
    }

    fn spawn_create(self: &Arc<Self>, st: &mut State<F::Worker>) {
        st.size += 1;
        st.creating += 1;
        let inner = self.clone();
        tokio::spawn(async move {
            let created = inner.factory.create().await;
            let mut st = inner.lock();
            st.creating -= 1;
            match created {
                Ok(worker) if !st.closed => {
                    inner.counter("foundation_pool_created_total").increment(1);
                    inner.give(&mut st, worker);
                    inner.publish(&st);
                }
                Ok(worker) => {
                    st.size -= 1;
                    inner.publish(&st);
                    drop(st);
                    inner.destroy_later(worker, "shutdown");
                }
                Err(e) => {
                    // The maintenance loop tries again while work waits or the pool is below min.
                    st.size -= 1;
                    inner.publish(&st);
                    inner.counter("foundation_pool_create_failures_total").increment(1);
                    tracing::warn!(pool = %inner.config.name, error = %e, "could not create a worker");
                }
            }
        });
    }

    fn destroy_later(self: &Arc<Self>, worker: F::Worker, reason: &'static str) {
        self.destroyed(reason);
        let inner = self.clone();
        tokio::spawn(async move { inner.factory.destroy(worker).await });
    }

    fn destroyed(&self, reason: &'static str) {
        metrics::counter!("foundation_pool_destroyed_total", "pool" => self.config.name.clone(), "reason" => reason)
            .increment(1);
    }

    fn counter(&self, name: &'static str) -> metrics::Counter {
        metrics::counter!(name, "pool" => self.config.name.clone())
    }

    fn histogram(&self) -> metrics::Histogram {
        metrics::histogram!("foundation_pool_wait_seconds", "pool" => self.config.name.clone())
    }

    fn publish(&self, st: &State<F::Worker>) {
        let s = st.stats();
        let pool = self.config.name.clone();
        metrics::gauge!("foundation_pool_size", "pool" => pool.clone()).set(s.size as f64);
        metrics::gauge!("foundation_pool_busy", "pool" => pool.clone()).set(s.busy as f64);
        metrics::gauge!("foundation_pool_idle", "pool" => pool.clone()).set(s.idle as f64);
        metrics::gauge!("foundation_pool_waiting", "pool" => pool).set(s.waiting as f64);
    }

    /// One round of maintenance: grow for long waits and to the minimum, shrink idle workers
    /// past their idle timeout, health-check idle workers when due.
    async fn maintain_once(self: &Arc<Self>) {
        let now = Instant::now();
        let (expired, to_check) = {
            let mut st = self.lock();
            if st.closed {
                return;
            }
            let oldest = st.waiters.values().map(|w| w.since).min();
            if let Some(oldest) = oldest
                && now.duration_since(oldest) >= self.config.scale_up_wait
                && st.size < self.config.max_size
                && st.creating < st.waiters.len()
            {
                self.spawn_create(&mut st);
            }
            while st.size < self.config.min_size {
                self.spawn_create(&mut st);
            }
            let mut expired = Vec::new();
            while st.size > self.config.min_size
                && st
                    .idle
                    .first()
                    .is_some_and(|(_, since)| now.duration_since(*since) >= self.config.idle_timeout)
            {
                let (worker, _) = st.idle.remove(0);
                st.size -= 1;
                expired.push(worker);
            }
            let mut to_check = Vec::new();
            if now.duration_since(st.last_health_check) >= self.config.health_check_interval {
                st.last_health_check = now;
                to_check = std::mem::take(&mut st.idle);
                st.checking += to_check.len();
            }
            self.publish(&st);
            (expired, to_check)
        };
        for worker in expired {
            self.destroyed("idle");
            self.factory.destroy(worker).await;
        }
        for (worker, since) in to_check {
            let healthy = self.factory.is_healthy(&worker).await;
            let retire = {
                let mut st = self.lock();
                st.checking -= 1;
                let retire = if healthy && !st.closed {
                    if st.waiters.is_empty() {
                        // Keep its idle time: a health check is not work.
                        st.idle.push((worker, since));
                        st.idle.sort_by_key(|(_, t)| *t);
                    } else {
                        self.give(&mut st, worker);
                    }
                    None
                } else {
                    st.size -= 1;
                    if !healthy {
                        tracing::warn!(pool = %self.config.name, "replacing a worker that failed its health check");
                    }
                    while !st.closed && st.size < self.config.min_size {
                        self.spawn_create(&mut st);
                    }
                    self.scale_up_for_queue(&mut st);
                    Some((worker, if healthy { "shutdown" } else { "unhealthy" }))
                };
                self.publish(&st);
                retire
            };
            if let Some((worker, reason)) = retire {
                self.destroyed(reason);
                self.factory.destroy(worker).await;
            }
        }
    }
}

async fn maintain<F: WorkerFactory>(inner: Weak<Inner<F>>) {
    let Some(interval) = inner.upgrade().map(|i| i.config.maintenance_interval) else { return };
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        if inner.lock().closed {
            return;
        }
        inner.maintain_once().await;
    }
}

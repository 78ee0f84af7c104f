//! Elastic pools: growth on queue depth and wait time, idle shrink, health checks, priorities,
//! shedding, timeouts, cancellation, and scale up/down under a synthetic load. Tokio time is
//! paused, so the timings are exact and the tests fast.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foundation_actors::pool::{BoxError, Pool, PoolConfig, PoolError, Priority, WorkerFactory};
use tokio::time::Instant;

#[derive(Clone, Default)]
struct Factory {
    next: Arc<AtomicU64>,
    unhealthy: Arc<Mutex<HashSet<u64>>>,
    destroyed: Arc<Mutex<Vec<u64>>>,
    failures_left: Arc<AtomicU64>,
}

impl WorkerFactory for Factory {
    type Worker = u64;

    async fn create(&self) -> Result<u64, BoxError> {
        tokio::time::sleep(Duration::from_millis(5)).await; // creating costs something
        if self.failures_left.load(Ordering::SeqCst) > 0 {
            self.failures_left.fetch_sub(1, Ordering::SeqCst);
            return Err("model server refused the connection".into());
        }
        Ok(self.next.fetch_add(1, Ordering::SeqCst))
    }

    async fn is_healthy(&self, worker: &u64) -> bool {
        !self.unhealthy.lock().unwrap().contains(worker)
    }

    async fn destroy(&self, worker: u64) {
        self.destroyed.lock().unwrap().push(worker);
    }
}

fn config(min: usize, max: usize) -> PoolConfig {
    let mut c = PoolConfig::new("test").size(min, max);
    c.maintenance_interval = Duration::from_millis(10);
    c.idle_timeout = Duration::from_secs(1);
    c.health_check_interval = Duration::from_secs(3600);
    c
}

const LONG: Duration = Duration::from_secs(600);

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out (virtual time) waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn grows_on_demand_and_serves_waiters_by_priority() {
    let pool = Pool::start(Factory::default(), config(1, 3)).await.unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(pool.checkout(Priority::NORMAL, LONG).await.unwrap());
    }
    assert_eq!(pool.stats().size, 3);

    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for (name, priority) in [("low", Priority::LOW), ("high", Priority::HIGH), ("normal", Priority::NORMAL)] {
        let (p, order) = (pool.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let w = p.checkout(priority, LONG).await.unwrap();
            order.lock().unwrap().push(name);
            w
        }));
        until("waiter queued", || pool.stats().waiting == tasks.len()).await;
    }
    assert_eq!(pool.stats().size, 3, "at max size, waiters wait");
    for expected in 1..=3 {
        held.pop();
        until("a waiter served", || order.lock().unwrap().len() == expected).await;
    }
    assert_eq!(*order.lock().unwrap(), ["high", "normal", "low"]);
}

#[tokio::test(start_paused = true)]
async fn scales_up_at_the_configured_queue_depth() {
    let mut c = config(1, 5);
    c.scale_up_queue_depth = 3;
    c.scale_up_wait = LONG;
    let pool = Pool::start(Factory::default(), c).await.unwrap();
    let _held = pool.checkout(Priority::NORMAL, LONG).await.unwrap();
    let mut waiters = Vec::new();
    for _ in 0..2 {
        let p = pool.clone();
        waiters.push(tokio::spawn(async move { p.checkout(Priority::NORMAL, LONG).await.map(|_| ()) }));
    }
    until("two waiting", || pool.stats().waiting == 2).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(pool.stats().size, 1, "below the depth threshold the pool does not grow");

    let p = pool.clone();
    waiters.push(tokio::spawn(async move { p.checkout(Priority::NORMAL, LONG).await.map(|_| ()) }));
    for w in waiters {
        w.await.unwrap().unwrap();
    }
    assert!(pool.stats().size >= 2, "{:?}", pool.stats());
}

#[tokio::test(start_paused = true)]
async fn scales_up_when_the_oldest_waiter_waited_too_long() {
    let mut c = config(1, 2);
    c.scale_up_queue_depth = 100;
    c.scale_up_wait = Duration::from_millis(200);
    let pool = Pool::start(Factory::default(), c).await.unwrap();
    let _held = pool.checkout(Priority::NORMAL, LONG).await.unwrap();
    let started = Instant::now();
    let w = pool.checkout(Priority::NORMAL, LONG).await.unwrap();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(200), "served after {waited:?}, before the wait threshold");
    assert!(waited < Duration::from_millis(300), "served after {waited:?}");
    assert_eq!(*w, 1, "a new worker");
}

#[tokio::test(start_paused = true)]
async fn shrinks_to_the_minimum_after_idle_time() {
    let factory = Factory::default();
    let pool = Pool::start(factory.clone(), config(1, 4)).await.unwrap();
    let held: Vec<_> = futures_join(&pool, 4).await;
    assert_eq!(pool.stats().size, 4);
    drop(held);
    assert_eq!(pool.stats().idle, 4);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(pool.stats().size, 4, "not idle long enough yet");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(pool.stats().size, 1);
    assert_eq!(factory.destroyed.lock().unwrap().len(), 3);
}

async fn futures_join(pool: &Pool<Factory>, n: usize) -> Vec<foundation_actors::pool::PooledWorker<Factory>> {
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(pool.checkout(Priority::NORMAL, LONG).await.unwrap());
    }
    held
}

#[tokio::test(start_paused = true)]
async fn unhealthy_workers_are_replaced_proactively() {
    let factory = Factory::default();
    let mut c = config(2, 2);
    c.health_check_interval = Duration::from_millis(100);
    let pool = Pool::start(factory.clone(), c).await.unwrap();
    factory.unhealthy.lock().unwrap().extend([0, 1]);
    until("both replaced", || factory.destroyed.lock().unwrap().len() == 2 && pool.stats().idle == 2).await;
    let mut destroyed = factory.destroyed.lock().unwrap().clone();
    destroyed.sort();
    assert_eq!(destroyed, [0, 1]);
    let a = pool.checkout(Priority::NORMAL, LONG).await.unwrap();
    let b = pool.checkout(Priority::NORMAL, LONG).await.unwrap();
    assert!(*a >= 2 && *b >= 2, "only fresh workers are lent: {} {}", *a, *b);
}

#[tokio::test(start_paused = true)]
async fn checkout_times_out_and_leaves_the_queue() {
    let pool = Pool::start(Factory::default(), config(1, 1)).await.unwrap();
    let _held = pool.checkout(Priority::NORMAL, LONG).await.unwrap();
    let err = pool.checkout(Priority::NORMAL, Duration::from_millis(100)).await.unwrap_err();
    let PoolError::Timeout { pool: name, waited } = &err else { panic!("{err}") };
    assert_eq!(name, "test");
    assert!(*waited >= Duration::from_millis(100));
    assert!(err.to_string().contains("pool `test` had no free worker"), "{err}");
    assert_eq!(pool.stats().waiting, 0);
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_sheds_lowest_priority_first_then_refuses() {
    let mut c = config(1, 1);
    c.max_waiters = 2;
    let pool = Pool::start(Factory::default(), c).await.unwrap();
    let held = pool.checkout(Priority::NORMAL, LONG).await.unwrap();
    let spawn = |priority| {
        let p = pool.clone();
        tokio::spawn(async move { p.checkout(priority, LONG).await.map(|w| *w) })
    };
    let low1 = spawn(Priority::LOW);
    until("one waiting", || pool.stats().waiting == 1).await;
    let low2 = spawn(Priority::LOW);
    until("two waiting", || pool.stats().waiting == 2).await;

    let err = pool.checkout(Priority::LOW, LONG).await.unwrap_err();
    assert_eq!(err, PoolError::Overloaded { pool: "test".into(), waiting: 2 });

    let high = spawn(Priority::HIGH);
    assert_eq!(
        low2.await.unwrap(),
        Err(PoolError::Shed { pool: "test".into() }),
        "the newest low waiter is shed"
    );
    until("high queued", || pool.stats().waiting == 2).await;
    drop(held);
    assert_eq!(high.await.unwrap(), Ok(0), "high priority is served first");
    assert_eq!(low1.await.unwrap(), Ok(0), "then the remaining low one");
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_checkout_loses_no_worker() {
    let pool = Pool::start(Factory::default(), config(1, 1)).await.unwrap();
    let held = pool.checkout(Priority::NORMAL, LONG).await.unwrap();
    let p = pool.clone();
    let waiter = tokio::spawn(async move { p.checkout(Priority::NORMAL, LONG).await.map(|_| ()) });
    until("waiting", || pool.stats().waiting == 1).await;
    waiter.abort();
    let _ = waiter.await;
    assert_eq!(pool.stats().waiting, 0);
    drop(held);
    let stats = pool.stats();
    assert_eq!((stats.size, stats.idle), (1, 1), "{stats:?}");
    assert!(pool.checkout(Priority::NORMAL, Duration::from_millis(1)).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn failed_creations_are_retried_while_work_waits() {
    let factory = Factory::default();
    let pool = Pool::start(factory.clone(), config(1, 2)).await.unwrap();
    let _held = pool.checkout(Priority::NORMAL, LONG).await.unwrap();
    factory.failures_left.store(3, Ordering::SeqCst);
    let w = pool.checkout(Priority::NORMAL, LONG).await.unwrap();
    assert_eq!(*w, 1);
    assert_eq!(factory.failures_left.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn scales_up_and_down_under_a_synthetic_load() {
    let factory = Factory::default();
    let pool = Pool::start(factory.clone(), config(2, 6)).await.unwrap();
    let peak = Arc::new(AtomicUsize::new(0));
    let served = Arc::new(AtomicUsize::new(0));

    let sampler = {
        let (pool, peak) = (pool.clone(), peak.clone());
        tokio::spawn(async move {
            loop {
                peak.fetch_max(pool.stats().size, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let clients: Vec<_> = (0..40)
        .map(|_| {
            let (pool, served) = (pool.clone(), served.clone());
            tokio::spawn(async move {
                for _ in 0..20 {
                    let w = pool.checkout(Priority::NORMAL, LONG).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(10)).await; // the work
                    drop(w);
                    served.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(served.load(Ordering::SeqCst), 800, "every checkout was served");
    assert_eq!(peak.load(Ordering::SeqCst), 6, "the pool grew to its maximum under load");

    // Load gone: after the idle timeout it is back to its minimum.
    tokio::time::sleep(Duration::from_secs(2)).await;
    sampler.abort();
    let stats = pool.stats();
    assert_eq!((stats.size, stats.busy, stats.waiting), (2, 0, 0), "{stats:?}");
    assert_eq!(factory.destroyed.lock().unwrap().len(), 4);
}

#[tokio::test(start_paused = true)]
async fn bad_config_and_failing_start_are_clear_errors() {
    let err = Pool::start(Factory::default(), PoolConfig::new("bad").size(3, 2)).await.unwrap_err();
    assert!(err.to_string().contains("min_size 3 is larger than max_size 2"), "{err}");
    let factory = Factory::default();
    factory.failures_left.store(1, Ordering::SeqCst);
    let err = Pool::start(factory, config(1, 1)).await.unwrap_err();
    assert!(err.to_string().contains("model server refused the connection"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn shutdown_fails_waiters_and_destroys_workers() {
    let factory = Factory::default();
    let pool = Pool::start(factory.clone(), config(2, 2)).await.unwrap();
    let a = pool.checkout(Priority::NORMAL, LONG).await.unwrap();
    let _b = pool.checkout(Priority::NORMAL, LONG).await.unwrap();
    let p = pool.clone();
    let waiter = tokio::spawn(async move { p.checkout(Priority::NORMAL, LONG).await.map(|_| ()) });
    until("waiting", || pool.stats().waiting == 1).await;
    pool.shutdown().await;
    assert_eq!(waiter.await.unwrap(), Err(PoolError::Closed { pool: "test".into() }));
    drop(a);
    until("returned worker destroyed", || factory.destroyed.lock().unwrap().len() == 1).await;
    assert!(matches!(pool.checkout(Priority::HIGH, LONG).await, Err(PoolError::Closed { .. })));
}

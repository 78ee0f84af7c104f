//! Elastic pool: model-server connections grow under a burst of requests, shrink when idle,
//! and a full queue sheds background work before interactive work.
//!
//! Run: `cargo run -p foundation-examples --example pool`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use foundation_actors::pool::{BoxError, Pool, PoolConfig, PoolError, Priority, WorkerFactory};

struct Connections(AtomicU64);

impl WorkerFactory for Connections {
    type Worker = u64;
    async fn create(&self) -> Result<u64, BoxError> {
        tokio::time::sleep(Duration::from_millis(20)).await; // a TLS handshake, say
        Ok(self.0.fetch_add(1, Ordering::SeqCst))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut config = PoolConfig::new("model-server").size(1, 4);
    config.idle_timeout = Duration::from_millis(300);
    config.max_waiters = 8;
    let pool = Pool::start(Connections(AtomicU64::new(0)), config).await?;
    println!("start: {:?}", pool.stats());

    let peak = Arc::new(AtomicU64::new(0));
    let mut calls = Vec::new();
    for i in 0..12 {
        let (pool, peak) = (pool.clone(), peak.clone());
        let priority = if i % 3 == 0 { Priority::HIGH } else { Priority::LOW };
        calls.push(tokio::spawn(async move {
            let conn = pool.checkout(priority, Duration::from_secs(5)).await?;
            peak.fetch_max(pool.stats().size as u64, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await; // the request
            drop(conn);
            Ok::<_, PoolError>(())
        }));
    }
    let mut ok = 0;
    for c in calls {
        match c.await? {
            Ok(()) => ok += 1,
            Err(e) => println!("refused: {e}"),
        }
    }
    println!("burst of 12 calls: {ok} served, pool grew to {}", peak.load(Ordering::SeqCst));
    tokio::time::sleep(Duration::from_millis(800)).await;
    println!("after idling: {:?}", pool.stats());
    Ok(())
}

//! One node in this process: a singleton declared here runs here, and dropping its handle
//! stops it (the copy does not outlive its declaration), after which it can be declared again.
//! (Failover across nodes: the multi-process tests in `examples/tests/cluster.rs`.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use foundation_actors::supervision::ChildSpec;
use foundation_cluster::{Cluster, SingletonEvent, SingletonHandle};
use foundation_core::config::ClusterConfig;
use ractor::{Actor, ActorProcessingErr, ActorRef};

/// Counts the copies alive.
struct Counted(Arc<AtomicUsize>);

impl Actor for Counted {
    type Msg = ();
    type State = ();
    type Arguments = ();
    async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    async fn post_stop(&self, _: ActorRef<()>, _: &mut ()) -> Result<(), ActorProcessingErr> {
        self.0.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }
}

async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "gave up waiting: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_handle_stops_the_copy_running_here() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = ClusterConfig { listen: ([127, 0, 0, 1], port).into(), ..Default::default() };
    let cluster = Cluster::start("solo", &config, None).await.unwrap();
    let alive = Arc::new(AtomicUsize::new(0));
    let spec = |alive: Arc<AtomicUsize>| ChildSpec::new("keeper", move || (Counted(alive.clone()), ()));

    let handle = SingletonHandle::start(&cluster, "keeper", spec(alive.clone()));
    let mut events = handle.subscribe();
    assert_eq!(events.recv().await.unwrap(), SingletonEvent::Started);
    until("the singleton runs", || alive.load(Ordering::SeqCst) == 1).await;

    drop(handle);
    until("the singleton stops once its handle is dropped", || alive.load(Ordering::SeqCst) == 0).await;
    match events.recv().await.unwrap() {
        SingletonEvent::Stopped(reason) => assert!(reason.contains("handle was dropped"), "{reason}"),
        other => panic!("{other:?}"),
    }

    // Declared again, it runs again (once).
    let _again = SingletonHandle::start(&cluster, "keeper", spec(alive.clone()));
    until("the singleton runs again", || alive.load(Ordering::SeqCst) == 1).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(alive.load(Ordering::SeqCst), 1);
    cluster.shutdown().await;
}

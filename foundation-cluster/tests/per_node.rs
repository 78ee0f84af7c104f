//! One node in this process: a replica starts under supervision, is announced, is refused a
//! second time on the same node, and is gone once stopped. (Across nodes: the multi-process
//! test `examples/tests/cross_node.rs`.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use foundation_actors::supervision::ChildSpec;
use foundation_cluster::{Cluster, ClusterError, PerNodeHandle};
use foundation_core::config::ClusterConfig;
use ractor::{Actor, ActorProcessingErr, ActorRef};

struct Worker;

impl Actor for Worker {
    type Msg = ();
    type State = ();
    type Arguments = ();
    async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_runs_once_per_node_and_stops_on_request() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = ClusterConfig { listen: ([127, 0, 0, 1], port).into(), ..Default::default() };
    let cluster = Cluster::start("solo", &config, None).await.unwrap();

    let replica =
        PerNodeHandle::start(&cluster, "cache", ChildSpec::new("cache", || (Worker, ()))).await.unwrap();
    assert_eq!(replica.nodes(), ["solo"]);
    // The replica's actor is spawned by its supervisor: it may still be starting for a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let local = replica.local().await.unwrap();
        if local.cell.as_ref().is_some_and(|c| c.get_status() == ractor::ActorStatus::Running) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the replica never ran: {:?}",
            local.cell.map(|c| c.get_status())
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    let again = PerNodeHandle::start(&cluster, "cache", ChildSpec::new("cache", || (Worker, ()))).await;
    let err = again.unwrap_err();
    assert!(matches!(err, ClusterError::Replicated { .. }), "{err}");
    assert!(err.to_string().contains("already runs a replica"), "{err}");

    // Once stopped it is no longer announced, so it can be started here again.
    replica.stop().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let restarted = loop {
        match PerNodeHandle::start(&cluster, "cache", ChildSpec::new("cache", || (Worker, ()))).await {
            Ok(handle) => break handle,
            Err(e) => assert!(std::time::Instant::now() < deadline, "still announced after stop: {e}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(restarted.nodes(), ["solo"]);
    cluster.shutdown().await;
}

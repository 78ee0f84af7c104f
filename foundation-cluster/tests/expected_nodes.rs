//! `cluster.expected_nodes`: a node that knows no other node yet (a first start found only by
//! discovery, a node restarted under a new name with an empty state directory) must not make a
//! majority of its own. Found by the nemesis (`foundation nemesis --seed 38`): a node restarted
//! under a new name acquired a lock another node held, and was elected with a smaller term,
//! before discovery had found it the cluster.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::time::Duration;

use foundation_cluster::Cluster;
use foundation_cluster::coordination::{Coordination, CoordinationConfig, CoordinationError};
use foundation_core::config::ClusterConfig;

async fn lone_node(name: &str, expected_nodes: usize) -> Coordination {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config =
        ClusterConfig { listen: ([127, 0, 0, 1], port).into(), expected_nodes, ..Default::default() };
    let cluster = Cluster::start(name, &config, None).await.unwrap();
    Coordination::start(&cluster, CoordinationConfig::default()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_node_makes_no_majority_when_the_cluster_is_meant_to_be_larger() {
    let alone = lone_node("newcomer", 3).await;
    match alone.lock("orders", Duration::from_millis(700)).await {
        Err(CoordinationError::LockTimeout { granted, needed, known, .. }) => {
            assert_eq!((needed, known), (2, 3), "a majority of the 3 expected nodes");
            assert!(granted < needed);
        }
        other => panic!("a lone node of an expected 3 was granted a lock: {other:?}"),
    }
    // Without the floor, a node that knows no one is a new cluster of one, and grants itself.
    let first = lone_node("first", 0).await;
    let guard = first.lock("orders", Duration::from_secs(5)).await.unwrap();
    assert!(guard.is_held());
}

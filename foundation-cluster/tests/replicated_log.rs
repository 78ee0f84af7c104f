//! The replicated log on three nodes in this process, each with a directory of its own (as on
//! separate hosts): commits on a majority, leaders taking over (the old one deposed, a lower
//! token refused), a lost node, a damaged replica left out and repaired, every replica
//! restarted, and bad input. Killed processes: `examples/tests/optimize.rs`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::path::PathBuf;
use std::time::Duration;

use foundation_cluster::Cluster;
use foundation_cluster::replicated_log::{LogConfig, LogError, ReplicatedLog};
use foundation_core::config::ClusterConfig;

async fn node(name: &str, seeds: Vec<std::net::SocketAddr>) -> (Cluster, std::net::SocketAddr) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let config = ClusterConfig { listen: addr, seeds, ..Default::default() };
    (Cluster::start(name, &config, None).await.unwrap(), addr)
}

fn config(dir: &std::path::Path) -> LogConfig {
    LogConfig { fsync: false, ..LogConfig::new("orders").with_dir(dir) }
}

/// Starts a log, waiting for a replica of it dropped just before to let go of its file.
async fn restart(cluster: &Cluster, dir: &std::path::Path) -> ReplicatedLog {
    for _ in 0..100 {
        match ReplicatedLog::start(cluster, config(dir)).await {
            Ok(log) => return log,
            Err(LogError::Store { message, .. }) if message.contains("in use") => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    panic!("the replica in {} stayed in use", dir.display());
}

fn data(entries: &[foundation_cluster::replicated_log::Entry]) -> Vec<String> {
    entries.iter().map(|e| String::from_utf8(e.data.clone()).unwrap()).collect()
}

async fn until(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not reached: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaders_take_over_without_losing_a_commit_and_damaged_replicas_are_repaired() {
    let root = std::env::temp_dir().join(foundation_core::files::unguessable_name("replicated-log-"));
    let dirs: Vec<PathBuf> = (1..=3).map(|i| root.join(format!("n{i}"))).collect();
    let (n1, seed) = node("n1", Vec::new()).await;
    let (n2, _) = node("n2", vec![seed]).await;
    let (n3, _) = node("n3", vec![seed]).await;
    n1.wait_for_members(2, Duration::from_secs(10)).await.unwrap();
    n2.wait_for_members(2, Duration::from_secs(10)).await.unwrap();
    n3.wait_for_members(2, Duration::from_secs(10)).await.unwrap();

    let l1 = ReplicatedLog::start(&n1, config(&dirs[0])).await.unwrap();
    let l2 = ReplicatedLog::start(&n2, config(&dirs[1])).await.unwrap();
    let l3 = ReplicatedLog::start(&n3, config(&dirs[2])).await.unwrap();

    // A first leader: nothing before it; 100 appends, all committed, on every replica.
    let (w1, before) = l1.lead(1).await.unwrap();
    assert!(before.is_empty());
    let commits: Vec<_> = (0..100).map(|i| w1.append(format!("e{i}").into_bytes()).unwrap()).collect();
    let last = commits.last().unwrap().index();
    for commit in commits {
        commit.committed().await.unwrap();
    }
    assert!(w1.committed() >= last);
    until("every replica holds the entries", || {
        [&l1, &l2, &l3].iter().all(|l| l.replica_status().last_index >= last)
    })
    .await;

    // A second leader on n2 (a larger token): the same 100 entries; the first is deposed, and
    // an append it makes now is refused or never committed.
    let (w2, seen) = l2.lead(2).await.unwrap();
    let expected: Vec<String> = (0..100).map(|i| format!("e{i}")).collect();
    assert_eq!(data(&seen), expected);
    let late = w1.append(b"late".to_vec());
    if let Ok(commit) = late {
        assert!(matches!(commit.committed().await, Err(LogError::Deposed { by: (2, _), .. })));
    }
    assert!(matches!(w1.ended(), Some(LogError::Deposed { .. })), "{:?}", w1.ended());
    // A leader with a lower token is refused.
    assert!(matches!(l3.lead(1).await, Err(LogError::Deposed { by: (2, _), .. })));
    drop(w1);

    // n3 stops: two of three known nodes are still a majority.
    drop(l3);
    n3.shutdown().await;
    let commit = w2.append(b"without n3".to_vec()).unwrap();
    commit.committed().await.unwrap();
    drop(w2);

    // n2's replica is damaged (a flipped bit in its tenth entry) and restarted: reported,
    // cut back, and left out; n1 and n3 (back, with its own directory) make the majority,
    // and n2 is repaired by the next leader.
    drop(l2);
    let file = dirs[1].join("orders.log");
    let mut bytes = std::fs::read(&file).unwrap();
    let tenth = bytes.len() / 10;
    bytes[tenth] ^= 0x10;
    std::fs::write(&file, &bytes).unwrap();
    let l2 = restart(&n2, &dirs[1]).await;
    assert!(l2.replica_status().damaged);
    assert!(l2.replica_status().last_index < 100);
    let (n3, _) = node("n3", vec![seed]).await;
    n3.wait_for_members(2, Duration::from_secs(10)).await.unwrap();
    let l3 = restart(&n3, &dirs[2]).await;
    let (w3, seen) = l1.lead(3).await.unwrap();
    let mut expected_now = expected.clone();
    expected_now.push("without n3".into());
    assert_eq!(data(&seen), expected_now);
    w3.append(b"after the repair".to_vec()).unwrap().committed().await.unwrap();
    until("n2's replica is repaired", || !l2.replica_status().damaged).await;

    // Every replica restarted (as after a restart of the whole cluster): all of it is there.
    drop(w3);
    drop((l1, l2, l3));
    let l1 = restart(&n1, &dirs[0]).await;
    let l2 = restart(&n2, &dirs[1]).await;
    let _l3 = restart(&n3, &dirs[2]).await;
    let (w4, seen) = l2.lead(4).await.unwrap();
    expected_now.push("after the repair".into());
    assert_eq!(data(&seen), expected_now);

    // The same token again (a leader restarted within its lease) leads under a later attempt,
    // and the earlier one is deposed.
    let (w4b, _) = l1.lead(4).await.unwrap();
    assert_eq!(w4b.ballot().0, 4);
    assert!(w4b.ballot().1 > w4.ballot().1);
    // The earlier one's append is refused at once if it already learned it was deposed (its
    // replication heard the new promise), or never commits.
    match w4.append(b"x".to_vec()) {
        Ok(commit) => assert!(commit.committed().await.is_err()),
        Err(e) => assert!(matches!(e, LogError::Deposed { by: (4, _), .. }), "{e}"),
    }

    // Bad input: a name that is not a file name, an entry too large.
    assert!(matches!(
        ReplicatedLog::start(&n1, LogConfig { dir: Some(root.clone()), ..LogConfig::new("../up") }).await,
        Err(LogError::BadName(_))
    ));
    let too_large = vec![0; l1.max_entry_bytes() + 1];
    assert!(matches!(w4b.append(too_large), Err(LogError::TooLarge { .. })));
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_commits_nothing_and_a_node_without_a_directory_is_told() {
    let root = std::env::temp_dir().join(foundation_core::files::unguessable_name("replicated-log-"));
    // One node that knows of two more (seeds it cannot reach): a majority is 2 of 3.
    let unreachable: Vec<std::net::SocketAddr> =
        (0..2).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()).collect();
    let (alone, _) = node("alone", unreachable).await;
    assert!(matches!(
        ReplicatedLog::start(&alone, LogConfig::new("orders")).await,
        Err(LogError::NoDirectory(_))
    ));
    let log = ReplicatedLog::start(
        &alone,
        LogConfig { recovery_timeout: Duration::from_millis(500), ..LogConfig::new("alone").with_dir(&root) },
    )
    .await
    .unwrap();
    match log.lead(1).await {
        Err(LogError::NoMajority { reached: 1, needed: 2, .. }) => {}
        other => panic!("expected no majority, got {other:?}"),
    }
    let _ = std::fs::remove_dir_all(&root);
}

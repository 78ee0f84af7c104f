//! Replicated CRDT state on one node in this process: local semantics of update, get and
//! subscribe, majority consistency with one node and with a seed that is not there, and bad
//! input (a key used with two types, an oversized value, a key too long, a second replicator of
//! one name).
//! Across nodes and partitions: the multi-process test `examples/tests/crdt_convergence.rs`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::time::Duration;

use foundation_cluster::Cluster;
use foundation_cluster::crdt_state::{
    CrdtError, CrdtKind, Key, LwwMap, MAX_KEY_BYTES, ReadConsistency, Replicator, ReplicatorConfig,
    WriteConsistency,
};
use foundation_core::config::ClusterConfig;
use foundation_core::crdt::{GCounter, LwwRegister, OrSet, PnCounter};

async fn node(name: &str, seeds: Vec<std::net::SocketAddr>) -> Cluster {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = ClusterConfig { listen: ([127, 0, 0, 1], port).into(), seeds, ..Default::default() };
    Cluster::start(name, &config, None).await.unwrap()
}

fn config(name: &str) -> ReplicatorConfig {
    ReplicatorConfig { name: name.to_string(), ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_reads_and_subscriptions_on_one_node() {
    let cluster = node("solo", Vec::new()).await;
    let replicator = Replicator::start(&cluster, config("local")).await.unwrap();
    assert_eq!(replicator.replica_id(), "solo");
    assert_eq!(replicator.known_nodes(), 1);

    // Counters: the closure gets this node's replica id.
    let hits = Key::<PnCounter>::new("hits");
    assert_eq!(replicator.get(&hits, ReadConsistency::Local).await.unwrap(), None);
    let mut changes = replicator.subscribe(&hits).unwrap();
    assert_eq!(changes.current(), None);
    let value = replicator.update(&hits, WriteConsistency::Local, |c, me| c.add(me, 5)).await.unwrap();
    assert_eq!(value.value(), 5);
    assert_eq!(changes.changed().await.unwrap().value(), 5);
    replicator.update(&hits, WriteConsistency::Local, |c, me| c.add(me, -2)).await.unwrap();
    assert_eq!(changes.changed().await.unwrap().value(), 3);
    let read = replicator.get(&hits, ReadConsistency::Local).await.unwrap().unwrap();
    assert_eq!(read.value(), 3);

    // A cluster of one is its own majority.
    replicator.update(&hits, WriteConsistency::majority(), |c, me| c.add(me, 1)).await.unwrap();
    let read = replicator.get(&hits, ReadConsistency::majority()).await.unwrap().unwrap();
    assert_eq!(read.value(), 4);

    // Sets, registers and maps.
    let online = Key::<OrSet<String>>::new("online");
    replicator.update(&online, WriteConsistency::Local, |s, me| s.add(me, "ann".into())).await.unwrap();
    replicator.update(&online, WriteConsistency::Local, |s, me| s.add(me, "bob".into())).await.unwrap();
    let set = replicator
        .update(&online, WriteConsistency::Local, |s, _| {
            s.remove(&"ann".to_string());
        })
        .await
        .unwrap();
    assert_eq!(set.iter().cloned().collect::<Vec<_>>(), ["bob"]);

    let motd = Key::<LwwRegister<String>>::new("motd");
    replicator
        .update(&motd, WriteConsistency::Local, |r, me| {
            let stamp = r.next_stamp(me, 1);
            r.set("hello".into(), stamp);
        })
        .await
        .unwrap();
    let read = replicator.get(&motd, ReadConsistency::Local).await.unwrap().unwrap();
    assert_eq!(read.get(), "hello");

    let prefs = Key::<LwwMap>::new("prefs");
    replicator
        .update(&prefs, WriteConsistency::Local, |m, me| {
            m.update(me, "theme".to_string(), |r| {
                let stamp = r.next_stamp(me, 1);
                r.set("dark".into(), stamp);
            })
        })
        .await
        .unwrap();
    let read = replicator.get(&prefs, ReadConsistency::Local).await.unwrap().unwrap();
    assert_eq!(read.get(&"theme".to_string()).unwrap().get(), "dark");

    let mut keys = replicator.keys();
    keys.sort();
    assert_eq!(
        keys,
        [
            ("hits".to_string(), CrdtKind::PnCounter),
            ("motd".to_string(), CrdtKind::LwwRegister),
            ("online".to_string(), CrdtKind::OrSet),
            ("prefs".to_string(), CrdtKind::LwwMap),
        ]
    );

    // Changes not yet read are seen as the latest value (here after the majority write).
    assert_eq!(changes.changed().await.unwrap().value(), 4);
    // Stopping ends subscriptions.
    replicator.stop().await;
    assert_eq!(changes.changed().await, None);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let cluster = node("picky", Vec::new()).await;
    let small = ReplicatorConfig { max_message_bytes: 2048, ..config("bad") };
    let replicator = Replicator::start(&cluster, small).await.unwrap();

    // A second replicator of the same name on the same node is refused.
    let err = Replicator::start(&cluster, config("bad")).await.unwrap_err();
    assert!(matches!(err, CrdtError::Start { .. }), "{err}");
    assert!(err.to_string().contains("already runs a replicator"), "{err}");
    // A config out of range is refused with the value and the bound.
    let bad = ReplicatorConfig { gossip_interval: Duration::ZERO, ..config("zero") };
    let err = Replicator::start(&cluster, bad).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "replicator `zero` cannot start: gossip_interval 0ns is below the minimum 10ms"
    );

    // A key used with another type: refused on write, read and subscribe; the value stays.
    let counter = Key::<GCounter>::new("shared");
    replicator.update(&counter, WriteConsistency::Local, |c, me| c.increment(me, 7)).await.unwrap();
    let as_set = Key::<OrSet<String>>::new("shared");
    let err =
        replicator.update(&as_set, WriteConsistency::Local, |s, me| s.add(me, "x".into())).await.unwrap_err();
    assert_eq!(
        err,
        CrdtError::WrongType { key: "shared".into(), expected: CrdtKind::OrSet, found: CrdtKind::GCounter }
    );
    assert_eq!(err.to_string(), "key `shared` holds a GCounter, not a OrSet");
    assert!(matches!(
        replicator.get(&as_set, ReadConsistency::Local).await,
        Err(CrdtError::WrongType { .. })
    ));
    assert!(matches!(replicator.subscribe(&as_set), Err(CrdtError::WrongType { .. })));
    let read = replicator.get(&counter, ReadConsistency::Local).await.unwrap().unwrap();
    assert_eq!(read.value(), 7);

    // A value that would not fit a message is not written.
    let big = Key::<OrSet<String>>::new("big");
    replicator.update(&big, WriteConsistency::Local, |s, me| s.add(me, "first".into())).await.unwrap();
    let err = replicator
        .update(&big, WriteConsistency::Local, |s, me| {
            for i in 0..200 {
                s.add(me, format!("element number {i}"));
            }
        })
        .await
        .unwrap_err();
    assert!(matches!(err, CrdtError::TooLarge { .. }), "{err}");
    assert!(matches!(err, CrdtError::TooLarge { max: 1536, .. }), "{err}");
    assert!(err.to_string().contains("over the 1536 bytes a value may take (max_message_bytes"), "{err}");
    let read = replicator.get(&big, ReadConsistency::Local).await.unwrap().unwrap();
    assert_eq!(read.iter().cloned().collect::<Vec<_>>(), ["first"]);

    // With 2 KiB messages a key may take a quarter of the 1536-byte payload: 384 bytes.
    let longest = Key::<GCounter>::new("k".repeat(384));
    replicator.update(&longest, WriteConsistency::Local, |c, me| c.increment(me, 1)).await.unwrap();
    let too_long = Key::<GCounter>::new("k".repeat(385));
    let err =
        replicator.update(&too_long, WriteConsistency::Local, |c, me| c.increment(me, 1)).await.unwrap_err();
    assert_eq!(err, CrdtError::KeyTooLong { prefix: "k".repeat(32), size: 385, max: 384 });
    assert!(err.to_string().contains("385 bytes long, over the 384-byte limit for CRDT keys"), "{err}");

    replicator.stop().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_over_the_limit_are_refused_everywhere_and_change_nothing() {
    let cluster = node("long-keys", Vec::new()).await;
    let replicator = Replicator::start(&cluster, config("long")).await.unwrap();

    // With the default message limit, keys of up to MAX_KEY_BYTES (1 KiB).
    assert_eq!(MAX_KEY_BYTES, 1024);
    let longest = Key::<PnCounter>::new("x".repeat(MAX_KEY_BYTES));
    replicator.update(&longest, WriteConsistency::majority(), |c, me| c.add(me, 2)).await.unwrap();
    let read = replicator.get(&longest, ReadConsistency::majority()).await.unwrap().unwrap();
    assert_eq!(read.value(), 2);
    replicator.subscribe(&longest).unwrap();

    // One byte more (a multi-byte character cut at a char boundary in the error).
    let name = format!("{}é{}", "x".repeat(31), "x".repeat(MAX_KEY_BYTES - 32));
    let too_long = Key::<PnCounter>::new(name.clone());
    let expected = CrdtError::KeyTooLong { prefix: "x".repeat(31), size: 1025, max: 1024 };
    let err = replicator.update(&too_long, WriteConsistency::Local, |c, me| c.add(me, 1)).await.unwrap_err();
    assert_eq!(err, expected);
    assert!(err.to_string().starts_with(&format!("key `{}…` is 1025 bytes long", "x".repeat(31))), "{err}");
    assert_eq!(replicator.get(&too_long, ReadConsistency::Local).await.unwrap_err(), expected);
    assert_eq!(replicator.get(&too_long, ReadConsistency::majority()).await.unwrap_err(), expected);
    assert_eq!(replicator.subscribe(&too_long).unwrap_err(), expected);
    assert_eq!(replicator.keys().len(), 1, "nothing written");

    replicator.stop().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn majority_fails_when_half_the_known_cluster_is_missing_and_the_local_write_stays() {
    // A seed nobody listens on: this node knows of two nodes and reaches one, itself.
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let cluster = node("alone", vec![nowhere]).await;
    let replicator = Replicator::start(&cluster, config("minority")).await.unwrap();
    assert_eq!(replicator.known_nodes(), 2);

    let key = Key::<GCounter>::new("votes");
    let timeout = Duration::from_millis(200);
    let err = replicator
        .update(&key, WriteConsistency::Majority { timeout }, |c, me| c.increment(me, 1))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        CrdtError::MajorityWrite {
            key: "votes".into(),
            acked: 1,
            needed: 2,
            known: 2,
            reachable: 1,
            waited: timeout
        }
    );
    assert!(err.to_string().contains("the write stays applied on this node"), "{err}");
    // Applied here all the same.
    let read = replicator.get(&key, ReadConsistency::Local).await.unwrap().unwrap();
    assert_eq!(read.value(), 1);

    let err = replicator.get(&key, ReadConsistency::Majority { timeout }).await.unwrap_err();
    assert!(matches!(err, CrdtError::MajorityRead { answered: 1, needed: 2, .. }), "{err}");
    assert!(err.to_string().starts_with("majority read of `votes` failed: 1 of the 2 nodes needed"), "{err}");

    replicator.stop().await;
    cluster.shutdown().await;
}

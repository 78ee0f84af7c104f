//! The cluster's conversation store on a node in this process: versions that every change
//! makes larger (a writer after a forget or a reset refused), the limits (a change larger than a
//! load can carry, too many conversations) refused with what was wrong and nothing kept, and a
//! keeper started again replaying the log to the same conversations and versions. Killed
//! processes: `examples/tests/conversations.rs`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::time::Duration;

use foundation_actors::agents::{ConversationChange, ConversationError, ConversationStore};
use foundation_actors::providers::ChatMessage;
use foundation_cluster::Cluster;
use foundation_cluster::conversations::{Conversations, ConversationsConfig};
use foundation_core::config::ClusterConfig;

fn change(after: u64, texts: &[&str], reset: bool) -> ConversationChange {
    ConversationChange { after, messages: texts.iter().map(|t| ChatMessage::user(*t)).collect(), reset }
}

async fn start(cluster: &Cluster, dir: &std::path::Path, max_conversations: usize) -> Conversations {
    let config = ConversationsConfig {
        dir: Some(dir.to_path_buf()),
        fsync: false,
        max_conversations,
        timeout: Duration::from_secs(20),
        ..Default::default()
    };
    // A replica dropped just before may still hold its file for a moment.
    for _ in 0..100 {
        match Conversations::start(cluster, config.clone()).await {
            Ok(c) => return c,
            Err(e) if e.to_string().contains("in use") => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("{e}"),
        }
    }
    panic!("the replica stayed in use");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_limits_and_a_keeper_started_again() {
    let dir = std::env::temp_dir().join(foundation_core::files::unguessable_name("conversations-"));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = ClusterConfig {
        listen: ([127, 0, 0, 1], port).into(),
        max_frame_bytes: 64 * 1024,
        ..Default::default()
    };
    let cluster = Cluster::start("n1", &config, None).await.unwrap();
    let store = start(&cluster, &dir, 2).await;

    let v1 = store.append("a", change(0, &["hello", "hi"], false)).await.unwrap();
    let v2 = store.append("a", change(v1, &["how are you"], false)).await.unwrap();
    assert!(v2 > v1);
    let stale = store.append("a", change(v1, &["late"], false)).await.unwrap_err();
    assert!(
        matches!(stale, ConversationError::Conflict { expected, actual, .. } if expected == v1 && actual == v2)
    );

    // A reset to nothing is a change: a writer still at the old version is refused.
    let v3 = store.append("a", change(v2, &[], true)).await.unwrap();
    assert!(store.append("a", change(v2, &["late"], false)).await.is_err());
    let v4 = store.append("a", change(v3, &["again"], false)).await.unwrap();

    // Forgotten, then started afresh: the old writer's version is refused, not reused.
    store.forget("a").await.unwrap();
    assert_eq!(store.load("a").await.unwrap().version, 0);
    let v5 = store.append("a", change(0, &["new start"], false)).await.unwrap();
    assert!(v5 > v4);
    assert!(store.append("a", change(v4, &["late"], false)).await.is_err());

    // Limits: a change larger than a load can carry, a third conversation.
    let big = "x".repeat(60 * 1024);
    let too_large = store.append("a", change(v5, &[&big], false)).await.unwrap_err();
    assert!(matches!(too_large, ConversationError::TooLarge { .. }), "{too_large}");
    store.append("b", change(0, &["b"], false)).await.unwrap();
    let full = store.append("c", change(0, &["c"], false)).await.unwrap_err();
    assert!(full.to_string().contains("the store is full (2 conversations)"), "{full}");
    assert!(matches!(store.load("").await, Err(ConversationError::BadId(_))));
    let a = store.load("a").await.unwrap();
    assert_eq!((a.version, a.messages.len()), (v5, 1), "nothing refused was kept");

    // The keeper started again (its handle dropped, the log's replica reopened) replays the log
    // to the same conversations and versions.
    drop(store);
    let store = start(&cluster, &dir, 2).await;
    let again = store.load("a").await.unwrap();
    assert_eq!(again, a);
    assert_eq!(store.load("b").await.unwrap().messages[0].text(), "b");
    assert!(store.append("a", change(v4, &["late"], false)).await.is_err());
    store.append("a", change(v5, &["after the restart"], false)).await.unwrap();
    cluster.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

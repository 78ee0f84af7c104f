//! Channels: lanes, overflow policies, subscriber removal, pg membership, broadcast vs publish.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::time::Duration;

use foundation_actors::channels::{
    self, ChannelError, Channels, Overflow, PG_SCOPE, SubscribeOptions, SystemEvent, Topic, pg_group,
};

fn event(kind: &str, n: u64) -> SystemEvent {
    SystemEvent::new(kind, "test").with_data(serde_json::json!(n))
}

#[tokio::test]
async fn a_telemetry_flood_never_delays_a_control_message() {
    let channels = Channels::start().await.unwrap();
    let mut sub = channels
        .subscribe_with(&channels::telemetry(), SubscribeOptions { capacity: 100, ..Default::default() })
        .unwrap();
    sub.also(&channels::control()).unwrap();

    // 100 000 telemetry messages: far more than the subscriber's bound; the publisher never waits.
    for n in 0..100_000 {
        channels.publish(&channels::telemetry(), event("progress", n)).unwrap();
    }
    channels.publish(&channels::control(), event("stop", 0)).unwrap();

    // The control message comes first, ahead of the 100 queued telemetry messages.
    let first = sub.recv().await.unwrap();
    assert_eq!(first.kind, "stop");
    // Then the newest 100 telemetry messages (drop-oldest), in order.
    let next = sub.recv().await.unwrap();
    assert_eq!(next.data, serde_json::json!(99_900));
    assert_eq!(sub.len(), 99);
    assert_eq!(sub.dropped(), 99_900);
}

#[tokio::test]
async fn control_overtakes_a_flood_across_nodes_too() {
    // Two channel instances in one process share ractor's pg, like two nodes. (Own topics: pg
    // is process-wide, and other tests use the built-in ones.)
    let (a, b) = (Channels::start().await.unwrap(), Channels::start().await.unwrap());
    let (flood, control) = (Topic::<SystemEvent>::new("x-flood"), Topic::<SystemEvent>::control("x-control"));
    let mut sub = b.subscribe_with(&flood, SubscribeOptions { capacity: 10, ..Default::default() }).unwrap();
    sub.also(&control).unwrap();
    for n in 0..20_000 {
        a.broadcast(&flood, event("progress", n)).unwrap();
    }
    a.broadcast(&control, event("stop", 0)).unwrap();
    // The control broadcast rides its own relay: it arrives while b's normal relay may still be
    // working through the flood, and is received before any queued telemetry.
    let first = tokio::time::timeout(Duration::from_secs(20), sub.recv()).await.unwrap().unwrap();
    let mut seen_stop = first.kind == "stop";
    let mut telemetry_before_stop = u64::from(!seen_stop);
    while !seen_stop {
        let m = tokio::time::timeout(Duration::from_secs(20), sub.recv()).await.unwrap().unwrap();
        seen_stop = m.kind == "stop";
        telemetry_before_stop += u64::from(!seen_stop);
    }
    // At most what was queued when the stop arrived (one lane's bound) came before it.
    assert!(
        telemetry_before_stop <= 10,
        "{telemetry_before_stop} telemetry messages overtook the control one"
    );
}

#[tokio::test]
async fn overflow_policies() {
    let channels = Channels::start().await.unwrap();
    let topic: Topic<u32> = Topic::new("numbers");
    let opts = |overflow| SubscribeOptions { capacity: 3, overflow };
    let mut oldest = channels.subscribe_with(&topic, opts(Overflow::DropOldest)).unwrap();
    let mut newest = channels.subscribe_with(&topic, opts(Overflow::DropNewest)).unwrap();
    let mut strict = channels.subscribe_with(&topic, opts(Overflow::Disconnect)).unwrap();
    for n in 1..=5 {
        channels.publish(&topic, n).unwrap();
    }
    let drain = |s: &mut foundation_actors::channels::Subscription<u32>| {
        let mut v = Vec::new();
        while let Some(Ok(m)) = s.try_recv() {
            v.push(m);
        }
        v
    };
    assert_eq!(drain(&mut oldest), [3, 4, 5]);
    assert_eq!(drain(&mut newest), [1, 2, 3]);
    assert_eq!((oldest.dropped(), newest.dropped()), (2, 2));
    // The strict subscriber was disconnected at the 4th message and removed from the topic.
    assert_eq!(strict.recv().await, Err(ChannelError::Disconnected { dropped: 1 }));
    assert_eq!(channels.subscriber_count("numbers"), 2);
    assert_eq!(channels.publish(&topic, 6).unwrap(), 2);
}

#[tokio::test]
async fn dropped_subscribers_are_removed_at_once() {
    let channels = Channels::start().await.unwrap();
    let topic: Topic<String> = Topic::new("chat");
    let a = channels.subscribe(&topic).unwrap();
    let mut b = channels.subscribe(&topic).unwrap();
    assert_eq!(channels.subscriber_count("chat"), 2);
    drop(a);
    assert_eq!(channels.subscriber_count("chat"), 1);
    assert_eq!(channels.publish(&topic, "hi".into()).unwrap(), 1);
    b.unsubscribe(&topic);
    assert_eq!(channels.subscriber_count("chat"), 0);
    assert!(!channels.topics().contains(&"chat".to_string()));
    assert_eq!(b.recv().await.unwrap(), "hi", "already queued messages stay after unsubscribe");

    // A subscription held in a task dies with the task.
    let sub = channels.subscribe(&topic).unwrap();
    let task = tokio::spawn(async move {
        let _sub = sub;
        std::future::pending::<()>().await
    });
    assert_eq!(channels.subscriber_count("chat"), 1);
    task.abort();
    let _ = task.await;
    assert_eq!(channels.subscriber_count("chat"), 0);
}

#[tokio::test]
async fn topic_types_and_lanes_are_checked() {
    let channels = Channels::start().await.unwrap();
    let _sub = channels.subscribe(&Topic::<u32>::new("typed")).unwrap();
    let err = channels.publish(&Topic::<String>::new("typed"), "x".into()).unwrap_err();
    assert!(matches!(err, ChannelError::TypeMismatch { .. }), "{err}");
    assert!(err.to_string().contains("topic `typed` carries u32"), "{err}");
    let err = channels.subscribe(&Topic::<u32>::control("typed")).unwrap_err();
    assert!(matches!(err, ChannelError::LaneMismatch { .. }), "{err}");
    // Built-in topics have fixed types even with no subscriber.
    assert!(channels.publish(&Topic::<u32>::new("events"), 1).is_err());
    assert_eq!(channels.publish(&channels::events(), SystemEvent::new("x", "y")).unwrap(), 0);
    assert_eq!(
        channels
            .subscribe_with(&Topic::<u32>::new("z"), SubscribeOptions { capacity: 0, ..Default::default() })
            .unwrap_err(),
        ChannelError::ZeroCapacity
    );
}

#[tokio::test]
async fn membership_is_kept_in_process_groups() {
    let channels = Channels::start().await.unwrap();
    let topic: Topic<u8> = Topic::new("pg-visible");
    let group = pg_group("pg-visible");
    let members = || ractor::pg::get_scoped_members(&PG_SCOPE.to_string(), &group).len();
    assert_eq!(members(), 0);
    let a = channels.subscribe(&topic).unwrap();
    let b = channels.subscribe(&topic).unwrap();
    assert_eq!(members(), 1, "one member per node, not per subscriber");
    drop(a);
    assert_eq!(members(), 1);
    drop(b);
    assert_eq!(members(), 0);
}

#[tokio::test]
async fn publish_stays_on_the_node_broadcast_reaches_every_node() {
    let (a, b) = (Channels::start().await.unwrap(), Channels::start().await.unwrap());
    let topic: Topic<String> = Topic::new("news");
    let mut on_a = a.subscribe(&topic).unwrap();
    let mut on_b1 = b.subscribe(&topic).unwrap();
    let mut on_b2 = b.subscribe(&topic).unwrap();

    assert_eq!(a.publish(&topic, "local".into()).unwrap(), 1);
    assert_eq!(a.broadcast(&topic, "everywhere".into()).unwrap(), 1);
    assert_eq!(on_a.recv().await.unwrap(), "local");
    assert_eq!(on_a.recv().await.unwrap(), "everywhere");
    for sub in [&mut on_b1, &mut on_b2] {
        let m = tokio::time::timeout(Duration::from_secs(20), sub.recv()).await.unwrap().unwrap();
        assert_eq!(m, "everywhere", "b's subscribers get the broadcast, never the local publish");
        assert!(sub.try_recv().is_none());
    }

    b.shutdown().await;
    assert_eq!(on_b1.recv().await, Err(ChannelError::Closed));
    // A node that left is skipped.
    assert_eq!(a.broadcast(&topic, "after".into()).unwrap(), 1);
}

#[test]
fn system_events_cross_the_wire_with_their_details() {
    // bincode cannot decode a self-describing JSON value: the details travel as JSON text.
    let event = event("progress", 7).with_data(serde_json::json!({"done": 7, "of": [1, 2.5, null]}));
    let bytes = foundation_actors::wire::encode(&event, 1 << 20).unwrap();
    assert_eq!(foundation_actors::wire::decode::<SystemEvent>(&bytes).unwrap(), event);
    // ...and as themselves in JSON.
    let json = serde_json::to_value(&event).unwrap();
    assert_eq!(json["data"]["done"], 7);
    assert!(channels::control().is_cluster_wide() && !Topic::<u8>::new("local").is_cluster_wide());
}

#[tokio::test]
async fn queue_depths_are_told_per_topic() {
    let channels = Channels::start().await.unwrap();
    let (orders, audit): (Topic<u32>, Topic<u32>) = (Topic::new("depth-orders"), Topic::new("depth-audit"));
    let mut slow = channels.subscribe(&orders).unwrap();
    let _fast = channels.subscribe(&orders).unwrap();
    let mut auditor = channels.subscribe(&audit).unwrap();
    for n in 0..5 {
        channels.publish(&orders, n).unwrap();
    }
    channels.publish(&audit, 1).unwrap();
    let depths = channels.queued_by_topic();
    assert_eq!((depths["depth-orders"].total, depths["depth-orders"].deepest), (10, 5));
    assert_eq!(depths["depth-audit"].total, 1);
    // Drained topics are left out.
    auditor.recv().await.unwrap();
    slow.recv().await.unwrap();
    let depths = channels.queued_by_topic();
    assert!(!depths.contains_key("depth-audit"), "{depths:?}");
    assert_eq!(depths["depth-orders"].total, 9);
}

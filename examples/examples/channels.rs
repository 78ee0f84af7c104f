//! Channels: a subscriber that cannot keep up loses the oldest telemetry (counted), while a
//! control message still comes first; broadcast reaches another node's subscribers, publish
//! does not.
//!
//! Run: `cargo run -p foundation-examples --example channels`

use foundation_actors::channels::{self, Channels, SubscribeOptions, SystemEvent, Topic};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let node = Channels::start().await?;
    let mut dashboard =
        node.subscribe_with(&channels::telemetry(), SubscribeOptions { capacity: 5, ..Default::default() })?;
    dashboard.also(&channels::control())?;

    for step in 0..1000 {
        node.publish(
            &channels::telemetry(),
            SystemEvent::new("progress", "optimizer").with_data(step.into()),
        )?;
    }
    node.publish(&channels::control(), SystemEvent::new("stop", "operator"))?;

    let first = dashboard.recv().await?;
    println!("first message received: {} (from {})", first.kind, first.source);
    let next = dashboard.recv().await?;
    println!("then telemetry resumes at step {}", next.data);
    println!("telemetry dropped for this slow subscriber: {}", dashboard.dropped());

    // Two channel instances in one process stand for two nodes (they share ractor's pg).
    let other_node = Channels::start().await?;
    let news: Topic<String> = Topic::new("news");
    let mut remote = other_node.subscribe(&news)?;
    node.publish(&news, "local only".into())?;
    node.broadcast(&news, "for every node".into())?;
    println!("the other node received: {:?}", remote.recv().await?);
    println!("and nothing else: {}", remote.try_recv().is_none());
    Ok(())
}

//! Event sourcing on a SQLite file: orders as aggregates, a revenue projection that resumes
//! where it stopped, a refused command, a lost race, and the causal chain behind an event.
//!
//! Run: `cargo run -p foundation-examples --example event_sourcing`

use std::time::Duration;

use foundation_actors::aggregates::{
    Aggregate, AggregateConfig, AggregateError, Aggregates, Projection, ProjectionConfig, ProjectionHandle,
};
use foundation_core::events::{Event, EventQuery, EventStore, NewEvent, SqliteOptions};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Default, Serialize, Deserialize)]
struct Order {
    lines: u32,
    total: u64,
    paid: bool,
}

enum Command {
    AddLine { price: u64 },
    Pay,
}

#[derive(Clone, Serialize, Deserialize)]
enum OrderEvent {
    LineAdded { price: u64 },
    Paid { total: u64 },
}

impl Aggregate for Order {
    const KIND: &'static str = "order";
    type Command = Command;
    type Event = OrderEvent;
    type Error = String;

    fn handle(&self, command: &Command) -> Result<Vec<OrderEvent>, String> {
        match command {
            _ if self.paid => Err("the order is already paid".into()),
            Command::AddLine { price } => Ok(vec![OrderEvent::LineAdded { price: *price }]),
            Command::Pay if self.lines == 0 => Err("an empty order cannot be paid".into()),
            Command::Pay => Ok(vec![OrderEvent::Paid { total: self.total }]),
        }
    }

    fn apply(&mut self, event: &OrderEvent) {
        match event {
            OrderEvent::LineAdded { price } => {
                self.lines += 1;
                self.total += price;
            }
            OrderEvent::Paid { .. } => self.paid = true,
        }
    }
}

/// Revenue from paid orders: the read model.
#[derive(Default)]
struct Revenue {
    paid_orders: u64,
    total: u64,
}

impl Projection for Revenue {
    async fn apply(&mut self, event: &Event) -> Result<(), foundation_core::BoxError> {
        let total = event.payload["Paid"]["total"].as_u64().ok_or("a Paid event without a total")?;
        self.paid_orders += 1;
        self.total += total;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("orders.db");
    let store = EventStore::open_sqlite(SqliteOptions::new(&path)).await?;
    let orders =
        Aggregates::<Order>::new(store.clone(), AggregateConfig { snapshot_every: 2, ..Default::default() });

    for (id, prices) in [("o-1", vec![1200, 800]), ("o-2", vec![4500]), ("o-3", vec![])] {
        for price in prices {
            orders.execute_correlated(id, &format!("checkout-{id}"), Command::AddLine { price }).await?;
        }
    }
    orders.execute("o-1", Command::Pay).await?;
    match orders.execute("o-3", Command::Pay).await {
        Err(AggregateError::Rejected(why)) => println!("o-3 pay refused: {why}"),
        other => anyhow::bail!("expected a refusal, got {:?}", other.map(|e| e.version)),
    }
    // A caller that read o-2 at version 0 lost the race to the line added since.
    match orders.execute_at("o-2", 0, Command::Pay).await {
        Err(AggregateError::Conflict { expected, actual }) => {
            println!("o-2 pay at version {expected} refused: it is at version {actual}")
        }
        other => anyhow::bail!("expected a conflict, got {:?}", other.map(|e| e.version)),
    }

    let config = ProjectionConfig::new("revenue").filter(EventQuery::new().event_type("order.Paid"));
    let revenue = ProjectionHandle::start(store.clone(), config.clone(), Revenue::default()).await?;
    revenue
        .wait_for(store.stats().await?.last_id, Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;
    let before = revenue.stop().await;
    println!("revenue: {} paid orders, {} total", before.paid_orders, before.total);

    // While the projection is stopped, o-2 is paid; restarted, it reads only what it missed.
    orders.execute("o-2", Command::Pay).await?;
    let resumed = ProjectionHandle::start(store.clone(), config, Revenue::default()).await?;
    resumed
        .wait_for(store.stats().await?.last_id, Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;
    let missed = resumed.stop().await;
    println!(
        "after restart the projection read {} more paid order ({} total)",
        missed.paid_orders, missed.total
    );

    // Reopen the file, as after a restart: the aggregates rebuild from snapshots and journal.
    drop(orders);
    let store = EventStore::open_sqlite(SqliteOptions::new(&path)).await?;
    let orders = Aggregates::<Order>::new(store.clone(), AggregateConfig::default());
    let (total, version) = orders.read("o-1", |o, v| (o.total, v)).await?;
    println!("o-1 after reopening: total {total} at version {version}");

    // An audit trail: a refund caused by the payment, found again by its causal chain.
    let paid = store.query(EventQuery::new().stream("order-o-1").event_type("order.Paid")).await?;
    let refund = store
        .append(NewEvent::new("refund.requested", json!({"reason": "damaged"})).caused_by(&paid[0]))
        .await?;
    let chain = store.causes(refund.id).await?;
    let names: Vec<_> = chain.iter().map(|e| e.event_type.as_str()).collect();
    println!("causal chain of the refund: {}", names.join(" -> "));
    Ok(())
}

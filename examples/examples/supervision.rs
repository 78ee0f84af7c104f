//! Supervision: a worker that crashes is restarted by its supervisor, the crash report carries
//! the step history of the failed operation, and too many crashes escalate.
//!
//! Run: `cargo run -p foundation-examples --example supervision`

use std::time::Duration;

use foundation_actors::supervision::{ChildSpec, Strategy, Supervisor, SupervisorExit, SupervisorSpec};
use foundation_core::ErrorContext;
use ractor::{Actor, ActorProcessingErr, ActorRef};

/// Handles orders; an order for a negative amount makes it fail.
struct OrderWorker;

impl Actor for OrderWorker {
    type Msg = i64;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<i64>, _: ()) -> Result<(), ActorProcessingErr> {
        println!("  order worker started");
        Ok(())
    }

    async fn handle(&self, _: ActorRef<i64>, amount: i64, _: &mut ()) -> Result<(), ActorProcessingErr> {
        ErrorContext::new("handle_order")
            .run(|ctx| async move {
                ctx.step("validate", |ctx| async move {
                    ctx.record("amount", &amount);
                    if amount < 0 { Err(format!("amount {amount} is negative")) } else { Ok(()) }
                })
                .await?;
                ctx.step("charge", |_| async { Ok::<_, String>(()) }).await
            })
            .await
            .map_err(|e| e.boxed())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(2, Duration::from_secs(10))
        .child(ChildSpec::new("orders", || (OrderWorker, ())));
    println!("starting supervisor `shop` (one-for-one, at most 2 restarts in 10 s)");
    let shop = Supervisor::start("shop", spec).await?;

    for amount in [-5i64, -7] {
        let worker = wait_for_child(&shop).await;
        println!("sending order for {amount}");
        worker.send_message(amount)?;
        // Wait for the restart before the next order.
        while shop.child("orders").await.is_some_and(|c| c.get_id() == worker.get_id()) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let crashes = shop.crashes().await?;
    println!("\nfirst crash report, as the supervisor logged it:\n{}", crashes[0].error);

    println!("sending order for -9");
    wait_for_child(&shop).await.send_message(-9i64)?;
    match tokio::time::timeout(Duration::from_secs(10), shop.wait()).await? {
        SupervisorExit::Meltdown(reason) => println!("third crash within 10 s: {reason}"),
        SupervisorExit::Stopped => println!("supervisor stopped"),
    }
    Ok(())
}

async fn wait_for_child(shop: &foundation_actors::supervision::SupervisorHandle) -> ractor::ActorCell {
    loop {
        if let Some(cell) = shop.child("orders").await {
            return cell;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

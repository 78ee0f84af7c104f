//! Service registry: model servers register with capabilities and metadata, callers discover
//! them by capability and select by load; an instance whose actor stops is never selected.
//!
//! Run: `cargo run -p foundation-examples --example registry`

use foundation_actors::registry::{Query, ServiceRegistry, Strategy};
use ractor::{Actor, ActorProcessingErr, ActorRef};

struct ModelServer;

impl Actor for ModelServer {
    type Msg = ();
    type State = ();
    type Arguments = ();
    async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let registry = ServiceRegistry::start().await?;
    let mut servers = Vec::new();
    for (region, caps, load) in
        [("eu", vec!["chat", "json"], 0.7), ("eu", vec!["chat"], 0.2), ("us", vec!["chat", "json"], 0.1)]
    {
        let (actor, _) = Actor::spawn(None, ModelServer, ()).await?;
        let id = registry.register_service("llm", actor.get_cell(), caps, [("region", region)])?;
        registry.report_health(id, true, load)?;
        println!("registered llm {id} in {region} with load {load}");
        servers.push((id, actor));
    }

    let json_eu = registry.discover(&Query::new().capability("json").metadata("region", "eu"));
    println!("discover(json, region=eu): {:?}", json_eu.iter().map(|i| i.id).collect::<Vec<_>>());

    let chosen = registry.select("llm", Strategy::LeastLoaded)?;
    println!("least loaded: {}", chosen.id);

    let (busy_id, victim) = &servers[2];
    victim.stop(None);
    while victim.get_status() != ractor::ActorStatus::Stopped {
        tokio::task::yield_now().await;
    }
    let chosen = registry.select("llm", Strategy::LeastLoaded)?;
    println!("after {busy_id} stopped, least loaded: {}", chosen.id);
    Ok(())
}

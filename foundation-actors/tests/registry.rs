//! Service registry: discovery, health-aware selection, death and health leaving at once.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::time::{Duration, Instant};

use foundation_actors::registry::{PG_SCOPE, Query, RegistryError, ServiceRegistry, Strategy, pg_group};
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef};

struct Svc;
impl Actor for Svc {
    type Msg = ();
    type State = ();
    type Arguments = ();
    async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

async fn actor() -> ActorCell {
    Actor::spawn(None, Svc, ()).await.unwrap().0.get_cell()
}

const NONE: [(&str, &str); 0] = [];
const NO_CAPS: [&str; 0] = [];

#[tokio::test]
async fn discover_by_name_capabilities_and_metadata() {
    let registry = ServiceRegistry::start().await.unwrap();
    let eu = registry.register_service("llm", actor().await, ["chat", "json"], [("region", "eu")]).unwrap();
    let us = registry.register_service("llm", actor().await, ["chat"], [("region", "us")]).unwrap();
    let emb = registry.register_service("embedder", actor().await, ["embed"], NONE).unwrap();

    let ids = |q: Query| registry.discover(&q).into_iter().map(|i| i.id).collect::<Vec<_>>();
    assert_eq!(ids(Query::new().name("llm")), [eu, us]);
    assert_eq!(ids(Query::new().capability("chat")), [eu, us]);
    assert_eq!(ids(Query::new().capability("chat").capability("json")), [eu]);
    assert_eq!(ids(Query::new().metadata("region", "us")), [us]);
    assert_eq!(ids(Query::new().capability("embed")), [emb]);
    assert!(ids(Query::new().capability("vision")).is_empty());
    let found = &registry.discover(&Query::new().name("llm").metadata("region", "eu"))[0];
    assert!(found.capabilities.contains("json") && found.healthy && found.load == 0.0);

    registry.deregister(us).unwrap();
    assert_eq!(ids(Query::new().name("llm")), [eu]);
    assert_eq!(registry.deregister(us), Err(RegistryError::UnknownInstance(us)));
}

#[tokio::test]
async fn selection_strategies_use_health_load_and_latency() {
    let registry = ServiceRegistry::start().await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(registry.register_service("worker", actor().await, ["work"], NONE).unwrap());
    }
    let pick = |s| registry.select("worker", s).unwrap().id;

    let turns: Vec<_> = (0..6).map(|_| pick(Strategy::RoundRobin)).collect();
    for id in &ids {
        assert_eq!(turns.iter().filter(|t| *t == id).count(), 2, "round robin visits each twice: {turns:?}");
    }

    registry.report_health(ids[0], true, 0.9).unwrap();
    registry.report_health(ids[1], true, 0.1).unwrap();
    registry.report_health(ids[2], true, 0.5).unwrap();
    assert_eq!(pick(Strategy::LeastLoaded), ids[1]);
    for _ in 0..200 {
        assert_ne!(pick(Strategy::PowerOfTwoChoices), ids[0], "p2c never picks the most loaded of three");
    }

    for (id, ms) in [(ids[0], 30), (ids[1], 20), (ids[2], 5)] {
        registry.record_latency(id, Duration::from_millis(ms)).unwrap();
    }
    assert_eq!(pick(Strategy::LowestLatency), ids[2]);
    // ids[2] slows down: its EWMA climbs past ids[1]'s after a few slow calls.
    for _ in 0..10 {
        registry.record_latency(ids[2], Duration::from_millis(100)).unwrap();
    }
    assert_eq!(pick(Strategy::LowestLatency), ids[1]);
}

#[tokio::test]
async fn unhealthy_and_dead_instances_leave_the_candidate_set_at_once() {
    let registry = ServiceRegistry::start().await.unwrap();
    let a_cell = actor().await;
    let a = registry.register_service("db", a_cell.clone(), NO_CAPS, NONE).unwrap();
    let b = registry.register_service("db", actor().await, NO_CAPS, NONE).unwrap();

    registry.report_health(b, false, 0.0).unwrap();
    for _ in 0..20 {
        assert_eq!(registry.select("db", Strategy::RoundRobin).unwrap().id, a);
    }

    // a's actor stops: from that moment it is never selected.
    a_cell.stop_and_wait(None, None).await.unwrap();
    let err = registry.select("db", Strategy::RoundRobin).unwrap_err();
    // Depending on whether pg already reported a's death, a counts as stopped or is gone.
    let RegistryError::NoHealthyInstance { registered, unhealthy: 1, stopped, .. } = err.clone() else {
        panic!("{err:?}")
    };
    assert_eq!(registered - stopped, 1, "{err:?}");
    assert!(err.to_string().contains("service `db` has no healthy instance"), "{err}");
    // And its entry goes once pg reports the actor gone.
    let deadline = Instant::now() + Duration::from_secs(20);
    while registry.len() != 1 {
        assert!(Instant::now() < deadline, "dead instance was not removed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(registry.report_health(a, true, 0.0), Err(RegistryError::UnknownInstance(a)));

    registry.report_health(b, true, 0.0).unwrap();
    assert_eq!(registry.select("db", Strategy::LeastLoaded).unwrap().id, b);
}

#[tokio::test]
async fn wait_for_service_and_clear_errors() {
    let registry = ServiceRegistry::start().await.unwrap();
    let later = registry.clone();
    let cell = actor().await;
    let register = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        later.register_service("search", cell, ["web"], NONE).unwrap()
    });
    let found = registry.wait_for_service("search", Duration::from_secs(20)).await.unwrap();
    assert_eq!(found.id, register.await.unwrap());

    let err = registry.wait_for_service("missing", Duration::from_millis(30)).await.unwrap_err();
    assert!(matches!(err, RegistryError::Timeout { .. }) && err.to_string().contains("`missing`"), "{err}");
    assert_eq!(
        registry.select("nope", Strategy::RoundRobin).unwrap_err(),
        RegistryError::UnknownService("nope".into())
    );

    let cell = actor().await;
    registry.register_service("dup", cell.clone(), NO_CAPS, NONE).unwrap();
    let err = registry.register_service("dup", cell.clone(), NO_CAPS, NONE).unwrap_err();
    assert!(err.to_string().contains("already registered"), "{err}");
    cell.stop_and_wait(None, None).await.unwrap();
    let err = registry.register_service("late", cell, NO_CAPS, NONE).unwrap_err();
    assert!(err.to_string().contains("not running"), "{err}");
}

#[tokio::test]
async fn instances_are_members_of_the_service_process_group() {
    let registry = ServiceRegistry::start().await.unwrap();
    let cell = actor().await;
    let id = registry.register_service("pg-visible-service", cell.clone(), NO_CAPS, NONE).unwrap();
    let members = || ractor::pg::get_scoped_members(&PG_SCOPE.to_string(), &pg_group("pg-visible-service"));
    assert_eq!(members().iter().map(|c| c.get_id()).collect::<Vec<_>>(), [cell.get_id()]);
    registry.deregister(id).unwrap();
    assert!(members().is_empty());
}

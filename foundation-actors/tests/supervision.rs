//! Supervision: strategies, restart policies, intensity and escalation, crash reports.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use foundation_actors::supervision::{
    ChildSpec, Restart, Strategy, SupervisionError, Supervisor, SupervisorExit, SupervisorHandle,
    SupervisorSpec,
};
use foundation_core::ErrorContext;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef};

type Log = Arc<Mutex<Vec<String>>>;

/// A child that logs its starts and stops and crashes on request.
struct Probe {
    id: &'static str,
    log: Log,
    fail_start: bool,
}

enum ProbeMsg {
    Fail,
    Panic,
    FailWithContext,
    StopNormally,
}
impl ractor::Message for ProbeMsg {}

impl Actor for Probe {
    type Msg = ProbeMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<ProbeMsg>, _: ()) -> Result<(), ActorProcessingErr> {
        if self.fail_start {
            return Err(format!("{} cannot open its database", self.id).into());
        }
        self.log.lock().unwrap().push(format!("start:{}", self.id));
        Ok(())
    }

    async fn post_stop(&self, _: ActorRef<ProbeMsg>, _: &mut ()) -> Result<(), ActorProcessingErr> {
        self.log.lock().unwrap().push(format!("stop:{}", self.id));
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<ProbeMsg>,
        msg: ProbeMsg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ProbeMsg::Fail => Err(format!("{} failed", self.id).into()),
            ProbeMsg::Panic => panic!("{} panicked", self.id),
            ProbeMsg::FailWithContext => {
                let err = ErrorContext::new("handle_order")
                    .run(|ctx| async move {
                        ctx.step("validate", |_| async { Ok::<_, String>(()) }).await?;
                        ctx.step("charge_card", |_| async { Err::<(), _>("card declined".to_string()) }).await
                    })
                    .await
                    .unwrap_err();
                Err(err.boxed())
            }
            ProbeMsg::StopNormally => {
                myself.stop(None);
                Ok(())
            }
        }
    }
}

fn probe(id: &'static str, log: &Log) -> ChildSpec {
    let log = log.clone();
    ChildSpec::new(id, move || (Probe { id, log: log.clone(), fail_start: false }, ()))
}

fn starts(log: &Log) -> Vec<String> {
    log.lock().unwrap().iter().filter(|e| e.starts_with("start:")).map(|e| e[6..].to_string()).collect()
}

/// Polls until `done` holds; panics with `what` after a generous deadline (loaded CI machines).
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn child(sup: &SupervisorHandle, id: &str) -> ActorCell {
    sup.child(id).await.unwrap_or_else(|| panic!("child {id} is not running"))
}

async fn restarted(sup: &SupervisorHandle, id: &str, before: &ActorCell) -> ActorCell {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(cell) = sup.child(id).await
            && cell.get_id() != before.get_id()
        {
            return cell;
        }
        assert!(Instant::now() < deadline, "{id} was not restarted");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn three_children(strategy: Strategy) -> (SupervisorHandle, Log) {
    let log = Log::default();
    let spec = SupervisorSpec::new(strategy)
        .intensity(10, Duration::from_secs(60))
        .child(probe("a", &log))
        .child(probe("b", &log))
        .child(probe("c", &log));
    let sup = Supervisor::start(format!("{strategy:?}"), spec).await.unwrap();
    assert_eq!(starts(&log), ["a", "b", "c"]);
    (sup, log)
}

#[tokio::test]
async fn one_for_one_restarts_only_the_failed_child() {
    let (sup, log) = three_children(Strategy::OneForOne).await;
    let (a, b, c) = (child(&sup, "a").await, child(&sup, "b").await, child(&sup, "c").await);
    b.send_message(ProbeMsg::Fail).unwrap();
    restarted(&sup, "b", &b).await;
    assert_eq!(starts(&log), ["a", "b", "c", "b"]);
    assert_eq!(child(&sup, "a").await.get_id(), a.get_id());
    assert_eq!(child(&sup, "c").await.get_id(), c.get_id());
    let children = sup.children().await.unwrap();
    assert_eq!(children.iter().map(|c| c.restarts).collect::<Vec<_>>(), [0, 1, 0]);
    sup.stop().await;
    // Stopping the supervisor stops the children in reverse start order.
    let stops: Vec<String> = log.lock().unwrap().iter().filter(|e| e.starts_with("stop:")).cloned().collect();
    assert_eq!(stops[stops.len() - 3..], ["stop:c", "stop:b", "stop:a"]);
}

#[tokio::test]
async fn one_for_all_restarts_every_child_in_order() {
    let (sup, log) = three_children(Strategy::OneForAll).await;
    let (a, b) = (child(&sup, "a").await, child(&sup, "b").await);
    b.send_message(ProbeMsg::Fail).unwrap();
    restarted(&sup, "b", &b).await;
    eventually("all three restarted", || starts(&log).len() == 6).await;
    assert_eq!(starts(&log), ["a", "b", "c", "a", "b", "c"]);
    // The siblings were stopped in reverse order before the restart.
    let entries = log.lock().unwrap().clone();
    let stop_c = entries.iter().position(|e| e == "stop:c").unwrap();
    let stop_a = entries.iter().position(|e| e == "stop:a").unwrap();
    assert!(stop_c < stop_a, "{entries:?}");
    assert_ne!(child(&sup, "a").await.get_id(), a.get_id());
    sup.stop().await;
}

#[tokio::test]
async fn rest_for_one_restarts_the_failed_child_and_later_ones() {
    let (sup, log) = three_children(Strategy::RestForOne).await;
    let (a, b) = (child(&sup, "a").await, child(&sup, "b").await);
    b.send_message(ProbeMsg::Panic).unwrap(); // a panic is a failure like any other
    restarted(&sup, "b", &b).await;
    eventually("b and c restarted", || starts(&log).len() == 5).await;
    assert_eq!(starts(&log), ["a", "b", "c", "b", "c"]);
    assert_eq!(child(&sup, "a").await.get_id(), a.get_id());
    sup.stop().await;
}

#[tokio::test]
async fn exceeding_intensity_escalates_to_the_parent() {
    let log = Log::default();
    let inner = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(1, Duration::from_secs(60))
        .child(probe("w", &log));
    let top = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(5, Duration::from_secs(60))
        .child(ChildSpec::supervisor("inner", inner));
    let top = Supervisor::start("top", top).await.unwrap();
    let inner_cell = child(&top, "inner").await;

    // First failure: within the inner supervisor's intensity, it restarts w itself.
    let w = inner_cell.get_children().into_iter().next().unwrap();
    w.send_message(ProbeMsg::Fail).unwrap();
    eventually("w restarted by inner", || starts(&log).len() == 2).await;
    assert_eq!(child(&top, "inner").await.get_id(), inner_cell.get_id());

    // Second failure within the period: inner exceeds its intensity, stops w and fails; top
    // restarts inner, which starts a fresh w.
    let w = inner_cell.get_children().into_iter().next().unwrap();
    w.send_message(ProbeMsg::Fail).unwrap();
    let new_inner = restarted(&top, "inner", &inner_cell).await;
    eventually("fresh w under the new inner", || starts(&log).len() == 3).await;
    assert_eq!(new_inner.get_children().len(), 1);
    let report = top.crashes().await.unwrap();
    assert_eq!(report.len(), 1);
    assert_eq!(report[0].child, "inner");
    assert!(report[0].error.contains("exceeded its restart intensity"), "{}", report[0].error);
    assert!(report[0].error.contains("child `w`: w failed"), "{}", report[0].error);
    assert_eq!(top.children().await.unwrap()[0].restarts, 1);
    top.stop().await;
}

#[tokio::test]
async fn a_top_level_meltdown_stops_everything_and_says_why() {
    let log = Log::default();
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(0, Duration::from_secs(60))
        .child(probe("x", &log))
        .child(probe("y", &log));
    let sup = Supervisor::start("fragile", spec).await.unwrap();
    child(&sup, "x").await.send_message(ProbeMsg::Fail).unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(20), sup.wait()).await.unwrap();
    let SupervisorExit::Meltdown(reason) = exit else { panic!("expected a meltdown, got {exit:?}") };
    assert!(reason.contains("supervisor `fragile`") && reason.contains("child `x`: x failed"), "{reason}");
    assert!(log.lock().unwrap().contains(&"stop:y".to_string()), "y is stopped with its supervisor");
}

#[tokio::test]
async fn restart_policies_transient_and_temporary() {
    let log = Log::default();
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .child(probe("transient-ok", &log).restart(Restart::Transient))
        .child(probe("transient-crash", &log).restart(Restart::Transient))
        .child(probe("temporary", &log).restart(Restart::Temporary));
    let sup = Supervisor::start("policies", spec).await.unwrap();

    child(&sup, "transient-ok").await.send_message(ProbeMsg::StopNormally).unwrap();
    let crash = child(&sup, "transient-crash").await;
    crash.send_message(ProbeMsg::Fail).unwrap();
    child(&sup, "temporary").await.send_message(ProbeMsg::Fail).unwrap();

    restarted(&sup, "transient-crash", &crash).await;
    let ids =
        |c: &[foundation_actors::supervision::ChildInfo]| c.iter().map(|c| c.id.clone()).collect::<Vec<_>>();
    let mut children = sup.children().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while children.len() != 2 || children[0].cell.is_some() {
        assert!(Instant::now() < deadline, "{children:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
        children = sup.children().await.unwrap();
    }
    // The normally stopped transient child stays down; the temporary one is gone.
    assert_eq!(ids(&children), ["transient-ok", "transient-crash"]);
    assert!(children[0].cell.is_none() && children[0].restarts == 0);
    assert_eq!(children[1].restarts, 1);
    assert_eq!(starts(&log).iter().filter(|s| *s == "temporary").count(), 1);
    sup.stop().await;
}

fn telemetry() -> &'static foundation_core::Telemetry {
    static TELEMETRY: OnceLock<foundation_core::Telemetry> = OnceLock::new();
    TELEMETRY.get_or_init(|| {
        let t = foundation_core::Telemetry::new(&Default::default()).unwrap();
        t.install_global().unwrap();
        t
    })
}

#[tokio::test]
async fn crashes_are_reported_with_their_error_context_and_counted() {
    let telemetry = telemetry();
    let log = Log::default();
    let spec = SupervisorSpec::new(Strategy::OneForOne).child(probe("orders", &log));
    let sup = Supervisor::start("shop", spec).await.unwrap();
    let orders = child(&sup, "orders").await;
    orders.send_message(ProbeMsg::FailWithContext).unwrap();
    restarted(&sup, "orders", &orders).await;

    let crashes = sup.crashes().await.unwrap();
    assert_eq!(crashes.len(), 1);
    let error = &crashes[0].error;
    assert!(error.starts_with("card declined\noperation `handle_order` failed"), "{error}");
    assert!(
        error.contains("validate") && error.contains("FAILED") && error.contains("charge_card"),
        "{error}"
    );

    let text = telemetry.render();
    assert!(
        text.contains("foundation_actor_crashes_total{supervisor=\"shop\",child=\"orders\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("foundation_actor_restarts_total{supervisor=\"shop\",child=\"orders\"} 1"),
        "{text}"
    );
    sup.stop().await;
}

#[tokio::test]
async fn a_child_that_cannot_start_fails_the_supervisor_start_cleanly() {
    let log = Log::default();
    let broken_log = log.clone();
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .child(probe("first", &log))
        .child(ChildSpec::new("db", move || {
            (Probe { id: "db", log: broken_log.clone(), fail_start: true }, ())
        }));
    let err = Supervisor::start("app", spec).await.unwrap_err();
    let SupervisionError::StartFailed { name, source } = &err else { panic!("{err}") };
    assert_eq!(name, "app");
    let reason = source.to_string();
    assert!(
        reason.contains("child `db` failed to start") && reason.contains("cannot open its database"),
        "{err}"
    );
    // The child started before it was stopped again, not leaked.
    assert_eq!(*log.lock().unwrap(), ["start:first", "stop:first"]);

    let dup = SupervisorSpec::new(Strategy::OneForOne).child(probe("same", &log)).child(probe("same", &log));
    let err = Supervisor::start("dup", dup).await.unwrap_err();
    assert!(err.to_string().contains("child id `same` is used twice"), "{err}");
}

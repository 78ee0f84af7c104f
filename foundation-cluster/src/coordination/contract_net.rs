//! Contract-net task allocation: a manager announces a task to the bidders of a capability,
//! takes the bids that arrive within a window, awards the task to the cheapest bidder and waits
//! for its result; if the winner is lost (its node goes, or it does not finish in time), the
//! task is announced again.
//!
//! Bidders are remotable actors in the pg group `bidders:CAPABILITY` (scope
//! [`SCOPE`](super::SCOPE)), so a manager on any node reaches the bidders on every node.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use foundation_actors::wire::Wire;
use foundation_core::Cause;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};

use super::coordinator::SCOPE;
use super::{Coordination, CoordinationError};

/// How often a manager checks that the winner of a task it waits for is still alive.
const WATCH_WINNER: Duration = Duration::from_millis(100);

static NEXT_TASK: AtomicU64 = AtomicU64::new(1);

/// A task announced to bidders.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// Unique per announcement series (kept across re-announcements, so a bidder can tell that a
    /// task it may already have run comes back).
    pub id: String,
    /// The capability it needs.
    pub capability: String,
    /// What to do.
    pub payload: serde_json::Value,
}

/// A [`Task`] on the wire: bincode cannot carry a `serde_json::Value` itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireTask {
    id: String,
    capability: String,
    payload: String,
}

/// What a node that can do some kind of task does: bid, and run the task if awarded.
pub trait Bidder: Send + Sync + 'static {
    /// The cost of doing `task` (the cheapest bid wins), or `None` to decline. A cost is a
    /// finite number of at least 0: anything else (NaN, an infinity, a negative number, which
    /// would win or lose every round whatever the other bids) is refused as a decline, logged and
    /// counted in `foundation_contract_net_bids_refused_total`, here and by a manager receiving
    /// it from another node.
    fn bid(&self, task: &Task) -> Option<f64>;

    /// Runs an awarded task: its result, or why it failed (the manager reports the failure and
    /// does not retry it elsewhere).
    fn perform(
        &self,
        task: Task,
    ) -> impl Future<Output = Result<serde_json::Value, foundation_core::BoxError>> + Send;
}

/// How [`Coordination::allocate`] runs.
#[derive(Debug, Clone, PartialEq)]
pub struct AllocateOptions {
    /// How long bids are collected in each round. Default 300 ms.
    pub bid_window: Duration,
    /// How long the winner may take to run the task before it counts as lost. Default 60 s.
    pub work_timeout: Duration,
    /// Most announcements (a round without bids or with a lost winner starts another). Default 5.
    pub max_rounds: u32,
}

impl Default for AllocateOptions {
    fn default() -> Self {
        AllocateOptions {
            bid_window: Duration::from_millis(300),
            work_timeout: Duration::from_secs(60),
            max_rounds: 5,
        }
    }
}

/// A task's result, and who ran it.
#[derive(Debug, Clone, PartialEq)]
pub struct Awarded {
    /// The task's id.
    pub task: String,
    /// The node of the bidder that ran it.
    pub node: String,
    /// Its cost bid.
    pub cost: f64,
    /// What it returned.
    pub result: serde_json::Value,
    /// Announcements it took (1 unless bids were missing or winners lost).
    pub rounds: u32,
    /// The earlier winners that were lost, in order: `NODE: what happened`.
    pub lost: Vec<String>,
}

#[derive(RactorClusterMessage)]
pub(crate) enum BidderMsg {
    #[rpc]
    Announce(Wire<WireTask>, RpcReplyPort<Wire<Option<f64>>>),
    #[rpc]
    Award(Wire<WireTask>, RpcReplyPort<Wire<Result<String, String>>>),
}

struct BidderActor<B>(std::marker::PhantomData<B>);

impl<B: Bidder> Actor for BidderActor<B> {
    type Msg = BidderMsg;
    type State = (Arc<B>, String, usize);
    /// (bidder, pg group, frame limit).
    type Arguments = (Arc<B>, String, usize);

    async fn pre_start(
        &self,
        myself: ActorRef<BidderMsg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        ractor::pg::join_scoped(SCOPE.to_string(), args.1.clone(), vec![myself.get_cell()]);
        Ok(args)
    }

    async fn handle(
        &self,
        _: ActorRef<BidderMsg>,
        msg: BidderMsg,
        (bidder, _, max_bytes): &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            BidderMsg::Announce(task, reply) => {
                if let Some(task) = decode(task) {
                    let bid =
                        bidder.bid(&task).and_then(|cost| checked_cost(cost, "this node's bidder", &task.id));
                    if let Ok(answer) = Wire::encode(&bid, *max_bytes) {
                        let _ = reply.send(answer);
                    }
                }
            }
            BidderMsg::Award(task, reply) => {
                let Some(task) = decode(task) else { return Ok(()) };
                // Run apart from the actor, so that it keeps bidding while it works.
                let (bidder, max_bytes) = (bidder.clone(), *max_bytes);
                tokio::spawn(async move {
                    let id = task.id.clone();
                    // The error crosses to the allocating node as its message.
                    let result = bidder.perform(task).await.map(|v| v.to_string()).map_err(|e| e.to_string());
                    let answer = Wire::encode_or(&result, max_bytes, |e| {
                        tracing::warn!(task = %id, error = %e, "task result too large to send");
                        Err(format!("its result does not fit a message: {e}"))
                    });
                    let _ = reply.send(answer);
                });
            }
        }
        Ok(())
    }
}

/// `cost` if a bid may carry it: finite and not below zero (`-0.0` taken as `0.0`, so that ties
/// go by node name). NaN, infinities and negative costs are not: compared by `total_cmp`, they
/// would win (or lose) every round whatever the other bids.
fn admissible(cost: f64) -> Option<f64> {
    (cost.is_finite() && cost >= 0.0).then_some(cost.abs())
}

/// [`admissible`], logging and counting (`foundation_contract_net_bids_refused_total`) a cost
/// that is not, from `bidder` (a node's name, or this node's own bidder) for task `task`.
fn checked_cost(cost: f64, bidder: &str, task: &str) -> Option<f64> {
    let accepted = admissible(cost);
    if accepted.is_none() {
        metrics::counter!("foundation_contract_net_bids_refused_total").increment(1);
        tracing::warn!(
            %bidder, %task, cost,
            "contract-net bid refused: a cost must be a finite number of at least 0"
        );
    }
    accepted
}

/// Bids in award order: the cheapest first, ties to the lower node name. Costs that are not
/// [`admissible`] (refused on receipt already) are left out whatever the caller.
fn rank<T>(mut bids: Vec<(f64, String, T)>) -> Vec<(f64, String, T)> {
    bids.retain(|(cost, _, _)| admissible(*cost).is_some());
    bids.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    bids
}

fn decode(task: Wire<WireTask>) -> Option<Task> {
    let task = task.into_inner().ok()?;
    let payload = serde_json::from_str(&task.payload).ok()?;
    Some(Task { id: task.id, capability: task.capability, payload })
}

/// A bidder served on this node. Dropping it (or [`stop`](Self::stop)) withdraws it.
#[derive(Debug)]
pub struct BidderHandle {
    actor: ActorRef<BidderMsg>,
}

impl BidderHandle {
    /// Withdraws the bidder.
    pub fn stop(self) {}
}

impl Drop for BidderHandle {
    fn drop(&mut self) {
        self.actor.stop(None);
    }
}

fn group(capability: &str) -> String {
    format!("bidders:{capability}")
}

impl Coordination {
    /// Serves `bidder` for tasks that need `capability`, from this node, to managers on every
    /// node.
    pub async fn serve_bids<B: Bidder>(
        &self,
        capability: &str,
        bidder: B,
    ) -> Result<BidderHandle, CoordinationError> {
        let args = (Arc::new(bidder), group(capability), self.shared.max_bytes());
        let (actor, _) = Actor::spawn(None, BidderActor::<B>(std::marker::PhantomData), args)
            .await
            .map_err(|e| CoordinationError::Stopped(format!("bidder for `{capability}`: {e}").into()))?;
        Ok(BidderHandle { actor })
    }

    /// Announces a task needing `capability` to its bidders on every node, awards it to the
    /// cheapest bid received within the window (ties go to the lower node name) and returns its
    /// result. A winner whose node is lost, or that does not finish within the work timeout, is
    /// given up and the task announced again (so a task may run more than once: make it
    /// idempotent, by its [`Task::id`]).
    pub async fn allocate(
        &self,
        capability: &str,
        payload: serde_json::Value,
        options: &AllocateOptions,
    ) -> Result<Awarded, CoordinationError> {
        let shared = &self.shared;
        let n = NEXT_TASK.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{:08x}-{n}", shared.node(), super::incarnation());
        let task =
            WireTask { id: id.clone(), capability: capability.to_string(), payload: payload.to_string() };
        let bytes = foundation_actors::wire::encode(&task, shared.max_bytes()).map_err(|e| {
            CoordinationError::Wire { what: format!("task {id} for `{capability}`"), source: Cause::new(e) }
        })?;
        let (mut awarded_rounds, mut lost) = (0, Vec::new());
        for round in 1..=options.max_rounds.max(1) {
            let bids = self.collect_bids(capability, &id, &bytes, options.bid_window).await;
            let Some((cost, node, winner)) = bids.into_iter().next() else {
                tracing::debug!(task = %id, %capability, round, "no bids");
                continue;
            };
            awarded_rounds += 1;
            tracing::debug!(task = %id, %capability, %node, cost, round, "task awarded");
            metrics::counter!("foundation_contract_net_awards_total").increment(1);
            match self.run_award(&winner, &node, &bytes, options.work_timeout).await {
                Ok(Ok(result)) => {
                    let result = serde_json::from_str(&result).unwrap_or(serde_json::Value::String(result));
                    return Ok(Awarded { task: id, node, cost, result, rounds: round, lost });
                }
                Ok(Err(e)) => return Err(CoordinationError::TaskFailed { task: id, node, source: e.into() }),
                Err(loss) => {
                    tracing::warn!(task = %id, %node, %loss, "task winner lost; announcing the task again");
                    metrics::counter!("foundation_contract_net_reannounced_total").increment(1);
                    lost.push(format!("{node}: {loss}"));
                }
            }
        }
        if awarded_rounds == 0 {
            return Err(CoordinationError::NoBids {
                task: id,
                capability: capability.to_string(),
                rounds: options.max_rounds.max(1),
                window: options.bid_window,
            });
        }
        Err(CoordinationError::WinnersLost {
            task: id,
            capability: capability.to_string(),
            rounds: awarded_rounds,
            last: lost.pop().unwrap_or_default(),
        })
    }

    /// The nodes with a bidder for `capability` visible from here (sorted; a node with several
    /// bidders appears once per bidder).
    pub async fn bidders(&self, capability: &str) -> Vec<String> {
        let bidders = ractor::pg::get_scoped_members(&SCOPE.to_string(), &group(capability));
        let mut nodes = self.shared.cluster.nodes_of(&bidders).await;
        nodes.sort();
        nodes
    }

    /// The bids received within `window` for the task `id` (encoded: `task`), cheapest first
    /// (ties: lower node name); bids whose cost is not a finite number of at least 0 are refused.
    async fn collect_bids(
        &self,
        capability: &str,
        id: &str,
        task: &[u8],
        window: Duration,
    ) -> Vec<(f64, String, ActorRef<BidderMsg>)> {
        let shared = &self.shared;
        let window_end = tokio::time::Instant::now() + window;
        let bidders = ractor::pg::get_scoped_members(&SCOPE.to_string(), &group(capability));
        let nodes = shared.cluster.nodes_of(&bidders).await;
        let mut calls = tokio::task::JoinSet::new();
        for (cell, node) in bidders.into_iter().zip(nodes) {
            if shared.cluster.is_blocked(&node) {
                continue;
            }
            let (actor, wire) = (ActorRef::<BidderMsg>::from(cell), Wire::from_encoded(task));
            let id = id.to_string();
            calls.spawn(async move {
                let answer = actor.call(|reply| BidderMsg::Announce(wire, reply), Some(window)).await;
                match answer {
                    Ok(CallResult::Success(bid)) => bid
                        .into_inner()
                        .ok()
                        .flatten()
                        .and_then(|cost| checked_cost(cost, &node, &id))
                        .map(|cost| (cost, node, actor)),
                    _ => None,
                }
            });
        }
        let bids: Vec<_> = calls.join_all().await.into_iter().flatten().collect();
        if bids.is_empty() {
            // A round lasts its window even without bidders (some may be on their way).
            tokio::time::sleep_until(window_end).await;
        }
        rank(bids)
    }

    /// Awards the task to `winner` and waits for its result; `Err` if the winner was lost.
    async fn run_award(
        &self,
        winner: &ActorRef<BidderMsg>,
        node: &str,
        task: &[u8],
        timeout: Duration,
    ) -> Result<Result<String, String>, String> {
        let wire = Wire::from_encoded(task);
        let call = winner.call(|reply| BidderMsg::Award(wire, reply), Some(timeout));
        let lost = async {
            loop {
                tokio::time::sleep(WATCH_WINNER).await;
                let stopped = matches!(
                    winner.get_status(),
                    ractor::ActorStatus::Stopping | ractor::ActorStatus::Stopped
                );
                if stopped || (node != self.node() && !self.shared.cluster.up().iter().any(|n| n == node)) {
                    return "its node was lost".to_string();
                }
            }
        };
        tokio::select! {
            answer = call => match answer {
                Ok(CallResult::Success(result)) => {
                    result.into_inner().map_err(|e| format!("its result did not decode: {e}"))
                }
                Ok(CallResult::Timeout) => Err(format!("it did not finish within {timeout:?}")),
                Ok(CallResult::SenderError) | Err(_) => Err("it stopped before answering".into()),
            },
            loss = lost => Err(loss),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_infinite_and_negative_bids_never_win() {
        let bid = |cost: f64, node: &str| (cost, node.to_string(), ());
        let bids = vec![
            bid(f64::NAN, "a"),
            bid(f64::NEG_INFINITY, "b"),
            bid(-1.0, "c"),
            bid(f64::INFINITY, "d"),
            bid(3.0, "e"),
            bid(2.0, "f"),
            bid(-f64::NAN, "g"),
        ];
        let ranked: Vec<(f64, String)> = rank(bids).into_iter().map(|(c, n, ())| (c, n)).collect();
        assert_eq!(ranked, [(2.0, "f".to_string()), (3.0, "e".to_string())]);
        // Every round without a valid bid has no winner.
        assert!(rank(vec![bid(f64::NAN, "a"), bid(f64::NEG_INFINITY, "b")]).is_empty());
    }

    #[test]
    fn costs_are_checked_on_receipt_and_zero_ties_by_node_name() {
        for refused in [f64::NAN, f64::NEG_INFINITY, f64::INFINITY, -0.5, f64::MIN] {
            assert_eq!(checked_cost(refused, "n2", "t-1"), None, "{refused}");
        }
        assert_eq!(checked_cost(1.5, "n2", "t-1"), Some(1.5));
        // -0.0 is 0: it does not beat another node's 0.0 (total_cmp puts -0.0 first).
        let zero = checked_cost(-0.0, "n2", "t-1").unwrap();
        assert!(zero.is_sign_positive());
        let ranked = rank(vec![(0.0, "n1".to_string(), ()), (zero, "n2".to_string(), ())]);
        assert_eq!(ranked[0].1, "n1");
    }
}

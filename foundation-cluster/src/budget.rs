//! Cluster-wide budgets: a provider's limits held by the cluster as a whole, not by each node.
//!
//! A budget is a [`RateLimiter`] on every node over the provider's *whole* limits, run at a
//! **share** (see [`RateLimiter::set_share`]) leased from a keeper: a cluster singleton that
//! divides the budget among the nodes that use it.
//!
//! - Every [`renew_every`](BudgetConfig::renew_every) each node tells the keeper the share it
//!   holds and its demand (waiters plus grants since the last renewal, smoothed); the keeper
//!   answers with a share valid for [`lease`](BudgetConfig::lease). Shares follow demand: a node
//!   that stops calling gives its share back to those that call, and an idle cluster splits the
//!   budget evenly so that any node can start at once.
//! - **Never more than the whole.** The keeper counts each node at the larger of what it granted
//!   and what the node says it holds, so a share taken from one node is given to another only
//!   once the first has confirmed running on less (at its next renewal). Shares summed over the
//!   nodes never exceed 1, and each node's bucket holds its share of the burst, so the cluster
//!   together never sends more than the provider allows (up to clock drift between processes
//!   over one lease, which is nothing on one machine and microseconds across hosts).
//! - **A lost node's share comes back** when its lease expires at the keeper; the node itself
//!   stops using its share when its own lease expires (counted from when it asked, so always
//!   before the keeper's), e.g. when it cannot reach the keeper.
//! - **Keeper failover.** A keeper that starts (first, or on another node after its node was
//!   lost) knows nothing of the leases out there: for one lease it only confirms the shares
//!   nodes say they hold, and divides the budget afresh after that. The cluster keeps running
//!   on its old shares meanwhile.
//!
//! # Lease size against coordination traffic
//!
//! Each node sends one small request per `renew_every` (a third of the lease by default), so
//! the keeper handles `nodes × 3 / lease` messages a second: with the default 3 s lease, 10
//! nodes cost it 10 messages a second. A longer lease means less traffic, but a lost node's share
//! stays idle for up to a lease (its part of the budget is unused that long), a shift of demand
//! takes up to two renewals to follow, and a new keeper waits a lease before it re-divides. A
//! shorter lease follows demand and recovers shares faster for more messages. A node that cannot
//! reach the keeper for a whole lease runs on nothing until it can.

use std::collections::BTreeMap;
use std::time::Duration;

use foundation_actors::supervision::ChildSpec;
use foundation_actors::wire::Wire;
use foundation_core::rate_limit::RateLimiter;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::{Cluster, SingletonHandle};

/// The pg scope of budget keepers.
pub const SCOPE: &str = foundation_actors::pg_scopes::BUDGETS;
/// Default lease of a share.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(3);
/// How long a node waits for the keeper's answer.
const RENEW_TIMEOUT: Duration = Duration::from_millis(500);
/// Weight of the newest demand reading in the smoothed demand.
const DEMAND_SMOOTHING: f64 = 0.5;

/// How a budget is leased.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetConfig {
    /// How long a share is valid without renewal. Default [`DEFAULT_LEASE`] (3 s): a lost node's
    /// share is back within 3 s, a new keeper re-divides after 3 s. Same on every node.
    pub lease: Duration,
    /// How often a node renews. Default: a third of the lease (a renewal may fail twice before
    /// the share lapses).
    pub renew_every: Duration,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig { lease: DEFAULT_LEASE, renew_every: DEFAULT_LEASE / 3 }
    }
}

/// What a node asks.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LeaseRequest {
    node: String,
    /// The share it runs on now.
    held: f64,
    /// Smoothed demand: waiters plus grants since the last renewal.
    demand: f64,
}

/// What the keeper grants.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LeaseGrant {
    share: f64,
}

#[derive(RactorClusterMessage)]
enum KeeperMsg {
    #[rpc]
    Renew(Wire<LeaseRequest>, RpcReplyPort<Wire<LeaseGrant>>),
}

struct Keeper {
    name: String,
    config: BudgetConfig,
    /// The cluster's frame limit.
    max_bytes: usize,
}

struct Lease {
    granted: f64,
    held: f64,
    demand: f64,
    expires: Instant,
}

struct KeeperState {
    started: Instant,
    leases: BTreeMap<String, Lease>,
}

impl Actor for Keeper {
    type Msg = KeeperMsg;
    type State = KeeperState;
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<KeeperMsg>, _: ()) -> Result<KeeperState, ActorProcessingErr> {
        ractor::pg::join_scoped(SCOPE.to_string(), self.name.clone(), vec![myself.get_cell()]);
        tracing::info!(budget = %self.name, "budget keeper started");
        Ok(KeeperState { started: Instant::now(), leases: BTreeMap::new() })
    }

    async fn handle(
        &self,
        _: ActorRef<KeeperMsg>,
        msg: KeeperMsg,
        state: &mut KeeperState,
    ) -> Result<(), ActorProcessingErr> {
        let KeeperMsg::Renew(request, reply) = msg;
        let request = match request.into_inner() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(budget = %self.name, error = %e, "a lease request did not decode");
                return Ok(());
            }
        };
        // A keeper whose singleton lease ran out (its process was paused past it, or it lost
        // the majority) grants nothing: a new keeper may be dividing the budget already. The
        // node asks again, and its own lease lapses if nobody answers.
        if !crate::singleton::lease_valid(&self.name) {
            tracing::warn!(budget = %self.name, node = %request.node, "keeper without a valid lease: no share granted");
            return Ok(());
        }
        let share = grant(&self.config, state, &request, Instant::now());
        match Wire::encode(&LeaseGrant { share }, self.max_bytes) {
            // Nobody waiting (the node timed out) is not our problem: it asks again.
            Ok(grant) => drop(reply.send(grant)),
            Err(e) => tracing::error!(budget = %self.name, error = %e, "a lease grant did not encode"),
        }
        Ok(())
    }
}

/// The keeper's decision for one renewal.
fn grant(config: &BudgetConfig, state: &mut KeeperState, request: &LeaseRequest, now: Instant) -> f64 {
    state.leases.retain(|_, l| l.expires > now);
    let held = request.held.clamp(0.0, 1.0);
    let lease = state.leases.entry(request.node.clone()).or_insert(Lease {
        granted: 0.0,
        held,
        demand: 0.0,
        expires: now,
    });
    lease.held = held;
    lease.demand = request.demand.max(0.0);
    let share = if now < state.started + config.lease {
        // Just started: leases granted by a previous keeper may still run. Confirm, never grow.
        held
    } else {
        let total_demand: f64 = state.leases.values().map(|l| l.demand).sum();
        let target = if total_demand > 0.0 {
            request.demand.max(0.0) / total_demand
        } else {
            1.0 / state.leases.len() as f64
        };
        let others: f64 = state
            .leases
            .iter()
            .filter(|(n, _)| **n != request.node)
            .map(|(_, l)| l.granted.max(l.held))
            .sum();
        target.min(1.0 - others).max(0.0)
    };
    // Only present while the entry exists; re-borrowed after the sums above.
    if let Some(lease) = state.leases.get_mut(&request.node) {
        lease.granted = share;
        lease.expires = now + config.lease;
    }
    share
}

/// A budget on this node: its limiter runs on the share leased from the keeper.
pub struct BudgetHandle {
    limiter: RateLimiter,
    task: tokio::task::JoinHandle<()>,
    _keeper: SingletonHandle,
}

impl BudgetHandle {
    /// The limiter (the one given to [`BudgetHandle::start`]).
    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    /// The share this node runs on now.
    pub fn share(&self) -> f64 {
        self.limiter.share()
    }
}

impl Drop for BudgetHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for BudgetHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetHandle").field("share", &self.share()).finish()
    }
}

impl BudgetHandle {
    /// Holds `limiter`'s limits for the whole cluster: declare the budget `name` with the same
    /// limits and config on every node that uses it (see the module docs). The limiter runs on
    /// a share of 0 until the keeper grants one.
    pub fn start(cluster: &Cluster, name: &str, limiter: RateLimiter, config: BudgetConfig) -> BudgetHandle {
        limiter.set_share(0.0);
        let keeper_name = format!("budget:{name}");
        let (group, cfg, max_bytes) = (keeper_name.clone(), config, cluster.max_frame_bytes());
        let keeper = SingletonHandle::start(
            cluster,
            &keeper_name,
            ChildSpec::new(keeper_name.clone(), move || {
                (Keeper { name: group.clone(), config: cfg, max_bytes }, ())
            }),
        );
        let (node, local) = (cluster.name().to_string(), limiter.clone());
        let ask = move |request: LeaseRequest| {
            let group = keeper_name.clone();
            async move { renew(&group, &request, max_bytes).await }
        };
        let task = tokio::spawn(hold_share(local, config, format!("budget:{name}"), node, ask));
        BudgetHandle { limiter, task, _keeper: keeper }
    }
}

/// Runs `local` on the share the keeper grants through `ask`, renewing every
/// `config.renew_every`; gives the share up at the lease's end, to the instant: not at the
/// next tick, nor after a renewal that is still waiting for the keeper (which would let the
/// keeper hand it to another node while this one still uses it).
async fn hold_share<F, Fut>(local: RateLimiter, config: BudgetConfig, budget: String, node: String, ask: F)
where
    F: Fn(LeaseRequest) -> Fut,
    Fut: std::future::Future<Output = Option<f64>>,
{
    let mut valid_until: Option<Instant> = None;
    let mut demand = 0.0;
    let mut last_granted = local.granted();
    let mut tick = tokio::time::interval(config.renew_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let lapse = |valid_until: &mut Option<Instant>| {
        tracing::warn!(%budget, "budget lease lapsed (keeper unreachable): running on nothing");
        local.set_share(0.0);
        *valid_until = None;
    };
    loop {
        let end = valid_until.unwrap_or_else(|| Instant::now() + config.lease);
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::time::sleep_until(end), if valid_until.is_some() => {
                lapse(&mut valid_until);
                continue;
            }
        }
        let granted = local.granted();
        let reading = local.waiting() as f64 + (granted - last_granted) as f64;
        last_granted = granted;
        demand = DEMAND_SMOOTHING * reading + (1.0 - DEMAND_SMOOTHING) * demand;
        let asked = Instant::now();
        let request = LeaseRequest { node: node.clone(), held: local.share(), demand };
        let answer = tokio::select! {
            answer = ask(request) => answer,
            _ = tokio::time::sleep_until(end), if valid_until.is_some() => {
                lapse(&mut valid_until);
                continue;
            }
        };
        if let Some(share) = answer {
            if (share - local.share()).abs() > 1e-9 {
                tracing::debug!(%budget, share, "budget share changed");
            }
            local.set_share(share);
            valid_until = Some(asked + config.lease);
        }
        metrics::gauge!("foundation_budget_share", "budget" => budget.clone()).set(local.share());
    }
}

/// Asks the keeper (wherever it runs) for a share.
async fn renew(group: &str, request: &LeaseRequest, max_bytes: usize) -> Option<f64> {
    let keeper = ractor::pg::get_scoped_members(&SCOPE.to_string(), &group.to_string()).into_iter().next()?;
    let keeper: ActorRef<KeeperMsg> = keeper.into();
    let wire = Wire::encode(request, max_bytes)
        .map_err(|e| tracing::error!(budget = %group, error = %e, "a lease request does not fit a frame"))
        .ok()?;
    match keeper.call(|port| KeeperMsg::Renew(wire, port), Some(RENEW_TIMEOUT)).await {
        Ok(ractor::rpc::CallResult::Success(grant)) => {
            grant.into_inner().ok().map(|g| g.share.clamp(0.0, 1.0))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(state: &mut KeeperState, node: &str, held: f64, demand: f64, now: Instant) -> f64 {
        let config = BudgetConfig::default();
        grant(&config, state, &LeaseRequest { node: node.into(), held, demand }, now)
    }

    /// The share is given up at the lease's end even while a renewal hangs (before, only once
    /// the renewal timed out: shares could sum above 1 for up to that timeout).
    #[tokio::test(start_paused = true)]
    async fn a_share_is_given_up_at_its_leases_end_while_a_renewal_hangs() {
        let limiter = RateLimiter::new(vec![foundation_core::rate_limit::Limit::per_minute("rpm", 600)])
            .expect("a valid limit");
        let config = BudgetConfig::default();
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let ask = {
            let calls = calls.clone();
            move |_: LeaseRequest| {
                let first = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
                async move {
                    match first {
                        true => Some(1.0),
                        // The keeper went silent: this renewal never answers.
                        false => std::future::pending().await,
                    }
                }
            }
        };
        let started = Instant::now();
        let task = tokio::spawn(hold_share(limiter.clone(), config, "b".into(), "n1".into(), ask));
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(limiter.share(), 1.0, "the first renewal granted the whole budget");
        tokio::time::sleep_until(started + config.lease - Duration::from_millis(5)).await;
        assert_eq!(limiter.share(), 1.0, "still within the lease");
        tokio::time::sleep_until(started + config.lease + Duration::from_millis(1)).await;
        assert_eq!(limiter.share(), 0.0, "given up at the lease's end, with a renewal still waiting");
        task.abort();
    }

    #[test]
    fn shares_follow_demand_never_sum_above_one_and_lapse_with_their_lease() {
        let t0 = Instant::now();
        let mut s = KeeperState { started: t0, leases: BTreeMap::new() };
        // During the first lease a new keeper only confirms what nodes hold.
        assert_eq!(ask(&mut s, "a", 0.0, 5.0, t0), 0.0);
        let t = t0 + DEFAULT_LEASE;
        assert_eq!(ask(&mut s, "a", 0.0, 5.0, t), 1.0);
        // b arrives: a still holds everything, so b gets nothing until a confirms less.
        assert_eq!(ask(&mut s, "b", 0.0, 5.0, t), 0.0);
        assert_eq!(ask(&mut s, "a", 1.0, 5.0, t), 0.5);
        // a is still counted at the 1.0 it holds until it says it runs on 0.5.
        assert_eq!(ask(&mut s, "b", 0.0, 5.0, t), 0.0);
        assert_eq!(ask(&mut s, "a", 0.5, 5.0, t), 0.5);
        assert_eq!(ask(&mut s, "b", 0.0, 5.0, t), 0.5);
        // a goes quiet: its share moves to b over two renewals.
        assert_eq!(ask(&mut s, "a", 0.5, 0.0, t), 0.0);
        assert_eq!(ask(&mut s, "b", 0.5, 5.0, t), 0.5);
        assert_eq!(ask(&mut s, "a", 0.0, 0.0, t), 0.0);
        assert_eq!(ask(&mut s, "b", 0.5, 5.0, t), 1.0);
        // b is lost: after its lease, a gets the whole budget back.
        assert_eq!(ask(&mut s, "a", 0.0, 3.0, t + Duration::from_secs(1)), 0.0);
        assert_eq!(ask(&mut s, "a", 0.0, 3.0, t + DEFAULT_LEASE + Duration::from_millis(1)), 1.0);
        let total: f64 = s.leases.values().map(|l| l.granted.max(l.held)).sum();
        assert!(total <= 1.0 + 1e-9);
    }
}

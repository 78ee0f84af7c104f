//! `foundation node --coordination`: the coordination primitives from standard input, one reply
//! per outcome (what the multi-process tests read).

use foundation_core::sync::MutexRecover;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foundation_cluster::Cluster;
use foundation_cluster::coordination::{
    AllocateOptions, Bidder, BidderHandle, Coordination, CoordinationConfig, Election, Leadership, LockGuard,
    Task,
};
use serde::Serialize;

use super::reply::{Usage, emit};

/// How long `lock`, `barrier` and `allocate` may wait.
const WAIT: Duration = Duration::from_secs(30);

const NEEDS: Option<&str> = Some("--coordination");

/// The commands of this module.
pub const COMMANDS: &[Usage] = &[
    Usage {
        command: "lock",
        usage: "lock NAME [LEASE_MS [WAIT_MS]]",
        what: "acquire and hold a lock (waiting up to 30 s, or WAIT_MS); its fencing token, or why not",
        needs: NEEDS,
    },
    Usage { command: "unlock", usage: "unlock NAME", what: "release a lock held here", needs: NEEDS },
    Usage {
        command: "elect",
        usage: "elect NAME",
        what: "stand in an election; every change of leadership here",
        needs: NEEDS,
    },
    Usage { command: "resign", usage: "resign NAME", what: "withdraw from an election", needs: NEEDS },
    Usage {
        command: "barrier",
        usage: "barrier NAME PARTIES",
        what: "wait at a barrier until PARTIES nodes arrive; who they were",
        needs: NEEDS,
    },
    Usage {
        command: "bid",
        usage: "bid CAPABILITY COST",
        what: "bid COST for tasks of CAPABILITY; an awarded task sleeps its work and says where it ran",
        needs: NEEDS,
    },
    Usage {
        command: "allocate",
        usage: "allocate CAPABILITY WORK_MS",
        what: "announce a task to the bidders; where it ran and its result",
        needs: NEEDS,
    },
];

/// A coordination command read from standard input.
#[derive(Debug, PartialEq)]
pub enum CoordCommand {
    /// `lock NAME [LEASE_MS [WAIT_MS]]`: acquire and hold a lock (waiting up to 30 s, or
    /// WAIT_MS); prints `lock NAME acquired token T`, later `lock NAME lost token T` if its
    /// lease could not be renewed, or `lock NAME failed: ERROR`.
    Lock { name: String, lease: Option<Duration>, wait: Option<Duration> },
    /// `unlock NAME`: release a lock held here.
    Unlock { name: String },
    /// `elect NAME`: stand in an election; prints `leader NAME term T` and `follower NAME`.
    Elect { name: String },
    /// `resign NAME`: withdraw from an election.
    Resign { name: String },
    /// `barrier NAME PARTIES`: wait at a barrier; prints `barrier NAME passed: P1,P2,...`.
    Barrier { name: String, parties: usize },
    /// `bid CAPABILITY COST`: bid COST for tasks of CAPABILITY; an awarded task sleeps its
    /// `ms` and returns which node ran it.
    Bid { capability: String, cost: f64 },
    /// `allocate CAPABILITY WORK_MS`: announce a task; prints `allocated TASK to NODE ...`.
    Allocate { capability: String, work_ms: u64 },
}

impl CoordCommand {
    /// Parses `op` and the words after it; `None` if `op` is not a coordination command.
    pub fn parse(op: &str, args: &[&str]) -> Option<Result<CoordCommand, String>> {
        let bad = |wrong: &str| Some(Err(Usage::error(COMMANDS, op, wrong)));
        let name = |s: &&str| s.to_string();
        Some(Ok(match (op, args) {
            ("lock", [lock]) => CoordCommand::Lock { name: name(lock), lease: None, wait: None },
            ("lock", [lock, lease, wait @ ..]) if wait.len() <= 1 => {
                let ms = |s: &str| s.parse().map(Duration::from_millis);
                match (ms(lease), wait.first().map(|w| ms(w)).transpose()) {
                    (Ok(lease), Ok(wait)) => {
                        CoordCommand::Lock { name: name(lock), lease: Some(lease), wait }
                    }
                    _ => return bad("`lock` takes a lease and a wait in milliseconds"),
                }
            }
            ("unlock", [lock]) => CoordCommand::Unlock { name: name(lock) },
            ("elect", [election]) => CoordCommand::Elect { name: name(election) },
            ("resign", [election]) => CoordCommand::Resign { name: name(election) },
            ("barrier", [barrier, parties]) => match parties.parse() {
                Ok(parties) if parties > 0 => CoordCommand::Barrier { name: name(barrier), parties },
                _ => return bad("`barrier` takes a positive number of parties"),
            },
            ("bid", [capability, cost]) => match cost.parse::<f64>() {
                // What a manager accepts: a finite cost of at least 0.
                Ok(cost) if cost.is_finite() && cost >= 0.0 => {
                    CoordCommand::Bid { capability: name(capability), cost }
                }
                _ => return bad("`bid` takes a cost (a number, 0 or more)"),
            },
            ("allocate", [capability, ms]) => match ms.parse() {
                Ok(work_ms) => CoordCommand::Allocate { capability: name(capability), work_ms },
                Err(_) => return bad("`allocate` takes the task's work in milliseconds"),
            },
            ("lock" | "unlock" | "elect" | "resign" | "barrier" | "bid" | "allocate", _) => {
                return bad(&format!("wrong arguments for `{op}`"));
            }
            _ => return None,
        }))
    }
}

/// What a coordination command printed.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Reply {
    /// The coordinator has read enough lock tables to grant safely.
    CoordinationReady {},
    /// The lock is held here under this fencing token.
    LockAcquired { name: String, token: u64 },
    /// The lock's lease could not be renewed: it is no longer held here.
    LockLost { name: String, token: u64 },
    /// The lock was not acquired.
    LockFailed { name: String, error: String },
    /// The lock was released.
    LockReleased { name: String },
    /// `unlock` of a lock this node does not hold.
    LockNotHeld { name: String },
    /// This node stands in the election.
    Standing { election: String },
    /// This node leads the election, in this term.
    Leader { election: String, term: u64 },
    /// This node follows in the election.
    Follower { election: String },
    /// This node withdrew from the election.
    Resigned { election: String },
    /// `resign` from an election this node does not stand in.
    NotStanding { election: String },
    /// The barrier was passed by these nodes.
    BarrierPassed { name: String, participants: Vec<String> },
    /// The barrier was not passed.
    BarrierFailed { name: String, error: String },
    /// This node bids for tasks of the capability.
    Bidding { capability: String, cost: f64 },
    /// This node could not serve bids.
    BidFailed { capability: String, error: String },
    /// A task awarded to this node runs here.
    Performing { task: String },
    /// The task ran on `node`, which bid `cost`, after `rounds` rounds of bidding.
    Allocated { task: String, node: String, cost: f64, rounds: u32, result: serde_json::Value },
    /// The task could not be allocated.
    AllocateFailed { capability: String, error: String },
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::CoordinationReady {} => write!(f, "coordination ready"),
            Reply::LockAcquired { name, token } => write!(f, "lock {name} acquired token {token}"),
            Reply::LockLost { name, token } => write!(f, "lock {name} lost token {token}"),
            Reply::LockFailed { name, error } => write!(f, "lock {name} failed: {error}"),
            Reply::LockReleased { name } => write!(f, "lock {name} released"),
            Reply::LockNotHeld { name } => write!(f, "lock {name} is not held here"),
            Reply::Standing { election } => write!(f, "standing in election {election}"),
            Reply::Leader { election, term } => write!(f, "leader {election} term {term}"),
            Reply::Follower { election } => write!(f, "follower {election}"),
            Reply::Resigned { election } => write!(f, "resigned from election {election}"),
            Reply::NotStanding { election } => write!(f, "not standing in election {election}"),
            Reply::BarrierPassed { name, participants } => {
                write!(f, "barrier {name} passed: {}", participants.join(","))
            }
            Reply::BarrierFailed { name, error } => write!(f, "barrier {name} failed: {error}"),
            Reply::Bidding { capability, cost } => write!(f, "bidding for {capability} at {cost}"),
            Reply::BidFailed { capability, error } => write!(f, "bid {capability} failed: {error}"),
            Reply::Performing { task } => write!(f, "performing {task} here"),
            Reply::Allocated { task, node, cost, rounds, result } => {
                write!(f, "allocated {task} to {node} at {cost} in {rounds} round(s): {result}")
            }
            Reply::AllocateFailed { capability, error } => write!(f, "allocate {capability} failed: {error}"),
        }
    }
}

/// A bidder that always bids its cost and runs a task by sleeping its `ms`.
struct SleepBidder {
    node: String,
    cost: f64,
}

impl Bidder for SleepBidder {
    fn bid(&self, _: &Task) -> Option<f64> {
        Some(self.cost)
    }

    async fn perform(&self, task: Task) -> Result<serde_json::Value, foundation_core::BoxError> {
        let ms = task.payload["ms"].as_u64().unwrap_or(0);
        emit(&Reply::Performing { task: task.id.to_string() });
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(serde_json::json!({ "done_by": self.node, "ms": ms }))
    }
}

/// This node's coordinator and what the commands hold.
#[derive(Clone)]
pub struct CoordCommands {
    coordination: Coordination,
    locks: Arc<Mutex<HashMap<String, LockGuard>>>,
    elections: Arc<Mutex<HashMap<String, Election>>>,
    bidders: Arc<Mutex<Vec<BidderHandle>>>,
}

impl CoordCommands {
    /// Starts this node's coordinator.
    pub async fn start(cluster: &Cluster) -> anyhow::Result<Self> {
        let coordination = Coordination::start(cluster, CoordinationConfig::default()).await?;
        let watched = coordination.clone();
        tokio::spawn(async move {
            while !watched.ready() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            emit(&Reply::CoordinationReady {});
        });
        Ok(CoordCommands {
            coordination,
            locks: Arc::default(),
            elections: Arc::default(),
            bidders: Arc::default(),
        })
    }

    /// This node's coordinator.
    pub fn coordination(&self) -> &Coordination {
        &self.coordination
    }

    /// Runs a command in the background, printing its outcome.
    pub fn run(&self, command: CoordCommand) {
        let this = self.clone();
        tokio::spawn(async move { this.execute(command).await });
    }

    async fn execute(&self, command: CoordCommand) {
        let coordination = &self.coordination;
        let reply = match command {
            CoordCommand::Lock { name, lease, wait } => {
                let lease = lease.unwrap_or(foundation_cluster::coordination::DEFAULT_LEASE);
                match coordination.lock_with_lease(&name, lease, wait.unwrap_or(WAIT)).await {
                    Ok(guard) => {
                        let token = guard.token();
                        let mut held = guard.watch();
                        // Kept before it is announced: an `unlock` sent on seeing the reply
                        // must find it (it once raced this and answered `lock_not_held`).
                        self.locks.lock_or_recover().insert(name.clone(), guard);
                        emit(&Reply::LockAcquired { name: name.clone(), token });
                        match held.wait_for(|h| !*h).await {
                            Ok(_) => Reply::LockLost { name, token },
                            Err(_) => return,
                        }
                    }
                    Err(e) => Reply::LockFailed { name, error: e.to_string() },
                }
            }
            CoordCommand::Unlock { name } => {
                let guard = self.locks.lock_or_recover().remove(&name);
                match guard {
                    Some(guard) => {
                        guard.release().await;
                        Reply::LockReleased { name }
                    }
                    None => Reply::LockNotHeld { name },
                }
            }
            CoordCommand::Elect { name } => {
                let election = coordination.elect(&name);
                let mut changes = election.watch();
                self.elections.lock_or_recover().insert(name.clone(), election);
                emit(&Reply::Standing { election: name.clone() });
                while changes.changed().await.is_ok() {
                    let election = name.clone();
                    emit(&match *changes.borrow_and_update() {
                        Leadership::Leader { term } => Reply::Leader { election, term },
                        Leadership::Follower => Reply::Follower { election },
                    });
                }
                return;
            }
            CoordCommand::Resign { name } => match self.elections.lock_or_recover().remove(&name) {
                Some(election) => {
                    election.resign();
                    Reply::Resigned { election: name }
                }
                None => Reply::NotStanding { election: name },
            },
            CoordCommand::Barrier { name, parties } => {
                match coordination.barrier(&name, parties).wait(WAIT).await {
                    Ok(passed) => Reply::BarrierPassed { name, participants: passed.participants },
                    Err(e) => Reply::BarrierFailed { name, error: e.to_string() },
                }
            }
            CoordCommand::Bid { capability, cost } => {
                let bidder = SleepBidder { node: coordination.node().to_string(), cost };
                match coordination.serve_bids(&capability, bidder).await {
                    Ok(handle) => {
                        self.bidders.lock_or_recover().push(handle);
                        Reply::Bidding { capability, cost }
                    }
                    Err(e) => Reply::BidFailed { capability, error: e.to_string() },
                }
            }
            CoordCommand::Allocate { capability, work_ms } => {
                let options = AllocateOptions { work_timeout: WAIT, ..AllocateOptions::default() };
                let payload = serde_json::json!({ "ms": work_ms });
                match coordination.allocate(&capability, payload, &options).await {
                    Ok(done) => Reply::Allocated {
                        task: done.task.to_string(),
                        node: done.node,
                        cost: done.cost,
                        rounds: done.rounds,
                        result: done.result,
                    },
                    Err(e) => Reply::AllocateFailed { capability, error: e.to_string() },
                }
            }
        };
        emit(&reply);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Option<Result<CoordCommand, String>> {
        let words: Vec<&str> = line.split_whitespace().collect();
        CoordCommand::parse(words[0], &words[1..])
    }

    #[test]
    fn commands_parse_and_bad_arguments_say_what_is_wrong() {
        let ms = Duration::from_millis;
        assert_eq!(
            parse("lock a 100 200"),
            Some(Ok(CoordCommand::Lock { name: "a".into(), lease: Some(ms(100)), wait: Some(ms(200)) }))
        );
        assert_eq!(
            parse("lock a"),
            Some(Ok(CoordCommand::Lock { name: "a".into(), lease: None, wait: None }))
        );
        assert_eq!(parse("barrier b 3"), Some(Ok(CoordCommand::Barrier { name: "b".into(), parties: 3 })));
        assert_eq!(parse("bid c 1.5"), Some(Ok(CoordCommand::Bid { capability: "c".into(), cost: 1.5 })));
        for bad in
            ["lock a x", "lock a 1 2 3", "barrier b 0", "bid c NaN", "bid c -1", "allocate c -1", "elect"]
        {
            let error = parse(bad).unwrap().unwrap_err();
            assert!(error.contains("; usage: `"), "{bad}: {error}");
        }
        assert_eq!(parse("broadcast t x"), None);
    }
}

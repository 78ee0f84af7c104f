//! `foundation node --coordination`: the coordination primitives from standard input, one line
//! of output per outcome (what the multi-process tests read).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foundation_cluster::Cluster;
use foundation_cluster::coordination::{
    AllocateOptions, Bidder, BidderHandle, Coordination, CoordinationConfig, Election, Leadership, LockGuard,
    Task,
};

/// How long `lock`, `barrier` and `allocate` may wait.
const WAIT: Duration = Duration::from_secs(30);

/// The coordination commands.
pub const USAGE: &str = concat!(
    "coordination commands: `lock NAME [LEASE_MS [WAIT_MS]]`, `unlock NAME`, `elect NAME`, `resign NAME`, ",
    "`barrier NAME PARTIES`, `bid CAPABILITY COST`, `allocate CAPABILITY WORK_MS`"
);

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
        let bad = |what: &str| Some(Err(format!("{what}; {USAGE}")));
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

/// A bidder that always bids its cost and runs a task by sleeping its `ms`.
struct SleepBidder {
    node: String,
    cost: f64,
}

impl Bidder for SleepBidder {
    fn bid(&self, _: &Task) -> Option<f64> {
        Some(self.cost)
    }

    async fn perform(&self, task: Task) -> Result<serde_json::Value, String> {
        let ms = task.payload["ms"].as_u64().unwrap_or(0);
        say!("performing {} here", task.id);
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
        let coordination = cluster.start_coordination(CoordinationConfig::default()).await?;
        let watched = coordination.clone();
        tokio::spawn(async move {
            while !watched.ready() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            say!("coordination ready");
        });
        Ok(CoordCommands {
            coordination,
            locks: Arc::default(),
            elections: Arc::default(),
            bidders: Arc::default(),
        })
    }

    /// Runs a command in the background, printing its outcome.
    pub fn run(&self, command: CoordCommand) {
        let this = self.clone();
        tokio::spawn(async move { this.execute(command).await });
    }

    async fn execute(&self, command: CoordCommand) {
        let coordination = &self.coordination;
        match command {
            CoordCommand::Lock { name, lease, wait } => {
                let lease = lease.unwrap_or(foundation_cluster::coordination::DEFAULT_LEASE);
                match coordination.lock_with_lease(&name, lease, wait.unwrap_or(WAIT)).await {
                    Ok(guard) => {
                        let token = guard.token();
                        say!("lock {name} acquired token {token}");
                        let mut held = guard.watch();
                        self.locks.lock().unwrap_or_else(|p| p.into_inner()).insert(name.clone(), guard);
                        if held.wait_for(|h| !*h).await.is_ok() {
                            say!("lock {name} lost token {token}");
                        }
                    }
                    Err(e) => say!("lock {name} failed: {e}"),
                }
            }
            CoordCommand::Unlock { name } => {
                let guard = self.locks.lock().unwrap_or_else(|p| p.into_inner()).remove(&name);
                match guard {
                    Some(guard) => {
                        guard.release().await;
                        say!("lock {name} released");
                    }
                    None => say!("lock {name} is not held here"),
                }
            }
            CoordCommand::Elect { name } => {
                let election = coordination.elect(&name);
                let mut changes = election.watch();
                self.elections.lock().unwrap_or_else(|p| p.into_inner()).insert(name.clone(), election);
                say!("standing in election {name}");
                while changes.changed().await.is_ok() {
                    match *changes.borrow_and_update() {
                        Leadership::Leader { term } => say!("leader {name} term {term}"),
                        Leadership::Follower => say!("follower {name}"),
                    }
                }
            }
            CoordCommand::Resign { name } => {
                match self.elections.lock().unwrap_or_else(|p| p.into_inner()).remove(&name) {
                    Some(election) => {
                        election.resign();
                        say!("resigned from election {name}");
                    }
                    None => say!("not standing in election {name}"),
                }
            }
            CoordCommand::Barrier { name, parties } => {
                match coordination.barrier(&name, parties).wait(WAIT).await {
                    Ok(passed) => say!("barrier {name} passed: {}", passed.participants.join(",")),
                    Err(e) => say!("barrier {name} failed: {e}"),
                }
            }
            CoordCommand::Bid { capability, cost } => {
                let bidder = SleepBidder { node: coordination.node().to_string(), cost };
                match coordination.serve_bids(&capability, bidder).await {
                    Ok(handle) => {
                        self.bidders.lock().unwrap_or_else(|p| p.into_inner()).push(handle);
                        say!("bidding for {capability} at {cost}");
                    }
                    Err(e) => say!("bid {capability} failed: {e}"),
                }
            }
            CoordCommand::Allocate { capability, work_ms } => {
                let options = AllocateOptions { work_timeout: WAIT, ..AllocateOptions::default() };
                let payload = serde_json::json!({ "ms": work_ms });
                match coordination.allocate(&capability, payload, &options).await {
                    Ok(done) => say!(
                        "allocated {} to {} at {} in {} round(s): {}",
                        done.task,
                        done.node,
                        done.cost,
                        done.rounds,
                        done.result
                    ),
                    Err(e) => say!("allocate {capability} failed: {e}"),
                }
            }
        }
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
            assert!(error.contains(USAGE), "{bad}: {error}");
        }
        assert_eq!(parse("broadcast t x"), None);
    }
}

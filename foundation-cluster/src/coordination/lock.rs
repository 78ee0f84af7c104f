//! The distributed lock: leases granted by a majority, fencing tokens made larger than any
//! recorded by a majority, renewal in the background.
//!
//! Acquiring is two steps. **Grant**: every reachable coordinator is asked for a lease; one
//! grants it unless another owner's lease is running there, and answers with the largest token
//! it has recorded for the lock. With grants from a majority of the known nodes, the token is
//! one more than the largest of them. **Commit**: the token is recorded by a majority before the
//! lease (as the acquirer measures it, from before it asked) runs out. Any later acquisition's
//! grant majority overlaps this commit majority, and an overlapping node grants it only after
//! this lease ended there, by which time it had recorded this token: so tokens only grow.

use foundation_core::sync::MutexRecover;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use foundation_actors::wire::{self, Wire};
use ractor::rpc::CallResult;
use ractor::{MessagingErr, RpcReplyPort};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::coordinator::{CommitRequest, CoordinatorMsg, GrantReply, GrantRequest, ReleaseRequest, Shared};
use super::{Coordination, CoordinationError};

/// The part of a lease the holder does not count on, for clock rates that differ between
/// nodes and for the time its grant requests took to arrive (a tenth).
const SAFETY_DIVISOR: u32 = 10;
/// Longest pause between two attempts to acquire a held lock.
const MAX_BACKOFF: Duration = Duration::from_millis(500);

static NEXT_OWNER: AtomicU64 = AtomicU64::new(1);

/// How a grant round went.
struct Round {
    /// Largest recorded token of each node that granted.
    granted: Vec<u64>,
    /// The shortest lease a granting node gave (a node grants at most its `max_lease`).
    lease: Duration,
    holder: Option<String>,
    needed: usize,
    known: usize,
}

/// Asks every reachable coordinator for the lease; stops once a majority granted it.
async fn grant_round(
    shared: &Shared,
    call_timeout: Duration,
    lock: &str,
    owner: &str,
    lease: Duration,
    token: Option<u64>,
) -> Round {
    let (known, needed) = shared.quorum();
    let request = GrantRequest {
        from: shared.node().to_string(),
        lock: lock.to_string(),
        owner: owner.to_string(),
        lease_ms: lease.as_millis() as u64,
        token,
    };
    let mut round = Round { granted: Vec::new(), lease, holder: None, needed, known };
    let Ok(bytes) = wire::encode(&request, shared.max_bytes()) else { return round };
    let timeout = call_timeout.min(lease / 2);
    let mut calls = call_every(shared, &bytes, timeout, CoordinatorMsg::Grant);
    while round.granted.len() < needed {
        match calls.join_next().await {
            Some(Ok(Ok(CallResult::Success(answer)))) => match answer.into_inner() {
                Ok(GrantReply::Granted { last_token, lease_ms }) => {
                    round.granted.push(last_token);
                    round.lease = round.lease.min(Duration::from_millis(lease_ms));
                }
                Ok(GrantReply::Held { owner, .. }) => round.holder = Some(owner),
                _ => {}
            },
            Some(_) => {}
            None => break,
        }
    }
    round
}

/// Asks a majority of the nodes holding `owner`'s lease to record `token`; whether they did.
async fn commit(
    shared: &Shared,
    call_timeout: Duration,
    lock: &str,
    owner: &str,
    token: u64,
    deadline: Instant,
) -> bool {
    let (_, needed) = shared.quorum();
    let request = CommitRequest {
        from: shared.node().to_string(),
        lock: lock.to_string(),
        owner: owner.to_string(),
        token,
    };
    let Ok(bytes) = wire::encode(&request, shared.max_bytes()) else { return false };
    let mut calls = call_every(shared, &bytes, call_timeout, CoordinatorMsg::Commit);
    let mut acked = 0;
    while acked < needed {
        match tokio::time::timeout_at(deadline, calls.join_next()).await {
            Ok(Some(Ok(Ok(CallResult::Success(true))))) => acked += 1,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return false,
        }
    }
    true
}

/// Tells every reachable coordinator that `owner` gives the lock up.
fn release_everywhere(shared: &Shared, lock: &str, owner: &str) {
    let request =
        ReleaseRequest { from: shared.node().to_string(), lock: lock.to_string(), owner: owner.to_string() };
    let Ok(bytes) = wire::encode(&request, shared.max_bytes()) else { return };
    shared.cast_to(|_| true, &bytes, CoordinatorMsg::Release);
}

/// Calls every reachable coordinator (this node's included) with the encoded `bytes`, at once.
fn call_every<T: Serialize + DeserializeOwned + Send + 'static, R: Send + 'static>(
    shared: &Shared,
    bytes: &[u8],
    timeout: Duration,
    message: fn(Wire<T>, RpcReplyPort<R>) -> CoordinatorMsg,
) -> JoinSet<Result<CallResult<R>, MessagingErr<CoordinatorMsg>>> {
    let mut calls = JoinSet::new();
    for (_, peer) in shared.coordinators() {
        let wire = Wire::from_encoded(bytes);
        calls.spawn(async move { peer.call(|reply| message(wire, reply), Some(timeout)).await });
    }
    calls
}

/// Releases an acquisition's grants if it is dropped half-way (a `select!` or timeout around
/// `lock`, an election resigning mid-campaign).
struct Attempt<'a> {
    shared: &'a Shared,
    lock: &'a str,
    owner: &'a str,
    armed: bool,
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if self.armed {
            release_everywhere(self.shared, self.lock, self.owner);
        }
    }
}

/// When a lease taken at `start` stops counting for its holder.
fn valid_until(start: Instant, lease: Duration) -> Instant {
    start + lease - lease / SAFETY_DIVISOR
}

impl Coordination {
    /// Acquires the lock `name` with this node's default lease
    /// ([`CoordinationConfig::lease`](super::CoordinationConfig::lease)), waiting up to
    /// `timeout` for it.
    pub async fn lock(&self, name: &str, timeout: Duration) -> Result<LockGuard, CoordinationError> {
        self.lock_with_lease(name, self.config.lease, timeout).await
    }

    /// Acquires the lock `name` with a lease of `lease` (capped by
    /// [`max_lease`](super::CoordinationConfig::max_lease)), waiting up to `timeout`. The guard
    /// renews the lease in the background until it is released or dropped.
    pub async fn lock_with_lease(
        &self,
        name: &str,
        lease: Duration,
        timeout: Duration,
    ) -> Result<LockGuard, CoordinationError> {
        let shared = &self.shared;
        let call_timeout = self.config.call_timeout;
        let lease = lease.min(self.config.max_lease).max(Duration::from_millis(10));
        let n = NEXT_OWNER.fetch_add(1, Ordering::Relaxed);
        let owner = format!("{}#{:08x}-{n}", shared.node(), super::incarnation());
        // Whatever was granted is given back if this future is dropped before it returns.
        let mut attempt_guard = Attempt { shared, lock: name, owner: &owner, armed: true };
        let began = Instant::now();
        let deadline = began + timeout;
        let mut attempt = 0u32;
        loop {
            let start = Instant::now();
            let round = grant_round(shared, call_timeout, name, &owner, lease, None).await;
            if round.granted.len() >= round.needed {
                // One more than any token a grant majority recorded, and never below the wall
                // clock in milliseconds: tokens keep growing across a restart of every node
                // (which forgets every table), with clocks that do not step back across it.
                let recorded = round.granted.iter().max().copied().unwrap_or(0);
                let token = (recorded + 1).max(crate::state::unix_ms());
                // Counted from before the request, on the shortest lease granted.
                let until = valid_until(start, round.lease);
                if commit(shared, call_timeout, name, &owner, token, until).await && Instant::now() < until {
                    metrics::counter!("foundation_lock_acquired_total").increment(1);
                    tracing::debug!(lock = %name, %owner, token, "lock acquired");
                    attempt_guard.armed = false;
                    let held =
                        Held { shared: shared.clone(), call_timeout, owner: owner.clone(), token, lease };
                    return Ok(LockGuard::start(held, name, until));
                }
            }
            // Not ours this time: give back what was granted, so that two contenders that split
            // the grants do not wait for each other's leases.
            release_everywhere(shared, name, &owner);
            attempt += 1;
            let backoff = (Duration::from_millis(20) * attempt.min(25)).min(MAX_BACKOFF);
            let pause = backoff.mul_f64(0.5 + foundation_core::random::unit());
            if Instant::now() + pause >= deadline {
                return Err(CoordinationError::LockTimeout {
                    name: name.to_string(),
                    holder: round.holder.map(|h| h.split('#').next().unwrap_or_default().to_string()),
                    granted: round.granted.len(),
                    needed: round.needed,
                    known: round.known,
                    waited: began.elapsed(),
                });
            }
            tokio::time::sleep(pause).await;
        }
    }
}

/// What a guard's renewals need.
struct Held {
    shared: Arc<Shared>,
    call_timeout: Duration,
    owner: String,
    token: u64,
    /// The lease asked for at each renewal.
    lease: Duration,
}

/// A held lock. It renews its lease in the background (every third of it) and gives the lock
/// up when released or dropped. If a renewal cannot reach a majority before the lease runs
/// out, the lock is lost: [`lost`](Self::lost) returns and [`is_held`](Self::is_held) turns
/// false (stop using the resource, or let its fencing check refuse you).
///
/// [`is_held`](Self::is_held) also reads the clock: a holder that was paused (SIGSTOP, a long
/// GC-like stall) past its lease sees `false` at once when it wakes, before the background
/// renewal has run. Check it before each action on the resource.
#[derive(Debug)]
pub struct LockGuard {
    name: String,
    token: u64,
    held: watch::Receiver<bool>,
    /// Until when this holder may act (nine tenths of the lease, counted from before the
    /// request that granted or last renewed it); moved on by every renewal.
    until: Arc<std::sync::Mutex<Instant>>,
    renewer: Option<tokio::task::JoinHandle<()>>,
    owner: String,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator").field("node", &self.node()).finish()
    }
}

impl LockGuard {
    fn start(held: Held, name: &str, until: Instant) -> Self {
        let (tx, watch) = watch::channel(true);
        let valid = Arc::new(std::sync::Mutex::new(until));
        let (shared, owner, token) = (held.shared.clone(), held.owner.clone(), held.token);
        let renewer = {
            let (name, valid) = (name.to_string(), valid.clone());
            tokio::spawn(async move {
                let Held { shared, call_timeout, owner, token, lease } = held;
                let mut until = until;
                loop {
                    tokio::time::sleep(lease / 3).await;
                    // Renewal rounds until one succeeds, but never past the lease: at `until`
                    // the lock is lost, even with a round still waiting for answers.
                    let renewed = tokio::time::timeout_at(until, async {
                        loop {
                            let start = Instant::now();
                            let round =
                                grant_round(&shared, call_timeout, &name, &owner, lease, Some(token)).await;
                            if round.granted.len() >= round.needed {
                                return (start, round.lease);
                            }
                            tokio::time::sleep(lease / 20).await;
                        }
                    })
                    .await;
                    match renewed {
                        // Checked again: a round that finished after `until` (the task was
                        // paused) must not bring a lapsed lease back.
                        Ok((start, granted)) if Instant::now() < until => {
                            until = valid_until(start, granted);
                            *valid.lock_or_recover() = until;
                        }
                        _ => {
                            tracing::warn!(lock = %name, token, "lock lost: its lease could not be renewed");
                            metrics::counter!("foundation_lock_lost_total").increment(1);
                            release_everywhere(&shared, &name, &owner);
                            let _ = tx.send(false);
                            return;
                        }
                    }
                }
            })
        };
        LockGuard {
            name: name.to_string(),
            token,
            held: watch,
            until: valid,
            renewer: Some(renewer),
            owner,
            shared,
        }
    }

    /// Until when this holder may act on the lock's resource, if it still holds it: nine
    /// tenths of the lease, counted from before the request that granted or last renewed it
    /// (the granting nodes count the whole lease from when they granted it).
    pub fn valid_until(&self) -> Option<Instant> {
        let until = *self.until.lock_or_recover();
        (*self.held.borrow() && Instant::now() < until).then_some(until)
    }

    /// A cheap clone of what [`valid_until`](Self::valid_until) reads, for code that checks
    /// the lease without the guard (a singleton's actor).
    pub(crate) fn validity(&self) -> (watch::Receiver<bool>, Arc<std::sync::Mutex<Instant>>) {
        (self.held.clone(), self.until.clone())
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The fencing token: larger than the token of every earlier holder of this lock.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// Whether the lease is still held: renewed in time, and not past its end now (a holder
    /// that wakes from a pause past its lease sees `false` before the renewal task runs).
    pub fn is_held(&self) -> bool {
        self.valid_until().is_some()
    }

    /// `true` while the lease is held; turns `false` when it is lost (and closes when the guard
    /// is released or dropped).
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.held.clone()
    }

    /// Returns once the lock is lost (a renewal failed); never if it is kept.
    pub async fn lost(&mut self) {
        while *self.held.borrow_and_update() {
            if self.held.changed().await.is_err() {
                return;
            }
        }
    }

    /// Gives the lock up now (every reachable node frees it at once).
    pub async fn release(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
            release_everywhere(&self.shared, &self.name, &self.owner);
            tracing::debug!(lock = %self.name, token = self.token, "lock released");
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

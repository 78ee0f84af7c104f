//! A leader of a log: recovery (promises from a majority, catching up from the best replica, a
//! leader entry committed) and the [`Writer`] that appends, replicates and commits.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foundation_actors::wire::Wire;
use foundation_core::sync::MutexRecover;
use ractor::ActorRef;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::replica::{self, AppendRequest, PromiseRequest, ReadReply, ReadRequest, ReplicaMsg, ReplicaReply};
use super::store::{Ballot, Kind, Stored};
use super::{Entry, LogError, ReplicatedLog};

/// How often a leader sends each replica what it lacks even with nothing new (the commit index,
/// a damaged replica's repair), and looks for replicas that appeared.
const HEARTBEAT: Duration = Duration::from_millis(200);
/// A leader gathers appends for at most this long before writing them (one sync per batch).
const BATCH_WAIT: Duration = Duration::from_millis(2);

/// Where a leadership stands, for the waiters on commits.
#[derive(Debug, Clone, PartialEq)]
enum Leading {
    /// Entries up to this index are committed.
    Committed(u64),
    /// Over: why (another leader promised, the store failed).
    Over(LogError),
}

pub(crate) struct Shared {
    pub(crate) log: ReplicatedLog,
    pub(crate) ballot: Ballot,
    /// Entries appended and not yet written to the local store.
    pending: Mutex<Pending>,
    wake: Notify,
    /// Last index written to the local store (what replicas are sent).
    written: watch::Sender<u64>,
    leading: watch::Sender<Leading>,
    /// How far each node's replica matches this leader's log (this node's: `written`).
    matched: Mutex<HashMap<String, u64>>,
    /// The leader entry's index: only entries from it on are counted for commits.
    first_own: u64,
}

struct Pending {
    next: u64,
    entries: Vec<Stored>,
}

/// The writing end of a log, held by its leader (from [`ReplicatedLog::lead`]). Appends are
/// written locally in batches and sent to every replica; an entry is **committed** once a
/// majority of the cluster's known nodes (this one included) hold it on disk. Dropping the
/// writer ends the leadership here (its background tasks stop; entries not yet committed may
/// or may not be kept by the next leader).
pub struct Writer {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("log", &self.shared.log.name())
            .field("ballot", &self.shared.ballot)
            .finish()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Waiters on commits learn it now; the tasks (and the senders they own) stop.
        self.shared.end(LogError::Ended);
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Waits for one entry's commit (from [`Writer::append`]); `'static`, so it can be moved into a
/// task that answers once the entry counts.
pub struct Commit {
    index: u64,
    leading: watch::Receiver<Leading>,
}

impl Commit {
    /// The entry's index.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Resolves once the entry is committed, or with the reason it will not be by this leader
    /// ([`LogError::Deposed`], [`LogError::Store`], [`LogError::Ended`]).
    pub async fn committed(mut self) -> Result<u64, LogError> {
        let index = self.index;
        let result = self
            .leading
            .wait_for(|l| match l {
                Leading::Committed(c) => *c >= index,
                Leading::Over(_) => true,
            })
            .await
            .map(|l| l.clone());
        match result {
            Ok(Leading::Committed(_)) => Ok(index),
            Ok(Leading::Over(e)) => Err(e),
            Err(_) => Err(LogError::Ended),
        }
    }
}

impl Writer {
    /// The ballot this leader writes under.
    pub fn ballot(&self) -> (u64, u64) {
        (self.shared.ballot.token, self.shared.ballot.attempt)
    }

    /// Entries committed so far (the highest committed index).
    pub fn committed(&self) -> u64 {
        match &*self.shared.leading.borrow() {
            Leading::Committed(c) => *c,
            Leading::Over(_) => 0,
        }
    }

    /// Whether this leadership is over (deposed, or its store failed), and why.
    pub fn ended(&self) -> Option<LogError> {
        match &*self.shared.leading.borrow() {
            Leading::Over(e) => Some(e.clone()),
            Leading::Committed(_) => None,
        }
    }

    /// The [`Commit`] of the entry at `index`, appended earlier by this writer (or before this
    /// leadership): resolves once the log is committed up to it.
    pub fn commit_of(&self, index: u64) -> Commit {
        Commit { index, leading: self.shared.leading.subscribe() }
    }

    /// Appends `data`: returns at once with its [`Commit`] (O(1): the entry joins the next batch
    /// written and sent). An entry larger than [`ReplicatedLog::max_entry_bytes`] is refused;
    /// after the leadership ended every append is refused with the reason.
    pub fn append(&self, data: Vec<u8>) -> Result<Commit, LogError> {
        if let Some(e) = self.ended() {
            return Err(e);
        }
        let max = self.shared.log.max_entry_bytes();
        if data.len() > max {
            return Err(LogError::TooLarge {
                log: self.shared.log.name().to_string(),
                bytes: data.len(),
                max,
            });
        }
        let index = {
            let mut pending = self.shared.pending.lock_or_recover();
            let index = pending.next;
            pending.next += 1;
            pending.entries.push(Stored { index, ballot: self.shared.ballot, kind: Kind::Data, data });
            index
        };
        self.shared.wake.notify_one();
        Ok(Commit { index, leading: self.shared.leading.subscribe() })
    }
}

impl Shared {
    fn end(&self, error: LogError) {
        self.leading.send_if_modified(|l| {
            if matches!(l, Leading::Over(_)) {
                false
            } else {
                tracing::warn!(log = %self.log.name(), ballot = ?self.ballot, %error, "leadership of the log over");
                *l = Leading::Over(error);
                true
            }
        });
    }

    fn over(&self) -> bool {
        matches!(*self.leading.borrow(), Leading::Over(_))
    }

    fn deposed(&self, by: Ballot) -> LogError {
        LogError::Deposed { log: self.log.name().to_string(), by: (by.token, by.attempt) }
    }

    /// Recomputes the commit index from what the replicas hold.
    fn recount(&self) {
        let mut held: Vec<u64> = self.matched.lock_or_recover().values().copied().collect();
        held.push(*self.written.borrow());
        held.sort_unstable_by(|a, b| b.cmp(a));
        let needed = self.log.majority();
        let Some(&n) = held.get(needed - 1) else { return };
        if n < self.first_own {
            return;
        }
        self.leading.send_if_modified(|l| match l {
            Leading::Committed(c) if *c < n => {
                *c = n;
                true
            }
            _ => false,
        });
    }
}

/// Writes batches of appended entries to the local store.
async fn flush(shared: Arc<Shared>) {
    loop {
        shared.wake.notified().await;
        tokio::time::sleep(BATCH_WAIT).await;
        let batch = std::mem::take(&mut shared.pending.lock_or_recover().entries);
        if batch.is_empty() {
            continue;
        }
        let last = batch.last().map_or(0, |e| e.index);
        let result = {
            let mut store = shared.log.store.lock_or_recover();
            if store.promised() != shared.ballot {
                Err(shared.deposed(store.promised()))
            } else {
                store.append(&batch).map_err(|e| shared.log.store_error(&e))
            }
        };
        match result {
            Ok(()) => {
                shared.written.send_replace(last);
                shared.recount();
            }
            Err(e) => {
                shared.end(e);
                return;
            }
        }
    }
}

/// Finds the replicas that appear and keeps one sender task per node.
async fn replicate(shared: Arc<Shared>) {
    // Owned here: aborting this task drops the set, which aborts every sender.
    let mut senders = tokio::task::JoinSet::new();
    let mut running: BTreeMap<String, tokio::task::AbortHandle> = BTreeMap::new();
    while !shared.over() {
        while senders.try_join_next().is_some() {}
        let me = shared.log.inner.cluster.name().to_string();
        for (node, cell) in shared.log.replicas() {
            if node == me || running.get(&node).is_some_and(|t| !t.is_finished()) {
                continue;
            }
            let actor: ActorRef<ReplicaMsg> = cell.into();
            let handle = senders.spawn(send_to(shared.clone(), node.clone(), actor));
            running.insert(node, handle);
        }
        tokio::time::sleep(HEARTBEAT).await;
    }
}

/// Keeps one replica up to date: sends what it lacks, backs off on a mismatch, ends when the
/// replica cannot be reached (the finder starts a new sender when it is back).
async fn send_to(shared: Arc<Shared>, node: String, actor: ActorRef<ReplicaMsg>) {
    let log = &shared.log;
    let mut written = shared.written.subscribe();
    let mut next = *written.borrow() + 1;
    let mut step = 1u64;
    loop {
        if shared.over() {
            return;
        }
        let (entries, prev_ballot) = {
            let store = log.store.lock_or_recover();
            if store.promised() != shared.ballot {
                let by = store.promised();
                drop(store);
                shared.end(shared.deposed(by));
                return;
            }
            if next > store.last_index() + 1 {
                // The local log was cut back (by catching up): start from its end.
                next = store.last_index() + 1;
            }
            let prev = store.ballot_at(next - 1);
            let entries = if next <= *written.borrow() {
                match store.read(next, log.room()) {
                    Ok(entries) => entries,
                    Err(e) => {
                        drop(store);
                        shared.end(log.store_error(&e));
                        return;
                    }
                }
            } else {
                Vec::new()
            };
            (entries, prev)
        };
        let Some(prev_ballot) = prev_ballot else {
            // Cannot be (`next` is within the local log): wait rather than spin.
            tokio::time::sleep(HEARTBEAT).await;
            continue;
        };
        let commit = shared.leading.borrow().clone();
        // Never below the leader entry: a damaged replica is repaired only once it holds this
        // leader's log up to there (everything committed before this leadership).
        let commit = if let Leading::Committed(c) = commit { c.max(shared.first_own) } else { return };
        let count = entries.len() as u64;
        let request =
            AppendRequest { ballot: shared.ballot, prev_index: next - 1, prev_ballot, entries, commit };
        let Some(answer) = log.call_append(&actor, request).await else { return };
        if answer.promised > shared.ballot {
            shared.end(shared.deposed(answer.promised));
            return;
        }
        if let Some(error) = &answer.error {
            tracing::warn!(log = %log.name(), %node, %error, "a replica could not write");
            tokio::time::sleep(HEARTBEAT).await;
            continue;
        }
        if answer.ok {
            step = 1;
            next = answer.matched + 1;
            shared.matched.lock_or_recover().insert(node.clone(), answer.matched);
            shared.recount();
            if count > 0 && next <= *written.borrow() {
                tokio::task::yield_now().await;
                continue;
            }
        } else {
            // Its log does not hold `next - 1` as this leader's does: go back, further each time.
            next = next.saturating_sub(step).min(answer.last_index + 1).max(1);
            step = step.saturating_mul(2);
            tokio::task::yield_now().await;
            continue;
        }
        // Up to date: wait for new entries, a commit to pass on, or the heartbeat.
        let mut leading = shared.leading.subscribe();
        let _ = tokio::time::timeout(HEARTBEAT, async {
            tokio::select! {
                _ = written.wait_for(|w| *w >= next) => {}
                _ = leading.wait_for(|l| !matches!(l, Leading::Committed(c) if *c <= commit)) => {}
            }
        })
        .await;
    }
}

/// A replica's answer to a promise, with its node.
struct Promised {
    node: String,
    reply: ReplicaReply,
    actor: Option<ActorRef<ReplicaMsg>>,
}

impl ReplicatedLog {
    /// Sends `request` to a replica; `None` if it did not answer.
    pub(crate) async fn call_append(
        &self,
        actor: &ActorRef<ReplicaMsg>,
        request: AppendRequest,
    ) -> Option<ReplicaReply> {
        let wire = Wire::encode(&request, self.inner.cluster.max_frame_bytes()).ok()?;
        match actor.call(|port| ReplicaMsg::Append(wire, port), Some(self.inner.config.call_timeout)).await {
            Ok(ractor::rpc::CallResult::Success(reply)) => reply.into_inner().ok(),
            _ => None,
        }
    }

    async fn call_promise(&self, actor: &ActorRef<ReplicaMsg>, ballot: Ballot) -> Option<ReplicaReply> {
        let wire = Wire::encode(&PromiseRequest { ballot }, self.inner.cluster.max_frame_bytes()).ok()?;
        match actor.call(|port| ReplicaMsg::Promise(wire, port), Some(self.inner.config.call_timeout)).await {
            Ok(ractor::rpc::CallResult::Success(reply)) => reply.into_inner().ok(),
            _ => None,
        }
    }

    async fn call_read(&self, actor: &ActorRef<ReplicaMsg>, from: u64) -> Option<ReadReply> {
        let request = ReadRequest { from, max_bytes: self.room() };
        let wire = Wire::encode(&request, self.inner.cluster.max_frame_bytes()).ok()?;
        match actor.call(|port| ReplicaMsg::Read(wire, port), Some(self.inner.config.call_timeout)).await {
            Ok(ractor::rpc::CallResult::Success(reply)) => reply.into_inner().ok(),
            _ => None,
        }
    }

    /// Asks every replica for a promise of `ballot`, this node's directly.
    async fn gather_promises(&self, ballot: Ballot) -> Vec<Promised> {
        let me = self.inner.cluster.name().to_string();
        let local = replica::promise(&mut self.store.lock_or_recover(), ballot);
        let mut answers = vec![Promised { node: me.clone(), reply: local, actor: None }];
        let mut calls = tokio::task::JoinSet::new();
        for (node, cell) in self.replicas().into_iter().filter(|(node, _)| *node != me) {
            let log = self.clone();
            let actor: ActorRef<ReplicaMsg> = cell.into();
            calls.spawn(async move {
                let reply = log.call_promise(&actor, ballot).await;
                reply.map(|reply| Promised { node, reply, actor: Some(actor) })
            });
        }
        while let Some(answer) = calls.join_next().await {
            answers.extend(answer.ok().flatten());
        }
        answers
    }

    /// Becomes the log's leader under the fencing token `token` (of the lease that makes this
    /// node the only writer: a singleton's, a lock's), and returns the [`Writer`] and every
    /// entry committed before (in order; the log as the last leader left it, its uncommitted
    /// tail included if a majority-read replica kept it).
    ///
    /// Recovery: a majority of the known nodes' replicas promise to take nothing from a lower
    /// ballot; the replica among them (damaged ones left out) with the latest entry is the
    /// log's truth, copied to this node's replica where it differs; a leader entry is appended
    /// and committed (which commits everything before it). Errors: [`LogError::Deposed`] (a
    /// replica promised a higher token: this lease is already stale), [`LogError::NoMajority`]
    /// (within [`LogConfig::recovery_timeout`](super::LogConfig::recovery_timeout)),
    /// [`LogError::Store`].
    pub async fn lead(&self, token: u64) -> Result<(Writer, Vec<Entry>), LogError> {
        let name = self.name().to_string();
        let deadline = Instant::now() + self.inner.config.recovery_timeout;
        // The attempt starts anywhere in the lower half (so that equal ballots are one leader
        // asking again, not two leaders); a later leadership under the same token goes above.
        let mut ballot = Ballot { token, attempt: foundation_core::random::next_u64() >> 33 };
        let (promised, needed) = loop {
            let answers = self.gather_promises(ballot).await;
            if let Some(higher) = answers.iter().map(|a| a.reply.promised).filter(|p| p.token > token).max() {
                return Err(LogError::Deposed { log: name, by: (higher.token, higher.attempt) });
            }
            if let Some(same) = answers.iter().map(|a| a.reply.promised).filter(|p| *p > ballot).max() {
                // An earlier leadership under this token (restarted within its lease): a later attempt.
                ballot =
                    Ballot { token, attempt: same.attempt + 1 + (foundation_core::random::next_u64() >> 44) };
                continue;
            }
            let needed = self.majority();
            let usable = answers.iter().filter(|a| a.reply.ok && !a.reply.damaged).count();
            if usable >= needed {
                break (answers, needed);
            }
            if Instant::now() >= deadline {
                let damaged: Vec<&str> =
                    answers.iter().filter(|a| a.reply.damaged).map(|a| a.node.as_str()).collect();
                return Err(LogError::NoMajority {
                    log: name,
                    reached: usable,
                    needed,
                    damaged: damaged.join(", "),
                });
            }
            tokio::time::sleep(HEARTBEAT).await;
        };
        let best = promised
            .iter()
            .filter(|a| a.reply.ok && !a.reply.damaged)
            .max_by_key(|a| (a.reply.last_ballot, a.reply.last_index, a.actor.is_none()))
            .map(|a| (a.node.clone(), a.reply.clone(), a.actor.clone()));
        if let Some((node, reply, Some(actor))) = best {
            let local = {
                let store = self.store.lock_or_recover();
                (store.last_ballot(), store.last_index())
            };
            if (reply.last_ballot, reply.last_index) > local || self.store.lock_or_recover().damaged() {
                self.catch_up(&node, &actor, reply.last_index, ballot).await?;
            }
        }
        tracing::info!(log = %name, ballot = ?ballot, replicas = promised.len(), needed, "leading the log");

        // The leader entry: committing it commits everything before it.
        let first_own = {
            let mut store = self.store.lock_or_recover();
            if store.promised() != ballot {
                return Err(LogError::Deposed {
                    log: name,
                    by: (store.promised().token, store.promised().attempt),
                });
            }
            let index = store.last_index() + 1;
            store
                .append(&[Stored { index, ballot, kind: Kind::Leader, data: Vec::new() }])
                .map_err(|e| self.store_error(&e))?;
            index
        };
        let shared = Arc::new(Shared {
            log: self.clone(),
            ballot,
            pending: Mutex::new(Pending { next: first_own + 1, entries: Vec::new() }),
            wake: Notify::new(),
            written: watch::channel(first_own).0,
            leading: watch::channel(Leading::Committed(0)).0,
            matched: Mutex::new(HashMap::new()),
            first_own,
        });
        let writer = Writer {
            tasks: vec![tokio::spawn(flush(shared.clone())), tokio::spawn(replicate(shared.clone()))],
            shared: shared.clone(),
        };
        shared.recount();
        let commit = Commit { index: first_own, leading: shared.leading.subscribe() };
        let remaining =
            deadline.saturating_duration_since(Instant::now()).max(self.inner.config.call_timeout);
        match tokio::time::timeout(remaining, commit.committed()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                let reached =
                    1 + shared.matched.lock_or_recover().values().filter(|m| **m >= first_own).count();
                return Err(LogError::NoMajority {
                    log: name,
                    reached,
                    needed: self.majority(),
                    damaged: String::new(),
                });
            }
        }
        // This node's replica holds this leader's log, committed up to the leader entry: if it
        // was damaged, it is whole again.
        {
            let mut store = self.store.lock_or_recover();
            if store.damaged() {
                match store.repaired() {
                    Ok(()) => tracing::info!(log = %name, "this node's damaged replica is repaired"),
                    Err(e) => tracing::warn!(log = %name, error = %e, "cannot record the repair"),
                }
            }
        }
        let entries = self.local_entries(first_own - 1)?;
        Ok((writer, entries))
    }

    /// Makes this node's replica a copy of `node`'s (which holds entries up to `last`): finds
    /// the last entry they share, then copies the rest through the append rule under `ballot`
    /// (so that nothing is written here if another leader took over meanwhile, and a suffix is
    /// dropped only where it conflicts).
    async fn catch_up(
        &self,
        node: &str,
        actor: &ActorRef<ReplicaMsg>,
        last: u64,
        ballot: Ballot,
    ) -> Result<(), LogError> {
        let unreachable = || LogError::NoMajority {
            log: self.name().to_string(),
            reached: 0,
            needed: 1,
            damaged: String::new(),
        };
        // The last index both hold with one ballot, and that ballot.
        let mut at = self.store.lock_or_recover().last_index().min(last);
        let mut step = 1;
        let mut prev_ballot = Ballot::default();
        while at > 0 {
            let read = self.call_read(actor, at).await.ok_or_else(unreachable)?;
            let theirs = read.entries.first().filter(|e| e.index == at).map(|e| e.ballot);
            if theirs.is_some() && theirs == self.store.lock_or_recover().ballot_at(at) {
                prev_ballot = theirs.unwrap_or_default();
                break;
            }
            at = at.saturating_sub(step);
            step *= 2;
        }
        let mut copied = 0u64;
        while at < last {
            let read = self.call_read(actor, at + 1).await.ok_or_else(unreachable)?;
            if let Some(error) = read.error {
                return Err(LogError::Store {
                    log: self.name().to_string(),
                    message: format!("{node}: {error}"),
                });
            }
            let Some(end) = read.entries.last().map(|e| (e.index, e.ballot)) else { break };
            let count = read.entries.len() as u64;
            let request =
                AppendRequest { ballot, prev_index: at, prev_ballot, entries: read.entries, commit: 0 };
            let answer = replica::append(&mut self.store.lock_or_recover(), request);
            if answer.promised > ballot {
                return Err(LogError::Deposed {
                    log: self.name().to_string(),
                    by: (answer.promised.token, answer.promised.attempt),
                });
            }
            if !answer.ok {
                let why =
                    answer.error.unwrap_or_else(|| "the local replica changed while catching up".into());
                return Err(LogError::Store { log: self.name().to_string(), message: why });
            }
            (at, prev_ballot) = end;
            copied += count;
        }
        // Anything here beyond the best replica's log is an earlier leader's, never committed.
        let mut store = self.store.lock_or_recover();
        if store.promised() != ballot {
            let by = store.promised();
            return Err(LogError::Deposed { log: self.name().to_string(), by: (by.token, by.attempt) });
        }
        store.truncate_after(last).map_err(|e| self.store_error(&e))?;
        drop(store);
        tracing::info!(log = %self.name(), from = %node, copied, "this node's replica caught up from the best replica");
        Ok(())
    }

    /// The data entries of this node's replica up to `last`.
    fn local_entries(&self, last: u64) -> Result<Vec<Entry>, LogError> {
        let mut out = Vec::new();
        let mut from = 1;
        while from <= last {
            let batch = self.store.lock_or_recover().read(from, 4 << 20).map_err(|e| self.store_error(&e))?;
            if batch.is_empty() {
                break;
            }
            for entry in batch {
                from = entry.index + 1;
                if entry.index > last {
                    break;
                }
                if entry.kind == Kind::Data {
                    out.push(Entry { index: entry.index, data: entry.data });
                }
            }
        }
        Ok(out)
    }

    pub(crate) fn store_error(&self, e: &std::io::Error) -> LogError {
        LogError::Store { log: self.name().to_string(), message: e.to_string() }
    }
}

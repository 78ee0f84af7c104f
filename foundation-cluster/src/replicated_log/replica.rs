//! This node's replica of a log: the actor other nodes' leaders reach (pg group `NAME@NODE` in
//! scope [`SCOPE`](super::SCOPE)), and the rules it follows, which a leader on this node applies to
//! the same store directly.
//!
//! - **Promise** a ballot: granted if it is at least every ballot promised before (written to
//!   disk before the answer); the answer says how far the replica's log goes and whether it is
//!   damaged.
//! - **Append** entries after `prev`: refused below the promised ballot; refused as a mismatch
//!   unless the replica holds `prev` with the leader's ballot for it; otherwise entries it
//!   already holds with the same ballot are kept, a conflicting suffix is dropped, the rest is
//!   written and synced, and the answer is how far the replica now matches the leader.
//! - **Read** entries from an index (a new leader catching up from the best replica).

use std::sync::{Arc, Mutex};

use foundation_actors::wire::Wire;
use foundation_core::sync::MutexRecover;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};

use super::store::{Ballot, Store, Stored};

/// A new leader's request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PromiseRequest {
    pub(crate) ballot: Ballot,
}

/// Entries from a leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AppendRequest {
    pub(crate) ballot: Ballot,
    pub(crate) prev_index: u64,
    pub(crate) prev_ballot: Ballot,
    pub(crate) entries: Vec<Stored>,
    /// The leader's commit index (a damaged replica that reaches it is repaired).
    pub(crate) commit: u64,
}

/// A replica's answer to a promise or an append.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ReplicaReply {
    /// Granted (promise) or written (append).
    pub(crate) ok: bool,
    /// The highest ballot this replica promised (above the asker's: the asker is deposed).
    pub(crate) promised: Ballot,
    /// After an append that succeeded: the replica holds the leader's log up to here.
    pub(crate) matched: u64,
    pub(crate) last_index: u64,
    pub(crate) last_ballot: Ballot,
    pub(crate) damaged: bool,
    /// The replica could not write or read its file.
    pub(crate) error: Option<String>,
}

/// Entries from an index, for a catching-up leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ReadRequest {
    pub(crate) from: u64,
    pub(crate) max_bytes: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ReadReply {
    pub(crate) entries: Vec<Stored>,
    pub(crate) error: Option<String>,
}

#[derive(RactorClusterMessage)]
pub(crate) enum ReplicaMsg {
    #[rpc]
    Promise(Wire<PromiseRequest>, RpcReplyPort<Wire<ReplicaReply>>),
    #[rpc]
    Append(Wire<AppendRequest>, RpcReplyPort<Wire<ReplicaReply>>),
    #[rpc]
    Read(Wire<ReadRequest>, RpcReplyPort<Wire<ReadReply>>),
}

fn reply(store: &Store, ok: bool, matched: u64, error: Option<String>) -> ReplicaReply {
    ReplicaReply {
        ok,
        promised: store.promised(),
        matched,
        last_index: store.last_index(),
        last_ballot: store.last_ballot(),
        damaged: store.damaged(),
        error,
    }
}

/// The promise rule.
pub(crate) fn promise(store: &mut Store, ballot: Ballot) -> ReplicaReply {
    match store.promise(ballot) {
        Ok(ok) => reply(store, ok, 0, None),
        Err(e) => reply(store, false, 0, Some(format!("cannot record the promise: {e}"))),
    }
}

/// The append rule.
pub(crate) fn append(store: &mut Store, request: AppendRequest) -> ReplicaReply {
    match store.promise(request.ballot) {
        Ok(true) => {}
        Ok(false) => return reply(store, false, 0, None),
        Err(e) => return reply(store, false, 0, Some(format!("cannot record the promise: {e}"))),
    }
    if store.ballot_at(request.prev_index) != Some(request.prev_ballot) {
        return reply(store, false, 0, None);
    }
    if request.entries.iter().enumerate().any(|(i, e)| e.index != request.prev_index + 1 + i as u64) {
        return reply(store, false, 0, Some("entries out of order".into()));
    }
    let matched = request.prev_index + request.entries.len() as u64;
    // Skip what is already here from this leader; drop a conflicting suffix (an earlier
    // leader's entries that were never committed).
    let mut new = Vec::with_capacity(request.entries.len());
    for entry in request.entries {
        if new.is_empty() {
            match store.ballot_at(entry.index) {
                Some(ballot) if ballot == entry.ballot => continue,
                Some(_) => {
                    if let Err(e) = store.truncate_after(entry.index - 1) {
                        return reply(
                            store,
                            false,
                            0,
                            Some(format!("cannot drop a conflicting suffix: {e}")),
                        );
                    }
                }
                None => {}
            }
        }
        new.push(entry);
    }
    if let Err(e) = store.append(&new) {
        return reply(store, false, 0, Some(format!("cannot write: {e}")));
    }
    if store.damaged() && matched >= request.commit {
        match store.repaired() {
            Ok(()) => tracing::info!(log = %store.path().display(), "a damaged replica is repaired"),
            Err(e) => tracing::warn!(log = %store.path().display(), error = %e, "cannot record the repair"),
        }
    }
    reply(store, true, matched, None)
}

/// The read rule.
pub(crate) fn read(store: &Store, request: &ReadRequest) -> ReadReply {
    match store.read(request.from, request.max_bytes) {
        Ok(entries) => ReadReply { entries, error: None },
        Err(e) => ReadReply { entries: Vec::new(), error: Some(e.to_string()) },
    }
}

pub(crate) struct ReplicaActor {
    pub(crate) store: Arc<Mutex<Store>>,
    pub(crate) group: String,
    pub(crate) max_frame_bytes: usize,
}

impl ReplicaActor {
    /// Room for one answer: the frame limit less what the envelope takes.
    fn room(&self) -> usize {
        self.max_frame_bytes.saturating_sub(super::ENVELOPE_BYTES)
    }
}

impl Actor for ReplicaActor {
    type Msg = ReplicaMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<ReplicaMsg>, _: ()) -> Result<(), ActorProcessingErr> {
        ractor::pg::join_scoped(super::SCOPE.to_string(), self.group.clone(), vec![myself.get_cell()]);
        Ok(())
    }

    async fn post_stop(&self, myself: ActorRef<ReplicaMsg>, _: &mut ()) -> Result<(), ActorProcessingErr> {
        ractor::pg::leave_scoped(super::SCOPE.to_string(), self.group.clone(), vec![myself.get_cell()]);
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<ReplicaMsg>,
        msg: ReplicaMsg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        // Answers are small (no entries) except reads, which are cut to fit.
        match msg {
            ReplicaMsg::Promise(request, port) => {
                let Ok(request) = request.into_inner() else { return Ok(()) };
                let answer = promise(&mut self.store.lock_or_recover(), request.ballot);
                let _ = port.send(Wire::encode_or(&answer, usize::MAX, |_| answer.clone()));
            }
            ReplicaMsg::Append(request, port) => {
                let Ok(request) = request.into_inner() else { return Ok(()) };
                let answer = append(&mut self.store.lock_or_recover(), request);
                let _ = port.send(Wire::encode_or(&answer, usize::MAX, |_| answer.clone()));
            }
            ReplicaMsg::Read(request, port) => {
                let Ok(mut request) = request.into_inner() else { return Ok(()) };
                request.max_bytes = request.max_bytes.min(self.room());
                let answer = read(&self.store.lock_or_recover(), &request);
                let answer = Wire::encode_or(&answer, self.max_frame_bytes, |e| ReadReply {
                    entries: Vec::new(),
                    error: Some(format!("an entry does not fit a message: {e}")),
                });
                let _ = port.send(answer);
            }
        }
        Ok(())
    }
}

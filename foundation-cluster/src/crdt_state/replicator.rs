//! The per-node replicator actor: merges what peers send, answers their reads and writes, and
//! runs anti-entropy gossip. The values themselves live in a [`Store`] shared with this node's
//! [`Replicator`](super::Replicator) handles, so a restart of the actor loses nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use foundation_actors::wire::Wire;
use foundation_core::crdt::Crdt;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{CrdtValue, ReplicatorConfig};
use crate::Cluster;

/// The pg scope of replicators: each joins the group `NAME@NODE` there.
pub const SCOPE: &str = "foundation.crdt";

/// Bytes kept free in a message for its envelope (sender, counts): this, or a quarter of the
/// limit if that is less.
const ENVELOPE: usize = 1024;
/// Bytes an entry takes besides its key and value (lengths).
const ENTRY_OVERHEAD: usize = 8;
/// Bytes a digest entry takes besides its key (digest, lengths).
const DIGEST_ENTRY: usize = 16;

/// Values sent by a writer (its node name, then keys and whole values).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Entries {
    pub(crate) from: String,
    pub(crate) entries: Vec<(String, CrdtValue)>,
}

/// A majority read's question.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ReadRequest {
    pub(crate) from: String,
    pub(crate) key: String,
}

/// Its answer: the key's value there, if any.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ReadReply {
    pub(crate) value: Option<CrdtValue>,
}

/// A gossip round's opening: digests of the sender's keys in one range of the key space, from
/// `start` (inclusive; `None`: the first key) to `end` (exclusive; `None`: past the last key).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Status {
    from: String,
    start: Option<String>,
    end: Option<String>,
    digests: Vec<(String, u64)>,
}

impl Status {
    fn covers(&self, key: &str) -> bool {
        self.start.as_deref().is_none_or(|s| key >= s) && self.end.as_deref().is_none_or(|e| key < e)
    }
}

/// Gossip: values the receiver lacks or holds differently, and the keys the sender wants back.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Gossip {
    from: String,
    entries: Vec<(String, CrdtValue)>,
    want: Vec<String>,
}

/// The replicator's messages (remotable: peers send them).
#[derive(RactorClusterMessage)]
pub(crate) enum ReplicatorMsg {
    /// A peer's local-consistency write: merge, no answer.
    Update(Wire<Entries>),
    /// A peer's majority write: merge, then answer `true`.
    #[rpc]
    Write(Wire<Entries>, RpcReplyPort<bool>),
    /// A peer's majority read: answer with this node's value.
    #[rpc]
    Read(Wire<ReadRequest>, RpcReplyPort<Wire<ReadReply>>),
    /// A peer opens a gossip round.
    Status(Wire<Status>),
    /// A peer's gossip.
    Gossip(Wire<Gossip>),
    /// Time to open a gossip round with the next peer.
    Tick,
}

/// One key's value, with its encoded size and digest.
struct Entry {
    value: CrdtValue,
    size: usize,
    digest: u64,
}

impl Entry {
    fn new(value: CrdtValue) -> Self {
        let bytes = foundation_actors::wire::encode(&value, usize::MAX).unwrap_or_default();
        Entry { size: bytes.len(), digest: fnv1a(&bytes), value }
    }
}

/// FNV-1a, 64 bits: the same in every process and version (digests are compared across nodes,
/// so `std`'s hasher, which may change between Rust versions, is not used).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// This node's values, shared by its replicator actor and its handles.
#[derive(Default)]
pub(crate) struct Store {
    entries: BTreeMap<String, Entry>,
    watchers: HashMap<String, watch::Sender<Option<CrdtValue>>>,
}

impl Store {
    pub(crate) fn get(&self, key: &str) -> Option<&CrdtValue> {
        self.entries.get(key).map(|e| &e.value)
    }

    pub(crate) fn keys(&self) -> Vec<(String, super::CrdtKind)> {
        self.entries.iter().map(|(k, e)| (k.clone(), e.value.kind())).collect()
    }

    /// Replaces `key`'s value by a local write (already merged with the current value).
    pub(crate) fn put(&mut self, key: &str, value: CrdtValue) {
        self.entries.insert(key.to_string(), Entry::new(value.clone()));
        metrics::gauge!("foundation_crdt_keys").set(self.entries.len() as f64);
        self.notify(key, value);
    }

    /// Merges a value from elsewhere into `key`; whether the value changed.
    pub(crate) fn merge_in(&mut self, key: &str, value: &CrdtValue, from: &str) -> bool {
        let merged = match self.entries.get(key) {
            Some(mine) => {
                if mine.value.kind() != value.kind() {
                    let kept = mine.value.kind().min(value.kind());
                    tracing::warn!(
                        %key, %from, mine = %mine.value.kind(), theirs = %value.kind(), %kept,
                        "a CRDT key was created with two different types; keeping the first kind everywhere"
                    );
                    metrics::counter!("foundation_crdt_type_conflicts_total").increment(1);
                }
                let merged = mine.value.merged(value);
                if merged == mine.value {
                    return false;
                }
                merged
            }
            None => value.clone(),
        };
        metrics::counter!("foundation_crdt_merges_total").increment(1);
        self.put(key, merged);
        true
    }

    pub(crate) fn watch(&mut self, key: &str) -> watch::Receiver<Option<CrdtValue>> {
        let current = self.get(key).cloned();
        self.watchers.entry(key.to_string()).or_insert_with(|| watch::channel(current).0).subscribe()
    }

    fn notify(&mut self, key: &str, value: CrdtValue) {
        if let Some(tx) = self.watchers.get(key) {
            if tx.receiver_count() == 0 {
                self.watchers.remove(key);
            } else {
                tx.send_replace(Some(value));
            }
        }
    }

    /// Ends every subscription (the replicator stopped).
    pub(crate) fn close_watchers(&mut self) {
        self.watchers.clear();
    }
}

/// What a replicator and its handles share.
pub(crate) struct Shared {
    pub(crate) cluster: Cluster,
    pub(crate) config: ReplicatorConfig,
    /// Largest message sent: the config's, capped by the cluster's frame limit.
    pub(crate) max_bytes: usize,
    pub(crate) store: Mutex<Store>,
}

impl Shared {
    pub(crate) fn node(&self) -> &str {
        self.cluster.name()
    }

    pub(crate) fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This node's pg group.
    pub(crate) fn group(&self) -> String {
        format!("{}@{}", self.config.name, self.node())
    }

    /// The replicators of the other nodes reachable now, by node name (sorted).
    pub(crate) fn peers(&self) -> Vec<(String, ActorRef<ReplicatorMsg>)> {
        let (scope, prefix) = (SCOPE.to_string(), format!("{}@", self.config.name));
        let mut peers: Vec<_> = ractor::pg::which_scoped_groups(&scope)
            .into_iter()
            .filter_map(|g| {
                let node = g.strip_prefix(&prefix)?.to_string();
                if node == self.node() || self.cluster.is_blocked(&node) {
                    return None;
                }
                let member = ractor::pg::get_scoped_members(&scope, &g).into_iter().find(|c| {
                    !c.get_id().is_local()
                        && !matches!(
                            c.get_status(),
                            ractor::ActorStatus::Stopping | ractor::ActorStatus::Stopped
                        )
                })?;
                Some((node, ActorRef::<ReplicatorMsg>::from(member)))
            })
            .collect();
        peers.sort_by(|a, b| a.0.cmp(&b.0));
        peers
    }

    /// Payload bytes a message may carry (its values or digests).
    pub(crate) fn payload_budget(&self) -> usize {
        self.max_bytes - ENVELOPE.min(self.max_bytes / 4)
    }

    /// Refuses a value that would not fit a gossip message on its own: (its size, the limit).
    pub(crate) fn check_fits(&self, key: &str, value: &CrdtValue) -> Result<(), (usize, usize)> {
        let size = key.len() + Entry::new(value.clone()).size + ENTRY_OVERHEAD;
        let max = self.payload_budget();
        if size > max {
            return Err((size, max));
        }
        Ok(())
    }

    fn peer(&self, node: &str) -> Option<ActorRef<ReplicatorMsg>> {
        self.peers().into_iter().find(|(n, _)| n == node).map(|(_, a)| a)
    }

    /// Nodes a majority is counted over: this one, every node seen that did not leave on
    /// purpose (up or down: a partition's both sides must not both have a majority), and seeds
    /// never reached (as for singletons). Observer nodes (`status-*`) do not count.
    pub(crate) fn known_nodes(&self) -> usize {
        let all = self.cluster.members();
        let members = all
            .iter()
            .filter(|m| {
                !m.name.starts_with(crate::singleton::OBSERVER_PREFIX)
                    && m.status != crate::MemberStatus::Left
            })
            .count();
        let unreached =
            self.cluster.seeds().iter().filter(|s| !all.iter().any(|m| m.addr == s.to_string())).count();
        members + 1 + unreached
    }

    /// Merges entries from a peer; ignored if the peer is blocked (test partition).
    fn merge_entries(&self, from: &str, entries: &[(String, CrdtValue)]) {
        if self.cluster.is_blocked(from) {
            return;
        }
        let mut store = self.store();
        for (key, value) in entries {
            store.merge_in(key, value, from);
        }
    }

    /// Sends `entries` to `peer` as gossip, in as many messages as the size limit needs; the
    /// first one carries `want`.
    fn send_gossip(
        &self,
        peer: &ActorRef<ReplicatorMsg>,
        entries: Vec<(String, CrdtValue)>,
        want: Vec<String>,
    ) {
        let (messages, too_large) = {
            let store = self.store();
            batches(&store, self.node(), entries, want, self.payload_budget())
        };
        for key in too_large {
            metrics::counter!("foundation_crdt_dropped_total", "reason" => "too_large").increment(1);
            let max = self.max_bytes;
            tracing::warn!(%key, max, "a CRDT value is too large to gossip; it is not replicated");
        }
        for (msg, bytes) in messages {
            metrics::counter!("foundation_crdt_gossip_bytes_total", "kind" => "values")
                .increment(bytes as u64);
            match Wire::encode(&msg, self.max_bytes) {
                Ok(wire) => {
                    let _ = peer.cast(ReplicatorMsg::Gossip(wire));
                }
                Err(e) => {
                    metrics::counter!("foundation_crdt_dropped_total", "reason" => "too_large").increment(1);
                    tracing::warn!(error = %e, "CRDT gossip not sent");
                }
            }
        }
    }

    /// Opens a gossip round with the next peer (round robin): sends it the digests of the next
    /// range of this node's keys (each peer has its own cursor, so every peer is offered every key
    /// in turn).
    fn gossip_round(&self, round: u64, cursors: &mut HashMap<String, Option<String>>) {
        let peers = self.peers();
        cursors.retain(|node, _| peers.iter().any(|(n, _)| n == node));
        if peers.is_empty() {
            return;
        }
        let (node, peer) = &peers[(round % peers.len() as u64) as usize];
        let cursor = cursors.entry(node.clone()).or_default();
        let (status, bytes) = self.store().status(
            self.node(),
            cursor.as_deref(),
            self.payload_budget(),
            self.config.max_digests_per_round,
        );
        cursor.clone_from(&status.end);
        metrics::counter!("foundation_crdt_gossip_rounds_total").increment(1);
        metrics::counter!("foundation_crdt_gossip_bytes_total", "kind" => "digests").increment(bytes as u64);
        match Wire::encode(&status, self.max_bytes) {
            Ok(wire) => {
                let _ = peer.cast(ReplicatorMsg::Status(wire));
            }
            Err(e) => tracing::warn!(error = %e, "CRDT gossip status not sent"),
        }
    }

    /// A peer's status: send what it lacks or holds differently, ask for what this node lacks
    /// or holds differently.
    fn answer_status(&self, status: Status) {
        if self.cluster.is_blocked(&status.from) {
            return;
        }
        let Some(peer) = self.peer(&status.from) else { return };
        let (send, want) = self.store().diff(&status);
        self.send_gossip(&peer, send, want);
    }

    fn answer_gossip(&self, gossip: Gossip) {
        if self.cluster.is_blocked(&gossip.from) {
            return;
        }
        self.merge_entries(&gossip.from, &gossip.entries);
        if gossip.want.is_empty() {
            return;
        }
        let Some(peer) = self.peer(&gossip.from) else { return };
        let wanted = self.store().values(&gossip.want);
        self.send_gossip(&peer, wanted, Vec::new());
    }
}

impl Store {
    /// A gossip round's status: the digests of the keys from `start` (`None`: the first), as
    /// many as fit `max_digests` digests and `budget` bytes; its `end` is where the next round
    /// starts (`None` once the last key is in). With its payload size.
    fn status(&self, from: &str, start: Option<&str>, budget: usize, max_digests: usize) -> (Status, usize) {
        use std::ops::Bound;
        let lower = start.map_or(Bound::Unbounded, Bound::Included);
        let (mut digests, mut bytes, mut end) = (Vec::new(), 0, None);
        for (key, entry) in self.entries.range::<str, _>((lower, Bound::Unbounded)) {
            let size = key.len() + DIGEST_ENTRY;
            // At least one digest per round, so that the cursor always moves.
            if !digests.is_empty() && (digests.len() >= max_digests.max(1) || bytes + size > budget) {
                end = Some(key.clone());
                break;
            }
            bytes += size;
            digests.push((key.clone(), entry.digest));
        }
        (Status { from: from.to_string(), start: start.map(str::to_string), end, digests }, bytes)
    }

    /// For a peer's status: the values in its range that it lacks or holds differently, and the
    /// keys it has that this node lacks or holds differently.
    fn diff(&self, status: &Status) -> (Vec<(String, CrdtValue)>, Vec<String>) {
        let theirs: HashMap<&str, u64> = status.digests.iter().map(|(k, d)| (k.as_str(), *d)).collect();
        let send = self
            .entries
            .iter()
            .filter(|(k, _)| status.covers(k))
            .filter(|(k, e)| theirs.get(k.as_str()) != Some(&e.digest))
            .map(|(k, e)| (k.clone(), e.value.clone()))
            .collect();
        let want = status
            .digests
            .iter()
            .filter(|(k, d)| self.entries.get(k).is_none_or(|e| e.digest != *d))
            .map(|(k, _)| k.clone())
            .collect();
        (send, want)
    }

    /// The values of `keys` this node has.
    fn values(&self, keys: &[String]) -> Vec<(String, CrdtValue)> {
        keys.iter().filter_map(|k| Some((k.clone(), self.get(k)?.clone()))).collect()
    }
}

/// Splits `entries` into gossip messages of at most about `budget` payload bytes each (the first
/// carries `want`), with their payload sizes; and the keys whose value alone is over `budget`
/// (not sent).
fn batches(
    store: &Store,
    from: &str,
    entries: Vec<(String, CrdtValue)>,
    want: Vec<String>,
    budget: usize,
) -> (Vec<(Gossip, usize)>, Vec<String>) {
    let message = |entries, want| Gossip { from: from.to_string(), entries, want };
    let (mut messages, mut too_large) = (Vec::new(), Vec::new());
    let mut bytes: usize = want.iter().map(|k| k.len() + ENTRY_OVERHEAD).sum();
    let (mut batch, mut want) = (Vec::new(), Some(want));
    for (key, value) in entries {
        let size = key.len() + store.entries.get(&key).map_or(0, |e| e.size) + ENTRY_OVERHEAD;
        if size > budget {
            too_large.push(key);
            continue;
        }
        if bytes + size > budget && !(batch.is_empty() && want.as_ref().is_none_or(Vec::is_empty)) {
            messages.push((message(std::mem::take(&mut batch), want.take().unwrap_or_default()), bytes));
            bytes = 0;
        }
        bytes += size;
        batch.push((key, value));
    }
    let want = want.unwrap_or_default();
    if !batch.is_empty() || !want.is_empty() {
        messages.push((message(batch, want), bytes));
    }
    (messages, too_large)
}

/// The replicator actor (one per node and replicator name, under a supervisor).
pub(crate) struct ReplicatorActor;

/// Its state: the shared store and the gossip round counter.
pub(crate) struct ActorState {
    shared: Arc<Shared>,
    round: u64,
    /// Per peer, where the next gossip round with it starts in the key space.
    cursors: HashMap<String, Option<String>>,
}

impl Actor for ReplicatorActor {
    type Msg = ReplicatorMsg;
    type State = ActorState;
    type Arguments = Arc<Shared>;

    async fn pre_start(
        &self,
        myself: ActorRef<ReplicatorMsg>,
        shared: Arc<Shared>,
    ) -> Result<ActorState, ActorProcessingErr> {
        ractor::pg::join_scoped(SCOPE.to_string(), shared.group(), vec![myself.get_cell()]);
        myself.send_interval(shared.config.gossip_interval, || ReplicatorMsg::Tick);
        Ok(ActorState { shared, round: 0, cursors: HashMap::new() })
    }

    async fn post_stop(
        &self,
        myself: ActorRef<ReplicatorMsg>,
        state: &mut ActorState,
    ) -> Result<(), ActorProcessingErr> {
        ractor::pg::leave_scoped(SCOPE.to_string(), state.shared.group(), vec![myself.get_cell()]);
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<ReplicatorMsg>,
        msg: ReplicatorMsg,
        state: &mut ActorState,
    ) -> Result<(), ActorProcessingErr> {
        let shared = &state.shared;
        // Messages that do not decode were counted and logged by the wire adapter: skipped.
        match msg {
            ReplicatorMsg::Tick => {
                shared.gossip_round(state.round, &mut state.cursors);
                state.round = state.round.wrapping_add(1);
            }
            ReplicatorMsg::Update(wire) => {
                if let Ok(update) = wire.into_inner() {
                    shared.merge_entries(&update.from, &update.entries);
                }
            }
            ReplicatorMsg::Write(wire, reply) => {
                if let Ok(update) = wire.into_inner()
                    && !shared.cluster.is_blocked(&update.from)
                {
                    shared.merge_entries(&update.from, &update.entries);
                    let _ = reply.send(true);
                }
            }
            ReplicatorMsg::Read(wire, reply) => {
                if let Ok(request) = wire.into_inner()
                    && !shared.cluster.is_blocked(&request.from)
                {
                    let value = shared.store().get(&request.key).cloned();
                    match Wire::encode(&ReadReply { value }, shared.max_bytes) {
                        Ok(answer) => {
                            let _ = reply.send(answer);
                        }
                        Err(e) => tracing::warn!(key = %request.key, error = %e, "CRDT read not answered"),
                    }
                }
            }
            ReplicatorMsg::Status(wire) => {
                if let Ok(status) = wire.into_inner() {
                    shared.answer_status(status);
                }
            }
            ReplicatorMsg::Gossip(wire) => {
                if let Ok(gossip) = wire.into_inner() {
                    shared.answer_gossip(gossip);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use foundation_actors::wire::encode;
    use foundation_core::crdt::GCounter;

    use super::*;

    fn counter(replica: &str, n: u64) -> CrdtValue {
        let mut c = GCounter::new();
        c.increment(replica, n);
        CrdtValue::GCounter(c)
    }

    fn digests(store: &Store) -> Vec<(String, u64)> {
        store.entries.iter().map(|(k, e)| (k.clone(), e.digest)).collect()
    }

    /// One gossip round opened by `a` with `b` from `a`'s cursor, as the actors run it, every
    /// message checked against the size limit `max`. Whether `a` offered only part of its keys.
    fn round(
        a: &mut Store,
        b: &mut Store,
        cursor: &mut Option<String>,
        max: usize,
        max_digests: usize,
    ) -> bool {
        let budget = max - ENVELOPE.min(max / 4);
        let (status, _) = a.status("a", cursor.as_deref(), budget, max_digests);
        cursor.clone_from(&status.end);
        assert!(status.digests.len() <= max_digests);
        encode(&status, max).unwrap();
        let (send, want) = b.diff(&status);
        let (messages, too_large) = batches(b, "b", send, want, budget);
        assert!(too_large.is_empty());
        for (gossip, _) in messages {
            encode(&gossip, max).unwrap();
            for (k, v) in &gossip.entries {
                a.merge_in(k, v, "b");
            }
            let (replies, too_large) = batches(a, "a", a.values(&gossip.want), Vec::new(), budget);
            assert!(too_large.is_empty());
            for (reply, _) in replies {
                encode(&reply, max).unwrap();
                assert!(reply.want.is_empty());
                for (k, v) in &reply.entries {
                    b.merge_in(k, v, "a");
                }
            }
        }
        status.end.is_some()
    }

    #[test]
    fn gossip_in_small_chunks_and_batches_converges_both_ways() {
        let (mut a, mut b) = (Store::default(), Store::default());
        let key = |i: usize| format!("a-rather-long-key-name-to-fill-messages-{i:03}");
        for i in 0..60 {
            a.put(&key(i), counter("a", i as u64 + 1));
        }
        for i in 30..90 {
            b.put(&key(i), counter("b", 1));
        }
        let (max, max_digests) = (1024, 7);
        let (mut chunked, mut a_cursor, mut b_cursor) = (false, None, None);
        for _ in 0..200 {
            chunked |= round(&mut a, &mut b, &mut a_cursor, max, max_digests);
            chunked |= round(&mut b, &mut a, &mut b_cursor, max, max_digests);
            if digests(&a) == digests(&b) {
                break;
            }
        }
        assert!(chunked, "the digests were split into chunks");
        assert_eq!(digests(&a), digests(&b), "converged");
        assert_eq!(a.entries.len(), 90);
        for i in 0..90 {
            let CrdtValue::GCounter(c) = a.get(&key(i)).unwrap() else { panic!("a counter") };
            let expected = if i < 60 { i as u64 + 1 } else { 0 } + if i >= 30 { 1 } else { 0 };
            assert_eq!(c.value(), expected, "{}", key(i));
        }
    }

    #[test]
    fn a_value_over_the_budget_is_reported_not_sent() {
        let mut store = Store::default();
        store.put("small", counter("a", 1));
        let mut big = GCounter::new();
        for i in 0..100 {
            big.increment(&format!("replica-{i}"), 1);
        }
        store.put("big", CrdtValue::GCounter(big));
        let entries = store.values(&["small".to_string(), "big".to_string()]);
        let (messages, too_large) = batches(&store, "a", entries, Vec::new(), 200);
        assert_eq!(too_large, ["big"]);
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].0.entries.len(), 1);
    }

    #[test]
    fn digests_are_stable() {
        // FNV-1a test vectors: the digest must never change between versions.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}

//! The per-node replicator actor: merges what peers send, answers their reads and writes, and
//! runs anti-entropy gossip. The values themselves live in a [`Store`] shared with this node's
//! [`Replicator`](super::Replicator) handles, so a restart of the actor loses nothing.

use foundation_core::sync::MutexRecover;
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
pub const SCOPE: &str = foundation_actors::pg_scopes::CRDT;

/// Bytes kept free in a message for its envelope (sender, counts): this, or a quarter of the
/// limit if that is less.
const ENVELOPE: usize = 1024;
/// Bytes an entry takes besides its key and value (lengths).
const ENTRY_OVERHEAD: usize = 8;
/// Bytes a digest entry takes besides its key (digest, lengths).
const DIGEST_ENTRY: usize = 16;
/// Bytes a range bound (`start`, `end`, `resume`) takes besides its key (tag, length).
const BOUND_OVERHEAD: usize = 16;

/// The longest key a replicator accepts, in bytes (1 KiB), when the message limit allows it: keys
/// are also limited to a quarter of the payload a message may carry (`max_message_bytes`, capped
/// by `cluster.max_frame_bytes`, less the envelope), so that a gossip status always fits its
/// range's first and last keys and one digest. A longer key is refused with
/// [`CrdtError::KeyTooLong`](super::CrdtError::KeyTooLong).
pub const MAX_KEY_BYTES: usize = 1024;

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

/// Whether `key` is in the range from `start` (inclusive) to `end` (exclusive).
fn in_range(start: Option<&str>, end: Option<&str>, key: &str) -> bool {
    start.is_none_or(|s| key >= s) && end.is_none_or(|e| key < e)
}

/// Gossip: values the receiver lacks or holds differently, and the keys the sender wants back.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Gossip {
    from: String,
    entries: Vec<(String, CrdtValue)>,
    want: Vec<String>,
    /// In an answer to a status: the key of its range where the answer stopped (it sends at most
    /// a message's worth of values); the receiver starts its next round with the sender there.
    /// `None`: the whole range was answered.
    resume: Option<String>,
}

/// Per peer, where the gossip rounds with it are in the key space.
#[derive(Debug, Default)]
pub(crate) struct Cursor {
    /// Where the next round starts (`None`: the first key).
    next: Option<String>,
    /// The range of the last status sent, until its answer says where it stopped.
    open: Option<(Option<String>, Option<String>)>,
}

impl Cursor {
    /// A status was sent: the next round starts where its range ends.
    fn sent(&mut self, status: &Status) {
        self.next.clone_from(&status.end);
        self.open = Some((status.start.clone(), status.end.clone()));
    }

    /// The answer to the last status stopped at `key`: the next round starts there, so the rest
    /// of that range is compared next time. Ignored unless `key` is past the start of the last
    /// status's range and before its end (a late answer to an older round).
    fn resume(&mut self, key: String) {
        let Some((start, end)) = &self.open else { return };
        if start.as_deref().is_none_or(|s| key.as_str() > s) && in_range(None, end.as_deref(), &key) {
            self.next = Some(key);
            self.open = None;
        }
    }
}

/// The replicator's messages (remotable: peers send them).
#[derive(RactorClusterMessage)]
pub(crate) enum ReplicatorMsg {
    /// A peer's local-consistency write: merge, no answer.
    Update(Wire<Entries>),
    /// A peer's majority write: merge, then answer whether every entry was stored (`false`:
    /// one was refused, e.g. a key too long here, and the writer must not count this node).
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
        // Not a send: the encoding only measures the value and digests it here (no limit is
        // due). What is sent is checked against the frame limit where it is sent.
        let bytes = foundation_actors::wire::encode(&value, usize::MAX).unwrap_or_default();
        Entry { size: bytes.len(), digest: foundation_core::hash::stable_hash(&bytes), value }
    }
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

    /// Merges entries from a peer, refusing keys longer than `max_key` (counted and logged);
    /// whether every entry was stored.
    fn merge_entries(&mut self, from: &str, entries: &[(String, CrdtValue)], max_key: usize) -> bool {
        let mut all = true;
        for (key, value) in entries {
            // Not stored: it could not be gossiped (a peer with another config sent it).
            if key.len() > max_key {
                metrics::counter!("foundation_crdt_dropped_total", "reason" => "key_too_long").increment(1);
                tracing::warn!(%from, size = key.len(), max_key, "a CRDT key from a peer is too long; ignored");
                all = false;
                continue;
            }
            self.merge_in(key, value, from);
        }
        all
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
        self.store.lock_or_recover()
    }

    /// This node's pg group.
    pub(crate) fn group(&self) -> String {
        format!("{}@{}", self.config.name, self.node())
    }

    /// The replicators of the other nodes reachable now, by node name (sorted).
    pub(crate) fn peers(&self) -> Vec<(String, ActorRef<ReplicatorMsg>)> {
        crate::pg_nodes::live_by_node(&self.cluster, SCOPE, &format!("{}@", self.config.name))
            .into_iter()
            .filter(|(node, member)| {
                node != self.node() && !self.cluster.is_blocked(node) && !member.get_id().is_local()
            })
            .map(|(node, member)| (node, ActorRef::<ReplicatorMsg>::from(member)))
            .collect()
    }

    /// Payload bytes a message may carry (its values or digests).
    pub(crate) fn payload_budget(&self) -> usize {
        self.max_bytes - ENVELOPE.min(self.max_bytes / 4)
    }

    /// The longest key accepted: [`MAX_KEY_BYTES`], or a quarter of
    /// [`payload_budget`](Self::payload_budget) if that is less (a status must fit its range's
    /// start and end keys and one digest).
    pub(crate) fn max_key_bytes(&self) -> usize {
        max_key_bytes(self.payload_budget())
    }

    /// Refuses a key longer than [`max_key_bytes`](Self::max_key_bytes): (its size, the limit).
    pub(crate) fn check_key(&self, key: &str) -> Result<(), (usize, usize)> {
        let max = self.max_key_bytes();
        if key.len() > max {
            return Err((key.len(), max));
        }
        Ok(())
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
        self.cluster.counted_members().1
    }

    /// Merges entries from a peer; ignored if the peer is blocked (test partition). Whether
    /// every entry was stored (merged, or already there): `false` if the peer is blocked or a
    /// key was refused.
    fn merge_entries(&self, from: &str, entries: &[(String, CrdtValue)]) -> bool {
        if self.cluster.is_blocked(from) {
            return false;
        }
        self.store().merge_entries(from, entries, self.max_key_bytes())
    }

    /// Sends `entries` to `peer` as gossip, in as many messages as the size limit needs; the
    /// first one carries `want` and `resume`.
    fn send_gossip(
        &self,
        peer: &ActorRef<ReplicatorMsg>,
        entries: Vec<(String, CrdtValue)>,
        want: Vec<String>,
        resume: Option<String>,
    ) {
        let (messages, too_large) = {
            let store = self.store();
            batches(&store, self.node(), entries, want, resume, self.payload_budget())
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
    /// in turn). The cursor moves only once the status is sent, and its answer may move it back
    /// to where the answer stopped ([`Cursor::resume`]).
    fn gossip_round(&self, round: u64, cursors: &mut HashMap<String, Cursor>) {
        let peers = self.peers();
        cursors.retain(|node, _| peers.iter().any(|(n, _)| n == node));
        if peers.is_empty() {
            return;
        }
        let (node, peer) = &peers[(round % peers.len() as u64) as usize];
        let cursor = cursors.entry(node.clone()).or_default();
        let (status, bytes) = self.store().status(
            self.node(),
            cursor.next.as_deref(),
            self.payload_budget(),
            self.config.max_digests_per_round,
        );
        metrics::counter!("foundation_crdt_gossip_rounds_total").increment(1);
        metrics::counter!("foundation_crdt_gossip_bytes_total", "kind" => "digests").increment(bytes as u64);
        match Wire::encode(&status, self.max_bytes) {
            Ok(wire) => match peer.cast(ReplicatorMsg::Status(wire)) {
                Ok(()) => cursor.sent(&status),
                Err(e) => tracing::debug!(%node, error = %e, "CRDT gossip status not sent"),
            },
            Err(e) => {
                // Move on past this range rather than rebuild the same unsendable status every
                // round (which would never offer the keys after it to this peer again).
                cursor.sent(&status);
                metrics::counter!("foundation_crdt_dropped_total", "reason" => "too_large").increment(1);
                tracing::warn!(%node, error = %e, "CRDT gossip status not sent; skipping its range this cycle");
            }
        }
    }

    /// A peer's status: send what it lacks or holds differently (at most a message's worth,
    /// saying where it stopped), ask for what this node lacks or holds differently.
    fn answer_status(&self, status: Status) {
        if self.cluster.is_blocked(&status.from) {
            return;
        }
        let Some(peer) = self.peer(&status.from) else { return };
        let answer = self.store().diff(&status, self.payload_budget(), self.config.max_digests_per_round);
        self.send_gossip(&peer, answer.send, answer.want, answer.resume);
    }

    fn answer_gossip(&self, gossip: Gossip, cursors: &mut HashMap<String, Cursor>) {
        if self.cluster.is_blocked(&gossip.from) {
            return;
        }
        self.merge_entries(&gossip.from, &gossip.entries);
        // A resume key longer than this node accepts (a peer with a larger message limit) would
        // start a status that cannot be sent: ignore it.
        if let Some(resume) = gossip.resume.filter(|k| k.len() <= self.max_key_bytes())
            && let Some(cursor) = cursors.get_mut(&gossip.from)
        {
            cursor.resume(resume);
        }
        if gossip.want.is_empty() {
            return;
        }
        let Some(peer) = self.peer(&gossip.from) else { return };
        let wanted = self.store().values(&gossip.want);
        self.send_gossip(&peer, wanted, Vec::new(), None);
    }
}

/// The longest key accepted with `budget` payload bytes a message (see [`MAX_KEY_BYTES`]).
fn max_key_bytes(budget: usize) -> usize {
    MAX_KEY_BYTES.min(budget / 4)
}

/// A peer's status answered: values to send, keys wanted back, and where the answer stopped.
pub(crate) struct Answer {
    send: Vec<(String, CrdtValue)>,
    want: Vec<String>,
    resume: Option<String>,
}

impl Store {
    /// A gossip round's status: the digests of the keys from `start` (`None`: the first), as
    /// many as fit `max_digests` digests and `budget` bytes (`start` and `end` included); its
    /// `end` is where the next round starts (`None` once the last key is in). With its payload
    /// size. Keys of at most a quarter of `budget` ([`max_key_bytes`]) always fit.
    fn status(&self, from: &str, start: Option<&str>, budget: usize, max_digests: usize) -> (Status, usize) {
        use std::ops::Bound;
        let lower = start.map_or(Bound::Unbounded, Bound::Included);
        let mut bytes = 2 * BOUND_OVERHEAD + start.map_or(0, str::len);
        let (mut digests, mut end) = (Vec::new(), None);
        let mut keys = self.entries.range::<str, _>((lower, Bound::Unbounded)).peekable();
        while let Some((key, entry)) = keys.next() {
            let size = key.len() + DIGEST_ENTRY;
            // Room for the next key too: it is the end if this one is the last to fit. (So when
            // a key does not fit, it fits as the end: the previous key made room for it.)
            let next = keys.peek().map_or(0, |(k, _)| k.len());
            // At least one digest per round, so that the cursor always moves.
            if !digests.is_empty() && (digests.len() >= max_digests.max(1) || bytes + size + next > budget) {
                end = Some(key.clone());
                break;
            }
            bytes += size;
            digests.push((key.clone(), entry.digest));
        }
        bytes += end.as_ref().map_or(0, String::len);
        (Status { from: from.to_string(), start: start.map(str::to_string), end, digests }, bytes)
    }

    /// For a peer's status: the keys it has that this node lacks or holds differently (`want`);
    /// and the values in its range that it lacks or holds differently, in key order, at most
    /// `max_entries` of them and as many as fit one message of `budget` bytes with `want` and
    /// `resume` (at least one; values over `budget` are left to [`batches`] to report), with the
    /// key where that stopped (`resume`).
    fn diff(&self, status: &Status, budget: usize, max_entries: usize) -> Answer {
        use std::ops::Bound;
        let theirs: HashMap<&str, u64> = status.digests.iter().map(|(k, d)| (k.as_str(), *d)).collect();
        let (start, end) = (status.start.as_deref(), status.end.as_deref());
        let want: Vec<String> = status
            .digests
            .iter()
            .filter(|(k, d)| self.entries.get(k).is_none_or(|e| e.digest != *d))
            .map(|(k, _)| k.clone())
            .collect();
        // Room for `want` and for `resume` (a key of this store: at most `max_key_bytes` long).
        let mut bytes = want.iter().map(|k| k.len() + ENTRY_OVERHEAD).sum::<usize>()
            + max_key_bytes(budget)
            + BOUND_OVERHEAD;
        let (mut send, mut resume, mut count) = (Vec::new(), None, 0);
        // An empty or inverted range (from a faulty peer) has nothing; `range` would panic.
        if start.zip(end).is_none_or(|(s, e)| s < e) {
            let lower = start.map_or(Bound::Unbounded, Bound::Included);
            let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
            for (key, entry) in self.entries.range::<str, _>((lower, upper)) {
                if theirs.get(key.as_str()) == Some(&entry.digest) {
                    continue;
                }
                let size = key.len() + entry.size + ENTRY_OVERHEAD;
                if size <= budget {
                    if count > 0 && (count >= max_entries.max(1) || bytes + size > budget) {
                        resume = Some(key.clone());
                        break;
                    }
                    bytes += size;
                    count += 1;
                }
                send.push((key.clone(), entry.value.clone()));
            }
        }
        Answer { send, want, resume }
    }

    /// The values of `keys` this node has.
    fn values(&self, keys: &[String]) -> Vec<(String, CrdtValue)> {
        keys.iter().filter_map(|k| Some((k.clone(), self.get(k)?.clone()))).collect()
    }
}

/// Splits `entries` into gossip messages of at most about `budget` payload bytes each (the first
/// carries `want` and `resume`), with their payload sizes; and the keys whose value alone is over
/// `budget` (not sent).
fn batches(
    store: &Store,
    from: &str,
    entries: Vec<(String, CrdtValue)>,
    want: Vec<String>,
    resume: Option<String>,
    budget: usize,
) -> (Vec<(Gossip, usize)>, Vec<String>) {
    let message = |entries, (want, resume)| Gossip { from: from.to_string(), entries, want, resume };
    let (mut messages, mut too_large) = (Vec::new(), Vec::new());
    let mut bytes: usize = want.iter().map(|k| k.len() + ENTRY_OVERHEAD).sum::<usize>()
        + resume.as_ref().map_or(0, |k| k.len() + BOUND_OVERHEAD);
    // What the first message carries besides values, until it is sent.
    let mut header = Some((want, resume));
    let header_empty = |h: &Option<(Vec<String>, Option<String>)>| {
        h.as_ref().is_none_or(|(w, r)| w.is_empty() && r.is_none())
    };
    let mut batch = Vec::new();
    for (key, value) in entries {
        let size = key.len() + store.entries.get(&key).map_or(0, |e| e.size) + ENTRY_OVERHEAD;
        if size > budget {
            too_large.push(key);
            continue;
        }
        if bytes + size > budget && !(batch.is_empty() && header_empty(&header)) {
            messages.push((message(std::mem::take(&mut batch), header.take().unwrap_or_default()), bytes));
            bytes = 0;
        }
        bytes += size;
        batch.push((key, value));
    }
    if !batch.is_empty() || !header_empty(&header) {
        messages.push((message(batch, header.unwrap_or_default()), bytes));
    }
    (messages, too_large)
}

/// The replicator actor (one per node and replicator name, under a supervisor).
pub(crate) struct ReplicatorActor;

/// Its state: the shared store and the gossip round counter.
pub(crate) struct ActorState {
    shared: Arc<Shared>,
    round: u64,
    /// Per peer, where the gossip rounds with it are in the key space.
    cursors: HashMap<String, Cursor>,
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
            ReplicatorMsg::Write(wire, reply) => match wire.into_inner() {
                // A blocked peer (test partition) hears nothing, as across a real one.
                Ok(update) if shared.cluster.is_blocked(&update.from) => {}
                // Acknowledged only if stored: a refused entry must not count towards the
                // writer's majority.
                Ok(update) => {
                    let stored = shared.merge_entries(&update.from, &update.entries);
                    let _ = reply.send(stored);
                }
                // Did not decode (counted and logged by the wire adapter): not stored.
                Err(_) => {
                    let _ = reply.send(false);
                }
            },
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
                    shared.answer_gossip(gossip, &mut state.cursors);
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

    /// What one gossip round carried: whether `a` offered only part of its keys, and the payload
    /// bytes and number of values of `b`'s answer to the status (its messages, not counting
    /// the replies to what `b` asked for).
    struct Round {
        chunked: bool,
        answer_bytes: usize,
        answer_values: usize,
    }

    /// One gossip round opened by `a` with `b` from `a`'s cursor, as the actors run it, every
    /// message checked against the size limit `max`.
    fn round(a: &mut Store, b: &mut Store, cursor: &mut Cursor, max: usize, max_digests: usize) -> Round {
        let budget = max - ENVELOPE.min(max / 4);
        let (status, _) = a.status("a", cursor.next.as_deref(), budget, max_digests);
        assert!(status.digests.len() <= max_digests);
        encode(&status, max).unwrap();
        cursor.sent(&status);
        let answer = b.diff(&status, budget, max_digests);
        let (messages, too_large) = batches(b, "b", answer.send, answer.want, answer.resume, budget);
        assert!(too_large.is_empty());
        let (mut answer_bytes, mut answer_values) = (0, 0);
        for (gossip, bytes) in messages {
            assert!(encode(&gossip, max).unwrap().len() <= max);
            answer_bytes += bytes;
            answer_values += gossip.entries.len();
            for (k, v) in &gossip.entries {
                a.merge_in(k, v, "b");
            }
            if let Some(resume) = gossip.resume {
                cursor.resume(resume);
            }
            let (replies, too_large) = batches(a, "a", a.values(&gossip.want), Vec::new(), None, budget);
            assert!(too_large.is_empty());
            for (reply, _) in replies {
                encode(&reply, max).unwrap();
                assert!(reply.want.is_empty());
                for (k, v) in &reply.entries {
                    b.merge_in(k, v, "a");
                }
            }
        }
        Round { chunked: status.end.is_some(), answer_bytes, answer_values }
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
        let (mut chunked, mut a_cursor, mut b_cursor) = (false, Cursor::default(), Cursor::default());
        for _ in 0..200 {
            chunked |= round(&mut a, &mut b, &mut a_cursor, max, max_digests).chunked;
            chunked |= round(&mut b, &mut a, &mut b_cursor, max, max_digests).chunked;
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
        let (messages, too_large) = batches(&store, "a", entries, Vec::new(), None, 200);
        assert_eq!(too_large, ["big"]);
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].0.entries.len(), 1);
    }

    /// A node that restarted empty opens rounds with a peer that holds many keys: its status covers
    /// the whole key space, yet every answer carries at most one message's worth of values (and
    /// at most `max_digests`), says where it stopped, and the next round resumes there, until the
    /// empty node has everything.
    #[test]
    fn an_empty_node_gets_bounded_answers_and_still_converges() {
        let (mut empty, mut full) = (Store::default(), Store::default());
        for i in 0..500 {
            full.put(&format!("key-{i:04}"), counter("full", i as u64 + 1));
        }
        let (max, max_digests) = (1024, 50);
        let budget = max - ENVELOPE.min(max / 4);
        let mut cursor = Cursor::default();
        let mut rounds = 0;
        while digests(&empty) != digests(&full) {
            rounds += 1;
            assert!(rounds <= 500, "converged: {} of 500 keys after 500 rounds", empty.entries.len());
            let round = round(&mut empty, &mut full, &mut cursor, max, max_digests);
            assert!(round.answer_bytes <= budget, "an answer of {} bytes, over {budget}", round.answer_bytes);
            assert!(round.answer_values <= max_digests);
            assert!(round.answer_values > 0, "every round makes progress");
        }
        assert!(rounds > 1, "the store was sent over several rounds ({rounds})");
        // The digest cap bounds an answer too.
        let (mut empty, mut cursor) = (Store::default(), Cursor::default());
        let round = round(&mut empty, &mut full, &mut cursor, 1 << 20, 7);
        assert_eq!(round.answer_values, 7);
        assert_eq!(cursor.next.as_deref(), Some("key-0007"), "the next round starts where it stopped");
    }

    /// Keys as long as accepted, the cursor in the middle of them: every status fits the limit
    /// (its start and end keys included) and the rounds cover every key, each once per pass.
    #[test]
    fn a_status_with_long_keys_fits_and_the_ranges_cover_every_key() {
        for max in [1024, 2048, 64 * 1024] {
            let budget = max - ENVELOPE.min(max / 4);
            let long = max_key_bytes(budget);
            let mut store = Store::default();
            // Enough for several statuses, so that most have a start and an end.
            for i in 0..4 * budget / long {
                let key = format!("{i:04}{}", "k".repeat(long - 4));
                store.put(&key, counter("a", 1));
            }
            let (mut cursor, mut seen, mut passes) = (Cursor::default(), Vec::new(), 0);
            while passes < 1 {
                let (status, bytes) = store.status("a-node-name", cursor.next.as_deref(), budget, 2000);
                assert!(bytes <= budget, "{bytes} payload bytes, over {budget} (max {max})");
                let encoded = encode(&status, max).unwrap_or_else(|e| panic!("max {max}: {e}"));
                assert!(encoded.len() <= max);
                assert!(!status.digests.is_empty());
                seen.extend(status.digests.iter().map(|(k, _)| k.clone()));
                cursor.sent(&status);
                passes += usize::from(status.end.is_none());
            }
            assert_eq!(seen, store.entries.keys().cloned().collect::<Vec<_>>(), "max {max}");
        }
        assert_eq!(max_key_bytes(DEFAULT_BUDGET), MAX_KEY_BYTES);
    }

    const DEFAULT_BUDGET: usize = super::super::DEFAULT_MAX_MESSAGE_BYTES - ENVELOPE;

    #[test]
    fn a_cursor_resumes_only_inside_the_last_range_sent() {
        let status = |start: Option<&str>, end: Option<&str>| Status {
            from: "a".into(),
            start: start.map(str::to_string),
            end: end.map(str::to_string),
            digests: Vec::new(),
        };
        let mut cursor = Cursor::default();
        cursor.resume("x".into());
        assert_eq!(cursor.next, None, "nothing was sent");
        cursor.sent(&status(Some("b"), Some("m")));
        assert_eq!(cursor.next.as_deref(), Some("m"));
        for outside in ["a", "b", "m", "z"] {
            cursor.resume(outside.into());
            assert_eq!(
                cursor.next.as_deref(),
                Some("m"),
                "{outside} is not past the start and before the end"
            );
        }
        cursor.resume("f".into());
        assert_eq!(cursor.next.as_deref(), Some("f"));
        cursor.resume("g".into());
        assert_eq!(cursor.next.as_deref(), Some("f"), "one resume per status");
        cursor.sent(&status(Some("f"), None));
        cursor.resume("zz".into());
        assert_eq!(cursor.next.as_deref(), Some("zz"));
    }

    #[test]
    fn an_inverted_range_from_a_faulty_peer_is_answered_with_nothing() {
        let mut store = Store::default();
        store.put("k", counter("a", 1));
        let status =
            Status { from: "p".into(), start: Some("z".into()), end: Some("a".into()), digests: Vec::new() };
        let answer = store.diff(&status, 1000, 10);
        assert!(answer.send.is_empty() && answer.want.is_empty() && answer.resume.is_none());
    }

    /// A majority write whose key is too long for this node (a peer with a larger message limit)
    /// is not stored, and answered `false`: the writer must not count this node's ack.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_with_a_key_too_long_here_is_not_acknowledged() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = foundation_core::config::ClusterConfig {
            listen: ([127, 0, 0, 1], port).into(),
            ..Default::default()
        };
        let cluster = Cluster::start("crdt-acks", &config, None).await.unwrap();
        // 2 KiB messages: keys of at most 384 bytes.
        let small = ReplicatorConfig { name: "acks".into(), max_message_bytes: 2048, ..Default::default() };
        let replicator = crate::crdt_state::Replicator::start(&cluster, small).await.unwrap();
        let actor: ActorRef<ReplicatorMsg> =
            ractor::pg::get_scoped_members(&SCOPE.to_string(), &"acks@crdt-acks".to_string())
                .into_iter()
                .next()
                .expect("the replicator is in its pg group")
                .into();
        let write = |key: String| {
            let entries = Entries { from: "peer".into(), entries: vec![(key, counter("peer", 1))] };
            let wire = Wire::encode(&entries, 1 << 20).unwrap();
            let actor = actor.clone();
            async move {
                actor
                    .call(|reply| ReplicatorMsg::Write(wire, reply), Some(std::time::Duration::from_secs(5)))
                    .await
                    .unwrap()
            }
        };
        assert_eq!(write("k".repeat(384)).await, ractor::rpc::CallResult::Success(true));
        assert_eq!(write("k".repeat(385)).await, ractor::rpc::CallResult::Success(false));
        assert!(replicator.value(&"k".repeat(384)).is_some());
        assert!(replicator.value(&"k".repeat(385)).is_none(), "the long key was not stored");
        // A frame that does not decode is not stored either: `false`, not silence.
        let garbage = <Wire<Entries> as ractor::BytesConvertable>::from_bytes(vec![0, 0xff, 0xff]);
        let answer = actor
            .call(|reply| ReplicatorMsg::Write(garbage, reply), Some(std::time::Duration::from_secs(5)))
            .await;
        assert_eq!(answer.unwrap(), ractor::rpc::CallResult::Success(false));
        replicator.stop().await;
        cluster.shutdown().await;
    }

    /// The store's part: a refused key makes the whole batch unacknowledged, the rest is merged.
    #[test]
    fn merging_a_batch_with_a_key_too_long_reports_it() {
        let mut store = Store::default();
        let batch = vec![("ok".to_string(), counter("p", 1)), ("k".repeat(11), counter("p", 1))];
        assert!(!store.merge_entries("p", &batch, 10));
        assert!(store.get("ok").is_some());
        assert!(store.get(&"k".repeat(11)).is_none());
        assert!(store.merge_entries("p", &batch[..1], 10));
    }

    #[test]
    fn digests_are_the_stable_hash_of_the_encoded_value() {
        // The workspace's stable hash (its vectors are checked in foundation_core::hash).
        let value = CrdtValue::PnCounter(Default::default());
        let bytes = foundation_actors::wire::encode(&value, usize::MAX).unwrap();
        assert_eq!(Entry::new(value).digest, foundation_core::hash::stable_hash(&bytes));
    }
}

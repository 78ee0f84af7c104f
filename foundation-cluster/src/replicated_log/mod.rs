//! A small replicated log: entries appended by one leader at a time, committed once a majority
//! of the cluster's known nodes hold them on disk, kept by every node in its own state directory.
//! No shared disk: a log survives the loss of a minority of nodes at any moment and a restart of
//! every node.
//!
//! [`ReplicatedLog::start`] opens this node's **replica** (a file in
//! `STATE_DIR/logs/NAME.log`, see below) and serves it to other nodes (pg group `NAME@NODE`,
//! scope [`SCOPE`]). Start it on every node that counts towards the cluster's majority (the
//! majority is of the known nodes, the rule locks and singletons use: down nodes count).
//!
//! The **leader** is whoever holds a lease elsewhere: a singleton (the token of
//! [`singleton::lease_token`](crate::singleton::lease_token)), a [lock](crate::coordination)'s
//! fencing token. [`ReplicatedLog::lead`] with that token:
//!
//! 1. asks every replica to **promise** the ballot (token, attempt): a replica that promised it
//!    takes nothing from a lower ballot again (the promise is on its disk before it answers).
//!    A replica that promised a higher token answers so, and `lead` fails with
//!    [`LogError::Deposed`]: a stale leader cannot write, whatever its lease says;
//! 2. once a majority of the known nodes promised (damaged replicas left out, below), takes
//!    the log of the replica among them with the latest entry (by ballot, then index) as the
//!    truth, and copies it to this node's replica where it differs. Every committed entry is on
//!    a majority, which meets the majority that promised, so it is in that log;
//! 3. appends a *leader entry* and waits until a majority holds it: that commits everything
//!    before it, which `lead` returns (the entries' data, in order).
//!
//! Then [`Writer::append`] adds entries (O(1): each joins the next batch, written with one
//! `write` and one `fsync` on every replica) and [`Commit::committed`] resolves once a majority
//! of the known nodes hold the entry: an entry the caller saw committed is in every later
//! leader's log. A replica accepts entries only from its promised ballot or a higher one, and
//! only after the entry before them matches the leader's (the same index and ballot), dropping
//! a conflicting suffix (an earlier leader's entries that were never committed).
//!
//! **Replicas on disk.** Records carry a checksum. A file that ends inside a record (a write cut
//! short: never acknowledged) is cut back and the replica goes on. A whole record that does not
//! check, or metadata that does not read, makes the replica **damaged**: reported with the
//! log's name (an error in the log), cut back before the bad record, and left out of every new
//! leader's majority until a leader brought it up to the leader's commit point (it is then
//! repaired, reported again). Damage never stops a node or a leader from starting; if too many
//! replicas are damaged for a majority, `lead` fails with [`LogError::NoMajority`] naming
//! them.
//!
//! **Costs.** An append is committed after one round trip to the fastest majority and one
//! `fsync` on each (batched: many appends share both). A leader needs a majority of the known
//! nodes up and reachable, so on a minority side nothing commits, and a new leader waits for its
//! lease (the singleton's, about 3 s after the last one was lost) and for the recovery round.
//! In memory: 24 bytes per entry on each replica (its file offset and ballot); the data stays on
//! disk. A log is never compacted: it grows by every entry (the data plus 37 bytes).
//! **Bounds.** An entry is at most [`ReplicatedLog::max_entry_bytes`] (the frame limit less
//! 4 KiB); larger is refused ([`LogError::TooLarge`]).
//! **Not covered.** Membership changes of more than one node between a commit and the next
//! recovery (the majorities of the old and new sizes may not meet); a replica whose metadata was
//! lost forgets its promise (it counts for no new leader until repaired, but takes entries from
//! any ballot not below its last entry's).
//!
//! ```no_run
//! use foundation_cluster::Cluster;
//! use foundation_cluster::replicated_log::{LogConfig, ReplicatedLog};
//! use foundation_core::config::ClusterConfig;
//!
//! # async fn run(token: u64) -> Result<(), Box<dyn std::error::Error>> {
//! let node = Cluster::start("n1", &ClusterConfig::default(), None).await?;
//! let log = ReplicatedLog::start(&node, LogConfig::new("orders")).await?;
//! // On the node that holds the lease whose fencing token is `token`:
//! let (writer, entries) = log.lead(token).await?;
//! println!("{} entries committed before", entries.len());
//! let commit = writer.append(b"order 17 paid".to_vec())?;
//! commit.committed().await?;
//! # Ok(())
//! # }
//! ```

mod leader;
mod replica;
mod store;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foundation_core::sync::MutexRecover;
use ractor::{Actor, ActorCell, ActorRef};

use crate::Cluster;

pub use leader::{Commit, Writer};
use replica::{ReplicaActor, ReplicaMsg};
use store::{Opened, Store};

/// The pg scope of log replicas (group `NAME@NODE`).
pub const SCOPE: &str = foundation_actors::pg_scopes::LOGS;
/// What a message takes besides its entries.
const ENVELOPE_BYTES: usize = 4096;
/// Longest log name (it names files and pg groups).
pub const MAX_NAME_BYTES: usize = 128;

/// One log on this node.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// The log's name: the same on every node; letters, digits, `-`, `_` and `.`, at most
    /// [`MAX_NAME_BYTES`].
    pub name: String,
    /// Where this node's replica lives. Default: `STATE_DIR/logs` of the node's
    /// `cluster.state_dir` (a node without one must be given a directory).
    pub dir: Option<PathBuf>,
    /// `fsync` every batch before acknowledging it (default). Off: a replica's acknowledgement
    /// survives the process's death but not the machine's.
    pub fsync: bool,
    /// How long a leader waits for one replica's answer. Default 1 s.
    pub call_timeout: Duration,
    /// How long [`ReplicatedLog::lead`] tries to reach a majority. Default 10 s.
    pub recovery_timeout: Duration,
}

impl LogConfig {
    /// The log `name`, with the defaults.
    pub fn new(name: impl Into<String>) -> Self {
        LogConfig {
            name: name.into(),
            dir: None,
            fsync: true,
            call_timeout: Duration::from_secs(1),
            recovery_timeout: Duration::from_secs(10),
        }
    }

    /// The replica in `dir` rather than under the node's state directory.
    pub fn with_dir(self, dir: impl Into<PathBuf>) -> Self {
        LogConfig { dir: Some(dir.into()), ..self }
    }
}

/// Why a log could not do something. Every variant names the log.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LogError {
    /// The name cannot name a file and a group.
    #[error(
        "log name `{0}` is not valid: letters, digits, `-`, `_` and `.`, 1 to 128 bytes, not starting with `.`"
    )]
    BadName(String),
    /// No directory for this node's replica.
    #[error("log `{0}`: this node has no state directory (cluster.state_dir): give the log a directory")]
    NoDirectory(String),
    /// This node's replica cannot be read or written.
    #[error("log `{log}`: this node's replica: {message}")]
    Store {
        /// The log.
        log: String,
        /// What failed.
        message: String,
    },
    /// A replica promised a higher ballot: another leader took over.
    #[error("log `{log}`: another leader took over (ballot {by:?})")]
    Deposed {
        /// The log.
        log: String,
        /// The other leader's ballot (token, attempt).
        by: (u64, u64),
    },
    /// Fewer replicas answered than a majority needs.
    #[error(
        "log `{log}`: {reached} usable replicas answered, a majority is {needed}{}",
        if damaged.is_empty() { String::new() } else { format!(" (damaged, left out: {damaged})") }
    )]
    NoMajority {
        /// The log.
        log: String,
        /// Replicas that answered and count.
        reached: usize,
        /// The majority of the known nodes.
        needed: usize,
        /// Damaged replicas' nodes, comma-separated.
        damaged: String,
    },
    /// An entry larger than a message can carry.
    #[error("log `{log}`: an entry of {bytes} bytes is larger than the {max} an entry may take")]
    TooLarge {
        /// The log.
        log: String,
        /// Its size.
        bytes: usize,
        /// The most.
        max: usize,
    },
    /// The writer was dropped.
    #[error("the log's writer was dropped")]
    Ended,
    /// The replica's actor could not start.
    #[error("log `{log}`: cannot start this node's replica: {message}")]
    Spawn {
        /// The log.
        log: String,
        /// Why.
        message: String,
    },
}

/// An entry of the log: its index (increasing, with gaps where leaders took over) and data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its place in the log.
    pub index: u64,
    /// What was appended.
    pub data: Vec<u8>,
}

/// This node's replica, as [`ReplicatedLog::replica_status`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// Entries held (leader entries included).
    pub last_index: u64,
    /// The highest ballot promised (token, attempt).
    pub promised: (u64, u64),
    /// Damaged and not yet repaired.
    pub damaged: bool,
}

struct Inner {
    cluster: Cluster,
    config: LogConfig,
    replica: ActorRef<ReplicaMsg>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.replica.stop(None);
    }
}

/// A replicated log on this node (its replica, and the way to lead it). Cloning shares it;
/// dropping the last clone stops this node's replica.
#[derive(Clone)]
pub struct ReplicatedLog {
    inner: Arc<Inner>,
    store: Arc<Mutex<Store>>,
}

impl std::fmt::Debug for ReplicatedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicatedLog").field("name", &self.name()).finish()
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl ReplicatedLog {
    /// Opens this node's replica of the log (checking every record, reporting damage) and
    /// serves it to the other nodes.
    pub async fn start(cluster: &Cluster, config: LogConfig) -> Result<ReplicatedLog, LogError> {
        let name = config.name.clone();
        if !valid_name(&name) {
            return Err(LogError::BadName(name));
        }
        let dir = match (&config.dir, cluster.state_dir()) {
            (Some(dir), _) => dir.clone(),
            (None, Some(state)) => state.join("logs"),
            (None, None) => return Err(LogError::NoDirectory(name)),
        };
        let (store, opened) = Store::open(&dir, &name, config.fsync)
            .map_err(|e| LogError::Store { log: name.clone(), message: e.to_string() })?;
        match &opened {
            Opened::Clean => {}
            Opened::TornTail { bytes } => tracing::warn!(
                log = %name, file = %store.path().display(), bytes,
                "a log replica ended in an unfinished write (a crash): cut back to its last whole entry"
            ),
            Opened::Damaged { at_index, bytes, why } => tracing::error!(
                log = %name, file = %store.path().display(), at_index, bytes, %why,
                "a log replica is damaged: cut back before the bad entry; it will be repaired from the other replicas"
            ),
        }
        if store.damaged() && matches!(opened, Opened::Clean) {
            tracing::warn!(log = %name, "this node's replica is still damaged (not repaired since)");
        }
        let store = Arc::new(Mutex::new(store));
        let actor = ReplicaActor {
            store: store.clone(),
            group: format!("{name}@{}", cluster.name()),
            max_frame_bytes: cluster.max_frame_bytes(),
        };
        let (replica, _) = Actor::spawn(None, actor, ())
            .await
            .map_err(|e| LogError::Spawn { log: name.clone(), message: e.to_string() })?;
        Ok(ReplicatedLog { inner: Arc::new(Inner { cluster: cluster.clone(), config, replica }), store })
    }

    /// Reads the replica of log `name` in `dir` without serving it: every data entry, in order
    /// (the uncommitted tail included: this replica's view). For inspection and tests, with its
    /// node stopped: a replica in use is refused. Opening it does what a start does: a torn tail
    /// or damage is cut back (and damage recorded), so read a copy to keep the bytes.
    pub fn read_replica(dir: &std::path::Path, name: &str) -> Result<Vec<Entry>, LogError> {
        if !valid_name(name) {
            return Err(LogError::BadName(name.to_string()));
        }
        let error = |e: std::io::Error| LogError::Store { log: name.to_string(), message: e.to_string() };
        let (store, _) = Store::open(dir, name, false).map_err(error)?;
        let mut out = Vec::new();
        let mut from = 1;
        while from <= store.last_index() {
            let batch = store.read(from, 4 << 20).map_err(error)?;
            let Some(last) = batch.last().map(|e| e.index) else { break };
            from = last + 1;
            out.extend(
                batch
                    .into_iter()
                    .filter(|e| e.kind == store::Kind::Data)
                    .map(|e| Entry { index: e.index, data: e.data }),
            );
        }
        Ok(out)
    }

    /// The log's name.
    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    /// The largest entry [`Writer::append`] takes: the cluster's frame limit less 4 KiB.
    pub fn max_entry_bytes(&self) -> usize {
        self.room().saturating_sub(64)
    }

    /// This node's replica now.
    pub fn replica_status(&self) -> ReplicaStatus {
        let store = self.store.lock_or_recover();
        let promised = store.promised();
        ReplicaStatus {
            last_index: store.last_index(),
            promised: (promised.token, promised.attempt),
            damaged: store.damaged(),
        }
    }

    /// Room for entries in one message.
    fn room(&self) -> usize {
        self.inner.cluster.max_frame_bytes().saturating_sub(ENVELOPE_BYTES)
    }

    /// Replicas visible on nodes that count towards the majority, by node (this node's
    /// included; observers' and departed nodes' left out).
    fn replicas(&self) -> Vec<(String, ActorCell)> {
        let cluster = &self.inner.cluster;
        let counted: std::collections::BTreeSet<String> =
            cluster.counted_members().0.into_iter().map(|m| m.name).collect();
        crate::pg_nodes::live_by_node(cluster, SCOPE, &format!("{}@", self.name()))
            .into_iter()
            .filter(|(node, _)| node == cluster.name() || counted.contains(node))
            .collect()
    }

    /// Replicas that make a majority of the known nodes.
    fn majority(&self) -> usize {
        self.inner.cluster.counted_members().1 / 2 + 1
    }
}

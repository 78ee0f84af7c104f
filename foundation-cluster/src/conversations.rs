//! Agents' conversations kept by the cluster: a [`ConversationStore`] on a
//! [replicated log](crate::replicated_log), so that an agent restarted by its supervisor, or
//! started again on another node after its node was lost, resumes its conversation (feature
//! `agents`).
//!
//! [`Conversations::start`] on **every** node of the cluster (the log's majority is of all the
//! known nodes) opens this node's replica of the log [`LOG`] (`STATE_DIR/logs`, or the
//! configured directory) and declares the **keeper**, a [singleton](crate::singleton) that leads
//! the log under its lease and holds every conversation's latest messages in memory, rebuilt
//! from the log when it starts (on any node).
//!
//! - **Appends** go to the keeper, which checks the change against the conversation's length
//!   (a stale writer is refused, [`ConversationError::Conflict`]), appends it to the log and
//!   answers once a majority of the known nodes hold it on disk: an acknowledged change is in
//!   every later keeper's conversations, whatever node it starts on.
//! - **Loads** are answered from the keeper's memory once everything appended before them is
//!   committed: a load sees every acknowledged change (and no change that may yet be lost).
//! - **One keeper at a time**: a keeper acts only under a valid singleton lease, and a deposed
//!   leader cannot commit (the log's ballots), so two keepers never both acknowledge changes
//!   after the same length.
//!
//! **Costs.** A change costs a round trip to the keeper's node, then one to the fastest
//! majority and an `fsync` on each (batched with concurrent changes). While the keeper moves
//! (its node lost: about one singleton lease, 3 s, plus the log's recovery) and on a minority
//! side, nothing is loaded or saved: agents with durable conversations refuse their steps
//! ([`ConversationError::Unavailable`]). A change that got no answer may have been kept: the
//! agent reloads before its next step. In the keeper's memory: each conversation's latest
//! [`ConversationsConfig::keep`] messages, at most [`ConversationsConfig::max_conversations`]
//! conversations ([`Conversations::forget`] drops one); a change is at most the log's entry
//! limit (the frame limit less 4 KiB). The log is never compacted: every change stays on every
//! node's disk, and a starting keeper reads it whole.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use foundation_actors::agents::conversation::{
    Conversation, ConversationChange, ConversationError, ConversationStore, DEFAULT_KEPT_MESSAGES,
    KeptConversation, check_conversation_id, message_bytes,
};
use foundation_actors::supervision::ChildSpec;
use foundation_actors::wire::Wire;
use foundation_core::Cause;
use futures::future::BoxFuture;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::replicated_log::{Commit, LogConfig, LogError, ReplicatedLog, Writer};
use crate::{Cluster, SingletonHandle};

/// The pg scope of the keeper (group [`KEEPER`]).
pub const SCOPE: &str = foundation_actors::pg_scopes::CONVERSATIONS;
/// The replicated log conversations are kept in.
pub const LOG: &str = "foundation.conversations";
/// The keeper singleton's name (and its pg group).
pub const KEEPER: &str = "foundation:conversations";
/// Conversations a keeper holds at most, by default.
pub const DEFAULT_MAX_CONVERSATIONS: usize = 10_000;
/// Bytes of messages a keeper holds at most, by default.
pub const DEFAULT_MAX_BYTES: usize = 256 << 20;
/// How long a load or save waits for a keeper by default (a keeper moving to another node takes
/// about a singleton lease and a recovery).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one attempt of a load waits for the keeper's answer (a load is asked again, of the
/// next keeper visible, until the timeout).
const LOAD_ATTEMPT: Duration = Duration::from_secs(3);
/// How often a caller looks again for a keeper that is not visible.
const RETRY_EVERY: Duration = Duration::from_millis(100);
/// The log entries' format.
const FORMAT: u8 = 1;

/// How conversations are kept on this node.
#[derive(Debug, Clone)]
pub struct ConversationsConfig {
    /// Where this node's replica of the log lives. Default: `STATE_DIR/logs` of the node's
    /// `cluster.state_dir` (a node without one must be given a directory).
    pub dir: Option<PathBuf>,
    /// `fsync` every batch before acknowledging it (default). Off: an acknowledged change
    /// survives the processes' deaths but not the machines'.
    pub fsync: bool,
    /// Messages of each conversation the keeper holds (the latest; what a load returns).
    /// Default [`DEFAULT_KEPT_MESSAGES`] (256): an agent's memory window beyond it resumes with
    /// only these. The same on every node.
    pub keep: usize,
    /// Conversations the keeper holds at most; a change to a new one beyond is refused
    /// ([`ConversationError::Full`]). Default [`DEFAULT_MAX_CONVERSATIONS`]. The same on every
    /// node.
    pub max_conversations: usize,
    /// Bytes (as JSON) of all the conversations' messages the keeper holds at most; a change
    /// beyond is refused ([`ConversationError::Full`]). Default [`DEFAULT_MAX_BYTES`] (256 MiB).
    /// Each conversation also keeps only what one frame carries (the frame limit less 16 KiB;
    /// its oldest messages go first).
    pub max_bytes: usize,
    /// How long a load or a save waits for a keeper, and for its answer. Default
    /// [`DEFAULT_TIMEOUT`] (10 s: longer than a keeper's failover).
    pub timeout: Duration,
}

impl Default for ConversationsConfig {
    fn default() -> Self {
        ConversationsConfig {
            dir: None,
            fsync: true,
            keep: DEFAULT_KEPT_MESSAGES,
            max_conversations: DEFAULT_MAX_CONVERSATIONS,
            max_bytes: DEFAULT_MAX_BYTES,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// One entry of the log: a change to a conversation, or its removal.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    format: u8,
    id: String,
    /// `None`: the conversation is forgotten.
    change: Option<ConversationChange>,
}

/// Why the keeper refused, as it travels.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Refused {
    Conflict {
        expected: u64,
        actual: u64,
    },
    BadId,
    TooLarge {
        bytes: usize,
        max: usize,
    },
    Full(String),
    Damaged(String),
    /// The keeper could not do it (its log failed, or it is overloaded): the outcome of a
    /// change is unknown.
    Failed(String),
    /// The request did not read.
    Invalid(String),
}

impl Refused {
    fn error(self, id: &str) -> ConversationError {
        let conversation = id.to_string();
        match self {
            Refused::Conflict { expected, actual } => {
                ConversationError::Conflict { conversation, expected, actual }
            }
            Refused::BadId => ConversationError::BadId(conversation),
            Refused::TooLarge { bytes, max } => ConversationError::TooLarge { conversation, bytes, max },
            Refused::Full(limit) => ConversationError::Full { conversation, limit },
            Refused::Damaged(reason) => ConversationError::Damaged { conversation, reason },
            Refused::Failed(why) => ConversationError::Unavailable { conversation, source: Cause::new(why) },
            Refused::Invalid(why) => ConversationError::Unavailable {
                conversation,
                source: Cause::new(format!("the keeper could not read the request: {why}")),
            },
        }
    }
}

/// Messages (`ChatMessage`s, which skip empty fields) travel as JSON inside the frames: the
/// frames' bincode cannot read a value that skipped fields.
#[derive(RactorClusterMessage)]
enum KeeperMsg {
    /// A commit failed: the keeper stops (the next one replays the log).
    Failed(String),
    /// A conversation by id: the [`Conversation`] as JSON.
    #[rpc]
    Load(Wire<String>, RpcReplyPort<Wire<Result<String, Refused>>>),
    /// A change (a [`ConversationChange`] as JSON; none: forget) to a conversation by id.
    #[rpc]
    Append(Wire<(String, Option<String>)>, RpcReplyPort<Wire<Result<u64, Refused>>>),
}

/// Answers a keeper waits to give (for their commits) at most; more are refused at once.
const MAX_WAITING_ANSWERS: usize = 4096;
/// What a conversation's messages may take less than the frame limit (a load's answer is the
/// conversation as JSON in one frame).
const LOAD_ENVELOPE_BYTES: usize = 16 * 1024;

#[derive(Clone)]
struct Keeper {
    log: ReplicatedLog,
    keep: usize,
    max_conversations: usize,
    /// All conversations' messages, in bytes (as JSON).
    max_total_bytes: usize,
    /// One conversation's messages, in bytes: what a load's answer can carry.
    max_conversation_bytes: usize,
    /// The cluster's frame limit.
    max_bytes: usize,
    /// How long an answer waits for its commit.
    timeout: Duration,
}

struct KeeperState {
    writer: Writer,
    conversations: HashMap<String, KeptConversation>,
    /// The messages' bytes over every conversation.
    bytes: usize,
    /// Conversations whose entries in the log did not apply, with why: refused until forgotten.
    damaged: HashMap<String, String>,
    /// The index of the last entry appended (a load answers once it is committed).
    last_appended: u64,
    /// Answers waiting for their commits.
    waiting: Arc<AtomicUsize>,
}

/// A store's refusal of a change, as it travels.
fn refused(e: ConversationError) -> Refused {
    match e {
        ConversationError::Conflict { expected, actual, .. } => Refused::Conflict { expected, actual },
        other => Refused::Failed(other.to_string()),
    }
}

impl Keeper {
    /// Applies one entry of the log (replayed, or just appended) as version `version` (its
    /// index); limits on the number and size of conversations are checked before appending,
    /// never on replay (what the log holds was acknowledged).
    fn apply(&self, state: &mut KeeperState, record: Record, version: u64) -> Result<u64, Refused> {
        let Some(change) = record.change else {
            if let Some(gone) = state.conversations.remove(&record.id) {
                state.bytes = state.bytes.saturating_sub(gone.bytes());
            }
            state.damaged.remove(&record.id);
            return Ok(version);
        };
        if let Some(reason) = state.damaged.get(&record.id) {
            return Err(Refused::Damaged(reason.clone()));
        }
        let kept = state.conversations.entry(record.id.clone()).or_default();
        let before = kept.bytes();
        let applied = kept.apply(&record.id, change, version, self.keep, self.max_conversation_bytes);
        state.bytes = (state.bytes + kept.bytes()).saturating_sub(before);
        if kept.version() == 0 {
            state.conversations.remove(&record.id);
        }
        applied.map_err(refused)
    }

    /// Checks a change against the state and the limits without applying it.
    fn check(
        &self,
        state: &KeeperState,
        id: &str,
        change: &Option<ConversationChange>,
    ) -> Result<(), Refused> {
        check_conversation_id(id).map_err(|_| Refused::BadId)?;
        let Some(change) = change else { return Ok(()) };
        if let Some(reason) = state.damaged.get(id) {
            return Err(Refused::Damaged(reason.clone()));
        }
        let kept = state.conversations.get(id);
        // A conversation not held is at version 0.
        kept.map_or_else(|| KeptConversation::default().check(id, change), |k| k.check(id, change))
            .map_err(refused)?;
        if kept.is_none() && state.conversations.len() >= self.max_conversations {
            return Err(Refused::Full(format!("{} conversations", self.max_conversations)));
        }
        let adding: usize = change.messages.iter().map(message_bytes).sum();
        if adding > self.max_conversation_bytes {
            return Err(Refused::TooLarge { bytes: adding, max: self.max_conversation_bytes });
        }
        let freed = if change.reset { kept.map_or(0, KeptConversation::bytes) } else { 0 };
        if (state.bytes - freed).saturating_add(adding) > self.max_total_bytes {
            return Err(Refused::Full(format!("{} bytes of messages", self.max_total_bytes)));
        }
        Ok(())
    }

    /// Checks a change, appends it to the log and applies it: its commit and the new version
    /// (the entry's index); or the refusal, with the reason to stop the keeper if its log
    /// failed.
    fn append(
        &self,
        state: &mut KeeperState,
        id: String,
        change: Option<ConversationChange>,
    ) -> Result<(Commit, u64), (Refused, Option<String>)> {
        self.check(state, &id, &change).map_err(|r| (r, None))?;
        let record = Record { format: FORMAT, id, change };
        let bytes = serde_json::to_vec(&record)
            .map_err(|e| (Refused::Invalid(format!("the change does not encode: {e}")), None))?;
        let commit = match state.writer.append(bytes) {
            Ok(commit) => commit,
            Err(LogError::TooLarge { bytes, max, .. }) => {
                return Err((Refused::TooLarge { bytes, max }, None));
            }
            Err(e) => {
                let why = format!("the keeper's log refused the change: {e}");
                return Err((Refused::Failed(why.clone()), Some(why)));
            }
        };
        state.last_appended = commit.index();
        // Checked above, so it applies; if not, the log holds an entry the memory lacks, and the
        // keeper starts again from the log.
        let version = self
            .apply(state, record, commit.index())
            .map_err(|r| (r, Some("a checked conversation change did not apply".to_string())))?;
        Ok((commit, version))
    }

    /// Answers `reply` with `answer` once `commit` resolves (waiting at most the timeout); a
    /// failed commit stops the keeper (its memory is ahead of the log: the next keeper replays
    /// it) and the caller is told the outcome is unknown.
    fn answer_when<T: Serialize + serde::de::DeserializeOwned + Send + Sync + 'static>(
        &self,
        myself: &ActorRef<KeeperMsg>,
        state: &KeeperState,
        commit: Commit,
        reply: RpcReplyPort<Wire<Result<T, Refused>>>,
        answer: T,
    ) {
        let (myself, max, timeout, waiting) =
            (myself.clone(), self.max_bytes, self.timeout, state.waiting.clone());
        waiting.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            let answer = match tokio::time::timeout(timeout, commit.committed()).await {
                Ok(Ok(_)) => Ok(answer),
                Ok(Err(e)) => {
                    let _ = myself.send_message(KeeperMsg::Failed(e.to_string()));
                    Err(Refused::Failed(format!("the keeper's log did not commit: {e}")))
                }
                Err(_) => {
                    Err(Refused::Failed(format!("not committed within {timeout:?} (no majority reachable?)")))
                }
            };
            waiting.fetch_sub(1, Ordering::SeqCst);
            let wire = Wire::encode_or(&answer, max, |e| match e {
                foundation_actors::wire::WireError::TooLarge { size, max } => {
                    Err(Refused::TooLarge { bytes: size, max })
                }
                other => Err(Refused::Invalid(other.to_string())),
            });
            let _ = reply.send(wire);
        });
    }

    /// Refuses at once.
    fn refuse<T: Serialize + serde::de::DeserializeOwned>(
        &self,
        reply: RpcReplyPort<Wire<Result<T, Refused>>>,
        refused: Refused,
    ) {
        let answer: Result<T, Refused> = Err(refused);
        let _ =
            reply.send(Wire::encode_or(&answer, self.max_bytes, |e| Err(Refused::Invalid(e.to_string()))));
    }

    /// Replays one entry of the log at start: a change applied, or the conversation marked
    /// damaged (with why) if it does not read or apply.
    fn replay(&self, state: &mut KeeperState, entry: &crate::replicated_log::Entry) -> bool {
        let damage = |state: &mut KeeperState, id: String, why: String| {
            tracing::error!(log = LOG, index = entry.index, conversation = %id, %why, "a conversation's entry in the log does not apply: the conversation is refused until forgotten");
            if let Some(gone) = state.conversations.remove(&id) {
                state.bytes = state.bytes.saturating_sub(gone.bytes());
            }
            state.damaged.insert(id, format!("its entry {} in the log: {why}", entry.index));
        };
        match serde_json::from_slice::<Record>(&entry.data) {
            Ok(record) if record.format == FORMAT => {
                let id = record.id.clone();
                let is_forget = record.change.is_none();
                match self.apply(state, record, entry.index) {
                    Ok(_) => true,
                    Err(Refused::Damaged(_)) if !is_forget => true,
                    Err(why) => {
                        damage(state, id, format!("{why:?}"));
                        false
                    }
                }
            }
            Ok(record) => {
                damage(state, record.id, format!("format {} (this build reads {FORMAT})", record.format));
                false
            }
            Err(why) => {
                // Not a record at all: if its id reads, that conversation is damaged; if not,
                // nothing can be attributed (the log's records are checksummed: only a bug
                // writes such an entry).
                match serde_json::from_slice::<serde_json::Value>(&entry.data)
                    .ok()
                    .and_then(|v| v.get("id").and_then(|id| id.as_str()).map(String::from))
                {
                    Some(id) => damage(state, id, why.to_string()),
                    None => {
                        tracing::error!(log = LOG, index = entry.index, %why, "an entry of the conversation log does not read and names no conversation: skipped")
                    }
                }
                false
            }
        }
    }
}

impl Actor for Keeper {
    type Msg = KeeperMsg;
    type State = KeeperState;
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<KeeperMsg>, _: ()) -> Result<KeeperState, ActorProcessingErr> {
        let token = crate::singleton::lease_token(KEEPER)
            .ok_or("the conversation keeper's lease is not valid: not starting")?;
        let (writer, entries) = self.log.lead(token).await?;
        let last_appended = writer.committed();
        let mut state = KeeperState {
            writer,
            conversations: HashMap::new(),
            bytes: 0,
            damaged: HashMap::new(),
            last_appended,
            waiting: Arc::new(AtomicUsize::new(0)),
        };
        let mut failed = 0usize;
        for entry in &entries {
            if !self.replay(&mut state, entry) {
                failed += 1;
            }
        }
        tracing::info!(
            entries = entries.len(),
            failed,
            conversations = state.conversations.len(),
            damaged = state.damaged.len(),
            bytes = state.bytes,
            token,
            "conversation keeper started"
        );
        ractor::pg::join_scoped(SCOPE.to_string(), KEEPER.to_string(), vec![myself.get_cell()]);
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<KeeperMsg>,
        msg: KeeperMsg,
        state: &mut KeeperState,
    ) -> Result<(), ActorProcessingErr> {
        // A keeper whose lease ran out answers nothing: another may run already. Its manager
        // kills it; callers time out and look again.
        if !crate::singleton::lease_valid(KEEPER) {
            tracing::warn!("conversation keeper without a valid lease: request ignored");
            return Ok(());
        }
        let busy = state.waiting.load(Ordering::SeqCst) >= MAX_WAITING_ANSWERS;
        match msg {
            KeeperMsg::Failed(why) => {
                tracing::error!(%why, "the conversation log did not commit: the keeper restarts from the log");
                myself.stop(Some(why));
            }
            KeeperMsg::Load(id, reply) => {
                let id = match id.into_inner() {
                    Ok(id) => id,
                    Err(e) => {
                        self.refuse(reply, Refused::Invalid(e.to_string()));
                        return Ok(());
                    }
                };
                if check_conversation_id(&id).is_err() {
                    self.refuse(reply, Refused::BadId);
                    return Ok(());
                }
                if let Some(reason) = state.damaged.get(&id) {
                    self.refuse(reply, Refused::Damaged(reason.clone()));
                    return Ok(());
                }
                if busy {
                    self.refuse(reply, Refused::Failed("the keeper is overloaded".into()));
                    return Ok(());
                }
                let conversation = state.conversations.get(&id).map(KeptConversation::snapshot);
                match serde_json::to_string(&conversation.unwrap_or_default()) {
                    Ok(json) => {
                        let commit = state.writer.commit_of(state.last_appended);
                        self.answer_when(&myself, state, commit, reply, json);
                    }
                    Err(e) => {
                        self.refuse(reply, Refused::Invalid(format!("the conversation does not encode: {e}")))
                    }
                }
            }
            KeeperMsg::Append(request, reply) => {
                let (id, change) = match request.into_inner() {
                    Ok(request) => request,
                    Err(e) => {
                        self.refuse(reply, Refused::Invalid(e.to_string()));
                        return Ok(());
                    }
                };
                if busy {
                    self.refuse(reply, Refused::Failed("the keeper is overloaded".into()));
                    return Ok(());
                }
                let change = change
                    .map(|json| serde_json::from_str::<ConversationChange>(&json))
                    .transpose()
                    .map_err(|e| (Refused::Invalid(e.to_string()), None));
                match change.and_then(|change| self.append(state, id, change)) {
                    Ok((commit, version)) => self.answer_when(&myself, state, commit, reply, version),
                    Err((refused, stop)) => {
                        self.refuse(reply, refused);
                        if let Some(why) = stop {
                            myself.stop(Some(why));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

struct Inner {
    cluster: Cluster,
    config: ConversationsConfig,
    _log: ReplicatedLog,
    _keeper: SingletonHandle,
}

/// The cluster's conversations, as seen from this node: its replica of the log, its candidacy
/// for the keeper, and a [`ConversationStore`] for its agents. Cheap to clone; dropping the last
/// clone stops this node's part.
#[derive(Clone)]
pub struct Conversations {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Conversations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conversations").field("node", &self.inner.cluster.name()).finish_non_exhaustive()
    }
}

impl Conversations {
    /// Opens this node's replica of the conversation log and declares the keeper here (start it
    /// on every node: see the module docs).
    pub async fn start(cluster: &Cluster, config: ConversationsConfig) -> Result<Conversations, LogError> {
        let mut log_config = LogConfig { fsync: config.fsync, ..LogConfig::new(LOG) };
        log_config.dir = config.dir.clone();
        let log = ReplicatedLog::start(cluster, log_config).await?;
        let keeper = Keeper {
            log: log.clone(),
            keep: config.keep.max(1),
            max_conversations: config.max_conversations.max(1),
            max_total_bytes: config.max_bytes,
            max_conversation_bytes: cluster.max_frame_bytes().saturating_sub(LOAD_ENVELOPE_BYTES),
            max_bytes: cluster.max_frame_bytes(),
            timeout: config.timeout,
        };
        let spec = ChildSpec::new(KEEPER, move || (keeper.clone(), ()));
        let singleton = SingletonHandle::start(cluster, KEEPER, spec);
        Ok(Conversations {
            inner: Arc::new(Inner { cluster: cluster.clone(), config, _log: log, _keeper: singleton }),
        })
    }

    /// Drops conversation `id` from the keeper's memory (a later load finds it empty, at version
    /// 0; a writer still at an older version is refused) and clears its damage, if any; its
    /// entries stay in the log.
    pub async fn forget(&self, id: &str) -> Result<(), ConversationError> {
        check_conversation_id(id)?;
        self.change(id, None).await.map(drop)
    }

    /// A keeper, waiting for one to be visible until `deadline`; the `attempt`-th of those
    /// visible (an old keeper frozen past its lease may still be listed for a while: asking again
    /// asks the next one).
    async fn keeper(
        &self,
        id: &str,
        deadline: tokio::time::Instant,
        attempt: usize,
    ) -> Result<ActorRef<KeeperMsg>, ConversationError> {
        loop {
            let mut keepers = ractor::pg::get_scoped_members(&SCOPE.to_string(), &KEEPER.to_string());
            keepers.retain(|k| {
                !matches!(k.get_status(), ractor::ActorStatus::Stopping | ractor::ActorStatus::Stopped)
            });
            if !keepers.is_empty() {
                let n = keepers.len();
                return Ok(keepers.swap_remove(attempt % n).into());
            }
            if tokio::time::Instant::now() + RETRY_EVERY > deadline {
                return Err(ConversationError::Unavailable {
                    conversation: id.to_string(),
                    source: Cause::new(format!(
                        "no conversation keeper is running (none for {:?}: it may be moving to another node, or this node is on a minority side)",
                        self.inner.config.timeout
                    )),
                });
            }
            tokio::time::sleep(RETRY_EVERY).await;
        }
    }

    /// The largest message to the keeper: none for one on this node, the frame limit otherwise.
    fn limit_for(&self, keeper: &ActorRef<KeeperMsg>) -> usize {
        if keeper.get_id().is_local() { usize::MAX } else { self.inner.cluster.max_frame_bytes() }
    }

    async fn change(&self, id: &str, change: Option<ConversationChange>) -> Result<u64, ConversationError> {
        let change = change
            .map(|c| serde_json::to_string(&c))
            .transpose()
            .map_err(|e| unavailable(id, format!("the change does not encode: {e}")))?;
        let deadline = tokio::time::Instant::now() + self.inner.config.timeout;
        let keeper = self.keeper(id, deadline, 0).await?;
        let request = (id.to_string(), change);
        let max = self.limit_for(&keeper);
        let wire = Wire::encode(&request, max).map_err(|_| ConversationError::TooLarge {
            conversation: id.to_string(),
            bytes: request.1.as_ref().map_or(0, String::len),
            max,
        })?;
        let wait = deadline.saturating_duration_since(tokio::time::Instant::now());
        // Sent once: a change that got no answer may have been kept (the agent reloads).
        match keeper.call(|port| KeeperMsg::Append(wire, port), Some(wait)).await {
            Ok(ractor::rpc::CallResult::Success(answer)) => answer
                .into_inner()
                .map_err(|e| unavailable(id, format!("the keeper's answer did not decode: {e}")))?
                .map_err(|r| r.error(id)),
            other => {
                Err(unavailable(id, format!("{}; the change may have been kept", no_answer(other, wait))))
            }
        }
    }
}

/// Why a call to the keeper got no answer.
fn no_answer<T, E: std::fmt::Display>(
    result: Result<ractor::rpc::CallResult<T>, E>,
    wait: Duration,
) -> String {
    match result {
        Ok(ractor::rpc::CallResult::Success(_)) => "answered".to_string(),
        Ok(ractor::rpc::CallResult::Timeout) => format!("the keeper did not answer within {wait:?}"),
        Ok(ractor::rpc::CallResult::SenderError) => {
            "the keeper dropped the request (it stopped, or its lease ran out)".to_string()
        }
        Err(e) => format!("the keeper could not be reached: {e}"),
    }
}

fn unavailable(id: &str, why: String) -> ConversationError {
    ConversationError::Unavailable { conversation: id.to_string(), source: Cause::new(why) }
}

impl ConversationStore for Conversations {
    fn load<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Conversation, ConversationError>> {
        Box::pin(async move {
            check_conversation_id(id)?;
            let deadline = tokio::time::Instant::now() + self.inner.config.timeout;
            // A load changes nothing: asked again until the deadline (a keeper may be moving).
            let mut last = None;
            for attempt in 0.. {
                let keeper = match self.keeper(id, deadline, attempt).await {
                    Ok(keeper) => keeper,
                    Err(e) => return Err(last.unwrap_or(e)),
                };
                let max = self.limit_for(&keeper);
                let wire = Wire::encode(&id.to_string(), max)
                    .map_err(|e| unavailable(id, format!("the request does not encode: {e}")))?;
                let wait = deadline.saturating_duration_since(tokio::time::Instant::now()).min(LOAD_ATTEMPT);
                match keeper.call(|port| KeeperMsg::Load(wire, port), Some(wait)).await {
                    Ok(ractor::rpc::CallResult::Success(answer)) => {
                        match answer.into_inner().map_err(|e| {
                            unavailable(id, format!("the keeper's answer did not decode: {e}"))
                        })? {
                            Ok(json) => {
                                return serde_json::from_str(&json).map_err(|e| {
                                    unavailable(id, format!("the keeper's conversation did not read: {e}"))
                                });
                            }
                            Err(Refused::Failed(why)) => last = Some(unavailable(id, why)),
                            Err(refused) => return Err(refused.error(id)),
                        }
                    }
                    other => last = Some(unavailable(id, no_answer(other, wait))),
                }
                if tokio::time::Instant::now() + RETRY_EVERY > deadline {
                    return Err(last.unwrap_or_else(|| unavailable(id, "no answer".into())));
                }
                tokio::time::sleep(RETRY_EVERY).await;
            }
            Err(last.unwrap_or_else(|| unavailable(id, "no answer".into())))
        })
    }

    fn append<'a>(
        &'a self,
        id: &'a str,
        change: ConversationChange,
    ) -> BoxFuture<'a, Result<u64, ConversationError>> {
        Box::pin(async move {
            check_conversation_id(id)?;
            self.change(id, Some(change)).await
        })
    }
}

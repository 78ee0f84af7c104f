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
    KeptConversation, check_conversation_id,
};
use foundation_actors::supervision::ChildSpec;
use foundation_actors::wire::Wire;
use foundation_core::Cause;
use futures::future::BoxFuture;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};

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
/// How long a load or save waits for a keeper by default (a keeper moving to another node takes
/// about a singleton lease and a recovery).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
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
    Full {
        max: usize,
    },
    /// The keeper could not do it (its log failed): the outcome of a change is unknown.
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
            Refused::Full { max } => ConversationError::Full { conversation, max },
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

struct Keeper {
    log: ReplicatedLog,
    keep: usize,
    max_conversations: usize,
    max_bytes: usize,
}

struct KeeperState {
    writer: Writer,
    conversations: HashMap<String, KeptConversation>,
    /// The index of the last entry appended (a load answers once it is committed).
    last_appended: u64,
}

impl Keeper {
    /// Applies one entry of the log (replayed, or just appended).
    fn apply(&self, state: &mut KeeperState, record: Record) -> Result<u64, Refused> {
        let Some(change) = record.change else {
            let length = state.conversations.remove(&record.id).map_or(0, |c| c.length());
            return Ok(length);
        };
        if !state.conversations.contains_key(&record.id)
            && state.conversations.len() >= self.max_conversations
        {
            return Err(Refused::Full { max: self.max_conversations });
        }
        let kept = state.conversations.entry(record.id.clone()).or_default();
        kept.apply(&record.id, change, self.keep).map_err(|e| match e {
            ConversationError::Conflict { expected, actual, .. } => Refused::Conflict { expected, actual },
            other => Refused::Failed(other.to_string()),
        })
    }

    /// Checks a change against the state without applying it.
    fn check(
        &self,
        state: &KeeperState,
        id: &str,
        change: &Option<ConversationChange>,
    ) -> Result<(), Refused> {
        check_conversation_id(id).map_err(|_| Refused::BadId)?;
        let Some(change) = change else { return Ok(()) };
        match state.conversations.get(id) {
            Some(kept) if kept.length() != change.after => {
                Err(Refused::Conflict { expected: change.after, actual: kept.length() })
            }
            None if change.after != 0 => Err(Refused::Conflict { expected: change.after, actual: 0 }),
            None if state.conversations.len() >= self.max_conversations => {
                Err(Refused::Full { max: self.max_conversations })
            }
            _ => Ok(()),
        }
    }

    /// Checks a change, appends it to the log and applies it: its commit and the new length;
    /// or the refusal, with the reason to stop the keeper if its log failed.
    fn append(
        &self,
        state: &mut KeeperState,
        id: String,
        change: Option<ConversationChange>,
    ) -> Result<(Commit, u64), (Refused, Option<String>)> {
        self.check(state, &id, &change).map_err(|r| (r, None))?;
        let record = Record { format: FORMAT, id, change };
        let bytes = serde_json::to_vec(&record)
            .map_err(|e| (Refused::Failed(format!("the change does not encode: {e}")), None))?;
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
        let length = self
            .apply(state, record)
            .map_err(|r| (r, Some("a checked conversation change did not apply".to_string())))?;
        Ok((commit, length))
    }

    /// Answers `reply` with `answer` once `commit` resolves; a failed commit stops the keeper
    /// (its memory is ahead of the log: the next keeper replays it) and the caller is told the
    /// outcome is unknown.
    fn answer_when<T: Serialize + serde::de::DeserializeOwned + Send + Sync + 'static>(
        myself: &ActorRef<KeeperMsg>,
        max: usize,
        commit: Commit,
        reply: RpcReplyPort<Wire<Result<T, Refused>>>,
        answer: T,
    ) {
        let myself = myself.clone();
        tokio::spawn(async move {
            let answer = match commit.committed().await {
                Ok(_) => Ok(answer),
                Err(e) => {
                    let _ = myself.send_message(KeeperMsg::Failed(e.to_string()));
                    Err(Refused::Failed(format!("the keeper's log did not commit: {e}")))
                }
            };
            let wire = Wire::encode_or(&answer, max, |e| {
                Err(Refused::Failed(format!("the answer does not fit: {e}")))
            });
            let _ = reply.send(wire);
        });
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
        let mut state = KeeperState { writer, conversations: HashMap::new(), last_appended };
        let (mut unreadable, mut refused) = (0usize, 0usize);
        for entry in &entries {
            match serde_json::from_slice::<Record>(&entry.data) {
                Ok(record) if record.format == FORMAT => {
                    if let Err(why) = self.apply(&mut state, record) {
                        // Checked before it was logged: only a changed `keep` or limit gets here.
                        refused += 1;
                        tracing::warn!(
                            log = LOG,
                            index = entry.index,
                            ?why,
                            "a logged conversation change does not apply: skipped"
                        );
                    }
                }
                Ok(record) => {
                    unreadable += 1;
                    tracing::error!(
                        log = LOG,
                        index = entry.index,
                        format = record.format,
                        "a conversation entry of an unknown format: skipped"
                    );
                }
                Err(why) => {
                    unreadable += 1;
                    tracing::error!(log = LOG, index = entry.index, %why, "a conversation entry is not readable: skipped");
                }
            }
        }
        tracing::info!(
            entries = entries.len(),
            unreadable,
            refused,
            conversations = state.conversations.len(),
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
        match msg {
            KeeperMsg::Failed(why) => {
                tracing::error!(%why, "the conversation log did not commit: the keeper restarts from the log");
                myself.stop(Some(why));
            }
            KeeperMsg::Load(id, reply) => {
                let Ok(id) = id.into_inner() else { return Ok(()) };
                let answer = match check_conversation_id(&id) {
                    Err(_) => Err(Refused::BadId),
                    Ok(()) => {
                        let conversation = state.conversations.get(&id).map(KeptConversation::snapshot);
                        serde_json::to_string(&conversation.unwrap_or_default())
                            .map_err(|e| Refused::Failed(format!("the conversation does not encode: {e}")))
                    }
                };
                match answer {
                    Ok(conversation) => {
                        let commit = state.writer.commit_of(state.last_appended);
                        Self::answer_when(&myself, self.max_bytes, commit, reply, conversation);
                    }
                    Err(refused) => {
                        let _ = reply
                            .send(Wire::encode_or(&Err(refused), self.max_bytes, |_| Err(Refused::BadId)));
                    }
                }
            }
            KeeperMsg::Append(request, reply) => {
                let Ok((id, change)) = request.into_inner() else { return Ok(()) };
                let change = change
                    .map(|json| serde_json::from_str::<ConversationChange>(&json))
                    .transpose()
                    .map_err(|e| (Refused::Invalid(e.to_string()), None));
                match change.and_then(|change| self.append(state, id, change)) {
                    Ok((commit, length)) => Self::answer_when(&myself, self.max_bytes, commit, reply, length),
                    Err((refused, stop)) => {
                        let _ = reply.send(Wire::encode_or(&Err::<u64, _>(refused), self.max_bytes, |_| {
                            Err(Refused::BadId)
                        }));
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
            max_bytes: cluster.max_frame_bytes(),
        };
        let keeper = Arc::new(keeper);
        let spec = ChildSpec::new(KEEPER, move || {
            let k = &keeper;
            (
                Keeper {
                    log: k.log.clone(),
                    keep: k.keep,
                    max_conversations: k.max_conversations,
                    max_bytes: k.max_bytes,
                },
                (),
            )
        });
        let singleton = SingletonHandle::start(cluster, KEEPER, spec);
        Ok(Conversations {
            inner: Arc::new(Inner { cluster: cluster.clone(), config, _log: log, _keeper: singleton }),
        })
    }

    /// Drops conversation `id` from the keeper's memory (a later load finds it empty, length
    /// 0); its entries stay in the log.
    pub async fn forget(&self, id: &str) -> Result<(), ConversationError> {
        check_conversation_id(id)?;
        self.change(id, None).await.map(drop)
    }

    /// The keeper, waiting for one to be visible until `deadline`.
    async fn keeper(
        &self,
        id: &str,
        deadline: tokio::time::Instant,
    ) -> Result<ActorRef<KeeperMsg>, ConversationError> {
        loop {
            if let Some(keeper) =
                ractor::pg::get_scoped_members(&SCOPE.to_string(), &KEEPER.to_string()).into_iter().next()
            {
                return Ok(keeper.into());
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
        let keeper = self.keeper(id, deadline).await?;
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
            loop {
                let keeper = match self.keeper(id, deadline).await {
                    Ok(keeper) => keeper,
                    Err(e) => return Err(last.unwrap_or(e)),
                };
                let max = self.limit_for(&keeper);
                let wire = Wire::encode(&id.to_string(), max)
                    .map_err(|e| unavailable(id, format!("the request does not encode: {e}")))?;
                let wait = deadline.saturating_duration_since(tokio::time::Instant::now());
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

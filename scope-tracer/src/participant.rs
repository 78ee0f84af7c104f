//! Per-node trace participants and cluster-wide collection.
//!
//! Every node that records traces runs a participant: a remotable actor in pg group
//! [`GROUP`] (scope [`SCOPE`]) that answers with its part of a trace. [`collect`] asks every
//! participant at once, waits at most its timeout, merges the parts into one [`Timeline`] and
//! names the nodes that did not answer instead of failing. [`profiles`] gathers every node's
//! profile; [`start_profile`] and [`stop_profile`] open and close a profile window on every
//! node at once.

use std::collections::BTreeSet;
use std::time::Duration;

use foundation_actors::wire::{Wire, WireError};
use foundation_cluster::Cluster;
use foundation_cluster::singleton::OBSERVER_PREFIX;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr};
use ractor_cluster_derive::RactorClusterMessage;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::profiler::NodeProfile;
use crate::recorder::{SpanRecord, TraceBuffer};
use crate::session::{self, MAX_SPANS_PER_NODE, SessionSpec};
use crate::timeline::{Timeline, merge};

/// The smallest `cluster.max_frame_bytes` a cluster accepts: the limit for a question that
/// carries nothing (`()`, no bytes), asked where no [`Cluster`] is at hand.
const SMALLEST_FRAME_LIMIT: usize = 1024;

/// The pg scope of participants.
pub const SCOPE: &str = foundation_actors::pg_scopes::TRACER;
/// The pg group of participants.
pub const GROUP: &str = "participants";

#[derive(RactorClusterMessage)]
pub(crate) enum ParticipantMsg {
    /// This node's spans of a trace: (node, spans).
    #[rpc]
    Spans(Wire<String>, RpcReplyPort<Wire<(String, Vec<SpanRecord>)>>),
    /// This node's profile.
    #[rpc]
    Profile(RpcReplyPort<Wire<NodeProfile>>),
    /// A cluster trace began (see [`crate::session`]); answers with this node's name once it
    /// records.
    #[rpc]
    Begin(Wire<SessionSpec>, RpcReplyPort<Wire<String>>),
    /// A cluster trace stopped: its id.
    End(Wire<String>),
    /// This node's spans of a cluster trace: its id.
    #[rpc]
    Session(Wire<String>, RpcReplyPort<Wire<SessionPart>>),
    /// A profile window starts (its id, and when on the starting node's clock): answers with
    /// this node's name once it records it (`None`: it records a later one).
    #[rpc]
    ProfileStart(Wire<(String, u64)>, RpcReplyPort<Wire<Option<String>>>),
    /// A profile window stops (its id): answers with this node's name if it was recording it.
    #[rpc]
    ProfileStop(Wire<String>, RpcReplyPort<Wire<Option<String>>>),
}

/// A node's part of a cluster trace.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SessionPart {
    pub(crate) node: String,
    /// `None`: the node does not record for this trace (out of scope, or never heard of it).
    pub(crate) spans: Option<Vec<SpanRecord>>,
    /// Spans left out (over [`MAX_SPANS_PER_NODE`]).
    pub(crate) truncated: usize,
}

struct Participant {
    node: String,
    buffer: TraceBuffer,
    cluster: Option<Cluster>,
    /// The largest answer it sends (`cluster.max_frame_bytes`: a larger frame would be over
    /// the asker's inbound limit and drop the connection between the nodes).
    max_bytes: usize,
}

impl Actor for Participant {
    type Msg = ParticipantMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<ParticipantMsg>, _: ()) -> Result<(), ActorProcessingErr> {
        ractor::pg::join_scoped(SCOPE.to_string(), GROUP.to_string(), vec![myself.get_cell()]);
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<ParticipantMsg>,
        msg: ParticipantMsg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        let (trace_id, reply) = match msg {
            ParticipantMsg::Spans(trace_id, reply) => (trace_id, reply),
            ParticipantMsg::Begin(spec, reply) => {
                if let Ok(spec) = spec.into_inner() {
                    session::begin(spec, &self.node, self.cluster.as_ref());
                    match Wire::encode(&self.node, self.max_bytes) {
                        Ok(wire) => drop(reply.send(wire)),
                        Err(e) => tracing::warn!(error = %e, "this node's name is too large to send"),
                    }
                }
                return Ok(());
            }
            ParticipantMsg::End(id) => {
                if let Ok(id) = id.into_inner() {
                    session::end(&id);
                }
                return Ok(());
            }
            ParticipantMsg::Session(id, reply) => {
                let Ok(id) = id.into_inner() else { return Ok(()) };
                let mut part = SessionPart { node: self.node.clone(), spans: None, truncated: 0 };
                if let Some((from, until)) = session::window(&id) {
                    let mut spans = self.buffer.window(from, until);
                    part.truncated = spans.len().saturating_sub(MAX_SPANS_PER_NODE);
                    spans.drain(..part.truncated);
                    part.spans = Some(spans);
                }
                // Spans with many fields can make even 20 000 too large for a frame: halve them
                // (keeping the newest) until the part fits.
                loop {
                    match Wire::encode(&part, self.max_bytes) {
                        Ok(wire) => {
                            let _ = reply.send(wire);
                            break;
                        }
                        Err(e) => match part.spans.as_mut().filter(|s| !s.is_empty()) {
                            Some(spans) => {
                                let half = spans.len().div_ceil(2);
                                spans.drain(..half);
                                part.truncated += half;
                            }
                            None => {
                                tracing::warn!(error = %e, "this node's part of a cluster trace cannot be sent");
                                break;
                            }
                        },
                    }
                }
                return Ok(());
            }
            ParticipantMsg::ProfileStart(start, reply) => {
                // Only ids this crate makes (16 lowercase hex digits): nothing else is kept.
                if let Ok((id, started)) = start.into_inner()
                    && let Some(id) = valid_window_id(id)
                {
                    let taken = crate::profiler().start_window(&id, started).then(|| self.node.clone());
                    if let Ok(wire) = Wire::encode(&taken, self.max_bytes) {
                        let _ = reply.send(wire);
                    }
                }
                return Ok(());
            }
            ParticipantMsg::ProfileStop(id, reply) => {
                if let Ok(id) = id.into_inner() {
                    let stopped = crate::profiler().stop_window(&id).then(|| self.node.clone());
                    if let Ok(wire) = Wire::encode(&stopped, self.max_bytes) {
                        let _ = reply.send(wire);
                    }
                }
                return Ok(());
            }
            ParticipantMsg::Profile(reply) => {
                // Too large for a frame (two sketches per span name): the lifetime figures go
                // first when there is a window, then everything but the node's name; logged.
                let mut profile = crate::profiler().snapshot(&self.node);
                loop {
                    match Wire::encode(&profile, self.max_bytes) {
                        Ok(wire) => {
                            let _ = reply.send(wire);
                            break;
                        }
                        Err(e)
                            if profile.kinds.is_empty()
                                && profile.window.as_ref().is_none_or(|w| w.kinds.is_empty()) =>
                        {
                            tracing::warn!(error = %e, "this node's profile is too large to send");
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "this node's profile is cut to fit a frame");
                            // The lifetime figures first; then (already gone) the window's too.
                            if profile.kinds.is_empty()
                                && let Some(w) = profile.window.as_mut()
                            {
                                w.kinds.clear();
                            }
                            profile.kinds.clear();
                        }
                    }
                }
                return Ok(());
            }
        };
        let Ok(trace_id) = trace_id.into_inner() else { return Ok(()) };
        let mut part = (self.node.clone(), self.buffer.trace(&trace_id));
        // A trace whose spans carry many events can be too large for a frame: halved (the
        // newest kept) until it fits, rather than no answer (this node listed as missing).
        loop {
            match Wire::encode(&part, self.max_bytes) {
                Ok(wire) => {
                    let _ = reply.send(wire);
                    return Ok(());
                }
                Err(e) if part.1.is_empty() => {
                    tracing::warn!(error = %e, "this node's part of a trace is too large to send");
                    return Ok(());
                }
                Err(_) => {
                    let half = part.1.len().div_ceil(2);
                    tracing::debug!(%trace_id, left_out = half, "a trace's part halved to fit a frame");
                    part.1.drain(..half);
                }
            }
        }
    }
}

/// Starts this node's participant, answering from `buffer` and taking part in cluster traces
/// ([`crate::session`]); stop the returned actor to leave.
pub async fn start(cluster: &Cluster, buffer: TraceBuffer) -> Result<ractor::ActorCell, SpawnErr> {
    let participant = Participant {
        node: cluster.name().to_string(),
        buffer,
        cluster: Some(cluster.clone()),
        max_bytes: cluster.max_frame_bytes(),
    };
    let (actor, _) = Actor::spawn(None, participant, ()).await?;
    Ok(actor.get_cell())
}

/// Every participant in the cluster.
pub(crate) fn participants() -> Vec<ActorRef<ParticipantMsg>> {
    ractor::pg::get_scoped_members(&SCOPE.to_string(), &GROUP.to_string())
        .into_iter()
        .map(ActorRef::from)
        .collect()
}

/// Asks every participant at once (`msg` built from `query` and the reply port) and waits at
/// most `timeout` for each; the answers that came and decoded, in no particular order. A
/// `query` larger than `max_bytes` (the cluster's frame limit) is sent to no one: an error
/// (logged).
pub(crate) async fn ask_all<Q, R>(
    query: &Q,
    max_bytes: usize,
    timeout: Duration,
    msg: fn(Wire<Q>, RpcReplyPort<Wire<R>>) -> ParticipantMsg,
) -> Result<Vec<R>, WireError>
where
    Q: Serialize + DeserializeOwned + Send + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    let request = foundation_actors::wire::encode(query, max_bytes).inspect_err(|e| {
        tracing::warn!(
            query = std::any::type_name::<Q>(), error = %e,
            "a question to the trace participants is too large to send; not asked"
        );
    })?;
    let mut calls = tokio::task::JoinSet::new();
    for participant in participants() {
        let request = Wire::from_encoded(&request);
        calls.spawn(async move {
            match participant.call(|port| msg(request, port), Some(timeout)).await {
                Ok(ractor::rpc::CallResult::Success(answer)) => answer.into_inner().ok(),
                _ => None,
            }
        });
    }
    let mut answers = Vec::new();
    while let Some(result) = calls.join_next().await {
        answers.extend(result.ok().flatten());
    }
    Ok(answers)
}

/// Collects the trace `trace_id` (32 hex digits) from every participant in the cluster, waiting
/// at most `timeout` for each; nodes of the cluster (this one included) that did not answer are
/// listed in [`Timeline::missing_nodes`], and what the others sent is kept.
pub async fn collect(cluster: &Cluster, trace_id: &str, timeout: Duration) -> Timeline {
    let expected: BTreeSet<String> =
        cluster.up().into_iter().chain(std::iter::once(cluster.name().to_string())).collect();
    let mut answered = BTreeSet::new();
    let mut spans = Vec::new();
    // A trace id too long to send (not 32 hex digits anyway) is asked of no one: every node missing.
    let asked =
        ask_all(&trace_id.to_string(), cluster.max_frame_bytes(), timeout, ParticipantMsg::Spans).await;
    for (node, part) in asked.unwrap_or_default() {
        answered.insert(node);
        spans.extend(part);
    }
    let missing =
        expected.difference(&answered).filter(|n| !n.starts_with(OBSERVER_PREFIX)).cloned().collect();
    merge(trace_id, spans, missing)
}

/// A profile window's id if it is one this crate makes (16 lowercase hex digits).
fn valid_window_id(id: String) -> Option<String> {
    (id.len() == 16 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))).then_some(id)
}

/// A profile window, started or stopped on the nodes named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileWindowAck {
    /// The window (16 hex digits).
    pub id: String,
    /// The nodes that started (or stopped) recording it, by name.
    pub nodes: Vec<String>,
}

/// Why a profile window could not be stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StopProfileError {
    /// No id was given and no node has a window.
    #[error("no node has a profile window (start one with `profile start`)")]
    NoWindow,
    /// The id is not one a window has (16 lowercase hex digits).
    #[error("`{0}` is not a profile window id (16 lowercase hex digits)")]
    BadId(String),
}

/// Starts a profile window on every node at once (a new id, stamped with this node's clock;
/// a node replaces its window unless it has one started later): every participant records span
/// statistics from when it takes the start until [`stop_profile`]. The answer names the nodes
/// that took it within `timeout`; one that took it later records it all the same, one that
/// never heard of it is named by `profiler::analyze` in `outside_window`. Starts and stops are
/// not ordered between nodes: a stop that reaches a node before its start leaves that node
/// recording until the next stop.
pub async fn start_profile(cluster: &Cluster, timeout: Duration) -> ProfileWindowAck {
    let id = format!("{:016x}", foundation_core::random::next_u64());
    let start = (id.clone(), crate::recorder::now_unix_ns());
    let answers = ask_all(&start, cluster.max_frame_bytes(), timeout, ParticipantMsg::ProfileStart).await;
    ProfileWindowAck { id, nodes: named(answers) }
}

/// Stops profile window `id` (or, given none, the one this node has, else the one the nodes'
/// profiles agree on) on every node; the nodes that were recording it. Stopped, each node keeps
/// its figures until the next start.
pub async fn stop_profile(
    cluster: &Cluster,
    id: Option<&str>,
    timeout: Duration,
) -> Result<ProfileWindowAck, StopProfileError> {
    let id = match id {
        Some(id) => valid_window_id(id.to_string()).ok_or_else(|| StopProfileError::BadId(id.to_string()))?,
        None => match crate::profiler().window() {
            Some((id, _)) => id,
            // This process records none (a dashboard without a participant, say): the window
            // the nodes report.
            None => crate::profiler::chosen_window(&profiles(timeout).await)
                .map(|w| w.id.clone())
                .ok_or(StopProfileError::NoWindow)?,
        },
    };
    let answers = ask_all(&id, cluster.max_frame_bytes(), timeout, ParticipantMsg::ProfileStop).await;
    Ok(ProfileWindowAck { id, nodes: named(answers) })
}

/// The nodes that said yes (named their name), sorted.
fn named(answers: Result<Vec<Option<String>>, WireError>) -> Vec<String> {
    let mut nodes: Vec<String> = answers.unwrap_or_default().into_iter().flatten().collect();
    nodes.sort();
    nodes
}

/// Every participant's profile (each asked with `timeout`; those that do not answer are left
/// out), by node name.
pub async fn profiles(timeout: Duration) -> Vec<NodeProfile> {
    let mut found: Vec<NodeProfile> =
        ask_all(&(), SMALLEST_FRAME_LIMIT, timeout, |_, port| ParticipantMsg::Profile(port))
            .await
            .unwrap_or_default();
    found.sort_by(|a, b| a.node.cmp(&b.node));
    found
}

#[cfg(test)]
mod tests {
    use ractor::rpc::CallResult;

    use super::*;

    const WAIT: Duration = Duration::from_secs(5);

    /// A participant answers within its cluster's frame limit, or not at all (logged), rather
    /// than send a frame the asker's node would drop the connection for.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_participant_sends_no_answer_over_the_frame_limit() {
        for (node, fits) in [("n1".to_string(), true), ("n".repeat(2000), false)] {
            let participant =
                Participant { node, buffer: TraceBuffer::new(16), cluster: None, max_bytes: 1024 };
            let (actor, task) = Actor::spawn(None, participant, ()).await.unwrap();
            let trace_id = Wire::encode(&"0af7651916cd43dd8448eb211c80319c".to_string(), 1024).unwrap();
            let spans = actor.call(|port| ParticipantMsg::Spans(trace_id, port), Some(WAIT)).await.unwrap();
            match spans {
                CallResult::Success(answer) => {
                    assert!(fits, "an answer of more than 1024 bytes was sent");
                    let (node, spans) = answer.into_inner().unwrap();
                    assert_eq!((node.as_str(), spans.len()), ("n1", 0));
                }
                CallResult::SenderError => assert!(!fits, "an answer that fits was not sent"),
                CallResult::Timeout => panic!("the participant neither answered nor dropped the question"),
            }
            if !fits {
                let profile = actor.call(ParticipantMsg::Profile, Some(WAIT)).await.unwrap();
                assert!(matches!(profile, CallResult::SenderError), "an oversized profile was sent");
            }
            actor.stop(None);
            task.await.unwrap();
        }
        // A question over the limit is asked of no one.
        let err = ask_all::<String, (String, Vec<SpanRecord>)>(
            &"x".repeat(2000),
            1024,
            WAIT,
            ParticipantMsg::Spans,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, WireError::TooLarge { max: 1024, .. }), "{err}");
    }
}

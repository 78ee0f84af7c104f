//! Per-node trace participants and cluster-wide collection.
//!
//! Every node that records traces runs a participant: a remotable actor in pg group
//! [`GROUP`] (scope [`SCOPE`]) that answers with its part of a trace. [`collect`] asks every
//! participant at once, waits at most its timeout, merges the parts into one [`Timeline`] and
//! names the nodes that did not answer instead of failing.

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
            ParticipantMsg::Profile(reply) => {
                // Unanswered if too large (the asker leaves this node's profile out), but logged.
                match Wire::encode(&crate::profiler().snapshot(&self.node), self.max_bytes) {
                    Ok(wire) => drop(reply.send(wire)),
                    Err(e) => tracing::warn!(error = %e, "this node's profile is too large to send"),
                }
                return Ok(());
            }
        };
        let Ok(trace_id) = trace_id.into_inner() else { return Ok(()) };
        let part = (self.node.clone(), self.buffer.trace(&trace_id));
        match Wire::encode(&part, self.max_bytes) {
            Ok(wire) => drop(reply.send(wire)),
            Err(e) => tracing::warn!(error = %e, "this node's part of a trace is too large to send"),
        }
        Ok(())
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

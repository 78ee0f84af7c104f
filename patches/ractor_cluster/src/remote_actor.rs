// Copyright (c) Sean Lawlor
//
// This source code is licensed under both the MIT license found in the
// LICENSE-MIT file in the root directory of this source tree.

//! A [RemoteActor] is an actor which handles serialized messages, and represents an actor
//! running on a remote `node()` server. See [crate::node::NodeServer] for more on inter-node
//! protocols

use ractor::concurrency::JoinHandle;
use ractor::message::SerializedMessage;
use ractor::Actor;
use ractor::ActorCell;
use ractor::ActorId;
use ractor::ActorName;
use ractor::ActorProcessingErr;
use ractor::ActorRef;
use ractor::SpawnErr;
use ractor_cluster_derive::RactorMessage;

use crate::NodeId;

#[cfg(test)]
mod tests;

/// A [RemoteActor] is an actor which represents an actor on another node
///
/// A [RemoteActor] handles serialized messages without decoding them, forwarding them
/// to the remote system for decoding + handling by the real implementation.
/// Therefore [RemoteActor]s can be thought of as a "shim" to a real actor on a remote system
pub(crate) struct RemoteActor;

impl RemoteActor {
    /// Spawn a [RemoteActor] with a supervisor (which should always be a [super::node::NodeSession])
    /// and automatically start the actor
    ///
    /// * `name`: A name to give the actor. Useful for global referencing or debug printing
    /// * `pid`: The actor's local id on the remote system
    /// * `node_id` The id of the [super::node::NodeSession]. Alongside `pid` this makes for a unique actor identifier
    /// * `supervisor`: The [super::node::NodeSession]'s [ActorCell] handle which will be linked in
    ///   the supervision tree
    ///
    /// Returns a [Ok((ActorRef, JoinHandle<()>))] upon successful start, denoting the actor reference
    /// along with the join handle which will complete when the actor terminates. Returns [Err(SpawnErr)] if
    /// the actor failed to start
    pub(crate) async fn spawn_linked(
        self,
        link: std::sync::Arc<crate::net::Link>,
        name: Option<ActorName>,
        pid: u64,
        node_id: NodeId,
        supervisor: ActorCell,
    ) -> Result<(ActorRef<RemoteActorMessage>, JoinHandle<()>), SpawnErr> {
        let actor_id = ActorId::Remote { node_id, pid };
        let weak = std::sync::Arc::downgrade(&link);
        let (actor, handle) = ractor::ActorRuntime::<Self>::spawn_linked_remote(
            name, self, actor_id, link, supervisor,
        )
        .await?;
        // Foundation patch 13: messages to the stand-in go to the link in the sender's task,
        // not through the stand-in's mailbox (set before anyone can reach the stand-in: it is
        // published by the caller of this function). Weak: a stand-in's cell may outlive the
        // session in users' hands; a message after the link is gone is dropped (a call's port
        // with it, so its caller hears it).
        let lane = std::sync::Mutex::new((0, None));
        let sink: ractor::RemoteSink = Box::new(move |message, stopping| {
            if let Some(link) = weak.upgrade() {
                let mut lane = lane.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                forward(&link, actor_id, &mut lane, message, stopping);
            }
        });
        actor.get_cell().set_remote_sink(sink);
        Ok((actor, handle))
    }
}

pub(crate) struct RemoteActorState {
    /// The owning session's link: frames go straight to its writer (Foundation patch 6)
    link: std::sync::Arc<crate::net::Link>,
    /// The control lane's generation last read, and this actor's variants on it (patch 8)
    lane: (u64, Option<crate::control_lane::Variants>),
}

impl RemoteActorState {
    fn new(link: std::sync::Arc<crate::net::Link>) -> Self {
        Self {
            link,
            lane: (0, None),
        }
    }
}

// Placeholder message for a remote actor, as we won't actually
// handle anything but serialized messages on this channel
#[derive(RactorMessage)]
pub(crate) struct RemoteActorMessage;

#[cfg_attr(feature = "async-trait", ractor::async_trait)]
impl Actor for RemoteActor {
    type Msg = RemoteActorMessage;
    type State = RemoteActorState;
    type Arguments = std::sync::Arc<crate::net::Link>;
    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        link: std::sync::Arc<crate::net::Link>,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(Self::State::new(link))
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        _message: Self::Msg,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        Err(From::from("`RemoteActor`s cannot handle local messages!"))
    }

    /// The calls this actor sent fail now (their callers hear `SenderError`), not at the end of
    /// the session: the remote actor is gone (Foundation patch 12: the link holds their ports).
    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.link.drop_replies_of(myself.get_id().pid());
        Ok(())
    }

    async fn handle_serialized(
        &self,
        myself: ActorRef<Self::Msg>,
        message: SerializedMessage,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // the stand-in's own task: it is not stopping while it handles a message
        forward(
            &state.link,
            myself.get_id(),
            &mut state.lane,
            message,
            &|| false,
        );
        Ok(())
    }
}

/// Sends `message` for the remote actor `id` over `link`: a cast or a call (the link keeps its
/// reply port), or answers a caller (a reply). `lane` caches the actor's control-lane variants
/// (patch 8). Run by the stand-in for what reaches its mailbox, and by its cell's sink, in the
/// sender's task, for everything else (patch 13). `stopping` says whether the stand-in is
/// stopping: a call registered while it stops is taken back (its stop drops the calls it finds,
/// so a call registered after that would wait for a reply that cannot come).
pub(crate) fn forward(
    link: &crate::net::Link,
    id: ActorId,
    lane: &mut (u64, Option<crate::control_lane::Variants>),
    message: SerializedMessage,
    stopping: &dyn Fn() -> bool,
) {
    // get the local pid on the remote system
    let to = id.pid();
    // Foundation patch 8: the variants of this actor on the control lane, re-read only when
    // a mark was made since
    let generation = crate::control_lane::generation();
    if generation != lane.0 {
        *lane = (generation, crate::control_lane::variants(&id));
    }
    let control = match (&message, &lane.1) {
        (
            SerializedMessage::Call { variant, .. } | SerializedMessage::Cast { variant, .. },
            Some(marked),
        ) => marked.iter().any(|v| v == variant),
        _ => false,
    };
    // messages should be forwarded over the network link (i.e. sent through the node session) to the intended
    // target node's relevant actor. The receiving runtime NodeSession will decode the message and pass it up
    // to the parent. However `SerializedMessage::CallReply` is a network reply to a send call request
    match message {
        SerializedMessage::Call {
            args,
            reply,
            variant,
            metadata,
        } => {
            let timeout_ms = reply.get_timeout().map(|t| t.as_millis() as u64);
            // Handle Call: the link keeps the reply port, and its reader answers it (Foundation
            // patch 12)
            let Some(tag) = link.await_reply(to, reply) else {
                // the session ended: the port was dropped, its caller hears it
                return;
            };
            // Checked after registering: a stop that set the status before this check is seen
            // here; one that sets it after finds the call when it drops its calls.
            if stopping() {
                drop(link.take_reply(tag, to));
                return;
            }
            let node_msg = crate::protocol::node::NodeMessage {
                msg: Some(crate::protocol::node::node_message::Msg::Call(
                    crate::protocol::node::Call {
                        to,
                        tag,
                        what: args,
                        timeout_ms,
                        variant,
                        metadata,
                    },
                )),
            };
            if !link.send_node_in(node_msg, control) {
                // not sent (a closed session, or over the frame limit): the caller hears it
                drop(link.take_reply(tag, to));
            }
        }
        SerializedMessage::Cast {
            args,
            variant,
            metadata,
        } => {
            // Handle Cast
            let node_msg = crate::protocol::node::NodeMessage {
                msg: Some(crate::protocol::node::node_message::Msg::Cast(
                    crate::protocol::node::Cast {
                        to,
                        what: args,
                        variant,
                        metadata,
                    },
                )),
            };
            let _ = link.send_node_in(node_msg, control);
        }
        SerializedMessage::CallReply(message_tag, reply_data) => {
            // Handle the reply to a "Call" message
            if let Some(port) = link.take_reply(message_tag, to) {
                let _ = port.send(reply_data);
            }
        }
    }
}

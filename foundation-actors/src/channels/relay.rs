//! The per-node relay actors: a node's membership in a topic's process group, and the entry
//! point for broadcasts from other nodes. One relay per lane, so that a flood of normal-lane
//! broadcasts queued at a relay never delays a control-lane one.
//!
//! A relay is remotable: nodes in other processes see it in the topic's pg group and send it
//! [`Envelope`]s, encoded once per broadcast. Relays in the same process are sent the message
//! itself, never encoded.

use std::any::Any;
use std::sync::{Arc, Weak};

use ractor::message::{BoxedDowncastErr, SerializedMessage};
use ractor::{Actor, ActorProcessingErr, ActorRef, BytesConvertable};
use serde::{Deserialize, Serialize};

use super::topic::Lane;
use super::{ChannelError, Registry};
use crate::wire::Wire;

/// The pg scope that channel groups live in.
pub const PG_SCOPE: &str = crate::pg_scopes::CHANNELS;

/// The pg group of a topic: relays of the nodes that have subscribers for it.
pub fn pg_group(topic: &str) -> String {
    format!("topic:{topic}")
}

/// Publishes a type-erased message into a registry; monomorphized per message type.
pub(crate) type Deliver = fn(&Registry, &Arc<str>, Box<dyn Any + Send>) -> Result<usize, ChannelError>;

/// Decodes a message of a cluster-wide topic and publishes it; monomorphized per message type.
pub(crate) type Decode = fn(&Registry, &Arc<str>, &[u8]) -> Result<usize, ChannelError>;

/// A broadcast on its way to another process.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Envelope {
    pub(crate) topic: String,
    /// The message type's name, checked by the receiver.
    pub(crate) type_name: String,
    /// The message, encoded by the wire adapter.
    pub(crate) payload: Vec<u8>,
}

pub(crate) enum RelayMsg {
    /// A broadcast from another node's channels in this process.
    Deliver {
        topic: Arc<str>,
        payload: Box<dyn Any + Send>,
        deliver: Deliver,
        /// The broadcaster's trace context (another relay in this process).
        parent: Option<foundation_core::trace_context::TraceParent>,
    },
    /// A broadcast from a node in another process.
    Remote(Wire<Envelope>),
}

const REMOTE_VARIANT: &str = "Remote";

// Written by hand rather than derived: `Deliver` carries a type-erased value and a function
// pointer, which only ever go to relays in this process (ractor boxes them without encoding);
// only `Remote` crosses nodes.
impl ractor::Message for RelayMsg {
    fn serializable() -> bool {
        true
    }

    fn serialize(self) -> Result<SerializedMessage, BoxedDowncastErr> {
        match self {
            RelayMsg::Remote(envelope) => Ok(SerializedMessage::Cast {
                variant: REMOTE_VARIANT.to_string(),
                args: envelope.into_bytes(),
                metadata: None,
            }),
            RelayMsg::Deliver { .. } => Err(BoxedDowncastErr),
        }
    }

    fn deserialize(message: SerializedMessage) -> Result<Self, BoxedDowncastErr> {
        match message {
            SerializedMessage::Cast { variant, args, .. } if variant == REMOTE_VARIANT => {
                Ok(RelayMsg::Remote(Wire::from_bytes(args)))
            }
            other => {
                tracing::warn!(?other, "a channel relay was sent a message it does not know");
                Err(BoxedDowncastErr)
            }
        }
    }
}

pub(crate) struct Relay;

impl Actor for Relay {
    type Msg = RelayMsg;
    type State = Weak<Registry>;
    type Arguments = (Weak<Registry>, Lane);

    async fn pre_start(
        &self,
        _: ActorRef<RelayMsg>,
        (registry, _lane): (Weak<Registry>, Lane),
    ) -> Result<Weak<Registry>, ActorProcessingErr> {
        Ok(registry)
    }

    async fn handle(
        &self,
        _: ActorRef<RelayMsg>,
        msg: RelayMsg,
        registry: &mut Weak<Registry>,
    ) -> Result<(), ActorProcessingErr> {
        let Some(registry) = registry.upgrade() else { return Ok(()) };
        let (topic, result) = match msg {
            RelayMsg::Deliver { topic, payload, deliver, parent } => {
                // The broadcast's trace continues here, as for one from another process.
                let span = foundation_core::trace_context::continue_trace!(parent, "channel.relay");
                let _in_trace = span.enter();
                let result = deliver(&registry, &topic, payload);
                (topic.to_string(), result)
            }
            RelayMsg::Remote(envelope) => {
                // The broadcast's trace continues here: its fan-out is a span of the trace.
                let span = envelope.span();
                let _in_trace = span.enter();
                match envelope.into_inner() {
                    // Already counted and logged by the wire adapter.
                    Err(_) => return Ok(()),
                    Ok(envelope) => {
                        let result = registry.deliver_encoded(&envelope);
                        (envelope.topic, result)
                    }
                }
            }
        };
        if let Err(e) = result {
            // A mismatch between nodes is the sender's bug; refuse it here, keep running.
            metrics::counter!("foundation_channel_refused_total", "topic" => foundation_core::telemetry::bounded_label("topic", &topic)).increment(1);
            tracing::warn!(%topic, error = %e, "refused a broadcast from another node");
        }
        Ok(())
    }
}

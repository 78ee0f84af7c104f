//! The per-node relay actors: a node's membership in a topic's process group, and the entry
//! point for broadcasts from other nodes. One relay per lane, so that a flood of normal-lane
//! broadcasts queued at a relay never delays a control-lane one.

use std::any::Any;
use std::sync::{Arc, Weak};

use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::topic::Lane;
use super::{ChannelError, Registry};

/// The pg scope that channel groups live in.
pub const PG_SCOPE: &str = "foundation.channels";

/// The pg group of a topic: relays of the nodes that have subscribers for it.
pub fn pg_group(topic: &str) -> String {
    format!("topic:{topic}")
}

/// Publishes a type-erased message into a registry; monomorphized per message type.
pub(crate) type Deliver = fn(&Registry, &Arc<str>, Box<dyn Any + Send>) -> Result<usize, ChannelError>;

pub(crate) enum RelayMsg {
    /// A broadcast from another node's channels in this process. (Across processes the cluster
    /// layer delivers serialized payloads.)
    Deliver { topic: Arc<str>, payload: Box<dyn Any + Send>, deliver: Deliver },
}

// Local-only for now: explicit because ractor's `cluster` feature removes the blanket impl.
impl ractor::Message for RelayMsg {}

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
        let RelayMsg::Deliver { topic, payload, deliver } = msg;
        if let Some(registry) = registry.upgrade()
            && let Err(e) = deliver(&registry, &topic, payload)
        {
            // A type mismatch between nodes is the sender's bug; refuse it here, keep running.
            tracing::warn!(%topic, error = %e, "refused a broadcast from another node");
        }
        Ok(())
    }
}

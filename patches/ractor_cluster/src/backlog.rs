// Foundation patch 10: a link's backlog, for senders of bulk data.

//! How much a link still has to write, and a way to wait for it to drain.
//!
//! A cast to a remote actor never waits: it is queued on the link to the actor's node and
//! written when the writer gets to it. A sender of bulk data that casts faster than the network
//! takes it queues everything it sends, in memory, with nothing to slow it down (Erlang's
//! distribution suspends such a sender once its connection's buffer passes
//! `dist_buf_busy_limit`, 1 MiB by default). [`link_below`] is that limit for those who want it:
//! it waits until the link to an actor's node has at most so many bytes of messages queued and
//! not yet written. A sender that awaits it before each send holds at most about `limit` bytes
//! plus its last message in the link (a cast is on the link when it returns: patch 13), and
//! reuses memory that is still warm instead of
//! queueing fresh buffers.
//!
//! The backlog counts node messages (casts, calls, replies) with their framing, from when they
//! are queued on the link until the write that contains them completed (what the kernel's socket
//! buffer then holds is not counted). The wait ends when the link's writer ends too (the session
//! closed): nothing queued will be written, and the sender's next cast fails or goes to a new
//! session.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock, Weak};

use ractor::{ActorCell, ActorId};

use crate::net::Link;
use crate::NodeId;

/// The link of each session, by the node id its remote actors carry (unique in the process).
static LINKS: LazyLock<RwLock<HashMap<NodeId, Weak<Link>>>> = LazyLock::new(RwLock::default);

/// A session's link, for its remote actors (`node_id` as in their `ActorId::Remote`). Links of
/// ended sessions are forgotten here.
pub(crate) fn register(node_id: NodeId, link: &Arc<Link>) {
    let mut links = LINKS
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    links.retain(|_, link| link.strong_count() > 0);
    links.insert(node_id, Arc::downgrade(link));
}

fn link_of(actor: &ActorCell) -> Option<Arc<Link>> {
    let ActorId::Remote { node_id, .. } = actor.get_id() else {
        return None;
    };
    LINKS
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get(&node_id)
        .and_then(Weak::upgrade)
}

/// Bytes of messages queued on the link to `actor`'s node and not yet written; `None` for a
/// local actor or one whose session ended.
pub fn link_backlog(actor: &ActorCell) -> Option<u64> {
    link_of(actor)
        .filter(|link| !link.writer_has_ended())
        .map(|link| link.backlog())
}

/// Waits until the link to `actor`'s node has at most `limit` bytes of messages queued and not
/// yet written, or its session ended. Returns at once for a local actor.
///
/// It also yields to the runtime each time, so that a loop that sends without ever waiting does not keep its worker thread from the timers
/// and tasks queued on it, such as the heartbeats that keep this node up in its peers' eyes.
/// Several senders to one node each pass the limit: the bound is per sender.
pub async fn link_below(actor: &ActorCell, limit: u64) {
    if let Some(link) = link_of(actor) {
        link.below(limit).await;
    }
    tokio::task::yield_now().await;
}

// Foundation patch 8: the control lane.

//! The control lane: messages to chosen actors go ahead of everything else queued on a link.
//!
//! A link writes what was queued in order, in batches of at most 256 KiB or one large frame. A
//! small message queued behind megabytes of payload waits for all of it: a heartbeat behind a
//! bulk transfer on a slow network arrives late enough to make a live node look frozen. Actors
//! marked with [`use_control_lane`] get a second queue on every link, which the writer empties
//! before it takes the next frame of the first: a message to (or a reply from) such an actor
//! waits at most for the batch being written, so for at most one large frame.
//!
//! Order: messages on the control lane keep their order among themselves (between two nodes),
//! and so do all others; a control-lane message may overtake others queued before it. Mark only
//! actors whose protocol does not depend on that (heartbeats, pings). Both sides of a
//! request/reply mark: the caller marks the remote actor it calls (its stand-in), the callee
//! marks itself (its replies travel on the lane).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, RwLock};

use ractor::{ActorCell, ActorId};

static ANY: AtomicBool = AtomicBool::new(false);
static MARKED: LazyLock<RwLock<HashSet<ActorId>>> = LazyLock::new(RwLock::default);

/// Puts messages to `actor` on the control lane: for a remote actor (a stand-in), what this
/// node sends it; for a local one, its replies to calls from other nodes. Idempotent; a stand-in
/// is forgotten when it stops.
pub fn use_control_lane(actor: &ActorCell) {
    let id = actor.get_id();
    if carries(&id) {
        return;
    }
    MARKED
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .insert(id);
    ANY.store(true, Ordering::Release);
}

/// Whether messages to (remote) or replies from (local) `actor` use the control lane.
pub(crate) fn carries(actor: &ActorId) -> bool {
    ANY.load(Ordering::Acquire)
        && MARKED
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(actor)
}

/// Forgets a stopped stand-in.
pub(crate) fn forget(actor: &ActorId) {
    if ANY.load(Ordering::Acquire) {
        MARKED
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(actor);
    }
}

// Foundation patch 8: the control lane.

//! The control lane: chosen messages go ahead of everything else queued on a link.
//!
//! A link writes what was queued in order, in batches (up to 256 KiB, plus the frame that
//! crosses it). A small message queued behind megabytes of payload waits for all of it: a
//! heartbeat behind a bulk transfer on a slow network arrives late enough to make a live node
//! look frozen. Messages of the variants marked with [`use_control_lane`] for an actor go on a
//! second queue of the link that the writer empties before it takes the next frame of the
//! first: such a message waits for the batch being written, never for what is queued behind
//! it. (Bytes already handed to the kernel's socket buffer are still ahead of it: up to a few
//! MiB on Linux, sent at the network's pace.)
//!
//! Order: messages on the control lane keep their order among themselves (between two nodes),
//! and so do all others; a control-lane message may overtake others queued before it. Mark
//! only variants whose protocol does not depend on that (a heartbeat's ping, a suspicion), not
//! ones that must follow what was sent before (a leave notice after a lease's release). Both
//! sides of a request/reply mark: the caller marks the remote actor it calls (its stand-in), the
//! callee marks itself (its replies to those variants travel on the lane).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, RwLock};

use ractor::{ActorCell, ActorId, ActorStatus};

/// Bumped by every mark: a remote actor re-reads its variants only when it changed (nothing is
/// marked while it is 0).
static GENERATION: AtomicU64 = AtomicU64::new(0);
static MARKED: LazyLock<RwLock<HashMap<ActorId, Marked>>> = LazyLock::new(RwLock::default);

/// The variants of one marked actor (its cell: a stopped one is forgotten at the next mark).
struct Marked {
    cell: ActorCell,
    variants: Variants,
}

/// Message variants (the names ractor's cluster derive sends) on the control lane.
pub(crate) type Variants = Arc<[String]>;

/// Puts the messages of `variants` to `actor` on the control lane: for a remote actor (a
/// stand-in), what this node sends it; for a local one, its replies to calls from other nodes.
/// Idempotent; a mark for an actor that stopped is forgotten when another is made.
pub fn use_control_lane(actor: &ActorCell, variants: &[&str]) {
    let id = actor.get_id();
    let same = |marked: &Marked| {
        marked
            .variants
            .iter()
            .map(String::as_str)
            .eq(variants.iter().copied())
    };
    if marked_variants_of(&id, same) {
        return;
    }
    let mut marked = MARKED
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    marked.retain(|_, m| m.cell.get_status() != ActorStatus::Stopped);
    marked.insert(
        id,
        Marked {
            cell: actor.clone(),
            variants: variants.iter().map(|v| v.to_string()).collect(),
        },
    );
    GENERATION.fetch_add(1, Ordering::Release);
}

fn marked_variants_of(id: &ActorId, check: impl Fn(&Marked) -> bool) -> bool {
    MARKED
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get(id)
        .is_some_and(check)
}

/// The current generation of marks (0: none).
pub(crate) fn generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

/// The variants marked for `actor`, if any.
pub(crate) fn variants(actor: &ActorId) -> Option<Variants> {
    if generation() == 0 {
        return None;
    }
    MARKED
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get(actor)
        .map(|m| m.variants.clone())
}

/// Whether `variant` of `actor` travels on the control lane.
pub(crate) fn carries(actor: &ActorId, variant: &str) -> bool {
    generation() != 0 && marked_variants_of(actor, |m| m.variants.iter().any(|v| v == variant))
}

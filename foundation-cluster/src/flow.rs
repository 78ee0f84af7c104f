//! Flow control for senders of bulk data between nodes.
//!
//! A cast to an actor on another node never waits: it is queued on the connection to that node
//! and written when the connection gets to it. A sender that casts large messages faster than
//! the network takes them queues all of them in memory, with nothing to slow it down (Erlang
//! suspends such a sender once its connection's buffer passes `dist_buf_busy_limit`, 1 MiB by
//! default). [`ready_to_send`] is that brake, for senders that want it: await it before each
//! cast of bulk data and at most about [`BUSY_BYTES`] plus the last message stay queued for
//! the connection because of this sender, whatever its pace (each of several senders to one
//! node passes the limit on its own). Measured, it also makes the transfer itself
//! faster: buffers are reused while still warm instead of the allocator mapping fresh ones
//! (docs/BENCHMARKS.md, "Flow control").
//!
//! What counts: casts, calls and replies queued on the connection (with their framing) from
//! when they are queued until the write that contains them completed; not what the kernel's
//! socket buffer then holds. The wait ends at once for an actor on this node, and when the
//! connection closes (the next cast then fails or goes to a new connection); it has no timeout
//! of its own: a node that stops reading holds its senders, as a full queue would — wrap it in
//! `tokio::time::timeout` where that matters.
//!
//! ```no_run
//! # async fn send_all<M: ractor::Message>(to: ractor::ActorRef<M>, chunks: Vec<M>) {
//! for chunk in chunks {
//!     foundation_cluster::flow::ready_to_send(&to.get_cell()).await;
//!     let _ = to.cast(chunk);
//! }
//! # }
//! ```

use ractor::ActorCell;

/// How many bytes may wait on a connection before [`ready_to_send`] holds a sender back (1 MiB,
/// Erlang's default `dist_buf_busy_limit`).
pub const BUSY_BYTES: u64 = 1 << 20;

/// Waits until the connection to `to`'s node has at most [`BUSY_BYTES`] queued and not yet
/// written (at once for an actor on this node, or when the connection closed).
pub async fn ready_to_send(to: &ActorCell) {
    ractor_cluster::link_below(to, BUSY_BYTES).await;
}

/// Bytes queued on the connection to `to`'s node and not yet written; `None` for an actor on
/// this node or a connection that closed.
pub fn backlog(to: &ActorCell) -> Option<u64> {
    ractor_cluster::link_backlog(to)
}

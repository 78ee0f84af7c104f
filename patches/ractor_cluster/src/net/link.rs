// Foundation patch 6: one link per session, node messages without a detour through the
// session actors.

//! What a node session, its reader and its remote actors share.
//!
//! Before this patch a cast to a remote actor went caller → `RemoteActor` → `NodeSession` →
//! `Session` → writer task, and a received frame reader → `Session` → `NodeSession` → target:
//! four actor hops per message on each side (eight for a request and its reply), each a mailbox
//! and usually a wake-up. Now a remote actor hands its frame to the writer's queue itself, and
//! the reader delivers casts, calls and replies itself, so a message crosses one hop on each
//! side (since patch 13 the sender's own task queues it for the writer: no stand-in mailbox;
//! since patch 12 a reply goes from the reader to its caller's port); handshakes and control
//! messages still go to the node session, in order.
//!
//! Rules kept:
//! - nothing is delivered by the reader before the node session has authenticated and won the
//!   session election ([`Link::open`]); until then, and while any frame it passed to the node
//!   session (handshake, control, node) is still unhandled there, the reader passes node
//!   messages on too: everything from the peer takes effect in the order it was read (a cast
//!   after a group join finds the joined member);
//! - only actors this node advertised to the peer receive its messages (the same check the node
//!   session made);
//! - the outgoing queue is the writer task's: it closes when the session does, and sends to a
//!   closed session fail (a caller waiting on a reply hears `SenderError` when its remote actor
//!   stops with the session);
//! - a reply larger than the frame limit is not sent: its caller waits for its timeout.

use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::sync::RwLock;
use std::time::Duration;

use ractor::message::SerializedMessage;
use ractor::ActorId;
use ractor::ActorRef;

use crate::protocol::meta::network_message::Message as NetworkMessageKind;
use crate::protocol::node as node_protocol;
use crate::protocol::NetworkMessage;
use crate::remote_actor::RemoteActorMessage;

/// The feature bit (`NodeFlags.features`) of split payload frames: a node message's payload
/// travels after its envelope, written from and read into its own buffer (no copy into or out of
/// the protobuf envelope). Sent to a peer only when it announced the bit.
pub(crate) const FEATURE_SPLIT_PAYLOADS: u32 = 1;

/// Counts a frame passed on by the reader as handled when dropped (however the node session's
/// handler returns).
pub(crate) struct HandledOnDrop(std::sync::Arc<Link>);

impl HandledOnDrop {
    pub(crate) fn new(link: std::sync::Arc<Link>) -> Self {
        Self(link)
    }
}

impl Drop for HandledOnDrop {
    fn drop(&mut self) {
        self.0.handled_one();
    }
}

/// The receiving ends of a link's two queues, read by the session's writer task (the control
/// lane first: see [`crate::control_lane`]).
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) frames: tokio::sync::mpsc::UnboundedReceiver<NetworkMessage>,
    pub(crate) control: tokio::sync::mpsc::UnboundedReceiver<NetworkMessage>,
}

impl Outgoing {
    /// The next queued frame, the control lane's first (tests).
    #[cfg(test)]
    pub(crate) fn try_recv(
        &mut self,
    ) -> Result<NetworkMessage, tokio::sync::mpsc::error::TryRecvError> {
        self.control.try_recv().or_else(|_| self.frames.try_recv())
    }
}

/// The shared part of one session (see the module docs).
#[derive(Debug)]
pub(crate) struct Link {
    /// The writer task's queue: everything this session sends, in order ...
    outgoing: tokio::sync::mpsc::UnboundedSender<NetworkMessage>,
    /// ... but node messages on the control lane, written first.
    control: tokio::sync::mpsc::UnboundedSender<NetworkMessage>,
    /// Set once the node session authenticated and won the session election.
    open: AtomicBool,
    /// The peer reads split payload frames ([`FEATURE_SPLIT_PAYLOADS`]).
    splits: AtomicBool,
    /// Frames the reader passed to the node session ...
    passed_on: AtomicU64,
    /// ... and how many of them the node session has handled.
    handled: AtomicU64,
    /// The local actors advertised to the peer: the only ones it may send to.
    advertised: RwLock<HashSet<u64>>,
    /// The peer's actors known here, by their pid on the peer.
    remote_actors: Mutex<HashMap<u64, ActorRef<RemoteActorMessage>>>,
    /// The largest frame this node sends: its own inbound limit (the nodes of a cluster share
    /// one); a larger message would make the peer close the session, cutting every other
    /// message between the two nodes.
    max_frame: u64,
    /// Node messages refused as too large (logged at the first and every 1000th).
    refused: AtomicU64,
    /// The traffic totals of this node with the peer, once the session authenticated and won
    /// its election (patch 14).
    traffic: std::sync::OnceLock<std::sync::Arc<crate::traffic::Totals>>,
    /// Bytes of node messages queued and not yet written (patch 10, `crate::backlog`).
    backlog: AtomicU64,
    /// Woken after every write, and when the writer ends.
    drained: tokio::sync::Notify,
    /// The writer ended: nothing queued will be written.
    closed: AtomicBool,
    /// Calls sent on this link that wait for their reply (patch 12): the reader hands a reply
    /// to its caller's port itself.
    pending: Mutex<PendingCalls>,
}

/// Calls waiting for their reply, by the tag they were sent with (unique on the link).
#[derive(Debug, Default)]
struct PendingCalls {
    last_tag: u64,
    /// tag → the remote actor stand-in that sent it (its pid on the peer) and the caller's port
    calls: HashMap<u64, (u64, ractor::RpcReplyPort<Vec<u8>>)>,
}

/// Every this many calls, the ports of callers that stopped waiting are dropped.
pub(crate) const PENDING_SWEEP_EVERY: u64 = 64;

/// What a node message counts in a link's backlog: its size with the frame around it (the same
/// figure the frame limit is checked against).
pub(crate) fn backlog_cost(message: &node_protocol::NodeMessage) -> u64 {
    (prost::Message::encoded_len(message) as u64).saturating_add(24)
}

impl Link {
    /// A link with the default frame limit (tests).
    #[cfg(test)]
    pub(crate) fn new() -> (std::sync::Arc<Self>, Outgoing) {
        Self::with_max_frame(crate::node::DEFAULT_MAX_INBOUND_FRAME_SIZE)
    }

    /// A link and the receiving ends of its outgoing queues (for the writer task); frames over
    /// `max_frame` bytes are not sent.
    pub(crate) fn with_max_frame(max_frame: u64) -> (std::sync::Arc<Self>, Outgoing) {
        let (outgoing, frames) = tokio::sync::mpsc::unbounded_channel();
        let (control, control_rx) = tokio::sync::mpsc::unbounded_channel();
        let link = Self {
            outgoing,
            control,
            open: AtomicBool::new(false),
            splits: AtomicBool::new(false),
            passed_on: AtomicU64::new(0),
            handled: AtomicU64::new(0),
            advertised: RwLock::new(HashSet::new()),
            remote_actors: Mutex::new(HashMap::new()),
            max_frame,
            refused: AtomicU64::new(0),
            traffic: std::sync::OnceLock::new(),
            backlog: AtomicU64::new(0),
            drained: tokio::sync::Notify::new(),
            closed: AtomicBool::new(false),
            pending: Mutex::new(PendingCalls::default()),
        };
        (
            std::sync::Arc::new(link),
            Outgoing {
                frames,
                control: control_rx,
            },
        )
    }

    /// Queues a frame for the writer; false when the session is closed.
    pub(crate) fn send(&self, message: NetworkMessage) -> bool {
        self.outgoing.send(message).is_ok()
    }

    /// Queues a node message (a cast, call or reply); false when the session is closed or
    /// the message is larger than a frame may be (refused here, before it is sent: the peer
    /// would close the session on reading it).
    pub(crate) fn send_node(&self, message: node_protocol::NodeMessage) -> bool {
        self.send_node_in(message, false)
    }

    /// [`send_node`](Self::send_node), on the control lane when `control`.
    pub(crate) fn send_node_in(&self, message: node_protocol::NodeMessage, control: bool) -> bool {
        // the envelope around it: a field key and a length (at most 11 bytes), and a split
        // frame's second length word
        let cost = backlog_cost(&message);
        if cost > self.max_frame {
            let refused = self.refused.fetch_add(1, Ordering::Relaxed);
            if let Some(traffic) = self.traffic() {
                traffic.refused();
            }
            if refused % 1000 == 0 {
                tracing::warn!(
                    "A cluster message of about {cost} bytes is over the frame limit of \
                     {} bytes and was not sent ({} refused so far)",
                    self.max_frame,
                    refused + 1
                );
            }
            return false;
        }
        let frame = NetworkMessage {
            message: Some(NetworkMessageKind::Node(message)),
        };
        // counted before it is queued: the writer may write it (and count it off) at once
        self.backlog.fetch_add(cost, Ordering::AcqRel);
        let queued = match control {
            true => self.control.send(frame).is_ok(),
            false => self.send(frame),
        };
        if !queued {
            self.written(cost);
        }
        queued
    }

    /// The traffic totals this link adds to, once its session is counted (patch 14).
    pub(crate) fn traffic(&self) -> Option<&crate::traffic::Totals> {
        self.traffic.get().map(|t| &**t)
    }

    /// From now on this link adds to `totals` (set once; a second call changes nothing).
    pub(crate) fn count_in(&self, totals: std::sync::Arc<crate::traffic::Totals>) {
        let _ = self.traffic.set(totals);
    }

    /// The writer wrote node messages of `cost` in all (their [`backlog_cost`]).
    pub(crate) fn written(&self, cost: u64) {
        if cost > 0 {
            // saturating: a node message queued by another path than `send_node_in` would be
            // counted off without having been counted (none is today)
            let _ = self
                .backlog
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                    Some(queued.saturating_sub(cost))
                });
        }
        self.drained.notify_waiters();
    }

    /// The writer ended: waiters stop waiting (nothing queued will be written), and callers
    /// waiting for a reply hear that it will not come (their ports are dropped).
    pub(crate) fn writer_ended(&self) {
        self.closed.store(true, Ordering::Release);
        self.drained.notify_waiters();
        let calls = std::mem::take(&mut self.pending().calls);
        drop(calls);
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, PendingCalls> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Keeps `reply` until the reply to the call `to` sends with the returned tag arrives;
    /// `None` (the port dropped: its caller hears it) once the writer ended.
    pub(crate) fn await_reply(&self, to: u64, reply: ractor::RpcReplyPort<Vec<u8>>) -> Option<u64> {
        let mut pending = self.pending();
        // under the lock `writer_ended` takes after it set `closed`: a call either sees the
        // link closed or is dropped by it
        if self.closed.load(Ordering::Acquire) {
            return None;
        }
        pending.last_tag += 1;
        let tag = pending.last_tag;
        if tag % PENDING_SWEEP_EVERY == 0 {
            pending.calls.retain(|_, (_, port)| !port.is_closed());
        }
        pending.calls.insert(tag, (to, reply));
        Some(tag)
    }

    /// The port of the call with `tag`, if `to` sent it and it still waits.
    pub(crate) fn take_reply(&self, tag: u64, to: u64) -> Option<ractor::RpcReplyPort<Vec<u8>>> {
        let mut pending = self.pending();
        match pending.calls.get(&tag) {
            Some((sender, _)) if *sender == to => pending.calls.remove(&tag).map(|(_, port)| port),
            _ => None,
        }
    }

    /// Drops the ports of the calls `to` sent (its stand-in stopped): their callers hear it.
    pub(crate) fn drop_replies_of(&self, to: u64) {
        let mut pending = self.pending();
        let gone: Vec<u64> = pending
            .calls
            .iter()
            .filter(|(_, (sender, _))| *sender == to)
            .map(|(tag, _)| *tag)
            .collect();
        let ports: Vec<_> = gone
            .iter()
            .filter_map(|tag| pending.calls.remove(tag))
            .collect();
        drop(pending);
        drop(ports);
    }

    /// How many calls wait for a reply (tests).
    #[cfg(test)]
    pub(crate) fn pending_calls(&self) -> usize {
        self.pending().calls.len()
    }

    /// Whether the writer ended (the session closed).
    pub(crate) fn writer_has_ended(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Bytes of node messages queued and not yet written.
    pub(crate) fn backlog(&self) -> u64 {
        self.backlog.load(Ordering::Acquire)
    }

    /// Waits until at most `limit` bytes are queued, or the writer ended.
    pub(crate) async fn below(&self, limit: u64) {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.closed.load(Ordering::Acquire) || self.backlog() <= limit {
                return;
            }
            drained.await;
        }
    }

    /// The session authenticated and won its election: the reader may deliver node messages,
    /// and the writer may split payloads if the peer announced it reads them (`peer_features`).
    pub(crate) fn open(&self, peer_features: u32) {
        self.splits.store(
            peer_features & FEATURE_SPLIT_PAYLOADS != 0,
            Ordering::Release,
        );
        self.open.store(true, Ordering::Release);
    }

    /// Whether the writer may send split payload frames.
    pub(crate) fn splits(&self) -> bool {
        self.splits.load(Ordering::Acquire)
    }

    /// Whether the reader may deliver a node message itself: the link is open and every frame
    /// passed to the node session before (handshake, control, node) was handled there, so that
    /// nothing overtakes a group change or an actor's announcement read before it.
    pub(crate) fn delivers(&self) -> bool {
        self.open.load(Ordering::Acquire)
            && self.handled.load(Ordering::Acquire) == self.passed_on.load(Ordering::Relaxed)
    }

    /// The reader passes a frame to the node session (counted until handled).
    pub(crate) fn passing_on(&self) {
        self.passed_on.fetch_add(1, Ordering::Relaxed);
    }

    /// The node session handled a frame the reader passed on.
    pub(crate) fn handled_one(&self) {
        self.handled.fetch_add(1, Ordering::Release);
    }

    /// A local actor is advertised to the peer (before the advertisement is sent).
    pub(crate) fn advertise(&self, pid: u64) {
        self.advertised
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(pid);
    }

    /// A local actor is no longer advertised.
    pub(crate) fn withdraw(&self, pid: u64) {
        self.advertised
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&pid);
    }

    /// The local actor `pid` if it was advertised to the peer and still takes remote messages.
    pub(crate) fn authorized_local_actor(&self, pid: u64) -> Option<ractor::ActorCell> {
        let advertised = self
            .advertised
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(&pid);
        if !advertised {
            tracing::debug!("Rejected cluster message for unadvertised local PID {pid}");
            return None;
        }
        let actor = ractor::registry::where_is_pid(ActorId::Local(pid));
        if actor
            .as_ref()
            .is_some_and(ractor::ActorCell::supports_remoting)
        {
            actor
        } else {
            self.withdraw(pid);
            tracing::debug!("Rejected cluster message for non-remotable local PID {pid}");
            None
        }
    }

    /// The session ended: forget the actors on both sides (a reply sink or a stand-in may still
    /// hold the link for a while).
    pub(crate) fn forget(&self) {
        self.remote_actors().clear();
        self.advertised
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
    }

    /// The remote actor for the peer's `pid`.
    pub(crate) fn remote_actor(&self, pid: u64) -> Option<ActorRef<RemoteActorMessage>> {
        self.remote_actors().get(&pid).cloned()
    }

    /// The map of the peer's actors known here.
    pub(crate) fn remote_actors(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<u64, ActorRef<RemoteActorMessage>>> {
        self.remote_actors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Delivers a node message from the peer: a cast or call to an advertised local actor (a
    /// call's reply goes back through this link), a reply to the remote actor that called.
    pub(crate) fn deliver(self: &std::sync::Arc<Self>, message: node_protocol::NodeMessage) {
        let Some(msg) = message.msg else {
            return;
        };
        match msg {
            node_protocol::node_message::Msg::Cast(cast) => {
                if let Some(actor) = self.authorized_local_actor(cast.to) {
                    let _ = actor.send_serialized(SerializedMessage::Cast {
                        variant: cast.variant,
                        args: cast.what,
                        metadata: cast.metadata,
                    });
                }
            }
            node_protocol::node_message::Msg::Call(call) => {
                let Some(actor) = self.authorized_local_actor(call.to) else {
                    return;
                };
                // its reply on the control lane when the call's variant is (patch 8)
                let control = crate::control_lane::carries(&actor.get_id(), &call.variant);
                let timeout = call.timeout_ms.map(Duration::from_millis);
                // the reply travels back on this link once the actor answers (within the
                // caller's timeout, when it gave one), written by the actor's own task (patch
                // 11: upstream spawned a task per call to wait for it)
                let reply = ractor::RpcReplyPort::from_sink(
                    ReplyToPeer {
                        link: std::sync::Arc::downgrade(self),
                        tag: call.tag,
                        to: call.to,
                        control,
                        deadline: timeout.map(|timeout| std::time::Instant::now() + timeout),
                    },
                    timeout,
                );
                let _ = actor.send_serialized(SerializedMessage::Call {
                    args: call.what,
                    reply,
                    variant: call.variant,
                    metadata: call.metadata,
                });
            }
            // straight to the caller's port (patch 12: upstream passed it through the remote
            // actor's mailbox, one more wake-up); only a call of that remote actor's is answered
            node_protocol::node_message::Msg::Reply(reply) => {
                if let Some(port) = self.take_reply(reply.tag, reply.to) {
                    let _ = port.send(reply.what);
                }
            }
        }
    }
}

/// Where a call from the peer is answered: the reply goes back on the link the call came on.
struct ReplyToPeer {
    /// Weak: a reply that never comes does not keep the link's maps alive.
    link: std::sync::Weak<Link>,
    tag: u64,
    /// The peer's remote-actor stand-in that waits for it.
    to: u64,
    /// On the control lane (patch 8).
    control: bool,
    /// The caller's timeout: a later reply is not sent (its caller stopped waiting).
    deadline: Option<std::time::Instant>,
}

impl ractor::ReplySink<Vec<u8>> for ReplyToPeer {
    fn send(self: Box<Self>, what: Vec<u8>) -> bool {
        if self.is_closed() {
            return false;
        }
        let Some(link) = self.link.upgrade() else {
            return false;
        };
        let reply = node_protocol::NodeMessage {
            msg: Some(node_protocol::node_message::Msg::Reply(
                node_protocol::CallReply {
                    tag: self.tag,
                    to: self.to,
                    what,
                },
            )),
        };
        // a reply over the frame limit is not sent: the caller waits for its timeout (a call
        // without one, for ever)
        link.send_node_in(reply, self.control)
    }

    fn is_closed(&self) -> bool {
        self.deadline
            .is_some_and(|deadline| std::time::Instant::now() >= deadline)
            || self
                .link
                .upgrade()
                .is_none_or(|link| link.writer_has_ended())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cast(bytes: usize) -> node_protocol::NodeMessage {
        node_protocol::NodeMessage {
            msg: Some(node_protocol::node_message::Msg::Cast(
                node_protocol::Cast {
                    to: 1,
                    what: vec![0; bytes],
                    variant: "Cast".to_string(),
                    metadata: None,
                },
            )),
        }
    }

    #[test]
    fn a_message_over_the_frame_limit_is_refused_before_it_is_queued() {
        let (link, mut outgoing) = Link::with_max_frame(1024);
        assert!(link.send_node(cast(512)));
        assert!(outgoing.try_recv().is_ok());
        assert!(
            !link.send_node(cast(1024)),
            "over the limit with its envelope"
        );
        assert!(outgoing.try_recv().is_err(), "nothing queued");
        assert_eq!(link.refused.load(Ordering::Relaxed), 1);
        // a closed session refuses too
        drop(outgoing);
        assert!(!link.send_node(cast(1)));
    }

    #[test]
    fn the_reader_delivers_only_once_the_link_is_open_and_the_node_session_caught_up() {
        let (link, _outgoing) = Link::new();
        assert!(!link.delivers(), "not before the handshake");
        link.passing_on();
        link.open(FEATURE_SPLIT_PAYLOADS);
        assert!(link.splits());
        assert!(
            !link.delivers(),
            "a node message passed on is still unhandled: the next one waits behind it"
        );
        link.handled_one();
        assert!(link.delivers());

        let (old_peer, _outgoing) = Link::new();
        old_peer.open(0);
        assert!(old_peer.delivers());
        assert!(
            !old_peer.splits(),
            "a peer without the feature gets plain frames"
        );
    }

    #[test]
    fn only_advertised_remotable_actors_are_authorized() {
        let (link, _outgoing) = Link::new();
        assert!(
            link.authorized_local_actor(42).is_none(),
            "never advertised"
        );
        link.advertise(42);
        // advertised, but no such actor: withdrawn again
        assert!(link.authorized_local_actor(42).is_none());
        assert!(!link
            .advertised
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&42));
    }
}

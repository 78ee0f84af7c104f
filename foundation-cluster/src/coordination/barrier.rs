//! Barriers: every participant's arrival is sent to every coordinator (and sent again until
//! the barrier fills, so nodes that join or reconnect learn it); the node that counts the last
//! arrival tells every other that the barrier filled, which is final.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use foundation_actors::wire::{self, Wire};
use tokio::time::Instant;

use super::coordinator::{Arrival, Arrived, CoordinatorMsg, Shared};
use super::{Coordination, CoordinationError};
use crate::MembershipEvent;

/// How often a waiting participant announces its arrival again.
const RESEND: Duration = Duration::from_millis(250);

static NEXT_PARTICIPANT: AtomicU64 = AtomicU64::new(1);

/// A barrier that `parties` participants, on any nodes, wait at together.
#[derive(Debug)]
pub struct Barrier {
    name: String,
    parties: usize,
    participant: String,
    shared: Arc<Shared>,
}

/// A barrier filled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BarrierPassed {
    /// The participants it counted (`NODE#N`, sorted).
    pub participants: Vec<String>,
}

impl Coordination {
    /// A participant in the barrier `name` of `parties` participants (give every participant
    /// the same number). Use a new name for each round (`phase-1`, `phase-2`...): a barrier
    /// that filled stays filled (for ten minutes), and a late participant passes at once.
    pub fn barrier(&self, name: &str, parties: usize) -> Barrier {
        let participant = format!("{}#{}", self.node(), NEXT_PARTICIPANT.fetch_add(1, Ordering::Relaxed));
        Barrier { name: name.to_string(), parties: parties.max(1), participant, shared: self.shared.clone() }
    }
}

impl Barrier {
    /// Arrives and waits until `parties` participants have arrived, or `timeout`. A participant
    /// whose node is lost before the barrier fills no longer counts (it cannot go on); once the
    /// barrier filled, it stays filled.
    pub async fn wait(&self, timeout: Duration) -> Result<BarrierPassed, CoordinationError> {
        let shared = &self.shared;
        let deadline = Instant::now() + timeout;
        let arrival = Arrival {
            from: shared.node().to_string(),
            barrier: self.name.clone(),
            parties: self.parties,
            participant: self.participant.clone(),
        };
        let bytes = wire::encode(&arrival, shared.max_bytes()).map_err(|e| CoordinationError::Wire {
            what: format!("arrival at barrier `{}`", self.name),
            reason: e.to_string(),
        })?;
        loop {
            let changed = shared.changed.notified();
            if let Arrived::Filled(passed) = shared.arrive(arrival.clone()) {
                shared.announce_passed(passed, None);
            }
            if let Some(participants) = self.passed() {
                return Ok(BarrierPassed { participants });
            }
            for (node, peer) in shared.coordinators() {
                if node != shared.node() {
                    let _ = peer.cast(CoordinatorMsg::Arrive(Wire::from_encoded(bytes.clone())));
                }
            }
            let now = Instant::now();
            if now >= deadline {
                let arrived = shared.tables().barriers.get(&self.name).map_or(0, |e| e.arrivals.len());
                return Err(CoordinationError::BarrierTimeout {
                    name: self.name.clone(),
                    parties: self.parties,
                    arrived,
                    waited: timeout,
                });
            }
            let _ = tokio::time::timeout_at(deadline.min(now + RESEND), changed).await;
        }
    }

    fn passed(&self) -> Option<Vec<String>> {
        let tables = self.shared.tables();
        tables.barriers.get(&self.name)?.passed.as_ref().map(|(p, _)| p.clone())
    }
}

/// Forgets the arrivals of nodes that go down (see [`Shared::forget_node`]).
pub(super) fn watch_members(shared: Arc<Shared>) {
    let mut events = shared.cluster.subscribe();
    let weak = Arc::downgrade(&shared);
    drop(shared);
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(MembershipEvent::Down { name, .. } | MembershipEvent::Left { name }) => {
                    let Some(shared) = weak.upgrade() else { return };
                    shared.forget_node(&name);
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
}

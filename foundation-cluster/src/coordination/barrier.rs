//! Barriers: every participant's arrival is sent to every coordinator (and sent again until
//! the barrier fills, so nodes that join or reconnect learn it); the node that counts the last
//! arrival tells every other that the barrier filled, which is final.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use foundation_actors::wire;
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
    /// The participants it counted (`NODE#PROCESS-N`, sorted).
    pub participants: Vec<String>,
}

impl Coordination {
    /// A participant in the barrier `name` of `parties` participants (give every participant
    /// the same number). Use a new name for each round (`phase-1`, `phase-2`...): a barrier
    /// that filled stays filled (for ten minutes), and a late participant passes at once.
    pub fn barrier(&self, name: &str, parties: usize) -> Barrier {
        let n = NEXT_PARTICIPANT.fetch_add(1, Ordering::Relaxed);
        let participant = format!("{}#{:08x}-{n}", self.node(), super::incarnation());
        Barrier { name: name.to_string(), parties: parties.max(1), participant, shared: self.shared.clone() }
    }
}

impl Barrier {
    /// Arrives and waits until `parties` participants are waiting together, or `timeout`. A
    /// participant counts while it waits (its arrival is sent again every 250 ms): one that
    /// gave up, or whose node is lost, before the barrier fills no longer counts; once the
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
            source: foundation_core::Cause::new(e),
        })?;
        loop {
            // Arrive (again: an arrival counts only while it is sent again and again) here and
            // everywhere, then wait for a change until it is time to send it again.
            if let Arrived::Filled(passed) = shared.arrive(arrival.clone()) {
                shared.announce_passed(passed, None);
            }
            shared.cast_to(|node| node != shared.node(), &bytes, CoordinatorMsg::Arrive);
            let resend = Instant::now() + RESEND;
            loop {
                let changed = shared.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if let Some(participants) = self.passed() {
                    return Ok(BarrierPassed { participants });
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
                if now >= resend {
                    break;
                }
                let _ = tokio::time::timeout_at(deadline.min(resend), changed).await;
            }
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
            let event = tokio::select! {
                event = events.recv() => event,
                // Ends once the coordinator is gone, even without membership events.
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    if weak.strong_count() == 0 {
                        return;
                    }
                    continue;
                }
            };
            match event {
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

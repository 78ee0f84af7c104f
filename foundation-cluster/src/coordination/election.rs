//! Leader election on the lock: every candidate campaigns for the lock `election:NAME`; the
//! holder leads, and its fencing token is its term.

use foundation_core::sync::MutexRecover;
use std::time::Duration;

use tokio::sync::{oneshot, watch};

use super::Coordination;

/// How long a candidate waits between campaigns while another leads.
const CAMPAIGN_PAUSE: Duration = Duration::from_millis(100);

/// Where a candidate stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leadership {
    /// Another node leads, or nobody yet.
    Follower,
    /// This candidate leads, in this term (terms grow with every new leader).
    Leader {
        /// The lock's fencing token.
        term: u64,
    },
}

/// This node's candidacy in an election. Dropping it (or [`resign`](Self::resign)) withdraws
/// it; if it led, the leadership is released at once and another candidate takes it.
#[derive(Debug)]
pub struct Election {
    name: String,
    state: watch::Receiver<Leadership>,
    /// The leading guard's lease (see [`LockGuard::valid_until`](super::LockGuard::valid_until)),
    /// while this candidate leads.
    lease: std::sync::Arc<std::sync::Mutex<Option<Validity>>>,
    stop: Option<oneshot::Sender<()>>,
}

/// A leader's lease, read without its guard.
type Validity = (watch::Receiver<bool>, std::sync::Arc<std::sync::Mutex<tokio::time::Instant>>);

impl Election {
    /// The election's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where this candidate stands now. It reads the clock: a leader paused past its lease
    /// (SIGSTOP) is a `Follower` from the instant it wakes, before its renewal task has run.
    pub fn leadership(&self) -> Leadership {
        match *self.state.borrow() {
            Leadership::Leader { .. } if self.valid_until().is_none() => Leadership::Follower,
            other => other,
        }
    }

    /// Until when this candidate may act as leader, if it leads now: its lease's end as this
    /// node counts it (see [`LockGuard::valid_until`](super::LockGuard::valid_until)), moved on
    /// by every renewal.
    pub fn valid_until(&self) -> Option<tokio::time::Instant> {
        if !matches!(*self.state.borrow(), Leadership::Leader { .. }) {
            return None;
        }
        let lease = self.lease.lock_or_recover();
        let (held, until) = lease.as_ref()?;
        let until = *until.lock_or_recover();
        (*held.borrow() && tokio::time::Instant::now() < until).then_some(until)
    }

    /// Whether this candidate leads now.
    pub fn is_leader(&self) -> bool {
        matches!(self.leadership(), Leadership::Leader { .. })
    }

    /// Every change of this candidate's standing.
    pub fn watch(&self) -> watch::Receiver<Leadership> {
        self.state.clone()
    }

    /// Withdraws this candidacy (releasing the leadership if it holds it).
    pub fn resign(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for Election {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Coordination {
    /// Enters this node as a candidate in the election `name`. At most one candidate in the
    /// cluster leads at a time (within the lease's clock assumption), only with a majority, and
    /// each new leader has a larger term; a leader that is lost is replaced within about one
    /// [`lease`](super::CoordinationConfig::lease).
    pub fn elect(&self, name: &str) -> Election {
        let (tx, state) = watch::channel(Leadership::Follower);
        let (stop, mut stopped) = oneshot::channel::<()>();
        let validity = std::sync::Arc::new(std::sync::Mutex::new(None));
        let current = validity.clone();
        let (coordination, lock) = (self.clone(), format!("election:{name}"));
        let lease = self.config.lease;
        tokio::spawn(async move {
            loop {
                let attempt = tokio::select! {
                    attempt = coordination.lock_with_lease(&lock, lease, lease) => attempt,
                    _ = &mut stopped => return,
                };
                match attempt {
                    Ok(mut guard) => {
                        *current.lock_or_recover() = Some(guard.validity());
                        let _ = tx.send(Leadership::Leader { term: guard.token() });
                        tokio::select! {
                            _ = guard.lost() => {
                                let _ = tx.send(Leadership::Follower);
                            }
                            _ = &mut stopped => {
                                let _ = tx.send(Leadership::Follower);
                                guard.release().await;
                                return;
                            }
                        }
                    }
                    Err(_) => {
                        tokio::select! {
                            _ = tokio::time::sleep(CAMPAIGN_PAUSE) => {}
                            _ = &mut stopped => return,
                        }
                    }
                }
            }
        });
        Election { name: name.to_string(), state, lease: validity, stop: Some(stop) }
    }
}

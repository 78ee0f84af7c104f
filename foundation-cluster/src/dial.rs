//! Every connection attempt this node makes (to seeds, to nodes heard by discovery, to its
//! peers' members in TLS mode) goes through one [`Dialer`]: plaintext or TLS, never to an
//! address that is already up, and at most once per `cluster.reconnect_interval` per address
//! whoever asks, so that the three sources do not race each other into duplicate connections.

use foundation_core::sync::{MutexRecover, RwLockRecover};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use ractor::ActorRef;
use ractor_cluster::NodeServerMessage;
use ractor_cluster::node::client::ClientConnectErr;

use crate::membership::Membership;
use crate::tls::Tls;

/// Most addresses the dialler remembers when it last dialled. Past it, the ones dialled more
/// than an interval ago (which no longer hold a dial back) are forgotten.
const MAX_REMEMBERED: usize = 4096;

/// How connections are opened.
pub(crate) enum Transport {
    Plain,
    Tls(Box<Tls>),
}

/// Why a dial failed.
#[derive(Debug)]
pub(crate) struct DialError {
    /// The TLS handshake failed: the peer refused our certificate or we refused its (as
    /// opposed to nobody listening, which is retried quietly).
    pub(crate) refused: bool,
    message: String,
}

impl std::fmt::Display for DialError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// This node's dialler. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Dialer {
    inner: Arc<Inner>,
}

struct Inner {
    transport: Transport,
    server: ActorRef<NodeServerMessage>,
    membership: Arc<RwLock<Membership>>,
    interval: Duration,
    handshake_timeout: Duration,
    last: Mutex<HashMap<SocketAddr, Instant>>,
}

impl Dialer {
    pub(crate) fn new(
        transport: Transport,
        server: ActorRef<NodeServerMessage>,
        membership: Arc<RwLock<Membership>>,
        interval: Duration,
        handshake_timeout: Duration,
    ) -> Self {
        Dialer {
            inner: Arc::new(Inner {
                transport,
                server,
                membership,
                interval,
                handshake_timeout,
                last: Mutex::default(),
            }),
        }
    }

    pub(crate) fn is_tls(&self) -> bool {
        matches!(self.inner.transport, Transport::Tls(_))
    }

    /// Dials `addr` unless it is up or was dialled less than an interval ago, or more than
    /// [`MAX_REMEMBERED`] other addresses were (then `None`). Returns when the connection is
    /// open; the handshake continues in the node server.
    pub(crate) async fn dial(&self, addr: SocketAddr) -> Option<Result<(), DialError>> {
        if self.inner.membership.read_or_recover().is_up_at(&addr.to_string()) {
            return None;
        }
        {
            let mut last = self.inner.last.lock_or_recover();
            let now = Instant::now();
            let interval = self.inner.interval;
            if last.get(&addr).is_some_and(|t| now.duration_since(*t) < interval) {
                return None;
            }
            if last.len() >= MAX_REMEMBERED && !last.contains_key(&addr) {
                last.retain(|_, t| now.duration_since(*t) < interval);
                // Still full: that many addresses dialled within one interval is no cluster but
                // a flood (a holder of the cookie announcing many ports, or peers listing many
                // members). Forgetting one would let it be dialled again at once, so this dial
                // is skipped instead; whoever asked asks again, and gets through once entries
                // are an interval old.
                if last.len() >= MAX_REMEMBERED {
                    return None;
                }
            }
            last.insert(addr, now);
        }
        let server = &self.inner.server;
        let result = match &self.inner.transport {
            // A peer that drops packets (a partition) or accepts and says nothing would hold a
            // dial for minutes: the connect and the TLS handshake each get `handshake_timeout`.
            Transport::Plain => {
                ractor_cluster::client_connect_with_timeout(server, addr, self.inner.handshake_timeout).await
            }
            Transport::Tls(tls) => {
                ractor_cluster::client_connect_enc_with_timeout(
                    server,
                    addr,
                    tls.connector.clone(),
                    tls.server_name.clone(),
                    self.inner.handshake_timeout,
                )
                .await
            }
        };
        Some(result.map_err(|e| DialError {
            refused: matches!(e, ClientConnectErr::Encryption(_)),
            message: e.to_string(),
        }))
    }

    /// [`dial`](Self::dial) in the background, for callers that must not wait (an actor, the
    /// discovery loop); a failure is logged and retried by whoever asks next.
    pub(crate) fn dial_in_background(&self, addr: SocketAddr, why: &'static str) {
        let dialer = self.clone();
        tokio::spawn(async move {
            if let Some(Err(e)) = dialer.dial(addr).await {
                tracing::debug!(%addr, error = %e, why, "cannot reach a node");
            }
        });
    }
}

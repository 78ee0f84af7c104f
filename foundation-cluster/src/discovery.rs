//! Zero-config discovery (`cluster.gossip`), like libcluster's Gossip strategy: every node
//! announces itself by UDP multicast and connects to the nodes it hears.
//!
//! An announcement is one line of text,
//! `foundation-gossip/1 <cluster tag> <node name> <listen address>`, where the cluster tag is a
//! truncated SHA-256 of the cookie: nodes with another cookie on the same port are ignored
//! instead of being dialled and refused. Anything else on the port is ignored and counted
//! (`foundation_gossip_ignored_total`). Authentication is still the cookie's challenge–response:
//! a forged announcement can only make this node dial an address that then fails to
//! authenticate.
//!
//! Of two nodes that hear each other, the one with the lower address dials (the other would
//! only race it into a duplicate connection), unless it has not done so after a few
//! announcements, then either dials. Announcements repeat every `gossip_interval`, so a node
//! that restarts is found again by itself.

use foundation_core::sync::RwLockRecover;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, RwLock};

use foundation_core::config::ClusterConfig;
use sha2::{Digest, Sha256};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use crate::dial::Dialer;
use crate::membership::Membership;

/// The first word of every announcement (and the protocol version).
const MAGIC: &str = "foundation-gossip/1";
/// Announcements longer than this are not ours.
const MAX_DATAGRAM: usize = 512;
/// After hearing a node this many times without being connected to it, dial it whatever the
/// address order says.
const PATIENCE: u32 = 3;

/// A parsed announcement.
#[derive(Debug, PartialEq)]
pub(crate) struct Announcement {
    pub(crate) tag: String,
    pub(crate) name: String,
    pub(crate) addr: SocketAddr,
}

/// The cluster tag of a cookie: 16 hex digits of its SHA-256.
pub(crate) fn cluster_tag(cookie: &str) -> String {
    let digest = Sha256::digest(format!("{MAGIC}:{cookie}").as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn encode(tag: &str, name: &str, addr: SocketAddr) -> String {
    format!("{MAGIC} {tag} {name} {addr}")
}

pub(crate) fn parse(datagram: &[u8]) -> Option<Announcement> {
    if datagram.len() > MAX_DATAGRAM {
        return None;
    }
    let text = std::str::from_utf8(datagram).ok()?;
    let mut words = text.trim_end().split(' ');
    if words.next()? != MAGIC {
        return None;
    }
    let (tag, name, addr) = (words.next()?, words.next()?, words.next()?.parse().ok()?);
    if words.next().is_some() || name.is_empty() {
        return None;
    }
    Some(Announcement { tag: tag.to_string(), name: name.to_string(), addr })
}

/// The interface to announce on: the listen address's, or the default one for `0.0.0.0`.
fn interface(listen: SocketAddr) -> Ipv4Addr {
    match listen {
        SocketAddr::V4(a) => *a.ip(),
        SocketAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
    }
}

/// Opens the discovery socket: shared with the other nodes on this machine (SO_REUSEPORT),
/// joined to the group on the listen interface, multicast looped back so that nodes on one
/// machine hear each other, and kept on the local network (TTL 1).
pub(crate) fn open(config: &ClusterConfig) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, config.gossip_port)).into())?;
    let iface = interface(config.listen);
    socket.join_multicast_v4(&config.gossip_group, &iface)?;
    socket.set_multicast_if_v4(&iface)?;
    socket.set_multicast_loop_v4(true)?;
    socket.set_multicast_ttl_v4(1)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}

/// Announces this node and dials the nodes it hears, forever.
pub(crate) async fn run(
    socket: UdpSocket,
    config: ClusterConfig,
    name: String,
    membership: Arc<RwLock<Membership>>,
    dialer: Dialer,
) {
    let tag = cluster_tag(&config.cookie);
    let announcement = encode(&tag, &name, config.listen);
    let group = SocketAddrV4::new(config.gossip_group, config.gossip_port);
    let mut ticks = tokio::time::interval(config.gossip_interval);
    // Per address heard: how often since we last were connected to it.
    let mut heard: HashMap<SocketAddr, u32> = HashMap::new();
    let mut buf = [0u8; MAX_DATAGRAM + 1];
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                if let Err(e) = socket.send_to(announcement.as_bytes(), group).await {
                    tracing::debug!(error = %e, "cannot send a discovery announcement");
                }
            }
            received = socket.recv_from(&mut buf) => {
                let Ok((len, from)) = received else { continue };
                let Some(heard_from) = parse(&buf[..len]) else {
                    metrics::counter!("foundation_gossip_ignored_total").increment(1);
                    tracing::debug!(%from, "ignored a datagram on the discovery port");
                    continue;
                };
                if heard_from.tag != tag || heard_from.addr == config.listen {
                    continue; // another cluster, or our own announcement
                }
                let addr = heard_from.addr;
                if membership.read_or_recover().is_up_at(&addr.to_string()) {
                    heard.remove(&addr);
                    continue;
                }
                let times = heard.entry(addr).or_insert(0);
                *times += 1;
                if config.listen.to_string() < addr.to_string() || *times > PATIENCE {
                    tracing::debug!(node = %heard_from.name, %addr, "discovered a node");
                    dialer.dial_in_background(addr, "discovered");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        // Announcements are datagrams anyone on the network can send. For a long run:
        // PROPTEST_CASES=1000000 cargo test -p foundation-cluster --lib discovery
        #![proptest_config(ProptestConfig { cases: 5000, ..ProptestConfig::default() })]

        #[test]
        fn any_datagram_is_an_announcement_or_nothing(datagram in prop_oneof![
            any::<Vec<u8>>(),
            "foundation-gossip/1 [0-9a-f]{0,16} [ -~]{0,20} [0-9.:\\[\\]]{0,30}".prop_map(String::into_bytes),
        ]) {
            if let Some(announcement) = super::parse(&datagram) {
                prop_assert!(!announcement.name.is_empty() && datagram.len() <= super::MAX_DATAGRAM);
            }
        }
    }

    use super::*;

    #[test]
    fn announcements_round_trip_and_anything_else_is_ignored() {
        let addr: SocketAddr = "127.0.0.1:4101".parse().unwrap();
        let line = encode(&cluster_tag("secret"), "n1", addr);
        let parsed = parse(line.as_bytes()).unwrap();
        assert_eq!(parsed, Announcement { tag: cluster_tag("secret"), name: "n1".into(), addr });
        assert_ne!(cluster_tag("secret"), cluster_tag("other"));
        assert_eq!(cluster_tag("secret").len(), 16);
        assert!(!line.contains("secret"), "the cookie itself never travels: {line}");
        for junk in [
            &b""[..],
            b"hello",
            b"foundation-gossip/1 abc n1",
            b"foundation-gossip/1 abc n1 not-an-address",
            b"foundation-gossip/1 abc n1 127.0.0.1:1 extra",
            b"foundation-gossip/2 abc n1 127.0.0.1:1",
            &[0xff; 64],
            &[b'a'; 600],
        ] {
            assert_eq!(parse(junk), None, "{junk:?}");
        }
    }
}

//! Zero-config discovery (`cluster.gossip`), like libcluster's Gossip strategy: every node
//! announces itself by UDP multicast and connects to the nodes it hears.
//!
//! # Announcements
//!
//! An announcement is one line of text (protocol version 2):
//!
//! ```text
//! foundation-gossip/2 <node name> <listen address> <unix millis> <nonce> <mac>
//! ```
//!
//! The node name is not empty and has no spaces (nor other whitespace or control characters);
//! the nonce is 16 lowercase hex digits, new for every announcement; the mac is 64 lowercase hex
//! digits, HMAC-SHA256 of the line up to and excluding ` <mac>`, keyed with
//! SHA-256(`foundation-gossip/2 key:` followed by the cookie). The cookie itself never travels.
//! A [`Verifier`] accepts an announcement only if
//!
//! - it parses (else `malformed`; so is anything longer than 512 bytes, and any other protocol
//!   version),
//! - its MAC verifies, compared in constant time (else `bad_mac`: another cookie, or tampered
//!   with),
//! - its time is within [`MAX_SKEW`] of this node's clock, either way (else `stale`),
//! - its address is the one it was sent from: the announced IP equals the datagram's source IP,
//!   IPv4-mapped IPv6 addresses compared as IPv4 (else `address_mismatch`). An unspecified IP
//!   (`0.0.0.0`, `::`) is refused too: the MAC would not cover the address dialled, so anyone
//!   replaying it from their own address would be dialled. A node listening on every interface
//!   announces the address of the interface its multicast leaves by instead,
//! - its MAC was not accepted before (else `replayed`),
//! - and the replay cache has room for it (else `flood`).
//!
//! Everything refused is ignored, counted (`foundation_gossip_ignored_total`, labelled by
//! `reason`) and logged at debug level. This node's own announcements (its name, or its address)
//! are skipped silently; a node already up (by name or by address) is not dialled again.
//!
//! # What an accepted announcement proves, and what it does not
//!
//! It proves that a holder of the cookie made it, stamped within [`MAX_SKEW`] of this node's
//! clock, and that the IP it names is the one it was sent from (the port is not checked: the
//! datagram comes from the discovery port). So nobody without the cookie can make this node dial
//! anything, and an announcement captured on the network cannot be replayed from another host,
//! nor once it is stale.
//!
//! It is not authentication: the cookie handshake (and TLS) after the dial is. An announcement
//! only makes this node dial an address, where a node still has to authenticate. UDP source
//! addresses can be forged on a local network, so a replay from the original source address
//! within [`MAX_SKEW`] is caught by the replay cache only, and only while its entry lives:
//! entries live until their announcement is stale anyway, but a restart of this node or a jump
//! of its clock forgets them. Such a replay makes this node dial a node of the cluster again, at
//! the address it announced itself. A holder of the cookie can make nodes dial any port at its
//! own address (at any address, if it forges source addresses), within the bounds below.
//!
//! # Bounds
//!
//! - The replay cache holds at most [`REPLAY_CACHE_CAP`] (4096) MACs, each dropped once its
//!   announcement's time is more than [`MAX_SKEW`] from now (so at most 2 × [`MAX_SKEW`] after
//!   it was heard). When it is full of live entries, new announcements are refused as `flood`.
//!   Only announcements with a valid MAC reach it, so only a holder of the cookie can fill it —
//!   or a cluster announcing more than about 68 times a second (4096 entries living up to 60 s
//!   when a sender's clock runs ahead; more than about 68 nodes at the default
//!   `gossip_interval` of 1 s), whose discovery then slows down.
//! - The nodes heard but not up are counted per address, for at most [`HEARD_CAP`] (1024)
//!   addresses; past that the counts are cleared.
//! - Discovery starts at most [`DIALS_PER_SECOND`] (8) dials a second; a node skipped is dialled
//!   at one of its next announcements.
//! - The [`Dialer`] remembers at most 4096 addresses (see [`crate::dial`]).
//!
//! # Cost
//!
//! Hosts' clocks must agree within [`MAX_SKEW`] (30 s) for discovery to work. A node whose clock
//! is further off is not discovered (its announcements are stale to the others, and theirs to
//! it), but can still join through `cluster.seeds`. Discovery is IPv4 only (a node announcing
//! an IPv6 address is refused as `address_mismatch`). Anyone on the network can flood the
//! discovery port with datagrams: they are refused, but real announcements may be lost with
//! them, and discovery stops while it lasts (connections made, and seeds, are unaffected).
//!
//! # Who dials
//!
//! Of two nodes that hear each other, the one with the lower address dials (the other would
//! only race it into a duplicate connection), unless it has not done so after a few
//! announcements, then either dials. Announcements repeat every `gossip_interval`, so a node
//! that restarts is found again by itself.

use foundation_core::sync::RwLockRecover;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use foundation_core::config::ClusterConfig;
use foundation_core::random::SplitMix64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use crate::dial::Dialer;
use crate::membership::Membership;

/// The first word of every announcement (and the protocol version).
const MAGIC: &str = "foundation-gossip/2";
/// Announcements longer than this are not ours.
const MAX_DATAGRAM: usize = 512;
/// After hearing a node this many times without being connected to it, dial it whatever the
/// address order says.
const PATIENCE: u32 = 3;
/// How far an announcement's time may be from this node's clock, either way, for it to be
/// accepted. It covers the difference between the hosts' clocks (NTP keeps them well within a
/// second; 30 s tolerates a host that has drifted for a while) and the time in flight. It need
/// not cover old announcements: they repeat every `gossip_interval`, so a node is heard by its
/// fresh ones. It also bounds how long a captured announcement can be replayed, hence how long
/// the replay cache must remember it.
pub(crate) const MAX_SKEW: Duration = Duration::from_secs(30);
/// [`MAX_SKEW`] in milliseconds, the unit of announcements' times.
const MAX_SKEW_MS: u64 = MAX_SKEW.as_millis() as u64;
/// Most MACs the replay cache holds (32 bytes and a time each).
const REPLAY_CACHE_CAP: usize = 4096;
/// Most addresses whose announcements are counted (for [`PATIENCE`]) at once.
const HEARD_CAP: usize = 1024;
/// Most dials discovery starts per second.
const DIALS_PER_SECOND: u32 = 8;

/// HMAC-SHA256, the MAC of announcements.
type HmacSha256 = Hmac<Sha256>;

/// An announcement that parses, before its MAC is checked.
struct Announcement<'a> {
    /// The part the MAC covers: the line up to and excluding ` <mac>`.
    signed: &'a str,
    /// The node's name.
    name: &'a str,
    /// The node's listen address, as announced.
    addr: SocketAddr,
    /// When it was sent, in milliseconds since the Unix epoch (by the sender's clock).
    millis: u64,
    /// Its MAC.
    mac: [u8; 32],
}

/// Parses an announcement, checking its form only (not its MAC, time or address).
fn parse(datagram: &[u8]) -> Option<Announcement<'_>> {
    if datagram.len() > MAX_DATAGRAM {
        return None;
    }
    let text = std::str::from_utf8(datagram).ok()?;
    let (signed, mac) = text.rsplit_once(' ')?;
    let mac = unhex::<32>(mac)?;
    let mut words = signed.split(' ');
    let (magic, name, addr, millis, nonce) =
        (words.next()?, words.next()?, words.next()?, words.next()?, words.next()?);
    if magic != MAGIC
        || words.next().is_some()
        || !is_valid_name(name)
        || !millis.bytes().all(|b| b.is_ascii_digit())
        || unhex::<8>(nonce).is_none()
    {
        return None;
    }
    Some(Announcement { signed, name, addr: addr.parse().ok()?, millis: millis.parse().ok()?, mac })
}

/// Whether `name` can be announced: not empty, no whitespace (the separator) nor control
/// characters.
fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// `bytes` as lowercase hex digits.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `N` bytes written by `text` if it is exactly `2 * N` lowercase hex digits.
fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let mut bytes = [0u8; N];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(bytes)
}

/// The value of one lowercase hex digit.
fn nibble(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

/// `ip`, an IPv4-mapped IPv6 address as the IPv4 address it maps.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The address to dial for an announcement of `announced` received from `from`: `announced` if
/// its IP is the sender's, else `None`. An unspecified announced IP is refused: the MAC would
/// not cover the address dialled (the sender's), so a replay from any host would be dialled.
fn dialled(announced: SocketAddr, from: SocketAddr) -> Option<SocketAddr> {
    let sender = canonical(from.ip());
    let ip = canonical(announced.ip());
    (!ip.is_unspecified() && ip == sender).then_some(announced)
}

/// The address this node announces: its listen address, or, listening on every interface, the
/// address of the interface its announcements leave by (with the listen port). `None` if that
/// cannot be told (no route to the group).
pub(crate) fn announced_address(config: &ClusterConfig) -> Option<SocketAddr> {
    if !config.listen.ip().is_unspecified() {
        return Some(config.listen);
    }
    let probe = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    probe.connect((config.gossip_group, config.gossip_port)).ok()?;
    let ip = probe.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then(|| SocketAddr::new(ip, config.listen.port()))
}

/// A node heard by discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Heard {
    /// Its name, as announced.
    pub(crate) name: String,
    /// The address to dial: the announced one (its IP checked against the sender's).
    pub(crate) addr: SocketAddr,
    /// Its listen address as announced (the address its peers know it by).
    pub(crate) announced: SocketAddr,
}

/// Why a datagram on the discovery port was ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not an announcement of this protocol version.
    Malformed,
    /// The MAC does not verify: another cookie, or tampered with.
    BadMac,
    /// Its time is more than [`MAX_SKEW`] from this node's clock.
    Stale,
    /// Accepted before.
    Replayed,
    /// The announced IP is not the one it was sent from.
    AddressMismatch,
    /// The replay cache is full of live entries.
    Flood,
}

impl Refusal {
    /// The reason, as the `reason` label of `foundation_gossip_ignored_total`.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::BadMac => "bad_mac",
            Refusal::Stale => "stale",
            Refusal::Replayed => "replayed",
            Refusal::AddressMismatch => "address_mismatch",
            Refusal::Flood => "flood",
        }
    }
}

/// Signs this node's announcements and checks the ones it hears: the cluster's key, and the
/// replay cache.
pub(crate) struct Verifier {
    /// HMAC-SHA256 keyed with SHA-256(`foundation-gossip/2 key:` ++ cookie), cloned for each MAC.
    mac: HmacSha256,
    /// The MACs of the announcements accepted, with their announced times (at most
    /// [`REPLAY_CACHE_CAP`]).
    seen: HashMap<[u8; 32], u64>,
    /// The earliest and the latest time in `seen` (meaningless while it is empty): while both
    /// are within [`MAX_SKEW`] of now, every entry is, and pruning would free nothing.
    span: (u64, u64),
}

impl Verifier {
    /// The verifier of the cluster of `cookie`. `None` only if HMAC refused the key, which it
    /// never does (it takes keys of any length).
    pub(crate) fn new(cookie: &str) -> Option<Self> {
        let key = Sha256::digest(format!("{MAGIC} key:{cookie}").as_bytes());
        let Ok(mac) = <HmacSha256 as KeyInit>::new_from_slice(&key[..]) else {
            return None;
        };
        Some(Verifier { mac, seen: HashMap::new(), span: (0, 0) })
    }

    /// The announcement of `name` listening at `addr`, at `now_ms` (milliseconds since the Unix
    /// epoch), with `nonce`.
    pub(crate) fn announcement(&self, name: &str, addr: SocketAddr, now_ms: u64, nonce: u64) -> String {
        let signed = format!("{MAGIC} {name} {addr} {now_ms} {nonce:016x}");
        let mut mac = self.mac.clone();
        Mac::update(&mut mac, signed.as_bytes());
        let tag = mac.finalize().into_bytes();
        format!("{signed} {}", hex(&tag))
    }

    /// Checks `datagram`, received from `from` at `now_ms` (milliseconds since the Unix epoch),
    /// and remembers it if accepted (see the module's documentation for the rules).
    pub(crate) fn accept(
        &mut self,
        datagram: &[u8],
        from: SocketAddr,
        now_ms: u64,
    ) -> Result<Heard, Refusal> {
        let announcement = parse(datagram).ok_or(Refusal::Malformed)?;
        let mut mac = self.mac.clone();
        Mac::update(&mut mac, announcement.signed.as_bytes());
        if mac.verify_slice(&announcement.mac).is_err() {
            return Err(Refusal::BadMac);
        }
        if announcement.millis.abs_diff(now_ms) > MAX_SKEW_MS {
            return Err(Refusal::Stale);
        }
        let addr = dialled(announcement.addr, from).ok_or(Refusal::AddressMismatch)?;
        if self.seen.contains_key(&announcement.mac) {
            return Err(Refusal::Replayed);
        }
        if self.seen.len() >= REPLAY_CACHE_CAP {
            let (earliest, latest) = self.span;
            if earliest.abs_diff(now_ms) > MAX_SKEW_MS || latest.abs_diff(now_ms) > MAX_SKEW_MS {
                // An entry whose announcement is stale can go: the announcement would be refused
                // as such. Pruned only when full and when something can go, so that a flood
                // costs no scan per announcement; judged by the announced time rather than by
                // when it was heard, so that a clock that jumps cannot keep entries forever.
                self.seen.retain(|_, millis| millis.abs_diff(now_ms) <= MAX_SKEW_MS);
                let earliest = self.seen.values().copied().min().unwrap_or(0);
                let latest = self.seen.values().copied().max().unwrap_or(0);
                self.span = (earliest, latest);
            }
            if self.seen.len() >= REPLAY_CACHE_CAP {
                return Err(Refusal::Flood);
            }
        }
        let millis = announcement.millis;
        self.span = if self.seen.is_empty() {
            (millis, millis)
        } else {
            (self.span.0.min(millis), self.span.1.max(millis))
        };
        self.seen.insert(announcement.mac, millis);
        Ok(Heard { name: announcement.name.to_string(), addr, announced: announcement.addr })
    }

    /// How many MACs the replay cache holds.
    #[cfg(test)]
    fn replay_cache_len(&self) -> usize {
        self.seen.len()
    }
}

/// Milliseconds since the Unix epoch, by this node's clock (0 before the epoch).
fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The seed of this process's nonces: the start time and the process id.
fn nonce_seed() -> u64 {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    nanos ^ u64::from(std::process::id()).rotate_left(32)
}

/// At most [`DIALS_PER_SECOND`] dials a second: a count reset every second.
struct DialBudget {
    /// When the current second began.
    since: Instant,
    /// Dials started in it.
    used: u32,
}

impl DialBudget {
    /// A budget whose first second begins at `now`.
    fn new(now: Instant) -> Self {
        DialBudget { since: now, used: 0 }
    }

    /// Takes one dial at `now`: `false` if this second's are used up.
    fn take(&mut self, now: Instant) -> bool {
        if now.duration_since(self.since) >= Duration::from_secs(1) {
            self.since = now;
            self.used = 0;
        }
        if self.used >= DIALS_PER_SECOND {
            return false;
        }
        self.used += 1;
        true
    }
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

/// Announces this node at `ours` (see [`announced_address`]; `None`: announces nothing) and
/// dials the nodes it hears, forever.
pub(crate) async fn run(
    socket: UdpSocket,
    config: ClusterConfig,
    name: String,
    membership: Arc<RwLock<Membership>>,
    dialer: Dialer,
    ours: Option<SocketAddr>,
) {
    let Some(mut verifier) = Verifier::new(&config.cookie) else {
        tracing::error!("discovery cannot key its announcements with the cookie; it is off");
        return;
    };
    if !is_valid_name(&name) {
        tracing::warn!(node = %name, "no node can discover this one: its name has spaces");
    }
    // Nonces need only be unique per sender (two announcements in the same millisecond still
    // differ), not unpredictable: the MAC, the time and the replay cache make announcements
    // unforgeable and unreplayable. SplitMix64 never repeats a value within 2^64 draws, and
    // the seed (start time and process id) tells this process's stream apart from a previous
    // run's.
    let mut nonces = SplitMix64::new(nonce_seed());
    if ours.is_none() {
        tracing::warn!(
            listen = %config.listen,
            "discovery cannot tell which address to announce (no route to the group): this node announces nothing; set cluster.listen to this host's address"
        );
    }
    let group = SocketAddrV4::new(config.gossip_group, config.gossip_port);
    let mut ticks = tokio::time::interval(config.gossip_interval);
    // Per address heard: how often since we last were connected to it.
    let mut heard: HashMap<SocketAddr, u32> = HashMap::new();
    let mut dials = DialBudget::new(Instant::now());
    let mut buf = [0u8; MAX_DATAGRAM + 1];
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                let Some(ours) = ours else { continue };
                let announcement = verifier.announcement(&name, ours, unix_millis(), nonces.next_u64());
                if let Err(e) = socket.send_to(announcement.as_bytes(), group).await {
                    tracing::debug!(error = %e, "cannot send a discovery announcement");
                }
            }
            received = socket.recv_from(&mut buf) => {
                let Ok((len, from)) = received else { continue };
                let heard_from = match verifier.accept(&buf[..len], from, unix_millis()) {
                    Ok(heard_from) => heard_from,
                    Err(refusal) => {
                        let reason = refusal.reason();
                        metrics::counter!("foundation_gossip_ignored_total", "reason" => reason).increment(1);
                        tracing::debug!(%from, reason, "ignored a datagram on the discovery port");
                        continue;
                    }
                };
                if heard_from.name == name || Some(heard_from.announced) == ours {
                    continue; // our own announcement
                }
                let addr = heard_from.addr;
                let up = {
                    let membership = membership.read_or_recover();
                    // By name too: a node listening on every interface is known to its peers by
                    // its listen address (`0.0.0.0:port`), not the one it announces.
                    membership.is_up_at(&addr.to_string()) || membership.is_up_named(&heard_from.name)
                };
                if up {
                    heard.remove(&addr);
                    continue;
                }
                if heard.len() >= HEARD_CAP && !heard.contains_key(&addr) {
                    // Only a holder of the cookie announcing from that many addresses (ports),
                    // or a cluster of over a thousand nodes, gets here. Clearing only forgets how
                    // often each was heard: the higher address of a pair then waits a few more
                    // announcements before it dials.
                    heard.clear();
                }
                let times = heard.entry(addr).or_insert(0);
                *times = times.saturating_add(1);
                // Both nodes of a pair compare the same two announced addresses.
                let lower = ours.is_some_and(|ours| ours.to_string() < heard_from.announced.to_string());
                if lower || *times > PATIENCE {
                    if !dials.take(Instant::now()) {
                        tracing::debug!(%addr, "discovery's dials for this second are used up");
                        continue;
                    }
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

    /// A valid announcement of 127.0.0.1:4101 at [`NOW`] under the cookie "secret".
    fn valid() -> Vec<u8> {
        let verifier = super::Verifier::new("secret").unwrap();
        verifier.announcement("n1", "127.0.0.1:4101".parse().unwrap(), NOW, 7).into_bytes()
    }

    proptest! {
        // Announcements are datagrams anyone on the network can send. For a long run:
        // PROPTEST_CASES=1000000 cargo test -p foundation-cluster --lib discovery
        #![proptest_config(ProptestConfig { cases: 5000, ..ProptestConfig::default() })]

        #[test]
        fn any_datagram_is_an_announcement_or_refused(datagram in prop_oneof![
            any::<Vec<u8>>(),
            "foundation-gossip/2 [ -~]{0,20} [0-9.:\\[\\]]{0,30} [0-9]{0,16} [0-9a-f]{0,17} [0-9a-f]{0,65}"
                .prop_map(String::into_bytes),
            (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| {
                let mut datagram = valid();
                let len = datagram.len();
                datagram[at % len] = byte;
                datagram
            }),
        ]) {
            if let Some(announcement) = super::parse(&datagram) {
                prop_assert!(super::is_valid_name(announcement.name));
                prop_assert!(datagram.len() <= super::MAX_DATAGRAM);
            }
            let mut verifier = super::Verifier::new("secret").unwrap();
            let from = "127.0.0.1:45892".parse().unwrap();
            if let Ok(heard) = verifier.accept(&datagram, from, NOW) {
                prop_assert!(!heard.name.is_empty());
            }
        }
    }

    use super::*;

    /// A time of the tests, in milliseconds since the Unix epoch.
    const NOW: u64 = 1_700_000_000_000;

    /// A datagram's source, from `ip`.
    fn from(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 45892)
    }

    /// The announcement of `name` at `addr`, under `cookie`, at `millis`.
    fn announce(cookie: &str, name: &str, addr: &str, millis: u64, nonce: u64) -> String {
        Verifier::new(cookie).unwrap().announcement(name, addr.parse().unwrap(), millis, nonce)
    }

    #[test]
    fn an_announcement_round_trips() {
        let line = announce("secret", "n1", "127.0.0.1:4101", NOW, 7);
        let words: Vec<&str> = line.split(' ').collect();
        assert_eq!(words.len(), 6, "{line}");
        assert_eq!(
            words[..5],
            ["foundation-gossip/2", "n1", "127.0.0.1:4101", "1700000000000", "0000000000000007"]
        );
        assert_eq!(words[5].len(), 64);
        assert!(words[5].bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')), "{line}");
        let addr: SocketAddr = "127.0.0.1:4101".parse().unwrap();
        let mut verifier = Verifier::new("secret").unwrap();
        assert_eq!(
            verifier.accept(line.as_bytes(), from("127.0.0.1"), NOW),
            Ok(Heard { name: "n1".into(), addr, announced: addr })
        );
    }

    #[test]
    fn another_cookie_is_a_bad_mac() {
        let line = announce("other", "n1", "127.0.0.1:4101", NOW, 7);
        let mut verifier = Verifier::new("secret").unwrap();
        assert_eq!(verifier.accept(line.as_bytes(), from("127.0.0.1"), NOW), Err(Refusal::BadMac));
    }

    #[test]
    fn every_field_is_covered_by_the_mac() {
        let line = announce("secret", "n1", "127.0.0.1:4101", NOW, 7);
        let mac = line.rsplit_once(' ').unwrap().1;
        let last = if mac.ends_with('0') { "1" } else { "0" };
        let other_mac = format!("{}{last}", &mac[..63]);
        for (field, tampered) in [
            ("name", line.replacen(" n1 ", " n2 ", 1)),
            ("address", line.replacen("127.0.0.1:4101", "127.0.0.1:4102", 1)),
            ("time", line.replacen(&NOW.to_string(), &(NOW + 1).to_string(), 1)),
            ("nonce", line.replacen("0000000000000007", "0000000000000008", 1)),
            ("mac", line.replacen(mac, &other_mac, 1)),
        ] {
            assert_ne!(tampered, line, "{field}");
            let mut verifier = Verifier::new("secret").unwrap();
            let refused = verifier.accept(tampered.as_bytes(), from("127.0.0.1"), NOW);
            assert_eq!(refused, Err(Refusal::BadMac), "{field}: {tampered}");
        }
    }

    #[test]
    fn announcements_older_or_newer_than_the_skew_are_stale() {
        let mut verifier = Verifier::new("secret").unwrap();
        for millis in [NOW - MAX_SKEW_MS - 1, NOW + MAX_SKEW_MS + 1, 0, u64::MAX] {
            let line = announce("secret", "n1", "127.0.0.1:4101", millis, 7);
            assert_eq!(
                verifier.accept(line.as_bytes(), from("127.0.0.1"), NOW),
                Err(Refusal::Stale),
                "{millis}"
            );
        }
        for millis in [NOW - MAX_SKEW_MS, NOW + MAX_SKEW_MS] {
            let line = announce("secret", "n1", "127.0.0.1:4101", millis, 7);
            assert!(verifier.accept(line.as_bytes(), from("127.0.0.1"), NOW).is_ok(), "{millis}");
        }
    }

    #[test]
    fn the_same_announcement_twice_is_replayed() {
        let line = announce("secret", "n1", "127.0.0.1:4101", NOW, 7);
        let mut verifier = Verifier::new("secret").unwrap();
        assert!(verifier.accept(line.as_bytes(), from("127.0.0.1"), NOW).is_ok());
        assert_eq!(verifier.accept(line.as_bytes(), from("127.0.0.1"), NOW + 5), Err(Refusal::Replayed));
        let next = announce("secret", "n1", "127.0.0.1:4101", NOW, 8);
        assert!(verifier.accept(next.as_bytes(), from("127.0.0.1"), NOW + 5).is_ok(), "another nonce");
    }

    #[test]
    fn the_announced_address_is_the_senders() {
        let line = announce("secret", "n1", "10.0.0.5:4101", NOW, 7);
        let mut verifier = Verifier::new("secret").unwrap();
        let refused = verifier.accept(line.as_bytes(), from("10.0.0.6"), NOW);
        assert_eq!(refused, Err(Refusal::AddressMismatch));
        // The same, from its address (an IPv4-mapped IPv6 source counts as IPv4).
        let heard = verifier.accept(line.as_bytes(), from("::ffff:10.0.0.5"), NOW).unwrap();
        assert_eq!(heard.addr, "10.0.0.5:4101".parse::<SocketAddr>().unwrap());
    }

    /// An unspecified address would be dialled at whoever sent it, which the MAC does not cover:
    /// a recorded announcement replayed from the attacker's host would make it dialled.
    #[test]
    fn an_unspecified_address_is_refused() {
        let mut verifier = Verifier::new("secret").unwrap();
        for (nonce, announced) in ["0.0.0.0:4101", "[::]:4101"].into_iter().enumerate() {
            let line = announce("secret", "n1", announced, NOW, nonce as u64);
            let refused = verifier.accept(line.as_bytes(), from("10.0.0.7"), NOW);
            assert_eq!(refused, Err(Refusal::AddressMismatch), "{announced}");
        }
    }

    #[test]
    fn a_node_on_every_interface_announces_a_concrete_address() {
        let mut config = ClusterConfig { listen: "0.0.0.0:4101".parse().unwrap(), ..Default::default() };
        if let Some(addr) = announced_address(&config) {
            assert!(!addr.ip().is_unspecified() && addr.port() == 4101, "{addr}");
        }
        config.listen = "127.0.0.1:4101".parse().unwrap();
        assert_eq!(announced_address(&config), Some(config.listen));
    }

    #[test]
    fn the_cookie_never_travels() {
        for cookie in ["secret", "a-cookie-of-at-least-16-bytes", "n1"] {
            let line = announce(cookie, "node", "127.0.0.1:4101", NOW, 7);
            assert!(!line.contains(cookie), "{line}");
        }
    }

    #[test]
    fn anything_else_is_malformed() {
        let valid = announce("secret", "n1", "127.0.0.1:4101", NOW, 7);
        let mac = valid.rsplit_once(' ').unwrap().1.to_string();
        let v1 = "foundation-gossip/1 0123456789abcdef n1 127.0.0.1:4101".to_string();
        for junk in [
            String::new(),
            "hello".into(),
            v1,
            format!("{valid}\n"),
            format!("{valid} extra"),
            valid.replacen("foundation-gossip/2", "foundation-gossip/3", 1),
            valid.replacen(" n1 ", "  ", 1),
            valid.replacen(" n1 ", " n\t1 ", 1),
            valid.replacen("127.0.0.1:4101", "not-an-address", 1),
            valid.replacen("1700000000000", "+1700000000000", 1),
            valid.replacen("1700000000000", "99999999999999999999", 1),
            valid.replacen("0000000000000007", "000000000000007", 1),
            valid.replacen("0000000000000007", "000000000000000G", 1),
            valid.replacen(&mac, &mac.to_uppercase(), 1),
            valid.replacen(&mac, &mac[..62], 1),
            format!("foundation-gossip/2 {} 127.0.0.1:4101 {NOW} 0000000000000007 {mac}", "n".repeat(600)),
        ] {
            let mut verifier = Verifier::new("secret").unwrap();
            assert_eq!(
                verifier.accept(junk.as_bytes(), from("127.0.0.1"), NOW),
                Err(Refusal::Malformed),
                "{junk}"
            );
        }
        let mut verifier = Verifier::new("secret").unwrap();
        for junk in [&[0xffu8; 64][..], &[b'a'; 600][..]] {
            assert_eq!(verifier.accept(junk, from("127.0.0.1"), NOW), Err(Refusal::Malformed));
        }
    }

    #[test]
    fn the_replay_cache_stays_bounded() {
        let signer = Verifier::new("secret").unwrap();
        let addr: SocketAddr = "127.0.0.1:4101".parse().unwrap();
        // All at once: the cache fills, and the rest is a flood.
        let mut verifier = Verifier::new("secret").unwrap();
        let mut accepted = 0;
        for nonce in 0..10_000 {
            let line = signer.announcement("n1", addr, NOW, nonce);
            match verifier.accept(line.as_bytes(), from("127.0.0.1"), NOW) {
                Ok(_) => accepted += 1,
                Err(refusal) => assert_eq!(refusal, Refusal::Flood),
            }
            assert!(verifier.replay_cache_len() <= REPLAY_CACHE_CAP);
        }
        assert_eq!(accepted, REPLAY_CACHE_CAP);
        // Once they are stale, their entries go.
        let later = NOW + MAX_SKEW_MS + 1;
        let line = signer.announcement("n1", addr, later, 0);
        assert!(verifier.accept(line.as_bytes(), from("127.0.0.1"), later).is_ok());
        assert_eq!(verifier.replay_cache_len(), 1);
        // Spread over time (one every 10 ms, 100 s in all), every one is accepted.
        let mut verifier = Verifier::new("secret").unwrap();
        for nonce in 0..10_000 {
            let now = NOW + nonce * 10;
            let line = signer.announcement("n1", addr, now, nonce);
            assert!(verifier.accept(line.as_bytes(), from("127.0.0.1"), now).is_ok(), "{nonce}");
            assert!(verifier.replay_cache_len() <= REPLAY_CACHE_CAP);
        }
    }

    #[test]
    fn discovery_dials_are_rate_limited() {
        let start = Instant::now();
        let mut dials = DialBudget::new(start);
        assert!((0..DIALS_PER_SECOND).all(|_| dials.take(start)));
        assert!(!dials.take(start + Duration::from_millis(999)));
        assert!(dials.take(start + Duration::from_secs(1)));
    }
}

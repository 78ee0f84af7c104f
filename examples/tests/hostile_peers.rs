//! Attackers on the network against real node processes: a peer without the cookie that makes
//! a node dial it and relays that node's handshake back to its own listener under another name;
//! replayed and forged discovery announcements; thousands of silent connections and random
//! bytes on the cluster port. Every attack is refused, the node's descriptors and memory stay
//! bounded, and honest nodes still join.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use foundation_cluster::testkit::{NodeProcess, free_port};
use foundation_core::random::SplitMix64;
use prost::Message;

mod support;

use support::{json, request, seen, start_node, start_node_with_env, until, wait};

/// The messages of ractor_cluster's handshake (`patches/ractor_cluster/src/protocol/meta.proto`
/// and `auth.proto`), as an attacker writes them: only what the relay rewrites or watches is
/// typed, everything else passes through as bytes.
mod wire {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NetworkMessage {
        #[prost(oneof = "Network", tags = "1, 2, 3")]
        pub message: Option<Network>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Network {
        #[prost(message, tag = "1")]
        Auth(Authentication),
        #[prost(bytes, tag = "2")]
        Node(Vec<u8>),
        #[prost(bytes, tag = "3")]
        Control(Vec<u8>),
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Authentication {
        #[prost(oneof = "Auth", tags = "1, 2, 3, 4, 5, 6")]
        pub msg: Option<Auth>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Auth {
        #[prost(message, tag = "1")]
        Name(Name),
        #[prost(bytes, tag = "2")]
        ServerStatus(Vec<u8>),
        #[prost(bytes, tag = "3")]
        ClientStatus(Vec<u8>),
        #[prost(bytes, tag = "4")]
        ServerChallenge(Vec<u8>),
        #[prost(bytes, tag = "5")]
        ClientChallenge(Vec<u8>),
        /// The listener's proof: it must never be sent to someone who proved nothing.
        #[prost(bytes, tag = "6")]
        ServerAck(Vec<u8>),
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Name {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(bytes, tag = "2")]
        pub flags: Vec<u8>,
        #[prost(string, tag = "3")]
        pub connection_string: String,
        #[prost(uint64, tag = "4")]
        pub connection_id: u64,
        #[prost(bytes, tag = "5")]
        pub nonce: Vec<u8>,
    }
}

/// Reads one frame (u64 big-endian length, then the protobuf), or `None` when the peer closed.
fn read_frame(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 8];
    stream.read_exact(&mut len).ok()?;
    let len = u64::from_be_bytes(len);
    assert!(len < 1 << 20, "a handshake frame of {len} bytes");
    let mut payload = vec![0u8; len as usize];
    stream.read_exact(&mut payload).ok()?;
    Some(payload)
}

fn write_frame(stream: &mut TcpStream, payload: &[u8]) -> bool {
    stream.write_all(&(payload.len() as u64).to_be_bytes()).is_ok() && stream.write_all(payload).is_ok()
}

/// How the relay rewrites the dialling node's name message on its way to that node's listener.
#[derive(Clone, Copy, Debug)]
enum Rewrite {
    /// Another name, the node's own nonce.
    Name,
    /// Another name and a nonce of the attacker's.
    NameAndNonce,
}

/// What the relay saw from the victim's listener.
#[derive(Default, Debug)]
struct Relayed {
    challenges: usize,
    server_proofs: usize,
}

/// One relay: `dialled` is the victim's outgoing connection to the attacker; the attacker
/// opens its own connection to the victim's listener and shuttles frames both ways, rewriting
/// the name (and maybe the nonce), until either side closes.
fn relay(mut dialled: TcpStream, victim: SocketAddr, rewrite: Rewrite, seen: Arc<Mutex<Relayed>>) {
    let Ok(mut to_listener) = TcpStream::connect(victim) else { return };
    let (mut from_listener, mut to_dialler) =
        (to_listener.try_clone().unwrap(), dialled.try_clone().unwrap());
    let back = std::thread::spawn(move || {
        while let Some(frame) = read_frame(&mut from_listener) {
            if let Ok(wire::NetworkMessage { message: Some(wire::Network::Auth(auth)) }) =
                wire::NetworkMessage::decode(&frame[..])
            {
                let mut seen = seen.lock().unwrap();
                match auth.msg {
                    Some(wire::Auth::ServerChallenge(_)) => seen.challenges += 1,
                    Some(wire::Auth::ServerAck(_)) => seen.server_proofs += 1,
                    _ => {}
                }
            }
            if !write_frame(&mut to_dialler, &frame) {
                break;
            }
        }
        let _ = to_dialler.shutdown(std::net::Shutdown::Both);
    });
    let mut rng = SplitMix64::new(7);
    while let Some(frame) = read_frame(&mut dialled) {
        let mut message = wire::NetworkMessage::decode(&frame[..]).unwrap();
        if let Some(wire::Network::Auth(wire::Authentication { msg: Some(wire::Auth::Name(name)) })) =
            &mut message.message
        {
            name.name = "mallory@127.0.0.1".into();
            name.connection_string = "127.0.0.1:1".into();
            if let Rewrite::NameAndNonce = rewrite {
                name.nonce = (0..32).map(|_| rng.next_u64() as u8).collect();
            }
        }
        if !write_frame(&mut to_listener, &message.encode_to_vec()) {
            break;
        }
    }
    let _ = to_listener.shutdown(std::net::Shutdown::Both);
    back.join().unwrap();
}

/// The attack the first handshake let through: the attacker (no cookie) is one of the node's
/// seeds, so the node dials it; the attacker relays the node's own handshake to the node's
/// listener under the name `mallory`. The listener never proves anything to the attacker and
/// never admits it; honest nodes still join.
#[test]
fn a_peer_relaying_a_nodes_own_handshake_to_it_is_refused() {
    let (attacker_port, n1_port, n2_port) = (free_port(), free_port(), free_port());
    let attacker = TcpListener::bind(("127.0.0.1", attacker_port)).unwrap();
    let n1 = start_node("n1", n1_port, &[attacker_port], &[]);
    let victim: SocketAddr = format!("127.0.0.1:{n1_port}").parse().unwrap();
    let seen_from_listener = Arc::new(Mutex::new(Relayed::default()));
    // n1 dials its "seed" every reconnect interval: relay one dial with each rewrite.
    for rewrite in [Rewrite::Name, Rewrite::NameAndNonce] {
        let (dialled, _) = attacker.accept().unwrap();
        dialled.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        relay(dialled, victim, rewrite, seen_from_listener.clone());
    }
    drop(attacker);
    let relayed = seen_from_listener.lock().unwrap();
    // The attacker's own nonce got as far as a challenge; nothing got as far as a proof.
    assert!(relayed.challenges >= 1, "{relayed:?}");
    assert_eq!(relayed.server_proofs, 0, "the listener proved itself to a relay: {relayed:?}");

    let n2 = start_node("n2", n2_port, &[n1_port], &[]);
    wait(&n1, json!({"event": "member_up", "name": "n2"}));
    wait(&n2, json!({"event": "member_up", "name": "n1"}));
    assert!(!seen(&n1, json!({"event": "refused"})).is_empty(), "{:#?}", n1.output());
    assert!(seen(&n1, json!({"event": "member_up", "name": "mallory"})).is_empty(), "{:#?}", n1.output());
}

/// A node with discovery on a port of this test's own, serving its metrics.
fn gossiping_node(name: &str, gossip: u16, metrics: u16) -> NodeProcess {
    let process = NodeProcess::spawn_with_env(
        name,
        env!("CARGO_BIN_EXE_foundation"),
        [
            "node",
            "--json",
            "--cluster",
            "--name",
            name,
            "--cookie",
            "hostile-peers-cookie",
            "--metrics",
            &format!("127.0.0.1:{metrics}"),
        ],
        [
            ("FOUNDATION_LOG", "error".to_string()),
            ("FOUNDATION_CLUSTER__GOSSIP_PORT", gossip.to_string()),
            ("FOUNDATION_CLUSTER__GOSSIP_INTERVAL", "200ms".to_string()),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    wait(&process, json!({"event": "listening", "node": name}));
    process
}

/// `foundation_gossip_ignored_total{reason="REASON"}` on the node's metrics endpoint.
fn ignored(metrics: u16, reason: &str) -> u64 {
    counter(metrics, "foundation_gossip_ignored_total", reason)
}

/// The counter `NAME{reason="REASON"}` on the metrics endpoint at port `metrics` (0 if absent).
fn counter(metrics: u16, name: &str, reason: &str) -> u64 {
    let (_, body) = request(&format!("127.0.0.1:{metrics}"), "GET", "/metrics", "");
    let prefix = format!("{name}{{reason=\"{reason}\"}} ");
    body.lines().find_map(|l| l.strip_prefix(&prefix)).map_or(0, |v| v.trim().parse().unwrap())
}

/// Discovery announcements are datagrams anyone on the network can send or record. A recorded
/// one played again is dropped as a replay, a forged one (the attacker's address, no cookie)
/// as a bad MAC and never dialled, and the honest nodes still find each other.
#[test]
fn replayed_and_forged_discovery_announcements_are_dropped() {
    let (gossip, m1, m2) = (free_port(), free_port(), free_port());
    let listener = socket2_multicast(gossip);
    let g1 = gossiping_node("g1", gossip, m1);
    let g2 = gossiping_node("g2", gossip, m2);
    wait(&g1, json!({"event": "member_up", "name": "g2"}));
    wait(&g2, json!({"event": "member_up", "name": "g1"}));

    // Record one of g1's announcements off the network, then play it back.
    let mut buf = [0u8; 1024];
    let recorded = loop {
        let (len, _) = listener.recv_from(&mut buf).unwrap();
        let text = String::from_utf8_lossy(&buf[..len]).into_owned();
        if text.starts_with("foundation-gossip/2 g1 ") {
            break text;
        }
    };
    let group: SocketAddr = format!("239.255.77.77:{gossip}").parse().unwrap();
    let sender = multicast_sender();
    for _ in 0..20 {
        sender.send_to(recorded.as_bytes(), group).unwrap();
    }
    // UDP: a datagram or two may be lost, or beat the original to g2 (then the original counts).
    until(|| ignored(m2, "replayed") >= 10, || format!("replays counted: {}", ignored(m2, "replayed")));

    // A forged announcement for an address of the attacker's: never dialled.
    let trap = TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    // Distinct nonces: were the MAC not checked, each would be a fresh announcement, and a few
    // of them make any node dial.
    for nonce in 0..20u64 {
        let forged = format!(
            "foundation-gossip/2 g9 {} {now} {nonce:016x} {}",
            trap.local_addr().unwrap(),
            "0".repeat(64)
        );
        sender.send_to(forged.as_bytes(), group).unwrap();
    }
    until(|| ignored(m2, "bad_mac") >= 10, || format!("forgeries counted: {}", ignored(m2, "bad_mac")));
    // Both nodes have processed the forgeries (counted above): a dial would have come by now
    // (discovery dials in the background right after hearing); give it a moment more.
    std::thread::sleep(Duration::from_millis(500));
    assert!(trap.accept().is_err(), "a forged announcement was dialled");
    drop((g1, g2));
}

/// A socket on the discovery port that hears the group (shared with the nodes: SO_REUSEPORT).
fn socket2_multicast(port: u16) -> UdpSocket {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    socket.set_reuse_address(true).unwrap();
    socket.set_reuse_port(true).unwrap();
    socket.bind(&SocketAddr::from(([0, 0, 0, 0], port)).into()).unwrap();
    socket.join_multicast_v4(&"239.255.77.77".parse().unwrap(), &"127.0.0.1".parse().unwrap()).unwrap();
    socket.set_multicast_loop_v4(true).unwrap();
    let socket: UdpSocket = socket.into();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    socket
}

/// A socket that sends to the group on loopback, where the nodes listen.
fn multicast_sender() -> UdpSocket {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
    socket.set_multicast_if_v4(&"127.0.0.1".parse().unwrap()).unwrap();
    socket.set_multicast_loop_v4(true).unwrap();
    socket.into()
}

/// This process's soft limit on open files.
fn open_files_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Raises this process's soft limit on open files to at least `want` (never lowers it).
fn raise_open_files(want: u64) {
    if open_files_limit() >= want {
        return;
    }
    let pid = std::process::id().to_string();
    let status = std::process::Command::new("prlimit")
        .args(["--pid", &pid, &format!("--nofile={want}:")])
        .status()
        .expect("prlimit (util-linux) runs");
    let soft = open_files_limit();
    assert!(
        soft >= want,
        "cannot raise the open-file limit to {want} (prlimit: {status}; soft limit {soft})"
    );
}

/// The floods run one at a time: each holds about 2 000 sockets in this process.
static FLOOD: Mutex<()> = Mutex::new(());

fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// `VmRSS` or `VmHWM` (the peak) of a process, in KiB.
fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim_start_matches(':').split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Opens `count` connections to `addr` that never say anything (the ones the node closes at
/// once are kept too: the test holds every socket open until it ends).
fn silent_connections(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    (0..count).filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()).collect()
}

/// 1 MiB of random bytes, in 64 KiB pieces on 16 connections, plus a frame header announcing
/// 60 KiB that never comes.
fn garbage(addr: SocketAddr) -> Vec<TcpStream> {
    let mut rng = SplitMix64::new(20261206);
    let mut kept = Vec::new();
    for _ in 0..16 {
        let Ok(mut stream) = TcpStream::connect(addr) else { continue };
        stream.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
        let bytes: Vec<u8> = (0..64 * 1024).map(|_| rng.next_u64() as u8).collect();
        let _ = stream.write_all(&bytes); // the node may close first: that is the point
        kept.push(stream);
    }
    if let Ok(mut stream) = TcpStream::connect(addr) {
        let _ = stream.write_all(&(60u64 * 1024).to_be_bytes());
        let _ = stream.write_all(&[0u8; 100]);
        kept.push(stream);
    }
    kept
}

/// `foundation_cluster_refused_total{reason="REASON"}` on a node's metrics endpoint.
fn refused_total(metrics: u16, reason: &str) -> u64 {
    counter(metrics, "foundation_cluster_refused_total", reason)
}

/// What a flood leaves behind, and how long an honest join took under it. `n1` serves its
/// metrics on port `metrics`.
fn flood_then_join(
    n1: &NodeProcess,
    n1_port: u16,
    metrics: u16,
    join: impl FnOnce() -> NodeProcess,
) -> Duration {
    let _one_flood_at_a_time = FLOOD.lock().unwrap_or_else(|e| e.into_inner());
    let addr: SocketAddr = format!("127.0.0.1:{n1_port}").parse().unwrap();
    let pid = n1.pid();
    let (base_fds, base_rss) = (open_descriptors(pid), memory_kib(pid, "VmRSS"));
    let flooding = Instant::now();
    let silent = silent_connections(addr, 2000);
    let junk = garbage(addr);
    eprintln!("{} silent connections and 1 MiB of garbage sent in {:?}", silent.len(), flooding.elapsed());
    let started = Instant::now();
    // Most of the flood was closed as soon as accepted: the pending cap held.
    until(
        || refused_total(metrics, "too_many_pending") > 0,
        || format!("too_many_pending: {}", refused_total(metrics, "too_many_pending")),
    );
    let n2 = join();
    wait(&n2, json!({"event": "member_up", "name": "n1"}));
    wait(n1, json!({"event": "member_up", "name": "n2"}));
    let took = started.elapsed();
    // While the attacker still holds all of its sockets, the node closes its side of them.
    until(
        || open_descriptors(pid) <= base_fds + 8,
        || format!("n1 holds {} descriptors (baseline {base_fds})", open_descriptors(pid)),
    );
    let peak = memory_kib(pid, "VmHWM");
    assert!(
        peak.saturating_sub(base_rss) < 64 * 1024,
        "n1's resident memory grew from {base_rss} KiB to a peak of {peak} KiB"
    );
    // Refusals are reported at a bounded rate, not one event per connection.
    let refused = seen(n1, json!({"event": "refused"})).len();
    assert!(refused <= 40, "{refused} refusal events for {} connections", silent.len() + junk.len());
    assert!(silent.len() > 500, "only {} connections were accepted", silent.len());
    drop((silent, junk, n2));
    took
}

/// 2 000 silent connections and 1 MiB of random bytes on a node's cluster port: a legitimate
/// node still joins, the node closes its side of every silent connection after the handshake
/// timeout (5 s by default), and its memory stays bounded. `docs/BENCHMARKS.md` records the
/// join time this prints.
#[test]
fn silent_connections_and_garbage_do_not_exhaust_a_node() {
    raise_open_files(8192);
    let (p1, p2, metrics) = (free_port(), free_port(), free_port());
    let n1 = start_node("n1", p1, &[], &["--metrics", &format!("127.0.0.1:{metrics}")]);
    let took = flood_then_join(&n1, p1, metrics, || start_node("n2", p2, &[p1], &[]));
    eprintln!(
        "plaintext: an honest node joined in {took:?} under 2000 silent connections and 1 MiB of garbage"
    );
}

fn cert(file: &str) -> String {
    format!("{}/tests/certs/cluster/{file}", env!("CARGO_MANIFEST_DIR"))
}

fn tls_env(name: &str) -> [(String, String); 3] {
    [
        ("FOUNDATION_CLUSTER__TLS__CERT".into(), cert(&format!("{name}.pem"))),
        ("FOUNDATION_CLUSTER__TLS__KEY".into(), cert(&format!("{name}-key.pem"))),
        ("FOUNDATION_CLUSTER__TLS__CA".into(), cert("ca.pem")),
    ]
}

fn tls_node(name: &str, port: u16, seeds: &[u16], extra: &[&str]) -> NodeProcess {
    let env = tls_env(name);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    start_node_with_env(name, port, seeds, extra, &env)
}

/// The same flood on a TLS port, where the handshake used to run inside the accept loop with
/// no timeout: one silent client stalled every later admission.
#[test]
fn silent_clients_on_a_tls_port_do_not_stall_admission() {
    raise_open_files(8192);
    let (p1, p2, metrics) = (free_port(), free_port(), free_port());
    let n1 = tls_node("n1", p1, &[], &["--metrics", &format!("127.0.0.1:{metrics}")]);
    let took = flood_then_join(&n1, p1, metrics, || tls_node("n2", p2, &[p1], &[]));
    eprintln!("TLS: an honest node joined in {took:?} under 2000 silent connections and 1 MiB of garbage");
}

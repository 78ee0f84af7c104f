//! The sections of [`FoundationConfig`](super::FoundationConfig) that foundation-core owns, each
//! key declared once with [`config_section!`](super::keys) (its doc, default, range and reload
//! behaviour). Every default is a named constant.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::keys::config_section;
use super::reference::KeyKind;

/// Default node name when none is configured.
pub const DEFAULT_NODE_NAME: &str = "foundation";

config_section! {
    /// `[node]`: who this process is.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    pub struct NodeConfig in "node" {
        name: String = DEFAULT_NODE_NAME.to_string() => KeyKind::String,
            check(
                |c: &Self| (1..=64).contains(&c.name.len())
                    && c.name.chars().all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.')),
                "1 to 64 characters from letters, digits, '-', '_' and '.'"
            ),
            doc "The node's name, unique within a cluster: 1 to 64 letters, digits, `-`, `_` or `.`. The default is fine for one node; every node of a cluster needs its own.";
    }
}

/// Default percentiles reported for every histogram.
pub const DEFAULT_QUANTILES: [f64; 4] = [0.5, 0.9, 0.99, 0.999];
/// Default sliding window over which percentiles are computed.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);
/// Default number of sub-windows the sliding window rotates through.
pub const DEFAULT_WINDOW_BUCKETS: u32 = 6;
/// Default bound on the relative error of every reported percentile (1 %).
pub const DEFAULT_MAX_RELATIVE_ERROR: f64 = 0.01;

impl TelemetryConfig {
    /// Adds this section's range problems to `v`.
    pub fn validate(&self, v: &mut super::Validator) {
        super::keys::Section::check_keys(self, "telemetry", v);
        for (name, slo) in &self.slos {
            let named =
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            v.check("telemetry.slos", name, named, "objective names of letters, digits, `-` and `_`");
            super::keys::Section::check_keys(slo, &format!("telemetry.slos.{name}"), v);
        }
    }
}

config_section! {
    /// `[telemetry]`: metrics, percentiles and the Prometheus exporter.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    pub struct TelemetryConfig in "telemetry" {
        listen: Option<SocketAddr> = None => KeyKind::Address,
            unset "none",
            serde(skip_serializing_if = "Option::is_none", with = "super::socket_addr"),
            doc "Address the Prometheus exporter serves `GET /metrics` on (`Telemetry::serve`; `foundation tour` and `foundation node` read it). Unset: nothing listens unless asked, so an embedded node never opens a port by surprise.";
        quantiles: Vec<f64> = DEFAULT_QUANTILES.to_vec() => KeyKind::Numbers,
            check(
                |c: &Self| !c.quantiles.is_empty() && c.quantiles.iter().all(|q| *q > 0.0 && *q < 1.0),
                "a non-empty list of numbers strictly between 0 and 1"
            ),
            doc "Percentiles exported for every histogram, a non-empty list of numbers strictly between 0 and 1. Any other quantile can still be read in code.";
        window: Duration = DEFAULT_WINDOW => KeyKind::Duration,
            check(
                |c: &Self| c.window >= Duration::from_secs(1) && c.window <= Duration::from_secs(86_400),
                "a duration from 1s to 24h"
            ),
            serde(with = "super::duration"),
            doc "Percentiles describe this much recent time (1s to 24h): with the default a latency spike leaves them within a minute.";
        window_buckets: u32 = DEFAULT_WINDOW_BUCKETS => KeyKind::Integer,
            check(|c: &Self| (1..=60).contains(&c.window_buckets), "an integer from 1 to 60"),
            doc "The window slides in `window / window_buckets` steps (1 to 60): by default 10 s steps, so a reading covers between 50 and 60 s of samples.";
        max_relative_error: f64 = DEFAULT_MAX_RELATIVE_ERROR => KeyKind::Number,
            check(|c: &Self| (0.001..=0.1).contains(&c.max_relative_error), "a number from 0.001 to 0.1"),
            doc "Bound on every reported percentile's relative error (0.001 to 0.1): at 1 % a reported p99 of 200 ms means the exact p99 is within 198 to 202 ms. Memory per histogram and sub-window is about `ln(largest / smallest sample) / (2 × error)` buckets of 8 bytes: about 4 KiB for samples from 1 ms to 10 s at 1 %.";
    }
    tables {
        slos: std::collections::BTreeMap<String, super::SloConfig> = std::collections::BTreeMap::new(),
            doc "`[telemetry.slos.NAME]`: service-level objectives over this node's histograms. Default: none.";
    }
}

/// Default cap on the steps one error context records.
pub const DEFAULT_MAX_STEPS: usize = 512;
/// Default number of a step's first children always kept.
pub const DEFAULT_KEEP_FIRST_CHILDREN: usize = 16;
/// Default number of a step's most recent children kept.
pub const DEFAULT_KEEP_LAST_CHILDREN: usize = 32;
/// Default maximum nesting depth of recorded steps.
pub const DEFAULT_MAX_DEPTH: usize = 32;
/// Default cap on the serialized size of one captured value.
pub const DEFAULT_MAX_DATA_BYTES: usize = 1024;

config_section! {
    /// `[error_context]`: the bounds on what an [`ErrorContext`](crate::ErrorContext) records.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    pub struct ErrorContextConfig in "error_context" {
        max_steps: usize = DEFAULT_MAX_STEPS => KeyKind::Integer,
            check(|c: &Self| (8..=1_000_000).contains(&c.max_steps), "an integer from 8 to 1000000"),
            doc "Steps one operation records (8 to 1 000 000); further steps still run and are counted, not recorded.";
        keep_first_children: usize = DEFAULT_KEEP_FIRST_CHILDREN => KeyKind::Integer,
            check(
                |c: &Self| c.keep_first_children <= c.max_steps,
                "an integer no larger than error_context.max_steps"
            ),
            doc "A step's first children that are always kept (at most `max_steps`).";
        keep_last_children: usize = DEFAULT_KEEP_LAST_CHILDREN => KeyKind::Integer,
            check(
                |c: &Self| (1..=c.max_steps).contains(&c.keep_last_children),
                "an integer from 1 to error_context.max_steps (the failing step must be kept)"
            ),
            doc "A step's most recent children kept after the first ones (1 to `max_steps`); those in between are elided and counted. With the defaults a loop of 10 000 steps shows its first 16 and last 32 iterations, including the one that failed.";
        max_depth: usize = DEFAULT_MAX_DEPTH => KeyKind::Integer,
            check(|c: &Self| (1..=1024).contains(&c.max_depth), "an integer from 1 to 1024"),
            doc "Deepest nesting recorded (1 to 1024); deeper steps are counted only.";
        max_data_bytes: usize = DEFAULT_MAX_DATA_BYTES => KeyKind::Integer,
            check(|c: &Self| (16..=1 << 20).contains(&c.max_data_bytes), "an integer from 16 to 1048576"),
            doc "Largest captured value or error message, as JSON bytes (16 to 1 048 576); a longer one keeps a prefix and its full size. At most 8 captures per step.";
    }
}

/// Default address a node listens on for other nodes.
pub const DEFAULT_CLUSTER_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 4100);
/// Default cookie: fine for a cluster on one machine, refused on any other address.
pub const DEFAULT_COOKIE: &str = "foundation-dev-cookie";
/// The shortest cookie a node accepts when it listens on an address other than loopback.
pub const MIN_COOKIE_BYTES: usize = 16;
/// Default cap on one message sent to another node.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 8 << 20;
/// Default wait between attempts to reach a seed that is not connected.
pub const DEFAULT_RECONNECT_INTERVAL: Duration = Duration::from_millis(500);

/// Default interval between heartbeats to every other node.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(200);
/// Default suspicion level at which a silent node is declared unreachable.
pub const DEFAULT_PHI_THRESHOLD: f64 = 8.0;
/// Default of `cluster.monitored_peers` (Akka's `monitored-by-nr-of-members`).
pub const DEFAULT_MONITORED_PEERS: usize = 5;
/// Default silence tolerated on top of the usual heartbeat interval.
pub const DEFAULT_ACCEPTABLE_PAUSE: Duration = Duration::from_millis(1000);
/// Default smallest jitter the failure detector assumes.
pub const DEFAULT_MIN_STD_DEVIATION: Duration = Duration::from_millis(100);

/// Default UDP port of zero-config discovery.
pub const DEFAULT_GOSSIP_PORT: u16 = 45892;
/// Default multicast group of zero-config discovery (organization-local scope).
pub const DEFAULT_GOSSIP_GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 77, 77);
/// Default interval between a node's discovery announcements.
pub const DEFAULT_GOSSIP_INTERVAL: Duration = Duration::from_secs(1);

/// Default name that node certificates must carry (`cluster.tls.server_name`).
pub const DEFAULT_TLS_SERVER_NAME: &str = "foundation-node";

config_section! {
    /// `[cluster.tls]`: encrypt and authenticate node-to-node traffic with mutual TLS (rustls).
    /// Every node presents `cert` and accepts only peers whose certificate is signed by `ca`,
    /// names `server_name` and names the peer (`NODE.<server_name>`); the cookie is still checked
    /// inside the encrypted connection.
    /// `cert`, `key` and `ca` are required in the table (their `Default` is empty, for code).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct TlsConfig in "cluster.tls" {
        cert: std::path::PathBuf = std::path::PathBuf::new() => KeyKind::Path,
            unset "required",
            check(|c: &Self| c.cert.is_file(), "the path of a readable PEM file"),
            doc "PEM file with this node's certificate (and its chain), valid for `NODE.SERVER_NAME` (the node's name under `server_name`); `foundation certs` makes one per node.";
        key: std::path::PathBuf = std::path::PathBuf::new() => KeyKind::Path,
            unset "required",
            check(|c: &Self| c.key.is_file(), "the path of a readable PEM file"),
            doc "PEM file with this node's private key (PKCS#8, PKCS#1 or SEC1).";
        ca: std::path::PathBuf = std::path::PathBuf::new() => KeyKind::Path,
            unset "required",
            check(|c: &Self| c.ca.is_file(), "the path of a readable PEM file"),
            doc "PEM file with the certificate authorities that sign the cluster's nodes.";
        server_name: String = DEFAULT_TLS_SERVER_NAME.to_string() => KeyKind::String,
            check(|c: &Self| !c.server_name.is_empty(), "a DNS name carried by every node certificate"),
            serde(default = "default_tls_server_name"),
            doc "The DNS name every certificate carries, checked in both directions; not empty. A node's certificate must also be valid for `NODE.SERVER_NAME` (`n1.foundation-node`), an observer's (`cluster status`) for `NAME.tools.SERVER_NAME`: a peer whose certificate does not name it is refused.";
    }
}

fn default_tls_server_name() -> String {
    DEFAULT_TLS_SERVER_NAME.to_string()
}

config_section! {
    /// `[cluster]`: how this node reaches and admits other nodes.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    pub struct ClusterConfig in "cluster" {
        listen: SocketAddr = DEFAULT_CLUSTER_LISTEN => KeyKind::Address,
            serde(with = "super::socket_addr::required"),
            doc "Where this node listens for other nodes. Loopback by default: nothing outside the machine can connect.";
        cookie: String = DEFAULT_COOKIE.to_string() => KeyKind::String,
            check(|c: &Self| !c.cookie.is_empty(), "a non-empty string"),
            check(
                |c: &Self| c.listen.ip().is_loopback() || c.cookie != DEFAULT_COOKIE,
                "a cookie of your own when `cluster.listen` is not a loopback address"
            ),
            check(
                |c: &Self| c.listen.ip().is_loopback() || c.cookie.len() >= MIN_COOKIE_BYTES,
                "a cookie of at least 16 bytes when `cluster.listen` is not a loopback address"
            ),
            doc "Shared secret every node of the cluster presents, checked by challenge and response (never sent in clear); not empty. The default, and any cookie shorter than 16 bytes, is refused unless `listen` is a loopback address, so a node reachable from the network has a cookie of its own that is not guessed quickly (`openssl rand -hex 16`). `foundation node --cookie` and `FOUNDATION_COOKIE` also set it.";
        allow_plaintext: bool = false => KeyKind::Boolean,
            doc "Let a node listen on an address other than loopback without `[cluster.tls]`. Off by default: such a node refuses to start, since its traffic (every message between actors) would cross the network in clear and its cookie handshake is all that admits a peer. Turn it on only on a network you trust (a private test network, a VPN that encrypts).";
        seeds: Vec<SocketAddr> = Vec::new() => KeyKind::Addresses,
            doc "Nodes to connect to at start. A seed that is not up is dialled again every `reconnect_interval`, so a node that restarts rejoins by itself; peers of peers are connected automatically. Give seeds as the `listen` addresses of the nodes: singleton majorities match them by that address.";
        expected_nodes: usize = 0 => KeyKind::Integer,
            check(|c: &Self| c.expected_nodes <= 1000, "an integer from 0 to 1000"),
            doc "How many nodes the cluster is meant to have (0 to 1000; 0: no floor). Majorities (locks, elections, singletons, majority reads and writes) are counted over at least this many nodes, so that a node that knows few others yet (a first start without seeds, a node under a new name found by discovery, a partitioned newcomer) cannot make a majority of its own. Set it to the cluster's size on every node; with fewer than a majority of it up, nothing that needs a majority runs.";
        max_frame_bytes: usize = DEFAULT_MAX_FRAME_BYTES => KeyKind::Integer,
            check(|c: &Self| (1024..=16 << 20).contains(&c.max_frame_bytes), "an integer from 1024 to 16777216"),
            doc "Largest message this node sends to another, in bytes (1024 to 16 777 216; default 8 MiB). A larger one is refused with an error before it is sent; an inbound frame over this limit plus 64 KiB of envelope closes the connection without being allocated.";
        handshake_timeout: Duration = Duration::from_secs(5) => KeyKind::Duration,
            check(
                |c: &Self| (Duration::from_millis(100)..=Duration::from_secs(300)).contains(&c.handshake_timeout),
                "a duration from 100ms to 300s"
            ),
            serde(with = "super::duration"),
            doc "Time a connection has for each step of its handshake (100ms to 300s): a dial's TCP connect and TLS handshake, an incoming connection's TLS handshake, then the cookie handshake. A connection that has not completed one in time is closed and counted as refused (`handshake_timeout`), so a peer that connects and says nothing holds a slot for this long (twice, with TLS) at most.";
        max_pending_connections: usize = 256 => KeyKind::Integer,
            check(|c: &Self| (1..=65536).contains(&c.max_pending_connections), "an integer from 1 to 65536"),
            doc "How many incoming connections may be in their TLS handshake, and how many in their cookie handshake, at once (1 to 65 536), a quarter of each at most from one IP address. Further connections are closed as soon as they are accepted (`too_many_pending`) until some finish or time out; this node's own dials never count. Frames before authentication are limited to 64 KiB. With `handshake_timeout`, this bounds what peers that prove nothing can hold: sockets, actors and memory.";
        reconnect_interval: Duration = DEFAULT_RECONNECT_INTERVAL => KeyKind::Duration,
            check(|c: &Self| c.reconnect_interval >= Duration::from_millis(10), "a duration of at least 10ms"),
            serde(with = "super::duration"),
            doc "Wait between attempts to reach a seed (at least 10ms): by default a seed that restarts is rejoined within about half a second of listening again.";
        heartbeat_interval: Duration = DEFAULT_HEARTBEAT_INTERVAL => KeyKind::Duration,
            check(
                |c: &Self| (Duration::from_millis(20)..=Duration::from_secs(10)).contains(&c.heartbeat_interval),
                "a duration from 20ms to 10s"
            ),
            serde(with = "super::duration"),
            doc "Interval between heartbeats to each node this node watches (20ms to 10s; see `monitored_peers`). Heartbeats also carry each node's health.";
        phi_threshold: f64 = DEFAULT_PHI_THRESHOLD => KeyKind::Number,
            check(|c: &Self| (1.0..=32.0).contains(&c.phi_threshold), "a number from 1 to 32"),
            doc "Suspicion (phi) at which a silent node is declared unreachable and its connection closed (1 to 32). With the defaults a frozen node (its connection still open) is marked down about 1.8 s after its last heartbeat; a killed one as soon as its connection closes.";
        acceptable_pause: Duration = DEFAULT_ACCEPTABLE_PAUSE => KeyKind::Duration,
            serde(with = "super::duration"),
            doc "Silence tolerated beyond the usual heartbeat interval before suspicion rises (GC pauses, a loaded machine). Lower it for faster detection, at the price of false alarms on a busy machine.";
        min_std_deviation: Duration = DEFAULT_MIN_STD_DEVIATION => KeyKind::Duration,
            check(
                |c: &Self| c.min_std_deviation >= Duration::from_millis(1),
                "a duration of at least 1ms (the detector divides by it)"
            ),
            serde(with = "super::duration"),
            doc "Smallest heartbeat jitter the failure detector assumes (at least 1ms), so that very regular heartbeats do not make the first late one look fatal.";
        monitored_peers: usize = DEFAULT_MONITORED_PEERS => KeyKind::Integer,
            check(|c: &Self| (1..=1000).contains(&c.monitored_peers), "an integer from 1 to 1000"),
            doc "How many other nodes each node heartbeats (1 to 1000; default 5): the next ones after it in the ring of up nodes sorted by name, so that every node is watched by this many. A node that finds one of them silent asks every other node to check it, and each checks with a ping of its own before it believes it. Besides them a node pings one more node per interval in turn (the sweep), so a node no watcher reaches is still found, within about nodes × heartbeat_interval. Idle cost per node stays about flat as the cluster grows; a larger value costs more pings and finds more failures at the usual speed when several watchers fail at once.";
        gossip: bool = false => KeyKind::Boolean,
            doc "Zero-config discovery: announce this node by UDP multicast and connect to every node heard with the same cookie (announcements carry the name, the address and the time, signed with a key derived from the cookie, never the cookie; the hosts' clocks must agree within 30 s). Off: seeds only. `cluster = true` at the top of a file, `FOUNDATION_CLUSTER=true` and `foundation node --cluster` turn it on.";
        gossip_port: u16 = DEFAULT_GOSSIP_PORT => KeyKind::Integer,
            check(|c: &Self| c.gossip_port != 0, "a UDP port from 1 to 65535"),
            doc "UDP port of the discovery announcements (1 to 65535); nodes that should find each other share it. Several nodes on one machine can use the same port.";
        gossip_group: Ipv4Addr = DEFAULT_GOSSIP_GROUP => KeyKind::Ipv4,
            check(
                |c: &Self| c.gossip_group.is_multicast(),
                "an IPv4 multicast address (224.0.0.0/4), such as \"239.255.77.77\""
            ),
            doc "IPv4 multicast group of the announcements, sent on the interface of `listen` with TTL 1: a loopback `listen` stays on this machine, a LAN address reaches the local network and no further.";
        gossip_interval: Duration = DEFAULT_GOSSIP_INTERVAL => KeyKind::Duration,
            check(
                |c: &Self| (Duration::from_millis(50)..=Duration::from_secs(60)).contains(&c.gossip_interval),
                "a duration from 50ms to 60s"
            ),
            serde(with = "super::duration"),
            doc "Interval between announcements (50ms to 60s): a new or restarted node is found within about this long.";
        state_dir: Option<std::path::PathBuf> = None => KeyKind::Path,
            unset "none",
            doc "Directory where this node keeps the members it has known (they count towards every majority after a restart, so a restarted node never forms one alone, and are dialled like seeds), nodes removed for good, and its incarnation. One per node; a second process on it is refused. Unset, a restart cannot be told from a new node. `foundation node` sets one (`--state-dir`).";
    }
    tables {
        tls: Option<TlsConfig> = None,
            doc "`[cluster.tls]`: mutual TLS between nodes. Default: none (plaintext, authenticated by the cookie only). A node with TLS only talks to nodes with TLS.";
    }
}

//! The sections of [`FoundationConfig`](super::FoundationConfig) that foundation-core owns.
//!
//! Every field documents its default (a named constant) and what that default implies.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::validate::Validator;

/// Default node name when none is configured.
pub const DEFAULT_NODE_NAME: &str = "foundation";

/// `[node]`: who this process is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// The node's name, unique within a cluster. Letters, digits, `-`, `_` and `.`, 1–64 chars.
    /// Default [`DEFAULT_NODE_NAME`]: fine for one node; every node of a cluster needs its own.
    pub name: String,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self { name: DEFAULT_NODE_NAME.to_string() }
    }
}

impl NodeConfig {
    pub(crate) fn validate(&self, v: &mut Validator) {
        let ok = (1..=64).contains(&self.name.len())
            && self.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        v.check(
            "node.name",
            format!("{:?}", self.name),
            ok,
            "1 to 64 characters from letters, digits, '-', '_' and '.'",
        );
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

/// `[telemetry]`: metrics, percentiles and the Prometheus exporter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Address the Prometheus exporter serves `GET /metrics` on. Default: none, so nothing
    /// listens unless asked (an embedded node never opens a port by surprise).
    #[serde(skip_serializing_if = "Option::is_none", with = "super::socket_addr")]
    pub listen: Option<SocketAddr>,
    /// Percentiles reported for each histogram, each in (0, 1). Default
    /// [`DEFAULT_QUANTILES`] (p50, p90, p99, p99.9).
    pub quantiles: Vec<f64>,
    /// Sliding window over which percentiles are computed. Default [`DEFAULT_WINDOW`] (60 s):
    /// percentiles describe the last minute, and a latency spike leaves them within 60 s.
    #[serde(with = "super::duration")]
    pub window: Duration,
    /// Sub-windows the window is divided into, 1–60. Default [`DEFAULT_WINDOW_BUCKETS`]
    /// (6 × 10 s): old samples leave the window in 10 s steps, so a reading covers between
    /// 50 and 60 s of data.
    pub window_buckets: u32,
    /// Bound on the relative error of every reported percentile, in [0.001, 0.1]. Default
    /// [`DEFAULT_MAX_RELATIVE_ERROR`] (1 %): a reported p99 of 200 ms means the exact p99 is
    /// within 198–202 ms. Memory per histogram and sub-window is about
    /// `ln(largest / smallest sample) / (2 × error)` buckets of 8 bytes: at 1 %, samples from
    /// 1 ms to 10 s take about 4 KiB.
    pub max_relative_error: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            listen: None,
            quantiles: DEFAULT_QUANTILES.to_vec(),
            window: DEFAULT_WINDOW,
            window_buckets: DEFAULT_WINDOW_BUCKETS,
            max_relative_error: DEFAULT_MAX_RELATIVE_ERROR,
        }
    }
}

impl TelemetryConfig {
    /// Adds this section's range problems to `v`.
    pub fn validate(&self, v: &mut Validator) {
        v.check(
            "telemetry.quantiles",
            format!("{:?}", self.quantiles),
            !self.quantiles.is_empty() && self.quantiles.iter().all(|q| *q > 0.0 && *q < 1.0),
            "a non-empty list of numbers strictly between 0 and 1",
        );
        v.check(
            "telemetry.window",
            super::duration::format(self.window),
            self.window >= Duration::from_secs(1) && self.window <= Duration::from_secs(86_400),
            "a duration from 1s to 24h",
        );
        v.check(
            "telemetry.window_buckets",
            self.window_buckets,
            (1..=60).contains(&self.window_buckets),
            "an integer from 1 to 60",
        );
        v.check(
            "telemetry.max_relative_error",
            self.max_relative_error,
            (0.001..=0.1).contains(&self.max_relative_error),
            "a number from 0.001 to 0.1",
        );
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

/// `[error_context]`: the bounds on what an [`ErrorContext`](crate::ErrorContext) records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ErrorContextConfig {
    /// Total steps one context records, at least 8. Default [`DEFAULT_MAX_STEPS`]; beyond it
    /// steps still run and are counted, not recorded.
    pub max_steps: usize,
    /// A step's first children that are always kept. Default [`DEFAULT_KEEP_FIRST_CHILDREN`].
    pub keep_first_children: usize,
    /// A step's most recent children kept after the first ones; older ones are elided and
    /// counted. Default [`DEFAULT_KEEP_LAST_CHILDREN`]: a loop of 10 000 steps shows its first 16
    /// and last 32 iterations, including the one that failed.
    pub keep_last_children: usize,
    /// Deepest nesting recorded. Default [`DEFAULT_MAX_DEPTH`]; deeper steps are counted only.
    pub max_depth: usize,
    /// Largest captured value, as JSON bytes. Default [`DEFAULT_MAX_DATA_BYTES`] (1 KiB); larger
    /// values are kept as a truncated preview with their full size noted.
    pub max_data_bytes: usize,
}

impl Default for ErrorContextConfig {
    fn default() -> Self {
        Self {
            max_steps: DEFAULT_MAX_STEPS,
            keep_first_children: DEFAULT_KEEP_FIRST_CHILDREN,
            keep_last_children: DEFAULT_KEEP_LAST_CHILDREN,
            max_depth: DEFAULT_MAX_DEPTH,
            max_data_bytes: DEFAULT_MAX_DATA_BYTES,
        }
    }
}

impl ErrorContextConfig {
    pub(crate) fn validate(&self, v: &mut Validator) {
        v.check(
            "error_context.max_steps",
            self.max_steps,
            (8..=1_000_000).contains(&self.max_steps),
            "an integer from 8 to 1000000",
        );
        v.check(
            "error_context.keep_first_children",
            self.keep_first_children,
            self.keep_first_children <= self.max_steps,
            "an integer no larger than error_context.max_steps",
        );
        v.check(
            "error_context.keep_last_children",
            self.keep_last_children,
            (1..=self.max_steps).contains(&self.keep_last_children),
            "an integer from 1 to error_context.max_steps (the failing step must be kept)",
        );
        v.check(
            "error_context.max_depth",
            self.max_depth,
            (1..=1024).contains(&self.max_depth),
            "an integer from 1 to 1024",
        );
        v.check(
            "error_context.max_data_bytes",
            self.max_data_bytes,
            (16..=1 << 20).contains(&self.max_data_bytes),
            "an integer from 16 to 1048576",
        );
    }
}

/// Default address a node listens on for other nodes.
pub const DEFAULT_CLUSTER_LISTEN: &str = "127.0.0.1:4100";
/// Default cookie: fine for a cluster on one machine, refused on any other address.
pub const DEFAULT_COOKIE: &str = "foundation-dev-cookie";
/// Default cap on one message sent to another node.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 8 << 20;
/// Default wait between attempts to reach a seed that is not connected.
pub const DEFAULT_RECONNECT_INTERVAL: Duration = Duration::from_millis(500);

/// Default interval between heartbeats to every other node.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(200);
/// Default suspicion level at which a silent node is declared unreachable.
pub const DEFAULT_PHI_THRESHOLD: f64 = 8.0;
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

/// `[cluster.tls]`: encrypt and authenticate node-to-node traffic with mutual TLS (rustls).
/// Every node presents `cert` and accepts only peers whose certificate is signed by `ca` and
/// names `server_name`; the cookie is still checked inside the encrypted connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with this node's certificate (and its chain).
    pub cert: std::path::PathBuf,
    /// PEM file with this node's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: std::path::PathBuf,
    /// PEM file with the certificate authorities that sign the cluster's nodes.
    pub ca: std::path::PathBuf,
    /// The DNS name every node certificate carries (checked in both directions). Default
    /// [`DEFAULT_TLS_SERVER_NAME`].
    #[serde(default = "default_tls_server_name")]
    pub server_name: String,
}

fn default_tls_server_name() -> String {
    DEFAULT_TLS_SERVER_NAME.to_string()
}

/// `[cluster]`: how this node reaches and admits other nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Address to listen on for other nodes. Default [`DEFAULT_CLUSTER_LISTEN`] (loopback only).
    #[serde(with = "super::socket_addr::required")]
    pub listen: SocketAddr,
    /// Shared secret every node of the cluster must present (challenge–response, never sent in
    /// clear). Default [`DEFAULT_COOKIE`], accepted only with a loopback `listen` address.
    pub cookie: String,
    /// Nodes to connect to at start and to reconnect to whenever the connection is lost.
    /// Default: none (this node waits for others to connect).
    pub seeds: Vec<SocketAddr>,
    /// Largest message this node sends to another, in bytes (1 KiB – 16 MiB). Default
    /// [`DEFAULT_MAX_FRAME_BYTES`] (8 MiB): larger messages are refused with an error before
    /// they are sent, well under the 16 MiB at which the receiver would drop the connection.
    pub max_frame_bytes: usize,
    /// Wait between attempts to reach a seed. Default [`DEFAULT_RECONNECT_INTERVAL`]: a seed
    /// that restarts is rejoined within about half a second of it listening again.
    #[serde(with = "super::duration")]
    pub reconnect_interval: Duration,
    /// Interval between heartbeats to every other node (20 ms – 10 s). Default
    /// [`DEFAULT_HEARTBEAT_INTERVAL`].
    #[serde(with = "super::duration")]
    pub heartbeat_interval: Duration,
    /// Phi at which a silent node is declared unreachable and its connection closed (1 – 32).
    /// Default [`DEFAULT_PHI_THRESHOLD`]: with the other defaults, a frozen node (its TCP
    /// connection still open) is marked down about 1.8 s after its last heartbeat
    /// (200 ms + 1 s pause + 5.6 × 100 ms); a killed one as soon as its connection closes.
    pub phi_threshold: f64,
    /// Silence tolerated beyond the usual heartbeat interval before suspicion rises (GC pauses,
    /// a loaded machine). Default [`DEFAULT_ACCEPTABLE_PAUSE`].
    #[serde(with = "super::duration")]
    pub acceptable_pause: Duration,
    /// Smallest jitter the detector assumes, so that very regular heartbeats do not make it
    /// trigger on the first late one. Default [`DEFAULT_MIN_STD_DEVIATION`].
    #[serde(with = "super::duration")]
    pub min_std_deviation: Duration,
    /// Zero-config discovery, like libcluster's Gossip strategy: announce this node by UDP
    /// multicast on `gossip_group`:`gossip_port` (on the interface of `listen`; loopback stays
    /// on this machine) and connect to every node heard that has the same cookie. Default
    /// `false` (seeds only). `foundation node --cluster` turns it on. Announcements carry the
    /// node's name, address and a hash of the cookie, never the cookie.
    pub gossip: bool,
    /// UDP port of discovery announcements; nodes that should find each other share it.
    /// Default [`DEFAULT_GOSSIP_PORT`].
    pub gossip_port: u16,
    /// Multicast group of discovery announcements (an IPv4 multicast address). Default
    /// [`DEFAULT_GOSSIP_GROUP`].
    pub gossip_group: Ipv4Addr,
    /// Interval between announcements (50 ms – 60 s). Default [`DEFAULT_GOSSIP_INTERVAL`]: a
    /// new or restarted node is found within about a second.
    #[serde(with = "super::duration")]
    pub gossip_interval: Duration,
    /// Mutual TLS between nodes. Default: none (plaintext, authenticated by the cookie only).
    /// A node with TLS only talks to nodes with TLS.
    pub tls: Option<TlsConfig>,
    /// Directory where this node keeps what must outlive its process: the members it has
    /// known (they count towards every majority after a restart and are dialled like seeds),
    /// nodes removed for good, and its incarnation. One directory per node, never shared
    /// (a lock file refuses a second process). Default: none, so a restart cannot be told
    /// from a new node: a restarted node with no seeds then starts as a cluster of its own
    /// until another node connects. `foundation node` sets one unless told not to.
    pub state_dir: Option<std::path::PathBuf>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 4100)),
            cookie: DEFAULT_COOKIE.to_string(),
            seeds: Vec::new(),
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            reconnect_interval: DEFAULT_RECONNECT_INTERVAL,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            phi_threshold: DEFAULT_PHI_THRESHOLD,
            acceptable_pause: DEFAULT_ACCEPTABLE_PAUSE,
            min_std_deviation: DEFAULT_MIN_STD_DEVIATION,
            gossip: false,
            gossip_port: DEFAULT_GOSSIP_PORT,
            gossip_group: DEFAULT_GOSSIP_GROUP,
            gossip_interval: DEFAULT_GOSSIP_INTERVAL,
            tls: None,
            state_dir: None,
        }
    }
}

impl ClusterConfig {
    pub(crate) fn validate(&self, v: &mut Validator) {
        v.check(
            "cluster.cookie",
            format!("{:?}", self.cookie),
            !self.cookie.is_empty(),
            "a non-empty string",
        );
        v.check(
            "cluster.cookie",
            "(the default cookie)",
            self.listen.ip().is_loopback() || self.cookie != DEFAULT_COOKIE,
            "a cookie of your own when `cluster.listen` is not a loopback address",
        );
        v.check(
            "cluster.max_frame_bytes",
            self.max_frame_bytes,
            (1024..=16 << 20).contains(&self.max_frame_bytes),
            "an integer from 1024 to 16777216",
        );
        v.check(
            "cluster.reconnect_interval",
            super::duration::format(self.reconnect_interval),
            self.reconnect_interval >= Duration::from_millis(10),
            "a duration of at least 10ms",
        );
        v.check(
            "cluster.heartbeat_interval",
            super::duration::format(self.heartbeat_interval),
            (Duration::from_millis(20)..=Duration::from_secs(10)).contains(&self.heartbeat_interval),
            "a duration from 20ms to 10s",
        );
        v.check(
            "cluster.phi_threshold",
            self.phi_threshold,
            (1.0..=32.0).contains(&self.phi_threshold),
            "a number from 1 to 32",
        );
        v.check("cluster.gossip_port", self.gossip_port, self.gossip_port != 0, "a UDP port from 1 to 65535");
        v.check(
            "cluster.gossip_group",
            format!("{:?}", self.gossip_group.to_string()),
            self.gossip_group.is_multicast(),
            "an IPv4 multicast address (224.0.0.0/4), such as \"239.255.77.77\"",
        );
        if let Some(tls) = &self.tls {
            for (key, path) in
                [("cluster.tls.cert", &tls.cert), ("cluster.tls.key", &tls.key), ("cluster.tls.ca", &tls.ca)]
            {
                v.check(
                    key,
                    format!("{:?}", path.display().to_string()),
                    path.is_file(),
                    "the path of a readable PEM file",
                );
            }
            v.check(
                "cluster.tls.server_name",
                format!("{:?}", tls.server_name),
                !tls.server_name.is_empty(),
                "a DNS name carried by every node certificate",
            );
        }
        v.check(
            "cluster.gossip_interval",
            super::duration::format(self.gossip_interval),
            (Duration::from_millis(50)..=Duration::from_secs(60)).contains(&self.gossip_interval),
            "a duration from 50ms to 60s",
        );
    }
}

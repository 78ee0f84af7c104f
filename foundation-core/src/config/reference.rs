//! The configuration reference: every key of [`FoundationConfig`], its type, its default and
//! what it means, as Markdown.
//!
//! Defaults come from the config types themselves ([`FoundationConfig::default`], serialized and
//! flattened); each key's type and meaning come from [`KEY_DOCS`], which the tests hold to the
//! types: a key the types have (every optional key set) without an entry, an entry for a key
//! they do not have, or a type that does not match the serialized value fails them.
//! `foundation config reference` prints [`reference_markdown`]; `docs/guide/configuration.md`
//! is its output, and a test of `foundation-tests` fails when the two differ.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};

use toml::{Table, Value};

use super::loader::{ENV_CONFIG_FILE, ENV_COOKIE, ENV_LOG, ENV_PREFIX, flatten, to_table};
use super::{FoundationConfig, ProviderConfig, TlsConfig};
use crate::rate_limit::ProviderLimits;

/// The command that regenerates `docs/guide/configuration.md` from the workspace root.
pub const REGENERATE_COMMAND: &str =
    "cargo run -q -p foundation-examples --bin foundation -- config reference > docs/guide/configuration.md";

/// Stands for a provider's name in the keys of `[llm.providers.NAME]`.
pub const PROVIDER_PLACEHOLDER: &str = "NAME";

/// The key whose description ends with the list of profiles and their limits, generated from
/// [`ProviderLimits::profile`].
const PROFILE_KEY: &str = "llm.providers.NAME.profile";

/// What a key's value looks like in TOML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// A string.
    String,
    /// A non-negative integer.
    Integer,
    /// A number (`0.5`, `8.0`).
    Number,
    /// `true` or `false`.
    Boolean,
    /// A string with a unit: `"250ms"`, `"5s"`, `"2m"`, `"1h"`.
    Duration,
    /// A socket address as a string: `"127.0.0.1:4100"`, `"[::1]:4100"`.
    Address,
    /// An IPv4 address as a string.
    Ipv4,
    /// A file path as a string.
    Path,
    /// One of the listed strings.
    OneOf(&'static [&'static str]),
    /// A list of numbers.
    Numbers,
    /// A list of strings.
    Strings,
    /// A list of socket addresses.
    Addresses,
}

impl KeyKind {
    /// How the reference names it.
    pub fn describe(self) -> String {
        match self {
            KeyKind::String => "string".into(),
            KeyKind::Integer => "integer".into(),
            KeyKind::Number => "number".into(),
            KeyKind::Boolean => "boolean".into(),
            KeyKind::Duration => "duration".into(),
            KeyKind::Address => "address".into(),
            KeyKind::Ipv4 => "IPv4 address".into(),
            KeyKind::Path => "path".into(),
            KeyKind::OneOf(values) => {
                values.iter().map(|v| format!("`\"{v}\"`")).collect::<Vec<_>>().join(" or ")
            }
            KeyKind::Numbers => "list of numbers".into(),
            KeyKind::Strings => "list of strings".into(),
            KeyKind::Addresses => "list of addresses".into(),
        }
    }

    /// Whether `value` (as the config types serialize it) is of this kind.
    pub fn matches(self, value: &Value) -> bool {
        let string = |ok: fn(&str) -> bool| value.as_str().is_some_and(ok);
        let all = |ok: fn(&Value) -> bool| value.as_array().is_some_and(|a| a.iter().all(ok));
        match self {
            KeyKind::String => value.is_str(),
            KeyKind::Integer => value.as_integer().is_some_and(|i| i >= 0),
            KeyKind::Number => value.is_float(),
            KeyKind::Boolean => value.is_bool(),
            KeyKind::Duration => string(|s| super::duration::parse(s).is_some()),
            KeyKind::Address => string(|s| s.parse::<SocketAddr>().is_ok()),
            KeyKind::Ipv4 => string(|s| s.parse::<Ipv4Addr>().is_ok()),
            KeyKind::Path => value.is_str(),
            KeyKind::OneOf(values) => value.as_str().is_some_and(|s| values.contains(&s)),
            KeyKind::Numbers => all(|v| v.is_float()),
            KeyKind::Strings => all(|v| v.is_str()),
            KeyKind::Addresses => all(|v| v.as_str().is_some_and(|s| s.parse::<SocketAddr>().is_ok())),
        }
    }
}

/// What one key means: the part of the reference the types cannot say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyDoc {
    /// The dotted key; keys of a provider use [`PROVIDER_PLACEHOLDER`] for its name.
    pub key: &'static str,
    /// Its type.
    pub kind: KeyKind,
    /// For a key with no default value: what applies when it is not set (`None`: nothing).
    pub unset: Option<&'static str>,
    /// What it does, its range, and what its default implies. One line, no `|`.
    pub description: &'static str,
}

const fn doc(key: &'static str, kind: KeyKind, description: &'static str) -> KeyDoc {
    KeyDoc { key, kind, unset: None, description }
}

const fn unset(key: &'static str, kind: KeyKind, unset: &'static str, description: &'static str) -> KeyDoc {
    KeyDoc { key, kind, unset: Some(unset), description }
}

/// The sections of the configuration, in the order the reference lists them: the table's prefix
/// and what the section is for.
pub const SECTIONS: &[(&str, &str)] = &[
    ("node", "This process's identity."),
    ("telemetry", "Metrics, percentiles and the Prometheus exporter."),
    ("error_context", "The bounds on what an `ErrorContext` records about one operation."),
    ("cluster", "How this node reaches and admits other nodes, and how it detects failed ones."),
    (
        "cluster.tls",
        "Mutual TLS between nodes (rustls). Absent by default: plaintext, authenticated by the cookie \
         only. When present, `cert`, `key` and `ca` are required and must name existing files when \
         the configuration is loaded; a node with TLS talks only to nodes with TLS and the same CA, \
         and the cookie is still checked inside the encrypted connection.",
    ),
    (
        "llm",
        "Language-model providers, their limits, and the order in which they are tried \
         (`LlmRouter::from_config`).",
    ),
    (
        "llm.providers.NAME",
        "One provider, under a name of your choice (`[llm.providers.openai]`). No provider is \
         configured by default; the defaults below are those of a provider table that sets nothing.",
    ),
    (
        "llm.providers.NAME.limits",
        "Limits that replace the profile's, each a positive integer; a limit left out keeps the \
         profile's. Also written inline: `limits = { rpm = 600, tpm = 40000 }`.",
    ),
];

/// What every key means. A key added to a config type without an entry here fails the tests.
pub const KEY_DOCS: &[KeyDoc] = &[
    doc(
        "node.name",
        KeyKind::String,
        "The node's name, unique within a cluster: 1 to 64 letters, digits, `-`, `_` or `.`. The default \
         is fine for one node; every node of a cluster needs its own.",
    ),
    unset(
        "telemetry.listen",
        KeyKind::Address,
        "none",
        "Address the Prometheus exporter serves `GET /metrics` on (`Telemetry::serve`; `foundation tour` \
         and `foundation node` read it). Unset: nothing listens unless asked, so an embedded node never opens a port by surprise.",
    ),
    doc(
        "telemetry.quantiles",
        KeyKind::Numbers,
        "Percentiles exported for every histogram, a non-empty list of numbers strictly between 0 and 1. \
         Any other quantile can still be read in code.",
    ),
    doc(
        "telemetry.window",
        KeyKind::Duration,
        "Percentiles describe this much recent time (1s to 24h): with the default a latency spike leaves \
         them within a minute.",
    ),
    doc(
        "telemetry.window_buckets",
        KeyKind::Integer,
        "The window slides in `window / window_buckets` steps (1 to 60): by default 10 s steps, so a \
         reading covers between 50 and 60 s of samples.",
    ),
    doc(
        "telemetry.max_relative_error",
        KeyKind::Number,
        "Bound on every reported percentile's relative error (0.001 to 0.1): at 1 % a reported p99 of \
         200 ms means the exact p99 is within 198 to 202 ms. Memory per histogram and sub-window is about \
         `ln(largest / smallest sample) / (2 × error)` buckets of 8 bytes: about 4 KiB for samples from \
         1 ms to 10 s at 1 %.",
    ),
    doc(
        "error_context.max_steps",
        KeyKind::Integer,
        "Steps one operation records (8 to 1 000 000); further steps still run and are counted, not \
         recorded.",
    ),
    doc(
        "error_context.keep_first_children",
        KeyKind::Integer,
        "A step's first children that are always kept (at most `max_steps`).",
    ),
    doc(
        "error_context.keep_last_children",
        KeyKind::Integer,
        "A step's most recent children kept after the first ones (1 to `max_steps`); those in between are \
         elided and counted. With the defaults a loop of 10 000 steps shows its first 16 and last 32 \
         iterations, including the one that failed.",
    ),
    doc(
        "error_context.max_depth",
        KeyKind::Integer,
        "Deepest nesting recorded (1 to 1024); deeper steps are counted only.",
    ),
    doc(
        "error_context.max_data_bytes",
        KeyKind::Integer,
        "Largest captured value or error message, as JSON bytes (16 to 1 048 576); a longer one keeps a \
         prefix and its full size. At most 8 captures per step.",
    ),
    doc(
        "cluster.listen",
        KeyKind::Address,
        "Where this node listens for other nodes. Loopback by default: nothing outside the machine can \
         connect.",
    ),
    doc(
        "cluster.cookie",
        KeyKind::String,
        "Shared secret every node of the cluster presents, checked by challenge and response (never sent \
         in clear); not empty. The default is refused unless `listen` is a loopback address, so a node \
         reachable from the network has a cookie of its own. `foundation node --cookie` and \
         `FOUNDATION_COOKIE` also set it.",
    ),
    doc(
        "cluster.seeds",
        KeyKind::Addresses,
        "Nodes to connect to at start. A seed that is not up is dialled again every `reconnect_interval`, \
         so a node that restarts rejoins by itself; peers of peers are connected automatically. Give seeds \
         as the `listen` addresses of the nodes: singleton majorities match them by that address.",
    ),
    doc(
        "cluster.max_frame_bytes",
        KeyKind::Integer,
        "Largest message this node sends to another, in bytes (1024 to 16 777 216; default 8 MiB). A larger \
         one is refused with an error before it is sent; an inbound frame over this limit plus 64 KiB of \
         envelope closes the connection without being allocated.",
    ),
    doc(
        "cluster.reconnect_interval",
        KeyKind::Duration,
        "Wait between attempts to reach a seed (at least 10ms): by default a seed that restarts is rejoined \
         within about half a second of listening again.",
    ),
    doc(
        "cluster.heartbeat_interval",
        KeyKind::Duration,
        "Interval between heartbeats to every other node (20ms to 10s). Heartbeats also carry each node's \
         health.",
    ),
    doc(
        "cluster.phi_threshold",
        KeyKind::Number,
        "Suspicion (phi) at which a silent node is declared unreachable and its connection closed (1 to 32). \
         With the defaults a frozen node (its connection still open) is marked down about 1.8 s after its \
         last heartbeat; a killed one as soon as its connection closes.",
    ),
    doc(
        "cluster.acceptable_pause",
        KeyKind::Duration,
        "Silence tolerated beyond the usual heartbeat interval before suspicion rises (GC pauses, a loaded \
         machine). Lower it for faster detection, at the price of false alarms on a busy machine.",
    ),
    doc(
        "cluster.min_std_deviation",
        KeyKind::Duration,
        "Smallest heartbeat jitter the failure detector assumes, so that very regular heartbeats do not make \
         the first late one look fatal.",
    ),
    doc(
        "cluster.gossip",
        KeyKind::Boolean,
        "Zero-config discovery: announce this node by UDP multicast and connect to every node heard with \
         the same cookie (announcements carry the name, the address and a hash of the cookie, never the \
         cookie). Off: seeds only. `cluster = true` at the top of a file, `FOUNDATION_CLUSTER=true` and \
         `foundation node --cluster` turn it on.",
    ),
    doc(
        "cluster.gossip_port",
        KeyKind::Integer,
        "UDP port of the discovery announcements (1 to 65535); nodes that should find each other share it. \
         Several nodes on one machine can use the same port.",
    ),
    doc(
        "cluster.gossip_group",
        KeyKind::Ipv4,
        "IPv4 multicast group of the announcements, sent on the interface of `listen` with TTL 1: a loopback \
         `listen` stays on this machine, a LAN address reaches the local network and no further.",
    ),
    doc(
        "cluster.gossip_interval",
        KeyKind::Duration,
        "Interval between announcements (50ms to 60s): a new or restarted node is found within about this \
         long.",
    ),
    unset(
        "cluster.state_dir",
        KeyKind::Path,
        "none",
        "Directory where this node keeps the members it has known (they count towards every majority \
         after a restart, so a restarted node never forms one alone, and are dialled like seeds), nodes \
         removed for good, and its incarnation. One per node; a second process on it is refused. Unset, \
         a restart cannot be told from a new node. `foundation node` sets one (`--state-dir`).",
    ),
    unset(
        "cluster.tls.cert",
        KeyKind::Path,
        "required",
        "PEM file with this node's certificate (and its chain).",
    ),
    unset(
        "cluster.tls.key",
        KeyKind::Path,
        "required",
        "PEM file with this node's private key (PKCS#8, PKCS#1 or SEC1).",
    ),
    unset(
        "cluster.tls.ca",
        KeyKind::Path,
        "required",
        "PEM file with the certificate authorities that sign the cluster's nodes.",
    ),
    doc(
        "cluster.tls.server_name",
        KeyKind::String,
        "The DNS name every node certificate carries, checked in both directions; not empty.",
    ),
    doc(
        "llm.chain",
        KeyKind::Strings,
        "Provider names, each defined under `[llm.providers]`, in the order they are tried: the next one \
         serves when one is open-circuited, over budget, too small for the prompt or failing. Empty: every \
         provider, in name order.",
    ),
    doc(
        "llm.providers.NAME.kind",
        KeyKind::OneOf(&["simulated", "openai-compatible"]),
        "`simulated`: the built-in model, no network. `openai-compatible`: a chat-completions endpoint \
         (OpenAI, vLLM, Ollama, llama.cpp server).",
    ),
    doc("llm.providers.NAME.model", KeyKind::String, "The model asked for."),
    unset(
        "llm.providers.NAME.base_url",
        KeyKind::String,
        "`OPENAI_BASE_URL`, else `https://api.openai.com/v1`",
        "The endpoint, up to `/v1`; an `http://` or `https://` URL.",
    ),
    unset(
        "llm.providers.NAME.api_key",
        KeyKind::String,
        "`OPENAI_API_KEY`, else none",
        "Sent as a bearer token; local servers need none.",
    ),
    doc(
        PROFILE_KEY,
        KeyKind::String,
        "Named limits of the account's tier (the figures providers published for their entry tiers, \
         checked 2026-11; set your account's in `limits`), one of:",
    ),
    doc("llm.providers.NAME.timeout", KeyKind::Duration, "Longest one request may take; positive."),
    doc(
        "llm.providers.NAME.attempts",
        KeyKind::Integer,
        "Attempts per request, the first included (1 to 10): by default a 5xx or a timeout is retried \
         twice, with backoff or after `retry-after`, before the next provider of the chain is tried.",
    ),
    unset("llm.providers.NAME.limits.rpm", KeyKind::Integer, "the profile's", "Requests per minute."),
    unset(
        "llm.providers.NAME.limits.tpm",
        KeyKind::Integer,
        "the profile's",
        "Tokens per minute, input and output together.",
    ),
    unset(
        "llm.providers.NAME.limits.input_tpm",
        KeyKind::Integer,
        "the profile's",
        "Input tokens per minute (Anthropic counts them apart).",
    ),
    unset(
        "llm.providers.NAME.limits.output_tpm",
        KeyKind::Integer,
        "the profile's",
        "Output tokens per minute (Anthropic counts them apart).",
    ),
    unset("llm.providers.NAME.limits.rpd", KeyKind::Integer, "the profile's", "Requests per day."),
    unset(
        "llm.providers.NAME.limits.concurrent",
        KeyKind::Integer,
        "the profile's",
        "Requests in flight at once.",
    ),
];

/// One key of the reference.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyReference {
    /// The dotted key.
    pub key: String,
    /// Its type.
    pub kind: KeyKind,
    /// Its default in TOML syntax (`"60s"`, `[]`, `8.0`), or what applies when it is unset.
    pub default: String,
    /// What it means.
    pub description: String,
}

/// A configuration with every optional key set (and one provider, [`PROVIDER_PLACEHOLDER`]), so
/// that serializing it lists every key there is. An optional field added to a config type must
/// be set here too, or the reference (and its tests) will not see it.
#[cfg(test)]
fn every_key_set() -> FoundationConfig {
    let mut config = FoundationConfig::default();
    config.telemetry.listen = Some(SocketAddr::from(([127, 0, 0, 1], 9464)));
    config.cluster.seeds = vec![SocketAddr::from(([127, 0, 0, 1], 4101))];
    config.cluster.state_dir = Some("state/n1".into());
    config.cluster.tls = Some(TlsConfig {
        cert: "node.pem".into(),
        key: "node-key.pem".into(),
        ca: "ca.pem".into(),
        server_name: super::DEFAULT_TLS_SERVER_NAME.into(),
    });
    config.llm.chain = vec![PROVIDER_PLACEHOLDER.to_string()];
    let one = Some(1);
    let limits =
        ProviderLimits { rpm: one, tpm: one, input_tpm: one, output_tpm: one, rpd: one, concurrent: one };
    let provider = ProviderConfig {
        base_url: Some("http://127.0.0.1:8000/v1".into()),
        api_key: Some("key".into()),
        limits,
        ..ProviderConfig::default()
    };
    config.llm.providers.insert(PROVIDER_PLACEHOLDER.to_string(), provider);
    config
}

/// Every key there is, with the value [`every_key_set`] gives it.
#[cfg(test)]
fn every_key() -> BTreeMap<String, Value> {
    flatten(&to_table(&every_key_set()))
}

/// The default of every key that has one: [`FoundationConfig::default`]'s, and those of a
/// provider and a `[cluster.tls]` table that set nothing optional.
fn defaults() -> BTreeMap<String, Value> {
    let mut out = flatten(&to_table(&FoundationConfig::default()));
    let provider = Table::try_from(ProviderConfig::default()).unwrap_or_default();
    for (key, value) in flatten(&provider) {
        out.insert(format!("llm.providers.{PROVIDER_PLACEHOLDER}.{key}"), value);
    }
    // `cert`, `key` and `ca` are required: only what the table fills in by itself is a default.
    let required = ["cert", "key", "ca"];
    let minimal: Table = required.iter().map(|k| (k.to_string(), Value::from(""))).collect();
    if let Ok(tls) = Value::Table(minimal).try_into::<TlsConfig>() {
        for (key, value) in flatten(&Table::try_from(tls).unwrap_or_default()) {
            if !required.contains(&key.as_str()) {
                out.insert(format!("cluster.tls.{key}"), value);
            }
        }
    }
    out
}

/// Every key in [`KEY_DOCS`] order, with its type, default and meaning.
pub fn reference() -> Vec<KeyReference> {
    let defaults = defaults();
    KEY_DOCS
        .iter()
        .map(|d| KeyReference {
            key: d.key.to_string(),
            kind: d.kind,
            default: match defaults.get(d.key) {
                Some(value) => format!("`{value}`"),
                None => d.unset.unwrap_or("none").to_string(),
            },
            description: match d.key {
                PROFILE_KEY => format!("{} {}.", d.description, profiles()),
                _ => d.description.to_string(),
            },
        })
        .collect()
}

/// Every named profile with its limits: `` `local` (concurrent = 64) ``, and so on.
fn profiles() -> String {
    let described: Vec<String> = ProviderLimits::profile_names()
        .map(|name| {
            let limits = ProviderLimits::profile(name).unwrap_or_default();
            let set: Vec<String> = [
                ("rpm", limits.rpm),
                ("tpm", limits.tpm),
                ("input_tpm", limits.input_tpm),
                ("output_tpm", limits.output_tpm),
                ("rpd", limits.rpd),
                ("concurrent", limits.concurrent),
            ]
            .into_iter()
            .filter_map(|(key, n)| n.map(|n| format!("{key} = {n}")))
            .collect();
            format!("`{name}` ({})", set.join(", "))
        })
        .collect();
    described.join(", ")
}

/// The section a key belongs to: the [`SECTIONS`] entry that is its parent.
fn section_of(key: &str) -> Option<&'static str> {
    let parent = key.rsplit_once('.').map(|(p, _)| p)?;
    SECTIONS.iter().map(|(s, _)| *s).find(|s| *s == parent)
}

/// The configuration reference as Markdown: `docs/guide/configuration.md`.
pub fn reference_markdown() -> String {
    let keys = reference();
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "# Configuration reference");
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "<!-- Generated from foundation_core::config by `foundation config reference`; do not edit. \
         Regenerate: {REGENERATE_COMMAND} -->"
    );
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "Every key of a node's configuration, generated from the config types \
         (`foundation_core::config`). Every key is optional, except `cert`, `key` and `ca` in an \
         optional `[cluster.tls]`; a key that does not exist is an error. \
         Sources, lowest to highest precedence: defaults, TOML files, `{ENV_PREFIX}<SECTION>__<KEY>` \
         environment variables (double underscore between levels: \
         `{ENV_PREFIX}CLUSTER__HEARTBEAT_INTERVAL=500ms`), code (`ConfigLoader::set`); see \
         [docs/configuration.md](../configuration.md). `foundation config check --config FILE` \
         shows the effective configuration or what is wrong; `foundation config defaults` prints \
         the defaults as TOML."
    );
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "Types: a *duration* is a string with a unit, `\"250ms\"`, `\"5s\"`, `\"2m\"`, `\"1h\"`; an \
         *address* is a string, `\"127.0.0.1:4100\"` or `\"[::1]:4100\"`."
    );
    for (section, about) in SECTIONS {
        let rows: Vec<&KeyReference> = keys.iter().filter(|k| section_of(&k.key) == Some(section)).collect();
        let _ = writeln!(w);
        let _ = writeln!(w, "## `[{section}]`");
        let _ = writeln!(w);
        let _ = writeln!(w, "{about}");
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(w);
        let _ = writeln!(w, "| key | type | default | meaning |");
        let _ = writeln!(w, "|---|---|---|---|");
        for k in rows {
            let name = k.key.rsplit_once('.').map_or(k.key.as_str(), |(_, n)| n);
            let _ = writeln!(w, "| `{name}` | {} | {} | {} |", k.kind.describe(), k.default, k.description);
        }
    }
    let _ = writeln!(w);
    let _ = writeln!(w, "## Environment variables that are not keys");
    let _ = writeln!(w);
    let _ = writeln!(w, "| variable | meaning |");
    let _ = writeln!(w, "|---|---|");
    let _ = writeln!(
        w,
        "| `{ENV_CONFIG_FILE}` | path of the config file the `foundation` command reads (as `--config`) |"
    );
    let _ = writeln!(
        w,
        "| `{ENV_LOG}` | the `foundation` command's log filter, `tracing-subscriber` `EnvFilter` syntax \
         (default `warn`; `error` for `foundation demo`) |"
    );
    let _ = writeln!(
        w,
        "| `{ENV_COOKIE}` | the cluster cookie of `foundation node` and `foundation cluster` (as `--cookie`) |"
    );
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn documented() -> BTreeSet<&'static str> {
        KEY_DOCS.iter().map(|d| d.key).collect()
    }

    #[test]
    fn every_known_key_is_documented() {
        let documented = documented();
        let missing: Vec<String> =
            FoundationConfig::known_keys().into_iter().filter(|k| !documented.contains(k.as_str())).collect();
        assert!(missing.is_empty(), "keys without an entry in config::reference::KEY_DOCS: {missing:?}");
        let missing: Vec<String> =
            every_key().into_keys().filter(|k| !documented.contains(k.as_str())).collect();
        assert!(missing.is_empty(), "keys without an entry in config::reference::KEY_DOCS: {missing:?}");
    }

    #[test]
    fn every_documented_key_exists_once_with_its_type() {
        let keys = every_key();
        for d in KEY_DOCS {
            let value =
                keys.get(d.key).unwrap_or_else(|| panic!("KEY_DOCS names `{}`, which is no key", d.key));
            assert!(d.kind.matches(value), "`{}` is documented as {:?} but is {value}", d.key, d.kind);
        }
        assert_eq!(documented().len(), KEY_DOCS.len(), "a key is documented twice");
    }

    #[test]
    fn every_key_has_a_section_and_a_one_line_description() {
        for d in KEY_DOCS {
            assert!(section_of(d.key).is_some(), "`{}` belongs to no section of SECTIONS", d.key);
            for text in [d.description, d.unset.unwrap_or("")] {
                assert!(!text.contains('|') && !text.contains('\n'), "`{}`: `|` or a line break", d.key);
            }
            assert!(!d.description.is_empty(), "`{}` has no description", d.key);
        }
    }

    #[test]
    fn a_key_either_has_a_default_or_says_what_applies_unset() {
        let defaults = defaults();
        for d in KEY_DOCS {
            assert!(
                !(defaults.contains_key(d.key) && d.unset.is_some()),
                "`{}`: documents what applies unset although it has a default",
                d.key
            );
        }
        assert_eq!(
            defaults.get("cluster.tls.server_name"),
            Some(&Value::from(super::super::DEFAULT_TLS_SERVER_NAME))
        );
        assert!(!defaults.contains_key("cluster.tls.cert"));
    }

    #[test]
    fn every_listed_value_of_a_key_is_accepted() {
        for d in KEY_DOCS {
            if let KeyKind::OneOf(values) = d.kind {
                for value in values {
                    let mut table = to_table(&every_key_set());
                    super::super::loader::set_path(&mut table, d.key, Value::from(*value));
                    let parsed = Value::Table(table).try_into::<FoundationConfig>();
                    assert!(parsed.is_ok(), "`{}` = {value:?} is refused: {parsed:?}", d.key);
                }
            }
        }
    }

    #[test]
    fn every_profile_is_listed_with_its_limits() {
        let md = reference_markdown();
        for name in ProviderLimits::profile_names() {
            assert!(md.contains(&format!("`{name}` (")), "profile `{name}` is not listed");
        }
        assert!(md.contains("`local` (concurrent = 64)"), "{md}");
    }

    #[test]
    fn the_markdown_has_every_key_and_its_default() {
        let md = reference_markdown();
        assert!(md.contains("| `heartbeat_interval` | duration | `\"200ms\"` |"), "{md}");
        assert!(md.contains("| `rpm` | integer | the profile's |"), "{md}");
        assert!(md.contains("## `[llm.providers.NAME.limits]`"), "{md}");
        let rows = md.lines().filter(|l| l.starts_with("| `") && !l.starts_with("| `FOUNDATION")).count();
        assert_eq!(rows, KEY_DOCS.len());
    }
}

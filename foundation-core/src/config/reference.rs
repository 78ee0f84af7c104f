//! The configuration reference: every key of [`FoundationConfig`], its type, its default and
//! what it means, as Markdown.
//!
//! Defaults come from the config types themselves ([`FoundationConfig::default`], serialized and
//! flattened); each key's type, meaning and reload behaviour come from where the key is declared
//! ([`config_section!`](super::keys), gathered by [`key_docs`]), which the tests hold to the
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

/// What one key means: the part of the reference the types cannot say, declared with the key
/// ([`config_section!`](super::keys)).
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
    /// Whether a reload applies it ([`LiveConfig`](super::LiveConfig) and a component that
    /// follows it); otherwise the node must restart for it to take effect.
    pub live: bool,
}

/// The sections of the configuration, in the order the reference lists them: the table's prefix
/// and what the section is for.
pub const SECTIONS: &[(&str, &str)] = &[
    ("node", "This process's identity."),
    ("telemetry", "Metrics, percentiles and the Prometheus exporter."),
    (
        "telemetry.slos.NAME",
        "A service-level objective over one of the node's histograms, under a name of your choice \
         (`[telemetry.slos.provider-latency]`): each sample of a matching series is good (at or \
         under `threshold`) or bad; the node exports `foundation_slo_events_total{slo, outcome}`, \
         `foundation_slo_objective{slo}` and the error budget's burn rate \
         `foundation_slo_burn_rate{slo, window}` over 5m, 30m, 1h and 6h (docs/monitoring/alerts.yml \
         alerts on them). None by default.",
    ),
    ("error_context", "The bounds on what an `ErrorContext` records about one operation."),
    ("cluster", "How this node reaches and admits other nodes, and how it detects failed ones."),
    (
        "cluster.tls",
        "Mutual TLS between nodes (rustls). Absent by default: plaintext, authenticated by the cookie \
         only. When present, `cert`, `key` and `ca` are required and must name existing files when \
         the configuration is loaded; a node with TLS talks only to nodes with TLS and the same CA \
         whose certificate names the node they say they are (`foundation certs` makes them), and the \
         cookie is still checked inside the encrypted connection.",
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

/// Every key of every section, as declared with it ([`config_section!`](super::keys)).
pub fn key_docs() -> Vec<KeyDoc> {
    use super::keys::Section;
    use super::{ClusterConfig, ErrorContextConfig, LlmConfig, NodeConfig, TelemetryConfig};
    [
        NodeConfig::KEYS,
        TelemetryConfig::KEYS,
        super::SloConfig::KEYS,
        ErrorContextConfig::KEYS,
        ClusterConfig::KEYS,
        TlsConfig::KEYS,
        LlmConfig::KEYS,
        ProviderConfig::KEYS,
        ProviderLimits::KEYS,
    ]
    .concat()
}

/// The keys of `changed` (dotted, as [`LiveConfig`](super::LiveConfig) reports them) that take
/// effect only after a restart: what a reload should tell its operator.
pub fn restart_needed(changed: &[String]) -> Vec<String> {
    let docs = key_docs();
    changed
        .iter()
        .filter(|key| {
            let generic = generic_key(key);
            !docs.iter().any(|d| d.key == generic && d.live)
        })
        .cloned()
        .collect()
}

/// `key` with a provider's name replaced by [`PROVIDER_PLACEHOLDER`].
fn generic_key(key: &str) -> String {
    if let Some((_, rest)) = key.strip_prefix("telemetry.slos.").and_then(|rest| rest.split_once('.')) {
        return format!("telemetry.slos.{PROVIDER_PLACEHOLDER}.{rest}");
    }
    match key.strip_prefix("llm.providers.").and_then(|rest| rest.split_once('.')) {
        Some((_, rest)) => format!("llm.providers.{PROVIDER_PLACEHOLDER}.{rest}"),
        None => key.to_string(),
    }
}

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
    /// Whether a reload applies it.
    pub live: bool,
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
        embedding_model: Some("text-embedding-3-small".into()),
        limits,
        ..ProviderConfig::default()
    };
    config.llm.providers.insert(PROVIDER_PLACEHOLDER.to_string(), provider);
    config.llm.semantic_provider = Some(PROVIDER_PLACEHOLDER.to_string());
    let slo = super::SloConfig {
        histogram: "foundation_llm_request_seconds".into(),
        labels: vec!["provider=openai".into()],
        ..Default::default()
    };
    config.telemetry.slos.insert(PROVIDER_PLACEHOLDER.to_string(), slo);
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
    let slo = Table::try_from(super::SloConfig::default()).unwrap_or_default();
    for (key, value) in flatten(&slo) {
        out.insert(format!("telemetry.slos.{PROVIDER_PLACEHOLDER}.{key}"), value);
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

/// Every key in [`key_docs`] order, with its type, default and meaning.
pub fn reference() -> Vec<KeyReference> {
    let defaults = defaults();
    key_docs()
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
            live: d.live,
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
         optional `[cluster.tls]`; a key that does not exist is an error. A key marked *live* \
         takes effect on a reload (`LiveConfig::update` or `replace`, applied by the components \
         that follow it: `LlmRouter::follow` for provider limits); the others need a restart. \
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
        let _ = writeln!(w, "| key | type | default | reload | meaning |");
        let _ = writeln!(w, "|---|---|---|---|---|");
        for k in rows {
            let name = k.key.rsplit_once('.').map_or(k.key.as_str(), |(_, n)| n);
            let reload = if k.live { "live" } else { "restart" };
            let _ = writeln!(
                w,
                "| `{name}` | {} | {} | {reload} | {} |",
                k.kind.describe(),
                k.default,
                k.description
            );
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
        key_docs().iter().map(|d| d.key).collect()
    }

    #[test]
    fn every_known_key_is_documented() {
        let documented = documented();
        let missing: Vec<String> =
            FoundationConfig::known_keys().into_iter().filter(|k| !documented.contains(k.as_str())).collect();
        assert!(missing.is_empty(), "keys without an entry in config_section! declaration: {missing:?}");
        let missing: Vec<String> =
            every_key().into_keys().filter(|k| !documented.contains(k.as_str())).collect();
        assert!(missing.is_empty(), "keys without an entry in config_section! declaration: {missing:?}");
    }

    #[test]
    fn every_documented_key_exists_once_with_its_type() {
        let keys = every_key();
        for d in key_docs() {
            let value = keys
                .get(d.key)
                .unwrap_or_else(|| panic!("the declarations name `{}`, which is no key", d.key));
            assert!(d.kind.matches(value), "`{}` is documented as {:?} but is {value}", d.key, d.kind);
        }
        assert_eq!(documented().len(), key_docs().len(), "a key is documented twice");
    }

    #[test]
    fn every_key_has_a_section_and_a_one_line_description() {
        for d in key_docs() {
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
        for d in key_docs() {
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
        for d in key_docs() {
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
        assert!(md.contains("| `heartbeat_interval` | duration | `\"200ms\"` | restart |"), "{md}");
        assert!(md.contains("| `rpm` | integer | the profile's | live |"), "{md}");
        assert!(md.contains("## `[llm.providers.NAME.limits]`"), "{md}");
        let rows = md.lines().filter(|l| l.starts_with("| `") && !l.starts_with("| `FOUNDATION")).count();
        assert_eq!(rows, key_docs().len());
    }

    #[test]
    fn provider_limits_are_live_and_the_rest_needs_a_restart() {
        let changed: Vec<String> = [
            "llm.providers.openai.limits.rpm",
            "llm.providers.openai.profile",
            "llm.providers.openai.timeout",
            "cluster.heartbeat_interval",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(restart_needed(&changed), ["llm.providers.openai.timeout", "cluster.heartbeat_interval"]);
    }

    #[test]
    fn a_key_documents_what_its_range_check_enforces() {
        // One declaration: the doc says 1024 to 16 777 216 and the check refuses 1023.
        let mut config = FoundationConfig::default();
        config.cluster.max_frame_bytes = 1023;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("cluster.max_frame_bytes") && err.contains("1024 to 16777216"), "{err}");
        let doc = key_docs().into_iter().find(|d| d.key == "cluster.max_frame_bytes").unwrap();
        assert!(doc.description.contains("1024 to 16 777 216"), "{}", doc.description);
        config.cluster.max_frame_bytes = 16 << 20;
        assert!(config.validate().is_ok());
    }
}

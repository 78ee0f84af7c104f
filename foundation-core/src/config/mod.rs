//! Typed configuration: loaded from a TOML file, `FOUNDATION_*` environment variables and code,
//! validated with errors that name the key, and changeable at run time.
//!
//! # Precedence
//!
//! Lowest to highest; a later source overrides an earlier one key by key:
//!
//! 1. built-in defaults (named constants, documented on every field);
//! 2. TOML files, in the order they were added to the [`ConfigLoader`];
//! 3. environment variables `FOUNDATION_<SECTION>__<KEY>` (double underscore between levels,
//!    case-insensitive): `FOUNDATION_TELEMETRY__WINDOW=30s` sets `telemetry.window`. Values are
//!    read as TOML scalars (`30`, `true`, `[0.5, 0.99]`); anything else is a string.
//!    `FOUNDATION_CONFIG` (a config file path) and `FOUNDATION_LOG` (a log filter) are not keys;
//! 4. code: [`ConfigLoader::set`].
//!
//! A key that no section has is an error wherever it comes from, so a misspelling is caught
//! rather than silently ignored.
//!
//! # Run-time changes
//!
//! [`LiveConfig`] holds the current configuration; subscribers name the keys they watch and are
//! told when one of them changes. A change that fails validation is rejected and the old
//! configuration stays in force.
//!
//! # Reference
//!
//! [`reference_markdown`] lists every key with its type, default and meaning
//! ([`mod@reference`] holds the meanings, checked against these types by tests);
//! `foundation config reference` prints it, and `docs/guide/configuration.md` is its output.

pub mod duration;
mod error;
pub mod keys;
mod live;
mod llm;
mod loader;
pub mod reference;
mod sections;
mod slo;
pub mod socket_addr;
mod validate;

use serde::{Deserialize, Serialize};

use keys::Section;

pub use error::{ConfigError, ConfigIssue, IssueKind, Source};
pub use live::{ConfigChange, ConfigSubscription, LiveConfig};
pub use llm::*;
pub use loader::{ConfigLoader, ENV_CONFIG_FILE, ENV_COOKIE, ENV_LOG, ENV_PREFIX};
pub use reference::reference_markdown;
pub use sections::*;
pub use slo::{DEFAULT_SLO_OBJECTIVE, SloConfig};
pub use validate::Validator;

/// The whole configuration of a Foundation node.
///
/// ```
/// use foundation_core::config::ConfigLoader;
/// let config = ConfigLoader::new()
///     .toml_str("[node]\nname = \"n1\"\n[telemetry]\nwindow = \"30s\"")
///     .set("telemetry.window_buckets", 3)
///     .load()?;
/// assert_eq!(config.node.name, "n1");
/// assert_eq!(config.telemetry.window.as_secs(), 30);
/// # Ok::<(), foundation_core::config::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FoundationConfig {
    /// `[node]`: this process's identity.
    pub node: NodeConfig,
    /// `[telemetry]`: metrics, percentiles and the Prometheus exporter.
    pub telemetry: TelemetryConfig,
    /// `[error_context]`: bounds on error contexts.
    pub error_context: ErrorContextConfig,
    /// `[cluster]`: how this node reaches and admits other nodes.
    pub cluster: ClusterConfig,
    /// `[llm]`: language-model providers, their limits and fallback chain.
    pub llm: LlmConfig,
}

impl FoundationConfig {
    /// Checks every range and cross-key rule; the error lists every problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let issues = self.issues();
        if issues.is_empty() { Ok(()) } else { Err(ConfigError::Invalid(issues)) }
    }

    fn issues(&self) -> Vec<ConfigIssue> {
        let mut v = Validator::default();
        self.node.check_keys("node", &mut v);
        self.telemetry.validate(&mut v);
        self.error_context.check_keys("error_context", &mut v);
        self.cluster.check_keys("cluster", &mut v);
        if let Some(tls) = &self.cluster.tls {
            tls.check_keys("cluster.tls", &mut v);
        }
        self.llm.validate(&mut v);
        v.into_issues()
    }

    /// Every leaf key this configuration knows, dotted (`telemetry.window`).
    pub fn known_keys() -> Vec<String> {
        let mut full = FoundationConfig::default();
        // Optional keys are absent from a serialized default; set them so they are listed.
        full.telemetry.listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        full.cluster.state_dir = Some(std::path::PathBuf::new());
        loader::flatten(&loader::to_table(&full)).into_keys().collect()
    }
}

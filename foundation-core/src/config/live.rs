//! Run-time reconfiguration: the current configuration, validated updates and subscriptions to
//! the keys a component cares about.

use crate::sync::MutexRecover;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use toml::Value;

use super::FoundationConfig;
use super::error::{ConfigError, ConfigIssue, IssueKind, Source};
use super::loader::{Provenance, flatten, resolve, set_path, to_table};

/// The configuration in force, shared by every component of a node.
///
/// Updates are validated as a whole: if the new configuration is invalid the update returns the
/// error and the old configuration stays in force. Subscribers keep only the latest value (a
/// `tokio::sync::watch` underneath), so a slow subscriber never makes updates queue up; it sees
/// every key that changed since it last looked.
///
/// ```
/// # tokio_test_block_on(async {
/// use foundation_core::config::{FoundationConfig, LiveConfig};
/// let live = LiveConfig::new(FoundationConfig::default())?;
/// let mut sub = live.subscribe(["telemetry.window"])?;
/// live.set("telemetry.window", "30s")?;
/// let change = sub.changed().await.expect("live config is alive");
/// assert_eq!(change.keys, ["telemetry.window"]);
/// assert!(live.set("telemetry.window", "0s").is_err()); // rejected, 30s stays
/// assert_eq!(live.current().telemetry.window.as_secs(), 30);
/// # Ok::<(), foundation_core::config::ConfigError>(())
/// # }).unwrap();
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug)]
pub struct LiveConfig {
    tx: watch::Sender<Arc<FoundationConfig>>,
    /// Serializes read-modify-write updates so two concurrent `set`s cannot lose one another.
    write: Mutex<()>,
}

/// What a subscriber is told: which watched keys changed and the configuration now in force.
#[derive(Debug, Clone)]
pub struct ConfigChange {
    /// The watched leaf keys whose value changed, dotted and sorted.
    pub keys: Vec<String>,
    /// The configuration now in force.
    pub config: Arc<FoundationConfig>,
}

/// A subscription to some keys of a [`LiveConfig`]; see [`LiveConfig::subscribe`].
#[derive(Debug)]
pub struct ConfigSubscription {
    rx: watch::Receiver<Arc<FoundationConfig>>,
    watched: Vec<String>,
    seen: BTreeMap<String, Value>,
}

impl LiveConfig {
    /// Starts from a configuration, which must be valid.
    pub fn new(config: FoundationConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let (tx, _) = watch::channel(Arc::new(config));
        Ok(Self { tx, write: Mutex::new(()) })
    }

    /// The configuration in force.
    pub fn current(&self) -> Arc<FoundationConfig> {
        self.tx.borrow().clone()
    }

    /// Changes the configuration in code; returns the leaf keys that changed.
    pub fn update(&self, change: impl FnOnce(&mut FoundationConfig)) -> Result<Vec<String>, ConfigError> {
        let _guard = self.write.lock_or_recover();
        let mut next = (*self.current()).clone();
        change(&mut next);
        next.validate().map_err(|e| with_source(e, Source::Code))?;
        Ok(self.install(next))
    }

    /// Sets one dotted key (`"telemetry.window"`, `"30s"`); returns the keys that changed.
    pub fn set(&self, key: &str, value: impl Into<Value>) -> Result<Vec<String>, ConfigError> {
        let _guard = self.write.lock_or_recover();
        let mut table = to_table(&self.current());
        set_path(&mut table, key, value.into());
        let provenance: Provenance = [(key.to_string(), Source::Code)].into();
        let next = resolve(table, &provenance)?;
        Ok(self.install(next))
    }

    /// Replaces the whole configuration (for example after re-running a
    /// [`ConfigLoader`](super::ConfigLoader) on a changed file); returns the keys that changed.
    pub fn replace(&self, next: FoundationConfig) -> Result<Vec<String>, ConfigError> {
        let _guard = self.write.lock_or_recover();
        next.validate()?;
        Ok(self.install(next))
    }

    /// Subscribes to changes of `keys`. A key names a leaf (`telemetry.window`) or a whole section
    /// (`telemetry`, `llm.providers`, `llm.providers.openai`, even before that provider is
    /// configured); an unknown key is an error, so a misspelt subscription does not stay silent.
    pub fn subscribe<I, S>(&self, keys: I) -> Result<ConfigSubscription, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let known = FoundationConfig::known_keys();
        let watched: Vec<String> = keys.into_iter().map(Into::into).collect();
        let unknown: Vec<ConfigIssue> = watched
            .iter()
            .filter(|w| !known.iter().any(|k| matches(w, k)) && !in_named_table(w))
            .map(|w| ConfigIssue {
                kind: IssueKind::UnknownKey,
                key: w.clone(),
                value: None,
                expected: format!("one of {}", known.join(", ")),
                source: Source::Code,
            })
            .collect();
        if !unknown.is_empty() {
            return Err(ConfigError::Invalid(unknown));
        }
        let rx = self.tx.subscribe();
        let seen = watched_values(&rx.borrow(), &watched);
        Ok(ConfigSubscription { rx, watched, seen })
    }

    fn install(&self, next: FoundationConfig) -> Vec<String> {
        let before = flatten(&to_table(&self.current()));
        let after = flatten(&to_table(&next));
        let changed = diff(&before, &after);
        if !changed.is_empty() {
            self.tx.send_replace(Arc::new(next));
        }
        changed
    }
}

impl ConfigSubscription {
    /// Waits until a watched key changes; `None` once the [`LiveConfig`] is gone.
    ///
    /// Cancel-safe: dropping the future loses nothing, the next call reports the change.
    pub async fn changed(&mut self) -> Option<ConfigChange> {
        loop {
            let config = self.rx.borrow_and_update().clone();
            let now = watched_values(&config, &self.watched);
            let keys = diff(&self.seen, &now);
            if !keys.is_empty() {
                self.seen = now;
                return Some(ConfigChange { keys, config });
            }
            self.rx.changed().await.ok()?;
        }
    }

    /// The configuration in force.
    pub fn current(&self) -> Arc<FoundationConfig> {
        self.rx.borrow().clone()
    }
}

/// Whether `key` names `llm.providers` or `telemetry.slos`, or something in them: tables whose
/// entries are named by the user, so their keys are known only once one is configured (and may
/// come later).
fn in_named_table(key: &str) -> bool {
    ["llm.providers", "telemetry.slos"].iter().any(|table| matches(key, table) || matches(table, key))
}

fn matches(watched: &str, key: &str) -> bool {
    key == watched || key.strip_prefix(watched).is_some_and(|rest| rest.starts_with('.'))
}

fn watched_values(config: &FoundationConfig, watched: &[String]) -> BTreeMap<String, Value> {
    flatten(&to_table(config)).into_iter().filter(|(k, _)| watched.iter().any(|w| matches(w, k))).collect()
}

fn diff(before: &BTreeMap<String, Value>, after: &BTreeMap<String, Value>) -> Vec<String> {
    let mut keys: Vec<String> = before
        .iter()
        .filter(|(k, v)| after.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .chain(after.keys().filter(|k| !before.contains_key(*k)).cloned())
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

fn with_source(error: ConfigError, source: Source) -> ConfigError {
    match error {
        ConfigError::Invalid(mut issues) => {
            for issue in &mut issues {
                issue.source = source.clone();
            }
            ConfigError::Invalid(issues)
        }
        other => other,
    }
}

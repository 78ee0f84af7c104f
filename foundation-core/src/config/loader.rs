//! Merging configuration sources (files, environment, code) into one validated value.

use std::collections::BTreeMap;
use std::path::PathBuf;

use toml::{Table, Value};

use super::FoundationConfig;
use super::error::{ConfigError, ConfigIssue, IssueKind, Source};

/// Prefix of the environment variables that set configuration keys.
pub const ENV_PREFIX: &str = "FOUNDATION_";
/// Environment variable naming a config file (read by the `foundation` command); not a key.
pub const ENV_CONFIG_FILE: &str = "FOUNDATION_CONFIG";
/// Environment variable holding a log filter (read by the `foundation` command); not a key.
pub const ENV_LOG: &str = "FOUNDATION_LOG";
/// The cluster cookie for `foundation node --cookie` (not a key: `cluster.cookie` is
/// `FOUNDATION_CLUSTER__COOKIE`).
pub const ENV_COOKIE: &str = "FOUNDATION_COOKIE";

/// Which source set each leaf key.
pub(crate) type Provenance = BTreeMap<String, Source>;

/// Builds a [`FoundationConfig`] from TOML files, environment variables and code, in the
/// precedence order documented in [the module](super).
#[derive(Debug, Default, Clone)]
pub struct ConfigLoader {
    files: Vec<(FileSpec, Source)>,
    env: Vec<(String, String)>,
    code: Vec<(String, Value)>,
}

#[derive(Debug, Clone)]
enum FileSpec {
    Path { path: PathBuf, required: bool },
    Text(String),
}

impl ConfigLoader {
    /// A loader with no sources: `load()` gives the defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a TOML file that must exist.
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        self.files.push((FileSpec::Path { path: path.clone(), required: true }, Source::File(path)));
        self
    }

    /// Adds a TOML file that is skipped if it does not exist (any other read error is reported).
    pub fn optional_file(mut self, path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        self.files.push((FileSpec::Path { path: path.clone(), required: false }, Source::File(path)));
        self
    }

    /// Adds TOML text, at file precedence (errors name it as code).
    pub fn toml_str(mut self, text: impl Into<String>) -> Self {
        self.files.push((FileSpec::Text(text.into()), Source::Code));
        self
    }

    /// Adds the process environment's `FOUNDATION_*` variables.
    pub fn env(self) -> Self {
        self.env_vars(std::env::vars())
    }

    /// Adds `FOUNDATION_*` variables from the given pairs (other names are ignored); for tests
    /// and for embedders that keep their own environment.
    pub fn env_vars<K: Into<String>, V: Into<String>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        for (k, v) in vars {
            let k = k.into();
            if k.len() > ENV_PREFIX.len()
                && k.to_ascii_uppercase().starts_with(ENV_PREFIX)
                && !matches!(k.to_ascii_uppercase().as_str(), ENV_CONFIG_FILE | ENV_LOG | ENV_COOKIE)
            {
                self.env.push((k, v.into()));
            }
        }
        self
    }

    /// Sets one dotted key from code, with the highest precedence.
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.code.push((key.to_string(), value.into()));
        self
    }

    /// Merges the sources, deserializes and validates.
    pub fn load(&self) -> Result<FoundationConfig, ConfigError> {
        let mut table = Table::new();
        let mut provenance = Provenance::new();
        for (spec, source) in &self.files {
            let text = match spec {
                FileSpec::Text(t) => t.clone(),
                FileSpec::Path { path, required } => match std::fs::read_to_string(path) {
                    Ok(t) => t,
                    Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(source) => return Err(ConfigError::Io { path: path.clone(), source }),
                },
            };
            let mut parsed: Table = text.parse().map_err(|e: toml::de::Error| ConfigError::Malformed {
                origin: source.clone(),
                source: crate::Cause::from(e.to_string().trim_end()),
            })?;
            if let Some(Value::Boolean(on)) = parsed.get(CLUSTER_SHORTHAND.0) {
                let on = *on;
                parsed.insert(
                    CLUSTER_SHORTHAND.0.into(),
                    Value::Table(Table::from_iter([(CLUSTER_SHORTHAND.1.into(), on.into())])),
                );
            }
            merge(&mut table, parsed, "", source, &mut provenance);
        }
        for (var, raw) in &self.env {
            let key = var[ENV_PREFIX.len()..].to_ascii_lowercase().replace("__", ".");
            let (key, value) = shorthand(key, parse_scalar(raw));
            set_path(&mut table, &key, value);
            provenance.insert(key, Source::Env(var.clone()));
        }
        for (key, value) in &self.code {
            let (key, value) = shorthand(key.clone(), value.clone());
            set_path(&mut table, &key, value.clone());
            provenance.insert(key, Source::Code);
        }
        resolve(table, &provenance)
    }
}

/// `cluster = true` (file), `FOUNDATION_CLUSTER=true` (environment) or `set("cluster", true)`
/// is short for `cluster.gossip = true`: zero-config discovery.
const CLUSTER_SHORTHAND: (&str, &str) = ("cluster", "gossip");

fn shorthand(key: String, value: Value) -> (String, Value) {
    match value {
        Value::Boolean(_) if key == CLUSTER_SHORTHAND.0 => {
            (format!("{}.{}", CLUSTER_SHORTHAND.0, CLUSTER_SHORTHAND.1), value)
        }
        value => (key, value),
    }
}

/// Deserializes a merged table and validates it, naming the source of every bad key.
pub(crate) fn resolve(table: Table, provenance: &Provenance) -> Result<FoundationConfig, ConfigError> {
    let lookup = table.clone();
    let config: FoundationConfig = serde_path_to_error::deserialize(Value::Table(table)).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().message().to_string();
        ConfigError::Invalid(vec![serde_issue(&path, &message, &lookup, provenance)])
    })?;
    let mut issues = config.issues();
    for issue in &mut issues {
        issue.source = source_of(&issue.key, provenance);
    }
    if issues.is_empty() { Ok(config) } else { Err(ConfigError::Invalid(issues)) }
}

fn serde_issue(path: &str, message: &str, table: &Table, provenance: &Provenance) -> ConfigIssue {
    let path = if path == "." { "" } else { path };
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (field, expected) = rest.split_once('`').unwrap_or((rest, ""));
        // serde_path_to_error usually reports the unknown key as the last path segment already.
        let key = if path == field || path.ends_with(&format!(".{field}")) {
            path.to_string()
        } else {
            join(path, field)
        };
        let expected = expected.trim_start_matches(", expected ").trim();
        let expected = if expected.is_empty() { "no keys here".to_string() } else { expected.to_string() };
        return ConfigIssue {
            kind: IssueKind::UnknownKey,
            value: lookup(table, &key).map(render),
            source: source_of(&key, provenance),
            key,
            expected,
        };
    }
    let expected = match message.rsplit_once(", expected ") {
        Some((_, e)) if e.starts_with("struct ") => "a table of keys".to_string(),
        Some((_, e)) => e.to_string(),
        None => format!("a valid value ({message})"),
    };
    ConfigIssue {
        kind: IssueKind::WrongType,
        key: path.to_string(),
        value: lookup(table, path).map(render),
        expected,
        source: source_of(path, provenance),
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() { key.to_string() } else { format!("{prefix}.{key}") }
}

/// The source of `key`, or of the nearest source that set something below it (a whole table).
fn source_of(key: &str, provenance: &Provenance) -> Source {
    if let Some(s) = provenance.get(key) {
        return s.clone();
    }
    let below = format!("{key}.");
    provenance.iter().find(|(k, _)| k.starts_with(&below)).map_or(Source::Default, |(_, s)| s.clone())
}

fn lookup<'a>(table: &'a Table, key: &str) -> Option<&'a Value> {
    let mut parts = key.split('.');
    let mut current = table.get(parts.next()?)?;
    for part in parts {
        current = current.as_table()?.get(part)?;
    }
    Some(current)
}

fn render(value: &Value) -> String {
    match value {
        Value::Table(_) => "{ .. }".to_string(),
        other => other.to_string(),
    }
}

fn merge(into: &mut Table, from: Table, prefix: &str, source: &Source, provenance: &mut Provenance) {
    for (key, value) in from {
        let path = join(prefix, &key);
        match (into.get_mut(&key), value) {
            (Some(Value::Table(existing)), Value::Table(incoming)) => {
                merge(existing, incoming, &path, source, provenance);
            }
            (_, value) => {
                record(&path, &value, source, provenance);
                into.insert(key, value);
            }
        }
    }
}

fn record(path: &str, value: &Value, source: &Source, provenance: &mut Provenance) {
    match value {
        Value::Table(t) => {
            for (k, v) in t {
                record(&join(path, k), v, source, provenance);
            }
        }
        _ => {
            provenance.insert(path.to_string(), source.clone());
        }
    }
}

/// Sets a dotted key, creating tables on the way (a non-table in the way is replaced).
pub(crate) fn set_path(table: &mut Table, key: &str, value: Value) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().unwrap_or_default();
    let mut current = table;
    for part in parts {
        let entry = current.entry(part.to_string()).or_insert_with(|| Value::Table(Table::new()));
        if !entry.is_table() {
            *entry = Value::Table(Table::new());
        }
        current = match entry {
            Value::Table(t) => t,
            _ => unreachable!("replaced by a table just above"),
        };
    }
    current.insert(last.to_string(), value);
}

/// Reads an environment value as a TOML value (`30`, `true`, `[1, 2]`, `"quoted"`), else a string.
fn parse_scalar(raw: &str) -> Value {
    match format!("v = {raw}").parse::<Table>() {
        Ok(mut t) if t.len() == 1 => t.remove("v").unwrap_or_else(|| Value::String(raw.to_string())),
        _ => Value::String(raw.to_string()),
    }
}

/// Serializes a configuration to a TOML table.
pub(crate) fn to_table(config: &FoundationConfig) -> Table {
    // Serializing plain structs of strings, numbers and lists into a table cannot fail; an
    // empty table (all defaults) would be the harmless fallback.
    Table::try_from(config).unwrap_or_default()
}

/// Flattens a table to its dotted leaf keys (lists are leaves).
pub(crate) fn flatten(table: &Table) -> BTreeMap<String, Value> {
    fn walk(t: &Table, prefix: &str, out: &mut BTreeMap<String, Value>) {
        for (k, v) in t {
            let path = join(prefix, k);
            match v {
                Value::Table(inner) => walk(inner, &path, out),
                leaf => {
                    out.insert(path, leaf.clone());
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(table, "", &mut out);
    out
}

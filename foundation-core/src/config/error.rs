//! Configuration errors: each names the key, the bad value, what was expected and where the value
//! came from.

use std::fmt;
use std::path::PathBuf;

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The built-in default (the named constants documented on each field).
    Default,
    /// A TOML file.
    File(PathBuf),
    /// An environment variable (its full name, e.g. `FOUNDATION_TELEMETRY__WINDOW`).
    Env(String),
    /// Set in code, through `ConfigLoader::set` or a runtime update.
    Code,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Env(var) => write!(f, "environment variable {var}"),
            Source::Code => f.write_str("code"),
        }
    }
}

/// What kind of problem a [`ConfigIssue`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueKind {
    /// A key that no configuration section has (often a misspelling).
    UnknownKey,
    /// A value of the wrong type or shape (a string where a number belongs, a bad address).
    WrongType,
    /// A value of the right type outside its allowed range, or inconsistent with another key.
    OutOfRange,
}

/// One problem with one configuration key.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigIssue {
    /// What kind of problem this is.
    pub kind: IssueKind,
    /// The dotted key, e.g. `telemetry.window`.
    pub key: String,
    /// The offending value as written in TOML syntax, when there is one.
    pub value: Option<String>,
    /// What was expected instead, in words.
    pub expected: String,
    /// Where the value came from.
    pub source: Source,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            IssueKind::UnknownKey => "unknown key",
            IssueKind::WrongType => "wrong type",
            IssueKind::OutOfRange => "out of range",
        };
        write!(f, "`{}`", self.key)?;
        if let Some(value) = &self.value {
            write!(f, " = {value}")?;
        }
        write!(f, " ({}): {what}: expected {}", self.source, self.expected)
    }
}

/// Everything that can go wrong while loading or changing configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A config file (or an inline TOML text) is not valid TOML.
    #[error("malformed TOML in {origin}: {source}")]
    Malformed {
        /// Where the text came from.
        origin: Source,
        /// Why: the parser's message (line, column and the offending line). Kept as its message
        /// only: the parser's error holds the whole file, secrets included, and would print it
        /// with `{:?}`.
        #[source]
        source: crate::Cause,
    },
    /// The configuration parsed but one or more keys are wrong.
    #[error("invalid configuration:{}", list(.0))]
    Invalid(Vec<ConfigIssue>),
}

impl ConfigError {
    /// The individual problems, when this is [`ConfigError::Invalid`].
    pub fn issues(&self) -> &[ConfigIssue] {
        match self {
            ConfigError::Invalid(issues) => issues,
            _ => &[],
        }
    }
}

fn list(issues: &[ConfigIssue]) -> String {
    issues.iter().map(|i| format!("\n  - {i}")).collect()
}

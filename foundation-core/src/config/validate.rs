//! Range and consistency checks that run after a configuration has been deserialized.

use std::fmt::Display;

use super::error::{ConfigIssue, IssueKind, Source};

/// Collects every out-of-range value of a configuration, so that one error lists all problems.
#[derive(Debug, Default)]
pub struct Validator {
    issues: Vec<ConfigIssue>,
}

impl Validator {
    /// Records an issue for `key` unless `ok`.
    pub fn check(&mut self, key: &str, value: impl Display, ok: bool, expected: &str) {
        if !ok {
            self.issues.push(ConfigIssue {
                kind: IssueKind::OutOfRange,
                key: key.to_string(),
                value: Some(value.to_string()),
                expected: expected.to_string(),
                source: Source::Default,
            });
        }
    }

    /// The issues found; empty when the configuration is valid.
    pub fn into_issues(self) -> Vec<ConfigIssue> {
        self.issues
    }
}

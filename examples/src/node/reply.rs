//! What a node prints: every outcome is a typed reply, printed as one line of text for people
//! or, with `foundation node --json`, as one JSON object per line whose `"event"` field names
//! it (what programs and the multi-process tests read). Each feature module declares its own
//! replies; this module prints them and holds the two that every feature shares: `error`
//! (a command that could not be parsed or whose feature does not run here) and `help`.
//!
//! A closed standard output is ignored: a launcher that went away must not make the node panic
//! on its way out.

use std::fmt;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

/// Whether replies are printed as JSON lines (one node per process: set once at start).
static JSON: AtomicBool = AtomicBool::new(false);

/// Prints replies as JSON lines from now on.
pub fn print_json() {
    JSON.store(true, Ordering::Relaxed);
}

/// Prints a reply: its text, or its JSON with `--json`.
pub fn emit<R: Serialize + fmt::Display>(reply: &R) {
    let line = match JSON.load(Ordering::Relaxed) {
        true => serde_json::to_string(reply).unwrap_or_else(|e| {
            serde_json::json!({"event": "error", "command": "", "error": format!("unprintable reply: {e}")})
                .to_string()
        }),
        false => reply.to_string(),
    };
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// Prints an `error` reply: `command` (the line, or the command word) was not carried out.
pub fn refuse(command: &str, error: impl fmt::Display) {
    emit(&Refused { command: command.to_string(), error: error.to_string() });
}

/// A command that was not carried out, and why.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename = "error")]
pub struct Refused {
    /// The line (if it could not be parsed) or the command word.
    pub command: String,
    /// What is wrong, with what to do about it.
    pub error: String,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.command, self.error)
    }
}

/// One command a node takes on standard input, as `help` lists it.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Usage {
    /// The command word.
    pub command: &'static str,
    /// The command with its arguments.
    pub usage: &'static str,
    /// What it does and prints.
    pub what: &'static str,
    /// The `foundation node` option that runs the feature it needs, if any.
    pub needs: Option<&'static str>,
}

impl Usage {
    /// Parses a command of `table` that takes no arguments: `None` if `op` is not one of them,
    /// a usage error if it was given words.
    pub fn bare(table: &[Usage], op: &str, args: &[&str]) -> Option<Result<(), String>> {
        let usage = table.iter().find(|u| u.command == op && u.usage == op)?;
        Some(match args {
            [] => Ok(()),
            _ => Err(Usage::error(table, op, &format!("`{}` takes no arguments", usage.command))),
        })
    }

    /// A usage error for `command` (one of `table`): what is wrong, then how to write it.
    pub fn error(table: &[Usage], command: &str, wrong: &str) -> String {
        match table.iter().find(|u| u.command == command) {
            Some(usage) => format!("{wrong}; usage: `{}`", usage.usage),
            None => wrong.to_string(),
        }
    }
}

/// The `help` reply: every command this node takes.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename = "help")]
pub struct Help {
    /// The commands, grouped by feature.
    pub commands: Vec<Usage>,
}

impl fmt::Display for Help {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "commands (one per line on standard input):")?;
        let width = self.commands.iter().map(|u| u.usage.len()).max().unwrap_or(0);
        for (i, usage) in self.commands.iter().enumerate() {
            let needs = usage.needs.map_or(String::new(), |n| format!(" [{n}]"));
            write!(f, "  {:width$}  {}{needs}", usage.usage, usage.what)?;
            if i + 1 < self.commands.len() {
                writeln!(f)?;
            }
        }
        Ok(())
    }
}

/// A reply's fields as one JSON object without its `event` (the text form of replies that
/// carry a report: `llm load done {...}`).
pub fn fields_json<R: Serialize>(reply: &R) -> serde_json::Value {
    let mut fields = serde_json::to_value(reply).unwrap_or_default();
    if let Some(fields) = fields.as_object_mut() {
        fields.remove("event");
    }
    fields
}

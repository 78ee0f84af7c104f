//! `foundation node --crdt` and the `crdt-*` commands: replicated CRDT state (the default
//! replicator), counters (`crdt-inc`, a `PnCounter`) and sets of text (`crdt-add`,
//! `crdt-remove`, an `OrSet`), with local or majority consistency.

use std::fmt;

use foundation_cluster::crdt_state::{
    CrdtKind, CrdtValue, Key, ReadConsistency, Replicator, WriteConsistency,
};
use foundation_core::crdt::{OrSet, PnCounter};
use serde::Serialize;

use super::reply::{Usage, emit};

const NEEDS: Option<&str> = Some("--crdt");

/// The commands of this module.
pub const COMMANDS: &[Usage] = &[
    Usage {
        command: "crdt-inc",
        usage: "crdt-inc KEY N [majority]",
        what: "add N (may be negative) to the counter KEY",
        needs: NEEDS,
    },
    Usage {
        command: "crdt-add",
        usage: "crdt-add KEY ELEM [majority]",
        what: "add ELEM to the set KEY",
        needs: NEEDS,
    },
    Usage {
        command: "crdt-remove",
        usage: "crdt-remove KEY ELEM [majority]",
        what: "remove ELEM from the set KEY",
        needs: NEEDS,
    },
    Usage {
        command: "crdt-get",
        usage: "crdt-get KEY [majority]",
        what: "read KEY (from this node, or from a majority)",
        needs: NEEDS,
    },
];

/// A command on replicated CRDT state.
#[derive(Debug, PartialEq)]
pub struct Command {
    key: String,
    op: Op,
    majority: bool,
}

#[derive(Debug, PartialEq)]
enum Op {
    Inc(i64),
    Add(String),
    Remove(String),
    Get,
}

impl Command {
    /// Parses `op` and the words after it; `None` if `op` is not a command of this module.
    pub fn parse(op: &str, args: &[&str]) -> Option<Result<Command, String>> {
        if !COMMANDS.iter().any(|u| u.command == op) {
            return None;
        }
        let bad = |wrong: &str| Some(Err(Usage::error(COMMANDS, op, wrong)));
        // The key first (a key may be called `majority`), then an optional `majority` last.
        let Some((key, rest)) = args.split_first() else {
            return bad(&format!("`{op}` needs a key"));
        };
        let (majority, rest) = match rest {
            [rest @ .., "majority"] => (true, rest),
            _ => (false, rest),
        };
        let op = match (op, rest) {
            ("crdt-inc", [n]) => match n.parse() {
                Ok(n) => Op::Inc(n),
                Err(_) => return bad(&format!("`crdt-inc` needs a whole number, not `{n}`")),
            },
            ("crdt-add", [elem]) => Op::Add(elem.to_string()),
            ("crdt-remove", [elem]) => Op::Remove(elem.to_string()),
            ("crdt-get", []) => Op::Get,
            _ => return bad(&format!("wrong arguments for `{op}`")),
        };
        Some(Ok(Command { key: key.to_string(), op, majority }))
    }
}

/// A value as the replies show it: a counter, a set, or nothing yet.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Value {
    /// A `PnCounter`'s value.
    Counter(i64),
    /// An `OrSet`'s elements.
    Set(Vec<String>),
    /// Another kind of value, as debug text.
    Other(String),
}

impl Value {
    fn of(value: CrdtValue) -> Value {
        match value {
            CrdtValue::PnCounter(c) => Value::Counter(c.value()),
            CrdtValue::OrSet(s) => Value::Set(s.iter().cloned().collect()),
            other => Value::Other(format!("{other:?}")),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Counter(n) => write!(f, "counter {n}"),
            Value::Set(elements) => write!(f, "set [{}]", elements.join(",")),
            Value::Other(text) => write!(f, "{text}"),
        }
    }
}

/// What a CRDT command printed.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[expect(clippy::enum_variant_names, reason = "a variant's name is its event's name, unique across features")]
pub enum Reply {
    /// A read: KEY's value (`null` if it has none).
    CrdtValue { key: String, value: Option<Value> },
    /// A write was applied (here, or on a majority); KEY's value after it.
    CrdtUpdated { key: String, value: Value },
    /// The read or write failed (a majority write may still stay applied here).
    CrdtFailed { key: String, error: String },
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::CrdtValue { key, value: Some(value) } => write!(f, "crdt {key} = {value}"),
            Reply::CrdtValue { key, value: None } => write!(f, "crdt {key} = none"),
            Reply::CrdtUpdated { key, value } => write!(f, "crdt {key} updated: {value}"),
            Reply::CrdtFailed { key, error } => write!(f, "crdt {key} failed: {error}"),
        }
    }
}

/// Runs a CRDT command in the background and prints its outcome.
pub fn run(replicator: &Replicator, command: Command) {
    let replicator = replicator.clone();
    tokio::spawn(async move { emit(&execute(&replicator, command).await) });
}

async fn execute(replicator: &Replicator, Command { key, op, majority }: Command) -> Reply {
    let (read, write) = match majority {
        true => (ReadConsistency::majority(), WriteConsistency::majority()),
        false => (ReadConsistency::Local, WriteConsistency::Local),
    };
    let (counter, set) = (Key::<PnCounter>::new(key.as_str()), Key::<OrSet<String>>::new(key.as_str()));
    let written = match op {
        Op::Get => {
            let got = match replicator.value(&key).map(|v| v.kind()) {
                Some(CrdtKind::OrSet) => replicator.get(&set, read).await.map(|v| v.map(CrdtValue::OrSet)),
                _ => replicator.get(&counter, read).await.map(|v| v.map(CrdtValue::PnCounter)),
            };
            return match got {
                Ok(value) => Reply::CrdtValue { key, value: value.map(Value::of) },
                Err(e) => Reply::CrdtFailed { key, error: e.to_string() },
            };
        }
        Op::Inc(n) => {
            replicator.update(&counter, write, |c, me| c.add(me, n)).await.map(CrdtValue::PnCounter)
        }
        Op::Add(elem) => replicator.update(&set, write, |s, me| s.add(me, elem)).await.map(CrdtValue::OrSet),
        Op::Remove(elem) => replicator
            .update(&set, write, |s, _| {
                s.remove(&elem);
            })
            .await
            .map(CrdtValue::OrSet),
    };
    match written {
        Ok(value) => Reply::CrdtUpdated { key, value: Value::of(value) },
        Err(e) => Reply::CrdtFailed { key, error: e.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Option<Result<Command, String>> {
        let words: Vec<&str> = line.split_whitespace().collect();
        Command::parse(words[0], &words[1..])
    }

    #[test]
    fn commands_parse_and_bad_ones_say_what_is_wrong() {
        assert_eq!(
            parse("crdt-inc hits -3 majority"),
            Some(Ok(Command { key: "hits".into(), op: Op::Inc(-3), majority: true }))
        );
        assert_eq!(
            parse("crdt-remove tags red"),
            Some(Ok(Command { key: "tags".into(), op: Op::Remove("red".into()), majority: false }))
        );
        let error = parse("crdt-inc hits lots").unwrap().unwrap_err();
        assert!(
            error.contains("whole number") && error.contains("usage: `crdt-inc KEY N [majority]`"),
            "{error}"
        );
        assert!(parse("crdt-get hits extra").unwrap().unwrap_err().contains("usage"));
        assert_eq!(
            parse("crdt-get majority"),
            Some(Ok(Command { key: "majority".into(), op: Op::Get, majority: false }))
        );
        assert_eq!(
            parse("crdt-get majority majority"),
            Some(Ok(Command { key: "majority".into(), op: Op::Get, majority: true }))
        );
        assert!(parse("crdt-add").unwrap().unwrap_err().contains("needs a key"));
        assert_eq!(parse("broadcast t x"), None);
    }
}

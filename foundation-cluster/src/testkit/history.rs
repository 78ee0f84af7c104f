//! Histories of what clients saw, and the checker that reads them (the way Jepsen checks a
//! database): every event is stamped from one clock (all processes run on one machine) and the
//! checker looks for what the cluster's guarantees forbid.
//!
//! A history is JSON lines, one [`Event`] each. [`check`] reports every [`Anomaly`]:
//! - **two lock holders acting at once**: acts under a lock by different holders (token) whose
//!   `[at, lease_until]` windows overlap (a holder's window ends early where it released the
//!   lock; a singleton copy's where it stopped; a leader's where it resigned);
//! - **a token that does not increase**: an acquisition later than another of the same lock
//!   with a token no larger;
//! - **a stale fenced write accepted**: a register accepted a token below one it had accepted;
//! - **a term that does not increase**: a leader of an election later than another with a term
//!   no larger;
//! - **two leaders at once**: leaders of one election in different terms whose `[at,
//!   lease_until]` windows overlap (`leader` when a term is first seen, `leader_act` while it
//!   lasts);
//! - **two singleton copies acting at once**: acts of different copies whose windows overlap
//!   (on either side of a partition: the clock is one);
//! - **an acknowledged majority CRDT write lost**: a final read below the sum of the acknowledged
//!   majority increments (counters only grow here; a local write may die with its node), or
//!   above what was ever attempted (invoked: a node killed between its write and its record
//!   leaves only the `crdt_invoke` written before the write);
//! - **counters that do not converge**: final reads of one key that differ;
//! - **a node that failed by itself**: it exited without being killed, did not start, did not
//!   answer at the end, or could not write its history.
//!
//! Its [`Report`] prints the operations by kind and outcome and ends with `anomalies: N`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

/// One thing a client saw, at `at` (Unix ms, one clock for every process).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[allow(missing_docs, reason = "each variant's doc says what its fields are; `at` is Unix ms")]
pub enum Event {
    /// `node` acquired `lock` with fencing `token`; its lease runs until `lease_until`.
    LockAcquired { at: u64, node: String, lock: String, token: u64, lease_until: u64 },
    /// `node` acted under `lock` with `token`, its lease valid until `lease_until`.
    LockAct { at: u64, node: String, lock: String, token: u64, lease_until: u64 },
    /// `node` gave `lock` (held with `token`) back: it acts under it no more from `at`.
    LockReleased { at: u64, node: String, lock: String, token: u64 },
    /// A fenced register took (`accepted`) or refused a write with `token`.
    FencedWrite { at: u64, node: String, register: String, token: u64, accepted: bool },
    /// `node` led `election` in `term` (first seen here at `at`), its lease valid until
    /// `lease_until`.
    Leader { at: u64, node: String, election: String, term: u64, lease_until: u64 },
    /// `node` still led `election` in `term` at `at`, its lease valid until `lease_until`
    /// (recorded every few tens of milliseconds while it leads).
    LeaderAct { at: u64, node: String, election: String, term: u64, lease_until: u64 },
    /// `node` withdrew from `election`, which it led in `term`: it leads no more from `at`.
    Resigned { at: u64, node: String, election: String, term: u64 },
    /// A copy of `singleton` acted, its lease valid until `lease_until`.
    SingletonAct { at: u64, node: String, singleton: String, copy: String, lease_until: u64 },
    /// A copy of `singleton` stopped: it acts no more from `at`.
    SingletonStop { at: u64, node: String, singleton: String, copy: String },
    /// `node` is about to increment counter `key` by `amount` (written before the write, so that
    /// a write whose node is killed before it records the outcome still bounds the total).
    CrdtInvoke { at: u64, node: String, key: String, amount: u64 },
    /// An increment of counter `key` by `amount`, acknowledged (`acked`) or not, with
    /// `majority` or local consistency.
    CrdtIncrement { at: u64, node: String, key: String, amount: u64, majority: bool, acked: bool },
    /// A final read of counter `key` after the last heal.
    CrdtFinal { at: u64, node: String, key: String, value: i64 },
    /// A fault the nemesis injected (`kind`: kill, stop, partition, heal, ...).
    Fault { at: u64, kind: String, detail: String },
    /// `node` failed by itself: it exited without being killed, did not start again, did not
    /// answer at the end, or could not write its history (`detail` says which).
    NodeFailed { at: u64, node: String, detail: String },
}

impl Event {
    fn kind(&self) -> &'static str {
        match self {
            Event::LockAcquired { .. } => "lock_acquired",
            Event::LockAct { .. } => "lock_act",
            Event::LockReleased { .. } => "lock_released",
            Event::Resigned { .. } => "resigned",
            Event::LeaderAct { .. } => "leader_act",
            Event::NodeFailed { .. } => "node_failed",
            Event::SingletonStop { .. } => "singleton_stop",
            Event::FencedWrite { accepted: true, .. } => "fenced_write accepted",
            Event::FencedWrite { accepted: false, .. } => "fenced_write refused",
            Event::Leader { .. } => "leader",
            Event::SingletonAct { .. } => "singleton_act",
            Event::CrdtInvoke { .. } => "crdt_invoke",
            Event::CrdtIncrement { acked: true, .. } => "crdt_increment acked",
            Event::CrdtIncrement { acked: false, .. } => "crdt_increment unacked",
            Event::CrdtFinal { .. } => "crdt_final",
            Event::Fault { .. } => "fault",
        }
    }
}

/// What the guarantees forbid, found in a history.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs, reason = "each variant's doc says what its fields are")]
pub enum Anomaly {
    /// Two holders of `lock` acted under unexpired leases at once.
    TwoLockHolders { lock: String, first: (String, u64), second: (String, u64), at: u64 },
    /// An acquisition of `lock` at `at` got `token`, no larger than `earlier` got before.
    TokenNotIncreasing { lock: String, earlier: u64, token: u64, at: u64 },
    /// `register` accepted `token` after having accepted `newest`.
    StaleWriteAccepted { register: String, newest: u64, token: u64, at: u64 },
    /// A leader of `election` at `at` had `term`, no larger than `earlier`.
    TermNotIncreasing { election: String, earlier: u64, term: u64, at: u64 },
    /// Two leaders of `election` (node, term) led under valid leases at once.
    TwoLeaders { election: String, first: (String, u64), second: (String, u64), at: u64 },
    /// Two copies of `singleton` acted at once.
    TwoSingletons { singleton: String, first: String, second: String, at: u64 },
    /// Counter `key` read `value` after the heal, outside what was acknowledged and attempted.
    LostWrite { key: String, value: i64, acked: u64, attempted: u64, node: String },
    /// Final reads of counter `key` differ.
    NotConverged { key: String, values: Vec<(String, i64)> },
    /// A node failed by itself (see [`Event::NodeFailed`]).
    NodeFailed { node: String, at: u64, detail: String },
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Anomaly::TwoLockHolders { lock, first, second, at } => write!(
                f,
                "lock {lock}: {} (token {}) and {} (token {}) both acted under valid leases at {at}",
                first.0, first.1, second.0, second.1
            ),
            Anomaly::TokenNotIncreasing { lock, earlier, token, at } => {
                write!(f, "lock {lock}: token {token} at {at} is not above the earlier {earlier}")
            }
            Anomaly::StaleWriteAccepted { register, newest, token, at } => {
                write!(f, "register {register}: accepted token {token} at {at} after {newest}")
            }
            Anomaly::TermNotIncreasing { election, earlier, term, at } => {
                write!(f, "election {election}: term {term} at {at} is not above the earlier {earlier}")
            }
            Anomaly::TwoLeaders { election, first, second, at } => write!(
                f,
                "election {election}: {} (term {}) and {} (term {}) both led under valid leases at {at}",
                first.0, first.1, second.0, second.1
            ),
            Anomaly::TwoSingletons { singleton, first, second, at } => {
                write!(f, "singleton {singleton}: copies {first} and {second} both acted at {at}")
            }
            Anomaly::LostWrite { key, value, acked, attempted, node } => write!(
                f,
                "counter {key}: {node} read {value} after the heal; acknowledged {acked}, attempted {attempted}"
            ),
            Anomaly::NodeFailed { node, at, detail } => write!(f, "node {node} failed at {at}: {detail}"),
            Anomaly::NotConverged { key, values } => {
                let values: Vec<String> = values.iter().map(|(n, v)| format!("{n}={v}")).collect();
                write!(f, "counter {key}: final reads differ: {}", values.join(", "))
            }
        }
    }
}

/// What [`check`] found: the anomalies and the operations by kind and outcome.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The seed of the schedule that made the history, if one did (printed first).
    pub seed: Option<u64>,
    /// Every anomaly, in the order found.
    pub anomalies: Vec<Anomaly>,
    /// Events by kind (and outcome).
    pub counts: BTreeMap<&'static str, usize>,
    /// Faults injected, by kind.
    pub faults: BTreeMap<String, usize>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(seed) = self.seed {
            writeln!(f, "seed: {seed}")?;
        }
        let faults: Vec<String> = self.faults.iter().map(|(k, n)| format!("{k} {n}")).collect();
        writeln!(f, "faults: {}", if faults.is_empty() { "none".to_string() } else { faults.join(", ") })?;
        let ops: Vec<String> = self.counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
        writeln!(f, "operations: {}", ops.join(", "))?;
        for anomaly in &self.anomalies {
            writeln!(f, "anomaly: {anomaly}")?;
        }
        write!(f, "anomalies: {}", self.anomalies.len())
    }
}

/// Reads a history of JSON lines; the error names the line that does not parse.
pub fn parse(text: &str) -> Result<Vec<Event>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| serde_json::from_str(line).map_err(|e| format!("history line {}: {e}", i + 1)))
        .collect()
}

/// Checks a history (in any order: it is sorted by time first).
pub fn check(history: &[Event]) -> Report {
    let mut events: Vec<&Event> = history.iter().collect();
    events.sort_by_key(|e| at(e));
    let mut report = Report::default();
    for event in &events {
        *report.counts.entry(event.kind()).or_default() += 1;
        if let Event::Fault { kind, .. } = event {
            *report.faults.entry(kind.clone()).or_default() += 1;
        }
    }
    check_locks(&events, &mut report.anomalies);
    check_registers(&events, &mut report.anomalies);
    check_elections(&events, &mut report.anomalies);
    check_singletons(&events, &mut report.anomalies);
    check_counters(&events, &mut report.anomalies);
    for event in &events {
        if let Event::NodeFailed { at, node, detail } = event {
            report.anomalies.push(Anomaly::NodeFailed {
                node: node.clone(),
                at: *at,
                detail: detail.clone(),
            });
        }
    }
    report
}

fn at(event: &Event) -> u64 {
    match event {
        Event::LockAcquired { at, .. }
        | Event::LockAct { at, .. }
        | Event::LockReleased { at, .. }
        | Event::Resigned { at, .. }
        | Event::LeaderAct { at, .. }
        | Event::NodeFailed { at, .. }
        | Event::SingletonStop { at, .. }
        | Event::FencedWrite { at, .. }
        | Event::Leader { at, .. }
        | Event::SingletonAct { at, .. }
        | Event::CrdtInvoke { at, .. }
        | Event::CrdtIncrement { at, .. }
        | Event::CrdtFinal { at, .. }
        | Event::Fault { at, .. } => *at,
    }
}

/// Acts that overlap in time by different holders: `acts` are (holder, at, until), sorted by
/// `at`; a holder's windows end at its entry in `ends` (a release, a stop), if earlier. Returns
/// the first pair found for each later act.
fn overlapping<'a>(
    acts: &[(&'a str, u64, u64)],
    ends: &BTreeMap<String, u64>,
) -> Vec<(&'a str, &'a str, u64)> {
    let mut found = Vec::new();
    // The latest window of each holder seen so far.
    let mut open: BTreeMap<&str, u64> = BTreeMap::new();
    for (holder, at, until) in acts {
        // An end (a release, a stop) is stamped before the next holder can begin, but both in
        // whole milliseconds: an act in the same millisecond as an end is not an overlap.
        let until = &ends.get(*holder).map_or(*until, |end| end.saturating_sub(1).min(*until));
        if let Some((other, _)) =
            open.iter().find(|(other, other_until)| *other != holder && **other_until >= *at)
        {
            found.push((*other, *holder, *at));
        }
        let entry = open.entry(holder).or_insert(*until);
        *entry = (*entry).max(*until);
    }
    found
}

fn check_locks(events: &[&Event], anomalies: &mut Vec<Anomaly>) {
    let mut tokens: BTreeMap<&str, u64> = BTreeMap::new();
    let mut acts: BTreeMap<&str, Vec<(String, u64, u64)>> = BTreeMap::new();
    let mut ends: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
    for event in events {
        match event {
            Event::LockAcquired { at, lock, token, .. } => {
                if let Some(earlier) = tokens.get(lock.as_str())
                    && token <= earlier
                {
                    anomalies.push(Anomaly::TokenNotIncreasing {
                        lock: lock.clone(),
                        earlier: *earlier,
                        token: *token,
                        at: *at,
                    });
                }
                let newest = tokens.entry(lock).or_insert(*token);
                *newest = (*newest).max(*token);
            }
            Event::LockAct { at, node, lock, token, lease_until } => {
                acts.entry(lock).or_default().push((format!("{node}#{token}"), *at, *lease_until));
            }
            Event::LockReleased { at, node, lock, token } => {
                ends.entry(lock).or_default().insert(format!("{node}#{token}"), *at);
            }
            _ => {}
        }
    }
    for (lock, acts) in acts {
        let acts: Vec<(&str, u64, u64)> = acts.iter().map(|(h, a, u)| (h.as_str(), *a, *u)).collect();
        for (first, second, at) in overlapping(&acts, ends.get(lock).unwrap_or(&BTreeMap::new())) {
            anomalies.push(Anomaly::TwoLockHolders {
                lock: lock.to_string(),
                first: holder(first),
                second: holder(second),
                at,
            });
        }
    }
}

fn check_registers(events: &[&Event], anomalies: &mut Vec<Anomaly>) {
    let mut newest: BTreeMap<&str, u64> = BTreeMap::new();
    // Writes stamped in the same millisecond are taken in token order (the order a correct
    // register accepts them in): a tie is not a stale write.
    let mut writes: Vec<&&Event> = events.iter().filter(|e| matches!(e, Event::FencedWrite { .. })).collect();
    writes.sort_by_key(|e| match e {
        Event::FencedWrite { at, token, .. } => (*at, *token),
        _ => (0, 0),
    });
    for event in writes {
        if let Event::FencedWrite { at, register, token, accepted: true, .. } = event {
            if let Some(seen) = newest.get(register.as_str())
                && token < seen
            {
                anomalies.push(Anomaly::StaleWriteAccepted {
                    register: register.clone(),
                    newest: *seen,
                    token: *token,
                    at: *at,
                });
            }
            let entry = newest.entry(register).or_insert(*token);
            *entry = (*entry).max(*token);
        }
    }
}

fn check_elections(events: &[&Event], anomalies: &mut Vec<Anomaly>) {
    let mut terms: BTreeMap<&str, u64> = BTreeMap::new();
    let mut windows: BTreeMap<&str, Vec<(String, u64, u64)>> = BTreeMap::new();
    let mut ends: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
    for event in events {
        if let Event::Resigned { at, node, election, term } = event {
            ends.entry(election).or_default().insert(format!("{node}#{term}"), *at);
        }
        if let Event::Leader { at, node, election, term, lease_until }
        | Event::LeaderAct { at, node, election, term, lease_until } = event
        {
            windows.entry(election).or_default().push((format!("{node}#{term}"), *at, *lease_until));
        }
        if let Event::Leader { at, election, term, .. } = event {
            if let Some(earlier) = terms.get(election.as_str())
                && term <= earlier
            {
                anomalies.push(Anomaly::TermNotIncreasing {
                    election: election.clone(),
                    earlier: *earlier,
                    term: *term,
                    at: *at,
                });
            }
            let entry = terms.entry(election).or_insert(*term);
            *entry = (*entry).max(*term);
        }
    }
    for (election, windows) in windows {
        let windows: Vec<(&str, u64, u64)> = windows.iter().map(|(h, a, u)| (h.as_str(), *a, *u)).collect();
        for (first, second, at) in overlapping(&windows, ends.get(election).unwrap_or(&BTreeMap::new())) {
            anomalies.push(Anomaly::TwoLeaders {
                election: election.to_string(),
                first: holder(first),
                second: holder(second),
                at,
            });
        }
    }
}

/// `node#token` back into its parts.
fn holder(h: &str) -> (String, u64) {
    let (node, token) = h.rsplit_once('#').unwrap_or((h, "0"));
    (node.to_string(), token.parse().unwrap_or(0))
}

fn check_singletons(events: &[&Event], anomalies: &mut Vec<Anomaly>) {
    let mut acts: BTreeMap<&str, Vec<(&str, u64, u64)>> = BTreeMap::new();
    let mut ends: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
    for event in events {
        match event {
            Event::SingletonAct { at, singleton, copy, lease_until, .. } => {
                acts.entry(singleton).or_default().push((copy, *at, *lease_until));
            }
            Event::SingletonStop { at, singleton, copy, .. } => {
                ends.entry(singleton).or_default().insert(copy.clone(), *at);
            }
            _ => {}
        }
    }
    for (singleton, acts) in acts {
        for (first, second, at) in overlapping(&acts, ends.get(singleton).unwrap_or(&BTreeMap::new())) {
            anomalies.push(Anomaly::TwoSingletons {
                singleton: singleton.to_string(),
                first: first.to_string(),
                second: second.to_string(),
                at,
            });
        }
    }
}

fn check_counters(events: &[&Event], anomalies: &mut Vec<Anomaly>) {
    let mut acked: BTreeMap<&str, u64> = BTreeMap::new();
    // Per (key, node): what its outcomes recorded, and what it invoked (a node killed between
    // its write and its record leaves only the invocation written before the write).
    let mut recorded: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    let mut invoked: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    let mut finals: BTreeMap<&str, Vec<(String, i64)>> = BTreeMap::new();
    for event in events {
        match event {
            Event::CrdtIncrement { node, key, amount, acked: was_acked, majority, .. } => {
                *recorded.entry((key, node)).or_default() += amount;
                // Only a majority write acknowledged must survive: a local one may go down with
                // its node (kill -9 before gossip), which is its documented cost.
                if *was_acked && *majority {
                    *acked.entry(key).or_default() += amount;
                }
            }
            Event::CrdtInvoke { node, key, amount, .. } => *invoked.entry((key, node)).or_default() += amount,
            Event::CrdtFinal { node, key, value, .. } => {
                finals.entry(key).or_default().push((node.clone(), *value));
            }
            _ => {}
        }
    }
    for (key, values) in finals {
        // Every write that may have been applied.
        let high: u64 = recorded
            .keys()
            .chain(invoked.keys())
            .filter(|(k, _)| *k == key)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|writer| {
                recorded.get(writer).copied().unwrap_or(0).max(invoked.get(writer).copied().unwrap_or(0))
            })
            .sum();
        let low = acked.get(key).copied().unwrap_or(0);
        for (node, value) in &values {
            if *value < low as i64 || *value > high as i64 {
                anomalies.push(Anomaly::LostWrite {
                    key: key.to_string(),
                    value: *value,
                    acked: low,
                    attempted: high,
                    node: node.clone(),
                });
            }
        }
        let distinct: BTreeSet<i64> = values.iter().map(|(_, v)| *v).collect();
        if distinct.len() > 1 {
            anomalies.push(Anomaly::NotConverged { key: key.to_string(), values });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<Event> {
        parse(text).unwrap()
    }

    #[test]
    fn a_clean_history_has_no_anomaly_and_says_so() {
        let history = lines(concat!(
            r#"{"event":"fault","at":5,"kind":"partition","detail":"n1 | n2,n3"}"#,
            "\n",
            r#"{"event":"lock_acquired","at":10,"node":"n1","lock":"L","token":100,"lease_until":1000}"#,
            "\n",
            r#"{"event":"lock_act","at":20,"node":"n1","lock":"L","token":100,"lease_until":1000}"#,
            "\n",
            r#"{"event":"lock_released","at":30,"node":"n1","lock":"L","token":100}"#,
            "\n",
            // The next holder acts in the very millisecond of the release: a handover, not two.
            r#"{"event":"lock_acquired","at":30,"node":"n3","lock":"L","token":101,"lease_until":1000}"#,
            "\n",
            r#"{"event":"lock_act","at":30,"node":"n3","lock":"L","token":101,"lease_until":1000}"#,
            "\n",
            r#"{"event":"lock_acquired","at":1500,"node":"n2","lock":"L","token":102,"lease_until":2500}"#,
            "\n",
            r#"{"event":"lock_act","at":1600,"node":"n2","lock":"L","token":102,"lease_until":2500}"#,
            "\n",
            r#"{"event":"fenced_write","at":30,"node":"n1","register":"R","token":100,"accepted":true}"#,
            "\n",
            r#"{"event":"fenced_write","at":1700,"node":"n1","register":"R","token":100,"accepted":false}"#,
            "\n",
            r#"{"event":"leader","at":10,"node":"n1","election":"E","term":7,"lease_until":900}"#,
            "\n",
            r#"{"event":"leader","at":3000,"node":"n2","election":"E","term":8,"lease_until":3900}"#,
            "\n",
            r#"{"event":"leader_act","at":3500,"node":"n2","election":"E","term":8,"lease_until":4400}"#,
            "\n",
            r#"{"event":"singleton_act","at":10,"node":"n1","singleton":"S","copy":"a","lease_until":500}"#,
            "\n",
            r#"{"event":"singleton_act","at":600,"node":"n2","singleton":"S","copy":"b","lease_until":900}"#,
            "\n",
            // A copy that stopped hands over before its lease ends.
            r#"{"event":"singleton_stop","at":650,"node":"n2","singleton":"S","copy":"b"}"#,
            "\n",
            r#"{"event":"singleton_act","at":700,"node":"n4","singleton":"S","copy":"c","lease_until":1900}"#,
            "\n",
            r#"{"event":"crdt_increment","at":10,"node":"n1","key":"k","amount":2,"majority":true,"acked":true}"#,
            "\n",
            r#"{"event":"crdt_increment","at":11,"node":"n2","key":"k","amount":3,"majority":true,"acked":false}"#,
            "\n",
            // n3 was killed after its write of 1 and before recording it: only the invocation.
            r#"{"event":"crdt_invoke","at":12,"node":"n3","key":"k","amount":1}"#,
            "\n",
            r#"{"event":"crdt_final","at":5000,"node":"n1","key":"k","value":6}"#,
            "\n",
            r#"{"event":"crdt_final","at":5000,"node":"n2","key":"k","value":6}"#,
        ));
        let report = check(&history);
        assert!(report.anomalies.is_empty(), "{report}");
        let text = report.to_string();
        assert!(text.ends_with("anomalies: 0") && text.contains("faults: partition 1"), "{text}");
        assert!(text.contains("fenced_write refused 1"), "{text}");
    }

    #[test]
    fn every_forbidden_thing_is_found() {
        let history = lines(concat!(
            // Two holders of L acting under valid leases at once, and a token that went down.
            r#"{"event":"lock_acquired","at":10,"node":"n1","lock":"L","token":100,"lease_until":1000}"#,
            "\n",
            r#"{"event":"lock_act","at":20,"node":"n1","lock":"L","token":100,"lease_until":1000}"#,
            "\n",
            r#"{"event":"lock_acquired","at":30,"node":"n2","lock":"L","token":99,"lease_until":1030}"#,
            "\n",
            r#"{"event":"lock_act","at":40,"node":"n2","lock":"L","token":99,"lease_until":1030}"#,
            "\n",
            // A stale fenced write accepted.
            r#"{"event":"fenced_write","at":50,"node":"n1","register":"R","token":100,"accepted":true}"#,
            "\n",
            r#"{"event":"fenced_write","at":60,"node":"n2","register":"R","token":99,"accepted":true}"#,
            "\n",
            // A term that did not increase, and two leaders at once.
            r#"{"event":"leader","at":10,"node":"n1","election":"E","term":7,"lease_until":900}"#,
            "\n",
            r#"{"event":"leader","at":20,"node":"n2","election":"E","term":7,"lease_until":920}"#,
            "\n",
            // A node that exited by itself.
            r#"{"event":"node_failed","at":30,"node":"n4","detail":"exited by itself: signal 6"}"#,
            "\n",
            // Two singleton copies at once (on either side of a partition).
            r#"{"event":"singleton_act","at":10,"node":"n1","singleton":"S","copy":"a","lease_until":500}"#,
            "\n",
            r#"{"event":"singleton_act","at":400,"node":"n3","singleton":"S","copy":"b","lease_until":900}"#,
            "\n",
            // An acknowledged majority write lost, and reads that do not converge.
            r#"{"event":"crdt_increment","at":10,"node":"n1","key":"k","amount":2,"majority":true,"acked":true}"#,
            "\n",
            r#"{"event":"crdt_final","at":5000,"node":"n1","key":"k","value":2}"#,
            "\n",
            r#"{"event":"crdt_final","at":5000,"node":"n2","key":"k","value":0}"#,
        ));
        let report = check(&history);
        let kinds: Vec<&str> = report
            .anomalies
            .iter()
            .map(|a| match a {
                Anomaly::TwoLockHolders { .. } => "two lock holders",
                Anomaly::TokenNotIncreasing { .. } => "token",
                Anomaly::StaleWriteAccepted { .. } => "stale write",
                Anomaly::TermNotIncreasing { .. } => "term",
                Anomaly::TwoLeaders { .. } => "two leaders",
                Anomaly::TwoSingletons { .. } => "two singletons",
                Anomaly::LostWrite { .. } => "lost write",
                Anomaly::NotConverged { .. } => "not converged",
                Anomaly::NodeFailed { .. } => "node failed",
            })
            .collect();
        for kind in [
            "two lock holders",
            "token",
            "stale write",
            "term",
            "two leaders",
            "two singletons",
            "lost write",
            "not converged",
            "node failed",
        ] {
            assert!(kinds.contains(&kind), "{kind} not found in {report}");
        }
        assert!(report.to_string().ends_with(&format!("anomalies: {}", report.anomalies.len())));
        assert_eq!(
            report.anomalies.iter().find(|a| matches!(a, Anomaly::LostWrite { .. })).unwrap().to_string(),
            "counter k: n2 read 0 after the heal; acknowledged 2, attempted 2"
        );
    }

    #[test]
    fn a_leader_still_acting_long_into_its_term_is_seen_beside_a_new_one() {
        // n1 was first seen leading long ago; its later acts still overlap n2's new term.
        let history = lines(concat!(
            r#"{"event":"leader","at":0,"node":"n1","election":"E","term":7,"lease_until":900}"#,
            "\n",
            r#"{"event":"leader_act","at":30000,"node":"n1","election":"E","term":7,"lease_until":30900}"#,
            "\n",
            r#"{"event":"leader","at":30100,"node":"n2","election":"E","term":8,"lease_until":31000}"#,
        ));
        let report = check(&history);
        assert!(matches!(report.anomalies[..], [Anomaly::TwoLeaders { .. }]), "{report}");
    }

    #[test]
    fn a_line_that_does_not_parse_is_named() {
        let err = parse("{\"event\":\"fault\",\"at\":1,\"kind\":\"kill\",\"detail\":\"n1\"}\nnot json")
            .unwrap_err();
        assert!(err.starts_with("history line 2:"), "{err}");
    }
}

//! `foundation node --history FILE`: the nemesis workload. `foundation nemesis` starts every
//! node with it; clients on this node exercise the cluster's guarantees and append what they
//! saw to FILE, one JSON object per line ([`Event`], read by
//! [`foundation_cluster::testkit::history::check`]).
//!
//! **Stamps.** Every event is stamped with the machine's clock (all nodes of a nemesis run share
//! it). An event that relies on a lease is stamped *first* and recorded only if the lease is
//! still valid after the stamp: the stamp is then a moment at which the lease was valid, even if
//! this process was paused (SIGSTOP) anywhere in between. A stamp taken after a pause that
//! outlived the lease is never written.
//!
//! The clients (until `workload-stop`):
//! - **lock**: acquire `nemesis-lock` (lease 1 s, waiting up to 2 s), act three times 100 ms
//!   apart (`lock_act`, with the lease's end) and after each act write the token to the
//!   **fenced register**, then release. The register is the file `fenced-register` next to
//!   FILE, shared by every node of the run: a write takes an exclusive `flock`, accepts a token
//!   no smaller than the largest it accepted, and is stamped under the flock (`fenced_write`).
//!   The write is made even when the act found the lease gone: the register's fencing, not the
//!   client's own check, is what must stop a stale holder.
//! - **election** `nemesis-election`: `leader` when this node first sees itself lead a term,
//!   then `leader_act` every 50 ms while it leads (with the lease's end).
//! - **singleton** `nemesis-singleton`: its copy records `singleton_act` every 50 ms while its
//!   lease is valid ([`foundation_cluster::singleton::lease_valid_until`]).
//! - **counters**: `nemesis-majority` takes only majority writes and `nemesis-local` only
//!   local ones, +1 every 100 ms each (`crdt_invoke` before the write, `crdt_increment`,
//!   acknowledged or not, after it). A (re)started
//!   node first reads both with a majority, as a restarted replica must before writing
//!   (`docs/semantics.md`, replicated CRDT state).
//!
//! Commands: `workload-stop` ends the clients (the singleton stays declared), and
//! `workload-read` replies with both counters as this node holds them (the nemesis reads every
//! node after the final heal and records the reads as `crdt_final`).

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use foundation_actors::supervision::ChildSpec;
use foundation_cluster::coordination::{Coordination, Leadership};
use foundation_cluster::crdt_state::{Key, ReadConsistency, Replicator, WriteConsistency};
use foundation_cluster::testkit::history::Event;
use foundation_cluster::{Cluster, SingletonHandle};
use foundation_core::crdt::PnCounter;
use foundation_core::sync::MutexRecover;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::Serialize;
use tokio::sync::watch;

use super::reply::{Usage, emit};

/// The lock the clients take.
pub const LOCK: &str = "nemesis-lock";
/// The election they stand in.
pub const ELECTION: &str = "nemesis-election";
/// The singleton they declare.
pub const SINGLETON: &str = "nemesis-singleton";
/// The counter that takes majority writes.
pub const MAJORITY_COUNTER: &str = "nemesis-majority";
/// The counter that takes local writes.
pub const LOCAL_COUNTER: &str = "nemesis-local";
/// The fenced register's file name, next to the history file.
pub const REGISTER_FILE: &str = "fenced-register";

const LOCK_LEASE: Duration = Duration::from_secs(1);
const LOCK_WAIT: Duration = Duration::from_secs(2);
const ACTS_PER_HOLD: usize = 3;
const ACT_EVERY: Duration = Duration::from_millis(100);
const SINGLETON_ACT_EVERY: Duration = Duration::from_millis(50);
const LEADER_CHECK_EVERY: Duration = Duration::from_millis(50);
const INCREMENT_EVERY: Duration = Duration::from_millis(100);
const MAJORITY_TIMEOUT: Duration = Duration::from_secs(1);

const NEEDS: Option<&str> = Some("--history FILE");

/// The commands of this module.
pub const COMMANDS: &[Usage] = &[
    Usage {
        command: "workload-stop",
        usage: "workload-stop",
        what: "stop the nemesis clients (the singleton stays declared)",
        needs: NEEDS,
    },
    Usage {
        command: "workload-read",
        usage: "workload-read",
        what: "the nemesis counters as this node holds them",
        needs: NEEDS,
    },
];

/// A workload command.
#[derive(Debug, PartialEq)]
pub enum Command {
    /// `workload-stop`.
    Stop,
    /// `workload-read`.
    Read,
}

impl Command {
    /// Parses `op` and the words after it; `None` if `op` is not a workload command.
    pub fn parse(op: &str, args: &[&str]) -> Option<Result<Command, String>> {
        let command = match op {
            "workload-stop" => Command::Stop,
            "workload-read" => Command::Read,
            _ => return None,
        };
        Some(Usage::bare(COMMANDS, op, args)?.map(|()| command))
    }
}

/// What a workload command printed.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Reply {
    /// The clients stopped.
    WorkloadStopped {},
    /// The counters here (`null`: never written or merged here).
    WorkloadCounters { majority: Option<i64>, local: Option<i64> },
    /// The history file could not be written: the run's history is incomplete.
    HistoryFailed { error: String },
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: &Option<i64>| v.map_or("none".to_string(), |v| v.to_string());
        match self {
            Reply::WorkloadStopped {} => write!(f, "workload stopped"),
            Reply::WorkloadCounters { majority, local } => {
                write!(f, "counters: majority {}, local {}", show(majority), show(local))
            }
            Reply::HistoryFailed { error } => write!(f, "history not written: {error}"),
        }
    }
}

/// Milliseconds since the Unix epoch: the one clock of a run.
fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A monotonic deadline as Unix milliseconds (rounded up: a checker then errs towards seeing
/// an overlap, never towards missing one).
fn unix_of(until: std::time::Instant) -> u64 {
    let (now, unix) = (std::time::Instant::now(), SystemTime::now());
    let left = until.saturating_duration_since(now);
    (unix + left).duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros().div_ceil(1000) as u64)
}

/// Appends events to the history file, one line per `write` on a file opened for appending (so
/// a kill -9 leaves at most a last line cut short, which the nemesis drops).
#[derive(Clone)]
struct Recorder {
    file: Arc<std::sync::Mutex<File>>,
    node: String,
}

impl Recorder {
    fn record(&self, event: &Event) {
        let mut line = serde_json::to_string(event).unwrap_or_default();
        line.push('\n');
        if let Err(e) = self.file.lock_or_recover().write_all(line.as_bytes()) {
            emit(&Reply::HistoryFailed { error: e.to_string() });
        }
    }
}

/// The nemesis workload running on this node.
pub struct Workload {
    stop: watch::Sender<bool>,
    replicator: Replicator,
    _singleton: SingletonHandle,
}

impl Workload {
    /// Starts the clients, appending to `history` (created if missing).
    pub fn start(
        cluster: &Cluster,
        coordination: Coordination,
        replicator: Replicator,
        history: &Path,
    ) -> anyhow::Result<Workload> {
        let cannot =
            |e: std::io::Error| anyhow::anyhow!("cannot open the history file {}: {e}", history.display());
        let mut file =
            OpenOptions::new().create(true).read(true).append(true).open(history).map_err(cannot)?;
        // An earlier process of this node killed in the middle of a line: end that line, so
        // that this process's first event starts a line of its own (the cut one is dropped).
        let len = file.metadata().map_err(cannot)?.len();
        if len > 0 {
            let mut last = [0u8];
            file.seek(std::io::SeekFrom::Start(len - 1)).map_err(cannot)?;
            file.read_exact(&mut last).map_err(cannot)?;
            if last[0] != b'\n' {
                file.write_all(b"\n").map_err(cannot)?;
            }
        }
        let recorder =
            Recorder { file: Arc::new(std::sync::Mutex::new(file)), node: cluster.name().to_string() };
        let register = history.parent().unwrap_or(Path::new(".")).join(REGISTER_FILE);
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(lock_client(coordination.clone(), recorder.clone(), register, stopped.clone()));
        tokio::spawn(election_client(coordination, recorder.clone(), stopped.clone()));
        for (key, majority) in [(MAJORITY_COUNTER, true), (LOCAL_COUNTER, false)] {
            let client = counter_client(replicator.clone(), recorder.clone(), key, majority, stopped.clone());
            tokio::spawn(client);
        }
        let copy = SingletonCopy { recorder, started: unix_ms() };
        let spec = ChildSpec::new(SINGLETON, move || (Acting, copy.clone()));
        let singleton = SingletonHandle::start(cluster, SINGLETON, spec);
        Ok(Workload { stop, replicator, _singleton: singleton })
    }

    /// Runs a workload command.
    pub fn run(&self, command: Command) {
        match command {
            Command::Stop => {
                self.stop.send_replace(true);
                emit(&Reply::WorkloadStopped {});
            }
            Command::Read => {
                let read = |key: &str| match self.replicator.value(key) {
                    Some(foundation_cluster::crdt_state::CrdtValue::PnCounter(c)) => Some(c.value()),
                    _ => None,
                };
                emit(&Reply::WorkloadCounters {
                    majority: read(MAJORITY_COUNTER),
                    local: read(LOCAL_COUNTER),
                });
            }
        }
    }
}

/// Sleeps `pause`; false if the workload was stopped meanwhile.
async fn pause(stopped: &mut watch::Receiver<bool>, pause: Duration) -> bool {
    if *stopped.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(pause) => !*stopped.borrow(),
        _ = stopped.changed() => false,
    }
}

async fn lock_client(
    coordination: Coordination,
    recorder: Recorder,
    register: PathBuf,
    mut stopped: watch::Receiver<bool>,
) {
    let node = recorder.node.clone();
    while pause(&mut stopped, ACT_EVERY).await {
        let Ok(guard) = coordination.lock_with_lease(LOCK, LOCK_LEASE, LOCK_WAIT).await else { continue };
        let token = guard.token();
        let at = unix_ms();
        if let Some(until) = guard.valid_until() {
            let lease_until = unix_of(until.into_std());
            recorder.record(&Event::LockAcquired {
                at,
                node: node.clone(),
                lock: LOCK.into(),
                token,
                lease_until,
            });
        }
        for _ in 0..ACTS_PER_HOLD {
            let at = unix_ms();
            if let Some(until) = guard.valid_until() {
                let lease_until = unix_of(until.into_std());
                recorder.record(&Event::LockAct {
                    at,
                    node: node.clone(),
                    lock: LOCK.into(),
                    token,
                    lease_until,
                });
            }
            // On a blocking thread: the flock may be held by a frozen node for seconds, and the
            // runtime's workers must keep the node's heartbeats going meanwhile.
            let path = register.clone();
            let written = tokio::task::spawn_blocking(move || fenced_write(&path, token))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            match written {
                Ok((at, accepted)) => recorder.record(&Event::FencedWrite {
                    at,
                    node: node.clone(),
                    register: REGISTER_FILE.into(),
                    token,
                    accepted,
                }),
                Err(e) => emit(&Reply::HistoryFailed { error: format!("fenced register: {e}") }),
            }
            tokio::time::sleep(ACT_EVERY).await;
        }
        // Stamped before the release: no act of this holder comes after it.
        recorder.record(&Event::LockReleased { at: unix_ms(), node: node.clone(), lock: LOCK.into(), token });
        guard.release().await;
    }
}

/// Writes `token` to the register file if no larger token was accepted before; returns the
/// stamp (taken under the flock, so stamps order the writes as the register saw them) and
/// whether it was accepted.
///
/// The token is written in place, 20 digits at offset 0, never truncated first: a process killed
/// during a write cannot leave the register empty (which would accept any token).
fn fenced_write(register: &Path, token: u64) -> std::io::Result<(u64, bool)> {
    let mut file = OpenOptions::new().create(true).truncate(false).read(true).write(true).open(register)?;
    file.lock()?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    let newest: u64 = match text.trim() {
        "" => 0,
        digits => {
            digits.parse().map_err(|e| std::io::Error::other(format!("register holds {digits:?}: {e}")))?
        }
    };
    let at = unix_ms();
    let accepted = token >= newest;
    if accepted {
        file.rewind()?;
        file.write_all(format!("{token:020}").as_bytes())?;
        file.sync_data()?;
    }
    file.unlock()?;
    Ok((at, accepted))
}

async fn election_client(coordination: Coordination, recorder: Recorder, mut stopped: watch::Receiver<bool>) {
    let election = coordination.elect(ELECTION);
    let mut recorded = None;
    while pause(&mut stopped, LEADER_CHECK_EVERY).await {
        let at = unix_ms();
        if let (Leadership::Leader { term }, Some(until)) = (election.leadership(), election.valid_until()) {
            let (node, election, lease_until) =
                (recorder.node.clone(), ELECTION.into(), unix_of(until.into_std()));
            recorder.record(&match recorded == Some(term) {
                false => Event::Leader { at, node, election, term, lease_until },
                true => Event::LeaderAct { at, node, election, term, lease_until },
            });
            recorded = Some(term);
        }
    }
    if let Leadership::Leader { term } = election.leadership() {
        let node = recorder.node.clone();
        recorder.record(&Event::Resigned { at: unix_ms(), node, election: ELECTION.into(), term });
    }
    election.resign();
}

async fn counter_client(
    replicator: Replicator,
    recorder: Recorder,
    key: &'static str,
    majority: bool,
    mut stopped: watch::Receiver<bool>,
) {
    let counter = Key::<PnCounter>::new(key);
    let read = ReadConsistency::Majority { timeout: MAJORITY_TIMEOUT };
    // Build on this node's earlier contributions (it may be a restart under the same name).
    while replicator.get(&counter, read).await.is_err() {
        if !pause(&mut stopped, INCREMENT_EVERY).await {
            return;
        }
    }
    let write = match majority {
        true => WriteConsistency::Majority { timeout: MAJORITY_TIMEOUT },
        false => WriteConsistency::Local,
    };
    while pause(&mut stopped, INCREMENT_EVERY).await {
        let at = unix_ms();
        // Before the write: if this process is killed before it records the outcome, the
        // invocation still says the total may include it.
        recorder.record(&Event::CrdtInvoke { at, node: recorder.node.clone(), key: key.into(), amount: 1 });
        let acked = replicator.update(&counter, write, |c, me| c.add(me, 1)).await.is_ok();
        recorder.record(&Event::CrdtIncrement {
            at,
            node: recorder.node.clone(),
            key: key.into(),
            amount: 1,
            majority,
            acked,
        });
    }
}

/// What a copy of the singleton needs.
#[derive(Clone)]
struct SingletonCopy {
    recorder: Recorder,
    started: u64,
}

/// The singleton's actor: acts every 50 ms while its lease is valid, and records each act.
struct Acting;

impl Actor for Acting {
    type Msg = ();
    type State = (SingletonCopy, String);
    type Arguments = SingletonCopy;

    async fn pre_start(
        &self,
        myself: ActorRef<()>,
        copy: SingletonCopy,
    ) -> Result<(SingletonCopy, String), ActorProcessingErr> {
        // Tells copies apart: node, process, and when this one started.
        let id = format!("{}-{}-{}-{}", copy.recorder.node, std::process::id(), copy.started, unix_ms());
        myself.send_interval(SINGLETON_ACT_EVERY, || ());
        Ok((copy, id))
    }

    async fn handle(
        &self,
        _: ActorRef<()>,
        _: (),
        (copy, id): &mut (SingletonCopy, String),
    ) -> Result<(), ActorProcessingErr> {
        let at = unix_ms();
        if let Some(until) = foundation_cluster::singleton::lease_valid_until(SINGLETON) {
            copy.recorder.record(&Event::SingletonAct {
                at,
                node: copy.recorder.node.clone(),
                singleton: SINGLETON.into(),
                copy: id.clone(),
                lease_until: unix_of(until),
            });
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _: ActorRef<()>,
        (copy, id): &mut (SingletonCopy, String),
    ) -> Result<(), ActorProcessingErr> {
        copy.recorder.record(&Event::SingletonStop {
            at: unix_ms(),
            node: copy.recorder.node.clone(),
            singleton: SINGLETON.into(),
            copy: id.clone(),
        });
        Ok(())
    }
}

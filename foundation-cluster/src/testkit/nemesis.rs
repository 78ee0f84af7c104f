//! The nemesis: `foundation node` processes on [test hosts](super::netns) under a seeded random
//! schedule of faults, while the workload on every node (`foundation node --history`) records
//! what its clients saw; after a final heal the histories are [checked](super::history::check),
//! the way Jepsen tests a database.
//!
//! [`plan`] turns a seed into the schedule (the same seed, node count and duration give the same
//! schedule on every machine: the generator is written here, not taken from a crate whose
//! streams may change between versions). The run itself is real time on real processes, so two
//! runs of one seed inject the same faults at the same offsets but see different histories.
//!
//! Faults: kill -9; SIGSTOP then SIGCONT after up to 5 s (past the singleton's 3 s lease and the
//! lock's 1 s); restarts of a killed node with seeds, without seeds (its state directory's
//! members and zero-config discovery find the cluster), or under a new name with an empty
//! state directory (found by discovery only; the old name is then removed with
//! `remove-member`); packet-drop partitions: majority/minority, one way between two hosts, a
//! node that hears nothing but is heard, a node cut off from all; and heals. At most a minority
//! is dead at once.
//!
//! After the schedule: every fault is healed, frozen nodes resumed, dead ones restarted with
//! seeds; the clients stop; each node's counters are read until they agree (up to a minute) and
//! the reads recorded as `crdt_final`; the nodes are stopped and the histories checked.
//!
//! ```no_run
//! use foundation_cluster::testkit::nemesis::{self, NemesisConfig};
//! # fn run() -> Result<(), foundation_cluster::testkit::TestkitError> {
//! let config = NemesisConfig::new("target/debug/foundation", 5, 42, std::time::Duration::from_secs(60));
//! let report = nemesis::run(&config)?;
//! println!("{report}");
//! assert!(report.anomalies.is_empty());
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::history::{self, Event, Report};
use super::netns::TestNet;
use super::{NodeProcess, TestkitError};

/// The port every node listens on (each host has its own address).
const PORT: u16 = 7400;
/// The history file of the nemesis itself (faults and final reads).
const OWN_HISTORY: &str = "nemesis.jsonl";
/// How long a node may take to start, and the cluster to form.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the final reads may take to agree.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);

/// What to run.
#[derive(Debug, Clone)]
pub struct NemesisConfig {
    /// The `foundation` program.
    pub program: PathBuf,
    /// How many nodes (3 to 9).
    pub nodes: usize,
    /// The schedule's seed.
    pub seed: u64,
    /// How long faults are injected (the start before and the final heal after take longer).
    pub duration: Duration,
    /// Where the run keeps the histories, the fenced register and the nodes' state directories:
    /// a directory that does not exist or is empty. Default: a new directory under the
    /// temporary directory.
    pub dir: Option<PathBuf>,
    /// A configuration file every node loads (`foundation --config FILE node ...`): run the
    /// nemesis against your own cluster settings. The nemesis sets each node's name, address,
    /// seeds, state directory, cookie and `cluster.expected_nodes` (the node count) itself.
    pub config_file: Option<PathBuf>,
    /// Print each fault to standard error as it is injected.
    pub verbose: bool,
}

impl NemesisConfig {
    /// `nodes` nodes of `program` under the schedule of `seed` for `duration`.
    pub fn new(program: impl Into<PathBuf>, nodes: usize, seed: u64, duration: Duration) -> Self {
        NemesisConfig {
            program: program.into(),
            nodes,
            seed,
            duration,
            dir: None,
            config_file: None,
            verbose: false,
        }
    }
}

/// How a killed node comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Same name and state, with every other node as a seed.
    WithSeeds,
    /// Same name and state, no seeds: its remembered members and discovery find the cluster.
    Seedless,
    /// A new name and an empty state directory, no seeds: zero-config discovery finds the
    /// cluster; the old name is removed for good.
    Renamed,
}

/// One fault (or its end). Nodes are numbered from 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// kill -9.
    Kill(usize),
    /// Start a killed node again.
    Restart(usize, Restart),
    /// SIGSTOP.
    Freeze(usize),
    /// SIGCONT.
    Thaw(usize),
    /// These nodes are cut off from the others (a minority from a majority), both ways.
    Split(Vec<usize>),
    /// What the first node sends the second is dropped; the other way works.
    OneWay(usize, usize),
    /// Nothing reaches this node; what it sends still arrives.
    Deafen(usize),
    /// Every packet of this node is dropped.
    Isolate(usize),
    /// Every partition ends.
    Heal,
}

impl Action {
    /// The fault's kind, as the report counts it.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Kill(_) => "kill",
            Action::Restart(_, Restart::WithSeeds) => "restart-seeds",
            Action::Restart(_, Restart::Seedless) => "restart-seedless",
            Action::Restart(_, Restart::Renamed) => "restart-renamed",
            Action::Freeze(_) => "stop",
            Action::Thaw(_) => "cont",
            Action::Split(_) => "partition-majority-minority",
            Action::OneWay(..) => "partition-one-way",
            Action::Deafen(_) => "partition-deaf-node",
            Action::Isolate(_) => "isolate",
            Action::Heal => "heal",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Kill(k) | Action::Restart(k, _) | Action::Freeze(k) | Action::Thaw(k) => {
                write!(f, "{} node {k}", self.kind())
            }
            Action::Split(minority) => write!(f, "{} {minority:?} | the rest", self.kind()),
            Action::OneWay(from, to) => write!(f, "{} {from} -> {to} dropped", self.kind()),
            Action::Deafen(k) | Action::Isolate(k) => write!(f, "{} node {k}", self.kind()),
            Action::Heal => write!(f, "heal"),
        }
    }
}

/// A fault at an offset from the start of the schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// When, from the first fault's window.
    pub at: Duration,
    /// What.
    pub action: Action,
}

/// The schedule's generator: [`SplitMix64`](foundation_core::random::SplitMix64), whose stream
/// is fixed forever (what a seed that found a bug needs), with the draws a schedule makes.
struct Rng(foundation_core::random::SplitMix64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(foundation_core::random::SplitMix64::new(seed))
    }

    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn below(&mut self, n: usize) -> usize {
        self.0.below(n)
    }

    fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(low + self.next() % (high - low).max(1))
    }

    fn pick(&mut self, from: &[usize]) -> usize {
        from[self.below(from.len())]
    }
}

/// The schedule for `nodes` nodes, `seed` and `duration`: faults every 0.5 to 2 s, each
/// partition healed and each frozen node resumed before the next fault; killed nodes stay dead
/// until a later restart (so faults overlap with dead nodes), at most a minority at once.
pub fn plan(nodes: usize, seed: u64, duration: Duration) -> Vec<Step> {
    let mut rng = Rng::new(seed);
    let mut steps = Vec::new();
    let mut dead: Vec<usize> = Vec::new();
    let max_dead = (nodes - 1) / 2;
    let mut at = Duration::ZERO;
    loop {
        at += rng.millis(500, 2000);
        if at >= duration {
            break;
        }
        let alive: Vec<usize> = (0..nodes).filter(|k| !dead.contains(k)).collect();
        if !dead.is_empty() && rng.below(100) < 35 {
            let k = dead.remove(rng.below(dead.len()));
            let how = [Restart::WithSeeds, Restart::Seedless, Restart::Renamed][rng.below(3)];
            steps.push(Step { at, action: Action::Restart(k, how) });
            continue;
        }
        let (action, end) = match rng.below(6) {
            0 if dead.len() < max_dead => {
                let k = rng.pick(&alive);
                dead.push(k);
                (Action::Kill(k), None)
            }
            0 | 1 => {
                let k = rng.pick(&alive);
                (Action::Freeze(k), Some(Action::Thaw(k)))
            }
            2 => {
                let mut order: Vec<usize> = (0..nodes).collect();
                rng.0.shuffle(&mut order);
                let size = 1 + rng.below(max_dead);
                let mut minority = order[..size].to_vec();
                minority.sort_unstable();
                (Action::Split(minority), Some(Action::Heal))
            }
            3 => {
                let from = rng.below(nodes);
                let to = (from + 1 + rng.below(nodes - 1)) % nodes;
                (Action::OneWay(from, to), Some(Action::Heal))
            }
            4 => (Action::Deafen(rng.below(nodes)), Some(Action::Heal)),
            _ => (Action::Isolate(rng.below(nodes)), Some(Action::Heal)),
        };
        steps.push(Step { at, action });
        if let Some(end) = end {
            at += rng.millis(500, 5000);
            steps.push(Step { at, action: end });
        }
    }
    steps
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn failed(reason: impl Into<String>) -> TestkitError {
    TestkitError::Nemesis { reason: reason.into() }
}

/// One node slot: a host and whichever process runs there now.
struct Slot {
    name: String,
    generation: u32,
    process: Option<NodeProcess>,
}

/// A run in progress.
struct Run<'a> {
    config: &'a NemesisConfig,
    dir: PathBuf,
    /// Before `net`: fields drop in order, so the processes end before their namespaces go.
    slots: Vec<Slot>,
    net: TestNet,
    cookie: String,
    history: std::fs::File,
    /// Old names of renamed nodes not yet seen removed.
    removals: Vec<String>,
}

/// Runs the nemesis (see the module docs) and returns the checked history's report (its seed
/// set). An error means the run could not be made (no namespaces, a node that did not start),
/// not that an anomaly was found: that is in the report.
pub fn run(config: &NemesisConfig) -> Result<Report, TestkitError> {
    if !(3..=9).contains(&config.nodes) {
        return Err(failed(format!("{} nodes: the nemesis runs 3 to 9", config.nodes)));
    }
    let dir = match &config.dir {
        Some(dir) => dir.clone(),
        // A name no one can guess: the run (as root, usually) writes there.
        None => std::env::temp_dir()
            .join(foundation_core::files::unguessable_name(&format!("foundation-nemesis-{}-", config.seed))),
    };
    if std::fs::read_dir(&dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(failed(format!("{} is not empty: give the run a directory of its own", dir.display())));
    }
    foundation_core::files::create_private_dir(&dir)
        .map_err(|e| failed(format!("cannot create {}: {e}", dir.display())))?;
    let history = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(OWN_HISTORY))
        .map_err(|e| failed(format!("cannot write in {}: {e}", dir.display())))?;
    let net = TestNet::new(config.nodes)?;
    // The test hosts reach nothing but each other: the cookie only has to differ between runs.
    let cookie =
        format!("{:016x}{:016x}", Rng::new(config.seed ^ unix_ms()).next(), Rng::new(unix_ms()).next());
    let slots = (0..config.nodes)
        .map(|k| Slot { name: format!("n{}", k + 1), generation: 0, process: None })
        .collect();
    let mut run = Run { config, dir, slots, net, cookie, history, removals: Vec::new() };
    if config.verbose {
        eprintln!(
            "nemesis: seed {}, {} nodes, histories in {}",
            config.seed,
            config.nodes,
            run.dir.display()
        );
    }
    run.start_all()?;
    let steps = plan(config.nodes, config.seed, config.duration);
    // Each step waits its gap after the one before was applied: a slow restart shifts what
    // follows, but never shortens a freeze or a partition.
    let mut previous = (Instant::now(), Duration::ZERO);
    for step in &steps {
        std::thread::sleep(step.at.saturating_sub(previous.1).saturating_sub(previous.0.elapsed()));
        previous = (Instant::now(), step.at);
        run.apply(&step.action)?;
        run.check_alive();
        run.try_removals();
    }
    run.finish()?;
    let dir = run.dir.clone();
    drop(run);
    let mut report = history::check(&read_histories(&dir)?);
    report.seed = Some(config.seed);
    Ok(report)
}

/// Every history in `dir` (`*.jsonl`). A line cut short by a kill -9 (it does not end with
/// `}`; the node's next process starts a new line) is dropped; any other line that does not
/// parse is an error.
pub fn read_histories(dir: &Path) -> Result<Vec<Event>, TestkitError> {
    let mut events = Vec::new();
    let entries =
        std::fs::read_dir(dir).map_err(|e| failed(format!("cannot read {}: {e}", dir.display())))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "jsonl") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| failed(format!("cannot read {}: {e}", path.display())))?;
        let whole: Vec<&str> = text.lines().filter(|line| line.trim_end().ends_with('}')).collect();
        let parsed =
            history::parse(&whole.join("\n")).map_err(|e| failed(format!("{}: {e}", path.display())))?;
        events.extend(parsed);
    }
    Ok(events)
}

impl Run<'_> {
    fn addr(&self, k: usize) -> String {
        format!("{}:{PORT}", self.net.host(k).address())
    }

    fn record(&mut self, event: &Event) {
        use std::io::Write as _;
        let mut line = serde_json::to_string(event).unwrap_or_default();
        line.push('\n');
        let _ = self.history.write_all(line.as_bytes());
    }

    fn fault(&mut self, kind: &str, detail: String) {
        if self.config.verbose {
            eprintln!("nemesis: {kind}: {detail}");
        }
        self.record(&Event::Fault { at: unix_ms(), kind: kind.to_string(), detail });
    }

    /// Records that node `k` failed by itself.
    fn node_failed(&mut self, k: usize, detail: String) {
        let node = self.slots[k].name.clone();
        if self.config.verbose {
            eprintln!("nemesis: node {node} failed: {detail}");
        }
        self.record(&Event::NodeFailed { at: unix_ms(), node, detail });
    }

    /// A node that exited without being killed has crashed: recorded, and its slot is dead
    /// (restarted at the end).
    fn check_alive(&mut self) {
        for k in 0..self.slots.len() {
            let Some(process) = self.slots[k].process.as_mut() else { continue };
            if !process.is_running() {
                self.retire(k);
                self.node_failed(k, "exited by itself".into());
            }
        }
    }

    /// Takes node `k`'s process out of its slot (killing it if it still runs), recording any
    /// history write it reported failing.
    fn retire(&mut self, k: usize) {
        let Some(mut process) = self.slots[k].process.take() else { return };
        process.kill();
        let failures = process.events(&serde_json::json!({"event": "history_failed"}));
        for failure in failures {
            let error = failure["error"].as_str().unwrap_or_default().to_string();
            self.node_failed(k, format!("could not write its history: {error}"));
        }
    }

    /// Starts node `k` (see `spawn`); a node that does not start is recorded as failed and its
    /// slot stays dead.
    fn start_node(&mut self, k: usize, seeds: &[String]) -> bool {
        match self.spawn(k, seeds) {
            Ok(()) => true,
            Err(e) => {
                self.node_failed(k, format!("did not start: {e}"));
                false
            }
        }
    }

    /// Starts node `k` under its slot's current name, with `seeds` (replacing any in the
    /// configuration file); waits until it listens.
    fn spawn(&mut self, k: usize, seeds: &[String]) -> Result<(), TestkitError> {
        let name = self.slots[k].name.clone();
        let mut args: Vec<String> = Vec::new();
        if let Some(file) = &self.config.config_file {
            args.extend(["--config".into(), file.display().to_string()]);
        }
        args.extend(
            [
                "node",
                "--json",
                "--exit-with-stdin",
                "--cluster",
                "--name",
                &name,
                "--listen",
                &self.addr(k),
                "--state-dir",
                &self.dir.join("state").join(&name).display().to_string(),
                "--history",
                &self.dir.join(format!("history-{name}.jsonl")).display().to_string(),
            ]
            .map(String::from),
        );
        let log = std::env::var(foundation_core::config::ENV_LOG).unwrap_or_else(|_| "error".into());
        let env = [
            (foundation_core::config::ENV_COOKIE.to_string(), self.cookie.clone()),
            (foundation_core::config::ENV_LOG.to_string(), log),
            ("FOUNDATION_CLUSTER__EXPECTED_NODES".to_string(), self.slots.len().to_string()),
            // The test hosts' bridge reaches nothing else: plaintext is an explicit opt-in here
            // (a configuration with `[cluster.tls]` uses TLS all the same).
            ("FOUNDATION_CLUSTER__ALLOW_PLAINTEXT".to_string(), "true".to_string()),
            // Over the configuration file's seeds (a seedless restart must have none).
            ("FOUNDATION_CLUSTER__SEEDS".to_string(), format!("{seeds:?}")),
        ];
        let process = self.net.spawn(k, &name, &self.config.program, &args, env)?;
        process.wait_for_event(&serde_json::json!({"event": "listening"}), START_TIMEOUT)?;
        self.slots[k].process = Some(process);
        Ok(())
    }

    fn others(&self, k: usize) -> Vec<String> {
        (0..self.slots.len()).filter(|j| *j != k).map(|j| self.addr(j)).collect()
    }

    fn start_all(&mut self) -> Result<(), TestkitError> {
        for k in 0..self.slots.len() {
            let seeds = self.others(k);
            self.spawn(k, &seeds)?;
        }
        // The cluster has formed when the first node sees every other up.
        let first = self.slots[0].process.as_ref().ok_or_else(|| failed("node 0 did not start"))?;
        for slot in &self.slots[1..] {
            first.wait_for_event(
                &serde_json::json!({"event": "member_up", "name": slot.name}),
                START_TIMEOUT,
            )?;
        }
        Ok(())
    }

    fn process(&mut self, k: usize) -> Option<&mut NodeProcess> {
        self.slots[k].process.as_mut()
    }

    fn apply(&mut self, action: &Action) -> Result<(), TestkitError> {
        let name = |run: &Self, k: usize| run.slots[k].name.clone();
        let detail = match action {
            Action::Kill(k) => {
                self.retire(*k);
                name(self, *k)
            }
            Action::Restart(k, how) => {
                let old = name(self, *k);
                let seeds = match how {
                    Restart::WithSeeds => self.others(*k),
                    Restart::Seedless => Vec::new(),
                    Restart::Renamed => {
                        let slot = &mut self.slots[*k];
                        slot.generation += 1;
                        slot.name = format!("n{}-{}", k + 1, slot.generation);
                        self.removals.push(old.clone());
                        Vec::new()
                    }
                };
                self.start_node(*k, &seeds);
                match how {
                    Restart::Renamed => format!("{old} as {}", name(self, *k)),
                    _ => old,
                }
            }
            Action::Freeze(k) => {
                if let Some(process) = self.process(*k) {
                    process.freeze();
                }
                name(self, *k)
            }
            Action::Thaw(k) => {
                if let Some(process) = self.process(*k) {
                    process.thaw();
                }
                name(self, *k)
            }
            Action::Split(minority) => {
                let majority: Vec<usize> = (0..self.slots.len()).filter(|k| !minority.contains(k)).collect();
                self.net.partition(&[minority, &majority])?;
                let names =
                    |group: &[usize]| group.iter().map(|k| name(self, *k)).collect::<Vec<_>>().join(",");
                format!("{} | {}", names(minority), names(&majority))
            }
            Action::OneWay(from, to) => {
                self.net.drop_between(*from, *to)?;
                format!("{} -> {} dropped", name(self, *from), name(self, *to))
            }
            Action::Deafen(k) => {
                for other in (0..self.slots.len()).filter(|j| j != k) {
                    self.net.drop_between(other, *k)?;
                }
                format!("nothing reaches {}", name(self, *k))
            }
            Action::Isolate(k) => {
                self.net.isolate(*k)?;
                name(self, *k)
            }
            Action::Heal => {
                self.net.heal()?;
                String::new()
            }
        };
        self.fault(action.kind(), detail);
        Ok(())
    }

    /// Asks a running node to remove each renamed node's old name (refused until the old
    /// process is seen down there); a removal is done once some node reports it.
    fn try_removals(&mut self) {
        let removed: BTreeSet<String> = self
            .slots
            .iter()
            .filter_map(|slot| slot.process.as_ref())
            .flat_map(|p| p.events(&serde_json::json!({"event": "member_removed"})))
            .filter_map(|e| e["name"].as_str().map(String::from))
            .collect();
        self.removals.retain(|old| !removed.contains(old));
        let removals = self.removals.clone();
        if let Some(process) = self.slots.iter_mut().find_map(|slot| slot.process.as_mut()) {
            for old in removals {
                let _ = process.send_line(&format!("remove-member {old}"));
            }
        }
    }

    /// The final heal, restarts, the clients' stop and the final reads.
    fn finish(&mut self) -> Result<(), TestkitError> {
        self.net.heal()?;
        self.fault("heal", "final".into());
        for k in 0..self.slots.len() {
            match self.slots[k].process.as_mut() {
                Some(process) => process.thaw(),
                None => {
                    let seeds = self.others(k);
                    let name = self.slots[k].name.clone();
                    self.fault("restart-seeds", format!("{name} (final)"));
                    self.start_node(k, &seeds);
                }
            }
        }
        // Let restarted nodes join and read their counters with a majority before stopping.
        let settle = Instant::now() + Duration::from_secs(10);
        while Instant::now() < settle {
            self.try_removals();
            self.check_alive();
            std::thread::sleep(Duration::from_secs(1));
        }
        for slot in &mut self.slots {
            if let Some(process) = slot.process.as_mut() {
                let _ = process.send_line("workload-stop");
            }
        }
        // Writes in flight end within their majority timeout (1 s).
        std::thread::sleep(Duration::from_secs(2));
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        let reads = loop {
            let reads = self.read_counters();
            let agree =
                reads.iter().all(|(_, read)| read.is_some()) && reads.windows(2).all(|w| w[0].1 == w[1].1);
            if agree || Instant::now() >= deadline {
                break reads;
            }
            self.try_removals();
            std::thread::sleep(Duration::from_secs(1));
        };
        let at = unix_ms();
        for (k, read) in reads {
            let node = self.slots[k].name.clone();
            match read {
                Some((majority, local)) => {
                    for (key, value) in [("nemesis-majority", majority), ("nemesis-local", local)] {
                        self.record(&Event::CrdtFinal { at, node: node.clone(), key: key.into(), value });
                    }
                }
                None => self.node_failed(k, "did not answer `workload-read` within 5 s at the end".into()),
            }
        }
        self.check_alive();
        for k in 0..self.slots.len() {
            if let Some(process) = self.slots[k].process.as_mut() {
                process.terminate(Duration::from_secs(5));
            }
            self.retire(k);
        }
        Ok(())
    }

    /// Each running node's counters, by slot: `(majority, local)` (a counter never written or
    /// merged there reads 0), or `None` if it did not answer within 5 s.
    fn read_counters(&mut self) -> Vec<(usize, Option<(i64, i64)>)> {
        let pattern = serde_json::json!({"event": "workload_counters"});
        let mut reads = Vec::new();
        for (k, slot) in self.slots.iter_mut().enumerate() {
            let Some(process) = slot.process.as_mut() else { continue };
            let before = process.events(&pattern).len();
            let _ = process.send_line("workload-read");
            let read = process
                .wait_for_events(&pattern, before + 1, Duration::from_secs(5))
                .ok()
                .and_then(|events| events.last().cloned())
                .map(|e| (e["majority"].as_i64().unwrap_or(0), e["local"].as_i64().unwrap_or(0)));
            reads.push((k, read));
        }
        reads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_one_schedule_that_keeps_a_majority_alive_and_ends_every_fault() {
        let steps = plan(5, 7, Duration::from_secs(600));
        assert_eq!(steps, plan(5, 7, Duration::from_secs(600)), "the same seed, the same schedule");
        assert_ne!(steps, plan(5, 8, Duration::from_secs(600)));
        let (mut dead, mut frozen, mut cut) = (BTreeSet::new(), None, false);
        let mut kinds = BTreeSet::new();
        for step in &steps {
            kinds.insert(step.action.kind());
            match &step.action {
                Action::Kill(k) => {
                    assert!(dead.insert(*k) && frozen.is_none() && !cut);
                    assert!(dead.len() <= 2, "at most a minority of 5 dead");
                }
                Action::Restart(k, _) => assert!(dead.remove(k)),
                Action::Freeze(k) => {
                    assert!(!dead.contains(k) && frozen.is_none());
                    frozen = Some(*k);
                }
                Action::Thaw(k) => assert_eq!(frozen.take(), Some(*k)),
                Action::Heal => {
                    assert!(cut);
                    cut = false;
                }
                _ => {
                    assert!(!cut && frozen.is_none(), "one partition at a time");
                    cut = true;
                }
            }
        }
        assert_eq!(kinds.len(), 11, "every kind of fault in ten minutes: {kinds:?}");
        assert!(steps.windows(2).all(|w| w[0].at <= w[1].at));
    }
}

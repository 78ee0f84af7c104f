//! Test kit for multi-node tests with real processes: launch node processes on loopback, read
//! what they print, kill -9 them, freeze (SIGSTOP) and thaw (SIGCONT) them. Every process is
//! killed when its handle is dropped, so a failing test leaves nothing behind.
//!
//! Partitions: with this feature, [`Cluster::block_peers`](crate::Cluster::block_peers) and
//! [`Cluster::unblock_all`](crate::Cluster::unblock_all) cut a node's sessions with named peers
//! and restore them (`foundation node` takes them as `partition N1,N2` and `heal` on stdin); block
//! on both sides, as a real partition cuts both ways.
//!
//! Real hosts and packet-dropping partitions: [`netns::TestNet`] (network namespaces on a
//! bridge, faults by `iptables`). Histories of what clients saw and their checker:
//! [`history::check`]. The nemesis that runs node processes under a seeded schedule of faults
//! and checks their history: [`nemesis::run`].
//!
//! Enable with the `testkit` feature. Runtime-agnostic: plain threads, no tokio.

pub mod history;
pub mod nemesis;
pub mod netns;

use foundation_core::sync::MutexRecover;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 for a node to listen on.
///
/// Chosen below the kernel's ephemeral port range, so that no outgoing connection or `bind(0)`
/// can be given it between this check and the node's own bind (a real cause of "address in
/// use" when many nodes connect at once), and spread by process id and a counter so that tests
/// running in parallel do not pick the same one.
pub fn free_port() -> u16 {
    free_port_range(1)
}

/// `n` consecutive free TCP ports on 127.0.0.1 (see [`free_port`]), for launchers that number
/// their nodes' ports from a base.
pub fn free_port_range(n: u16) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (low, high) = below_ephemeral();
    let span = u32::from(high - low).saturating_sub(u32::from(n)).max(1);
    let seed = std::process::id().wrapping_mul(7919);
    for _ in 0..span.min(5000) {
        let offset = (seed.wrapping_add(NEXT.fetch_add(u32::from(n), Ordering::Relaxed))) % span;
        let base = low + offset as u16;
        let all: Vec<_> = (0..n).map(|k| std::net::TcpListener::bind(("127.0.0.1", base + k))).collect();
        if all.iter().all(Result::is_ok) {
            return base;
        }
    }
    // Everything below the ephemeral range is taken: let the kernel choose.
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_or(0, |a| a.port())
}

/// Ports between 10000 and the start of the ephemeral range (Linux: 32768 by default).
fn below_ephemeral() -> (u16, u16) {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    if ephemeral_low > 12_000 {
        (10_000, ephemeral_low)
    } else {
        (ephemeral_low.saturating_add(30_000), 65_000)
    }
}

/// The `XDG_STATE_HOME` that processes started by this test process get (unless a test sets
/// its own): a directory of this process's own under the temporary directory, so that the
/// default state directories of `foundation node` are never shared between test runs. Those of
/// earlier test processes that have exited are removed the first time it is asked for.
pub fn state_home() -> std::path::PathBuf {
    static HOME: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    HOME.get_or_init(|| {
        let base = std::env::temp_dir().join("foundation-testkit");
        if let Ok(entries) = std::fs::read_dir(&base) {
            for entry in entries.flatten() {
                let pid = entry.file_name().to_string_lossy().parse::<u32>().ok();
                let alive = pid.is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
                if !alive {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let home = base.join(std::process::id().to_string());
        let _ = std::fs::create_dir_all(&home);
        home
    })
    .clone()
}

/// Errors of the test kit.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// The process could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// What was run.
        program: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// Test hosts could not be made or changed (no right to create namespaces, `ip` or
    /// `iptables` missing): the command and what it said.
    #[error("test network: {reason}")]
    Network {
        /// What failed.
        reason: String,
    },
    /// A nemesis run could not be made or read (its anomalies are in its report, not here).
    #[error("nemesis: {reason}")]
    Nemesis {
        /// What failed.
        reason: String,
    },
    /// The expected output did not appear.
    #[error(
        "node `{node}` did not print {wanted} line(s) matching {pattern:?} within {waited:?}; it printed:\n{output}"
    )]
    Timeout {
        /// The node.
        node: String,
        /// What was awaited.
        pattern: String,
        /// How many matching lines.
        wanted: usize,
        /// How long.
        waited: Duration,
        /// Everything it printed so far.
        output: String,
    },
}

#[derive(Default)]
struct Output {
    lines: Mutex<Vec<Line>>,
    changed: Condvar,
}

/// A printed line, and its JSON object if it is one (parsed once, as it arrives).
#[derive(Clone)]
struct Line {
    text: String,
    event: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A node process started by a test.
pub struct NodeProcess {
    name: String,
    child: Child,
    output: Arc<Output>,
}

impl NodeProcess {
    /// Starts `program args...`, capturing its standard output line by line.
    pub fn spawn<I, S>(name: &str, program: impl AsRef<OsStr>, args: I) -> Result<Self, TestkitError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Self::spawn_with_env(name, program, args, std::iter::empty::<(String, String)>())
    }

    /// [`spawn`](Self::spawn) with extra environment variables.
    pub fn spawn_with_env<I, S, E, K, V>(
        name: &str,
        program: impl AsRef<OsStr>,
        args: I,
        env: E,
    ) -> Result<Self, TestkitError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
        E: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let program = program.as_ref();
        let mut command = Command::new(program);
        // Isolated state: node processes keep their state directories under this test
        // process's own `XDG_STATE_HOME` (unless the test sets one), so that no run sees
        // another's remembered members, and a node restarted by the same test finds its own.
        command.env("XDG_STATE_HOME", state_home());
        let mut child = command
            .args(args)
            .envs(env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|source| TestkitError::Spawn {
                program: program.to_string_lossy().into_owned(),
                source,
            })?;
        let output = Arc::new(Output::default());
        if let Some(stdout) = child.stdout.take() {
            let output = output.clone();
            std::thread::spawn(move || {
                for text in BufReader::new(stdout).lines().map_while(Result::ok) {
                    let event = serde_json::from_str(&text).ok();
                    output.lines.lock_or_recover().push(Line { text, event });
                    output.changed.notify_all();
                }
            });
        }
        Ok(NodeProcess { name: name.to_string(), child, output })
    }

    /// The name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The operating-system process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes one line to the process's standard input (`foundation node` takes commands there).
    pub fn send_line(&mut self, line: &str) -> std::io::Result<()> {
        use std::io::Write as _;
        let stdin = self.child.stdin.as_mut().ok_or_else(|| std::io::Error::other("stdin is closed"))?;
        writeln!(stdin, "{line}")?;
        stdin.flush()
    }

    /// Everything printed so far.
    pub fn output(&self) -> Vec<String> {
        let lines = self.output.lines.lock_or_recover();
        lines.iter().map(|line| line.text.clone()).collect()
    }

    /// Waits until a printed line contains `pattern`; returns the first such line.
    pub fn wait_for(&self, pattern: &str, timeout: Duration) -> Result<String, TestkitError> {
        self.wait_for_count(pattern, 1, timeout).map(|mut lines| lines.remove(0))
    }

    /// Waits until `count` printed lines contain `pattern`; returns them.
    pub fn wait_for_count(
        &self,
        pattern: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<String>, TestkitError> {
        let lines = self.wait_for_lines(|line| line.text.contains(pattern), pattern, count, timeout)?;
        Ok(lines.into_iter().map(|line| line.text).collect())
    }

    /// Waits until a printed line is a JSON object holding every field of `pattern` with the
    /// same value (`foundation node --json` prints one such object per line, its kind under
    /// `"event"`); returns that object. Numbers compare as JSON does: `2` does not match `2.0`.
    pub fn wait_for_event(
        &self,
        pattern: &serde_json::Value,
        timeout: Duration,
    ) -> Result<serde_json::Value, TestkitError> {
        self.wait_for_events(pattern, 1, timeout).map(|mut events| events.remove(0))
    }

    /// Waits until `count` printed lines match `pattern` (see
    /// [`wait_for_event`](Self::wait_for_event)); returns them, oldest first.
    pub fn wait_for_events(
        &self,
        pattern: &serde_json::Value,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<serde_json::Value>, TestkitError> {
        let lines =
            self.wait_for_lines(|line| line.matches(pattern), &pattern.to_string(), count, timeout)?;
        Ok(lines.into_iter().filter_map(Line::into_event).collect())
    }

    /// The printed lines so far that match `pattern` (see [`wait_for_event`](Self::wait_for_event)),
    /// as JSON; `json!({})` gives every JSON line.
    pub fn events(&self, pattern: &serde_json::Value) -> Vec<serde_json::Value> {
        let lines = self.output.lines.lock_or_recover();
        lines.iter().filter(|line| line.matches(pattern)).cloned().filter_map(Line::into_event).collect()
    }

    /// Waits until `count` lines match; returns (copies of) the matching lines.
    fn wait_for_lines(
        &self,
        matches: impl Fn(&Line) -> bool,
        pattern: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<Line>, TestkitError> {
        let deadline = Instant::now() + timeout;
        let mut lines = self.output.lines.lock_or_recover();
        loop {
            if lines.iter().filter(|line| matches(line)).count() >= count {
                return Ok(lines.iter().filter(|line| matches(line)).cloned().collect());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(TestkitError::Timeout {
                    node: self.name.clone(),
                    pattern: pattern.to_string(),
                    wanted: count,
                    waited: timeout,
                    output: lines.iter().map(|line| line.text.as_str()).collect::<Vec<_>>().join("\n"),
                });
            }
            lines =
                self.output.changed.wait_timeout(lines, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// Kills the process at once (SIGKILL), as a crash or power loss would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the process to exit, up to `timeout` (then kills it).
    /// Returns whether it exited by itself with success.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        self.signal("TERM");
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
        false
    }

    /// Freezes the process (SIGSTOP): its connections stay open but it answers nothing.
    pub fn freeze(&self) {
        self.signal("STOP");
    }

    /// Resumes a frozen process (SIGCONT).
    pub fn thaw(&self) {
        self.signal("CONT");
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .stderr(Stdio::null())
            .status();
    }
}

impl Line {
    /// Whether this line is a JSON object holding every field of `pattern` (an object) with the
    /// same value.
    fn matches(&self, pattern: &serde_json::Value) -> bool {
        match (&self.event, pattern.as_object()) {
            (Some(fields), Some(wanted)) => wanted.iter().all(|(key, value)| fields.get(key) == Some(value)),
            _ => false,
        }
    }

    fn into_event(self) -> Option<serde_json::Value> {
        self.event.map(serde_json::Value::Object)
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if self.is_running() {
            // Resume a frozen process first, so that it is not left stopped if the kill races.
            self.thaw();
            self.kill();
        }
    }
}

impl std::fmt::Debug for NodeProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeProcess").field("name", &self.name).field("pid", &self.child.id()).finish()
    }
}

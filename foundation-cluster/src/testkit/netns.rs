//! Test hosts in Linux network namespaces, and real partitions between them.
//!
//! [`TestNet::new`] makes one namespace per host, joined by a bridge that lives in a namespace
//! of its own (nothing is added to the machine's own network: the test's hosts reach each
//! other and nothing else), one address per host on a private /24. [`TestNet::spawn`] starts a
//! program inside a host; the faults drop packets with `iptables` inside the hosts, so sockets
//! stay open and a peer learns of the partition only by its silence, as on a real network:
//! [`isolate`](TestNet::isolate) a host, [`drop_between`](TestNet::drop_between) one way only,
//! [`partition`](TestNet::partition) into groups, [`degrade`](TestNet::degrade) a host's link
//! with delay and loss (`tc netem`, where the kernel has it), and [`heal`](TestNet::heal).
//!
//! Everything is removed when the `TestNet` is dropped (also when a test panics), and
//! namespaces left by test processes that died are removed by the next `TestNet::new`.
//!
//! Needs the right to create namespaces (root, or `CAP_SYS_ADMIN` and `CAP_NET_ADMIN`),
//! `ip` (iproute2) and `iptables`. [`TestNet::new`] tries, and says why it could not: a test
//! then skips with that reason, unless [`required`] says the environment must have them (as
//! `.ci/run` does).

use std::ffi::OsStr;
use std::process::{Command, Stdio};

use super::{NodeProcess, TestkitError};

/// Names of every namespace this module makes start with this (then the test process's id).
const PREFIX: &str = "fdn";

/// Whether tests must not skip when namespaces cannot be made (`CI_NETNS_TEST=required`).
pub fn required() -> bool {
    std::env::var("CI_NETNS_TEST").is_ok_and(|v| v == "required")
}

/// Hosts in network namespaces on one bridge. Dropping it removes them.
#[derive(Debug)]
pub struct TestNet {
    id: String,
    hosts: Vec<Host>,
}

/// One host: its namespace and address.
#[derive(Debug, Clone)]
pub struct Host {
    namespace: String,
    address: std::net::Ipv4Addr,
}

impl Host {
    /// Its address on the bridge.
    pub fn address(&self) -> std::net::Ipv4Addr {
        self.address
    }

    /// Its network namespace's name (for `ip netns exec`).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
}

/// Runs `ip`/`iptables` with `args`; the error names the command and what it printed.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `{program}`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("`{program} {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn in_ns(namespace: &str, args: &[&str]) -> Result<(), String> {
    let mut all = vec!["netns", "exec", namespace];
    all.extend_from_slice(args);
    run("ip", &all)
}

/// Removes namespaces of test processes that are gone (a killed test leaves its own behind).
fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(rest) = name.strip_prefix(PREFIX).and_then(|r| r.strip_prefix('-')) else { continue };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = run("ip", &["netns", "del", name]);
        }
    }
}

impl TestNet {
    /// `hosts` hosts (at most 200) on a bridge, addresses `10.X.Y.1` to `10.X.Y.hosts`. The
    /// error says why the machine cannot: a test skips with it unless [`required`].
    pub fn new(hosts: usize) -> Result<TestNet, TestkitError> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        assert!((1..=200).contains(&hosts), "1 to 200 hosts");
        remove_stale();
        let id = format!("{PREFIX}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let mut net = TestNet { id, hosts: Vec::new() };
        net.build(hosts).map_err(|reason| TestkitError::Network { reason })?;
        Ok(net)
    }

    fn switch(&self) -> String {
        format!("{}-sw", self.id)
    }

    fn build(&mut self, hosts: usize) -> Result<(), String> {
        let switch = self.switch();
        run("ip", &["netns", "add", &switch])?;
        in_ns(&switch, &["ip", "link", "add", "br0", "type", "bridge"])?;
        in_ns(&switch, &["ip", "link", "set", "br0", "up"])?;
        // A private /24 per test process and net: namespaces are isolated, so the choice only
        // keeps addresses readable in logs.
        let (x, y) = ((std::process::id() % 200 + 20) as u8, (self.id.len() % 250) as u8);
        for k in 0..hosts {
            let namespace = format!("{}-h{k}", self.id);
            let address = std::net::Ipv4Addr::new(10, x, y, k as u8 + 1);
            run("ip", &["netns", "add", &namespace])?;
            self.hosts.push(Host { namespace: namespace.clone(), address });
            let (inside, outside) = (format!("v{k}"), format!("p{k}"));
            in_ns(&switch, &["ip", "link", "add", &outside, "type", "veth", "peer", "name", &inside])?;
            in_ns(&switch, &["ip", "link", "set", &inside, "netns", &namespace])?;
            in_ns(&switch, &["ip", "link", "set", &outside, "master", "br0", "up"])?;
            in_ns(&namespace, &["ip", "link", "set", "lo", "up"])?;
            in_ns(&namespace, &["ip", "link", "set", &inside, "name", "eth0"])?;
            in_ns(&namespace, &["ip", "addr", "add", &format!("{address}/24"), "dev", "eth0"])?;
            in_ns(&namespace, &["ip", "link", "set", "eth0", "up"])?;
            // Multicast (zero-config discovery) leaves by eth0.
            in_ns(&namespace, &["ip", "route", "add", "224.0.0.0/4", "dev", "eth0"])?;
        }
        // The fault commands must work before a test relies on them.
        in_ns(&self.hosts[0].namespace, &["iptables", "-S"])?;
        Ok(())
    }

    /// The hosts, in order.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// Host `k`.
    pub fn host(&self, k: usize) -> &Host {
        &self.hosts[k]
    }

    /// Starts `program args...` inside host `k` (see [`NodeProcess::spawn_with_env`]).
    pub fn spawn<I, S, E, K, V>(
        &self,
        k: usize,
        name: &str,
        program: impl AsRef<OsStr>,
        args: I,
        env: E,
    ) -> Result<NodeProcess, TestkitError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
        E: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let mut all: Vec<std::ffi::OsString> = vec![
            "netns".into(),
            "exec".into(),
            self.hosts[k].namespace.clone().into(),
            program.as_ref().into(),
        ];
        all.extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        // `ip netns exec` replaces itself with the program: the process is the program.
        NodeProcess::spawn_with_env(name, "ip", all, env)
    }

    /// Drops every packet host `k` sends or receives on the bridge; its sockets stay open.
    pub fn isolate(&self, k: usize) -> Result<(), TestkitError> {
        let ns = &self.hosts[k].namespace;
        self.fault(|| {
            in_ns(ns, &["iptables", "-A", "INPUT", "-i", "eth0", "-j", "DROP"])?;
            in_ns(ns, &["iptables", "-A", "OUTPUT", "-o", "eth0", "-j", "DROP"])
        })
    }

    /// Drops what host `from` sends to host `to` (one way only: `to` still reaches `from`),
    /// multicast included: dropped as it leaves `from` for `to`'s address and as it arrives at
    /// `to` from `from`'s.
    pub fn drop_between(&self, from: usize, to: usize) -> Result<(), TestkitError> {
        let (out_ns, dst) = (&self.hosts[from].namespace, self.hosts[to].address.to_string());
        let (in_ns_, src) = (&self.hosts[to].namespace, self.hosts[from].address.to_string());
        self.fault(|| {
            in_ns(out_ns, &["iptables", "-A", "OUTPUT", "-d", &dst, "-j", "DROP"])?;
            in_ns(in_ns_, &["iptables", "-A", "INPUT", "-s", &src, "-j", "DROP"])
        })
    }

    /// Splits the hosts into `groups` (indices): packets between groups are dropped both ways;
    /// a host in no group is cut off from all.
    pub fn partition(&self, groups: &[&[usize]]) -> Result<(), TestkitError> {
        let group_of = |k: usize| groups.iter().position(|g| g.contains(&k));
        for from in 0..self.hosts.len() {
            for to in 0..self.hosts.len() {
                if from != to && (group_of(from).is_none() || group_of(from) != group_of(to)) {
                    self.drop_between(from, to)?;
                }
            }
        }
        Ok(())
    }

    /// Delays every packet host `k` sends by `delay` and drops `loss_percent` of them, with
    /// `tc netem`. Fails, saying why, where the kernel has no `sch_netem` (or `tc` is missing):
    /// a test then skips with that reason. [`heal`](Self::heal) ends it.
    pub fn degrade(
        &self,
        k: usize,
        delay: std::time::Duration,
        loss_percent: f64,
    ) -> Result<(), TestkitError> {
        let ns = &self.hosts[k].namespace;
        let (delay, loss) = (format!("{}ms", delay.as_millis()), format!("{loss_percent}%"));
        self.fault(|| {
            in_ns(
                ns,
                &["tc", "qdisc", "replace", "dev", "eth0", "root", "netem", "delay", &delay, "loss", &loss],
            )
            .map_err(|e| format!("{e} (delay and loss need the kernel's sch_netem and iproute2's tc)"))
        })
    }

    /// Limits what host `k` sends to `mbit` Mbit/s with `tc tbf` (a token bucket of 64 KiB, at
    /// most 200 ms of packets queued in the qdisc; TCP's own queues hold the rest, as on a slow
    /// real link). Fails, saying why, where the kernel has no `sch_tbf` (or `tc` is missing).
    /// [`heal`](Self::heal) ends it.
    pub fn limit_rate(&self, k: usize, mbit: u32) -> Result<(), TestkitError> {
        let ns = &self.hosts[k].namespace;
        let rate = format!("{mbit}mbit");
        self.fault(|| {
            in_ns(
                ns,
                &[
                    "tc", "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", &rate, "burst", "64kb",
                    "latency", "200ms",
                ],
            )
            .map_err(|e| format!("{e} (a rate limit needs the kernel's sch_tbf and iproute2's tc)"))
        })
    }

    /// Ends every fault: every host reaches every other again, without delay or loss.
    pub fn heal(&self) -> Result<(), TestkitError> {
        for host in &self.hosts {
            self.fault(|| in_ns(&host.namespace, &["iptables", "-F"]))?;
            // Only where `degrade` or `limit_rate` put a qdisc; absent, there is nothing to end.
            let _ = in_ns(&host.namespace, &["tc", "qdisc", "del", "dev", "eth0", "root"]);
        }
        Ok(())
    }

    fn fault(&self, apply: impl FnOnce() -> Result<(), String>) -> Result<(), TestkitError> {
        apply().map_err(|reason| TestkitError::Network { reason })
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        for host in &self.hosts {
            let _ = run("ip", &["netns", "del", &host.namespace]);
        }
        let _ = run("ip", &["netns", "del", &self.switch()]);
    }
}

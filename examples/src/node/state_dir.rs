//! Where `foundation node` keeps a node's state directory when none is given.
//!
//! - A named node: `STATE_ROOT/nodes/NAME-PORT` (the port keeps two clusters on one host that
//!   reuse names apart).
//! - A zero-config node (`--cluster`) keeps its name and last port in its state directory, so a
//!   restarted node is the same member at the same address: with no name, the first
//!   `STATE_ROOT/cluster/IP/slot-K` whose lock file no running process holds (the name, `node-`
//!   and a random id, is drawn once), so several such nodes on one host each take their own;
//!   with a name, `STATE_ROOT/cluster/IP/named-NAME`; with `--state-dir`, that directory.
//!
//! `STATE_ROOT` is [`foundation_core::files::state_root`]: `$XDG_STATE_HOME/foundation`, else
//! `$HOME/.local/state/foundation`, else a directory of this user's own in the temporary
//! directory. Directories made here are private (mode 0700).

use std::fs::File;
use std::net::IpAddr;
use std::path::PathBuf;

/// Slots tried before giving up (that many zero-config nodes running on one host at once).
const MAX_SLOTS: usize = 64;

/// Where node state directories live by default.
pub fn state_root() -> PathBuf {
    foundation_core::files::state_root()
}

/// The default state directory of the node `name` listening on `port`.
pub fn default_node_dir(name: &str, port: u16) -> PathBuf {
    state_root().join("nodes").join(format!("{}-{port}", safe(name)))
}

/// Where a zero-config node keeps its name and port: a slot, a named directory, or the state
/// directory it was given.
pub struct ClusterSlot {
    /// The directory (the node's state directory).
    pub dir: PathBuf,
    /// The port it listened on last time, if any.
    pub port: Option<u16>,
}

impl ClusterSlot {
    /// The slot in `dir` (created if needed), with the port kept there.
    pub fn open(dir: PathBuf) -> anyhow::Result<Self> {
        foundation_core::files::create_private_dir(&dir)?;
        let port = std::fs::read_to_string(dir.join("port")).ok().and_then(|p| p.trim().parse().ok());
        Ok(ClusterSlot { dir, port })
    }

    /// The name kept in the slot, drawn (`node-` and six hex digits) and kept the first time.
    pub fn name(&self) -> anyhow::Result<String> {
        match std::fs::read_to_string(self.dir.join("name")) {
            Ok(name) if !name.trim().is_empty() => Ok(name.trim().to_string()),
            _ => {
                let name = format!("node-{:06x}", foundation_core::random::next_u64() & 0xff_ffff);
                std::fs::write(self.dir.join("name"), &name)?;
                Ok(name)
            }
        }
    }

    /// Keeps the port the node listens on now, for its next start.
    pub fn remember_port(&self, port: u16) {
        if let Err(e) = std::fs::write(self.dir.join("port"), port.to_string()) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot keep the node's port");
        }
    }
}

/// The directory of a zero-config node called `name` on `ip` (its port is kept there).
pub fn named_cluster_dir(ip: IpAddr, name: &str) -> PathBuf {
    cluster_root(ip).join(format!("named-{}", safe(name)))
}

fn cluster_root(ip: IpAddr) -> PathBuf {
    state_root().join("cluster").join(ip.to_string().replace(':', "_"))
}

fn safe(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect()
}

/// The first slot no running node holds. `ip` is part of the slot's path: nodes on different
/// addresses of one host do not share.
pub fn claim_cluster_slot(ip: IpAddr) -> anyhow::Result<ClusterSlot> {
    let root = cluster_root(ip);
    for k in 0..MAX_SLOTS {
        let dir = root.join(format!("slot-{k}"));
        foundation_core::files::create_private_dir(&dir)?;
        let lock = File::options().create(true).truncate(false).write(true).open(dir.join("lock"))?;
        // Free now; the node locks it again when it opens its state (a node that starts at the
        // same moment and takes it first makes this start fail with "in use": run it again).
        if lock.try_lock().is_err() {
            continue;
        }
        drop(lock);
        return ClusterSlot::open(dir);
    }
    anyhow::bail!("all {MAX_SLOTS} zero-config node slots under {} are in use", root.display())
}

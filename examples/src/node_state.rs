//! Where `foundation node` keeps a node's state directory when none is given.
//!
//! - A named node: `STATE_ROOT/nodes/NAME-PORT` (the port keeps two clusters on one host that
//!   reuse names apart).
//! - A zero-config node (`--cluster`, no name): the first `STATE_ROOT/cluster/slot-K` whose lock
//!   file no running process holds. The slot keeps the node's name (`node-` and a random id,
//!   drawn once) and its last port, so a restarted node is the same member at the same address;
//!   several such nodes on one host each take their own slot.
//!
//! `STATE_ROOT` is `$XDG_STATE_HOME/foundation`, else `$HOME/.local/state/foundation`, else
//! `foundation-state` in the temporary directory.

use std::fs::File;
use std::net::IpAddr;
use std::path::PathBuf;

/// Slots tried before giving up (that many zero-config nodes running on one host at once).
const MAX_SLOTS: usize = 64;

/// Where node state directories live by default.
pub fn state_root() -> PathBuf {
    let from = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from);
    from("XDG_STATE_HOME")
        .or_else(|| from("HOME").map(|home| home.join(".local").join("state")))
        .map_or_else(|| std::env::temp_dir().join("foundation-state"), |base| base.join("foundation"))
}

/// The default state directory of the node `name` listening on `port`.
pub fn default_node_dir(name: &str, port: u16) -> PathBuf {
    let safe: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    state_root().join("nodes").join(format!("{safe}-{port}"))
}

/// A zero-config node's slot.
pub struct ClusterSlot {
    /// The slot's directory (the node's state directory).
    pub dir: PathBuf,
    /// The node's name, kept in the slot.
    pub name: String,
    /// The port it listened on last time, if any.
    pub port: Option<u16>,
}

impl ClusterSlot {
    /// Keeps the port the node listens on now, for its next start.
    pub fn remember_port(&self, port: u16) {
        if let Err(e) = std::fs::write(self.dir.join("port"), port.to_string()) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot keep the node's port");
        }
    }
}

/// The first slot no running node holds, with its name (drawn the first time) and last port.
/// `ip` is part of the slot's path: nodes on different addresses of one host do not share.
pub fn claim_cluster_slot(ip: IpAddr) -> anyhow::Result<ClusterSlot> {
    let root = state_root().join("cluster").join(ip.to_string().replace(':', "_"));
    for k in 0..MAX_SLOTS {
        let dir = root.join(format!("slot-{k}"));
        std::fs::create_dir_all(&dir)?;
        let lock = File::options().create(true).truncate(false).write(true).open(dir.join("lock"))?;
        // Free now; the node locks it again when it opens its state (a node that starts at the
        // same moment and takes it first makes this start fail with "in use": run it again).
        if lock.try_lock().is_err() {
            continue;
        }
        drop(lock);
        let name = match std::fs::read_to_string(dir.join("name")) {
            Ok(name) if !name.trim().is_empty() => name.trim().to_string(),
            _ => {
                let name = format!("node-{:06x}", foundation_core::random::next_u64() & 0xff_ffff);
                std::fs::write(dir.join("name"), &name)?;
                name
            }
        };
        let port = std::fs::read_to_string(dir.join("port")).ok().and_then(|p| p.trim().parse().ok());
        return Ok(ClusterSlot { dir, name, port });
    }
    anyhow::bail!("all {MAX_SLOTS} zero-config node slots under {} are in use", root.display())
}

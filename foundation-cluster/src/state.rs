//! What a node keeps across restarts in its state directory (`cluster.state_dir`).
//!
//! - `incarnation`: a number that grows with every start of the node (the Unix time in
//!   milliseconds at start, or one more than the last one if the clock went back). Peers learn
//!   it from heartbeats; a node removed for good is refused until an incarnation above the one
//!   it was removed at connects.
//! - `members.json`: every member this node has known that did not leave on purpose and was
//!   not removed (name and address), the nodes removed for good, and a hash of the cookie (a
//!   file written under another cookie belongs to another cluster and is ignored). Remembered
//!   members count towards every majority after a restart (a restarted node never forms one
//!   alone) and are dialled like seeds.
//! - `lock`: held while the process runs (an advisory file lock), so that two processes never
//!   share a directory.
//!
//! Files are replaced whole (written beside, then renamed), so a crash leaves the old or the
//! new version, never half of one. A file that does not parse is reported and set aside
//! (renamed `*.corrupt`), not silently trusted.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// At most this many nodes removed for good are remembered (the oldest removals are forgotten).
pub const MAX_REMOVED: usize = 256;

/// Why the state directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A file or directory could not be read or written.
    #[error("state directory {dir}: {what}: {source}")]
    Io {
        /// The directory.
        dir: PathBuf,
        /// What was being done.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the directory.
    #[error(
        "state directory {dir} is in use by another process (its lock file is held): give each node its own"
    )]
    InUse {
        /// The directory.
        dir: PathBuf,
    },
}

/// A node removed for good: refused until an incarnation above `incarnation` connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Removal {
    /// The largest incarnation of the node known when it was removed (0: none known).
    pub incarnation: u64,
    /// When it was removed (Unix ms), to forget the oldest first.
    pub at_ms: u64,
}

/// What `members.json` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Remembered {
    /// A hash of the cookie the file was written under.
    pub cookie: String,
    /// Members by name: their advertised address.
    pub members: BTreeMap<String, String>,
    /// Nodes removed for good.
    pub removed: BTreeMap<String, Removal>,
}

impl Remembered {
    /// Adds removals (keeping the larger incarnation of each), then forgets the oldest beyond
    /// [`MAX_REMOVED`]. Whether anything changed.
    pub(crate) fn merge_removed(&mut self, removed: impl IntoIterator<Item = (String, Removal)>) -> bool {
        let mut changed = false;
        for (name, removal) in removed {
            let entry = self.removed.entry(name.clone()).or_insert(Removal { incarnation: 0, at_ms: 0 });
            if removal.incarnation > entry.incarnation || (entry.at_ms == 0 && removal.at_ms > 0) {
                *entry = Removal { incarnation: entry.incarnation.max(removal.incarnation), ..removal };
                changed = true;
            }
            if self.members.remove(&name).is_some() {
                changed = true;
            }
        }
        while self.removed.len() > MAX_REMOVED {
            let oldest = self.removed.iter().min_by_key(|(_, r)| r.at_ms).map(|(n, _)| n.clone());
            if let Some(oldest) = oldest {
                self.removed.remove(&oldest);
                changed = true;
            }
        }
        changed
    }

    /// Whether `incarnation` of `name` was removed for good.
    pub(crate) fn is_removed(&self, name: &str, incarnation: u64) -> bool {
        self.removed.get(name).is_some_and(|r| incarnation <= r.incarnation)
    }
}

/// A node's state directory, locked for this process.
#[derive(Debug)]
pub(crate) struct NodeState {
    dir: PathBuf,
    /// Held for the life of the process.
    _lock: File,
    /// This process's incarnation.
    pub incarnation: u64,
    /// What the directory remembered at start (under this cookie).
    pub remembered: Remembered,
}

/// The Unix time in milliseconds.
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A hash of the cookie, so that the file tells clusters apart without holding the secret.
pub(crate) fn cookie_hash(cookie: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("foundation-state:{cookie}").as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

impl NodeState {
    /// Opens (creating it if needed) and locks `dir`, moves the incarnation on and reads what
    /// it remembers under `cookie`.
    pub(crate) fn open(dir: &Path, cookie: &str) -> Result<Self, StateError> {
        let io = |what: &str| {
            let what = what.to_string();
            move |source| StateError::Io { dir: dir.to_path_buf(), what, source }
        };
        std::fs::create_dir_all(dir).map_err(io("create it"))?;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))
            .map_err(io("open the lock file"))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StateError::InUse { dir: dir.to_path_buf() });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io("lock it")(e)),
        }
        let last: u64 = match std::fs::read_to_string(dir.join("incarnation")) {
            Ok(text) => text.trim().parse().unwrap_or_else(|_| {
                tracing::warn!(dir = %dir.display(), "unreadable incarnation file: starting from the clock");
                0
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io("read the incarnation")(e)),
        };
        let incarnation = unix_ms().max(last + 1);
        write_atomically(dir, "incarnation", incarnation.to_string().as_bytes())
            .map_err(io("write the incarnation"))?;
        let hash = cookie_hash(cookie);
        let remembered = match std::fs::read(dir.join("members.json")) {
            Ok(bytes) => match serde_json::from_slice::<Remembered>(&bytes) {
                Ok(r) if r.cookie == hash => r,
                Ok(_) => {
                    tracing::warn!(dir = %dir.display(), "members.json was written under another cookie: another cluster's, not used");
                    Remembered::default()
                }
                Err(e) => {
                    tracing::error!(dir = %dir.display(), error = %e, "members.json does not parse: set aside as members.json.corrupt");
                    let _ = std::fs::rename(dir.join("members.json"), dir.join("members.json.corrupt"));
                    Remembered::default()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Remembered::default(),
            Err(e) => return Err(io("read members.json")(e)),
        };
        let remembered = Remembered { cookie: hash, ..remembered };
        Ok(NodeState { dir: dir.to_path_buf(), _lock: lock, incarnation, remembered })
    }

    /// The directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes what is remembered now. Errors are logged: the node keeps running on what it
    /// knows in memory (it only forgets more at its next restart).
    pub(crate) fn save(&self, remembered: &Remembered) {
        let bytes = match serde_json::to_vec_pretty(remembered) {
            Ok(bytes) => bytes,
            Err(e) => return tracing::error!(error = %e, "cannot encode members.json"),
        };
        if let Err(e) = write_atomically(&self.dir, "members.json", &bytes) {
            tracing::error!(dir = %self.dir.display(), error = %e, "cannot write members.json");
        }
    }
}

/// Writes `name` in `dir` whole: to a temporary file first, then renamed over it.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_data()?;
    std::fs::rename(&tmp, dir.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("foundation-state-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn incarnations_grow_members_survive_and_another_cookie_or_process_is_refused() {
        let dir = temp_dir("basic");
        let first = NodeState::open(&dir, "c").unwrap();
        // A second process (here: a second open) is refused while the first holds it.
        assert!(matches!(NodeState::open(&dir, "c"), Err(StateError::InUse { .. })));
        let mut remembered = first.remembered.clone();
        remembered.members.insert("n2".into(), "127.0.0.1:4102".into());
        first.save(&remembered);
        let incarnation = first.incarnation;
        drop(first);

        let again = NodeState::open(&dir, "c").unwrap();
        assert!(again.incarnation > incarnation);
        assert_eq!(again.remembered.members.get("n2").map(String::as_str), Some("127.0.0.1:4102"));
        drop(again);

        // Another cookie: another cluster's file, not used.
        let other = NodeState::open(&dir, "other").unwrap();
        assert!(other.remembered.members.is_empty());
        drop(other);

        // Garbage is set aside, not trusted.
        std::fs::write(dir.join("members.json"), b"{ not json").unwrap();
        let garbage = NodeState::open(&dir, "c").unwrap();
        assert!(garbage.remembered.members.is_empty());
        assert!(dir.join("members.json.corrupt").exists());
        drop(garbage);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn removals_drop_members_keep_the_largest_incarnation_and_stay_bounded() {
        let mut r = Remembered::default();
        r.members.insert("n3".into(), "a".into());
        assert!(r.merge_removed([("n3".to_string(), Removal { incarnation: 5, at_ms: 10 })]));
        assert!(r.members.is_empty());
        assert!(r.is_removed("n3", 5) && r.is_removed("n3", 0) && !r.is_removed("n3", 6));
        // An older removal changes nothing.
        assert!(!r.merge_removed([("n3".to_string(), Removal { incarnation: 4, at_ms: 20 })]));
        for i in 0..(MAX_REMOVED as u64 + 10) {
            r.merge_removed([(format!("x{i}"), Removal { incarnation: 1, at_ms: 100 + i })]);
        }
        assert_eq!(r.removed.len(), MAX_REMOVED);
        assert!(!r.removed.contains_key("n3"), "the oldest removal is forgotten first");
    }
}

//! What a node keeps across restarts in its state directory (`cluster.state_dir`).
//!
//! - `incarnation`: a number that grows with every start of the node (the Unix time in
//!   milliseconds at start, or one more than the last one if the clock went back). Peers learn
//!   it from heartbeats; a node removed for good is refused until an incarnation above the one
//!   it was removed at connects.
//! - `members.json`: every member this node has known that did not leave on purpose and was
//!   not removed (name, address, last incarnation heard), the nodes removed for good (and
//!   when), the largest fencing token recorded, and a hash of the cookie (a file written under
//!   another cookie belongs to another cluster and is ignored). Remembered members count
//!   towards every majority after a restart (a restarted node never forms one alone) and are
//!   dialled like seeds.
//! - `lock`: held while the process runs (an advisory file lock), so that two processes never
//!   share a directory.
//!
//! Files are replaced whole (written beside, then renamed), so a crash leaves the old or the
//! new version, never half of one. A `members.json` that does not parse stops the start with an
//! error naming it (a node that forgot its members could act as a cluster of its own).

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
    /// `members.json` does not parse.
    #[error(
        "{file} does not parse ({reason}): the node will not start without knowing its members; fix it, or \
         delete it if this node should start as a new one (it then knows only its seeds)"
    )]
    Corrupt {
        /// The file.
        file: PathBuf,
        /// What is wrong with it.
        reason: String,
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

/// A node removed for good at `at_ms` (Unix ms, the remover's clock): every process of it
/// started before then (an incarnation below `at_ms`, or one never heard: 0) is removed; a
/// process started later is a new member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Removal {
    /// When it was removed.
    pub at_ms: u64,
}

/// A member as `members.json` remembers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RememberedMember {
    /// Its advertised address.
    pub addr: String,
    /// The incarnation last heard of it (0: none yet).
    #[serde(default)]
    pub incarnation: u64,
}

/// What `members.json` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Remembered {
    /// A hash of the cookie the file was written under.
    pub cookie: String,
    /// Members by name.
    pub members: BTreeMap<String, RememberedMember>,
    /// Nodes removed for good.
    pub removed: BTreeMap<String, Removal>,
    /// The largest fencing token this node has recorded (so that tokens keep growing across a
    /// restart of every node, whatever the clocks say).
    #[serde(default)]
    pub max_token: u64,
}

impl Remembered {
    /// Adds removals (keeping the later one of each), forgets remembered members they cover,
    /// then forgets the oldest removals beyond [`MAX_REMOVED`]. Whether anything changed.
    pub(crate) fn merge_removed(&mut self, removed: impl IntoIterator<Item = (String, Removal)>) -> bool {
        let mut changed = false;
        for (name, removal) in removed {
            let entry = self.removed.entry(name.clone()).or_insert(Removal { at_ms: 0 });
            if removal.at_ms > entry.at_ms {
                *entry = removal;
                changed = true;
            }
            if self.members.get(&name).is_some_and(|m| m.incarnation < entry.at_ms) {
                self.members.remove(&name);
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

    /// Whether the process of `name` with `incarnation` (0: unknown) was removed for good.
    pub(crate) fn is_removed(&self, name: &str, incarnation: u64) -> bool {
        self.removed.get(name).is_some_and(|r| incarnation < r.at_ms)
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
                // Starting with no memory would let a restarted node act as a cluster of its
                // own: refuse, and say what to do.
                Err(e) => {
                    return Err(StateError::Corrupt {
                        file: dir.join("members.json"),
                        reason: e.to_string(),
                    });
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
    fn incarnations_grow_members_survive_and_another_cookie_process_or_garbage_is_refused() {
        let dir = temp_dir("basic");
        let first = NodeState::open(&dir, "c").unwrap();
        // A second process (here: a second open) is refused while the first holds it.
        assert!(matches!(NodeState::open(&dir, "c"), Err(StateError::InUse { .. })));
        let mut remembered = first.remembered.clone();
        let n2 = RememberedMember { addr: "127.0.0.1:4102".into(), incarnation: 7 };
        remembered.members.insert("n2".into(), n2.clone());
        remembered.max_token = 41;
        first.save(&remembered);
        let incarnation = first.incarnation;
        drop(first);

        let again = NodeState::open(&dir, "c").unwrap();
        assert!(again.incarnation > incarnation);
        assert_eq!(again.remembered.members.get("n2"), Some(&n2));
        assert_eq!(again.remembered.max_token, 41);
        drop(again);

        // Another cookie: another cluster's file, not used.
        let other = NodeState::open(&dir, "other").unwrap();
        assert!(other.remembered.members.is_empty());
        drop(other);

        // Garbage stops the start, naming the file; nothing is lost.
        std::fs::write(dir.join("members.json"), b"{ not json").unwrap();
        let refused = NodeState::open(&dir, "c").unwrap_err();
        assert!(refused.to_string().contains("members.json does not parse"), "{refused}");
        assert_eq!(std::fs::read(dir.join("members.json")).unwrap(), b"{ not json");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_removal_covers_processes_started_before_it_only_and_stays_bounded() {
        let mut r = Remembered::default();
        r.members.insert("n3".into(), RememberedMember { addr: "a".into(), incarnation: 5 });
        r.members.insert("n4".into(), RememberedMember { addr: "b".into(), incarnation: 50 });
        assert!(r.merge_removed([("n3".to_string(), Removal { at_ms: 10 })]));
        // n4 was started after its removal: a new member, still remembered.
        assert!(r.merge_removed([("n4".to_string(), Removal { at_ms: 20 })]));
        assert!(!r.members.contains_key("n3") && r.members.contains_key("n4"));
        assert!(r.is_removed("n3", 5) && r.is_removed("n3", 0) && !r.is_removed("n3", 10));
        // An older removal changes nothing; gossip keeps the later one.
        assert!(!r.merge_removed([("n3".to_string(), Removal { at_ms: 4 })]));
        assert_eq!(r.removed["n3"].at_ms, 10);
        for i in 0..(MAX_REMOVED as u64 + 10) {
            r.merge_removed([(format!("x{i}"), Removal { at_ms: 100 + i })]);
        }
        assert_eq!(r.removed.len(), MAX_REMOVED);
        assert!(!r.removed.contains_key("n3"), "the oldest removal is forgotten first");
    }
}

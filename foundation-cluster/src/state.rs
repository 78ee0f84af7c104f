//! What a node keeps across restarts in its state directory (`cluster.state_dir`).
//!
//! - `incarnation`: a number that grows with every start of the node (the Unix time in
//!   milliseconds at start, or one more than the last one if the clock went back). Peers learn
//!   it from heartbeats; a node removed for good is refused until an incarnation above the one
//!   it was removed at connects.
//! - `members.json`: every member this node has known that did not leave on purpose and was
//!   not removed (name, address, last incarnation heard), the nodes removed for good (and
//!   when, and at which address), and a hash of the cookie (a file written under
//!   another cookie belongs to another cluster and is ignored). Remembered members count
//!   towards every majority after a restart (a restarted node never forms one alone) and are
//!   dialled like seeds.
//! - `token`: a fencing token above every token this node has recorded (it reserves a minute's
//!   worth ahead, so it is written about once a minute), written before a commit is
//!   acknowledged; a restarted node starts from it.
//! - `lock`: held while the process runs (an advisory file lock), so that two processes never
//!   share a directory.
//!
//! Files are replaced whole (written beside, then renamed), so a crash leaves the old or the
//! new version, never half of one. A `members.json` that does not parse stops the start with an
//! error naming it (a node that forgot its members could act as a cluster of its own).

use foundation_core::sync::MutexRecover;
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
        "{file} does not parse ({source}): the node will not start without knowing its members; fix it, or \
         delete it if this node should start as a new one (it then knows only its seeds)"
    )]
    Corrupt {
        /// The file.
        file: PathBuf,
        /// What is wrong with it (the parse error).
        #[source]
        source: serde_json::Error,
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Removal {
    /// When it was removed.
    pub at_ms: u64,
    /// Its address, if the node that tells of the removal knows it.
    pub addr: Option<String>,
}

/// A removal as `members.json` keeps it: when, and the address the node had (so that a seed
/// at that address no longer counts as a node still joining).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RemovalRecord {
    /// When it was removed (Unix ms, the remover's clock).
    pub at_ms: u64,
    /// Its address, if this node knew it.
    #[serde(default)]
    pub addr: Option<String>,
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
    pub removed: BTreeMap<String, RemovalRecord>,
}

impl Remembered {
    /// Adds removals (keeping the later one of each), then forgets the oldest beyond
    /// [`MAX_REMOVED`]. Whether anything changed. Members are forgotten by membership, which
    /// knows which of them are up.
    pub(crate) fn merge_removed(&mut self, removed: impl IntoIterator<Item = (String, Removal)>) -> bool {
        let mut changed = false;
        for (name, removal) in removed {
            let entry = self.removed.entry(name).or_insert(RemovalRecord { at_ms: 0, addr: None });
            if removal.at_ms > entry.at_ms {
                entry.at_ms = removal.at_ms;
                changed = true;
            }
            if entry.addr.is_none() && removal.addr.is_some() {
                entry.addr = removal.addr;
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
    /// No earlier process used this directory (no incarnation file): a first start.
    pub first_start: bool,
    /// Tokens up to this are covered by the `token` file: a restarted node starts from it.
    reserved_token: std::sync::Mutex<u64>,
}

/// How far past the largest token recorded the `token` file reserves, so that it is written
/// about once a minute (tokens follow the clock in milliseconds), not at every commit.
pub const TOKEN_RESERVE: u64 = 60_000;

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
        // Private: it holds the members, their addresses and the largest fencing token.
        foundation_core::files::create_private_dir(dir).map_err(io("create it"))?;
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
        // Unreadable: an earlier process was here all the same (not a first start).
        let last: Option<u64> = match std::fs::read_to_string(dir.join("incarnation")) {
            Ok(text) => Some(text.trim().parse().unwrap_or_else(|_| {
                tracing::warn!(dir = %dir.display(), "unreadable incarnation file: starting from the clock");
                0
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io("read the incarnation")(e)),
        };
        let first_start = last.is_none();
        let last = last.unwrap_or(0);
        let incarnation = unix_ms().max(last + 1);
        let reserved_token = match std::fs::read_to_string(dir.join("token")) {
            Ok(text) => text.trim().parse().unwrap_or_else(|_| {
                tracing::warn!(dir = %dir.display(), "unreadable token file: tokens rest on the clock");
                0
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io("read the token file")(e)),
        };
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
                    return Err(StateError::Corrupt { file: dir.join("members.json"), source: e });
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Remembered::default(),
            Err(e) => return Err(io("read members.json")(e)),
        };
        let remembered = Remembered { cookie: hash, ..remembered };
        Ok(NodeState {
            dir: dir.to_path_buf(),
            _lock: lock,
            incarnation,
            remembered,
            first_start,
            reserved_token: std::sync::Mutex::new(reserved_token),
        })
    }

    /// The directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The largest token a restart of this node starts from (what the `token` file reserved).
    pub(crate) fn reserved_token(&self) -> u64 {
        *self.reserved_token.lock_or_recover()
    }

    /// Makes sure `token` is covered by the `token` file: when it is not, reserves
    /// [`TOKEN_RESERVE`] past it (written whole and synced). `false` if it could not be written
    /// (the token must then not be acknowledged: a restart would not know it).
    pub(crate) fn cover_token(&self, token: u64) -> bool {
        let mut reserved = self.reserved_token.lock_or_recover();
        if token <= *reserved {
            return true;
        }
        let next = token.saturating_add(TOKEN_RESERVE);
        match write_atomically(&self.dir, "token", next.to_string().as_bytes()) {
            Ok(()) => {
                *reserved = next;
                true
            }
            Err(e) => {
                tracing::error!(dir = %self.dir.display(), error = %e, "cannot write the token file");
                false
            }
        }
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
    std::fs::rename(&tmp, dir.join(name))?;
    // The rename itself survives a machine crash only once the directory is synced.
    File::open(dir)?.sync_all()
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
        first.save(&remembered);
        assert!(first.first_start);
        assert!(first.cover_token(41));
        assert_eq!(first.reserved_token(), 41 + TOKEN_RESERVE);
        let incarnation = first.incarnation;
        drop(first);

        let again = NodeState::open(&dir, "c").unwrap();
        assert!(again.incarnation > incarnation && !again.first_start);
        assert_eq!(again.remembered.members.get("n2"), Some(&n2));
        assert_eq!(again.reserved_token(), 41 + TOKEN_RESERVE, "a restart starts above every token recorded");
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
        assert!(r.merge_removed([("n3".to_string(), Removal { at_ms: 10, addr: None })]));
        assert!(r.is_removed("n3", 5) && r.is_removed("n3", 0) && !r.is_removed("n3", 10));
        // An older removal changes nothing; gossip keeps the later one.
        assert!(!r.merge_removed([("n3".to_string(), Removal { at_ms: 4, addr: None })]));
        assert_eq!(r.removed["n3"].at_ms, 10);
        for i in 0..(MAX_REMOVED as u64 + 10) {
            r.merge_removed([(format!("x{i}"), Removal { at_ms: 100 + i, addr: None })]);
        }
        assert_eq!(r.removed.len(), MAX_REMOVED);
        assert!(!r.removed.contains_key("n3"), "the oldest removal is forgotten first");
    }
}

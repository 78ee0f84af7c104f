//! One node's replica of a log on disk: an append-only file of checksummed records and a small
//! metadata file (the highest ballot promised, whether the replica was found damaged).
//!
//! Record: `u32` payload length, `u64` checksum of the payload (foundation-core's stable hash),
//! `u32` check of those twelve bytes, then the payload: `u64` index, `u64` token, `u64` attempt,
//! `u8` kind, the data. Appending
//! writes a batch of records with one `write` and (with `fsync`) one `fsync`: O(1) per entry,
//! amortized over the batch. In memory: each entry's file offset and ballot (24 bytes per
//! entry); the data is read back from the file when needed.
//!
//! Opening reads every record and checks it. At the first record that does not check, the rest
//! of the file is searched for any record that does: if none is found, the bad bytes are the
//! tail of a write cut short by a crash (or pages of an unsynced batch that reached the disk
//! out of order) — never acknowledged, since a replica acknowledges only what it wrote and
//! synced — and are cut off. If a good record follows, the bad one is **damage** (a flipped
//! bit, a file overwritten): the replica is cut back before it, the damage is recorded in the
//! metadata, and the replica does not count towards the majority a new leader reads the log from
//! until a leader has brought it up to that leader's commit point again (see `super`). One case
//! of damage goes unnoticed: a flipped bit in the very last record reads as a write cut short,
//! and that replica silently lacks its last entry (a committed one is still on a majority
//! less this replica: lost only if another replica of that majority is lost with it).
//! Metadata that is missing beside a non-empty log, or unreadable, is damage too.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A leader's ballot: the fencing token of its lease, and an attempt number that tells apart two
/// leaderships under one token (a leader restarted within its lease: it goes above the one
/// before; the first attempt is random, so that two leaders never share a ballot). Ordered
/// token first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Ballot {
    /// The fencing token of the lease the leader held.
    pub token: u64,
    /// Leaderships under that token before this one.
    pub attempt: u64,
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Kind {
    /// The user's data.
    Data = 0,
    /// The first entry of a leadership (commits what it recovered).
    Leader = 1,
}

/// An entry as stored and sent between replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Stored {
    pub(crate) index: u64,
    pub(crate) ballot: Ballot,
    pub(crate) kind: Kind,
    pub(crate) data: Vec<u8>,
}

const HEADER: usize = 4 + 8 + 4;
const PAYLOAD_HEADER: usize = 8 + 8 + 8 + 1;
/// Longest record payload the store accepts when reading (a length above it is damage, not a
/// record): 64 MiB, above any frame limit.
const MAX_RECORD: usize = 64 << 20;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Meta {
    promised: Ballot,
    /// Damaged and not yet repaired.
    damaged: bool,
}

/// What opening found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Opened {
    /// Every record checked.
    Clean,
    /// The file ended inside a record or in zeros after the last whole one: cut back, nothing
    /// acknowledged lost.
    TornTail { bytes: u64 },
    /// A whole record did not check: cut back from it, replica damaged.
    Damaged { at_index: u64, bytes: u64, why: String },
}

/// A replica on disk.
pub(crate) struct Store {
    file: File,
    path: PathBuf,
    meta_path: PathBuf,
    meta: Meta,
    /// File offset of entry `i` (1-based) at `offsets[i - 1]`; `len` after the last.
    offsets: Vec<u64>,
    ballots: Vec<Ballot>,
    len: u64,
    fsync: bool,
}

/// Syncs a directory (its entries: a file created or renamed in it).
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

fn encode_record(entry: &Stored, out: &mut Vec<u8>) {
    let payload_len = PAYLOAD_HEADER + entry.data.len();
    let start = out.len();
    out.extend_from_slice(&(payload_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 12]);
    out.extend_from_slice(&entry.index.to_le_bytes());
    out.extend_from_slice(&entry.ballot.token.to_le_bytes());
    out.extend_from_slice(&entry.ballot.attempt.to_le_bytes());
    out.push(entry.kind as u8);
    out.extend_from_slice(&entry.data);
    let sum = foundation_core::hash::stable_hash(&out[start + HEADER..]);
    out[start + 4..start + 12].copy_from_slice(&sum.to_le_bytes());
    let check = header_check(&out[start..start + 12]);
    out[start + 12..start + HEADER].copy_from_slice(&check.to_le_bytes());
}

fn header_check(first_twelve: &[u8]) -> u32 {
    // Never zero, so that zeros never read as a header.
    (foundation_core::hash::stable_hash(first_twelve) as u32) | 1
}

/// The record at the start of `bytes`, if it is whole and checks: (its entry, its length).
fn record_at(bytes: &[u8]) -> Result<(Stored, usize), String> {
    if bytes.len() < HEADER {
        return Err("a record header cut short".into());
    }
    let check = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
    if header_check(&bytes[..12]) != check {
        return Err("its header does not check".into());
    }
    let payload_len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    if !(PAYLOAD_HEADER..=MAX_RECORD).contains(&payload_len) {
        return Err(format!("a record length of {payload_len} bytes"));
    }
    if bytes.len() < HEADER + payload_len {
        return Err("a record cut short".into());
    }
    let payload = &bytes[HEADER..HEADER + payload_len];
    if foundation_core::hash::stable_hash(payload) != u64_at(bytes, 4) {
        return Err("its checksum does not match".into());
    }
    Ok((decode_payload(payload)?, HEADER + payload_len))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

fn decode_payload(payload: &[u8]) -> Result<Stored, String> {
    if payload.len() < PAYLOAD_HEADER {
        return Err(format!("a record of {} bytes is shorter than its header", payload.len()));
    }
    let kind = match payload[24] {
        0 => Kind::Data,
        1 => Kind::Leader,
        other => return Err(format!("unknown entry kind {other}")),
    };
    Ok(Stored {
        index: u64_at(payload, 0),
        ballot: Ballot { token: u64_at(payload, 8), attempt: u64_at(payload, 16) },
        kind,
        data: payload[PAYLOAD_HEADER..].to_vec(),
    })
}

impl Store {
    /// Opens (or creates) the replica `name` in `dir`, checking every record (see the module).
    pub(crate) fn open(dir: &Path, name: &str, fsync: bool) -> std::io::Result<(Store, Opened)> {
        foundation_core::files::create_private_dir(dir)?;
        let path = dir.join(format!("{name}.log"));
        let meta_path = dir.join(format!("{name}.meta"));
        let (meta, meta_error) = match std::fs::read(&meta_path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(meta) => (meta, None),
                Err(e) => (
                    Meta::default(),
                    Some(format!("its metadata ({}) is not readable: {e}", meta_path.display())),
                ),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Meta::default(), None),
            Err(e) => return Err(e),
        };
        let new = !path.exists();
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(&path)?;
        // One replica per file: a second node (or process) given the same directory is refused,
        // never two writers interleaving records.
        file.try_lock().map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::ResourceBusy,
                format!(
                    "{} is in use by another node or process ({e}): give each node its own directory",
                    path.display()
                ),
            )
        })?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        if new {
            sync_dir(dir)?;
        }
        let meta_error = match meta_error {
            None if !bytes.is_empty() && !meta_path.exists() => Some(format!(
                "its metadata ({}) is missing beside a log of {} bytes",
                meta_path.display(),
                bytes.len()
            )),
            other => other,
        };
        let mut store =
            Store { file, path, meta_path, meta, offsets: Vec::new(), ballots: Vec::new(), len: 0, fsync };
        let mut at = 0usize;
        let mut opened = Opened::Clean;
        while at < bytes.len() {
            let expected = (store.offsets.len() + 1) as u64;
            let why = match record_at(&bytes[at..]) {
                Ok((entry, len)) if entry.index == expected => {
                    store.offsets.push(at as u64);
                    store.ballots.push(entry.ballot);
                    at += len;
                    continue;
                }
                Ok((entry, _)) => format!("entry {} where entry {expected} belongs", entry.index),
                Err(why) => why,
            };
            // A good record after the bad one: damage. None: a write cut short.
            let rest = bytes.len() - at;
            let good_after = (at + 1..bytes.len()).any(|q| record_at(&bytes[q..]).is_ok());
            opened = if good_after {
                Opened::Damaged { at_index: expected, bytes: rest as u64, why }
            } else {
                Opened::TornTail { bytes: rest as u64 }
            };
            break;
        }
        store.len = at as u64;
        if !matches!(opened, Opened::Clean) {
            store.file.set_len(store.len)?;
            store.file.sync_all()?;
        }
        if let Some(why) = meta_error {
            // The promise is forgotten: the last entry's ballot is the best lower bound left,
            // and the replica counts for no new leader until repaired.
            store.meta = Meta { promised: store.last_ballot(), damaged: true };
            if matches!(opened, Opened::Clean) {
                opened = Opened::Damaged { at_index: store.last_index() + 1, bytes: 0, why };
            }
        }
        if matches!(opened, Opened::Damaged { .. }) {
            store.meta.damaged = true;
            store.write_meta()?;
        }
        Ok((store, opened))
    }

    /// Writes the metadata: a temporary file, synced, renamed over the old one, the directory
    /// synced (so that a promise survives a power cut).
    fn write_meta(&self) -> std::io::Result<()> {
        let tmp = self.meta_path.with_extension("meta.tmp");
        let bytes = serde_json::to_vec(&self.meta).map_err(std::io::Error::other)?;
        let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        file.write_all(&bytes)?;
        if self.fsync {
            file.sync_all()?;
        }
        std::fs::rename(&tmp, &self.meta_path)?;
        if self.fsync
            && let Some(dir) = self.meta_path.parent()
        {
            sync_dir(dir)?;
        }
        Ok(())
    }

    /// The file (for messages).
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn last_index(&self) -> u64 {
        self.offsets.len() as u64
    }

    /// The ballot of entry `index` (`index` 0: before the first entry, the zero ballot).
    pub(crate) fn ballot_at(&self, index: u64) -> Option<Ballot> {
        if index == 0 {
            return Some(Ballot::default());
        }
        self.ballots.get(usize::try_from(index - 1).ok()?).copied()
    }

    pub(crate) fn last_ballot(&self) -> Ballot {
        self.ballots.last().copied().unwrap_or_default()
    }

    pub(crate) fn promised(&self) -> Ballot {
        self.meta.promised
    }

    pub(crate) fn damaged(&self) -> bool {
        self.meta.damaged
    }

    /// Promises `ballot` (durably) if it is at least the promised one.
    pub(crate) fn promise(&mut self, ballot: Ballot) -> std::io::Result<bool> {
        if ballot < self.meta.promised {
            return Ok(false);
        }
        if ballot > self.meta.promised {
            self.meta.promised = ballot;
            self.write_meta()?;
        }
        Ok(true)
    }

    /// Marks the replica repaired (a leader brought it up to its commit point).
    pub(crate) fn repaired(&mut self) -> std::io::Result<()> {
        if self.meta.damaged {
            self.meta.damaged = false;
            self.write_meta()?;
        }
        Ok(())
    }

    /// Drops every entry after `index`.
    pub(crate) fn truncate_after(&mut self, index: u64) -> std::io::Result<()> {
        let keep = usize::try_from(index).unwrap_or(usize::MAX);
        if keep >= self.offsets.len() {
            return Ok(());
        }
        self.len = self.offsets[keep];
        self.offsets.truncate(keep);
        self.ballots.truncate(keep);
        self.file.set_len(self.len)?;
        if self.fsync {
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// Appends `entries` (their indexes follow the last one) with one write and, with `fsync`,
    /// one sync. An entry whose index does not follow is an error, and nothing is written.
    pub(crate) fn append(&mut self, entries: &[Stored]) -> std::io::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut buffer =
            Vec::with_capacity(entries.iter().map(|e| HEADER + PAYLOAD_HEADER + e.data.len()).sum());
        let mut offsets = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let expected = self.last_index() + 1 + i as u64;
            if entry.index != expected {
                return Err(invalid(format!(
                    "entry {} appended where entry {expected} belongs",
                    entry.index
                )));
            }
            offsets.push(self.len + buffer.len() as u64);
            encode_record(entry, &mut buffer);
        }
        let written = self.file.write_all_at(&buffer, self.len).and_then(|()| match self.fsync {
            true => self.file.sync_data(),
            false => Ok(()),
        });
        if let Err(e) = written {
            // Nothing of a failed batch may come back at the next opening.
            let _ = self.file.set_len(self.len);
            return Err(e);
        }
        self.len += buffer.len() as u64;
        self.offsets.extend(offsets);
        self.ballots.extend(entries.iter().map(|e| e.ballot));
        Ok(())
    }

    /// Entries from `from` on, as many as fit `max_bytes` of data (at least one, if there is one).
    pub(crate) fn read(&self, from: u64, max_bytes: usize) -> std::io::Result<Vec<Stored>> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut index = from.max(1);
        while index <= self.last_index() {
            let i = (index - 1) as usize;
            let start = self.offsets[i];
            let end = self.offsets.get(i + 1).copied().unwrap_or(self.len);
            let size = (end - start) as usize;
            if !out.is_empty() && bytes + size > max_bytes {
                break;
            }
            let mut record = vec![0; size];
            self.file.read_exact_at(&mut record, start)?;
            let entry = decode_payload(&record[HEADER..]).map_err(|why| {
                invalid(format!("entry {index} of {} does not read back: {why}", self.path.display()))
            })?;
            out.push(entry);
            bytes += size;
            index += 1;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, token: u64, data: &[u8]) -> Stored {
        Stored { index, ballot: Ballot { token, attempt: 0 }, kind: Kind::Data, data: data.to_vec() }
    }

    fn dir() -> PathBuf {
        std::env::temp_dir().join(foundation_core::files::unguessable_name("log-store-"))
    }

    #[test]
    fn appends_read_back_after_reopening_and_truncation_drops_the_tail() {
        let dir = dir();
        let (mut store, opened) = Store::open(&dir, "l", false).unwrap();
        assert_eq!(opened, Opened::Clean);
        store.append(&[entry(1, 1, b"a"), entry(2, 1, b"bb")]).unwrap();
        store.append(&[entry(3, 2, b"ccc")]).unwrap();
        assert!(store.append(&[entry(5, 2, b"gap")]).is_err());
        assert!(store.promise(Ballot { token: 2, attempt: 0 }).unwrap());
        assert!(!store.promise(Ballot { token: 1, attempt: 5 }).unwrap());
        drop(store);

        let (mut store, opened) = Store::open(&dir, "l", false).unwrap();
        assert_eq!(opened, Opened::Clean);
        assert_eq!(store.last_index(), 3);
        assert_eq!(store.promised(), Ballot { token: 2, attempt: 0 });
        assert_eq!(
            store.read(1, usize::MAX).unwrap(),
            [entry(1, 1, b"a"), entry(2, 1, b"bb"), entry(3, 2, b"ccc")]
        );
        // At least one entry, whatever the limit.
        assert_eq!(store.read(2, 1).unwrap(), [entry(2, 1, b"bb")]);
        store.truncate_after(1).unwrap();
        store.append(&[entry(2, 3, b"new")]).unwrap();
        drop(store);
        let (store, _) = Store::open(&dir, "l", false).unwrap();
        assert_eq!(store.read(1, usize::MAX).unwrap(), [entry(1, 1, b"a"), entry(2, 3, b"new")]);
        // A second opener of the same file is refused while the first holds it.
        let error = Store::open(&dir, "l", false).err().unwrap();
        assert!(error.to_string().contains("in use by another node"), "{error}");
        assert_eq!(store.last_ballot(), Ballot { token: 3, attempt: 0 });
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_torn_tail_is_cut_back_and_a_bad_record_damages_the_replica() {
        let dir = dir();
        let (mut store, _) = Store::open(&dir, "l", true).unwrap();
        assert!(store.promise(Ballot { token: 1, attempt: 0 }).unwrap());
        store.append(&[entry(1, 1, b"first"), entry(2, 1, b"second"), entry(3, 1, b"third")]).unwrap();
        let path = store.path().to_path_buf();
        drop(store);
        let whole = std::fs::read(&path).unwrap();

        // Cut inside the last record: the first two stay, clean otherwise.
        std::fs::write(&path, &whole[..whole.len() - 3]).unwrap();
        let (store, opened) = Store::open(&dir, "l", true).unwrap();
        assert!(matches!(opened, Opened::TornTail { .. }), "{opened:?}");
        assert_eq!((store.last_index(), store.damaged()), (2, false));
        drop(store);

        // Zeros after the last record (a file extended but not written): torn as well.
        let mut zeros = whole.clone();
        zeros.extend_from_slice(&[0; 100]);
        std::fs::write(&path, &zeros).unwrap();
        let (store, opened) = Store::open(&dir, "l", true).unwrap();
        assert!(matches!(opened, Opened::TornTail { bytes: 100 }), "{opened:?}");
        assert_eq!(store.last_index(), 3);
        drop(store);

        // A flipped bit in the second record: cut back to the first, damaged, and it stays
        // damaged across a reopen until repaired.
        let mut flipped = whole.clone();
        let second = HEADER + PAYLOAD_HEADER + 5 + HEADER + PAYLOAD_HEADER + 1;
        // A flipped bit in the length of the second record: damage as well (a header check).
        let mut length = whole.clone();
        length[HEADER + PAYLOAD_HEADER + 5 + 1] ^= 0x01;
        std::fs::write(&path, &length).unwrap();
        let (store, opened) = Store::open(&dir, "l", true).unwrap();
        assert!(matches!(&opened, Opened::Damaged { at_index: 2, .. }), "{opened:?}");
        drop(store);
        std::fs::write(dir.join("l.meta"), br#"{"promised":{"token":0,"attempt":0},"damaged":false}"#)
            .unwrap();
        flipped[second] ^= 0x40;
        std::fs::write(&path, &flipped).unwrap();
        let (store, opened) = Store::open(&dir, "l", true).unwrap();
        assert!(
            matches!(&opened, Opened::Damaged { at_index: 2, why, .. } if why.contains("checksum")),
            "{opened:?}"
        );
        assert_eq!((store.last_index(), store.damaged()), (1, true));
        drop(store);
        let (mut store, opened) = Store::open(&dir, "l", true).unwrap();
        assert_eq!(opened, Opened::Clean);
        assert!(store.damaged());
        store.repaired().unwrap();
        drop(store);
        let (store, _) = Store::open(&dir, "l", true).unwrap();
        assert!(!store.damaged());
        drop(store);

        // Metadata that does not read: damaged, its entries kept, the promise at least the
        // last entry's ballot.
        std::fs::write(dir.join("l.meta"), b"{").unwrap();
        let (store, opened) = Store::open(&dir, "l", true).unwrap();
        assert!(matches!(&opened, Opened::Damaged { why, .. } if why.contains("metadata")), "{opened:?}");
        assert_eq!((store.last_index(), store.damaged()), (1, true));
        assert_eq!(store.promised(), Ballot { token: 1, attempt: 0 });
        drop(store);

        // Metadata gone beside a log that has entries (a promise forgotten): damaged too.
        std::fs::remove_file(dir.join("l.meta")).unwrap();
        let (store, opened) = Store::open(&dir, "l", true).unwrap();
        assert!(matches!(&opened, Opened::Damaged { why, .. } if why.contains("missing")), "{opened:?}");
        assert!(store.damaged());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

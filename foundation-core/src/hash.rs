//! The one stable hash of the workspace: xxh3 (64 bits), for everything whose hash is compared
//! between processes, machines or versions: the shared cache's ring (every node must place a
//! key on the same owner), the CRDT digests nodes compare in anti-entropy, and the semantic
//! cache's hashing embedder (stored vectors stay comparable across versions). Before, the ring
//! used SipHash (through `hashring`) and the digests FNV-1a: both stable, two algorithms for one
//! need; `std`'s hasher is never used for these (its algorithm may change between Rust versions).
//! Changing the hash changes placement and digests: a cluster upgraded across that change sees
//! cache misses and, until every node runs it, CRDT anti-entropy resending values whose digests
//! differ only by algorithm (bounded per round, as any difference is).
//!
//! xxh3 is not a cryptographic hash: none of these uses needs one (a peer that lies about a
//! digest only gets a needless resend; the ring and the embedder place data, they do not
//! authenticate it). What hashes the cluster cookie (discovery announcements, the state
//! directory's cookie check) uses SHA-256 instead: that hash guards a secret.

use std::hash::{BuildHasherDefault, Hasher};

use xxhash_rust::xxh3::{Xxh3Default, xxh3_64, xxh3_64_with_seed};

/// The stable hash of `bytes`.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    xxh3_64(bytes)
}

/// The stable hash of `bytes` under `seed` (independent hash functions from one algorithm).
pub fn stable_hash_with_seed(bytes: &[u8], seed: u64) -> u64 {
    xxh3_64_with_seed(bytes, seed)
}

/// A [`Hasher`] computing the stable hash of everything written to it, for types that hash
/// through `std::hash::Hash` (a value hashes the same in every process only if its `Hash`
/// writes the same bytes everywhere: write bytes, not `usize`s or pointers).
#[derive(Default, Clone)]
pub struct StableHasher(Xxh3Default);

impl Hasher for StableHasher {
    fn finish(&self) -> u64 {
        self.0.digest()
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// Builds [`StableHasher`]s (for `HashMap`s and rings keyed by the stable hash).
pub type StableBuildHasher = BuildHasherDefault<StableHasher>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_xxh3_and_never_changes() {
        // Reference values of XXH3-64 (seed 0): a change here breaks clusters and stored data.
        assert_eq!(stable_hash(b""), 0x2d06_8005_38d3_94c2);
        assert_eq!(stable_hash(b"a"), 0xe6c6_32b6_1e96_4e1f);
        let mut hasher = StableHasher::default();
        hasher.write(b"a");
        assert_eq!(hasher.finish(), stable_hash(b"a"));
        assert_ne!(stable_hash_with_seed(b"a", 1), stable_hash(b"a"));
    }
}

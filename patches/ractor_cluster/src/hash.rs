// Copyright (c) Sean Lawlor
//
// This source code is licensed under both the MIT license found in the
// LICENSE-MIT file in the root directory of this source tree.

//! The handshake's nonces and proofs.
//!
//! Each side of a connection issues a random 256-bit nonce; the client's travels in its first
//! message, before anyone proves anything. Each side then proves it holds the cookie with an
//! HMAC-SHA256, keyed by the cookie, over the whole transcript: which direction the proof
//! travels, both nonces, both node names and both connection strings. A proof is therefore good for one connection, one
//! direction and one pair of names only, so relaying a node's answer to that same node (or to
//! anyone else) under another name fails, and a listener no longer signs challenges of the
//! client's choosing.
//!
//! Nonces a node issued are remembered while their handshake runs, and a peer that presents
//! one of them is refused: that is a reflection of our own challenge.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::Mutex;

use hmac::KeyInit;
use hmac::Mac;
use rand::Rng;

pub(crate) const DIGEST_BYTES: usize = 32;
pub(crate) type Digest = [u8; DIGEST_BYTES];

/// Length of a handshake nonce, in bytes.
pub(crate) const NONCE_BYTES: usize = 32;
/// A handshake nonce.
pub(crate) type Nonce = [u8; NONCE_BYTES];

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Which way a proof travels; part of what it covers, so that a proof cannot be turned around.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    /// The dialling side proves itself to the listener.
    ClientToServer,
    /// The listener proves itself to the dialling side.
    ServerToClient,
}

/// Everything a proof covers besides the cookie.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Transcript {
    pub(crate) client_nonce: Nonce,
    pub(crate) server_nonce: Nonce,
    pub(crate) client_name: String,
    pub(crate) server_name: String,
    /// The connection strings each side announced (what peers remember to dial it again).
    pub(crate) client_connection: String,
    pub(crate) server_connection: String,
}

impl Transcript {
    fn mac(&self, cookie: &str, direction: Direction) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(cookie.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        let label: &[u8] = match direction {
            Direction::ClientToServer => b"ractor_cluster/2 client proof",
            Direction::ServerToClient => b"ractor_cluster/2 server proof",
        };
        // Every variable-length field is length-prefixed, so no two transcripts encode alike.
        for field in [
            label,
            &self.client_nonce[..],
            &self.server_nonce[..],
            self.client_name.as_bytes(),
            self.server_name.as_bytes(),
            self.client_connection.as_bytes(),
            self.server_connection.as_bytes(),
        ] {
            Mac::update(&mut mac, &(field.len() as u64).to_be_bytes());
            Mac::update(&mut mac, field);
        }
        mac
    }

    /// The proof for `direction`.
    pub(crate) fn proof(&self, cookie: &str, direction: Direction) -> Digest {
        self.mac(cookie, direction).finalize().into_bytes().into()
    }

    /// Whether `received` is the proof for `direction`, compared in constant time.
    pub(crate) fn verify(&self, cookie: &str, direction: Direction, received: &[u8]) -> bool {
        self.mac(cookie, direction).verify_slice(received).is_ok()
    }
}

/// Reads a nonce off the wire: exactly [`NONCE_BYTES`] long, else `None` (a peer of the
/// first protocol version sends none).
pub(crate) fn nonce_from_wire(bytes: &[u8]) -> Option<Nonce> {
    bytes.try_into().ok()
}

/// The nonces one node issued for handshakes still running. Shared by that node's sessions
/// (and only theirs: two nodes in one process are two registries). Bounded by the number of
/// pending handshakes, since each entry lives as long as its handshake.
#[derive(Clone, Debug, Default)]
pub(crate) struct NonceRegistry(Arc<Mutex<HashSet<Nonce>>>);

impl NonceRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<Nonce>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A fresh random nonce, remembered as ours until the guard is dropped.
    pub(crate) fn issue(&self) -> IssuedNonce {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rng().fill_bytes(&mut nonce);
        self.lock().insert(nonce);
        IssuedNonce {
            nonce,
            registry: self.clone(),
        }
    }

    /// Whether `nonce` is one this node issued for a handshake still running: a peer that
    /// presents it is reflecting our own challenge back at us.
    pub(crate) fn is_ours(&self, nonce: &Nonce) -> bool {
        self.lock().contains(nonce)
    }
}

/// A nonce this node issued, remembered until the guard is dropped (the handshake is over).
#[derive(Debug)]
pub(crate) struct IssuedNonce {
    nonce: Nonce,
    registry: NonceRegistry,
}

impl IssuedNonce {
    /// The nonce.
    pub(crate) fn value(&self) -> Nonce {
        self.nonce
    }
}

impl Drop for IssuedNonce {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.nonce);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transcript() -> Transcript {
        Transcript {
            client_nonce: [1; NONCE_BYTES],
            server_nonce: [2; NONCE_BYTES],
            client_name: "a@host".to_string(),
            server_name: "b@host".to_string(),
            client_connection: "a:1".to_string(),
            server_connection: "b:1".to_string(),
        }
    }

    #[test]
    fn proofs_bind_cookie_direction_nonces_and_names() {
        let t = transcript();
        let proof = t.proof("cookie", Direction::ClientToServer);
        assert_eq!(DIGEST_BYTES, proof.len());
        assert!(t.verify("cookie", Direction::ClientToServer, &proof));
        assert!(!t.verify("other", Direction::ClientToServer, &proof));
        assert!(!t.verify("cookie", Direction::ServerToClient, &proof));
        assert!(!t.verify("cookie", Direction::ClientToServer, &proof[..31]));
        for changed in [
            Transcript {
                client_nonce: [3; NONCE_BYTES],
                ..t.clone()
            },
            Transcript {
                server_nonce: [3; NONCE_BYTES],
                ..t.clone()
            },
            Transcript {
                client_name: "c@host".into(),
                ..t.clone()
            },
            Transcript {
                server_name: "c@host".into(),
                ..t.clone()
            },
            Transcript {
                client_connection: "c:1".into(),
                ..t.clone()
            },
            Transcript {
                server_connection: "c:1".into(),
                ..t.clone()
            },
            // Moving bytes from one name to the other changes the encoding too.
            Transcript {
                client_name: "a@hostb".into(),
                server_name: "@host".into(),
                ..t.clone()
            },
        ] {
            assert!(
                !changed.verify("cookie", Direction::ClientToServer, &proof),
                "{changed:?}"
            );
        }
    }

    #[test]
    fn issued_nonces_are_ours_until_dropped() {
        let registry = NonceRegistry::default();
        let nonce = registry.issue();
        let value = nonce.value();
        assert!(registry.is_ours(&value));
        assert!(
            !NonceRegistry::default().is_ours(&value),
            "another node's registry"
        );
        assert_ne!(value, registry.issue().value());
        drop(nonce);
        assert!(!registry.is_ours(&value));
        assert_eq!(nonce_from_wire(&[0; 4]), None);
        assert_eq!(nonce_from_wire(&value), Some(value));
    }
}

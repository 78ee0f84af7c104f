//! `CacheTier`: a second cache tier reached by key, shared by processes (the cluster cache
//! implements it), for a cache in a crate that cannot depend on the cluster's.

use std::future::Future;
use std::pin::Pin;

/// The future a [`CacheTier`] returns.
pub type TierFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Bytes by key in a tier shared by processes. Its failures are its own to count and report: a
/// get that fails is a miss, a put that fails is dropped (a cache loses nothing but time).
pub trait CacheTier: Send + Sync + 'static {
    /// The value under `key`, if the tier has it (and can be reached).
    fn get<'a>(&'a self, key: &'a str) -> TierFuture<'a, Option<Vec<u8>>>;
    /// Stores `value` under `key`, with the cost a hit saves.
    fn put<'a>(&'a self, key: &'a str, value: Vec<u8>, cost: f64) -> TierFuture<'a, ()>;
}

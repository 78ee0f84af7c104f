//! Caches: a per-process cache with TTL and size bounds, and a semantic cache for LLM prompts.
//!
//! - [`LocalCache`] (the L1 tier): a bounded, concurrent, per-process cache over `moka`, with a
//!   time to live and/or time to idle, a bound in entries or in weight (bytes), an optional TTL
//!   per entry, and [`get_with`](LocalCache::get_with), which runs the loader of a missing key
//!   once however many tasks ask for it at the same time. An entry may record the cost its
//!   computation had (dollars, tokens, milliseconds: any unit, as long as a cache uses one), so
//!   that each hit adds to the cost saved.
//! - [`Embedder`] turns a text into a vector; [`HashingEmbedder`] is the built-in one: hashed
//!   character 3-grams and word 1- and 2-grams, no network, no model, the same vector in every
//!   process and version.
//! - [`SemanticCache`]: answers stored by the embedding of their prompt, per namespace; a lookup
//!   returns a stored answer whose prompt is at least [`threshold`](SemanticConfig::threshold)
//!   similar (cosine) to the one asked, **even if it is not the same prompt**.
//! - Every cache counts hits, misses and saved cost ([`CacheStats`], through `stats()`), and
//!   reports them to the `metrics` facade: `foundation_cache_hits_total`,
//!   `foundation_cache_misses_total` (counters) and `foundation_cache_saved_cost` (a gauge that
//!   only grows: the facade's counters are integers), each labelled `cache` and `tier` (`l1`,
//!   `semantic`; the cluster tier in `foundation-cluster` adds `l2` and `l2_owner`).
//!
//! The cluster-wide tier (a key's owner node chosen by consistent hashing) is
//! `foundation_cluster::shared_cache`; [`CacheTier`] is how a cache in a crate below it asks it. What each tier guarantees is in `docs/semantics.md`.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use foundation_core::cache::{EntryOptions, LocalCache, LocalCacheConfig, SemanticCache, SemanticConfig};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! // L1: at most 10 000 entries, each for at most a minute.
//! let l1: LocalCache<String> = LocalCache::new(
//!     "profiles",
//!     LocalCacheConfig { max_capacity: 10_000, time_to_live: Some(Duration::from_secs(60)), ..Default::default() },
//! );
//! l1.insert_with("user:7", "Ada".to_string(), EntryOptions::cost(0.002)).await;
//! assert_eq!(l1.get("user:7").await.as_deref(), Some("Ada"));
//! assert_eq!(l1.get("user:8").await, None);
//! assert_eq!((l1.stats().hits, l1.stats().misses, l1.stats().saved_cost), (1, 1, 0.002));
//!
//! // Semantic: a paraphrase of a stored prompt gets its answer back.
//! let semantic = SemanticCache::with_default_embedder("answers", SemanticConfig { threshold: 0.7, ..Default::default() })
//!     .expect("a valid threshold");
//! semantic.insert("tenant-a", "What is the capital of France?", "Paris".to_string(), 0.01);
//! let hit = semantic.lookup("tenant-a", "what is the capital of france").expect("similar enough");
//! assert_eq!(hit.answer, "Paris");
//! assert!(hit.similarity >= 0.7);
//! // Another namespace never sees it.
//! assert!(semantic.lookup("tenant-b", "What is the capital of France?").is_none());
//! # });
//! ```

mod embedder;
mod local;
mod semantic;
mod stats;
mod tier;

pub use embedder::{DEFAULT_DIMS, Embedder, HashingEmbedder, cosine};
pub use local::{
    CachedEntry, DEFAULT_MAX_CAPACITY, DEFAULT_TIME_TO_LIVE, EntryOptions, LocalCache, LocalCacheConfig,
};
pub use semantic::{
    DEFAULT_MAX_ENTRIES, DEFAULT_THRESHOLD, SemanticCache, SemanticConfig, SemanticError, SemanticHit,
};
pub use stats::{CacheCounters, CacheStats};
pub use tier::{CacheTier, TierFuture};

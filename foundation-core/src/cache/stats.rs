//! Hit, miss and saved-cost counting shared by every cache tier.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A cache's counts since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CacheStats {
    /// Lookups that found an entry.
    pub hits: u64,
    /// Lookups that found nothing (or, in the cluster tier, could not ask the owner).
    pub misses: u64,
    /// Sum of the costs recorded with the entries that were hit.
    pub saved_cost: f64,
}

impl CacheStats {
    /// Hits over lookups, from 0 to 1; 0 before the first lookup.
    pub fn hit_rate(&self) -> f64 {
        let lookups = self.hits + self.misses;
        if lookups == 0 { 0.0 } else { self.hits as f64 / lookups as f64 }
    }
}

/// The counters of one cache tier: kept in the cache (read with [`stats`](Self::stats)) and
/// reported to the `metrics` facade as `foundation_cache_hits_total`,
/// `foundation_cache_misses_total` and `foundation_cache_saved_cost`, labelled `cache` and
/// `tier`. Cheap to clone (clones count together).
///
/// The metric handles are taken when the counters are created: install the metrics recorder
/// before creating caches.
#[derive(Clone)]
pub struct CacheCounters {
    inner: Arc<Inner>,
}

struct Inner {
    hits: AtomicU64,
    misses: AtomicU64,
    /// An `f64`, as bits.
    saved: AtomicU64,
    hit_metric: metrics::Counter,
    miss_metric: metrics::Counter,
    saved_metric: metrics::Gauge,
}

impl CacheCounters {
    /// Counters for the tier `tier` of the cache `cache`.
    pub fn new(cache: &str, tier: &'static str) -> Self {
        let labels = [("cache", cache.to_string()), ("tier", tier.to_string())];
        CacheCounters {
            inner: Arc::new(Inner {
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                saved: AtomicU64::new(0f64.to_bits()),
                hit_metric: metrics::counter!("foundation_cache_hits_total", &labels),
                miss_metric: metrics::counter!("foundation_cache_misses_total", &labels),
                saved_metric: metrics::gauge!("foundation_cache_saved_cost", &labels),
            }),
        }
    }

    /// Counts a hit that saved `cost` (negative or non-finite costs count as 0).
    pub fn hit(&self, cost: f64) {
        let inner = &self.inner;
        inner.hits.fetch_add(1, Ordering::Relaxed);
        inner.hit_metric.increment(1);
        if cost.is_finite() && cost > 0.0 {
            // `fetch_update` only fails when the closure returns None, which it never does.
            let _ = inner.saved.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + cost).to_bits())
            });
            inner.saved_metric.increment(cost);
        }
    }

    /// Counts a miss.
    pub fn miss(&self) {
        self.inner.misses.fetch_add(1, Ordering::Relaxed);
        self.inner.miss_metric.increment(1);
    }

    /// The counts so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.inner.hits.load(Ordering::Relaxed),
            misses: self.inner.misses.load(Ordering::Relaxed),
            saved_cost: f64::from_bits(self.inner.saved.load(Ordering::Relaxed)),
        }
    }
}

impl std::fmt::Debug for CacheCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CacheCounters").field(&self.stats()).finish()
    }
}

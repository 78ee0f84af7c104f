//! The L1 tier: a bounded per-process cache with TTL, over `moka`'s async cache.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;

use super::stats::{CacheCounters, CacheStats};

/// Default [`LocalCacheConfig::max_capacity`]: 10 000 entries.
pub const DEFAULT_MAX_CAPACITY: u64 = 10_000;
/// Default [`LocalCacheConfig::time_to_live`]: 5 minutes.
pub const DEFAULT_TIME_TO_LIVE: Duration = Duration::from_secs(300);

/// Bounds of a [`LocalCache`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalCacheConfig {
    /// The most the cache holds: a number of entries, or, for a cache made with
    /// [`LocalCache::weighted`], a total weight (e.g. bytes). Default [`DEFAULT_MAX_CAPACITY`]
    /// (10 000 entries). Over it, moka evicts the entries least likely to be used again (TinyLFU
    /// admission, LRU eviction); eviction runs in the background, so the cache may hold a few more
    /// for a moment.
    pub max_capacity: u64,
    /// How long an entry lives after it is written. Default [`DEFAULT_TIME_TO_LIVE`] (5 min): a
    /// value is never served more than 5 minutes after it was stored. `None`: no limit.
    pub time_to_live: Option<Duration>,
    /// How long an entry lives after it was last read or written. Default `None` (no idle
    /// limit).
    pub time_to_idle: Option<Duration>,
}

impl Default for LocalCacheConfig {
    fn default() -> Self {
        LocalCacheConfig {
            max_capacity: DEFAULT_MAX_CAPACITY,
            time_to_live: Some(DEFAULT_TIME_TO_LIVE),
            time_to_idle: None,
        }
    }
}

/// How one entry is stored.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EntryOptions {
    /// What computing the value cost (any unit the cache uses throughout): each hit on the
    /// entry adds it to the saved cost. Default 0.
    pub cost: f64,
    /// A time to live for this entry only. It can shorten the cache's
    /// [`time_to_live`](LocalCacheConfig::time_to_live), never extend it. Default `None`.
    pub ttl: Option<Duration>,
}

impl EntryOptions {
    /// An entry that cost `cost` to compute.
    pub fn cost(cost: f64) -> Self {
        EntryOptions { cost, ttl: None }
    }

    /// The same, with a time to live of its own.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
}

/// A value found in the cache with the cost recorded for it.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedEntry<V> {
    /// The value.
    pub value: V,
    /// The cost recorded when it was stored (what this hit saved).
    pub cost: f64,
}

#[derive(Clone)]
struct Stored<V> {
    value: V,
    cost: f64,
    ttl: Option<Duration>,
}

/// Per-entry TTLs: moka expires an entry at the earliest of its own and the cache's.
struct PerEntryTtl;

impl<V> Expiry<String, Stored<V>> for PerEntryTtl {
    fn expire_after_create(&self, _: &String, value: &Stored<V>, _: Instant) -> Option<Duration> {
        value.ttl
    }

    fn expire_after_update(
        &self,
        _: &String,
        value: &Stored<V>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        value.ttl
    }
}

/// A bounded, concurrent, per-process cache from string keys to `V` (the L1 tier). Cheap to
/// clone: clones share the entries and the counts.
///
/// Hits, misses and saved cost are counted ([`stats`](Self::stats)) and reported with the labels
/// `cache` = its name and `tier` = `l1` (see the [module docs](crate::cache)).
#[derive(Clone)]
pub struct LocalCache<V> {
    name: Arc<str>,
    cache: moka::future::Cache<String, Stored<V>>,
    counters: CacheCounters,
}

impl<V: Clone + Send + Sync + 'static> LocalCache<V> {
    /// A cache of at most `config.max_capacity` entries.
    pub fn new(name: impl Into<String>, config: LocalCacheConfig) -> Self {
        Self::build(name.into(), &config, None::<fn(&str, &V) -> u32>, "l1")
    }

    /// A cache whose entries weigh `weigher(key, value)` (e.g. their size in bytes), holding at
    /// most `config.max_capacity` in total weight.
    pub fn weighted(
        name: impl Into<String>,
        config: LocalCacheConfig,
        weigher: impl Fn(&str, &V) -> u32 + Send + Sync + 'static,
    ) -> Self {
        Self::build(name.into(), &config, Some(weigher), "l1")
    }

    /// The same cache, counted under another `tier` label (for caches used as a part of a
    /// larger one, such as a cluster tier's store).
    pub fn with_tier(mut self, tier: &'static str) -> Self {
        self.counters = CacheCounters::new(&self.name, tier);
        self
    }

    fn build<W>(name: String, config: &LocalCacheConfig, weigher: Option<W>, tier: &'static str) -> Self
    where
        W: Fn(&str, &V) -> u32 + Send + Sync + 'static,
    {
        let mut builder = moka::future::Cache::builder()
            .name(&name)
            .max_capacity(config.max_capacity)
            .expire_after(PerEntryTtl);
        if let Some(ttl) = config.time_to_live {
            builder = builder.time_to_live(ttl);
        }
        if let Some(tti) = config.time_to_idle {
            builder = builder.time_to_idle(tti);
        }
        if let Some(weigher) = weigher {
            builder = builder.weigher(move |k: &String, v: &Stored<V>| weigher(k, &v.value));
        }
        let counters = CacheCounters::new(&name, tier);
        LocalCache { name: name.into(), cache: builder.build(), counters }
    }

    /// The cache's name (its `cache` label).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value under `key`, if present and not expired; counts a hit or a miss.
    pub async fn get(&self, key: &str) -> Option<V> {
        self.get_entry(key).await.map(|e| e.value)
    }

    /// [`get`](Self::get), with the cost recorded for the value.
    pub async fn get_entry(&self, key: &str) -> Option<CachedEntry<V>> {
        match self.cache.get(key).await {
            Some(stored) => {
                self.counters.hit(stored.cost);
                Some(CachedEntry { value: stored.value, cost: stored.cost })
            }
            None => {
                self.counters.miss();
                None
            }
        }
    }

    /// Stores `value` under `key` (cost 0, the cache's TTL), replacing any previous value.
    pub async fn insert(&self, key: impl Into<String>, value: V) {
        self.insert_with(key, value, EntryOptions::default()).await;
    }

    /// Stores `value` under `key` with a cost and possibly a TTL of its own.
    pub async fn insert_with(&self, key: impl Into<String>, value: V, options: EntryOptions) {
        self.cache.insert(key.into(), stored(value, options)).await;
    }

    /// The value under `key`; if missing, runs `load` and stores its result. Concurrent calls
    /// for the same missing key run **one** loader: the others wait for its value. The caller
    /// whose loader ran counts a miss, the others count hits.
    pub async fn get_with(&self, key: &str, load: impl Future<Output = V>) -> V {
        self.get_with_options(key, async { (load.await, EntryOptions::default()) }).await
    }

    /// [`get_with`](Self::get_with) whose loader also says what the value cost (and its TTL).
    pub async fn get_with_options(&self, key: &str, load: impl Future<Output = (V, EntryOptions)>) -> V {
        let entry = self
            .cache
            .entry_by_ref(key)
            .or_insert_with(async {
                let (value, options) = load.await;
                stored(value, options)
            })
            .await;
        if entry.is_fresh() {
            self.counters.miss();
        } else {
            self.counters.hit(entry.value().cost);
        }
        entry.into_value().value
    }

    /// Removes `key`.
    pub async fn invalidate(&self, key: &str) {
        self.cache.invalidate(key).await;
    }

    /// Removes every entry.
    pub fn invalidate_all(&self) {
        self.cache.invalidate_all();
    }

    /// Whether `key` is present (does not count as a lookup, does not refresh it).
    pub fn contains_key(&self, key: &str) -> bool {
        self.cache.contains_key(key)
    }

    /// Entries held, as of the last maintenance (see [`run_pending_tasks`](Self::run_pending_tasks)).
    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Total weight held (entries for an unweighted cache), as of the last maintenance.
    pub fn weighted_size(&self) -> u64 {
        self.cache.weighted_size()
    }

    /// Runs pending maintenance now (evictions, expirations, counts), which otherwise runs
    /// in the background; call it before reading [`entry_count`](Self::entry_count) in tests.
    pub async fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks().await;
    }

    /// Hits, misses and saved cost so far.
    pub fn stats(&self) -> CacheStats {
        self.counters.stats()
    }
}

fn stored<V>(value: V, options: EntryOptions) -> Stored<V> {
    let cost = if options.cost.is_finite() { options.cost.max(0.0) } else { 0.0 };
    Stored { value, cost, ttl: options.ttl }
}

impl<V> std::fmt::Debug for LocalCache<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCache")
            .field("name", &self.name)
            .field("entries", &self.cache.entry_count())
            .field("stats", &self.counters.stats())
            .finish()
    }
}

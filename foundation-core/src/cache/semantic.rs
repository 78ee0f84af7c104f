//! The semantic tier: answers reused for prompts that are similar enough, per namespace.

use crate::sync::RwLockRecover;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use super::embedder::{Embedder, HashingEmbedder};
use super::stats::{CacheCounters, CacheStats};

/// Default [`SemanticConfig::threshold`]: 0.9.
pub const DEFAULT_THRESHOLD: f32 = 0.9;
/// Default [`SemanticConfig::max_entries`]: 100 000 (about 100 MiB of 256-dimension vectors,
/// plus the prompts and answers).
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;

/// How a [`SemanticCache`] decides and how much it holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SemanticConfig {
    /// The cosine similarity (0 to 1) from which a stored answer is reused for a prompt.
    /// Default [`DEFAULT_THRESHOLD`] (0.9): with the [`HashingEmbedder`], the same words with
    /// small differences (case, punctuation, a word added or dropped in a long prompt) hit;
    /// a reworded question usually does not. Lower it to reuse more, at the risk of answering
    /// a different question; 1 reuses only prompts whose embeddings are identical.
    pub threshold: f32,
    /// The most entries held, all namespaces together (at least 1). Default
    /// [`DEFAULT_MAX_ENTRIES`] (100 000). Over it, the least recently used entry (inserted or
    /// hit) of any namespace is evicted.
    pub max_entries: usize,
}

impl Default for SemanticConfig {
    fn default() -> Self {
        SemanticConfig { threshold: DEFAULT_THRESHOLD, max_entries: DEFAULT_MAX_ENTRIES }
    }
}

/// A semantic cache that cannot be built as configured.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SemanticError {
    /// The threshold is not a number from 0 to 1.
    #[error("semantic cache threshold must be a cosine similarity from 0 to 1, got {0}")]
    Threshold(f32),
    /// `max_entries` is 0.
    #[error("semantic cache max_entries must be at least 1")]
    Capacity,
    /// The embedder has 0 dimensions.
    #[error("the embedder returns vectors of 0 dimensions")]
    Dims,
}

/// A stored answer reused for a prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct SemanticHit<A> {
    /// The stored answer.
    pub answer: A,
    /// The prompt it was stored for (which may differ from the one asked).
    pub prompt: String,
    /// Cosine similarity between the prompt asked and the stored one (at least the threshold).
    pub similarity: f32,
    /// The cost recorded with the answer: what this hit saved.
    pub saved_cost: f64,
}

struct Entry<A> {
    prompt: String,
    answer: A,
    cost: f64,
    /// The cache's clock when last inserted or hit (for LRU eviction).
    last_used: AtomicU64,
}

/// One namespace: its vectors split in two contiguous row-major matrices (row `i` is
/// `entries[i]`): the first quarter of each vector (`heads`) and the rest (`tails`), with per row
/// the norm of its tail.
///
/// A lookup scans the rows brute force, pruned exactly: it takes the dot product of the heads;
/// by Cauchy–Schwarz the tail can add at most `|row tail| × |query tail|`, so a row that cannot
/// reach the threshold (or the best score so far) even so is skipped without reading its tail.
/// A scan of 100 000 rows is bound by memory bandwidth, so reading a quarter of the matrix for
/// most rows is what makes it faster. With normalized vectors spread over all dimensions (as
/// the hashing embedder's are) and a high threshold, most rows are skipped; the result is always
/// that of a full scan.
struct Space<A> {
    heads: Vec<f32>,
    tails: Vec<f32>,
    tail_norms: Vec<f32>,
    entries: Vec<Entry<A>>,
    by_prompt: HashMap<String, usize>,
}

impl<A> Default for Space<A> {
    fn default() -> Self {
        Space {
            heads: Vec::new(),
            tails: Vec::new(),
            tail_norms: Vec::new(),
            entries: Vec::new(),
            by_prompt: HashMap::new(),
        }
    }
}

/// Where a row's head (the part always compared) ends: a quarter of the dimensions, in whole
/// blocks of 8 (the width the dot product is computed in); all of it for tiny vectors.
fn head_len(dims: usize) -> usize {
    match (dims / 4) / 8 * 8 {
        0 => dims,
        head => head,
    }
}

/// Rounding slack for the pruning bound: a row is skipped only if it misses by more than this.
const PRUNE_SLACK: f32 = 1e-4;

impl<A> Space<A> {
    fn push(&mut self, vector: &[f32], entry: Entry<A>) {
        let head = head_len(vector.len());
        self.by_prompt.insert(entry.prompt.clone(), self.entries.len());
        self.heads.extend_from_slice(&vector[..head]);
        self.tails.extend_from_slice(&vector[head..]);
        self.tail_norms.push(norm(&vector[head..]));
        self.entries.push(entry);
    }

    /// Removes row `i` by moving the last row into its place.
    fn swap_remove(&mut self, i: usize, dims: usize) {
        let last = self.entries.len() - 1;
        let (head, tail) = (head_len(dims), dims - head_len(dims));
        if i != last {
            self.heads.copy_within(last * head..(last + 1) * head, i * head);
            self.tails.copy_within(last * tail..(last + 1) * tail, i * tail);
        }
        self.heads.truncate(last * head);
        self.tails.truncate(last * tail);
        self.tail_norms.swap_remove(i);
        let removed = self.entries.swap_remove(i);
        self.by_prompt.remove(&removed.prompt);
        if i != last {
            self.by_prompt.insert(self.entries[i].prompt.clone(), i);
        }
    }

    /// The row with the highest dot product with `query` (the cosine similarity, vectors being
    /// normalized), if it is at least `threshold`.
    fn best_at_least(&self, query: &[f32], threshold: f32, dims: usize) -> Option<(usize, f32)> {
        let (head, tail) = (head_len(dims), dims - head_len(dims));
        let (query_head, query_tail) = query.split_at(head);
        let query_tail_norm = norm(query_tail);
        let mut best: Option<(usize, f32)> = None;
        for (i, row_head) in self.heads.chunks_exact(head).enumerate() {
            let bar = best.map_or(threshold, |(_, b)| b);
            let partial = dot(row_head, query_head);
            if partial + self.tail_norms[i] * query_tail_norm < bar - PRUNE_SLACK {
                continue;
            }
            let score = partial + dot(&self.tails[i * tail..(i + 1) * tail], query_tail);
            if score >= bar && best.is_none_or(|(_, b)| score > b) {
                best = Some((i, score));
            }
        }
        best
    }
}

fn norm(v: &[f32]) -> f32 {
    dot(v, v).sqrt()
}

struct Store<A> {
    spaces: HashMap<String, Space<A>>,
    len: usize,
}

/// Answers stored by the embedding of their prompt, per namespace; a [`lookup`](Self::lookup)
/// returns the most similar stored prompt's answer if its cosine similarity reaches the
/// threshold. Safe to share between tasks (lookups run in parallel, inserts one at a time).
///
/// **A hit may be the answer to a different prompt**: one similar enough by the embedder's
/// measure. Choose the threshold (and the embedder) for what a wrong reuse would cost.
///
/// Namespaces never see each other's entries (give each tenant, model or prompt template its
/// own). A lookup compares the prompt with every entry of its namespace: a scan of a contiguous
/// matrix, where rows that provably cannot reach the threshold stop after a quarter of the work
/// (the result is that of a full scan; see `docs/BENCHMARKS.md` for its cost over 100 000
/// entries). Each entry takes its prompt, its answer and `dims × 4` bytes of vector. Eviction
/// is by least recent use across all namespaces.
///
/// Hits, misses and saved cost are counted ([`stats`](Self::stats)) and reported with the labels
/// `cache` = its name and `tier` = `semantic`.
pub struct SemanticCache<A = String> {
    name: String,
    /// `None` for a cache of vectors only ([`SemanticCache::of_vectors`]).
    embedder: Option<Arc<dyn Embedder>>,
    dims: usize,
    config: SemanticConfig,
    store: RwLock<Store<A>>,
    clock: AtomicU64,
    counters: CacheCounters,
}

impl<A: Clone> SemanticCache<A> {
    /// A cache with the built-in [`HashingEmbedder`] (256 dimensions).
    pub fn with_default_embedder(
        name: impl Into<String>,
        config: SemanticConfig,
    ) -> Result<Self, SemanticError> {
        Self::new(name, Arc::new(HashingEmbedder::default()), config)
    }

    /// A cache with `embedder`. Fails if the threshold is not from 0 to 1, `max_entries` is 0
    /// or the embedder has no dimensions.
    pub fn new(
        name: impl Into<String>,
        embedder: Arc<dyn Embedder>,
        config: SemanticConfig,
    ) -> Result<Self, SemanticError> {
        let dims = embedder.dims();
        Self::build(name.into(), Some(embedder), dims, config)
    }

    /// A cache of vectors of `dims` numbers computed elsewhere (an embedding model called
    /// asynchronously, say): use [`lookup_vector`](Self::lookup_vector) and
    /// [`insert_vector`](Self::insert_vector). It has no embedder: [`lookup`](Self::lookup)
    /// by text always misses and [`insert`](Self::insert) by text stores nothing.
    pub fn of_vectors(
        name: impl Into<String>,
        dims: usize,
        config: SemanticConfig,
    ) -> Result<Self, SemanticError> {
        Self::build(name.into(), None, dims, config)
    }

    fn build(
        name: String,
        embedder: Option<Arc<dyn Embedder>>,
        dims: usize,
        config: SemanticConfig,
    ) -> Result<Self, SemanticError> {
        if !(0.0..=1.0).contains(&config.threshold) {
            return Err(SemanticError::Threshold(config.threshold));
        }
        if config.max_entries == 0 {
            return Err(SemanticError::Capacity);
        }
        if dims == 0 {
            return Err(SemanticError::Dims);
        }
        let counters = CacheCounters::new(&name, "semantic");
        Ok(SemanticCache {
            name,
            embedder,
            dims,
            config,
            store: RwLock::new(Store { spaces: HashMap::new(), len: 0 }),
            clock: AtomicU64::new(0),
            counters,
        })
    }

    /// The cache's name (its `cache` label).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The similarity from which an answer is reused.
    pub fn threshold(&self) -> f32 {
        self.config.threshold
    }

    /// The dimensions of its vectors.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// The embedding of `text` as this cache computes it: the embedder's vector, padded or cut
    /// to its dimensions and L2-normalized (so that a dot product is the cosine similarity).
    /// All zeros (which matches nothing) for a cache without an embedder.
    pub fn embed(&self, text: &str) -> Vec<f32> {
        let vector = self.embedder.as_ref().map(|e| e.embed(text)).unwrap_or_default();
        self.normalized(vector)
    }

    /// `vector` padded or cut to the cache's dimensions and L2-normalized; a vector with a
    /// number that is not finite becomes all zeros (it matches nothing).
    fn normalized(&self, mut vector: Vec<f32>) -> Vec<f32> {
        vector.resize(self.dims, 0.0);
        if vector.iter().any(|x| !x.is_finite()) {
            vector.iter_mut().for_each(|x| *x = 0.0);
        }
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 && norm.is_finite() && (norm - 1.0).abs() > 1e-6 {
            vector.iter_mut().for_each(|x| *x /= norm);
        }
        vector
    }

    /// The answer stored in `namespace` for the prompt most similar to `prompt`, if that
    /// similarity is at least the threshold; counts a hit (with its saved cost) or a miss.
    pub fn lookup(&self, namespace: &str, prompt: &str) -> Option<SemanticHit<A>> {
        self.lookup_at(namespace, self.embed(prompt), self.config.threshold)
    }

    /// [`lookup`](Self::lookup) by a vector computed elsewhere (normalized here; padded or cut
    /// to [`dims`](Self::dims)), from `threshold` (clamped to 0–1) instead of the cache's own.
    pub fn lookup_vector(&self, namespace: &str, vector: &[f32], threshold: f32) -> Option<SemanticHit<A>> {
        let threshold = if threshold.is_nan() { self.config.threshold } else { threshold.clamp(0.0, 1.0) };
        self.lookup_at(namespace, self.normalized(vector.to_vec()), threshold)
    }

    fn lookup_at(&self, namespace: &str, query: Vec<f32>, threshold: f32) -> Option<SemanticHit<A>> {
        // A zero vector (no embedder, nothing in the text) matches nothing, whatever the
        // threshold.
        let zero = query.iter().all(|x| *x == 0.0);
        let store = self.store.read_or_recover();
        let found = store.spaces.get(namespace).filter(|_| !zero).and_then(|space| {
            let (best, similarity) = space.best_at_least(&query, threshold, self.dims)?;
            let entry = &space.entries[best];
            entry.last_used.store(self.tick(), Ordering::Relaxed);
            Some(SemanticHit {
                answer: entry.answer.clone(),
                prompt: entry.prompt.clone(),
                similarity: similarity.min(1.0),
                saved_cost: entry.cost,
            })
        });
        drop(store);
        match &found {
            Some(hit) => self.counters.hit(hit.saved_cost),
            None => self.counters.miss(),
        }
        found
    }

    /// Stores `answer` for `prompt` in `namespace`, with what computing it cost. The same
    /// prompt stored again in the same namespace replaces its answer. If the cache is full,
    /// the least recently used entry (of any namespace) is evicted first.
    pub fn insert(&self, namespace: &str, prompt: &str, answer: A, cost: f64) {
        if self.embedder.is_none() {
            return;
        }
        self.insert_at(namespace, prompt, self.embed(prompt), answer, cost);
    }

    /// [`insert`](Self::insert) with the prompt's vector computed elsewhere (normalized here;
    /// padded or cut to [`dims`](Self::dims)).
    pub fn insert_vector(&self, namespace: &str, prompt: &str, vector: &[f32], answer: A, cost: f64) {
        self.insert_at(namespace, prompt, self.normalized(vector.to_vec()), answer, cost);
    }

    fn insert_at(&self, namespace: &str, prompt: &str, vector: Vec<f32>, answer: A, cost: f64) {
        let cost = if cost.is_finite() { cost.max(0.0) } else { 0.0 };
        let now = self.tick();
        let mut store = self.store.write_or_recover();
        if let Some(space) = store.spaces.get_mut(namespace)
            && let Some(&i) = space.by_prompt.get(prompt)
        {
            let entry = &mut space.entries[i];
            entry.answer = answer;
            entry.cost = cost;
            entry.last_used.store(now, Ordering::Relaxed);
            return;
        }
        if store.len >= self.config.max_entries {
            evict_least_recently_used(&mut store, self.dims);
        }
        let entry = Entry { prompt: prompt.to_string(), answer, cost, last_used: AtomicU64::new(now) };
        store.spaces.entry(namespace.to_string()).or_default().push(&vector, entry);
        store.len += 1;
    }

    /// Removes every entry of `namespace` (e.g. a tenant that leaves); how many there were.
    pub fn clear_namespace(&self, namespace: &str) -> usize {
        let mut store = self.store.write_or_recover();
        let removed = store.spaces.remove(namespace).map_or(0, |s| s.entries.len());
        store.len -= removed;
        removed
    }

    /// Entries held, all namespaces together.
    pub fn len(&self) -> usize {
        self.store.read_or_recover().len
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries held in `namespace`.
    pub fn namespace_len(&self, namespace: &str) -> usize {
        let store = self.store.read_or_recover();
        store.spaces.get(namespace).map_or(0, |s| s.entries.len())
    }

    /// Hits, misses and saved cost so far.
    pub fn stats(&self) -> CacheStats {
        self.counters.stats()
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// Evicts the entry with the oldest use. A scan over every entry: it runs only on an insert into
/// a full cache, which follows a model call that costs far more.
fn evict_least_recently_used<A>(store: &mut Store<A>, dims: usize) {
    let oldest = store
        .spaces
        .iter()
        .flat_map(|(ns, space)| {
            space.entries.iter().enumerate().map(move |(i, e)| (e.last_used.load(Ordering::Relaxed), ns, i))
        })
        .min_by_key(|(used, _, _)| *used)
        .map(|(_, ns, i)| (ns.clone(), i));
    let Some((ns, i)) = oldest else { return };
    if let Some(space) = store.spaces.get_mut(&ns) {
        space.swap_remove(i, dims);
        if space.entries.is_empty() {
            store.spaces.remove(&ns);
        }
        store.len -= 1;
    }
}

/// Dot product with eight independent sums, which the compiler turns into SIMD lanes.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut sums = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            sums[k] += x[k] * y[k];
        }
    }
    sums.iter().sum::<f32>() + tail
}

impl<A> std::fmt::Debug for SemanticCache<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = self.store.read().map_or(0, |s| s.len);
        f.debug_struct("SemanticCache")
            .field("name", &self.name)
            .field("threshold", &self.config.threshold)
            .field("entries", &len)
            .field("stats", &self.counters.stats())
            .finish()
    }
}

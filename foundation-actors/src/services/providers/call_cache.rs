//! The model-call cache: answers kept by (model, rendered prompt, parameters), so that a call
//! made again (a repeated optimization run, candidates that share prompts, an agent asked the
//! same thing) does not pay twice.
//!
//! [`CallCache::wrap`] puts the cache in front of any [`LanguageModel`] (a client, a
//! [`Provider`](super::Provider), an [`LlmRouter`](super::LlmRouter)), so every caller gains.
//! Two tiers: this process's L1 ([`LocalCache`], bounded in bytes, with a TTL) and, if given, a
//! second tier shared by the nodes ([`CacheTier`]; `foundation_cluster`'s
//! `SharedCacheHandle` implements it), asked on an L1 miss and written in the background after a call.
//!
//! - **Key**: the *scope* the model was wrapped under ([`CallCache::wrap`]: what identifies the
//!   backend, e.g. a provider's name, endpoint and model, or the simulated model's seed: two
//!   backends that answer differently must not share a scope), the model's name, every message
//!   (role, content parts, tool calls, in order), the tools offered, the tool choice, the
//!   response format, the stop sequences, the seed, `max_tokens` and the temperature, hashed
//!   with SHA-256 (a
//!   collision, which would serve another prompt's answer, is out of reach even for a prompt
//!   chosen to make one). A chain of providers wrapped as one scope caches whichever provider
//!   answered (a fallback's answer serves the chain's next identical call). The tenant is not
//!   in the key: an answer cached for one tenant serves another that sends the same prompt (and
//!   is charged to neither: a hit makes no provider call, spends no tokens and takes no
//!   rate-limit permit).
//! - **What is cached**: successful, non-empty answers only (text or tool calls; an error or an
//!   empty answer, e.g. a filtered one, is never cached; a stream only once it reached its end), without their rate-limit headers; a hit comes back with
//!   [`Completion::cached`] set and the usage the original call reported. A value from the shared
//!   tier is used only if it names the key it was stored under (a mix-up or garbage is a miss);
//!   the tier's nodes are trusted for the answers themselves, as they are for everything else.
//! - **How long**: an answer lives `time_to_live` in each tier; an L2 hit copies it into the L1
//!   afresh, so it may be served for up to twice that.
//! - **When**: [`CachePolicy::Auto`] (the default) caches calls at temperature 0 and bypasses
//!   sampled ones (temperature above 0: the caller wants another draw); [`CachePolicy::Off`]
//!   bypasses the cache for that request; [`CachePolicy::Always`] caches a sampled call too.
//!   [`CallCacheConfig::enabled`] false (config key `llm.cache`) turns it off for every call.
//! - **Not collapsed**: two identical calls in flight at once both go to the model (the second
//!   one's answer replaces the first's in the cache).
//! - **Counted**: hits, misses and saved cost (USD, from the [`ModelRegistry`]'s prices) per
//!   tier in [`CallCache::stats`] and as metrics (`foundation_cache_*{cache="llm_calls"}`,
//!   tiers `l1` and `l2`), and calls that bypassed it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use foundation_core::cache::{
    CacheCounters, CacheStats, CacheTier, EntryOptions, LocalCache, LocalCacheConfig,
};
use serde::{Deserialize, Serialize};

use super::catalog::ModelRegistry;
use super::completion::Completion;
use super::model::{BoxFuture, LanguageModel, LmError};
use super::request::ChatRequest;
use super::stream::{CompletionStream, StreamEvent};

/// The cache's name in metrics.
pub const CALL_CACHE: &str = "llm_calls";
pub use foundation_core::config::{DEFAULT_CALL_CACHE_BYTES, DEFAULT_CALL_CACHE_TTL};

/// Whether one request may be answered from the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CachePolicy {
    /// Cached at temperature 0; a sampled call (temperature above 0) bypasses the cache.
    #[default]
    Auto,
    /// Never from the cache, and not stored.
    Off,
    /// Cached whatever the temperature.
    Always,
}

/// How the call cache keeps answers.
#[derive(Debug, Clone, PartialEq)]
pub struct CallCacheConfig {
    /// Whether calls are cached at all (config key `llm.cache`). Default true.
    pub enabled: bool,
    /// The L1's bound, in bytes of answers and keys. Default [`DEFAULT_CALL_CACHE_BYTES`].
    pub max_bytes: u64,
    /// How long an answer is kept. Default [`DEFAULT_CALL_CACHE_TTL`].
    pub time_to_live: Duration,
}

impl CallCacheConfig {
    /// The `[llm]` section's `cache`, `cache_max_bytes` and `cache_ttl`.
    pub fn from_config(llm: &foundation_core::config::LlmConfig) -> CallCacheConfig {
        CallCacheConfig { enabled: llm.cache, max_bytes: llm.cache_max_bytes, time_to_live: llm.cache_ttl }
    }
}

impl Default for CallCacheConfig {
    fn default() -> Self {
        CallCacheConfig {
            enabled: true,
            max_bytes: DEFAULT_CALL_CACHE_BYTES,
            time_to_live: DEFAULT_CALL_CACHE_TTL,
        }
    }
}

/// What the call cache did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CallCacheStats {
    /// Lookups in this process's tier.
    pub l1: CacheStats,
    /// Lookups in the shared tier (after an L1 miss).
    pub l2: CacheStats,
    /// Calls that did not use the cache (sampled, turned off by the request or the config).
    pub bypassed: u64,
}

impl CallCacheStats {
    /// Calls answered from either tier.
    pub fn hits(&self) -> u64 {
        self.l1.hits + self.l2.hits
    }

    /// USD not spent thanks to both tiers.
    pub fn saved_cost(&self) -> f64 {
        self.l1.saved_cost + self.l2.saved_cost
    }
}

/// The call cache (see the [module](self)); cheap to clone (clones share the entries).
#[derive(Clone)]
pub struct CallCache {
    inner: Arc<Inner>,
}

struct Inner {
    config: CallCacheConfig,
    l1: LocalCache<Completion>,
    tier: Option<Arc<dyn CacheTier>>,
    l2: CacheCounters,
    bypassed: AtomicU64,
    prices: ModelRegistry,
}

impl std::fmt::Debug for CallCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallCache")
            .field("config", &self.inner.config)
            .field("tier", &self.inner.tier.is_some())
            .field("stats", &self.stats())
            .finish()
    }
}

/// Bytes an answer takes in the L1 (its texts and key, roughly).
fn weigh(key: &str, c: &Completion) -> u32 {
    let headers: usize = c.rate_headers.iter().map(|(k, v)| k.len() + v.len()).sum();
    let bytes = key.len() + c.content.len() + c.model.len() + c.provider.len() + headers + 64;
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

/// What the shared tier holds: the answer with the key it is for.
#[derive(Serialize, Deserialize)]
struct Shared {
    key: String,
    answer: Completion,
}

impl CallCache {
    /// A cache with only this process's tier.
    pub fn new(config: CallCacheConfig) -> CallCache {
        Self::build(config, None)
    }

    /// A cache whose L1 misses ask `tier` (shared by the nodes) before the model.
    pub fn shared(config: CallCacheConfig, tier: Arc<dyn CacheTier>) -> CallCache {
        Self::build(config, Some(tier))
    }

    fn build(config: CallCacheConfig, tier: Option<Arc<dyn CacheTier>>) -> CallCache {
        let l1 = LocalCache::weighted(
            CALL_CACHE,
            LocalCacheConfig {
                max_capacity: config.max_bytes,
                time_to_live: Some(config.time_to_live),
                time_to_idle: None,
            },
            weigh,
        );
        CallCache {
            inner: Arc::new(Inner {
                config,
                l1,
                tier,
                l2: CacheCounters::new(CALL_CACHE, "l2"),
                bypassed: AtomicU64::new(0),
                prices: ModelRegistry::with_defaults(),
            }),
        }
    }

    /// `model` behind this cache, under `scope`: a [`LanguageModel`] answering from the cache
    /// when it can. The scope names the backend (provider, endpoint, model, seed): models that
    /// may answer the same prompt differently need different scopes.
    pub fn wrap(&self, scope: impl Into<String>, model: Arc<dyn LanguageModel>) -> Arc<dyn LanguageModel> {
        Arc::new(CachedModel { inner: model, scope: scope.into(), cache: self.clone() })
    }

    /// Counts so far.
    pub fn stats(&self) -> CallCacheStats {
        CallCacheStats {
            l1: self.inner.l1.stats(),
            l2: self.inner.l2.stats(),
            bypassed: self.inner.bypassed.load(Ordering::Relaxed),
        }
    }

    /// The key of `request` to `model` under `scope` (see the [module](self)).
    pub fn key(scope: &str, model: &str, request: &ChatRequest) -> String {
        use sha2::Digest as _;
        let mut hash = sha2::Sha256::new();
        // Every field length-prefixed: no two requests write the same bytes.
        let mut field = |bytes: &[u8]| {
            hash.update((bytes.len() as u64).to_le_bytes());
            hash.update(bytes);
        };
        field(b"foundation-call/2");
        field(scope.as_bytes());
        field(model.as_bytes());
        // Everything the answer depends on, as JSON (maps in key order: the same request writes
        // the same bytes): the messages with their parts, tool calls and ids, the tools, the
        // choice, the answer's shape, the stop sequences and the seed.
        let shape = serde_json::to_vec(&(
            &request.messages,
            &request.tools,
            &request.tool_choice,
            &request.response_format,
            &request.stop,
            request.seed,
        ))
        .unwrap_or_default();
        field(&shape);
        field(&request.max_tokens.to_le_bytes());
        field(&request.temperature.to_bits().to_le_bytes());
        let digest = hash.finalize();
        let mut key = String::with_capacity(5 + 64);
        key.push_str("call:");
        for byte in digest.iter() {
            key.push_str(&format!("{byte:02x}"));
        }
        key
    }

    /// Whether `request` goes through the cache.
    pub fn applies(&self, request: &ChatRequest) -> bool {
        self.inner.config.enabled
            && match request.cache {
                CachePolicy::Off => false,
                CachePolicy::Always => true,
                CachePolicy::Auto => request.temperature <= 0.0,
            }
    }

    async fn complete(
        &self,
        scope: &str,
        model: &dyn LanguageModel,
        request: &ChatRequest,
    ) -> Result<Completion, LmError> {
        if !self.applies(request) {
            self.inner.bypassed.fetch_add(1, Ordering::Relaxed);
            return model.complete(request).await;
        }
        let key = Self::key(scope, model.model(), request);
        if let Some(hit) = self.lookup(&key).await {
            return Ok(hit);
        }
        let answer = model.complete(request).await?;
        self.store(key, &answer).await;
        Ok(answer)
    }

    /// A streamed answer: a hit is streamed whole at once; a miss streams from the model and
    /// is kept when (and only if) its stream reaches its end.
    async fn stream(
        &self,
        scope: &str,
        model: &dyn LanguageModel,
        request: &ChatRequest,
    ) -> Result<CompletionStream, LmError> {
        if !self.applies(request) {
            self.inner.bypassed.fetch_add(1, Ordering::Relaxed);
            return model.stream(request).await;
        }
        let key = Self::key(scope, model.model(), request);
        if let Some(hit) = self.lookup(&key).await {
            return Ok(CompletionStream::from_completion(hit));
        }
        let stream = model.stream(request).await?;
        let provider = stream.provider().to_string();
        let cache = self.clone();
        let keeping =
            futures::stream::unfold((stream, cache, Some(key)), |(mut stream, cache, mut key)| async move {
                let event = stream.next().await?;
                if let Ok(StreamEvent::Done(answer)) = &event
                    && let Some(key) = key.take()
                {
                    cache.store(key, answer).await;
                }
                Some((event, (stream, cache, key)))
            });
        Ok(CompletionStream::new(provider, keeping))
    }

    /// The answer kept under `key`, from the L1 or the shared tier, marked cached.
    async fn lookup(&self, key: &str) -> Option<Completion> {
        let inner = &self.inner;
        if let Some(mut hit) = inner.l1.get(key).await {
            hit.cached = true;
            return Some(hit);
        }
        let tier = inner.tier.as_ref()?;
        // Only a value stored for this very key (a mix-up or garbage is a miss).
        let found = tier
            .get(key)
            .await
            .and_then(|bytes| serde_json::from_slice::<Shared>(&bytes).ok())
            .filter(|shared| shared.key == key && !is_empty(&shared.answer))
            .map(|shared| shared.answer);
        match found {
            Some(mut hit) => {
                hit.rate_headers.clear();
                let cost = self.cost(&hit);
                inner.l2.hit(cost);
                inner.l1.insert_with(key.to_string(), hit.clone(), EntryOptions::cost(cost)).await;
                hit.cached = true;
                Some(hit)
            }
            None => {
                inner.l2.miss();
                None
            }
        }
    }

    /// Keeps a model's answer under `key` (not an empty one: filtered, refused, a glitch).
    async fn store(&self, key: String, answer: &Completion) {
        // An answer from a cache below (the router's semantic tier: the answer to another,
        // similar question, maybe another tenant's context) is not this key's answer.
        if is_empty(answer) || answer.cached {
            return;
        }
        let mut kept = answer.clone();
        kept.rate_headers.clear();
        kept.cached = false;
        let cost = self.cost(&kept);
        if let Some(tier) = self.inner.tier.clone()
            && let Ok(bytes) = serde_json::to_vec(&Shared { key: key.clone(), answer: kept.clone() })
        {
            let key = key.clone();
            tokio::spawn(async move { tier.put(&key, bytes, cost).await });
        }
        self.inner.l1.insert_with(key, kept, EntryOptions::cost(cost)).await;
    }

    fn cost(&self, c: &Completion) -> f64 {
        self.inner.prices.get(&c.provider, &c.model).map_or(0.0, |m| m.cost(c.usage))
    }
}

/// A model behind a [`CallCache`] (made by [`CallCache::wrap`]).
struct CachedModel {
    inner: Arc<dyn LanguageModel>,
    scope: String,
    cache: CallCache,
}

impl LanguageModel for CachedModel {
    fn model(&self) -> &str {
        self.inner.model()
    }

    fn complete<'a>(&'a self, request: &'a ChatRequest) -> BoxFuture<'a, Result<Completion, LmError>> {
        Box::pin(self.cache.complete(&self.scope, self.inner.as_ref(), request))
    }

    fn stream<'a>(&'a self, request: &'a ChatRequest) -> BoxFuture<'a, Result<CompletionStream, LmError>> {
        Box::pin(self.cache.stream(&self.scope, self.inner.as_ref(), request))
    }
}

/// An answer not worth keeping: neither text nor tool calls, or one that did not finish
/// normally (cut at `max_tokens`, filtered or refused, another reason).
fn is_empty(answer: &Completion) -> bool {
    (answer.content.is_empty() && answer.tool_calls.is_empty())
        || !matches!(
            answer.finish_reason,
            super::completion::FinishReason::Stop | super::completion::FinishReason::ToolCalls
        )
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;
    use crate::providers::{ChatMessage, SimulatedConfig, SimulatedModel};

    /// Counts the calls that reach the model; fails every call whose prompt says `fail`.
    struct Counted {
        model: SimulatedModel,
        calls: AtomicU64,
    }

    impl LanguageModel for Counted {
        fn model(&self) -> &str {
            self.model.model()
        }

        fn complete<'a>(&'a self, request: &'a ChatRequest) -> BoxFuture<'a, Result<Completion, LmError>> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            Box::pin(async move {
                if request.messages.iter().any(|m| m.text().contains("fail")) {
                    return Err(LmError::Timeout { provider: "counted".into(), after: Duration::ZERO });
                }
                self.model.complete(request).await
            })
        }
    }

    #[derive(Default)]
    struct MapTier(Mutex<HashMap<String, Vec<u8>>>);

    impl CacheTier for MapTier {
        fn get<'a>(&'a self, key: &'a str) -> foundation_core::cache::TierFuture<'a, Option<Vec<u8>>> {
            Box::pin(async move { self.0.lock().unwrap().get(key).cloned() })
        }

        fn put<'a>(
            &'a self,
            key: &'a str,
            value: Vec<u8>,
            _: f64,
        ) -> foundation_core::cache::TierFuture<'a, ()> {
            Box::pin(async move {
                self.0.lock().unwrap().insert(key.to_string(), value);
            })
        }
    }

    fn counted() -> Arc<Counted> {
        let model = SimulatedModel::new(SimulatedConfig { latency: Duration::ZERO, ..Default::default() });
        Arc::new(Counted { model, calls: AtomicU64::new(0) })
    }

    #[tokio::test]
    async fn a_repeated_call_is_answered_once_and_sampled_or_refused_calls_go_through() {
        let model = counted();
        let cache = CallCache::new(CallCacheConfig::default());
        let cached = cache.wrap("sim", model.clone());
        let request = ChatRequest::prompt("Question: capital of France?\nAnswer:");
        let first = cached.complete(&request).await.unwrap();
        let again = cached.complete(&request).await.unwrap();
        assert_eq!(model.calls.load(Ordering::Relaxed), 1);
        assert!(!first.cached && again.cached);
        assert_eq!((again.content, again.usage), (first.content.clone(), first.usage));
        // Another parameter is another call.
        cached.complete(&request.clone().max_tokens(7)).await.unwrap();
        assert_eq!(model.calls.load(Ordering::Relaxed), 2);
        // Sampled: bypassed unless asked; off by request: bypassed.
        let mut sampled = request.clone();
        sampled.temperature = 0.7;
        cached.complete(&sampled).await.unwrap();
        cached.complete(&sampled).await.unwrap();
        assert_eq!(model.calls.load(Ordering::Relaxed), 4);
        let always = sampled.clone().cache(CachePolicy::Always);
        cached.complete(&always).await.unwrap();
        assert!(cached.complete(&always).await.unwrap().cached);
        assert_eq!(model.calls.load(Ordering::Relaxed), 5);
        assert!(!cached.complete(&request.clone().cache(CachePolicy::Off)).await.unwrap().cached);
        assert_eq!(model.calls.load(Ordering::Relaxed), 6);
        // Errors are not cached.
        let failing = ChatRequest::prompt("please fail");
        assert!(cached.complete(&failing).await.is_err());
        assert!(cached.complete(&failing).await.is_err());
        assert_eq!(model.calls.load(Ordering::Relaxed), 8);
        let stats = cache.stats();
        assert_eq!((stats.hits(), stats.bypassed), (2, 3), "{stats:?}");
        // Turned off by configuration: every call goes through.
        let off = CallCache::new(CallCacheConfig { enabled: false, ..Default::default() })
            .wrap("sim", model.clone());
        off.complete(&request).await.unwrap();
        off.complete(&request).await.unwrap();
        assert_eq!(model.calls.load(Ordering::Relaxed), 10);
    }

    #[tokio::test]
    async fn another_process_answers_from_the_shared_tier() {
        let tier = Arc::new(MapTier::default());
        let model = counted();
        let here = CallCache::shared(CallCacheConfig::default(), tier.clone());
        let there = CallCache::shared(CallCacheConfig::default(), tier.clone());
        let request = ChatRequest::prompt("Question: capital of Peru?\nAnswer:");
        let first = here.wrap("sim", model.clone()).complete(&request).await.unwrap();
        // The put is in the background.
        for _ in 0..100 {
            if !tier.0.lock().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let second = there.wrap("sim", model.clone()).complete(&request).await.unwrap();
        assert!(second.cached);
        assert_eq!(second.content, first.content);
        assert_eq!(model.calls.load(Ordering::Relaxed), 1);
        assert_eq!((there.stats().l2.hits, there.stats().l1.hits), (1, 0));
        // Now in the L1 there too.
        there.wrap("sim", model.clone()).complete(&request).await.unwrap();
        assert_eq!(there.stats().l1.hits, 1);
        // Keys differ by scope, model, prompt, roles, order and parameters.
        let key = CallCache::key("s", "m", &request);
        assert_eq!(key.len(), "call:".len() + 64);
        let two = ChatRequest::new(vec![ChatMessage::system("a"), ChatMessage::user("b")]);
        let mut swapped = two.clone();
        swapped.messages.reverse();
        let mut roles = two.clone();
        roles.messages[0].role = super::super::message::Role::User;
        let mut warm = request.clone();
        warm.temperature = 0.5;
        let others = [
            CallCache::key("t", "m", &request),
            CallCache::key("s", "n", &request),
            CallCache::key("s", "m", &ChatRequest::prompt("Question: capital of Chile?\nAnswer:")),
            CallCache::key("s", "m", &request.clone().max_tokens(9)),
            CallCache::key("s", "m", &warm),
            CallCache::key("s", "m", &two),
            CallCache::key("s", "m", &swapped),
            CallCache::key("s", "m", &roles),
            // Field boundaries count: ("ab", "c") is not ("a", "bc").
            CallCache::key("ab", "c", &request),
            CallCache::key("a", "bc", &request),
        ];
        let mut all: Vec<&String> = others.iter().chain([&key]).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), others.len() + 1, "{others:?}");
        // Garbage, or another key's answer, in the shared tier: a miss, and the model is asked.
        let garbage = Arc::new(MapTier::default());
        let poisoned = CallCache::shared(CallCacheConfig::default(), garbage.clone());
        let chile = ChatRequest::prompt("Question: capital of Chile?\nAnswer:");
        let chile_key = CallCache::key("sim", model.model(), &chile);
        let stolen = serde_json::to_vec(&Shared {
            key: CallCache::key("sim", model.model(), &request),
            answer: first.clone(),
        })
        .unwrap();
        garbage.0.lock().unwrap().insert(chile_key.clone(), stolen);
        let calls = model.calls.load(Ordering::Relaxed);
        let answer = poisoned.wrap("sim", model.clone()).complete(&chile).await.unwrap();
        assert!(!answer.cached && answer.content != first.content);
        garbage.0.lock().unwrap().insert(chile_key, b"not json".to_vec());
        let fresh = CallCache::shared(CallCacheConfig::default(), garbage.clone());
        assert!(!fresh.wrap("sim", model.clone()).complete(&chile).await.unwrap().cached);
        assert_eq!(model.calls.load(Ordering::Relaxed), calls + 2);
    }
}

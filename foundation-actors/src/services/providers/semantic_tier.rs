//! The router's semantic tier: an answer stored for a question may be returned for a later,
//! similar enough question in the same conversation context, instead of calling a provider.
//!
//! Opt-in: per request ([`ChatRequest::semantic`](super::ChatRequest::semantic), a threshold)
//! or per tenant ([`SemanticTierConfig::tenants`]); a request's own threshold wins. It sits
//! behind the exact call cache ([`CallCache`](super::CallCache), which answers the very same
//! request without an embedding) and in front of the providers
//! ([`LlmRouter::semantic`](super::LlmRouter::semantic)).
//!
//! - **What is compared**: the text of the request's last message, which must be the user's.
//!   Everything else — the earlier messages, the tools, the tool choice, the response format,
//!   stop sequences, seed, `max_tokens`, temperature, the tenant and the router's chain — must
//!   be identical: it names the namespace the question is looked up in (a SHA-256 of it). A
//!   tenant never gets another tenant's answers.
//! - **When**: as the call cache decides ([`CachePolicy`](super::CachePolicy): not for sampled
//!   calls unless `Always`, never with `Off`). Only finished text answers are stored (finish
//!   reason `stop`, no tool calls: a tool call's arguments belong to its exact question).
//! - **Embeddings**: the question is embedded by an [`EmbeddingModel`] (a
//!   [`Provider`](super::Provider) with an embedding model puts its limits, breaker and retries
//!   under it) through an [`EmbeddingBatcher`] (concurrent questions share requests). The
//!   vector is reused to store the answer. A failed embedding, or a vector of another length
//!   than the tier's, skips the tier for that call (the provider answers; counted in
//!   [`SemanticStats::embedding_failures`]): the tier never fails a call.
//! - **Counted**: hits, misses and the cost a hit saved (the stored answer's price in the
//!   router's [`ModelRegistry`](super::ModelRegistry)) in [`SemanticTier::stats`] and as
//!   metrics (`foundation_cache_*{cache="llm_semantic",tier="semantic"}`).
//! - **Bounded**: [`SemanticTierConfig::max_entries`] answers, all namespaces together, the
//!   least recently used evicted; in this process only.
//!
//! *Cost*: a hit is the answer to a different question, similar by the embedding's measure;
//! each eligible call pays an embedding request (shared with concurrent ones) before the
//! provider.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use foundation_core::cache::{SemanticCache, SemanticConfig};

use super::call_cache::{CachePolicy, CallCache};
use super::completion::{Completion, FinishReason};
use super::embed_batch::{BatchConfig, EmbeddingBatcher};
use super::embedding::EmbeddingModel;
use super::message::Role;
use super::model::LmError;
use super::request::ChatRequest;

/// The tier's name in metrics.
pub const SEMANTIC_CACHE: &str = "llm_semantic";
/// Default [`SemanticTierConfig::max_entries`]: 10 000.
pub const DEFAULT_SEMANTIC_ENTRIES: usize = 10_000;

/// Who uses the semantic tier, and how much it keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct SemanticTierConfig {
    /// Tenants whose requests use it, with their thresholds (cosine similarity, 0 to 1). A
    /// request's own threshold wins; a request of no listed tenant without one does not use it.
    pub tenants: BTreeMap<String, f32>,
    /// The most answers kept (at least 1). Default [`DEFAULT_SEMANTIC_ENTRIES`].
    pub max_entries: usize,
    /// How questions are batched into embedding requests.
    pub batch: BatchConfig,
    /// The longest a call waits for its question's embedding before it skips the tier (default
    /// [`DEFAULT_EMBED_TIMEOUT`]).
    pub embed_timeout: std::time::Duration,
}

/// Default [`SemanticTierConfig::embed_timeout`]: 2 s.
pub const DEFAULT_EMBED_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

impl Default for SemanticTierConfig {
    fn default() -> Self {
        SemanticTierConfig {
            tenants: BTreeMap::new(),
            max_entries: DEFAULT_SEMANTIC_ENTRIES,
            batch: BatchConfig::default(),
            embed_timeout: DEFAULT_EMBED_TIMEOUT,
        }
    }
}

/// What the semantic tier did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SemanticStats {
    /// Calls answered from the tier (no provider called).
    pub hits: u64,
    /// Eligible calls it could not answer.
    pub misses: u64,
    /// USD not spent thanks to its hits.
    pub saved_cost: f64,
    /// Eligible calls that skipped it because the question could not be embedded.
    pub embedding_failures: u64,
    /// Answers it holds.
    pub entries: usize,
}

/// The semantic tier (see the [module](self)). Give it to a router with
/// [`LlmRouter::semantic`](super::LlmRouter::semantic).
pub struct SemanticTier {
    cache: SemanticCache<Completion>,
    embedder: EmbeddingBatcher,
    tenants: BTreeMap<String, f32>,
    embed_timeout: std::time::Duration,
    embedding_failures: AtomicU64,
}

impl std::fmt::Debug for SemanticTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SemanticTier")
            .field("embedder", &self.embedder.model())
            .field("dims", &self.cache.dims())
            .field("tenants", &self.tenants)
            .finish_non_exhaustive()
    }
}

/// A question looked up and not found: where and by what vector its answer is stored.
pub(crate) struct Miss {
    namespace: String,
    question: String,
    vector: Vec<f32>,
}

/// What the tier says about a request.
pub(crate) enum Lookup {
    /// Not for the tier (not opted in, not cacheable, not a user's question, no embedding).
    Skip,
    /// Answered.
    Hit(Completion),
    /// To store once answered.
    Miss(Miss),
}

impl SemanticTier {
    /// A tier embedding questions with `embeddings`, whose vectors have `dims` numbers. Needs a
    /// tokio runtime (the batcher's task). Fails on a threshold outside 0–1, `max_entries` 0 or
    /// `dims` 0.
    pub fn new(
        embeddings: Arc<dyn EmbeddingModel>,
        dims: usize,
        config: SemanticTierConfig,
    ) -> Result<Self, LmError> {
        let invalid = |reason: String| LmError::InvalidRequest { reason };
        if let Some((tenant, t)) = config.tenants.iter().find(|(_, t)| !(0.0..=1.0).contains(*t)) {
            return Err(invalid(format!("tenant `{tenant}`'s semantic threshold {t} is not from 0 to 1")));
        }
        // The cache's own threshold is unused: every lookup gives its own.
        let cache_config = SemanticConfig { threshold: 1.0, max_entries: config.max_entries };
        let cache = SemanticCache::of_vectors(SEMANTIC_CACHE, dims, cache_config)
            .map_err(|e| invalid(format!("semantic tier: {e}")))?;
        Ok(SemanticTier {
            cache,
            embedder: EmbeddingBatcher::new(embeddings, config.batch),
            tenants: config.tenants,
            embed_timeout: config.embed_timeout,
            embedding_failures: AtomicU64::new(0),
        })
    }

    /// Counts so far.
    pub fn stats(&self) -> SemanticStats {
        let cache = self.cache.stats();
        SemanticStats {
            hits: cache.hits,
            misses: cache.misses,
            saved_cost: cache.saved_cost,
            embedding_failures: self.embedding_failures.load(Ordering::Relaxed),
            entries: self.cache.len(),
        }
    }

    /// The threshold `request` is looked up with, if it uses the tier.
    fn threshold(&self, request: &ChatRequest) -> Option<f32> {
        let cacheable = match request.cache {
            CachePolicy::Off => false,
            CachePolicy::Always => true,
            CachePolicy::Auto => request.temperature <= 0.0,
        };
        if !cacheable {
            return None;
        }
        let tenant = request.tenant.as_ref().and_then(|t| self.tenants.get(t).copied());
        // A request may opt in by itself, or ask for more similarity than its tenant's
        // threshold, never less (the tenant's setting is the floor).
        match (request.semantic, tenant) {
            (Some(own), Some(floor)) => Some(own.max(floor)),
            (own, floor) => own.or(floor),
        }
    }

    /// Looks `request` up under `scope` (the router's chain).
    pub(crate) async fn lookup(&self, scope: &str, request: &ChatRequest) -> Lookup {
        let Some(threshold) = self.threshold(request) else { return Lookup::Skip };
        let Some(last) = request.messages.last().filter(|m| m.role == Role::User) else {
            return Lookup::Skip;
        };
        // Only a question of text: an image would not be compared.
        if last.content.iter().any(|p| !matches!(p, super::message::ContentPart::Text { .. })) {
            return Lookup::Skip;
        }
        let question = last.text();
        if question.trim().is_empty() {
            return Lookup::Skip;
        }
        // The namespace: the request without its question (and with its tenant).
        let mut context = request.clone();
        context.messages.pop();
        let tenant = match request.tenant.as_deref() {
            Some(t) => format!("semantic:tenant:{t}"),
            None => "semantic:none".to_string(),
        };
        let namespace = CallCache::key(&tenant, scope, &context);
        // Bounded: a slow or stuck embedding model skips the tier, it never holds the call.
        let embedded = tokio::time::timeout(self.embed_timeout, self.embedder.embed(&question))
            .await
            .unwrap_or_else(|_| {
                Err(LmError::Timeout {
                    provider: self.embedder.model().to_string(),
                    after: self.embed_timeout,
                })
            });
        let usable = |v: &Vec<f32>| v.iter().all(|x| x.is_finite()) && v.iter().any(|x| *x != 0.0);
        let vector = match embedded {
            Ok(v) if v.len() == self.cache.dims() && usable(&v) => v,
            Ok(v) if v.len() == self.cache.dims() => {
                self.embedding_failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("a question's embedding is zero or not finite; semantic tier skipped");
                return Lookup::Skip;
            }
            Ok(v) => {
                self.embedding_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    got = v.len(),
                    want = self.cache.dims(),
                    "the embedding model's vectors are not the semantic tier's length; tier skipped"
                );
                return Lookup::Skip;
            }
            Err(e) => {
                self.embedding_failures.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("foundation_llm_semantic_embedding_failures_total").increment(1);
                tracing::debug!(error = %e, "a question could not be embedded; semantic tier skipped");
                return Lookup::Skip;
            }
        };
        match self.cache.lookup_vector(&namespace, &vector, threshold) {
            Some(hit) => {
                let mut answer = hit.answer;
                answer.cached = true;
                Lookup::Hit(answer)
            }
            None => Lookup::Miss(Miss { namespace, question, vector }),
        }
    }

    /// Stores an answer to a question that missed, with what it cost.
    pub(crate) fn store(&self, miss: Miss, answer: &Completion, cost: f64) {
        if answer.finish_reason != FinishReason::Stop
            || !answer.tool_calls.is_empty()
            || answer.content.is_empty()
        {
            return;
        }
        let mut kept = answer.clone();
        kept.rate_headers.clear();
        self.cache.insert_vector(&miss.namespace, &miss.question, &miss.vector, kept, cost);
    }
}

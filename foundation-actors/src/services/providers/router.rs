//! A chain of providers: the first that can serve a request does, and usage is counted.

use std::sync::Arc;
use std::time::Instant;

use foundation_core::config::{LiveConfig, LlmConfig};

use super::catalog::ModelRegistry;
use super::catalog::ModelStatus;
use super::completion::Completion;
use super::model::{BoxFuture, LanguageModel, LmError};
use super::provider::Provider;
use super::request::ChatRequest;
use super::semantic_tier::{Lookup, Miss, SemanticStats, SemanticTier, SemanticTierConfig};
use super::stream::{CompletionStream, StreamEvent};
use super::tokens;
use super::usage::UsageLedger;

/// A router following a [`LiveConfig`] ([`LlmRouter::follow`]); dropping it stops following.
#[derive(Debug)]
#[must_use = "dropping the follower stops applying reloads"]
pub struct ConfigFollower {
    task: tokio::task::JoinHandle<()>,
    applied: std::sync::Arc<std::sync::atomic::AtomicU64>,
    refused: std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, String>>>,
}

impl ConfigFollower {
    /// Configurations handled so far (the one in force when following started counts).
    pub fn changes_applied(&self) -> u64 {
        self.applied.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Providers whose limits the configuration in force could not apply, with why (a kind of
    /// limit added or removed, which needs a restart; a provider no longer configured). Empty
    /// when every provider runs on its configured limits.
    pub fn refused(&self) -> Vec<(String, String)> {
        use foundation_core::sync::MutexRecover;
        self.refused.lock_or_recover().iter().map(|(p, why)| (p.clone(), why.clone())).collect()
    }
}

impl Drop for ConfigFollower {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Providers tried in order: a provider whose breaker is open, whose budget would wait too long,
/// whose context window is too small or that fails after its retries is skipped for the next.
/// Cheap to clone. It is itself a [`LanguageModel`].
#[derive(Debug, Clone)]
pub struct LlmRouter {
    chain: Vec<Provider>,
    models: ModelRegistry,
    usage: UsageLedger,
    semantic: Option<Arc<SemanticTier>>,
    routing: Routing,
    observed: Arc<std::sync::Mutex<std::collections::HashMap<String, Observed>>>,
}

pub use foundation_core::config::Routing;

/// What the router observed of a provider: its recent failures and latency.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Observed {
    /// A moving average of its calls' failures (1 a failure, 0 a success; each call weighs
    /// [`OBSERVED_WEIGHT`]).
    pub failure_rate: f64,
    /// A moving average of its successful calls' latency, in milliseconds (`None` before the
    /// first).
    pub latency_ms: Option<f64>,
    /// Calls observed.
    pub calls: u64,
}

/// How much one call moves a provider's observed averages (0.2).
pub const OBSERVED_WEIGHT: f64 = 0.2;
/// A provider whose observed failure rate is above this is tried after the healthy ones,
/// whatever the routing (0.5).
pub const UNHEALTHY_FAILURE_RATE: f64 = 0.5;

impl Observed {
    fn record(&mut self, ok: bool, latency: Option<std::time::Duration>) {
        let x = if ok { 0.0 } else { 1.0 };
        self.failure_rate =
            if self.calls == 0 { x } else { self.failure_rate + OBSERVED_WEIGHT * (x - self.failure_rate) };
        if let Some(latency) = latency {
            let ms = latency.as_secs_f64() * 1e3;
            self.latency_ms = Some(match self.latency_ms {
                None => ms,
                Some(avg) => avg + OBSERVED_WEIGHT * (ms - avg),
            });
        }
        self.calls += 1;
    }

    /// Whether it is tried among the healthy providers.
    pub fn healthy(&self) -> bool {
        self.failure_rate <= UNHEALTHY_FAILURE_RATE
    }
}

impl LlmRouter {
    /// An empty chain pricing calls with `models`.
    pub fn new(models: ModelRegistry) -> Self {
        LlmRouter {
            chain: Vec::new(),
            models,
            usage: UsageLedger::new(),
            semantic: None,
            routing: Routing::Chain,
            observed: Default::default(),
        }
    }

    /// Tries the providers in this order (default [`Routing::Chain`]); unhealthy ones
    /// ([`Observed::healthy`]) come after the others whatever the routing.
    pub fn routing(mut self, routing: Routing) -> Self {
        self.routing = routing;
        self
    }

    /// What was observed of each provider (by name) that was called.
    pub fn observed(&self) -> Vec<(String, Observed)> {
        use foundation_core::sync::MutexRecover;
        let observed = self.observed.lock_or_recover();
        let mut all: Vec<(String, Observed)> = observed.iter().map(|(k, v)| (k.clone(), *v)).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    fn observe(&self, provider: &str, ok: bool, latency: Option<std::time::Duration>) {
        use foundation_core::sync::MutexRecover;
        self.observed.lock_or_recover().entry(provider.to_string()).or_default().record(ok, latency);
    }

    /// The providers in the order this request tries them.
    fn order(&self, request: &ChatRequest) -> Vec<&Provider> {
        use foundation_core::sync::MutexRecover;
        let observed = self.observed.lock_or_recover().clone();
        let seen = |p: &Provider| observed.get(p.name()).copied().unwrap_or_default();
        let mut order: Vec<(usize, &Provider)> = self.chain.iter().enumerate().collect();
        match self.routing {
            Routing::Chain => {}
            Routing::Cheapest => {
                let expected = super::completion::Usage {
                    prompt_tokens: tokens::request_prompt(request),
                    completion_tokens: request.max_tokens,
                    cached_prompt_tokens: 0,
                };
                let cost = |p: &Provider| {
                    self.models.get(p.name(), p.model()).map_or(f64::INFINITY, |s| s.cost(expected))
                };
                order.sort_by(|(i, a), (j, b)| cost(a).total_cmp(&cost(b)).then(i.cmp(j)));
            }
            Routing::Fastest => {
                let latency = |p: &Provider| seen(p).latency_ms.unwrap_or(0.0);
                order.sort_by(|(i, a), (j, b)| latency(a).total_cmp(&latency(b)).then(i.cmp(j)));
            }
        }
        // Stable: the healthy ones in the routing's order, then the others.
        order.sort_by_key(|(_, p)| !seen(p).healthy());
        order.into_iter().map(|(_, p)| p).collect()
    }

    /// Answers from `tier` the requests that opt in to it (see [`SemanticTier`]), before any
    /// provider; stores the answers of those it could not.
    pub fn semantic(mut self, tier: SemanticTier) -> Self {
        self.semantic = Some(Arc::new(tier));
        self
    }

    /// The semantic tier's counts, if it has one.
    pub fn semantic_stats(&self) -> Option<SemanticStats> {
        self.semantic.as_ref().map(|t| t.stats())
    }

    /// What names this chain in the semantic tier: its providers and models, in order.
    fn scope(&self) -> String {
        self.chain.iter().map(|p| format!("{}/{}", p.name(), p.model())).collect::<Vec<_>>().join(",")
    }

    async fn semantic_lookup(&self, request: &ChatRequest) -> Lookup {
        match &self.semantic {
            Some(tier) => tier.lookup(&self.scope(), request).await,
            None => Lookup::Skip,
        }
    }

    /// Appends a provider to the chain.
    pub fn provider(mut self, provider: Provider) -> Self {
        self.chain.push(provider);
        self
    }

    /// The chain `[llm]` describes (`chain`, or every provider by name), with the default
    /// model registry; simulated providers run with `seed`.
    pub fn from_config(config: &LlmConfig, seed: u64) -> Result<Self, LmError> {
        let names: Vec<&String> = if config.chain.is_empty() {
            config.providers.keys().collect()
        } else {
            config.chain.iter().collect()
        };
        let mut router = Self::new(ModelRegistry::with_defaults()).routing(config.routing);
        let semantic = config.semantic_provider.as_ref();
        let dims = config.semantic_dims as usize;
        let mut embedder: Option<Provider> = None;
        for name in names {
            let p = config
                .providers
                .get(name)
                .ok_or_else(|| LmError::Unknown { what: "provider".into(), name: name.clone() })?;
            let wanted = (semantic == Some(name)).then_some(dims);
            let mut provider = Provider::from_config(name, p, seed)?;
            if let Some(model) = Provider::embeddings_from_config(name, p, wanted)? {
                provider = provider.with_shared_embeddings(model);
            }
            if semantic == Some(name) {
                embedder = Some(provider.clone());
            }
            router = router.provider(provider);
        }
        if let Some(name) = semantic {
            let embedder = match embedder {
                Some(in_chain) => in_chain,
                // Not in the chain: its own protections, for embeddings only.
                None => {
                    let p = config
                        .providers
                        .get(name)
                        .ok_or_else(|| LmError::Unknown { what: "provider".into(), name: name.clone() })?;
                    let model = Provider::embeddings_from_config(name, p, Some(dims))?.ok_or_else(|| {
                        LmError::InvalidRequest {
                            reason: format!("llm.semantic_provider `{name}` has no embedding_model"),
                        }
                    })?;
                    Provider::from_config(name, p, seed)?.with_shared_embeddings(model)
                }
            };
            if tokio::runtime::Handle::try_current().is_err() {
                return Err(LmError::InvalidRequest {
                    reason: "llm.semantic_provider: the semantic tier needs a tokio runtime".into(),
                });
            }
            let tier_config = SemanticTierConfig {
                tenants: config
                    .semantic_tenants
                    .iter()
                    .map(|t| (t.clone(), config.semantic_threshold as f32))
                    .collect(),
                max_entries: config.semantic_max_entries.min(usize::MAX as u64) as usize,
                ..Default::default()
            };
            router = router.semantic(SemanticTier::new(Arc::new(embedder), dims, tier_config)?);
        }
        Ok(router)
    }

    /// Follows `live`: whenever `[llm.providers]` changes (a reload: [`LiveConfig::update`],
    /// `replace` or `set`), each provider of this router that the new configuration names gets
    /// that entry's limits (its `profile` with its `limits`) at once, through
    /// [`Provider::set_limits`]. Limits are the live keys of `[llm]`; other provider keys
    /// (`kind`, `model`, `base_url`, `timeout`, `attempts`) need a restart. So does adding or
    /// removing a kind of limit (an `rpm` where there was none, or a `profile` with other kinds
    /// of limits): that is refused for the provider, which keeps its limits, and
    /// [`ConfigFollower::refused`], a warning and the counter
    /// `foundation_config_reload_refused_total` say so. The configuration in force when it
    /// starts is applied first. Stops when the returned handle is dropped (or the `LiveConfig`
    /// is). Needs a tokio runtime.
    pub fn follow(&self, live: &LiveConfig) -> Result<ConfigFollower, foundation_core::config::ConfigError> {
        use foundation_core::sync::MutexRecover;
        let mut changes = live.subscribe(["llm.providers"])?;
        let providers = self.chain.clone();
        let applied = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let refused = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
        let (counter, refusals) = (applied.clone(), refused.clone());
        let apply = move |config: &foundation_core::config::FoundationConfig| {
            let mut refusals = refusals.lock_or_recover();
            for provider in &providers {
                let name = provider.name().to_string();
                let Some(entry) = config.llm.providers.get(&name) else {
                    tracing::warn!(provider = %name, "provider no longer configured; its limits stay");
                    refusals.insert(name, "no longer configured: its limits stay as they were".into());
                    continue;
                };
                let limits = entry.effective_limits();
                match provider.set_limits(limits) {
                    Ok(()) => {
                        refusals.remove(&name);
                    }
                    Err(e) => {
                        tracing::warn!(provider = %name, error = %e, "provider limits not reloaded");
                        metrics::counter!("foundation_config_reload_refused_total", "provider" => name.clone())
                            .increment(1);
                        refusals.insert(name, e.to_string());
                    }
                }
            }
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        };
        let task = tokio::spawn(async move {
            apply(&changes.current());
            while let Some(change) = changes.changed().await {
                apply(&change.config);
            }
        });
        Ok(ConfigFollower { task, applied, refused })
    }

    /// The providers, in chain order.
    pub fn providers(&self) -> &[Provider] {
        &self.chain
    }

    /// The provider called `name`.
    pub fn get(&self, name: &str) -> Option<&Provider> {
        self.chain.iter().find(|p| p.name() == name)
    }

    /// The model registry.
    pub fn models(&self) -> &ModelRegistry {
        &self.models
    }

    /// Records usage in `ledger` (one loaded with [`UsageLedger::load`], say, or shared with
    /// other routers) instead of a ledger of its own.
    pub fn usage_ledger(mut self, ledger: UsageLedger) -> Self {
        self.usage = ledger;
        self
    }

    /// Usage and cost so far.
    pub fn usage(&self) -> &UsageLedger {
        &self.usage
    }

    /// The provider's model spec, if known, or why it is not called: its model is disabled or
    /// retired, or the request does not fit its context. A deprecated model is called, with
    /// a warning.
    fn fits(
        &self,
        provider: &Provider,
        request: &ChatRequest,
    ) -> Result<Option<&super::catalog::ModelSpec>, LmError> {
        let unavailable = |reason: String| LmError::ModelUnavailable {
            provider: provider.name().to_string(),
            model: provider.model().to_string(),
            reason,
        };
        match self.models.status(provider.name(), provider.model(), std::time::SystemTime::now()) {
            ModelStatus::Active => {}
            ModelStatus::Disabled => return Err(unavailable("disabled in the model registry".into())),
            ModelStatus::Retired => return Err(unavailable("past its retirement date".into())),
            ModelStatus::Deprecated { refuse_from_unix_secs } => {
                metrics::counter!(
                    "foundation_llm_deprecated_calls_total",
                    "provider" => provider.name().to_string(),
                    "model" => provider.model().to_string()
                )
                .increment(1);
                self.warn_deprecated(provider, refuse_from_unix_secs);
            }
        }
        let spec = self.models.get(provider.name(), provider.model());
        if let Some(spec) = spec {
            let prompt = tokens::request_prompt(request);
            if prompt.saturating_add(request.max_tokens) > spec.context_window {
                return Err(LmError::ContextTooLong {
                    model: spec.model.clone(),
                    tokens: prompt,
                    max_tokens: request.max_tokens,
                    window: spec.context_window,
                });
            }
        }
        Ok(spec)
    }

    /// A warning that a deprecated model was called, at most once a minute per provider.
    fn warn_deprecated(&self, provider: &Provider, refuse_from_unix_secs: u64) {
        use foundation_core::sync::MutexRecover;
        static WARNED: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<String, Instant>>> =
            std::sync::OnceLock::new();
        let mut warned = WARNED.get_or_init(Default::default).lock_or_recover();
        let key = format!("{}/{}", provider.name(), provider.model());
        if warned.get(&key).is_none_or(|at| at.elapsed() >= std::time::Duration::from_secs(60)) {
            warned.insert(key, Instant::now());
            tracing::warn!(
                provider = provider.name(),
                model = provider.model(),
                refuse_from_unix_secs,
                "a deprecated model was called; it will be refused from its retirement date"
            );
        }
    }

    /// Serves a request from the first provider of the chain that can. An invalid request
    /// ([`ChatRequest::check`]) is refused before any provider sees it.
    pub async fn complete(&self, request: &ChatRequest) -> Result<Completion, LmError> {
        request.check().map_err(|reason| LmError::InvalidRequest { reason })?;
        let mut miss = match self.semantic_lookup(request).await {
            Lookup::Hit(answer) => return Ok(answer),
            Lookup::Miss(miss) => Some(miss),
            Lookup::Skip => None,
        };
        let tenant = request.tenant.as_deref();
        let mut tried = Vec::new();
        for provider in self.order(request) {
            let spec = match self.fits(provider, request) {
                Ok(spec) => spec,
                Err(e) => {
                    tried.push(e);
                    continue;
                }
            };
            let started = Instant::now();
            match provider.complete(request).await {
                Ok(completion) => {
                    let cost = self
                        .models
                        .get(provider.name(), &completion.model)
                        .or(spec)
                        .map_or(0.0, |s| s.cost(completion.usage));
                    self.usage.record_success(
                        provider.name(),
                        &completion.model,
                        tenant,
                        completion.usage,
                        cost,
                        started.elapsed(),
                    );
                    if let (Some(tier), Some(miss)) = (&self.semantic, miss.take()) {
                        tier.store(miss, &completion, cost);
                    }
                    self.observe(provider.name(), true, Some(started.elapsed()));
                    return Ok(completion);
                }
                Err(e) => {
                    if !matches!(e, LmError::CircuitOpen { .. } | LmError::OverBudget { .. }) {
                        self.usage.record_failure(provider.name(), provider.model(), tenant);
                    }
                    if e.is_provider_failure() {
                        self.observe(provider.name(), false, None);
                    }
                    tracing::debug!(provider = provider.name(), error = %e, "provider did not serve; trying the next");
                    tried.push(e);
                }
            }
        }
        match tried.len() {
            0 => Err(LmError::Unknown { what: "provider".into(), name: "(the chain is empty)".into() }),
            1 => Err(tried.remove(0)),
            _ => Err(LmError::Exhausted { tried }),
        }
    }
}

impl LlmRouter {
    /// Streams the answer of the first provider of the chain that opens a stream (the same
    /// skipping rules as [`complete`](Self::complete); a provider that fails after its stream
    /// opened is not replaced: pieces were already given out). Usage and cost are recorded when
    /// the stream ends; a stream cut before its end (dropped, or failed after it opened) is
    /// recorded as cut (`UsageTotals::cut`, a failure too if it failed) with the prompt and the
    /// completion tokens of the pieces received.
    pub async fn stream(&self, request: &ChatRequest) -> Result<CompletionStream, LmError> {
        request.check().map_err(|reason| LmError::InvalidRequest { reason })?;
        let mut miss = match self.semantic_lookup(request).await {
            Lookup::Hit(answer) => return Ok(CompletionStream::from_completion(answer)),
            Lookup::Miss(miss) => Some(miss),
            Lookup::Skip => None,
        };
        let mut tried = Vec::new();
        for provider in self.order(request) {
            let spec = match self.fits(provider, request) {
                Ok(spec) => spec.cloned(),
                Err(e) => {
                    tried.push(e);
                    continue;
                }
            };
            let started = Instant::now();
            match provider.stream(request).await {
                Ok(stream) => {
                    // Its latency: the time to open the stream (comparable across providers).
                    self.observe(provider.name(), true, Some(started.elapsed()));
                    let record = Record {
                        router: self.clone(),
                        provider: provider.name().to_string(),
                        model: provider.model().to_string(),
                        tenant: request.tenant.clone(),
                        spec,
                        started,
                        prompt: tokens::request_prompt(request),
                        received: 0,
                        open: true,
                        semantic: miss.take(),
                    };
                    let name = provider.name().to_string();
                    let recorded =
                        futures::stream::unfold((stream, record), |(mut stream, mut record)| async move {
                            let event = stream.next().await?;
                            match &event {
                                Ok(StreamEvent::Done(completion)) => record.done(completion),
                                Ok(piece) => record.received += super::stream::piece_tokens(piece),
                                Err(_) => record.cut(true),
                            }
                            Some((event, (stream, record)))
                        });
                    return Ok(CompletionStream::new(name, recorded));
                }
                Err(e) => {
                    if e.is_provider_failure() {
                        self.observe(provider.name(), false, None);
                    }
                    if !matches!(
                        e,
                        LmError::CircuitOpen { .. }
                            | LmError::OverBudget { .. }
                            | LmError::InvalidRequest { .. }
                    ) {
                        self.usage.record_failure(
                            provider.name(),
                            provider.model(),
                            request.tenant.as_deref(),
                        );
                    }
                    if matches!(e, LmError::InvalidRequest { .. }) {
                        return Err(e);
                    }
                    tracing::debug!(provider = provider.name(), error = %e, "provider did not open a stream; trying the next");
                    tried.push(e);
                }
            }
        }
        match tried.len() {
            0 => Err(LmError::Unknown { what: "provider".into(), name: "(the chain is empty)".into() }),
            1 => Err(tried.remove(0)),
            _ => Err(LmError::Exhausted { tried }),
        }
    }
}

/// A stream's entry in the ledger: written once, at its end or when it is dropped.
struct Record {
    router: LlmRouter,
    provider: String,
    model: String,
    tenant: Option<String>,
    spec: Option<super::catalog::ModelSpec>,
    started: Instant,
    prompt: u64,
    received: u64,
    open: bool,
    /// Where the semantic tier stores the answer, if the request missed it.
    semantic: Option<Miss>,
}

impl Record {
    fn done(&mut self, completion: &Completion) {
        if std::mem::take(&mut self.open) {
            let cost = self.cost(&completion.model, completion.usage);
            let router = &self.router;
            if let (Some(tier), Some(miss)) = (&router.semantic, self.semantic.take()) {
                tier.store(miss, completion, cost);
            }
            router.usage.record_success(
                &self.provider,
                &completion.model,
                self.tenant.as_deref(),
                completion.usage,
                cost,
                self.started.elapsed(),
            );
        }
    }

    /// Cut before its end: failed (`failed`) or dropped by the caller.
    fn cut(&mut self, failed: bool) {
        if std::mem::take(&mut self.open) {
            if failed {
                self.router.observe(&self.provider, false, None);
            }
            let usage = super::completion::Usage {
                prompt_tokens: self.prompt,
                completion_tokens: self.received,
                cached_prompt_tokens: 0,
            };
            let cost = self.cost(&self.model, usage);
            self.router.usage.record_cut(
                &self.provider,
                &self.model,
                self.tenant.as_deref(),
                usage,
                cost,
                failed,
            );
        }
    }

    fn cost(&self, model: &str, usage: super::completion::Usage) -> f64 {
        self.router.models.get(&self.provider, model).or(self.spec.as_ref()).map_or(0.0, |s| s.cost(usage))
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        self.cut(false);
    }
}

impl LanguageModel for LlmRouter {
    fn model(&self) -> &str {
        self.chain.first().map_or("", |p| p.model())
    }

    fn complete<'a>(&'a self, request: &'a ChatRequest) -> BoxFuture<'a, Result<Completion, LmError>> {
        Box::pin(LlmRouter::complete(self, request))
    }

    fn stream<'a>(&'a self, request: &'a ChatRequest) -> BoxFuture<'a, Result<CompletionStream, LmError>> {
        Box::pin(LlmRouter::stream(self, request))
    }
}

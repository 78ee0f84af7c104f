//! One provider behind its protections: a rate limiter over its account's limits, a circuit
//! breaker, and retries with backoff that honour `retry-after`. Chat calls and, if the
//! provider has an embedding model ([`Provider::with_embeddings`]), embedding calls share the
//! account's limits (an embedding request is one request and its texts' tokens), but not its
//! chat model's breaker, retries or 429 pauses.

use std::sync::Arc;
use std::time::Duration;

use foundation_core::circuit_breaker::{Attempt, BreakerConfig, CircuitBreaker};
use foundation_core::config::{ProviderConfig, ProviderKind};
use foundation_core::rate_limit::{Permit, ProviderLimits, RateLimitError, RateLimiter, TokenCost};
use foundation_core::retry::RetryPolicy;
use foundation_core::sync::RwLockRecover;

use super::completion::{Completion, Usage};
use super::embedding::{EmbeddingModel, Embeddings};
use super::model::{BoxFuture, LanguageModel, LmError};
use super::openai::OpenAiClient;
use super::request::ChatRequest;
use super::simulated::{SimulatedConfig, SimulatedModel};
use super::stream::{CompletionStream, StreamEvent};
use super::tokens;

/// Default longest wait for the budget before the call goes to the next provider instead.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(30);
/// Pause after a 429 that said nothing about when to come back.
pub const DEFAULT_RATE_LIMIT_PAUSE: Duration = Duration::from_secs(1);

/// How a provider is protected.
#[derive(Debug, Clone)]
pub struct ProviderOptions {
    /// Its account's limits. Default: none.
    pub limits: ProviderLimits,
    /// When its breaker opens. Default [`BreakerConfig::default`] (5 failures, 30 s).
    pub breaker: BreakerConfig,
    /// Attempts and backoff for failures and 429s. Default 3 attempts, 100 ms doubling.
    pub retry: RetryPolicy,
    /// Longest wait for the budget before giving up on this provider ([`LmError::OverBudget`],
    /// and the chain's next provider serves). Default [`DEFAULT_MAX_WAIT`].
    pub max_wait: Duration,
    /// Longest a call may take. Default 60 s. For a stream: the longest wait for it to open and
    /// for each next piece, and [`STREAM_DEADLINE_FACTOR`](super::STREAM_DEADLINE_FACTOR) times
    /// this for the whole stream.
    pub timeout: Duration,
}

impl Default for ProviderOptions {
    fn default() -> Self {
        ProviderOptions {
            limits: ProviderLimits::default(),
            breaker: BreakerConfig::default(),
            retry: RetryPolicy::new(3),
            max_wait: DEFAULT_MAX_WAIT,
            timeout: Duration::from_secs(60),
        }
    }
}

/// A provider: a model client behind a limiter, a breaker and retries. Cheap to clone.
#[derive(Clone)]
pub struct Provider {
    name: String,
    model: Arc<dyn LanguageModel>,
    embeddings: Option<Arc<dyn EmbeddingModel>>,
    /// Shared by clones, so that a reload ([`Provider::set_limits`]) reaches every one.
    limits: Arc<std::sync::RwLock<ProviderLimits>>,
    limiter: Option<RateLimiter>,
    breaker: CircuitBreaker,
    retry: RetryPolicy,
    max_wait: Duration,
    timeout: Duration,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider").field("name", &self.name).field("model", &self.model.model()).finish()
    }
}

impl Provider {
    /// A provider called `name` that calls `model`.
    pub fn new(
        name: impl Into<String>,
        model: impl LanguageModel,
        options: ProviderOptions,
    ) -> Result<Self, LmError> {
        let name = name.into();
        let limiter = options.limits.limiter().map_err(|e| LmError::Rejected {
            provider: name.clone(),
            status: 0,
            body: format!("invalid limits: {e}"),
        })?;
        Ok(Provider {
            name,
            model: Arc::new(model),
            embeddings: None,
            limits: Arc::new(std::sync::RwLock::new(options.limits)),
            limiter,
            breaker: CircuitBreaker::new(options.breaker),
            retry: options.retry,
            max_wait: options.max_wait,
            timeout: options.timeout,
        })
    }

    /// The provider `[llm.providers.NAME]` describes; a simulated one runs with `seed`.
    pub fn from_config(name: &str, config: &ProviderConfig, seed: u64) -> Result<Self, LmError> {
        let options = ProviderOptions {
            limits: config.effective_limits(),
            retry: RetryPolicy::new(config.attempts),
            timeout: config.timeout,
            ..Default::default()
        };
        match config.kind {
            ProviderKind::Simulated => {
                let sim = SimulatedConfig {
                    provider: name.to_string(),
                    model: config.model.clone(),
                    seed,
                    ..Default::default()
                };
                Self::new(name, SimulatedModel::new(sim), options)
            }
            ProviderKind::OpenaiCompatible => {
                let client = OpenAiClient::new(
                    name,
                    config.model.clone(),
                    config.base_url.clone(),
                    config.api_key.clone(),
                    config.timeout,
                );
                Self::new(name, client, options)
            }
            #[cfg(feature = "anthropic")]
            ProviderKind::Anthropic => {
                let client = super::anthropic::AnthropicClient::new(
                    name,
                    config.model.clone(),
                    config.base_url.clone(),
                    config.api_key.clone(),
                    config.timeout,
                );
                Self::new(name, client, options)
            }
            #[cfg(not(feature = "anthropic"))]
            ProviderKind::Anthropic => Err(LmError::Rejected {
                provider: name.to_string(),
                status: 0,
                body: "kind `anthropic` needs foundation-actors' `anthropic` feature".into(),
            }),
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Gives the provider an embedding model, called through the same limiter, breaker and
    /// retries as its chat model ([`EmbeddingModel::embed`] on the provider).
    pub fn with_embeddings(self, model: impl EmbeddingModel) -> Self {
        self.with_shared_embeddings(Arc::new(model))
    }

    /// [`with_embeddings`](Self::with_embeddings), the model already shared.
    pub fn with_shared_embeddings(mut self, model: Arc<dyn EmbeddingModel>) -> Self {
        self.embeddings = Some(model);
        self
    }

    /// The embedding model `[llm.providers.NAME]`'s `embedding_model` names, if any, with
    /// vectors of `dims` numbers if given (the simulated one: 256 unless given).
    pub fn embeddings_from_config(
        name: &str,
        config: &ProviderConfig,
        dims: Option<usize>,
    ) -> Result<Option<Arc<dyn EmbeddingModel>>, LmError> {
        let Some(model) = &config.embedding_model else { return Ok(None) };
        Ok(Some(match config.kind {
            ProviderKind::Simulated => {
                Arc::new(super::embedding::SimulatedEmbeddings::new(model.clone(), dims.unwrap_or(256)))
            }
            ProviderKind::OpenaiCompatible => {
                let client = super::embedding::OpenAiEmbeddings::new(
                    name,
                    model.clone(),
                    config.base_url.clone(),
                    config.api_key.clone(),
                    config.timeout,
                );
                match dims {
                    Some(d) => Arc::new(client.dimensions(d)),
                    None => Arc::new(client),
                }
            }
            ProviderKind::Anthropic => {
                return Err(LmError::Rejected {
                    provider: name.to_string(),
                    status: 0,
                    body: "embedding_model: Anthropic's API has no embeddings endpoint".into(),
                });
            }
        }))
    }

    /// Its embedding model's name, if it has one.
    pub fn embedding_model(&self) -> Option<&str> {
        self.embeddings.as_ref().map(|m| m.model())
    }

    /// The model it calls.
    pub fn model(&self) -> &str {
        self.model.model()
    }

    /// Its limits (as last set).
    pub fn limits(&self) -> ProviderLimits {
        *self.limits.read_or_recover()
    }

    /// Applies new limits at once (a configuration reload; see
    /// [`RateLimiter::set_limits`](foundation_core::rate_limit::RateLimiter::set_limits) for
    /// what happens to capacity already used). The same limits must be set, with new values:
    /// adding or removing one (`rpm` where there was none) is refused and changes nothing, as
    /// the provider's limiter has a fixed shape; that change needs a restart.
    pub fn set_limits(&self, limits: ProviderLimits) -> Result<(), LmError> {
        let refused = |reason: String| LmError::Rejected {
            provider: self.name.clone(),
            status: 0,
            body: format!("limits not changed: {reason}"),
        };
        // Held across the limiter's change, so that two reloads at once leave the limiter and
        // `limits()` agreeing.
        let mut current = self.limits.write_or_recover();
        if *current == limits {
            return Ok(());
        }
        match &self.limiter {
            Some(limiter) => limiter.set_limits(limits.to_limits()).map_err(|e| refused(e.to_string()))?,
            None if limits == ProviderLimits::default() => {}
            None => {
                return Err(refused("the provider was started without limits; that needs a restart".into()));
            }
        }
        *current = limits;
        Ok(())
    }

    /// Its limiter (`None` without limits): a cluster-wide budget sets its share.
    pub fn limiter(&self) -> Option<&RateLimiter> {
        self.limiter.as_ref()
    }

    /// Its circuit breaker.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// What a request is expected to cost: its prompt, and `max_tokens` for the answer.
    pub fn estimate(request: &ChatRequest) -> TokenCost {
        TokenCost { input: tokens::request_prompt(request), output: request.max_tokens }
    }

    async fn acquire(&self, estimate: TokenCost) -> Result<Option<Permit>, LmError> {
        let Some(limiter) = &self.limiter else { return Ok(None) };
        let cost = self.limits().cost(estimate);
        let over = |dimension: String, wait: Duration| LmError::OverBudget {
            provider: self.name.clone(),
            dimension,
            wait,
        };
        match limiter.try_acquire(&cost) {
            Ok(p) => return Ok(Some(p)),
            Err(RateLimitError::WouldWait { dimension, retry_in: Some(wait) }) if wait > self.max_wait => {
                return Err(over(dimension, wait));
            }
            Err(RateLimitError::WouldWait { .. }) => {}
            Err(e) => {
                return Err(LmError::Rejected {
                    provider: self.name.clone(),
                    status: 0,
                    body: e.to_string(),
                });
            }
        }
        match limiter.acquire(&cost, Some(self.max_wait)).await {
            Ok(p) => Ok(Some(p)),
            Err(RateLimitError::Timeout { dimension, waited }) => Err(over(dimension, waited)),
            Err(e) => Err(LmError::Rejected { provider: self.name.clone(), status: 0, body: e.to_string() }),
        }
    }

    /// Calls the model: waits for the budget (up to `max_wait`), retries failures and 429s,
    /// settles the limiter with the tokens really used and applies the response's rate-limit
    /// headers. Refused at once while the breaker is open.
    pub async fn complete(&self, request: &ChatRequest) -> Result<Completion, LmError> {
        let (mut completion, call, mut permit) = self.attempts(request, |r| self.model.complete(r)).await?;
        call.success();
        self.settle(permit.as_mut(), completion.usage, &completion.rate_headers);
        completion.provider = self.name.clone();
        Ok(completion)
    }

    /// Calls `call` until it succeeds or the failures and 429s end the retries: its value, with
    /// the breaker's attempt and the limiter's permit to settle.
    async fn attempts<'a, T>(
        &'a self,
        request: &'a ChatRequest,
        call: impl Fn(&'a ChatRequest) -> super::model::BoxFuture<'a, Result<T, LmError>>,
    ) -> Result<(T, Attempt, Option<Permit>), LmError> {
        request.check().map_err(|reason| LmError::InvalidRequest { reason })?;
        let estimate = Self::estimate(request);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let breaker = self.try_call()?;
            let mut permit = self.acquire(estimate).await?;
            let result = match tokio::time::timeout(self.timeout, call(request)).await {
                Ok(r) => r,
                Err(_) => Err(LmError::Timeout { provider: self.name.clone(), after: self.timeout }),
            };
            match result {
                Ok(value) => return Ok((value, breaker, permit)),
                Err(e) => self.after_error(e, breaker, permit.as_mut(), attempt).await?,
            }
        }
    }

    /// Streams the model's answer (see [`CompletionStream`]) under the same protections as
    /// [`complete`](Self::complete): the budget is taken before the call, failures and 429s
    /// before the stream opens are retried, and the limiter is settled when the stream ends —
    /// with the usage the provider reported, or, if the stream is dropped or fails first, with
    /// the prompt and the completion tokens of the pieces received (what the provider bills
    /// for an answer cut short). The breaker hears of a success when the stream opens, and of a
    /// failure if it breaks later; a stream the caller dropped tells it nothing.
    pub async fn stream(&self, request: &ChatRequest) -> Result<CompletionStream, LmError> {
        let (stream, call, permit) = self.attempts(request, |r| self.model.stream(r)).await?;
        // The provider accepted the request: healthy, as far as the breaker is concerned.
        call.success();
        let settle = Settle {
            provider: self.clone(),
            permit,
            prompt: tokens::request_prompt(request),
            received: 0,
            open: true,
        };
        let name = self.name.clone();
        let guarded = futures::stream::unfold((stream, settle), move |(mut stream, mut settle)| {
            let name = name.clone();
            async move {
                let event = stream.next().await?;
                let event = match event {
                    Ok(StreamEvent::Done(mut completion)) => {
                        completion.provider = name;
                        settle.done(&completion);
                        Ok(StreamEvent::Done(completion))
                    }
                    Ok(piece) => {
                        settle.received += super::stream::piece_tokens(&piece);
                        Ok(piece)
                    }
                    Err(e) => {
                        settle.failed(&e);
                        Err(e)
                    }
                };
                Some((event, (stream, settle)))
            }
        });
        Ok(CompletionStream::new(self.name.clone(), guarded))
    }

    fn try_call(&self) -> Result<Attempt, LmError> {
        self.breaker
            .try_call()
            .map_err(|o| LmError::CircuitOpen { provider: self.name.clone(), retry_in: o.retry_in })
    }

    /// Settles the limiter with the tokens used and applies the response's headers.
    fn settle(&self, permit: Option<&mut Permit>, usage: Usage, headers: &[(String, String)]) {
        if let (Some(limiter), Some(permit)) = (&self.limiter, permit) {
            let used = TokenCost { input: usage.prompt_tokens, output: usage.completion_tokens };
            // The shape is the limiter's own: settling cannot fail.
            let _ = permit.settle(&self.limits().cost(used));
            limiter.apply_headers(headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        }
    }

    /// What a failed attempt means: `Ok` to try again (after the pause it calls for), `Err` to
    /// give up with this error.
    async fn after_error(
        &self,
        error: LmError,
        call: Attempt,
        permit: Option<&mut Permit>,
        attempt: u32,
    ) -> Result<(), LmError> {
        match error {
            LmError::RateLimited { retry_after, rate_headers, provider } => {
                // Not a sign of ill health: the breaker is not told. The provider did not
                // count the call, so neither do we; we stop until it says to come back.
                drop(call);
                if let (Some(limiter), Some(permit)) = (&self.limiter, permit) {
                    let _ = permit.settle(&vec![0; limiter.dimensions().len()]);
                    limiter.apply_headers(rate_headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
                    limiter.pause_for(retry_after.unwrap_or(DEFAULT_RATE_LIMIT_PAUSE));
                }
                metrics::counter!("foundation_llm_rate_limited_total", "provider" => self.name.clone(), "model" => self.model.model().to_string())
                    .increment(1);
                super::usage::count_rate_limited();
                if !self.retry.allows_another(attempt) {
                    return Err(LmError::RateLimited { provider, retry_after, rate_headers });
                }
                if self.limiter.is_none() {
                    // Any model's word, capped as the limiter caps it.
                    let pause = retry_after.unwrap_or(DEFAULT_RATE_LIMIT_PAUSE);
                    tokio::time::sleep(pause.min(foundation_core::rate_limit::MAX_PAUSE)).await;
                }
                Ok(())
            }
            e if e.is_provider_failure() => {
                // The call may have been counted by the provider: the estimate stands.
                call.failure();
                if matches!(e, LmError::Malformed { .. }) || !self.retry.allows_another(attempt) {
                    return Err(e);
                }
                tokio::time::sleep(self.retry.delay_after(attempt)).await;
                Ok(())
            }
            e => {
                drop(call);
                Err(e)
            }
        }
    }
}

impl EmbeddingModel for Provider {
    /// The embedding model's name (empty without one).
    fn model(&self) -> &str {
        self.embedding_model().unwrap_or("")
    }

    /// Embeds within the provider's budget: waits for it (one request and the texts'
    /// estimated tokens; `max_wait` at most), calls once within the provider's timeout, and
    /// settles with the tokens the endpoint reported (a 429 refunded). Its breaker, retries and
    /// 429 pauses are the chat model's alone. A provider without an embedding model refuses
    /// ([`LmError::Rejected`]).
    fn embed<'a>(&'a self, inputs: &'a [String]) -> BoxFuture<'a, Result<Embeddings, LmError>> {
        Box::pin(async move {
            let Some(model) = &self.embeddings else {
                return Err(LmError::Rejected {
                    provider: self.name.clone(),
                    status: 0,
                    body: "this provider has no embedding model".into(),
                });
            };
            super::embedding::check_inputs(inputs)?;
            let estimate = TokenCost { input: inputs.iter().map(|t| tokens::count(t)).sum(), output: 0 };
            // The budget is the account's, shared with chat; the breaker, retries and 429
            // pauses are not: an embedding endpoint's trouble must not stop chat calls (and a
            // semantic lookup must not wait through retries).
            let mut permit = self.acquire(estimate).await?;
            let result = match tokio::time::timeout(self.timeout, model.embed(inputs)).await {
                Ok(result) => result,
                Err(_) => Err(LmError::Timeout { provider: self.name.clone(), after: self.timeout }),
            };
            match result {
                Ok(embeddings) => {
                    self.settle(permit.as_mut(), embeddings.usage, &embeddings.rate_headers);
                    Ok(embeddings)
                }
                Err(e) => {
                    if let (Some(limiter), Some(permit), LmError::RateLimited { .. }) =
                        (&self.limiter, permit.as_mut(), &e)
                    {
                        // Not counted by the provider: refunded.
                        let _ = permit.settle(&vec![0; limiter.dimensions().len()]);
                    }
                    Err(e)
                }
            }
        })
    }
}

/// A stream's settlement: done once, at its end or when it is dropped. The breaker heard of
/// the stream's health when it opened; a provider failure after that is reported as a failure
/// of its own (an attempt held for a stream's whole life would keep a half-open breaker's probe
/// slot that long).
struct Settle {
    provider: Provider,
    permit: Option<Permit>,
    prompt: u64,
    received: u64,
    open: bool,
}

impl Settle {
    fn done(&mut self, completion: &Completion) {
        if std::mem::take(&mut self.open) {
            self.provider.settle(self.permit.as_mut(), completion.usage, &completion.rate_headers);
            self.permit = None;
        }
    }

    fn failed(&mut self, error: &LmError) {
        if std::mem::take(&mut self.open) {
            if error.is_provider_failure()
                && let Ok(attempt) = self.provider.breaker.try_call()
            {
                attempt.failure();
            }
            self.cut_short();
        }
    }

    /// Settles with the prompt and the pieces received.
    fn cut_short(&mut self) {
        let used =
            Usage { prompt_tokens: self.prompt, completion_tokens: self.received, cached_prompt_tokens: 0 };
        self.provider.settle(self.permit.as_mut(), used, &[]);
        self.permit = None;
    }
}

impl Drop for Settle {
    fn drop(&mut self) {
        if std::mem::take(&mut self.open) {
            // Dropped before its end: cancelled by the caller (the breaker hears nothing).
            metrics::counter!("foundation_llm_streams_cancelled_total", "provider" => self.provider.name.clone())
                .increment(1);
            self.cut_short();
        }
    }
}

//! One provider behind its protections: a rate limiter over its account's limits, a circuit
//! breaker, and retries with backoff that honour `retry-after`.

use std::sync::Arc;
use std::time::Duration;

use foundation_core::circuit_breaker::{BreakerConfig, CircuitBreaker};
use foundation_core::config::{ProviderConfig, ProviderKind};
use foundation_core::rate_limit::{Permit, ProviderLimits, RateLimitError, RateLimiter, TokenCost};
use foundation_core::retry::RetryPolicy;
use foundation_core::sync::RwLockRecover;

use super::message::{ChatRequest, Completion};
use super::model::{LanguageModel, LmError};
use super::openai::OpenAiClient;
use super::simulated::{SimulatedConfig, SimulatedModel};
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
    /// Longest a call may take. Default 60 s.
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
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
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
        TokenCost { input: tokens::prompt(&request.messages), output: request.max_tokens }
    }

    async fn acquire(&self, request: &ChatRequest) -> Result<Option<Permit>, LmError> {
        let Some(limiter) = &self.limiter else { return Ok(None) };
        let cost = self.limits().cost(Self::estimate(request));
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
        let mut attempt = 0;
        loop {
            attempt += 1;
            let call = self
                .breaker
                .try_call()
                .map_err(|o| LmError::CircuitOpen { provider: self.name.clone(), retry_in: o.retry_in })?;
            let mut permit = self.acquire(request).await?;
            let result = match tokio::time::timeout(self.timeout, self.model.complete(request)).await {
                Ok(r) => r,
                Err(_) => Err(LmError::Timeout { provider: self.name.clone(), after: self.timeout }),
            };
            match result {
                Ok(mut completion) => {
                    call.success();
                    if let (Some(limiter), Some(permit)) = (&self.limiter, permit.as_mut()) {
                        let used = TokenCost {
                            input: completion.usage.prompt_tokens,
                            output: completion.usage.completion_tokens,
                        };
                        // The shape is the limiter's own: settling cannot fail.
                        let _ = permit.settle(&self.limits().cost(used));
                        limiter.apply_headers(
                            completion.rate_headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
                        );
                    }
                    completion.provider = self.name.clone();
                    return Ok(completion);
                }
                Err(LmError::RateLimited { retry_after, rate_headers, provider }) => {
                    // Not a sign of ill health: the breaker is not told. The provider did not
                    // count the call, so neither do we; we stop until it says to come back.
                    drop(call);
                    if let (Some(limiter), Some(permit)) = (&self.limiter, permit.as_mut()) {
                        let _ = permit.settle(&vec![0; limiter.dimensions().len()]);
                        limiter.apply_headers(rate_headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
                        limiter.pause_for(retry_after.unwrap_or(DEFAULT_RATE_LIMIT_PAUSE));
                    }
                    metrics::counter!("foundation_llm_rate_limited_total", "provider" => self.name.clone())
                        .increment(1);
                    if !self.retry.allows_another(attempt) {
                        return Err(LmError::RateLimited { provider, retry_after, rate_headers });
                    }
                    if self.limiter.is_none() {
                        // Any model's word, capped as the limiter caps it.
                        let pause = retry_after.unwrap_or(DEFAULT_RATE_LIMIT_PAUSE);
                        tokio::time::sleep(pause.min(foundation_core::rate_limit::MAX_PAUSE)).await;
                    }
                }
                Err(e) if e.is_provider_failure() => {
                    // The call may have been counted by the provider: the estimate stands.
                    call.failure();
                    if matches!(e, LmError::Malformed { .. }) || !self.retry.allows_another(attempt) {
                        return Err(e);
                    }
                    tokio::time::sleep(self.retry.delay_after(attempt)).await;
                }
                Err(e) => {
                    drop(call);
                    return Err(e);
                }
            }
        }
    }
}

//! The `LanguageModel` trait every client implements, and its errors.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use foundation_core::Cause;

use super::completion::Completion;
use super::request::ChatRequest;
use super::stream::CompletionStream;

/// A boxed future, so that models can be held as `Arc<dyn LanguageModel>` and chosen by name.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A chat model: the simulated one, an OpenAI-compatible endpoint, or yours.
pub trait LanguageModel: Send + Sync + 'static {
    /// The model's name as its provider knows it.
    fn model(&self) -> &str;

    /// Answers a request. Errors name the provider (see [`LmError`]).
    fn complete<'a>(&'a self, request: &'a ChatRequest) -> BoxFuture<'a, Result<Completion, LmError>>;

    /// Answers a request as a stream of text and tool-call pieces, then the whole answer (see
    /// [`CompletionStream`]). The future resolves once the provider has accepted the request
    /// (so errors before the first piece, a 429 or a 5xx, can be retried or passed to the next
    /// provider); errors after it come in the stream. Dropping the stream cancels the call.
    ///
    /// The default answers with [`complete`](Self::complete) and yields the whole answer at
    /// once: a model that cannot stream still can be streamed from.
    fn stream<'a>(&'a self, request: &'a ChatRequest) -> BoxFuture<'a, Result<CompletionStream, LmError>> {
        Box::pin(async move { self.complete(request).await.map(CompletionStream::from_completion) })
    }
}

/// Why a call did not produce an answer. Every variant names the provider. Serializable, so
/// that a model served on another node ([`RemoteModel`](super::RemoteModel)) fails the same way
/// as one here.
#[derive(Debug, Clone, PartialEq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum LmError {
    /// 429: the provider's own limits were exceeded.
    #[error("provider `{provider}` rate-limited the request{}", retry_after.map(|d| format!(" (retry after {d:?})")).unwrap_or_default())]
    RateLimited {
        /// The provider.
        provider: String,
        /// When it says to come back.
        retry_after: Option<Duration>,
        /// Its rate-limit headers.
        rate_headers: Vec<(String, String)>,
    },
    /// 5xx: the provider failed.
    #[error("provider `{provider}` failed with HTTP {status}: {body}")]
    Server {
        /// The provider.
        provider: String,
        /// HTTP status.
        status: u16,
        /// The start of its body.
        body: String,
    },
    /// Another 4xx: the request itself was refused (bad key, unknown model, too long).
    #[error("provider `{provider}` refused the request with HTTP {status}: {body}")]
    Rejected {
        /// The provider.
        provider: String,
        /// HTTP status.
        status: u16,
        /// The start of its body.
        body: String,
    },
    /// The provider could not be reached, or the connection broke.
    #[error("provider `{provider}` unreachable: {source}")]
    Transport {
        /// The provider.
        provider: String,
        /// What the client said (the underlying error).
        #[source]
        source: Cause,
    },
    /// No answer within the timeout.
    #[error("provider `{provider}` did not answer within {after:?}")]
    Timeout {
        /// The provider.
        provider: String,
        /// The timeout.
        after: Duration,
    },
    /// An answer that is not a chat completion.
    #[error("provider `{provider}` sent a malformed response: {source}")]
    Malformed {
        /// The provider.
        provider: String,
        /// What was wrong with it (the underlying error).
        #[source]
        source: Cause,
    },
    /// The prompt does not fit the model's context window.
    #[error(
        "a prompt of about {tokens} tokens (+{max_tokens} to answer) exceeds the {window}-token context of `{model}`"
    )]
    ContextTooLong {
        /// The model.
        model: String,
        /// Estimated prompt tokens.
        tokens: u64,
        /// The completion budget asked.
        max_tokens: u64,
        /// Its context window.
        window: u64,
    },
    /// The provider's breaker is open after repeated failures.
    #[error("provider `{provider}` is open-circuited after repeated failures (next probe in {retry_in:?})")]
    CircuitOpen {
        /// The provider.
        provider: String,
        /// Time until a probe.
        retry_in: Duration,
    },
    /// The provider's budget would make the call wait longer than allowed.
    #[error("provider `{provider}` is over budget: `{dimension}` frees up in {wait:?}")]
    OverBudget {
        /// The provider.
        provider: String,
        /// The limit that blocks.
        dimension: String,
        /// How long it would take.
        wait: Duration,
    },
    /// Every provider of the chain was tried and none answered.
    #[error("no provider answered: {}", tried.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Exhausted {
        /// What each provider said, in chain order.
        tried: Vec<LmError>,
    },
    /// The request is not valid (see [`ChatRequest::check`]): no provider was called.
    #[error("invalid request: {reason}")]
    InvalidRequest {
        /// What is wrong with it.
        reason: String,
    },
    /// The model registry says the provider's model is not to be called: disabled at run time,
    /// or past its retirement date.
    #[error("provider `{provider}`: model `{model}` is unavailable: {reason}")]
    ModelUnavailable {
        /// The provider.
        provider: String,
        /// The model.
        model: String,
        /// Why (disabled, retired on a date).
        reason: String,
    },
    /// No provider or model of that name.
    #[error("unknown {what} `{name}`")]
    Unknown {
        /// "provider" or "model".
        what: String,
        /// The name asked for.
        name: String,
    },
}

impl LmError {
    /// Whether the provider is unwell (a 5xx, a timeout, a broken connection, garbage): what
    /// opens its circuit breaker and is worth a retry.
    pub fn is_provider_failure(&self) -> bool {
        matches!(
            self,
            LmError::Server { .. }
                | LmError::Transport { .. }
                | LmError::Timeout { .. }
                | LmError::Malformed { .. }
        )
    }

    /// The provider named, if the error concerns one.
    pub fn provider(&self) -> Option<&str> {
        match self {
            LmError::RateLimited { provider, .. }
            | LmError::Server { provider, .. }
            | LmError::Rejected { provider, .. }
            | LmError::Transport { provider, .. }
            | LmError::Timeout { provider, .. }
            | LmError::Malformed { provider, .. }
            | LmError::CircuitOpen { provider, .. }
            | LmError::OverBudget { provider, .. }
            | LmError::ModelUnavailable { provider, .. } => Some(provider),
            _ => None,
        }
    }
}

//! Plain building blocks for Foundation, with no actors: typed configuration, error context
//! with step-by-step traces, and telemetry (histograms with percentiles, Prometheus).
//!
//! - [`config`]: [`FoundationConfig`](config::FoundationConfig) from TOML, `FOUNDATION_*`
//!   environment variables and code, validated with errors that name the key; run-time changes
//!   with per-key subscriptions ([`LiveConfig`](config::LiveConfig)).
//! - [`error_context`]: an [`ErrorContext`] records the named steps of an operation (timing,
//!   outcome, captured data, bounded); a failure comes back as a [`ContextError`] that prints them.
//! - [`rate_limit`]: a limiter over several limits at once (requests and tokens per minute,
//!   concurrency), all-or-nothing, FIFO waiting, settled with real costs, corrected by headers.
//! - [`circuit_breaker`]: stop calling a failing dependency for a while, then probe it.
//! - [`trace_context`]: the hook through which messages carry the current W3C `traceparent`.
//! - [`retry`]: a retry policy (attempts, exponential backoff with jitter).
//! - [`sync`]: locks that recover from poisoning (`lock_or_recover`), said once.
//! - [`hash`]: the one stable hash (xxh3) for whatever is compared across processes.
//! - [`events`]: a structured event store (memory or a SQLite file): queries by type, time,
//!   correlation, tenant and payload fields; causal chains; streams with optimistic concurrency,
//!   snapshots and checkpoints for event sourcing; retention by age and size.
//! - [`cache`]: a per-process cache (TTL, size bounds, collapsed misses) and a semantic cache for
//!   prompts with a built-in hashing embedder; hit rates and saved cost in metrics.
//! - [`crdt`]: conflict-free replicated data types with property-tested merge laws.
//! - [`telemetry`]: a `metrics` recorder whose histograms report p50/p90/p99/p99.9 with a bounded
//!   error, readable in code and served to Prometheus.
//!
//! # Example
//!
//! Load configuration, then run an operation whose third step fails, and print what it did:
//!
//! ```
//! use foundation_core::config::ConfigLoader;
//! use foundation_core::ErrorContext;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let config = ConfigLoader::new()
//!     .toml_str("[node]\nname = \"n1\"\n[error_context]\nmax_steps = 64")
//!     .env() // FOUNDATION_* variables override the file
//!     .load()
//!     .expect("valid config");
//!
//! let ctx = ErrorContext::with_limits("summarize_document", config.error_context.clone());
//! let result = ctx
//!     .run(|ctx| async move {
//!         let text = ctx.step("fetch", |_| async { Ok::<_, String>("Foundation is...".to_string()) }).await?;
//!         let words = ctx
//!             .step("tokenize", |ctx| async move {
//!                 let words = text.split_whitespace().count();
//!                 ctx.record("words", &words);
//!                 Ok::<_, String>(words)
//!             })
//!             .await?;
//!         ctx.step("summarize", |_| async move {
//!             Err::<String, _>(format!("model context window exceeded by {words} words"))
//!         })
//!         .await
//!     })
//!     .await;
//!
//! let error = result.unwrap_err();
//! println!("{error}");
//! // model context window exceeded by 2 words
//! // operation `summarize_document` failed after 52.1µs; steps:
//! //   ok              8.0µs  fetch
//! //   ok              9.6µs  tokenize words=2
//! //   FAILED          4.3µs  summarize: model context window exceeded by 2 words
//! let steps: Vec<_> = error.history().root.children().map(|s| s.name.as_str()).collect();
//! assert_eq!(steps, ["fetch", "tokenize", "summarize"]);
//! # });
//! ```

pub mod cache;
pub mod cause;
pub mod circuit_breaker;
pub mod config;
pub mod crdt;
pub mod error_context;
pub mod events;
pub mod files;
pub mod hash;
#[cfg(feature = "http-server")]
pub mod http;
pub mod random;
pub mod rate_limit;
pub mod retry;
pub mod sync;
pub mod telemetry;
pub mod trace_context;

pub use cause::{BoxError, Cause};

pub use config::{ConfigError, ConfigLoader, FoundationConfig, LiveConfig};
pub use error_context::{ContextError, ErrorContext};
pub use telemetry::{Percentiles, Telemetry, TelemetryError};

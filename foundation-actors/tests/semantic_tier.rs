//! Embeddings and the semantic cache in the call path, over real HTTP on loopback: a router
//! whose provider chats and embeds through the simulated server answers a similar enough
//! question from its semantic tier (opted in per tenant or per request), never across tenants
//! or conversation contexts, never for sampled or uncached calls, counting what it saved;
//! embedding requests are batched and go through the provider's limits; a failing embedding
//! model never fails a call.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use foundation_actors::providers::*;
use foundation_core::rate_limit::ProviderLimits;

const TIMEOUT: Duration = Duration::from_secs(10);

async fn server() -> SimulatedProvider {
    let config = SimServerConfig {
        limits: ProviderLimits::default(),
        model: SimulatedConfig { latency: Duration::from_millis(1), ..Default::default() },
    };
    SimulatedProvider::start("127.0.0.1:0".parse().unwrap(), config).await.unwrap()
}

/// A provider that chats and embeds through `server`, under `limits`.
fn provider(server: &SimulatedProvider, limits: ProviderLimits) -> Provider {
    let chat = OpenAiClient::new("sim", "sim-chat", Some(server.base_url()), None, TIMEOUT);
    let embed = OpenAiEmbeddings::new("sim", "sim-embed", Some(server.base_url()), None, TIMEOUT);
    let options = ProviderOptions { limits, max_wait: Duration::from_millis(50), ..Default::default() };
    Provider::new("sim", chat, options).unwrap().with_embeddings(embed)
}

fn priced() -> ModelRegistry {
    let mut models = ModelRegistry::new();
    models.add(ModelSpec::new("sim", "sim-chat", 128_000, 1.0, 4.0));
    models
}

fn router(provider: Provider, tier: SemanticTier) -> LlmRouter {
    LlmRouter::new(priced()).provider(provider).semantic(tier)
}

fn acme() -> SemanticTierConfig {
    SemanticTierConfig { tenants: BTreeMap::from([("acme".to_string(), 0.8)]), ..Default::default() }
}

fn ask(tenant: &str, question: &str) -> ChatRequest {
    ChatRequest::new(vec![ChatMessage::system("You answer briefly."), ChatMessage::user(question)])
        .tenant(tenant)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_similar_question_is_answered_from_the_tier_within_its_tenant_and_context() {
    let server = server().await;
    let p = provider(&server, ProviderLimits::default());
    let tier = SemanticTier::new(Arc::new(p.clone()), 256, acme()).unwrap();
    let router = router(p, tier);

    let first = router.complete(&ask("acme", "What is the capital of France?")).await.unwrap();
    assert!(!first.cached);
    assert_eq!((server.stats().served, server.stats().embedding_requests), (2, 1));
    // The same question written differently: from the tier, no chat request.
    let again = router.complete(&ask("acme", "what is the capital of france")).await.unwrap();
    assert!(again.cached, "{again:?}");
    assert_eq!(again.content, first.content);
    assert_eq!(server.stats().embedding_requests, 2);
    assert_eq!(server.stats().served - server.stats().embedding_requests, 1, "one chat request in all");
    let stats = router.semantic_stats().unwrap();
    assert_eq!((stats.hits, stats.misses, stats.entries), (1, 1, 1));
    assert!(stats.saved_cost > 0.0, "{stats:?}");
    // A different question is not similar enough.
    let other = router.complete(&ask("acme", "How many legs has a spider?")).await.unwrap();
    assert!(!other.cached);

    // Another tenant, not opted in: the tier is not asked (no embedding).
    let before = server.stats().embedding_requests;
    let globex = router.complete(&ask("globex", "What is the capital of France?")).await.unwrap();
    assert!(!globex.cached);
    assert_eq!(server.stats().embedding_requests, before);
    // Opted in by the request itself: its own namespace, so first a miss, then a hit.
    let opted = ask("globex", "What is the capital of France?").semantic(0.8);
    assert!(!router.complete(&opted).await.unwrap().cached, "never another tenant's answer");
    assert!(router.complete(&opted).await.unwrap().cached);

    // Another context (system prompt) is another namespace.
    let mut other_context = ask("acme", "What is the capital of France?");
    other_context.messages[0] = ChatMessage::system("You answer in French.");
    assert!(!router.complete(&other_context).await.unwrap().cached);
    // Sampled calls and calls with the cache off do not use it.
    let mut sampled = ask("acme", "What is the capital of France?");
    sampled.temperature = 0.7;
    assert!(!router.complete(&sampled).await.unwrap().cached);
    let off = ask("acme", "What is the capital of France?").cache(CachePolicy::Off);
    assert!(!router.complete(&off).await.unwrap().cached);
    // Behind the exact call cache: the very same request is answered there, without an
    // embedding; a reworded one reaches the semantic tier.
    let cache = CallCache::new(CallCacheConfig::default());
    let cached = cache.wrap("sim", Arc::new(router.clone()));
    let exact = ask("acme", "Who wrote Hamlet?");
    cached.complete(&exact).await.unwrap();
    let embedded = server.stats().embedding_requests;
    assert!(cached.complete(&exact).await.unwrap().cached);
    assert_eq!(server.stats().embedding_requests, embedded, "the exact cache answered first");
    assert!(cached.complete(&ask("acme", "who wrote hamlet")).await.unwrap().cached);
    assert_eq!(server.stats().embedding_requests, embedded + 1);
    // A threshold that is not a similarity is refused before anything is called.
    let bad = ask("acme", "x").semantic(1.5);
    assert!(matches!(router.complete(&bad).await, Err(LmError::InvalidRequest { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_served_from_the_tier_and_stored_in_it_once_finished() {
    let server = server().await;
    let p = provider(&server, ProviderLimits::default());
    let router = router(p.clone(), SemanticTier::new(Arc::new(p), 256, acme()).unwrap());
    let streamed =
        router.stream(&ask("acme", "Name the largest planet.")).await.unwrap().collect().await.unwrap();
    assert!(!streamed.cached);
    let hit = router.stream(&ask("acme", "name the largest planet")).await.unwrap().collect().await.unwrap();
    assert!(hit.cached);
    assert_eq!(hit.content, streamed.content);
    // A stream dropped before its end (after its first piece) stores nothing.
    let mut cut = router.stream(&ask("acme", "Which ocean is the deepest?")).await.unwrap();
    assert!(matches!(cut.next().await, Some(Ok(StreamEvent::Text(_)))));
    drop(cut);
    assert!(!router.complete(&ask("acme", "which ocean is the deepest")).await.unwrap().cached);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_questions_share_embedding_requests() {
    let server = server().await;
    let p = provider(&server, ProviderLimits::default());
    let config = SemanticTierConfig {
        batch: BatchConfig { max_delay: Duration::from_millis(50), ..Default::default() },
        ..acme()
    };
    let router = router(p.clone(), SemanticTier::new(Arc::new(p), 256, config).unwrap());
    let questions: Vec<ChatRequest> =
        (0..24).map(|i| ask("acme", &format!("Question number {i} about topic {i}?"))).collect();
    let answers = futures::future::join_all(questions.iter().map(|q| router.complete(q))).await;
    assert!(answers.iter().all(Result::is_ok));
    let stats = server.stats();
    assert_eq!(stats.embedded_texts, 24);
    assert!(stats.embedding_requests < 24, "batched: {stats:?}");
}

/// Always fails.
struct Broken;

impl EmbeddingModel for Broken {
    fn model(&self) -> &str {
        "broken"
    }

    fn embed<'a>(&'a self, _: &'a [String]) -> BoxFuture<'a, Result<Embeddings, LmError>> {
        Box::pin(async {
            Err(LmError::Server { provider: "broken".into(), status: 503, body: "down".into() })
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tier_never_fails_a_call_and_embeddings_go_through_the_providers_limits() {
    let server = server().await;
    let p = provider(&server, ProviderLimits::default());
    // An embedding model that fails, or one whose vectors are not the tier's length: the
    // provider answers, the tier counts the failure.
    let router = LlmRouter::new(priced())
        .provider(p.clone())
        .semantic(SemanticTier::new(Arc::new(Broken), 256, acme()).unwrap());
    assert!(router.complete(&ask("acme", "Still answered?")).await.is_ok());
    assert_eq!(router.semantic_stats().unwrap().embedding_failures, 1);
    let router = LlmRouter::new(priced())
        .provider(p.clone())
        .semantic(SemanticTier::new(Arc::new(p.clone()), 64, acme()).unwrap());
    assert!(router.complete(&ask("acme", "Still answered?")).await.is_ok());
    assert_eq!(router.semantic_stats().unwrap().embedding_failures, 1);

    // Embeddings take from the provider's budget like chat: with 1 request a minute, the
    // second embedding request waits past the provider's max wait and is refused.
    let limited = provider(&server, ProviderLimits { rpm: Some(1), ..Default::default() });
    let texts = vec!["one".to_string()];
    assert!(limited.embed(&texts).await.is_ok());
    assert!(matches!(limited.embed(&texts).await, Err(LmError::OverBudget { .. })));
    // And a chat call on the same account is over budget too.
    assert!(matches!(limited.complete(&ChatRequest::prompt("hi")).await, Err(LmError::OverBudget { .. })));
    // A provider without an embedding model says so.
    let chat_only = Provider::new(
        "plain",
        OpenAiClient::new("plain", "m", Some(server.base_url()), None, TIMEOUT),
        ProviderOptions::default(),
    )
    .unwrap();
    assert!(matches!(chat_only.embed(&texts).await, Err(LmError::Rejected { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tier_is_configured_in_the_llm_section() {
    use foundation_core::config::ConfigLoader;
    let server = server().await;
    let toml = format!(
        r#"
        [llm]
        chain = ["remote"]
        semantic_provider = "remote"
        semantic_dims = 64
        semantic_threshold = 0.8
        semantic_tenants = ["acme"]

        [llm.providers.remote]
        kind = "openai-compatible"
        model = "sim-chat"
        base_url = "{}"
        embedding_model = "sim-embed"
        "#,
        server.base_url()
    );
    let config = ConfigLoader::new().toml_str(&toml).load().unwrap();
    let router = LlmRouter::from_config(&config.llm, 1).unwrap();
    assert!(!router.complete(&ask("acme", "What is the tallest mountain?")).await.unwrap().cached);
    assert!(router.complete(&ask("acme", "what is the tallest mountain")).await.unwrap().cached);
    assert_eq!(router.semantic_stats().unwrap().hits, 1);
    // The vectors were asked for at the configured length, through the chain's provider.
    assert_eq!(server.stats().embedding_requests, 2);

    // A semantic provider without an embedding model is a configuration error that says so.
    let bad = toml.replace("embedding_model = \"sim-embed\"", "");
    let err = ConfigLoader::new().toml_str(&bad).load().unwrap_err().to_string();
    assert!(err.contains("llm.semantic_provider") && err.contains("embedding_model"), "{err}");
    let bad = toml.replace("semantic_threshold = 0.8", "semantic_threshold = 1.5");
    assert!(
        ConfigLoader::new().toml_str(&bad).load().unwrap_err().to_string().contains("llm.semantic_threshold")
    );
}

/// Never answers.
struct Stuck;

impl EmbeddingModel for Stuck {
    fn model(&self) -> &str {
        "stuck"
    }

    fn embed<'a>(&'a self, _: &'a [String]) -> BoxFuture<'a, Result<Embeddings, LmError>> {
        Box::pin(std::future::pending())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hit_never_reaches_the_exact_cache_and_a_stuck_embedder_never_holds_a_call() {
    let server = server().await;
    let p = provider(&server, ProviderLimits::default());
    let router = router(p.clone(), SemanticTier::new(Arc::new(p.clone()), 256, acme()).unwrap());
    let cached = CallCache::new(CallCacheConfig::default()).wrap("sim", Arc::new(router));
    cached.complete(&ask("acme", "What is the status of order 1234?")).await.unwrap();
    // acme's similar question is answered from the tier, through the exact cache…
    let similar = ask("acme", "what is the status of order 1234");
    assert!(cached.complete(&similar).await.unwrap().cached);
    // …which did not keep that answer under the similar question's exact key (no tenant in it):
    // another tenant sending that exact question gets a fresh answer, not acme's.
    let globex = ChatRequest { tenant: Some("globex".into()), ..similar };
    assert!(!cached.complete(&globex).await.unwrap().cached, "acme's answer leaked to globex");

    // An embedding model that never answers: the call waits at most the tier's timeout.
    let config = SemanticTierConfig { embed_timeout: Duration::from_millis(100), ..acme() };
    let router = LlmRouter::new(priced())
        .provider(p)
        .semantic(SemanticTier::new(Arc::new(Stuck), 256, config).unwrap());
    assert!(router.complete(&ask("acme", "Still answered?")).await.is_ok());
    assert_eq!(router.semantic_stats().unwrap().embedding_failures, 1);
}

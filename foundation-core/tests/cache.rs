//! Caches: the L1 tier (TTL, bounds, collapsed loads, counts), the hashing embedder and the
//! semantic tier (threshold, namespaces, eviction). No test depends on how long anything takes:
//! expiry is awaited by polling with a generous deadline.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use foundation_core::cache::{
    CacheStats, Embedder, EntryOptions, HashingEmbedder, LocalCache, LocalCacheConfig, SemanticCache,
    SemanticConfig, SemanticError, cosine,
};
use foundation_core::config::TelemetryConfig;
use foundation_core::telemetry::Telemetry;

/// Generous: the machine may be loaded; nothing here should take more than a second.
const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `key` until the cache no longer has it; fails after [`DEADLINE`].
async fn until_gone(cache: &LocalCache<String>, key: &str) {
    let deadline = Instant::now() + DEADLINE;
    while cache.get(key).await.is_some() {
        assert!(Instant::now() < deadline, "`{key}` never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn config(max_capacity: u64, ttl: Option<Duration>) -> LocalCacheConfig {
    LocalCacheConfig { max_capacity, time_to_live: ttl, time_to_idle: None }
}

#[tokio::test]
async fn l1_entries_expire_after_the_cache_ttl() {
    let cache = LocalCache::new("ttl", config(100, Some(Duration::from_millis(100))));
    cache.insert("k", "v".to_string()).await;
    until_gone(&cache, "k").await;
    cache.run_pending_tasks().await;
    assert_eq!(cache.entry_count(), 0);
}

#[tokio::test]
async fn l1_an_entry_ttl_shortens_the_cache_ttl_for_that_entry_only() {
    // The cache keeps entries an hour; one entry asks for 100 ms.
    let cache = LocalCache::new("entry-ttl", config(100, Some(Duration::from_secs(3600))));
    cache.insert("long", "stays".to_string()).await;
    cache
        .insert_with(
            "short",
            "goes".to_string(),
            EntryOptions::cost(1.0).with_ttl(Duration::from_millis(100)),
        )
        .await;
    until_gone(&cache, "short").await;
    assert_eq!(cache.get("long").await.as_deref(), Some("stays"), "only the short entry expires");
    // Replacing an entry takes the new entry's TTL (none here: the cache's hour).
    cache.insert_with("short", "back".to_string(), EntryOptions::default()).await;
    cache
        .insert_with(
            "long",
            "now short".to_string(),
            EntryOptions::default().with_ttl(Duration::from_millis(100)),
        )
        .await;
    until_gone(&cache, "long").await;
    assert_eq!(cache.get("short").await.as_deref(), Some("back"));
}

#[tokio::test]
async fn l1_never_holds_more_than_its_capacity() {
    let cache = LocalCache::new("bounded", config(100, None));
    for i in 0..1000 {
        cache.insert(format!("k{i}"), format!("v{i}")).await;
    }
    cache.run_pending_tasks().await;
    assert!(cache.entry_count() <= 100, "holds {}", cache.entry_count());
    assert!(cache.entry_count() > 0);

    // Weighted: 1000 bytes, entries of 100 bytes each: at most 10 of them.
    let bytes: LocalCache<Vec<u8>> =
        LocalCache::weighted("bytes", config(1000, None), |_, v: &Vec<u8>| v.len() as u32);
    for i in 0..50 {
        bytes.insert(format!("k{i}"), vec![0; 100]).await;
    }
    bytes.run_pending_tasks().await;
    assert!(bytes.weighted_size() <= 1000, "weighs {}", bytes.weighted_size());
    assert!(bytes.entry_count() <= 10, "holds {}", bytes.entry_count());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l1_get_with_runs_one_loader_for_concurrent_misses() {
    let cache: LocalCache<String> = LocalCache::new("collapse", config(100, None));
    let loads = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Notify::new());
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (cache, loads, gate) = (cache.clone(), loads.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            cache
                .get_with_options("answer", async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    // Hold the load open until the test lets it finish, so that the others ask
                    // while it runs (if they come later they find the value: the same outcome).
                    gate.notified().await;
                    ("42".to_string(), EntryOptions::cost(0.25))
                })
                .await
        }));
    }
    // Release the loader once it has started.
    let deadline = Instant::now() + DEADLINE;
    while loads.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "no loader started");
        tokio::task::yield_now().await;
    }
    gate.notify_one();
    for task in tasks {
        assert_eq!(task.await.unwrap(), "42");
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1, "one loader for the 16 callers");
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses), (15, 1));
    assert_eq!(stats.saved_cost, 15.0 * 0.25);
    // Now present: a plain get finds it without loading.
    assert_eq!(cache.get_with("answer", async { unreachable!("already cached") }).await, "42");
}

#[tokio::test]
async fn l1_counts_hit_rate_and_saved_cost() {
    let cache: LocalCache<String> = LocalCache::new("counts", config(100, None));
    assert_eq!(cache.stats(), CacheStats::default());
    assert_eq!(cache.stats().hit_rate(), 0.0);
    cache.insert_with("paid", "answer".to_string(), EntryOptions::cost(0.5)).await;
    cache.insert("free", "answer".to_string()).await;
    for _ in 0..3 {
        assert!(cache.get("paid").await.is_some());
    }
    assert_eq!(cache.get_entry("free").await.map(|e| e.cost), Some(0.0));
    assert!(cache.get("absent").await.is_none());
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses), (4, 1));
    assert_eq!(stats.hit_rate(), 0.8);
    assert_eq!(stats.saved_cost, 1.5);
}

#[tokio::test]
async fn cache_counts_reach_the_metrics_recorder() {
    let telemetry = Telemetry::new(&TelemetryConfig::default()).unwrap();
    let (l1, semantic) = metrics::with_local_recorder(&telemetry, || {
        let l1: LocalCache<String> = LocalCache::new("metered", config(10, None));
        let semantic: SemanticCache =
            SemanticCache::with_default_embedder("metered", SemanticConfig::default()).unwrap();
        (l1, semantic)
    });
    l1.insert_with("k", "v".into(), EntryOptions::cost(2.5)).await;
    l1.get("k").await;
    l1.get("k").await;
    l1.get("nope").await;
    semantic.insert("ns", "hello there", "hi".to_string(), 1.0);
    semantic.lookup("ns", "hello there");
    semantic.lookup("ns", "something else entirely");
    let text = telemetry.render();
    for line in [
        r#"foundation_cache_hits_total{cache="metered",tier="l1"} 2"#,
        r#"foundation_cache_misses_total{cache="metered",tier="l1"} 1"#,
        r#"foundation_cache_saved_cost{cache="metered",tier="l1"} 5"#,
        r#"foundation_cache_hits_total{cache="metered",tier="semantic"} 1"#,
        r#"foundation_cache_misses_total{cache="metered",tier="semantic"} 1"#,
        r#"foundation_cache_saved_cost{cache="metered",tier="semantic"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    }
}

#[test]
fn embedder_is_deterministic_normalized_and_ranks_similar_texts_higher() {
    let e = HashingEmbedder::default();
    assert_eq!(e.dims(), 256);
    let a = e.embed("What is the capital of France?");
    assert_eq!(a.len(), 256);
    assert_eq!(a, e.embed("What is the capital of France?"), "same text, same vector");
    assert_eq!(a, HashingEmbedder::new(256).embed("What is the capital of France?"));
    let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    // Case and punctuation do not matter.
    assert_eq!(a, e.embed("what is the CAPITAL of france"));

    let similar = cosine(&a, &e.embed("What is the capital city of France?"));
    let unrelated = cosine(&a, &e.embed("How do I bake sourdough bread at home?"));
    assert!(similar > 0.8, "similar {similar}");
    assert!(unrelated.abs() < 0.3, "unrelated {unrelated}");
    assert!(similar > unrelated + 0.5);

    // Nothing to embed: all zeros, similar to nothing.
    let empty = e.embed("  ?! ");
    assert!(empty.iter().all(|x| *x == 0.0));
    assert_eq!(cosine(&empty, &a), 0.0);
    // Other dimensions, other vectors, still normalized.
    let wide = HashingEmbedder::new(512).embed("hello world");
    assert_eq!(wide.len(), 512);
    assert!((wide.iter().map(|x| x * x).sum::<f32>().sqrt() - 1.0).abs() < 1e-5);
}

/// Pinned values: the embedding must be the same in every process and every version (a cache
/// shared across nodes, or rebuilt from stored vectors, relies on it).
#[test]
fn embedder_vectors_are_stable_across_versions() {
    let v = HashingEmbedder::default().embed("hello world");
    let nonzero: Vec<(usize, i32)> = v
        .iter()
        .enumerate()
        .filter(|(_, x)| **x != 0.0)
        .map(|(i, x)| (i, (x * 1000.0).round() as i32))
        .collect();
    assert_eq!(nonzero.len(), v.iter().filter(|x| **x != 0.0).count());
    let again = HashingEmbedder::default().embed("hello world");
    assert_eq!(v, again);
    assert_eq!(nonzero, PINNED_HELLO_WORLD.to_vec(), "the hashing embedder changed its vectors");
}

/// Two words, one word pair and ten 3-grams: thirteen features, thirteen buckets.
const PINNED_HELLO_WORLD: &[(usize, i32)] = &[
    (9, -426),
    (67, 213),
    (72, 213),
    (115, -213),
    (140, -213),
    (141, 213),
    (153, -213),
    (177, 426),
    (188, 213),
    (212, -213),
    (244, 213),
    (248, -426),
    (250, 213),
];

fn semantic<A: Clone>(threshold: f32, max_entries: usize) -> SemanticCache<A> {
    SemanticCache::with_default_embedder("test", SemanticConfig { threshold, max_entries }).unwrap()
}

#[test]
fn semantic_a_paraphrase_above_the_threshold_hits_and_an_unrelated_prompt_misses() {
    let cache = semantic(0.85, 100);
    cache.insert("t", "What is the capital of France?", "Paris".to_string(), 0.02);
    cache.insert("t", "How do I reverse a linked list in Rust?", "Use iterators.".to_string(), 0.05);

    let hit = cache.lookup("t", "What is the capital city of France?").expect("a paraphrase hits");
    assert_eq!(hit.answer, "Paris");
    assert_eq!(hit.prompt, "What is the capital of France?");
    assert!(hit.similarity >= 0.85 && hit.similarity < 1.0, "{}", hit.similarity);
    assert_eq!(hit.saved_cost, 0.02);

    assert!(cache.lookup("t", "How do I bake sourdough bread at home?").is_none());
    // Close in words, different question: below this threshold.
    assert!(cache.lookup("t", "What is the capital of Germany?").is_none());
    // Exactly the same prompt: similarity 1.
    let exact = cache.lookup("t", "How do I reverse a linked list in Rust?").unwrap();
    assert!((exact.similarity - 1.0).abs() < 1e-5);

    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses), (2, 2));
    assert_eq!(stats.hit_rate(), 0.5);
    assert!((stats.saved_cost - 0.07).abs() < 1e-12);
}

#[test]
fn semantic_threshold_must_be_from_zero_to_one() {
    for bad in [1.5, -0.1, f32::NAN, f32::INFINITY] {
        let err = SemanticCache::<String>::with_default_embedder(
            "bad",
            SemanticConfig { threshold: bad, ..Default::default() },
        )
        .unwrap_err();
        assert!(matches!(err, SemanticError::Threshold(_)), "{err}");
        assert!(err.to_string().contains("from 0 to 1"), "{err}");
    }
    let err = SemanticCache::<String>::with_default_embedder(
        "bad",
        SemanticConfig { max_entries: 0, ..Default::default() },
    )
    .unwrap_err();
    assert_eq!(err, SemanticError::Capacity);
    for good in [0.0, 0.5, 1.0] {
        assert!(
            SemanticCache::<String>::with_default_embedder(
                "ok",
                SemanticConfig { threshold: good, ..Default::default() }
            )
            .is_ok()
        );
    }
}

#[test]
fn semantic_namespaces_never_see_each_other() {
    let cache = semantic(0.5, 100);
    cache.insert("tenant-a", "What is our refund policy?", "A's policy".to_string(), 1.0);
    cache.insert("tenant-b", "What is our refund policy?", "B's policy".to_string(), 1.0);
    assert_eq!(cache.lookup("tenant-a", "What is our refund policy?").unwrap().answer, "A's policy");
    assert_eq!(cache.lookup("tenant-b", "What is our refund policy?").unwrap().answer, "B's policy");
    assert!(cache.lookup("tenant-c", "What is our refund policy?").is_none());
    assert_eq!((cache.namespace_len("tenant-a"), cache.len()), (1, 2));
    assert_eq!(cache.clear_namespace("tenant-a"), 1);
    assert!(cache.lookup("tenant-a", "What is our refund policy?").is_none());
    assert_eq!(cache.lookup("tenant-b", "What is our refund policy?").unwrap().answer, "B's policy");
}

#[test]
fn semantic_capacity_evicts_the_least_recently_used() {
    let cache = semantic(0.95, 3);
    cache.insert("x", "first prompt about apples", "1".to_string(), 0.0);
    cache.insert("y", "second prompt about bananas", "2".to_string(), 0.0);
    cache.insert("x", "third prompt about cherries", "3".to_string(), 0.0);
    // Using the first makes the second the least recently used.
    assert!(cache.lookup("x", "first prompt about apples").is_some());
    cache.insert("x", "fourth prompt about dates", "4".to_string(), 0.0);
    assert_eq!(cache.len(), 3);
    assert!(cache.lookup("y", "second prompt about bananas").is_none(), "evicted");
    assert_eq!(cache.namespace_len("y"), 0);
    for (prompt, answer) in [
        ("first prompt about apples", "1"),
        ("third prompt about cherries", "3"),
        ("fourth prompt about dates", "4"),
    ] {
        assert_eq!(cache.lookup("x", prompt).map(|h| h.answer).as_deref(), Some(answer), "{prompt}");
    }
    // The same prompt again replaces its answer instead of adding an entry.
    cache.insert("x", "fourth prompt about dates", "4b".to_string(), 0.0);
    assert_eq!(cache.len(), 3);
    assert_eq!(cache.lookup("x", "fourth prompt about dates").unwrap().answer, "4b");
    // Many more: still bounded, and the newest is there.
    for i in 0..100 {
        cache.insert("z", &format!("prompt number {i}"), i.to_string(), 0.0);
    }
    assert_eq!(cache.len(), 3);
    assert_eq!(cache.lookup("z", "prompt number 99").unwrap().answer, "99");
}

/// An embedder of our own: by first letter only.
struct FirstLetter;

impl Embedder for FirstLetter {
    fn dims(&self) -> usize {
        26
    }
    fn embed(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0.0; 26];
        if let Some(c) = text.chars().next().filter(char::is_ascii_lowercase) {
            v[(c as u8 - b'a') as usize] = 1.0;
        }
        v
    }
}

#[test]
fn semantic_takes_any_embedder() {
    let cache: SemanticCache<u32> = SemanticCache::new(
        "letters",
        Arc::new(FirstLetter),
        SemanticConfig { threshold: 0.99, max_entries: 10 },
    )
    .unwrap();
    cache.insert("ns", "apple", 1, 0.0);
    assert_eq!(cache.lookup("ns", "avocado").unwrap().answer, 1, "same first letter: identical vectors");
    assert!(cache.lookup("ns", "banana").is_none());
}

/// The lookup scans quantized vectors and decides among the rows that could be best with the
/// exact ones: it must find what an exact scan finds, at every threshold.
#[test]
fn semantic_lookup_finds_what_an_exact_scan_finds() {
    const WORDS: [&str; 24] = [
        "refund",
        "order",
        "invoice",
        "shipping",
        "late",
        "broken",
        "account",
        "password",
        "reset",
        "change",
        "address",
        "card",
        "payment",
        "failed",
        "cancel",
        "subscription",
        "upgrade",
        "plan",
        "price",
        "discount",
        "warranty",
        "return",
        "label",
        "tracking",
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: usize| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) as usize % n
    };
    let mut sentence = |len: usize| (0..len).map(|_| WORDS[next(WORDS.len())]).collect::<Vec<_>>().join(" ");
    let stored: Vec<String> = (0..1500).map(|i| sentence(3 + i % 6)).collect();
    let queries: Vec<String> = (0..200).map(|i| sentence(3 + i % 6)).collect();
    let embedder = HashingEmbedder::default();
    let vectors: Vec<Vec<f32>> = stored.iter().map(|p| embedder.embed(p)).collect();
    let bests: Vec<f32> = queries
        .iter()
        .map(|q| {
            let v = embedder.embed(q);
            vectors.iter().map(|s| cosine(s, &v)).fold(f32::NEG_INFINITY, f32::max)
        })
        .collect();
    for threshold in [0.3, 0.6, 0.9] {
        let cache = semantic(threshold, 10_000);
        for (i, p) in stored.iter().enumerate() {
            cache.insert("ns", p, i, 0.0);
        }
        let mut hits = 0;
        for (q, &best) in queries.iter().zip(&bests) {
            match cache.lookup("ns", q) {
                Some(hit) => {
                    hits += 1;
                    assert!(
                        (hit.similarity - best).abs() < 1e-4,
                        "{q}: found {} but best is {best}",
                        hit.similarity
                    );
                    assert!(hit.similarity >= threshold);
                }
                None => {
                    assert!(best < threshold + 1e-4, "{q}: missed a stored prompt at {best} >= {threshold}")
                }
            }
        }
        assert!(hits > 0, "threshold {threshold}: the test should exercise hits");
    }
}

//! Cache costs: a semantic lookup over 100 000 stored prompts (a hit and a miss), embedding one
//! prompt with the built-in hashing embedder, and an L1 hit. Run with
//! `cargo bench -p foundation-core --bench cache`; figures are kept in docs/BENCHMARKS.md.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use foundation_core::cache::{
    Embedder, HashingEmbedder, LocalCache, LocalCacheConfig, SemanticCache, SemanticConfig,
};

const ENTRIES: usize = 100_000;

/// A varied prompt (made of a few hundred words), different for every `i`.
fn prompt(i: usize) -> String {
    const SUBJECTS: [&str; 12] = [
        "invoice",
        "refund",
        "shipping",
        "password",
        "account",
        "order",
        "warranty",
        "subscription",
        "delivery",
        "discount",
        "receipt",
        "upgrade",
    ];
    const ASKS: [&str; 8] = [
        "How do I change my",
        "Why was my",
        "Can you explain the",
        "What happens to my",
        "Where can I find my",
        "Is there a limit on my",
        "Who approves my",
        "When does my",
    ];
    format!(
        "{} {} number {} for customer {} in region {}?",
        ASKS[i % ASKS.len()],
        SUBJECTS[(i / ASKS.len()) % SUBJECTS.len()],
        i,
        i.wrapping_mul(2_654_435_761) % 100_003,
        i % 97
    )
}

fn semantic(c: &mut Criterion) {
    let cache: SemanticCache = SemanticCache::with_default_embedder(
        "bench",
        SemanticConfig { threshold: 0.9, max_entries: ENTRIES },
    )
    .unwrap();
    for i in 0..ENTRIES {
        cache.insert("tenant", &prompt(i), format!("answer {i}"), 0.01);
    }
    assert_eq!(cache.len(), ENTRIES);
    let hit = prompt(54_321);
    let miss = "Tell me a story about a dragon who learns to bake bread";
    assert!(cache.lookup("tenant", &hit).is_some());
    assert!(cache.lookup("tenant", miss).is_none());

    // Baseline, same run: embed the prompt and scan the same 100 000 vectors in full.
    let embedder = HashingEmbedder::default();
    let dims = embedder.dims();
    let mut matrix = Vec::with_capacity(ENTRIES * dims);
    for i in 0..ENTRIES {
        matrix.extend(embedder.embed(&prompt(i)));
    }
    let full_scan = |text: &str| {
        let q = embedder.embed(text);
        let mut best = (0, f32::NEG_INFINITY);
        for (i, row) in matrix.chunks_exact(dims).enumerate() {
            let mut sums = [0.0f32; 8];
            for (x, y) in row.chunks_exact(8).zip(q.chunks_exact(8)) {
                for k in 0..8 {
                    sums[k] += x[k] * y[k];
                }
            }
            let score: f32 = sums.iter().sum();
            if score > best.1 {
                best = (i, score);
            }
        }
        best
    };
    assert_eq!(full_scan(&hit).0, 54_321);

    let mut group = c.benchmark_group("semantic_lookup_100k");
    group.sample_size(20);
    group.bench_function("hit", |b| b.iter(|| black_box(cache.lookup("tenant", black_box(&hit)))));
    group.bench_function("miss", |b| b.iter(|| black_box(cache.lookup("tenant", black_box(miss)))));
    group.bench_function("baseline_full_scan", |b| b.iter(|| black_box(full_scan(black_box(miss)))));
    group.finish();

    let text = prompt(7);
    c.bench_function("hashing_embedder/embed_one_prompt", |b| {
        b.iter(|| black_box(embedder.embed(black_box(&text))))
    });
}

fn local(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let cache: LocalCache<String> = LocalCache::new("bench", LocalCacheConfig::default());
    runtime.block_on(async {
        for i in 0..1000 {
            cache.insert(format!("key-{i}"), format!("value-{i}")).await;
        }
    });
    c.bench_function("l1/get_hit", |b| {
        b.iter(|| runtime.block_on(async { black_box(cache.get(black_box("key-500")).await) }))
    });
}

criterion_group!(benches, semantic, local);
criterion_main!(benches);

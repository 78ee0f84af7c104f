//! Tenant isolation: one tenant exhausting its quota (requests, tokens, concurrency) never
//! delays another, cannot read another's events, and gets its own configuration overlay.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::time::Duration;

use foundation_actors::tenants::{TenantError, TenantQuota, TenantSpec, Tenants};
use foundation_core::FoundationConfig;
use foundation_core::events::{EventQuery, EventStore, NewEvent};
use serde_json::json;

fn spec(requests: Option<u64>, tokens: Option<u64>, concurrent: Option<u64>) -> TenantSpec {
    TenantSpec {
        quota: TenantQuota {
            requests_per_minute: requests,
            tokens_per_minute: tokens,
            max_concurrent: concurrent,
        },
        price_per_1k_tokens: 2.0,
        overlay: None,
    }
}

const SHORT: Duration = Duration::from_millis(100);
const GENEROUS: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_tenant_over_its_request_quota_waits_alone() {
    let tenants = Tenants::new(FoundationConfig::default());
    let greedy = tenants.register("greedy", spec(Some(3), None, None)).unwrap();
    let polite = tenants.register("polite", spec(Some(100), None, None)).unwrap();
    for _ in 0..3 {
        greedy.admit(0, GENEROUS).await.unwrap().finish(0);
    }
    // The fourth request of the minute would wait ~20 s for a refill: refused at its deadline.
    match greedy.admit(0, SHORT).await {
        Err(TenantError::OverQuota { tenant, source }) => {
            assert_eq!(tenant, "greedy");
            assert!(source.to_string().contains("requests"), "{source}");
        }
        other => panic!("expected over quota, got {other:?}"),
    }
    // Meanwhile the other tenant is served at once, many times over.
    for _ in 0..50 {
        polite.admit(0, GENEROUS).await.unwrap().finish(0);
    }
    assert_eq!(greedy.usage().refused, 1);
    assert_eq!((polite.usage().requests, polite.usage().refused), (50, 0));
}

#[tokio::test]
async fn tokens_are_settled_at_their_real_count_and_charged() {
    let tenants = Tenants::new(FoundationConfig::default());
    let t = tenants.register("t", spec(None, Some(6_000), None)).unwrap();
    let other = tenants.register("o", spec(None, Some(6_000), None)).unwrap();
    // Estimated 100, used 5 000: the difference is charged, so 2 000 more do not fit now.
    t.admit(100, GENEROUS).await.unwrap().finish(5_000);
    assert!(matches!(t.admit(2_000, SHORT).await, Err(TenantError::OverQuota { .. })));
    // An estimate larger than the whole quota can never be admitted: said so at once.
    match t.admit(7_000, GENEROUS).await {
        Err(TenantError::OverQuota { source, .. }) => {
            assert!(source.to_string().contains("exceeds"), "{source}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    other.admit(5_000, GENEROUS).await.unwrap().finish(4_000);
    assert_eq!(t.usage().tokens, 5_000);
    assert!((t.usage().cost - 10.0).abs() < 1e-9, "5 000 tokens at 2 per 1 000: {}", t.usage().cost);
    let all = tenants.usage();
    assert_eq!(
        all.iter().map(|(id, u)| (id.as_str(), u.tokens)).collect::<Vec<_>>(),
        [("o", 4_000), ("t", 5_000)]
    );
}

#[tokio::test]
async fn concurrency_is_per_tenant_and_given_back_when_work_ends() {
    let tenants = Tenants::new(FoundationConfig::default());
    let a = tenants.register("a", spec(None, None, Some(1))).unwrap();
    let b = tenants.register("b", spec(None, None, Some(1))).unwrap();
    let running = a.admit(0, GENEROUS).await.unwrap();
    assert!(matches!(a.admit(0, SHORT).await, Err(TenantError::OverQuota { .. })));
    let b_work = b.admit(0, GENEROUS).await.unwrap();
    // Dropping the work (a failed call, say) gives the slot back, like finishing it.
    drop(running);
    a.admit(0, GENEROUS).await.unwrap().finish(10);
    b_work.finish(0);
}

#[tokio::test]
async fn work_dropped_unsettled_is_charged_its_estimate_and_cancelled_work_nothing() {
    let tenants = Tenants::new(FoundationConfig::default());
    let t = tenants.register("t", spec(None, Some(1_000), None)).unwrap();
    t.admit(600, GENEROUS).await.unwrap().cancel();
    assert_eq!(t.usage().tokens, 0);
    drop(t.admit(600, GENEROUS).await.unwrap());
    assert_eq!(t.usage().tokens, 600, "billed at its estimate");
    // And the quota keeps it: 600 more do not fit in this minute.
    assert!(matches!(t.admit(600, SHORT).await, Err(TenantError::OverQuota { .. })));
}

#[tokio::test]
async fn a_tenant_reads_only_its_own_events() {
    let store = EventStore::in_memory();
    let tenants = Tenants::new(FoundationConfig::default()).with_events(store.clone());
    let acme = tenants.register("acme", spec(None, None, None)).unwrap();
    let globex = tenants.register("globex", spec(None, None, None)).unwrap();
    let secret =
        acme.events().unwrap().append(NewEvent::new("note", json!({"text": "acme secret"}))).await.unwrap();
    globex.events().unwrap().append(NewEvent::new("note", json!({"text": "globex note"}))).await.unwrap();

    let g = globex.events().unwrap();
    assert_eq!(g.get(secret.id).await.unwrap(), None);
    let seen = g.query(EventQuery::new().event_type("note").tenant("acme")).await.unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].payload["text"], "globex note");
    assert!(g.query(EventQuery::new().field_eq("text", "acme secret")).await.unwrap().is_empty());
    assert_ne!(acme.namespace(), globex.namespace());
    let no_store = Tenants::new(FoundationConfig::default()).register("x", spec(None, None, None)).unwrap();
    assert!(matches!(no_store.events(), Err(TenantError::NoEventStore)));
}

#[test]
fn overlays_change_one_tenant_and_bad_specs_are_refused_with_the_reason() {
    let mut base = FoundationConfig::default();
    base.node.name = "n1".into();
    let tenants = Tenants::new(base.clone());
    let fast = tenants
        .register(
            "fast",
            TenantSpec { overlay: Some("[telemetry]\nwindow = \"5s\"".into()), ..spec(None, None, None) },
        )
        .unwrap();
    let plain = tenants.register("plain", spec(None, None, None)).unwrap();
    assert_eq!(fast.config().telemetry.window, Duration::from_secs(5));
    assert_eq!(fast.config().node.name, "n1", "the rest comes from the node's configuration");
    assert_eq!(plain.config(), &base);

    let refused = |id: &str, spec: TenantSpec| match tenants.register(id, spec) {
        Err(TenantError::Invalid { source, .. }) => source.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    };
    let overlay = |text: &str| TenantSpec { overlay: Some(text.into()), ..spec(None, None, None) };
    assert!(refused("u1", overlay("[telemetry]\nwindow = 5")).contains("telemetry.window"));
    assert!(refused("u2", overlay("[telemetry\n")).contains("overlay"));
    assert!(refused("u3", overlay("[nonsense]\nkey = 1")).contains("nonsense"));
    assert!(refused("u4", spec(Some(0), None, None)).contains("requests"));
    assert!(refused("bad id!", spec(None, None, None)).contains("tenant id"));
    assert!(
        refused("u5", TenantSpec { price_per_1k_tokens: -1.0, ..spec(None, None, None) }).contains("price")
    );
    assert!(matches!(tenants.register("fast", spec(None, None, None)), Err(TenantError::Duplicate(_))));
    assert!(matches!(tenants.get("nobody"), Err(TenantError::Unknown(_))));
    assert_eq!(tenants.get("fast").unwrap().id(), "fast");
}

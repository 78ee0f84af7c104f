//! A node on the network must be put there on purpose: off loopback, `Cluster::start` itself
//! (not only the configuration loader) refuses the default cookie, a cookie under 16 bytes, and
//! plaintext without `cluster.allow_plaintext` (issue 20, point 2).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use foundation_cluster::Cluster;
use foundation_core::config::{ClusterConfig, DEFAULT_COOKIE};

fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0").unwrap().local_addr().unwrap().port()
}

async fn refusal(config: &ClusterConfig) -> String {
    match Cluster::start("n1", config, None).await {
        Ok(cluster) => {
            cluster.shutdown().await;
            panic!("a node started on {} with {config:?}", config.listen)
        }
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_loopback_a_node_needs_a_long_cookie_and_tls_or_an_explicit_plaintext_opt_in() {
    let public = ClusterConfig {
        listen: ([0, 0, 0, 0], free_port()).into(),
        cookie: "a-cookie-of-our-own-0123456789".into(),
        ..Default::default()
    };
    let no_tls = refusal(&public).await;
    assert!(
        no_tls.contains("[cluster.tls]") && no_tls.contains("cluster.allow_plaintext = true"),
        "{no_tls}"
    );

    let opted_in = ClusterConfig { allow_plaintext: true, ..public.clone() };
    let short = refusal(&ClusterConfig { cookie: "fifteen-bytes!!".into(), ..opted_in.clone() }).await;
    assert!(short.contains("15 bytes long") && short.contains("at least 16 bytes"), "{short}");
    let default = refusal(&ClusterConfig { cookie: DEFAULT_COOKIE.into(), ..opted_in.clone() }).await;
    assert!(default.contains("the default one"), "{default}");

    // Opted in, with a cookie of its own: it starts.
    let node = Cluster::start("n1", &opted_in, None).await.unwrap();
    node.shutdown().await;
    // Dialling a seed on another machine exposes the node as much as listening there does.
    let dialling = ClusterConfig {
        listen: ([127, 0, 0, 1], free_port()).into(),
        seeds: vec![([10, 0, 0, 5], 4100).into()],
        ..Default::default()
    };
    let seeded = refusal(&dialling).await;
    assert!(seeded.contains("10.0.0.5:4100") && seeded.contains("the default one"), "{seeded}");
    // On loopback nothing is required: the quick start's single node.
    let local = ClusterConfig { listen: ([127, 0, 0, 1], free_port()).into(), ..Default::default() };
    Cluster::start("n1", &local, None).await.unwrap().shutdown().await;
}

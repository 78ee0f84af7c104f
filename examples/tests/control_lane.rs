//! The control lane (patch 8 of `patches/ractor_cluster`) between real hosts: the sending
//! host's link is limited to 100 Mbit/s (`tc tbf`), 40 MiB of casts are queued on it at once
//! (without flow control, the worst case) and the two nodes' heartbeats go ahead of them:
//! neither finds the other unreachable while the transfer takes seconds. Without the lane a
//! heartbeat would wait behind the whole queue (over 3 s at this rate), past the ≈1.8 s after
//! which peers declare a silent node unreachable; with it, behind at most one batch and what the
//! kernel's socket buffer holds.
//!
//! Both nodes are this test binary started again as `bulk_node` (`BULK_NAME` set) inside the
//! hosts' network namespaces. Skips, saying why, where namespaces or `tbf` cannot be made,
//! unless `CI_NETNS_TEST=required` (as under `.ci/run`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use foundation_cluster::blob::Blob;
use foundation_cluster::testkit::netns::{TestNet, required};
use foundation_cluster::{Cluster, MembershipEvent};
use foundation_core::config::ClusterConfig;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;

const COOKIE: &str = "control-lane-test-cookie";
const ITEM: usize = 64 << 10;
/// 40 MiB: over three seconds at 100 Mbit/s.
const ITEMS: u64 = 640;
const RATE_MBIT: u32 = 100;

#[derive(RactorClusterMessage)]
enum Bulk {
    Put(Blob),
    /// Answered once this many items arrived (or after two minutes), with the count.
    #[rpc]
    Received(u64, RpcReplyPort<u64>),
}

struct Sink;

impl Actor for Sink {
    type Msg = Bulk;
    type State = Arc<AtomicU64>;
    type Arguments = ();
    async fn pre_start(&self, _: ActorRef<Bulk>, (): ()) -> Result<Self::State, ActorProcessingErr> {
        Ok(Arc::default())
    }
    async fn handle(
        &self,
        _: ActorRef<Bulk>,
        msg: Bulk,
        count: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            Bulk::Put(blob) => {
                if blob.len() == ITEM {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
            Bulk::Received(expected, reply) => {
                let count = count.clone();
                tokio::spawn(async move {
                    let deadline = Instant::now() + Duration::from_secs(120);
                    while count.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    let _ = reply.send(count.load(Ordering::Relaxed));
                });
            }
        }
        Ok(())
    }
}

/// A node: `BULK_NAME` listening on `BULK_LISTEN`, seeded with `BULK_SEED` if set; it prints
/// every membership event, and with `BULK_SEND_TO` casts [`ITEMS`] blobs to that node's sink at
/// once, then prints how many arrived.
#[test]
#[ignore = "the node process the test starts (runs only with BULK_NAME)"]
fn bulk_node() {
    let Ok(name) = std::env::var("BULK_NAME") else { return };
    let config = ClusterConfig {
        listen: std::env::var("BULK_LISTEN").unwrap().parse().unwrap(),
        seeds: std::env::var("BULK_SEED").ok().map(|s| vec![s.parse().unwrap()]).unwrap_or_default(),
        cookie: COOKIE.into(),
        allow_plaintext: true,
        ..Default::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async move {
        let cluster = Cluster::start(&name, &config, None).await.unwrap();
        let mut events = cluster.subscribe();
        tokio::spawn(async move {
            while let Ok(event) = events.recv().await {
                let line = match event {
                    MembershipEvent::Up { name, .. } => format!("event up {name}"),
                    MembershipEvent::Down { name, reason } => format!("event down {name}: {reason}"),
                    MembershipEvent::Unreachable { name, phi } => {
                        format!("event unreachable {name} phi {phi:.1}")
                    }
                    other => format!("event {other:?}"),
                };
                println!("{line}");
            }
        });
        let (sink, _) = Actor::spawn(None, Sink, ()).await.unwrap();
        ractor::pg::join(format!("bulk-{name}"), vec![sink.get_cell()]);
        println!("ready");
        if let Ok(peer) = std::env::var("BULK_SEND_TO") {
            let group = format!("bulk-{peer}");
            let to: ActorRef<Bulk> = loop {
                let remote = ractor::pg::get_members(&group).into_iter().find(|m| !m.get_id().is_local());
                if let Some(member) = remote {
                    break member.into();
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            };
            let bytes = vec![7; ITEM];
            let started = Instant::now();
            // every outcome ends in a `delivered` line, so the test reads the reason at once
            for _ in 0..ITEMS {
                if let Err(e) = to.cast(Bulk::Put(Blob::copy_from(&bytes, 1 << 20).unwrap())) {
                    println!("delivered none: a cast failed: {e}");
                    std::future::pending::<()>().await;
                }
            }
            match to.call(|r| Bulk::Received(ITEMS, r), Some(Duration::from_secs(100))).await {
                Ok(ractor::rpc::CallResult::Success(n)) => {
                    println!("delivered {n} in {} ms", started.elapsed().as_millis())
                }
                other => println!("delivered none: the count was not answered: {other:?}"),
            }
        }
        std::future::pending::<()>().await;
    });
}

#[test]
fn heartbeats_overtake_a_bulk_transfer_on_a_slow_link() {
    let net = match TestNet::new(2) {
        Ok(net) => net,
        Err(e) if !required() => {
            return eprintln!("skipped: {e} (set CI_NETNS_TEST=required to make this a failure)");
        }
        Err(e) => panic!("{e} (CI_NETNS_TEST=required)"),
    };
    match net.limit_rate(1, RATE_MBIT) {
        Ok(()) => {}
        Err(e) if !required() => return eprintln!("skipped: {e}"),
        Err(e) => panic!("{e} (CI_NETNS_TEST=required)"),
    }
    let exe = std::env::current_exe().unwrap();
    let args = ["bulk_node", "--exact", "--ignored", "--nocapture", "--test-threads=1"];
    let listen = |k: usize| format!("{}:4200", net.host(k).address());
    let env = |name: &str, k: usize| vec![("BULK_NAME", name.to_string()), ("BULK_LISTEN", listen(k))];
    let receiver = net.spawn(0, "receiver", &exe, args, env("receiver", 0)).unwrap();
    receiver.wait_for("ready", Duration::from_secs(60)).unwrap();
    let mut sender_env = env("sender", 1);
    sender_env.extend([("BULK_SEED", listen(0)), ("BULK_SEND_TO", "receiver".to_string())]);
    let sender = net.spawn(1, "sender", &exe, args, sender_env).unwrap();
    let done = sender.wait_for("delivered ", Duration::from_secs(120)).unwrap();
    eprintln!("{done} (at {RATE_MBIT} Mbit/s)");
    let events = |node: &foundation_cluster::testkit::NodeProcess| -> Vec<String> {
        node.output().into_iter().filter(|l| l.starts_with("event ")).collect()
    };
    let (at_receiver, at_sender) = (events(&receiver), events(&sender));
    let seen = format!("receiver saw {at_receiver:?}, sender saw {at_sender:?}");
    assert!(done.starts_with(&format!("delivered {ITEMS} ")), "{done}; {seen}");
    // The premise, a lower bound only (no machine makes a rate-limited link faster): the queue
    // took longer to drain than a silent node is given, so heartbeats behind it would have been
    // too late.
    let ms: u64 = done.split_whitespace().nth(3).and_then(|m| m.parse().ok()).unwrap_or(0);
    assert!(ms >= 2_000, "the transfer took {ms} ms: the rate limit did not hold ({done})");
    for events in [&at_receiver, &at_sender] {
        assert!(events.iter().any(|e| e.starts_with("event up ")), "{seen}");
        assert!(
            !events.iter().any(|e| e.starts_with("event unreachable") || e.starts_with("event down")),
            "a node lost its peer during the transfer: {seen}"
        );
    }
}

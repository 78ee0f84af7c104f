//! Channel fan-out throughput against a bare `tokio::sync::broadcast`, and registry selection
//! latency. Run with `cargo bench -p foundation-actors --bench actors`; figures are kept in
//! docs/BENCHMARKS.md.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use foundation_actors::channels::{Channels, SubscribeOptions, Topic};
use foundation_actors::registry::{ServiceRegistry, Strategy};
use ractor::{Actor, ActorProcessingErr, ActorRef};

/// Messages per measured batch; every subscriber receives all of them.
const BATCH: usize = 100;

fn channels(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut group = c.benchmark_group("publish_to_delivery");
    for subscribers in [1usize, 100, 10_000] {
        if subscribers >= 10_000 {
            group.sample_size(10);
        }
        group.throughput(Throughput::Elements((BATCH * subscribers) as u64));

        // Foundation channels: publish a batch, then every subscriber drains it.
        let channels = rt.block_on(Channels::start()).unwrap();
        let topic: Topic<u64> = Topic::new("bench");
        let options = SubscribeOptions { capacity: BATCH, ..Default::default() };
        let mut subs: Vec<_> =
            (0..subscribers).map(|_| channels.subscribe_with(&topic, options).unwrap()).collect();
        group.bench_function(BenchmarkId::new("foundation_channels", subscribers), |b| {
            b.iter(|| {
                for n in 0..BATCH as u64 {
                    channels.publish(&topic, n).unwrap();
                }
                for s in subs.iter_mut() {
                    while let Some(m) = s.try_recv() {
                        black_box(m.unwrap());
                    }
                }
            })
        });
        drop(subs);

        // Baseline: tokio's broadcast channel, same batch, same subscribers.
        let (tx, _) = tokio::sync::broadcast::channel::<u64>(BATCH);
        let mut rxs: Vec<_> = (0..subscribers).map(|_| tx.subscribe()).collect();
        group.bench_function(BenchmarkId::new("tokio_broadcast", subscribers), |b| {
            b.iter(|| {
                for n in 0..BATCH as u64 {
                    tx.send(n).unwrap();
                }
                for rx in rxs.iter_mut() {
                    while let Ok(m) = rx.try_recv() {
                        black_box(m);
                    }
                }
            })
        });
    }
    group.finish();
}

struct Idle;
impl Actor for Idle {
    type Msg = ();
    type State = ();
    type Arguments = ();
    async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

fn registry(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let registry = rt.block_on(ServiceRegistry::start()).unwrap();
    rt.block_on(async {
        for i in 0..1000 {
            let (actor, _) = Actor::spawn(None, Idle, ()).await.unwrap();
            let id =
                registry.register_service("svc", actor.get_cell(), ["work"], [("n", i.to_string())]).unwrap();
            registry.report_health(id, true, (i % 97) as f64 / 97.0).unwrap();
            registry.record_latency(id, std::time::Duration::from_micros(100 + (i % 89) as u64)).unwrap();
        }
    });
    let mut group = c.benchmark_group("registry_select_1000_instances");
    for strategy in
        [Strategy::RoundRobin, Strategy::PowerOfTwoChoices, Strategy::LeastLoaded, Strategy::LowestLatency]
    {
        group.bench_function(format!("{strategy:?}"), |b| {
            b.iter(|| black_box(registry.select("svc", strategy).unwrap()))
        });
    }
    group.finish();
}

criterion_group!(benches, channels, registry);
criterion_main!(benches);

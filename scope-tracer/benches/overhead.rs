//! Tracing overhead on actor messaging: messages per second between two actors with no tracer,
//! with the recorder sampling 1 % of traces, and 100 %.
//!
//! Each message is one request: the sender opens a root span (`root_span!`) and sends the
//! message with its trace context (binary, as Foundation's handles carry it); the receiving
//! actor continues the trace in a span of its own (`continue_trace!`) and does a little work.
//! With no tracer the spans are disabled and no context is taken.
//!
//! Run: `cargo bench -p scope-tracer --bench overhead` (figures in docs/BENCHMARKS.md);
//! `-- span-cost` for one sampled root span alone, `-- event-cost` for one event inside a span.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::time::{Duration, Instant};

use foundation_core::trace_context::{self, TraceParent};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tracing_subscriber::layer::SubscriberExt;

const MESSAGES: u64 = 200_000;
const ROUNDS: usize = 5;

enum Msg {
    Work(Option<TraceParent>, u64, Workload),
    Flush(RpcReplyPort<u64>),
}

// Local only: with ractor's `cluster` feature there is no blanket `Message` impl.
impl ractor::Message for Msg {}

/// What the receiving actor does with a message.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Workload {
    /// Adds two numbers: the worst case for relative overhead.
    Empty,
    /// Decodes a 190-byte JSON order (about a microsecond): a small but real handler.
    Json,
}

const ORDER: &str = r#"{"id":7,"customer":"ada@example.com","items":[{"sku":"A-113","qty":2,"price":19.5},{"sku":"B-2","qty":1,"price":5.25}],"note":"leave at the door","express":true}"#;

struct Receiver;

impl Actor for Receiver {
    type Msg = Msg;
    type State = u64;
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<Msg>, _: ()) -> Result<u64, ActorProcessingErr> {
        Ok(0)
    }

    async fn handle(&self, _: ActorRef<Msg>, msg: Msg, sum: &mut u64) -> Result<(), ActorProcessingErr> {
        match msg {
            Msg::Work(traceparent, n, workload) => {
                // What Foundation's handles do: only sampled traces get a span here.
                let span = trace_context::continue_trace!(traceparent, "handle");
                let _in = span.enter();
                if workload == Workload::Json {
                    let order: serde_json::Value = serde_json::from_str(ORDER)?;
                    *sum = sum.wrapping_add(order["items"].as_array().map_or(0, |a| a.len() as u64));
                }
                *sum = sum.wrapping_add(n.wrapping_mul(0x9e37_79b9));
            }
            Msg::Flush(reply) => {
                let _ = reply.send(*sum);
            }
        }
        Ok(())
    }
}

async fn run_once(workload: Workload) -> Duration {
    let (actor, handle) = Actor::spawn(None, Receiver, ()).await.unwrap();
    let started = Instant::now();
    for i in 0..MESSAGES {
        let root = scope_tracer::root_span!("request");
        let _in = root.enter();
        actor.cast(Msg::Work(trace_context::current_sampled(), i, workload)).unwrap();
    }
    let _ = actor.call(Msg::Flush, None).await.unwrap();
    let elapsed = started.elapsed();
    actor.stop(None);
    let _ = handle.await;
    elapsed
}

/// Messages per second for each mode (no tracer; 1 %; 100 %), median of [`ROUNDS`] rounds; the
/// modes take turns within each round, so that drift in the machine's speed hits all alike.
fn measure(workload: Workload) -> [f64; 3] {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let modes = [None, Some(0.01), Some(1.0)];
    let mut rates: [Vec<f64>; 3] = Default::default();
    for _ in 0..ROUNDS {
        for (i, rate) in modes.iter().enumerate() {
            let elapsed = match rate {
                None => runtime.block_on(run_once(workload)),
                Some(rate) => {
                    let subscriber = tracing_subscriber::registry().with(scope_tracer::layer("bench", *rate));
                    let _default = tracing::subscriber::set_default(subscriber);
                    runtime.block_on(run_once(workload))
                }
            };
            rates[i].push(MESSAGES as f64 / elapsed.as_secs_f64());
        }
    }
    rates.map(|mut r| {
        r.sort_by(f64::total_cmp);
        r[ROUNDS / 2]
    })
}

/// What one sampled request costs the sender alone, on one thread: a root span opened,
/// entered, its context taken, closed and recorded.
fn span_cost() -> f64 {
    let subscriber = tracing_subscriber::registry().with(scope_tracer::layer("bench", 1.0));
    let _default = tracing::subscriber::set_default(subscriber);
    let n = 1_000_000u32;
    let started = Instant::now();
    for _ in 0..n {
        let root = scope_tracer::root_span!("request");
        let _in = root.enter();
        std::hint::black_box(trace_context::current_sampled());
    }
    started.elapsed().as_nanos() as f64 / f64::from(n)
}

/// What one `info!` event costs inside a span: kept with a sampled span (its fields formatted
/// and stored), and looked at but not kept in an unsampled one; each minus the span alone.
fn event_cost() -> (f64, f64) {
    let per = |rate: f64, with_event: bool| {
        let subscriber = tracing_subscriber::registry().with(scope_tracer::layer("bench", rate));
        let _default = tracing::subscriber::set_default(subscriber);
        let n = 1_000_000u32;
        let started = Instant::now();
        for i in 0..n {
            let root = tracing::info_span!("request", trace_root = true);
            let _in = root.enter();
            if with_event {
                tracing::info!(order = i, "order accepted");
            }
        }
        started.elapsed().as_nanos() as f64 / f64::from(n)
    };
    (per(1.0, true) - per(1.0, false), per(0.0, true) - per(0.0, false))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    println!("overhead: {MESSAGES} messages per round, median of {ROUNDS} rounds");
    if std::env::args().any(|a| a == "event-cost") {
        let (sampled, unsampled) = event_cost();
        println!("one info! event inside a span: sampled {sampled:.0} ns, unsampled {unsampled:.0} ns");
        return;
    }
    if std::env::args().any(|a| a == "span-cost") {
        println!("one sampled root span, opened to recorded: {:.0} ns", span_cost());
        return;
    }
    for workload in [Workload::Empty, Workload::Json] {
        let [off, one, all] = measure(workload);
        println!("handler {workload:?}:");
        println!("  {:<20} {:>12.0} msgs/s", "tracing off", off);
        for (label, on) in [("sampling 1 %", one), ("sampling 100 %", all)] {
            println!("  {label:<20} {on:>12.0} msgs/s  overhead {:>5.1} %", (1.0 - on / off) * 100.0);
        }
    }
}

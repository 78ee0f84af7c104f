//! Tracing overhead on actor messaging: messages per second between two actors with no tracer,
//! with the recorder sampling 1 % of traces, and 100 %.
//!
//! Each message is one request: the sender opens a root span (`trace_root = true`) and sends the
//! message with its `traceparent`; the receiving actor continues the trace in a span of its own
//! and does a little work. With no tracer the spans are disabled and no context is taken.
//!
//! Run: `cargo bench -p scope-tracer --bench overhead` (figures in docs/BENCHMARKS.md).

use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use scope_tracer::current_traceparent;
use tracing_subscriber::layer::SubscriberExt;

const MESSAGES: u64 = 200_000;
const ROUNDS: usize = 5;

enum Msg {
    Work(Option<String>, u64),
    Flush(RpcReplyPort<u64>),
}

// Local only: with ractor's `cluster` feature there is no blanket `Message` impl.
impl ractor::Message for Msg {}

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
            Msg::Work(traceparent, n) => {
                // What `Wire::span` does: only sampled traces get a span here.
                let span = match &traceparent {
                    Some(tp) if tp.ends_with("-01") => tracing::info_span!("handle", traceparent = %tp),
                    _ => tracing::Span::none(),
                };
                let _in = span.enter();
                *sum = sum.wrapping_add(n.wrapping_mul(0x9e37_79b9));
            }
            Msg::Flush(reply) => {
                let _ = reply.send(*sum);
            }
        }
        Ok(())
    }
}

async fn run_once() -> Duration {
    let (actor, handle) = Actor::spawn(None, Receiver, ()).await.unwrap();
    let started = Instant::now();
    for i in 0..MESSAGES {
        let root = scope_tracer::root_span!("request");
        let _in = root.enter();
        actor.cast(Msg::Work(current_traceparent(), i)).unwrap();
    }
    let _ = actor.call(Msg::Flush, None).await.unwrap();
    let elapsed = started.elapsed();
    actor.stop(None);
    let _ = handle.await;
    elapsed
}

fn measure(rate: Option<f64>) -> f64 {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut rates: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let elapsed = match rate {
                None => runtime.block_on(run_once()),
                Some(rate) => {
                    let subscriber = tracing_subscriber::registry().with(scope_tracer::layer("bench", rate));
                    let _default = tracing::subscriber::set_default(subscriber);
                    runtime.block_on(run_once())
                }
            };
            MESSAGES as f64 / elapsed.as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[ROUNDS / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    println!("overhead: {MESSAGES} messages per round, median of {ROUNDS} rounds");
    let off = measure(None);
    println!("{:<22} {:>12.0} msgs/s", "tracing off", off);
    for (label, rate) in [("sampling 1 %", 0.01), ("sampling 100 %", 1.0)] {
        let on = measure(Some(rate));
        println!("{label:<22} {on:>12.0} msgs/s  overhead {:>5.1} %", (1.0 - on / off) * 100.0);
    }
}

//! Trace context through Foundation's handles inside one node: a user's actor message wrapped in
//! `Traced`, a channel publish, and a pipeline's stages each continue the sender's trace as a
//! child span, and a message sent outside any trace carries nothing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::collections::BTreeMap;

use foundation_actors::channels::{Channels, Topic};
use foundation_actors::pipeline::{Pipeline, Stage};
use foundation_actors::traced::Traced;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use scope_tracer::{SpanRecord, current_context};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

fn install() -> tracing::subscriber::DefaultGuard {
    let subscriber = tracing_subscriber::registry().with(scope_tracer::layer("local", 1.0));
    tracing::subscriber::set_default(subscriber)
}

/// The recorded spans of the current trace, by name.
fn spans_of(trace_id: u128) -> BTreeMap<String, SpanRecord> {
    scope_tracer::buffer()
        .trace(&format!("{trace_id:032x}"))
        .into_iter()
        .map(|s| (s.name.clone(), s))
        .collect()
}

enum Msg {
    Work(Traced<u32>, RpcReplyPort<u32>),
}

impl ractor::Message for Msg {}

struct Doubler;

impl Actor for Doubler {
    type Msg = Msg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<Msg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(&self, _: ActorRef<Msg>, msg: Msg, _: &mut ()) -> Result<(), ActorProcessingErr> {
        let Msg::Work(job, reply) = msg;
        let span = job.span();
        async {
            let _work = tracing::info_span!("double").entered();
            let _ = reply.send(job.value * 2);
        }
        .instrument(span)
        .await;
        Ok(())
    }
}

#[tokio::test]
async fn a_traced_actor_message_continues_the_senders_trace() {
    let _tracer = install();
    let (actor, handle) = Actor::spawn(None, Doubler, ()).await.unwrap();
    let root = tracing::info_span!("request", trace_sampled = true);
    let trace_id = root.in_scope(|| current_context().unwrap().trace_id);
    let doubled = async { actor.call(|port| Msg::Work(Traced::capture(21), port), None).await.unwrap() }
        .instrument(root.clone())
        .await;
    drop(root);
    assert_eq!(doubled.unwrap(), 42);
    let spans = spans_of(trace_id);
    let (request, receive, double) = (&spans["request"], &spans["message.receive"], &spans["double"]);
    assert_eq!(receive.parent_span_id.as_ref(), Some(&request.span_id), "{spans:#?}");
    assert_eq!(double.parent_span_id.as_ref(), Some(&receive.span_id), "{spans:#?}");
    assert!(receive.fields["message"].contains("u32"));
    // Outside any trace nothing is carried and the receiving span is disabled.
    let plain = Traced::capture(1);
    assert_eq!(plain.parent, None);
    assert!(plain.span().is_disabled());
    actor.stop(None);
    handle.await.unwrap();
}

#[tokio::test]
async fn a_channel_subscriber_continues_the_publishers_trace() {
    let _tracer = install();
    let channels = Channels::start().await.unwrap();
    let topic: Topic<String> = Topic::new("orders");
    let mut subscription = channels.subscribe(&topic).unwrap();
    let root = tracing::info_span!("publish-order", trace_sampled = true);
    let (trace_id, publisher) = root.in_scope(|| {
        let ctx = current_context().unwrap();
        channels.publish(&topic, "order 7".to_string()).unwrap();
        (ctx.trace_id, ctx.span_id)
    });
    drop(root);
    let message = subscription.recv_traced().await.unwrap();
    assert_eq!(message.value, "order 7");
    assert_eq!(message.parent.map(|p| (p.trace_id, p.span_id)), Some((trace_id, publisher)));
    message.span().in_scope(|| tracing::info_span!("ship").in_scope(|| ()));
    let spans = spans_of(trace_id);
    assert_eq!(spans["message.receive"].parent_span_id, Some(format!("{publisher:016x}")));
    assert_eq!(spans["ship"].parent_span_id.as_ref(), Some(&spans["message.receive"].span_id));
    // Published outside a trace: no context, and `recv` still returns the bare value.
    channels.publish(&topic, "order 8".to_string()).unwrap();
    let untraced = subscription.recv_traced().await.unwrap();
    assert_eq!((untraced.value.as_str(), untraced.parent), ("order 8", None));
    channels.shutdown().await;
}

#[tokio::test]
async fn each_pipeline_stage_is_a_child_of_the_previous_one() {
    let _tracer = install();
    let pipeline = Pipeline::builder::<u64>("orders")
        .stage(Stage::new("parse", |n: u64| async move { Ok::<_, String>(n + 1) }))
        .stage(Stage::new("price", |n: u64| async move {
            let _quote = tracing::info_span!("quote").entered();
            Ok::<_, String>(n * 10)
        }))
        .build(4)
        .await
        .unwrap();
    let (input, mut outputs, _dead) = pipeline.split();
    let root = tracing::info_span!("checkout", trace_sampled = true);
    let trace_id = root.in_scope(|| current_context().unwrap().trace_id);
    input.submit(1).instrument(root.clone()).await.unwrap();
    drop(root);
    assert_eq!(outputs.recv().await.map(|(_, v)| v), Some(20));
    drop(input);
    // Stage spans close after the output is sent; wait for the second one to be recorded.
    let mut stages = Vec::new();
    for _ in 0..200 {
        stages = scope_tracer::buffer()
            .trace(&format!("{trace_id:032x}"))
            .into_iter()
            .filter(|s| s.name == "pipeline.stage")
            .collect();
        if stages.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let by_stage: BTreeMap<String, SpanRecord> =
        stages.into_iter().map(|s| (s.fields["stage"].clone(), s)).collect();
    let spans = spans_of(trace_id);
    assert_eq!(by_stage["parse"].parent_span_id.as_ref(), Some(&spans["checkout"].span_id), "{by_stage:#?}");
    assert_eq!(by_stage["price"].parent_span_id.as_ref(), Some(&by_stage["parse"].span_id), "{by_stage:#?}");
    assert_eq!(spans["quote"].parent_span_id.as_ref(), Some(&by_stage["price"].span_id));
    assert_eq!(by_stage["parse"].fields["pipeline"], "orders");
}

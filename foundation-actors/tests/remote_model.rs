//! A model served by a [`ModelServer`] and called through a [`RemoteModel`]: the same answers
//! as the model itself, whole and streamed; a slow reader holds the server's pump to its window
//! (the model is not read ahead without bound); a dropped reader drops the model's stream; an
//! unknown model is a clear error. (Across real node processes: examples/tests/remote_model.rs.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use foundation_actors::providers::*;
use foundation_actors::registry::ServiceRegistry;
use serde_json::json;

/// A model whose stream has 10 000 pieces at once, counting how many it produced and whether
/// its stream was dropped.
struct Firehose {
    produced: Arc<AtomicUsize>,
    dropped: Arc<AtomicBool>,
}

struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl LanguageModel for Firehose {
    fn model(&self) -> &str {
        "firehose"
    }

    fn complete<'a>(&'a self, _: &'a ChatRequest) -> BoxFuture<'a, Result<Completion, LmError>> {
        Box::pin(async { Ok(Completion::from_text("x", Usage::default(), "firehose", "test")) })
    }

    fn stream<'a>(&'a self, _: &'a ChatRequest) -> BoxFuture<'a, Result<CompletionStream, LmError>> {
        let (produced, flag) = (self.produced.clone(), DropFlag(self.dropped.clone()));
        Box::pin(async move {
            let pieces = futures::stream::unfold((0usize, flag), move |(i, flag)| {
                let produced = produced.clone();
                async move {
                    if i == 10_000 {
                        return None;
                    }
                    produced.fetch_add(1, Ordering::SeqCst);
                    Some((Ok(StreamEvent::Text("x ".into())), (i + 1, flag)))
                }
            });
            Ok(CompletionStream::new("test", pieces))
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_model_answers_as_itself_and_a_slow_reader_bounds_the_server() {
    let registry = ServiceRegistry::start().await.unwrap();
    let sim = Arc::new(SimulatedModel::new(SimulatedConfig {
        latency: Duration::ZERO,
        completion_tokens: Some(30),
        ..Default::default()
    }));
    let firehose = Firehose { produced: Arc::default(), dropped: Arc::default() };
    let (produced, dropped) = (firehose.produced.clone(), firehose.dropped.clone());
    let server = ModelServer::new()
        .serve("sim", sim.clone())
        .serve("firehose", Arc::new(firehose))
        .start(&registry)
        .await
        .unwrap();

    // The same answers, whole and streamed, tool calls included.
    let remote = RemoteModel::new(&registry, "sim");
    let tool = ToolSpec::new(
        "get_weather",
        "Current weather for a city",
        json!({"type": "object", "properties": {"city": {"type": "string"}}}),
    );
    for request in [
        ChatRequest::prompt("Tell me about lighthouses"),
        ChatRequest::prompt("Weather in Paris?").tool(tool),
    ] {
        let here = sim.complete(&request).await.unwrap();
        assert_eq!(remote.complete(&request).await.unwrap(), here);
        let streamed = remote.stream(&request).await.unwrap().collect().await.unwrap();
        assert_eq!(
            (streamed.content, streamed.tool_calls, streamed.usage),
            (here.content, here.tool_calls, here.usage)
        );
    }

    // A reader that stops after 10 pieces: the server reads at most its window ahead.
    let mut stream =
        RemoteModel::new(&registry, "firehose").stream(&ChatRequest::prompt("go")).await.unwrap();
    for _ in 0..10 {
        stream.next().await.unwrap().unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ahead = produced.load(Ordering::SeqCst);
    assert!(ahead <= 10 + STREAM_WINDOW + PULL_BATCH + 2, "{ahead} pieces produced for 10 read");
    assert!(!dropped.load(Ordering::SeqCst));
    // Dropped: the server drops the model's stream.
    drop(stream);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !dropped.load(Ordering::SeqCst) {
        assert!(tokio::time::Instant::now() < deadline, "the model's stream was never dropped");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    while server.stats().cancelled() != 1 {
        assert!(tokio::time::Instant::now() < deadline, "the cancel was never counted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(produced.load(Ordering::SeqCst) < 10_000);

    // Unknown models and bad requests: clear errors, nothing sent.
    match RemoteModel::new(&registry, "gpt-9").stream(&ChatRequest::prompt("hi")).await {
        Err(LmError::Unknown { what, name }) => {
            assert_eq!((what.as_str(), name.as_str()), ("model", "gpt-9"))
        }
        other => panic!("{other:?}"),
    }
    let bad = ChatRequest::prompt("hi").tool_choice(ToolChoice::Tool("nothing".into()));
    assert!(matches!(remote.complete(&bad).await, Err(LmError::InvalidRequest { .. })));
    server.stop().await;
}

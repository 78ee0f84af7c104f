//! Durable conversations in one process: an agent given a store resumes its conversation after
//! its supervisor restarts it, never answers from a conversation it could not load, withholds an
//! answer it could not save (and reloads: a save whose outcome was unknown may have been kept),
//! saves a replaced memory as a reset, and resumes within its window. Across nodes and kill -9:
//! `examples/tests/conversations.rs`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foundation_actors::agents::{
    Agent, AgentContext, AgentError, AgentHandle, AgentSpec, Conversation, ConversationChange,
    ConversationError, ConversationStore, LocalConversations, Memory,
};
use foundation_actors::providers::{BoxFuture, ChatRequest, Completion, LanguageModel, LmError, Usage};
use foundation_actors::registry::ServiceRegistry;
use serde::{Deserialize, Serialize};

const ASK: Duration = Duration::from_secs(20);

/// Answers `echo: <last message>`, counting its calls.
#[derive(Clone, Default)]
struct Echo {
    calls: Arc<AtomicUsize>,
}

impl LanguageModel for Echo {
    fn model(&self) -> &str {
        "echo"
    }

    fn complete<'a>(&'a self, request: &'a ChatRequest) -> BoxFuture<'a, Result<Completion, LmError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let last = request.messages.last().map(|m| m.text()).unwrap_or_default();
        Box::pin(
            async move { Ok(Completion::from_text(format!("echo: {last}"), Usage::default(), "echo", "t")) },
        )
    }
}

/// A store that fails on demand: loads, appends refused, or appends kept but reported failed
/// (the answer lost on the way back).
#[derive(Clone, Default)]
struct Flaky {
    inner: LocalConversations,
    fail_loads: Arc<AtomicBool>,
    fail_appends: Arc<AtomicBool>,
    lose_answers: Arc<AtomicBool>,
    appends: Arc<Mutex<Vec<ConversationChange>>>,
}

fn unavailable(id: &str) -> ConversationError {
    ConversationError::Unavailable { conversation: id.into(), source: "the store is down".into() }
}

impl ConversationStore for Flaky {
    fn load<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Conversation, ConversationError>> {
        Box::pin(async move {
            if self.fail_loads.load(Ordering::SeqCst) {
                return Err(unavailable(id));
            }
            self.inner.load(id).await
        })
    }

    fn append<'a>(
        &'a self,
        id: &'a str,
        change: ConversationChange,
    ) -> BoxFuture<'a, Result<u64, ConversationError>> {
        Box::pin(async move {
            if self.fail_appends.load(Ordering::SeqCst) {
                return Err(unavailable(id));
            }
            self.appends.lock().unwrap().push(change.clone());
            let length = self.inner.append(id, change).await?;
            if self.lose_answers.load(Ordering::SeqCst) {
                return Err(unavailable(id));
            }
            Ok(length)
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
enum Say {
    Text(String),
    Panic,
    /// Replaces the memory with a fresh one holding this text.
    StartOver(String),
    /// Puts back the memory as it was before the last `Text` and says this instead.
    Redo(String),
}

/// Talks to its model; answers with its memory (`role: text`, system prompt included).
#[derive(Default)]
struct Talker {
    /// The memory before the last `Text`.
    undo: Option<Memory>,
}

impl Agent for Talker {
    type Input = Say;
    type Output = Vec<String>;

    async fn step(&mut self, ctx: &mut AgentContext, say: Say) -> Result<Vec<String>, AgentError> {
        match say {
            Say::Text(text) => {
                self.undo = Some(ctx.memory().clone());
                ctx.ask_model(text).await?;
            }
            Say::Redo(text) => {
                let before = self.undo.clone().ok_or_else(|| AgentError::step("nothing to redo"))?;
                *ctx.memory_mut() = before;
                ctx.ask_model(text).await?;
            }
            Say::Panic => panic!("told to panic"),
            Say::StartOver(text) => {
                let mut fresh = Memory::new(8).unwrap();
                fresh.remember(foundation_actors::providers::ChatMessage::user(text));
                *ctx.memory_mut() = fresh;
            }
        }
        Ok(ctx.memory().messages().iter().map(|m| format!("{:?}: {}", m.role, m.text())).collect())
    }
}

async fn talker(store: Arc<dyn ConversationStore>, window: usize, model: Echo) -> AgentHandle<Talker> {
    let registry = ServiceRegistry::start().await.unwrap();
    AgentSpec::new("talker", Talker::default)
        .model(model)
        .memory(Memory::new(window).unwrap().with_system("Be brief."))
        .durable(store, "talk-1")
        .start(&registry)
        .await
        .unwrap()
}

async fn say(agent: &AgentHandle<Talker>, text: &str) -> Result<Vec<String>, AgentError> {
    // Between a crash and its restart the agent is not running: asked again.
    for _ in 0..200 {
        match agent.ask(Say::Text(text.into()), ASK).await {
            Err(AgentError::Stopped { .. }) => tokio::time::sleep(Duration::from_millis(10)).await,
            other => return other,
        }
    }
    panic!("the agent never restarted");
}

fn texts(c: &Conversation) -> Vec<String> {
    c.messages.iter().map(|m| m.text()).collect()
}

#[tokio::test]
async fn a_restarted_agent_resumes_its_conversation_within_its_window() {
    let store = LocalConversations::default();
    let agent = talker(Arc::new(store.clone()), 6, Echo::default()).await;
    say(&agent, "a").await.unwrap();
    let memory = say(&agent, "b").await.unwrap();
    assert_eq!(
        memory,
        ["System: Be brief.", "User: a", "Assistant: echo: a", "User: b", "Assistant: echo: b"]
    );

    let crashed = agent.ask(Say::Panic, ASK).await.unwrap_err();
    assert_eq!(crashed, AgentError::Crashed { agent: "talker".into() });
    let memory = say(&agent, "c").await.unwrap();
    assert_eq!(memory.len(), 7, "resumed: the system prompt and 6 of the window: {memory:?}");
    assert_eq!(memory[1], "User: a", "{memory:?}");
    assert_eq!(memory[6], "Assistant: echo: c", "{memory:?}");
    let kept = store.load("talk-1").await.unwrap();
    assert_eq!(texts(&kept), ["a", "echo: a", "b", "echo: b", "c", "echo: c"]);

    // Beyond the window: a restart resumes with the latest 6 (the store keeps more).
    say(&agent, "d").await.unwrap();
    agent.ask(Say::Panic, ASK).await.unwrap_err();
    let memory = say(&agent, "e").await.unwrap();
    assert_eq!(
        memory[1..],
        ["User: c", "Assistant: echo: c", "User: d", "Assistant: echo: d", "User: e", "Assistant: echo: e"]
    );
    assert_eq!(store.load("talk-1").await.unwrap().messages.len(), 10);
    agent.stop().await;
}

#[tokio::test]
async fn no_answer_from_an_unloaded_conversation_and_none_that_was_not_kept() {
    let store = Flaky::default();
    let model = Echo::default();
    let agent = talker(Arc::new(store.clone()), 16, model.clone()).await;
    say(&agent, "a").await.unwrap();

    // Cannot save: the answer is withheld, nothing is kept, and the agent reloads.
    store.fail_appends.store(true, Ordering::SeqCst);
    let refused = say(&agent, "lost").await.unwrap_err();
    assert!(refused.to_string().contains("could not be kept in its conversation"), "{refused}");
    assert!(refused.to_string().contains("the store is down"), "{refused}");
    store.fail_appends.store(false, Ordering::SeqCst);

    // Cannot load (the reload it owes): the step does not run, the model is not called.
    store.fail_loads.store(true, Ordering::SeqCst);
    let calls = model.calls.load(Ordering::SeqCst);
    let refused = say(&agent, "b").await.unwrap_err();
    assert!(refused.to_string().contains("could not be loaded"), "{refused}");
    assert_eq!(model.calls.load(Ordering::SeqCst), calls, "the step did not run");
    store.fail_loads.store(false, Ordering::SeqCst);

    let memory = say(&agent, "b").await.unwrap();
    assert_eq!(memory[1..], ["User: a", "Assistant: echo: a", "User: b", "Assistant: echo: b"], "reloaded");

    // Kept, but the store's answer lost: withheld, and the reload finds it kept.
    store.lose_answers.store(true, Ordering::SeqCst);
    say(&agent, "kept").await.unwrap_err();
    store.lose_answers.store(false, Ordering::SeqCst);
    let memory = say(&agent, "c").await.unwrap();
    assert_eq!(memory[5..], ["User: kept", "Assistant: echo: kept", "User: c", "Assistant: echo: c"]);
    // Every save appended after the version it had seen: none conflicted.
    let appends = store.appends.lock().unwrap().clone();
    assert_eq!(appends.iter().map(|c| c.after).collect::<Vec<_>>(), [0, 1, 2, 3]);
    agent.stop().await;
}

#[tokio::test]
async fn a_replaced_memory_is_saved_as_a_reset_and_a_bad_id_does_not_start() {
    let store = LocalConversations::default();
    let agent = talker(Arc::new(store.clone()), 16, Echo::default()).await;
    say(&agent, "a").await.unwrap();
    let memory = agent.ask(Say::StartOver("fresh".into()), ASK).await.unwrap();
    assert_eq!(memory, ["User: fresh"]);
    let kept = store.load("talk-1").await.unwrap();
    assert_eq!((kept.version, texts(&kept)), (2, vec!["fresh".to_string()]));
    agent.ask(Say::Panic, ASK).await.unwrap_err();
    let memory = say(&agent, "b").await.unwrap();
    assert_eq!(memory, ["System: Be brief.", "User: fresh", "User: b", "Assistant: echo: b"]);
    agent.stop().await;

    // A memory put back from a clone (an undo): the stored conversation follows it.
    let store = LocalConversations::default();
    let agent = talker(Arc::new(store.clone()), 16, Echo::default()).await;
    say(&agent, "a").await.unwrap();
    say(&agent, "b").await.unwrap();
    let memory = agent.ask(Say::Redo("b2".into()), ASK).await.unwrap();
    assert_eq!(memory[1..], ["User: a", "Assistant: echo: a", "User: b2", "Assistant: echo: b2"]);
    assert_eq!(texts(&store.load("talk-1").await.unwrap()), ["a", "echo: a", "b2", "echo: b2"]);
    agent.ask(Say::Panic, ASK).await.unwrap_err();
    let memory = say(&agent, "c").await.unwrap();
    assert_eq!(memory[3..], ["User: b2", "Assistant: echo: b2", "User: c", "Assistant: echo: c"]);
    agent.stop().await;

    let registry = ServiceRegistry::start().await.unwrap();
    let bad = AgentSpec::new("talker", Talker::default)
        .durable(Arc::new(LocalConversations::default()), "")
        .start(&registry)
        .await
        .unwrap_err();
    assert!(bad.to_string().contains("conversation id `` is not valid"), "{bad}");
}

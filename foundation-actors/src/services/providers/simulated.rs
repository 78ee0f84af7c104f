//! A language model that needs no network: deterministic for a seed, with configurable latency
//! and token counts, whose answers depend on the prompt.
//!
//! It reads prompts written as blocks of `Field: value` lines separated by `---` lines (the
//! format of dspex's adapter, and easy to write by hand):
//!
//! ```text
//! Answer questions about capitals.
//! ---
//! Question: What is the capital of France?
//! Answer: Paris
//! ---
//! Question: What is the capital of Italy?
//! Answer:
//! ```
//!
//! Blocks whose fields all have values are **demonstrations**; the last block with empty fields
//! is the **query**, and its empty fields are the ones to answer. The model answers like a
//! nearest-neighbour learner: it finds the demonstration whose inputs are most similar to the
//! query's (word and character-trigram overlap) and answers with that demonstration's outputs,
//! so good demonstrations (close to what is asked) give good answers, and poor ones give poor
//! answers. With no demonstration similar enough (below [`SimulatedConfig::min_similarity`]) it
//! answers zero-shot with a weak guess: when the prompt names the allowed values (`one of a, b,
//! c`), the one most similar to the question (the first on ties), else the question's last word.
//! A seeded
//! fraction of answers ([`SimulatedConfig::error_rate`]) take the second-nearest demonstration
//! instead, like a model that is sometimes wrong. It never sees a dataset: only the prompt.
//!
//! Prompts in any other form get a plain deterministic answer, padded to
//! [`SimulatedConfig::completion_tokens`] when set (for load tests).

use std::time::Duration;

use super::completion::{Completion, FinishReason, Usage};
use super::json_schema;
use super::message::{ChatMessage, Role, ToolCall};
use super::model::{BoxFuture, LanguageModel, LmError};
use super::request::{ChatRequest, ResponseFormat, ToolChoice, ToolSpec};
use super::stream::{CompletionStream, StreamEvent, ToolCallDelta};
use super::tokens;

/// Default mean latency of a simulated call.
pub const DEFAULT_LATENCY: Duration = Duration::from_millis(50);
/// Default share of answers taken from the second-nearest demonstration.
pub const DEFAULT_ERROR_RATE: f64 = 0.05;
/// Default similarity below which a demonstration is not used.
pub const DEFAULT_MIN_SIMILARITY: f64 = 0.05;
/// Similarity (of the last user message to a tool's name and description) above which the
/// simulated model calls the tool on its own (`tool_choice` `auto`).
pub const TOOL_SIMILARITY: f64 = 0.08;
/// Default words per streamed text piece.
pub const DEFAULT_STREAM_CHUNK_TOKENS: u64 = 1;

/// How the simulated model behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulatedConfig {
    /// The provider name errors and usage carry. Default `simulated`.
    pub provider: String,
    /// The model name it reports. Default `simulated`.
    pub model: String,
    /// Seed: the same seed and prompt always give the same answer and latency.
    pub seed: u64,
    /// Mean latency of a call. Default [`DEFAULT_LATENCY`] (50 ms).
    pub latency: Duration,
    /// Latency varies uniformly within ± this fraction of the mean, 0–1. Default 0.2.
    pub latency_jitter: f64,
    /// Share of answers taken from the second-nearest demonstration, 0–1. Default
    /// [`DEFAULT_ERROR_RATE`].
    pub error_rate: f64,
    /// Similarity (0–1) a demonstration needs to be used. Default [`DEFAULT_MIN_SIMILARITY`].
    pub min_similarity: f64,
    /// Completion tokens of a free-form answer (padded or cut to this, within `max_tokens`).
    /// Default: none (a short answer).
    pub completion_tokens: Option<u64>,
    /// Words per streamed text piece. Default [`DEFAULT_STREAM_CHUNK_TOKENS`].
    pub stream_chunk_tokens: u64,
    /// Time between streamed pieces (the first comes after the call's latency). Default: none.
    pub stream_interval: Duration,
}

impl Default for SimulatedConfig {
    fn default() -> Self {
        SimulatedConfig {
            provider: "simulated".into(),
            model: "simulated".into(),
            seed: 0,
            latency: DEFAULT_LATENCY,
            latency_jitter: 0.2,
            error_rate: DEFAULT_ERROR_RATE,
            min_similarity: DEFAULT_MIN_SIMILARITY,
            completion_tokens: None,
            stream_chunk_tokens: DEFAULT_STREAM_CHUNK_TOKENS,
            stream_interval: Duration::ZERO,
        }
    }
}

/// The simulated model.
#[derive(Debug, Clone, Default)]
pub struct SimulatedModel {
    config: SimulatedConfig,
}

impl SimulatedModel {
    /// A simulated model with this behaviour.
    pub fn new(config: SimulatedConfig) -> Self {
        SimulatedModel { config }
    }

    /// Its behaviour.
    pub fn config(&self) -> &SimulatedConfig {
        &self.config
    }

    /// The answer's text and token counts for a request, without waiting (see
    /// [`respond`](Self::respond)).
    pub fn answer(&self, request: &ChatRequest) -> (String, Usage) {
        let completion = self.respond(request);
        (completion.content, completion.usage)
    }

    /// The whole answer to a request, without waiting: what [`complete`](LanguageModel::complete)
    /// returns and the simulated provider server serves.
    ///
    /// - **Tools.** With tools offered and a `tool_choice` other than `none`, it calls one: the
    ///   one named, or the one whose name and description are most like the last user message
    ///   (for `auto`, only if similar enough, and not right after a tool's answer). Its arguments
    ///   satisfy the tool's parameter schema, filled from the message (`city: Paris`, or its
    ///   last capitalized word). A question of several clauses, each most like a different
    ///   tool, gets one call per clause at once (parallel calls). After tools answered, it
    ///   replies with what they said (a structured answer takes the fields of results that are
    ///   JSON objects by name).
    /// - **Structured output.** With a JSON-schema response format, the text is a JSON value
    ///   satisfying the schema, its properties taken from the structured answer's fields of the
    ///   same name (or guessed from the question); `json_object` gives `{"answer": …}`.
    /// - **Stop sequences** cut the text before the first one; `max_tokens` cuts it too
    ///   (`finish_reason` `length`).
    pub fn respond(&self, request: &ChatRequest) -> Completion {
        let text: String = request.messages.iter().map(ChatMessage::text).collect::<Vec<_>>().join("\n");
        let last_user = request
            .messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map(|m| m.text())
            .unwrap_or_default();
        let after_tools = request.messages.last().is_some_and(|m| m.role == Role::Tool);
        let mut completion = Completion::from_text(
            String::new(),
            Usage::default(),
            self.config.model.clone(),
            self.config.provider.clone(),
        );
        let mut calls = self.pick_parallel(request, &last_user, after_tools);
        if calls.is_empty()
            && let Some(tool) = self.pick_tool(request, &last_user, after_tools)
        {
            calls.push((tool, last_user.as_str()));
        }
        if !calls.is_empty() {
            for (tool, clause) in calls {
                let hints = json_schema::Hints { named: Vec::new(), text: clause.to_string() };
                let arguments = json_schema::generate(&tool.parameters, &hints);
                let mut h = Fnv::new(self.config.seed);
                h.write(text.as_bytes());
                h.write(tool.name.as_bytes());
                h.write(clause.as_bytes());
                completion.tool_calls.push(ToolCall {
                    id: format!("call_{:016x}", h.finish()),
                    name: tool.name.clone(),
                    arguments: arguments.to_string(),
                });
            }
            completion.finish_reason = FinishReason::ToolCalls;
        } else {
            let (content, fields) = if after_tools {
                let results: Vec<String> = request
                    .messages
                    .iter()
                    .rev()
                    .take_while(|m| m.role == Role::Tool)
                    .map(ChatMessage::text)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                // Fields of results that are JSON objects fill a structured answer by name.
                let fields = results
                    .iter()
                    .filter_map(|r| {
                        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(r).ok()
                    })
                    .flat_map(|object| object.into_iter())
                    .filter_map(|(k, v)| match v {
                        serde_json::Value::String(s) => Some((k, s)),
                        serde_json::Value::Number(_) | serde_json::Value::Bool(_) => Some((k, v.to_string())),
                        _ => None,
                    })
                    .collect();
                (format!("According to the tools: {}", results.join("; ")), fields)
            } else {
                match parse(&text) {
                    Some((demos, query)) => {
                        let fields = self.structured_fields(&demos, &query, &options(&text));
                        let content =
                            fields.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join("\n");
                        (content, fields)
                    }
                    None => {
                        // A free answer longer than `max_tokens` is cut to exactly that (`length`).
                        if self.config.completion_tokens.is_some_and(|t| t > request.max_tokens) {
                            completion.finish_reason = FinishReason::Length;
                        }
                        (self.free_answer(&text, request.max_tokens), Vec::new())
                    }
                }
            };
            completion.content = match &request.response_format {
                Some(ResponseFormat::JsonSchema { schema, .. }) => {
                    // After tools, the answer is filled from what they said.
                    let text = if after_tools { content.clone() } else { last_user.clone() };
                    let hints = json_schema::Hints { named: fields, text };
                    json_schema::generate(schema, &hints).to_string()
                }
                Some(ResponseFormat::JsonObject) => serde_json::json!({ "answer": content }).to_string(),
                _ => content,
            };
            if let Some(at) = request.stop.iter().filter_map(|s| completion.content.find(s.as_str())).min() {
                completion.content.truncate(at);
            }
        }
        let cut = tokens::truncate(&completion.content, request.max_tokens);
        if cut.len() < completion.content.len() {
            completion.content = cut.to_string();
            completion.finish_reason = FinishReason::Length;
        }
        let arguments: u64 =
            completion.tool_calls.iter().map(|c| tokens::count(&c.name) + tokens::count(&c.arguments)).sum();
        completion.usage = Usage {
            prompt_tokens: tokens::request_prompt(request),
            completion_tokens: tokens::count(&completion.content) + arguments,
            cached_prompt_tokens: 0,
        };
        completion
    }

    /// Several tools to call at once (`tool_choice` `auto`, not right after tools answered):
    /// when the question has several clauses (split at ` and `, `;`, `?`, `. `) and at least
    /// two different tools are each the one most like a clause (above [`TOOL_SIMILARITY`]),
    /// one call per such clause, its arguments filled from that clause. Otherwise none (and
    /// [`pick_tool`](Self::pick_tool) decides).
    fn pick_parallel<'r, 'q>(
        &self,
        request: &'r ChatRequest,
        last_user: &'q str,
        after_tools: bool,
    ) -> Vec<(&'r ToolSpec, &'q str)> {
        if request.tools.len() < 2
            || after_tools
            || !matches!(request.tool_choice, None | Some(ToolChoice::Auto))
        {
            return Vec::new();
        }
        let mut picks: Vec<(&ToolSpec, &str)> = Vec::new();
        for clause in last_user.split([';', '?']).flat_map(|c| c.split(" and ")).flat_map(|c| c.split(". ")) {
            let clause = clause.trim();
            if clause.is_empty() {
                continue;
            }
            let best = request
                .tools
                .iter()
                .map(|t| {
                    (similarity(clause, &format!("{} {}", t.name.replace(['_', '-'], " "), t.description)), t)
                })
                .max_by(|a, b| a.0.total_cmp(&b.0));
            if let Some((score, tool)) = best
                && score >= TOOL_SIMILARITY
            {
                picks.push((tool, clause));
            }
        }
        let mut distinct: Vec<&str> = picks.iter().map(|(t, _)| t.name.as_str()).collect();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() < 2 { Vec::new() } else { picks }
    }

    /// The tool to call, if any (see [`respond`](Self::respond)).
    fn pick_tool<'r>(
        &self,
        request: &'r ChatRequest,
        last_user: &str,
        after_tools: bool,
    ) -> Option<&'r ToolSpec> {
        if request.tools.is_empty() {
            return None;
        }
        let most_similar = || {
            request
                .tools
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    (
                        similarity(
                            last_user,
                            &format!("{} {}", t.name.replace(['_', '-'], " "), t.description),
                        ),
                        i,
                    )
                })
                .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)))
        };
        match request.tool_choice.as_ref().unwrap_or(&ToolChoice::Auto) {
            ToolChoice::None => None,
            ToolChoice::Tool(name) => request.tools.iter().find(|t| &t.name == name),
            ToolChoice::Required => most_similar().map(|(_, i)| &request.tools[i]),
            ToolChoice::Auto if after_tools => None,
            ToolChoice::Auto => {
                most_similar().filter(|(s, _)| *s >= TOOL_SIMILARITY).map(|(_, i)| &request.tools[i])
            }
        }
    }

    /// The latency of this request (seeded by the prompt).
    pub fn latency(&self, request: &ChatRequest) -> Duration {
        let mut h = Fnv::new(self.config.seed ^ 0x006c_6174_656e_6379);
        for m in &request.messages {
            for part in &m.content {
                if let super::message::ContentPart::Text(t) = part {
                    h.write(t.as_bytes());
                }
            }
        }
        let unit = (h.finish() >> 11) as f64 / (1u64 << 53) as f64;
        let factor = 1.0 + self.config.latency_jitter.clamp(0.0, 1.0) * (2.0 * unit - 1.0);
        self.config.latency.mul_f64(factor.max(0.0))
    }

    /// The query's output fields and their values.
    fn structured_fields(&self, demos: &[Block], query: &Block, options: &[String]) -> Vec<(String, String)> {
        let inputs: Vec<&(String, String)> = query.iter().filter(|(_, v)| !v.is_empty()).collect();
        let outputs: Vec<&str> =
            query.iter().filter(|(_, v)| v.is_empty()).map(|(k, _)| k.as_str()).collect();
        let query_text = join_inputs(&inputs, &inputs.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>());
        let mut ranked: Vec<(f64, usize)> = demos
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let keys: Vec<&str> = inputs.iter().map(|(k, _)| k.as_str()).collect();
                let fields: Vec<&(String, String)> = d.iter().collect();
                (similarity(&query_text, &join_inputs(&fields, &keys)), i)
            })
            .filter(|(s, _)| *s >= self.config.min_similarity)
            .collect();
        // Most similar first; ties go to the earlier demonstration.
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut h = Fnv::new(self.config.seed);
        h.write(query_text.as_bytes());
        let wrong = ((h.finish() >> 11) as f64 / (1u64 << 53) as f64) < self.config.error_rate;
        let chosen = match (ranked.first(), ranked.get(1)) {
            (Some(_), Some(second)) if wrong => Some(second.1),
            (Some(first), _) => Some(first.1),
            (None, _) => None,
        };
        outputs
            .iter()
            .map(|field| {
                let value = match chosen.and_then(|i| demos[i].iter().find(|(k, _)| k == field)) {
                    Some((_, v)) => v.clone(),
                    None => guess(&query_text, options),
                };
                (field.to_string(), value)
            })
            .collect()
    }

    fn free_answer(&self, text: &str, max_tokens: u64) -> String {
        let words: Vec<&str> = text.split_whitespace().take(8).collect();
        let mut answer = format!("Simulated answer (seed {}) to: {}", self.config.seed, words.join(" "));
        if let Some(target) = self.config.completion_tokens.map(|t| t.min(max_tokens)) {
            answer = tokens::truncate(&answer, target).to_string();
            // One token per filler word: exactly `target` in all.
            for _ in tokens::count(&answer)..target {
                answer.push_str(" more");
            }
        }
        answer
    }
}

impl LanguageModel for SimulatedModel {
    fn model(&self) -> &str {
        &self.config.model
    }

    fn complete<'a>(&'a self, request: &'a ChatRequest) -> BoxFuture<'a, Result<Completion, LmError>> {
        Box::pin(async move {
            request.check().map_err(|reason| LmError::InvalidRequest { reason })?;
            tokio::time::sleep(self.latency(request)).await;
            Ok(self.respond(request))
        })
    }

    fn stream<'a>(&'a self, request: &'a ChatRequest) -> BoxFuture<'a, Result<CompletionStream, LmError>> {
        Box::pin(async move {
            request.check().map_err(|reason| LmError::InvalidRequest { reason })?;
            let completion = self.respond(request);
            let pieces = pieces(&completion, self.config.stream_chunk_tokens);
            let first = self.latency(request);
            let interval = self.config.stream_interval;
            let provider = completion.provider.clone();
            let mut events: std::collections::VecDeque<StreamEvent> = pieces.into();
            events.push_back(StreamEvent::Done(completion));
            // The first piece after the call's latency (time to first token), the others
            // `stream_interval` apart.
            let stream =
                futures::stream::unfold((events, Some(first)), move |(mut events, wait)| async move {
                    let event = events.pop_front()?;
                    match wait {
                        Some(wait) if !wait.is_zero() => tokio::time::sleep(wait).await,
                        _ => {}
                    }
                    Some((Ok(event), (events, Some(interval))))
                });
            Ok(CompletionStream::new(provider, stream))
        })
    }
}

/// The pieces a whole answer is streamed in: its text `chunk_tokens` words at a time (spaces
/// kept, so the pieces join to the text), each tool call's name, then its arguments 16 bytes at
/// a time.
pub(crate) fn pieces(completion: &Completion, chunk_tokens: u64) -> Vec<StreamEvent> {
    let mut out = Vec::new();
    let per = chunk_tokens.max(1) as usize;
    let text = &completion.content;
    let mut start = 0;
    let mut words = 0;
    let mut in_word = false;
    for (i, c) in text.char_indices() {
        let space = c.is_whitespace();
        if !space && !in_word {
            if words == per {
                out.push(StreamEvent::Text(text[start..i].to_string()));
                start = i;
                words = 0;
            }
            words += 1;
        }
        in_word = !space;
    }
    if start < text.len() {
        out.push(StreamEvent::Text(text[start..].to_string()));
    }
    for (index, call) in completion.tool_calls.iter().enumerate() {
        out.push(StreamEvent::ToolCall(ToolCallDelta {
            index,
            id: Some(call.id.clone()),
            name: Some(call.name.clone()),
            arguments: String::new(),
        }));
        let bytes = call.arguments.as_bytes();
        let mut at = 0;
        while at < bytes.len() {
            let mut end = (at + 16).min(bytes.len());
            while !call.arguments.is_char_boundary(end) {
                end += 1;
            }
            out.push(StreamEvent::ToolCall(ToolCallDelta {
                index,
                id: None,
                name: None,
                arguments: call.arguments[at..end].to_string(),
            }));
            at = end;
        }
    }
    out
}

/// A block's fields in order: (name, value).
type Block = Vec<(String, String)>;

/// Demonstrations and the query, if the text is in the block format.
fn parse(text: &str) -> Option<(Vec<Block>, Block)> {
    let blocks: Vec<Block> = text.split("\n---").map(parse_block).filter(|b| !b.is_empty()).collect();
    let query_at = blocks.iter().rposition(|b| b.iter().any(|(_, v)| v.is_empty()))?;
    let demos = blocks[..query_at].iter().filter(|b| b.iter().all(|(_, v)| !v.is_empty())).cloned().collect();
    Some((demos, blocks[query_at].clone()))
}

fn parse_block(block: &str) -> Block {
    let mut fields: Block = Vec::new();
    for line in block.lines() {
        let field = line.split_once(':').filter(|(name, _)| {
            let name = name.trim();
            name.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                && name.len() <= 40
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '_')
        });
        match field {
            Some((name, value)) => fields.push((name.trim().to_string(), value.trim().to_string())),
            // A continuation of the previous field's value.
            None => {
                if let Some((_, value)) = fields.last_mut()
                    && !line.trim().is_empty()
                {
                    value.push(' ');
                    value.push_str(line.trim());
                }
            }
        }
    }
    fields
}

/// The values of the named fields, in that order.
fn join_inputs(fields: &[&(String, String)], keys: &[&str]) -> String {
    keys.iter()
        .filter_map(|k| fields.iter().find(|(name, _)| name == k).map(|(_, v)| v.as_str()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The allowed values a prompt names (`one of a, b or c`), if it does.
fn options(text: &str) -> Vec<String> {
    let Some(at) = text.find("one of ") else { return Vec::new() };
    let list = text[at + "one of ".len()..].lines().next().unwrap_or("");
    list.split(',')
        .flat_map(|part| part.split(" or "))
        .map(|o| o.trim().trim_end_matches('.').trim().to_string())
        .filter(|o| !o.is_empty())
        .collect()
}

/// A weak zero-shot guess: the allowed value most similar to the question, else its last word.
fn guess(question: &str, options: &[String]) -> String {
    let best = options
        .iter()
        .enumerate()
        .max_by(|(i, a), (j, b)| similarity(question, a).total_cmp(&similarity(question, b)).then(j.cmp(i)));
    if let Some((_, option)) = best {
        return option.clone();
    }
    question
        .split_whitespace()
        .last()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()).to_string())
        .unwrap_or_default()
}

/// Similarity of two texts in [0, 1]: the mean of word and character-trigram Jaccard indices.
pub fn similarity(a: &str, b: &str) -> f64 {
    fn words(t: &str) -> std::collections::BTreeSet<String> {
        t.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
    }
    fn trigrams(t: &str) -> std::collections::BTreeSet<[char; 3]> {
        let chars: Vec<char> = t.to_lowercase().chars().filter(|c| !c.is_whitespace()).collect();
        chars.windows(3).map(|w| [w[0], w[1], w[2]]).collect()
    }
    fn jaccard<T: Ord>(a: &std::collections::BTreeSet<T>, b: &std::collections::BTreeSet<T>) -> f64 {
        let union = a.union(b).count();
        if union == 0 { 0.0 } else { a.intersection(b).count() as f64 / union as f64 }
    }
    (jaccard(&words(a), &words(b)) + jaccard(&trigrams(a), &trigrams(b))) / 2.0
}

/// FNV-1a: the same hash in every process and version (std's hashers are seeded per process).
/// Not the workspace's stable hash ([`foundation_core::hash`]) on purpose: it decides the
/// simulated model's answers, latencies and errors, and the recorded demo scores and benchmark
/// figures (docs/BENCHMARKS.md) were measured with it; nothing it hashes is compared between
/// nodes of different versions.
struct Fnv(u64);

impl Fnv {
    fn new(seed: u64) -> Self {
        let mut h = Fnv(0xcbf2_9ce4_8422_2325);
        h.write(&seed.to_le_bytes());
        h
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        // A final mix, so that nearby inputs spread over the whole range.
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::ChatRequest;

    fn ask(model: &SimulatedModel, demos: &[(&str, &str)], question: &str) -> String {
        let mut prompt = String::from("Answer questions.\n");
        for (q, a) in demos {
            prompt.push_str(&format!("---\nQuestion: {q}\nAnswer: {a}\n"));
        }
        prompt.push_str(&format!("---\nQuestion: {question}\nAnswer:"));
        model.answer(&ChatRequest::prompt(prompt)).0
    }

    #[test]
    fn answers_by_the_nearest_demonstration_and_guesses_without_one() {
        let model = SimulatedModel::new(SimulatedConfig { error_rate: 0.0, ..Default::default() });
        let demos = [("What is the capital of France?", "Paris"), ("How many legs has a spider?", "eight")];
        assert_eq!(ask(&model, &demos, "What is the capital city of France?"), "Answer: Paris");
        assert_eq!(ask(&model, &demos, "How many legs does a spider have?"), "Answer: eight");
        // Nothing similar: a guess from the question, not an answer from elsewhere.
        assert_eq!(ask(&model, &demos, "Who wrote Hamlet?"), "Answer: Hamlet");
        assert_eq!(ask(&model, &[], "Who wrote Hamlet?"), "Answer: Hamlet");
        // With allowed values named, the zero-shot guess is one of them.
        let prompt = "Answer with one of person, place or number.\n---\nQuestion: How many people?\nAnswer:";
        assert_eq!(model.answer(&ChatRequest::prompt(prompt)).0, "Answer: person");
    }

    #[test]
    fn deterministic_for_a_seed_and_sometimes_wrong_as_configured() {
        let demos: Vec<(String, String)> =
            (0..20).map(|i| (format!("What is item number {i} called?"), format!("name{i}"))).collect();
        let demos: Vec<(&str, &str)> = demos.iter().map(|(q, a)| (q.as_str(), a.as_str())).collect();
        let questions: Vec<String> = (0..20).map(|i| format!("What is item number {i} called?")).collect();
        let score = |model: &SimulatedModel| {
            questions
                .iter()
                .enumerate()
                .filter(|(i, q)| ask(model, &demos, q) == format!("Answer: name{i}"))
                .count()
        };
        let exact = SimulatedModel::new(SimulatedConfig { error_rate: 0.0, ..Default::default() });
        let noisy = SimulatedModel::new(SimulatedConfig { error_rate: 0.5, seed: 7, ..Default::default() });
        assert_eq!(score(&exact), 20);
        let noisy_score = score(&noisy);
        assert!((3..=17).contains(&noisy_score), "{noisy_score}");
        assert_eq!(score(&noisy), noisy_score);
        let request = ChatRequest::prompt("hello there");
        assert_eq!(noisy.latency(&request), noisy.latency(&request));
    }

    #[test]
    fn free_form_answers_have_the_configured_length_within_max_tokens() {
        let model =
            SimulatedModel::new(SimulatedConfig { completion_tokens: Some(40), ..Default::default() });
        let (_, usage) = model.answer(&ChatRequest::prompt("Tell me a story"));
        assert_eq!(usage.completion_tokens, 40);
        let (_, usage) = model.answer(&ChatRequest::prompt("Tell me a story").max_tokens(10));
        assert_eq!(usage.completion_tokens, 10);
        assert_eq!(usage.prompt_tokens, tokens::request_prompt(&ChatRequest::prompt("Tell me a story")));
    }
}

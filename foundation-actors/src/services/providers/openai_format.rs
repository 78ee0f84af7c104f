//! The chat-completions API's JSON, both ways: the request a client sends and a server reads,
//! the response and the streamed chunks a server sends and a client reads. The client
//! ([`OpenAiClient`](super::OpenAiClient)) and the simulated server use this one module, so
//! what one writes the other reads (property-tested: a request survives the round trip).
//!
//! Untrusted input rules: parsing never panics whatever the bytes (property-tested), sizes are
//! bounded by the callers (the response body, the stream) and here (tool calls), and an answer
//! that is not a chat completion is an `Err` saying what is wrong, never a partial answer.

use serde::Deserialize;
use serde_json::{Value, json};

use super::completion::{Completion, FinishReason, Usage};
use super::message::{ChatMessage, ContentPart, Role, ToolCall};
use super::request::{ChatRequest, ResponseFormat, ToolChoice, ToolSpec};
use super::stream::{MAX_TOOL_CALLS, StreamEvent, ToolCallDelta};

/// The JSON a client sends for `request` to `model` (`stream`: as server-sent events, with the
/// usage at the end).
///
/// The completion budget goes as `max_tokens`, which compatible servers (vLLM, Ollama, llama.cpp)
/// read; with `completion_field` it goes as `max_completion_tokens`, which OpenAI's own API
/// wants (its reasoning models refuse `max_tokens`).
#[cfg(test)]
pub(crate) fn request_body(model: &str, request: &ChatRequest, stream: bool) -> Value {
    request_body_with(model, request, stream, false)
}

/// [`request_body`], naming the budget `max_completion_tokens` if `completion_field`.
pub(crate) fn request_body_with(
    model: &str,
    request: &ChatRequest,
    stream: bool,
    completion_field: bool,
) -> Value {
    let messages: Vec<Value> = request.messages.iter().map(message_json).collect();
    let mut object = serde_json::Map::new();
    object.insert("model".into(), json!(model));
    object.insert("messages".into(), json!(messages));
    let budget = if completion_field { "max_completion_tokens" } else { "max_tokens" };
    object.insert(budget.into(), json!(request.max_tokens));
    object.insert("temperature".into(), json!(request.temperature));
    if !request.tools.is_empty() {
        let tools: Vec<Value> = request
            .tools
            .iter()
            .map(|t| {
                let mut function =
                    json!({"name": t.name, "description": t.description, "parameters": t.parameters});
                if t.strict {
                    function["strict"] = Value::Bool(true);
                }
                json!({"type": "function", "function": function})
            })
            .collect();
        object.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = request.tool_choice.as_ref().filter(|_| !request.tools.is_empty()) {
        let choice = match choice {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::None => json!("none"),
            ToolChoice::Required => json!("required"),
            ToolChoice::Tool(name) => json!({"type": "function", "function": {"name": name}}),
        };
        object.insert("tool_choice".into(), choice);
    }
    if let Some(format) = &request.response_format {
        let format = match format {
            ResponseFormat::Text => json!({"type": "text"}),
            ResponseFormat::JsonObject => json!({"type": "json_object"}),
            ResponseFormat::JsonSchema { name, schema, strict } => {
                json!({"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": strict}})
            }
        };
        object.insert("response_format".into(), format);
    }
    if !request.stop.is_empty() {
        object.insert("stop".into(), json!(request.stop));
    }
    if let Some(seed) = request.seed {
        object.insert("seed".into(), json!(seed));
    }
    if stream {
        object.insert("stream".into(), Value::Bool(true));
        object.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Value::Object(object)
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}

fn message_json(message: &ChatMessage) -> Value {
    let content = if message.is_plain_text() || message.role != Role::User {
        // Only user messages may have image parts; other roles send their text.
        if message.content.is_empty() && !message.tool_calls.is_empty() {
            Value::Null
        } else {
            Value::String(message.text())
        }
    } else {
        Value::Array(
            message
                .content
                .iter()
                .map(|part| match part {
                    ContentPart::Text(text) => json!({"type": "text", "text": text}),
                    ContentPart::Image { url, detail: None } => {
                        json!({"type": "image_url", "image_url": {"url": url}})
                    }
                    ContentPart::Image { url, detail: Some(d) } => {
                        json!({"type": "image_url", "image_url": {"url": url, "detail": d}})
                    }
                })
                .collect(),
        )
    };
    let mut value = json!({"role": role_name(message.role), "content": content});
    if !message.tool_calls.is_empty() {
        value["tool_calls"] = Value::Array(
            message
                .tool_calls
                .iter()
                .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
                .collect(),
        );
    }
    if let Some(id) = &message.tool_call_id {
        value["tool_call_id"] = json!(id);
    }
    value
}

// ---- The response, as a client reads it. ----

#[derive(Deserialize)]
struct WireResponse {
    model: Option<String>,
    choices: Vec<WireChoice>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireChoice {
    message: WireMessage,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireMessage {
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
    /// A model's refusal of a structured-output request (OpenAI).
    #[serde(default)]
    refusal: Option<String>,
}

#[derive(Deserialize)]
struct WireToolCall {
    #[serde(default)]
    index: Option<usize>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<WireFunction>,
}

#[derive(Deserialize)]
struct WireFunction {
    #[serde(default)]
    name: Option<String>,
    /// JSON text as the API says; some servers send an object.
    #[serde(default)]
    arguments: Option<Value>,
}

#[derive(Deserialize, Clone, Copy)]
struct WireUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<WirePromptDetails>,
}

#[derive(Deserialize, Clone, Copy)]
struct WirePromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
        Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            cached_prompt_tokens: u.prompt_tokens_details.and_then(|d| d.cached_tokens).unwrap_or(0),
        }
    }
}

fn arguments_text(arguments: Option<Value>) -> String {
    match arguments {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
    }
}

/// The API's `finish_reason`.
pub(crate) fn finish_reason(reason: Option<&str>) -> FinishReason {
    match reason {
        None | Some("stop") => FinishReason::Stop,
        Some("length") => FinishReason::Length,
        Some("tool_calls" | "function_call") => FinishReason::ToolCalls,
        Some("content_filter") => FinishReason::ContentFilter,
        Some(other) => FinishReason::Other(other.chars().take(64).collect()),
    }
}

fn finish_reason_name(reason: &FinishReason) -> &str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::ContentFilter => "content_filter",
        FinishReason::Other(other) => other,
    }
}

/// A whole (not streamed) response: the answer, with `model` when the response names none.
pub(crate) fn parse_response(bytes: &[u8], model: &str, provider: &str) -> Result<Completion, String> {
    let parsed: WireResponse = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let choice = parsed.choices.into_iter().next().ok_or("no choices in the response")?;
    let usage =
        parsed.usage.ok_or("no usage in the response (token counts are needed for limits and cost)")?;
    let calls = choice.message.tool_calls.unwrap_or_default();
    if calls.len() > MAX_TOOL_CALLS {
        return Err(format!("{} tool calls; at most {MAX_TOOL_CALLS}", calls.len()));
    }
    let mut tool_calls = Vec::with_capacity(calls.len());
    for (i, call) in calls.into_iter().enumerate() {
        let function = call.function.ok_or_else(|| format!("tool call {i} has no function"))?;
        let name =
            function.name.filter(|n| !n.is_empty()).ok_or_else(|| format!("tool call {i} has no name"))?;
        tool_calls.push(ToolCall {
            id: call.id.unwrap_or_else(|| format!("call_{i}")),
            name,
            arguments: arguments_text(function.arguments),
        });
    }
    let mut finish = finish_reason(choice.finish_reason.as_deref());
    let content = match (choice.message.content, choice.message.refusal) {
        (Some(c), _) => c,
        (None, Some(refusal)) => {
            finish = FinishReason::ContentFilter;
            refusal
        }
        (None, None) => String::new(),
    };
    Ok(Completion {
        content,
        tool_calls,
        finish_reason: finish,
        usage: usage.into(),
        model: parsed.model.unwrap_or_else(|| model.to_string()),
        provider: provider.to_string(),
        rate_headers: Vec::new(),
        cached: false,
    })
}

// ---- Streamed chunks, as a client reads them. ----

#[derive(Deserialize)]
struct WireChunk<'a> {
    #[serde(default, borrow)]
    object: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    message: Option<Value>,
    #[serde(default, borrow)]
    model: Option<std::borrow::Cow<'a, str>>,
    /// `null` in some servers' error chunks.
    #[serde(default, deserialize_with = "null_as_empty")]
    choices: Vec<WireChunkChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireChunkChoice {
    #[serde(default)]
    delta: Option<WireDelta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireDelta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
}

/// `null` read as an empty list.
fn null_as_empty<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// What the stream's chunks said so far, beyond the pieces: the model, why it finished, usage.
#[derive(Debug, Default)]
pub(crate) struct ChunkState {
    pub(crate) model: Option<String>,
    pub(crate) finish_reason: Option<FinishReason>,
    pub(crate) usage: Option<Usage>,
    /// `data: [DONE]` was read.
    pub(crate) done: bool,
    /// The model refused (its refusal is the text).
    refused: bool,
    /// The last tool call's index and id (for servers that leave the index out).
    last_call: Option<(usize, String)>,
}

/// Reads one streamed event's data: its pieces go to `out`, the rest to `state`.
pub(crate) fn parse_chunk(
    data: &str,
    state: &mut ChunkState,
    out: &mut Vec<StreamEvent>,
) -> Result<(), String> {
    if data.trim() == "[DONE]" {
        state.done = true;
        return Ok(());
    }
    let chunk: WireChunk = serde_json::from_str(data).map_err(|e| format!("a malformed chunk: {e}"))?;
    // An error sent in the stream (OpenAI: `{"error": …}`; vLLM: `"object": "error"`) ends it.
    if chunk.error.as_ref().is_some_and(|e| !e.is_null()) || chunk.object.as_deref() == Some("error") {
        let message = chunk
            .error
            .as_ref()
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str)
            .or(chunk.message.as_ref().and_then(Value::as_str));
        let message: String = message.unwrap_or("(no message)").chars().take(300).collect();
        return Err(format!("the provider sent an error in the stream: {message}"));
    }
    if state.model.is_none()
        && let Some(model) = chunk.model.filter(|m| !m.is_empty())
    {
        state.model = Some(model.into_owned());
    }
    if let Some(usage) = chunk.usage {
        state.usage = Some(usage.into());
    }
    for choice in chunk.choices {
        if let Some(delta) = choice.delta {
            if let Some(refusal) = delta.refusal.filter(|t| !t.is_empty()) {
                // A refusal is the answer's text, and the answer ends as filtered.
                state.refused = true;
                out.push(StreamEvent::Text(refusal));
            }
            if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                out.push(StreamEvent::Text(text));
            }
            for call in delta.tool_calls.unwrap_or_default() {
                let (name, arguments) = match call.function {
                    Some(f) => (f.name, arguments_text(f.arguments)),
                    None => (None, String::new()),
                };
                // Without an index (some servers), a new id starts a new call; else it continues.
                let index = match (call.index, &call.id) {
                    (Some(i), _) => i,
                    (None, Some(id)) if state.last_call.as_ref().is_none_or(|(_, last)| last != id) => {
                        state.last_call.as_ref().map_or(0, |(i, _)| i + 1)
                    }
                    (None, _) => state.last_call.as_ref().map_or(0, |(i, _)| *i),
                };
                if let Some(id) = &call.id {
                    state.last_call = Some((index, id.clone()));
                } else if state.last_call.as_ref().is_none_or(|(i, _)| *i != index) {
                    state.last_call = Some((index, String::new()));
                }
                out.push(StreamEvent::ToolCall(ToolCallDelta { index, id: call.id, name, arguments }));
            }
        }
        if let Some(reason) = choice.finish_reason {
            state.finish_reason =
                Some(if state.refused { FinishReason::ContentFilter } else { finish_reason(Some(&reason)) });
        }
    }
    Ok(())
}

// ---- The request, as a server reads it. ----

#[derive(Deserialize)]
struct ServerRequest {
    #[serde(default)]
    model: Option<String>,
    messages: Vec<ServerMessage>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    tools: Option<Vec<ServerTool>>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    response_format: Option<Value>,
    #[serde(default)]
    stop: Option<Value>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<ServerStreamOptions>,
}

#[derive(Deserialize)]
struct ServerStreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

#[derive(Deserialize)]
struct ServerMessage {
    role: String,
    #[serde(default)]
    content: Option<Value>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
    #[serde(default)]
    tool_call_id: Option<String>,
}

#[derive(Deserialize)]
struct ServerTool {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    function: ServerFunction,
}

#[derive(Deserialize)]
struct ServerFunction {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
    #[serde(default)]
    strict: Option<bool>,
}

/// A request as a server reads it: the request, the model it names, whether to stream and
/// whether to end the stream with the usage.
pub(crate) struct ReadRequest {
    pub(crate) request: ChatRequest,
    pub(crate) model: Option<String>,
    pub(crate) stream: bool,
    pub(crate) include_usage: bool,
}

/// Reads a request's JSON; `Err` says what is wrong (a 400's message).
pub(crate) fn parse_request(bytes: &[u8]) -> Result<ReadRequest, String> {
    let wire: ServerRequest = serde_json::from_slice(bytes).map_err(|e| format!("invalid request: {e}"))?;
    let mut messages = Vec::with_capacity(wire.messages.len());
    for (i, m) in wire.messages.into_iter().enumerate() {
        let role = match m.role.as_str() {
            "system" | "developer" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" => Role::Tool,
            other => return Err(format!("messages[{i}]: unknown role {other:?}")),
        };
        let content = match m.content {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => vec![ContentPart::Text(s)],
            Some(Value::Array(parts)) => {
                let mut out = Vec::with_capacity(parts.len());
                for part in parts {
                    out.push(content_part(&part).map_err(|e| format!("messages[{i}]: {e}"))?);
                }
                out
            }
            Some(_) => return Err(format!("messages[{i}]: content must be a string or an array of parts")),
        };
        let mut tool_calls = Vec::new();
        for (j, call) in m.tool_calls.unwrap_or_default().into_iter().enumerate() {
            let function =
                call.function.ok_or_else(|| format!("messages[{i}].tool_calls[{j}]: no function"))?;
            tool_calls.push(ToolCall {
                id: call.id.unwrap_or_default(),
                name: function.name.unwrap_or_default(),
                arguments: arguments_text(function.arguments),
            });
        }
        messages.push(ChatMessage { role, content, tool_calls, tool_call_id: m.tool_call_id });
    }
    let mut request = ChatRequest::new(messages);
    if let Some(max) = wire.max_completion_tokens.or(wire.max_tokens) {
        request.max_tokens = max;
    }
    request.temperature = wire.temperature.unwrap_or(1.0);
    for tool in wire.tools.unwrap_or_default() {
        if tool.kind.as_deref().is_some_and(|k| k != "function") {
            return Err(format!("tool `{}`: only function tools are served", tool.function.name));
        }
        request.tools.push(ToolSpec {
            name: tool.function.name,
            description: tool.function.description.unwrap_or_default(),
            parameters: tool
                .function
                .parameters
                .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            strict: tool.function.strict.unwrap_or(false),
        });
    }
    request.tool_choice = match wire.tool_choice {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            other => return Err(format!("tool_choice {other:?} is not auto, none or required")),
        }),
        Some(v) => match v.pointer("/function/name").and_then(Value::as_str) {
            Some(name) => Some(ToolChoice::Tool(name.to_string())),
            None => return Err("tool_choice: an object must name a function".into()),
        },
    };
    request.response_format = match wire.response_format {
        None | Some(Value::Null) => None,
        Some(v) => Some(match v.get("type").and_then(Value::as_str) {
            Some("text") => ResponseFormat::Text,
            Some("json_object") => ResponseFormat::JsonObject,
            Some("json_schema") => {
                let spec = v.get("json_schema").ok_or("response_format: json_schema is missing")?;
                ResponseFormat::JsonSchema {
                    name: spec.get("name").and_then(Value::as_str).unwrap_or("response").to_string(),
                    schema: spec.get("schema").cloned().unwrap_or_else(|| json!({})),
                    strict: spec.get("strict").and_then(Value::as_bool).unwrap_or(false),
                }
            }
            _ => return Err("response_format: type must be text, json_object or json_schema".into()),
        }),
    };
    request.stop = match wire.stop {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|s| match s {
                Value::String(s) => Ok(s),
                _ => Err("stop: sequences must be strings".to_string()),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("stop must be a string or an array of strings".into()),
    };
    request.seed = wire.seed;
    request.check()?;
    let stream = wire.stream.unwrap_or(false);
    Ok(ReadRequest {
        request,
        model: wire.model,
        stream,
        include_usage: wire.stream_options.and_then(|o| o.include_usage).unwrap_or(false),
    })
}

fn content_part(part: &Value) -> Result<ContentPart, String> {
    match part.get("type").and_then(Value::as_str) {
        Some("text") => {
            Ok(ContentPart::Text(part.get("text").and_then(Value::as_str).unwrap_or("").to_string()))
        }
        Some("image_url") => {
            let image = part.get("image_url").ok_or("an image_url part without image_url")?;
            let url = match image {
                Value::String(s) => s.clone(),
                _ => image.get("url").and_then(Value::as_str).ok_or("an image_url without url")?.to_string(),
            };
            let detail = image.get("detail").and_then(Value::as_str).map(str::to_string);
            Ok(ContentPart::Image { url, detail })
        }
        Some(other) => Err(format!("content parts of type {other:?} are not served")),
        None => Err("a content part without a type".into()),
    }
}

// ---- The response and chunks, as a server writes them. ----

fn usage_json(usage: &Usage) -> Value {
    json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total(),
        "prompt_tokens_details": {"cached_tokens": usage.cached_prompt_tokens},
    })
}

fn tool_calls_json(calls: &[ToolCall]) -> Value {
    Value::Array(
        calls
            .iter()
            .enumerate()
            .map(|(i, c)| {
                json!({"index": i, "id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}})
            })
            .collect(),
    )
}

/// A whole response.
pub(crate) fn response_json(id: &str, model: &str, created: u64, completion: &Completion) -> Value {
    let mut message = json!({
        "role": "assistant",
        "content": if completion.content.is_empty() && !completion.tool_calls.is_empty() { Value::Null } else { json!(completion.content) },
        "refusal": null,
    });
    if !completion.tool_calls.is_empty() {
        message["tool_calls"] = tool_calls_json(&completion.tool_calls);
    }
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": "fp_simulated",
        "choices": [{"index": 0, "message": message, "logprobs": null,
                     "finish_reason": finish_reason_name(&completion.finish_reason)}],
        "usage": usage_json(&completion.usage),
    })
}

/// One streamed chunk with this delta (`finish`: the last chunk of the choice).
pub(crate) fn chunk_json(
    id: &str,
    model: &str,
    created: u64,
    delta: Value,
    finish: Option<&FinishReason>,
) -> Value {
    json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": "fp_simulated",
        "choices": [{"index": 0, "delta": delta, "logprobs": null,
                     "finish_reason": finish.map(finish_reason_name)}],
    })
}

/// The delta of a text piece.
pub(crate) fn text_delta(text: &str, first: bool) -> Value {
    if first { json!({"role": "assistant", "content": text}) } else { json!({"content": text}) }
}

/// The delta of a tool-call piece.
pub(crate) fn tool_call_delta(delta: &ToolCallDelta) -> Value {
    let mut call = json!({"index": delta.index, "function": {"arguments": delta.arguments}});
    if let Some(id) = &delta.id {
        call["id"] = json!(id);
        call["type"] = json!("function");
    }
    if let Some(name) = &delta.name {
        call["function"]["name"] = json!(name);
    }
    json!({"tool_calls": [call]})
}

/// The last chunk of a stream that asked for usage: no choices, the usage.
pub(crate) fn usage_chunk_json(id: &str, model: &str, created: u64, usage: &Usage) -> Value {
    json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
           "system_fingerprint": "fp_simulated", "choices": [], "usage": usage_json(usage)})
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_request() -> impl Strategy<Value = ChatRequest> {
        let text = "[a-zA-Z0-9 ?.,\"{}:]{0,20}";
        let part = prop_oneof![
            text.prop_map(ContentPart::Text),
            (
                "https://x/[a-z]{1,6}\\.png",
                proptest::option::of(prop_oneof![Just("low".to_string()), Just("high".to_string())])
            )
                .prop_map(|(url, detail)| ContentPart::Image { url, detail }),
        ];
        let message = prop_oneof![
            text.prop_map(ChatMessage::system),
            proptest::collection::vec(part, 1..3).prop_map(ChatMessage::user_parts),
            text.prop_map(ChatMessage::assistant),
            ("[a-z]{1,8}", "[a-z_]{1,8}", "\\{\"a\":[0-9]{1,3}\\}").prop_map(|(id, name, args)| {
                ChatMessage::assistant_tool_calls("", vec![ToolCall { id, name, arguments: args }])
            }),
            ("[a-z]{1,8}", text).prop_map(|(id, t)| ChatMessage::tool_result(id, t)),
        ];
        (
            proptest::collection::vec(message, 1..5),
            1u64..4096,
            proptest::collection::vec("[a-z]{1,5}", 0..3),
            proptest::option::of(any::<u64>()),
            any::<bool>(),
            0usize..4,
        )
            .prop_map(|(messages, max_tokens, stop, seed, tools, choice)| {
                let mut r = ChatRequest::new(messages).max_tokens(max_tokens);
                r.temperature = 0.5;
                r.stop = stop;
                r.seed = seed;
                if tools {
                    r.tools.push(ToolSpec::new(
                        "get_weather",
                        "the weather",
                        json!({"type": "object", "properties": {"city": {"type": "string"}}}),
                    ));
                    r.tool_choice = [
                        None,
                        Some(ToolChoice::Auto),
                        Some(ToolChoice::Required),
                        Some(ToolChoice::Tool("get_weather".into())),
                    ][choice]
                        .clone();
                    r.response_format =
                        Some(ResponseFormat::json_schema("answer", json!({"type": "object"})));
                }
                r
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

        /// What the client writes, the server reads back as the same request.
        #[test]
        fn a_request_survives_the_round_trip(request in arb_request()) {
            let bytes = serde_json::to_vec(&request_body("m", &request, true)).unwrap();
            let read = parse_request(&bytes).unwrap();
            prop_assert!(read.stream && read.include_usage);
            prop_assert_eq!(read.model.as_deref(), Some("m"));
            prop_assert_eq!(read.request, request);
        }

        /// Any bytes as a response, a chunk or a request: an answer or an error, no panic.
        #[test]
        fn any_bytes_parse_or_fail_cleanly(
            bytes in prop_oneof![
                any::<Vec<u8>>(),
                "[\\{\\}\\[\\]\":,a-z0-9_ -]{0,80}".prop_map(String::into_bytes),
                "\\{\"choices\":\\[\\{\"(message|delta)\":\\{\"(content|tool_calls)\":(null|\"[a-z]{0,4}\"|\\[\\{\"index\":[0-9]{1,12}\\}\\])\\}\\}\\],\"usage\":\\{\"prompt_tokens\":[0-9]{1,3},\"completion_tokens\":[0-9]{1,3}\\}\\}".prop_map(String::into_bytes),
            ],
        ) {
            let _ = parse_response(&bytes, "m", "p");
            let mut state = ChunkState::default();
            let mut out = Vec::new();
            let _ = parse_chunk(&String::from_utf8_lossy(&bytes), &mut state, &mut out);
            let _ = parse_request(&bytes);
        }
    }

    #[test]
    fn errors_in_a_stream_and_servers_that_repeat_or_omit_call_fields() {
        let mut state = ChunkState::default();
        let mut out = Vec::new();
        let err = parse_chunk(r#"{"error":{"message":"overloaded"}}"#, &mut state, &mut out).unwrap_err();
        assert!(err.contains("overloaded"), "{err}");
        assert!(parse_chunk(r#"{"object":"error","message":"boom"}"#, &mut state, &mut out).is_err());
        // No index, the id and name repeated: one call per id.
        let mut state = ChunkState::default();
        let mut assembler = crate::providers::StreamAssembler::new();
        for data in [
            r#"{"choices":[{"delta":{"tool_calls":[{"id":"a","function":{"name":"f","arguments":"{\"x\":"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"id":"a","function":{"name":"f","arguments":"1}"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"id":"b","function":{"name":"g","arguments":"{}"}}]}}]}"#,
            r#"{"choices":[{"delta":{"refusal":"no"},"finish_reason":"stop"}]}"#,
        ] {
            let mut out = Vec::new();
            parse_chunk(data, &mut state, &mut out).unwrap();
            for piece in &out {
                assembler.push(piece).unwrap();
            }
        }
        let done = assembler
            .finish(
                state.finish_reason.clone().unwrap(),
                Usage::default(),
                "m".into(),
                "p".into(),
                Vec::new(),
            )
            .unwrap();
        let calls: Vec<_> =
            done.tool_calls.iter().map(|c| (c.id.as_str(), c.name.as_str(), c.arguments.as_str())).collect();
        assert_eq!(calls, [("a", "f", "{\"x\":1}"), ("b", "g", "{}")]);
        assert_eq!(done.finish_reason, FinishReason::ContentFilter);
    }

    #[test]
    fn a_response_with_tool_calls_cached_tokens_and_a_refusal() {
        let body = br#"{"model":"gpt-x","choices":[{"message":{"content":null,"tool_calls":[
            {"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
            "finish_reason":"tool_calls"}],
            "usage":{"prompt_tokens":30,"completion_tokens":7,"prompt_tokens_details":{"cached_tokens":12}}}"#;
        let c = parse_response(body, "m", "p").unwrap();
        assert_eq!(c.finish_reason, FinishReason::ToolCalls);
        assert_eq!(c.tool_calls[0].arguments_json().unwrap()["city"], "Paris");
        assert_eq!(c.usage.cached_prompt_tokens, 12);
        let refused = br#"{"choices":[{"message":{"content":null,"refusal":"I can't"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#;
        let c = parse_response(refused, "m", "p").unwrap();
        assert_eq!((c.content.as_str(), c.finish_reason), ("I can't", FinishReason::ContentFilter));
        let unnamed = br#"{"choices":[{"message":{"tool_calls":[{"id":"x","function":{"arguments":"{}"}}]}}],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#;
        assert!(parse_response(unnamed, "m", "p").unwrap_err().contains("no name"));
    }
}

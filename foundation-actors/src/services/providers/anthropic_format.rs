//! Anthropic's Messages API JSON, both ways: the request the client sends and the simulated
//! server reads, the response and the streamed events the server sends and the client reads.
//!
//! How Foundation's messages map onto it: system messages become the `system` text; a tool's
//! answers (and a user message right after them) become one `user` message of `tool_result`
//! blocks, as the API requires; an assistant's tool calls are `tool_use` blocks with their
//! arguments as an object. Anthropic has no response format: a JSON-schema answer is asked for
//! as a forced call of a tool named after the schema, whose input is the answer (the client
//! turns it back into text, so callers see a JSON answer either way); a `json_object` answer is
//! asked for in the system text. `seed` has no equivalent and is not sent.
//!
//! Untrusted input rules as in [`openai_format`](super::openai_format): no panics whatever the
//! bytes (property-tested), tool calls bounded, malformed answers are errors.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::completion::{Completion, FinishReason, Usage};
use super::message::{ChatMessage, ContentPart, Role, ToolCall};
use super::request::{ChatRequest, ResponseFormat, ToolChoice, ToolSpec};
use super::stream::{MAX_TOOL_CALLS, StreamEvent, ToolCallDelta};

/// The API version the client speaks (`anthropic-version`).
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
/// What a `json_object` answer is asked for with.
const JSON_OBJECT_INSTRUCTION: &str = "Answer with a single JSON object and nothing else.";

/// The name of the tool a JSON-schema answer is asked for with, if the request has one.
pub(crate) fn format_tool(request: &ChatRequest) -> Option<&str> {
    match &request.response_format {
        Some(ResponseFormat::JsonSchema { name, .. }) => Some(name),
        _ => None,
    }
}

/// The JSON the client sends for `request` to `model`. `Err` if the request cannot be said in
/// this API (a response schema named like an offered tool).
pub(crate) fn request_body(model: &str, request: &ChatRequest, stream: bool) -> Result<Value, String> {
    let mut system: Vec<String> =
        request.messages.iter().filter(|m| m.role == Role::System).map(ChatMessage::text).collect();
    if request.response_format == Some(ResponseFormat::JsonObject) {
        system.push(JSON_OBJECT_INSTRUCTION.to_string());
    }
    let mut messages: Vec<Value> = Vec::new();
    for message in request.messages.iter().filter(|m| m.role != Role::System) {
        let (role, blocks) = match message.role {
            Role::Assistant => {
                if message.content.iter().any(|p| matches!(p, ContentPart::Image { .. })) {
                    return Err(
                        "an assistant message with an image: Anthropic takes images from the user only"
                            .into(),
                    );
                }
                let mut blocks = content_blocks(&message.content);
                for call in &message.tool_calls {
                    let input =
                        call.arguments_json().ok().filter(Value::is_object).unwrap_or_else(|| json!({}));
                    blocks
                        .push(json!({"type": "tool_use", "id": call.id, "name": call.name, "input": input}));
                }
                ("assistant", blocks)
            }
            Role::Tool => (
                "user",
                vec![
                    json!({"type": "tool_result", "tool_use_id": message.tool_call_id.clone().unwrap_or_default(),
                            "content": message.text()}),
                ],
            ),
            Role::User | Role::System => ("user", content_blocks(&message.content)),
        };
        // A message with nothing to say (an empty answer) is left out: Anthropic refuses empty
        // content. Consecutive messages of one role are one message (tool results must be
        // together).
        if blocks.is_empty() {
            continue;
        }
        match messages.last_mut() {
            Some(last) if last["role"] == role => {
                if let Some(content) = last["content"].as_array_mut() {
                    content.extend(blocks);
                }
            }
            _ => messages.push(json!({"role": role, "content": blocks})),
        }
    }
    let mut object = serde_json::Map::new();
    object.insert("model".into(), json!(model));
    object.insert("max_tokens".into(), json!(request.max_tokens));
    object.insert("temperature".into(), json!(request.temperature));
    object.insert("messages".into(), json!(messages));
    if !system.is_empty() {
        object.insert("system".into(), json!(system.join("\n\n")));
    }
    let mut tools: Vec<Value> = request
        .tools
        .iter()
        .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}))
        .collect();
    let mut choice = request.tool_choice.as_ref().filter(|_| !request.tools.is_empty()).map(|c| match c {
        ToolChoice::Auto => json!({"type": "auto"}),
        ToolChoice::None => json!({"type": "none"}),
        ToolChoice::Required => json!({"type": "any"}),
        ToolChoice::Tool(name) => json!({"type": "tool", "name": name}),
    });
    if let Some(ResponseFormat::JsonSchema { name, schema, .. }) = &request.response_format {
        if request.tools.iter().any(|t| &t.name == name) {
            return Err(format!("the response schema `{name}` is named like an offered tool"));
        }
        tools.push(
            json!({"name": name, "description": "Answer with this structure.", "input_schema": schema}),
        );
        // The answer is a call of the schema's tool. With other tools offered, the caller's
        // choice among them stands, with the schema's tool as one more (`auto` becomes `any`:
        // some tool, possibly the answer, must be called); without, or with `none`, the schema's
        // tool is forced.
        choice = Some(match &request.tool_choice {
            _ if request.tools.is_empty() => json!({"type": "tool", "name": name}),
            Some(ToolChoice::None) => json!({"type": "tool", "name": name}),
            Some(ToolChoice::Tool(tool)) => json!({"type": "tool", "name": tool}),
            Some(ToolChoice::Auto | ToolChoice::Required) | None => json!({"type": "any"}),
        });
    }
    if !tools.is_empty() {
        object.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = choice {
        object.insert("tool_choice".into(), choice);
    }
    if !request.stop.is_empty() {
        object.insert("stop_sequences".into(), json!(request.stop));
    }
    if stream {
        object.insert("stream".into(), Value::Bool(true));
    }
    Ok(Value::Object(object))
}

fn content_blocks(parts: &[ContentPart]) -> Vec<Value> {
    parts
        .iter()
        // Anthropic refuses empty text blocks.
        .filter(|part| !matches!(part, ContentPart::Text(t) if t.trim().is_empty()))
        .map(|part| match part {
            ContentPart::Text(text) => json!({"type": "text", "text": text}),
            ContentPart::Image { url, .. } => match data_url(url) {
                Some((media_type, data)) => {
                    json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}})
                }
                None => json!({"type": "image", "source": {"type": "url", "url": url}}),
            },
        })
        .collect()
}

/// `data:MEDIA;base64,DATA` split into its media type and data.
fn data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    Some((meta.strip_suffix(";base64")?, data))
}

// ---- The response, as a client reads it. ----

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    model: Option<String>,
    content: Vec<Value>,
    #[serde(default)]
    stop_reason: Option<String>,
    usage: WireUsage,
}

#[derive(Deserialize, Default, Clone, Copy)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

impl WireUsage {
    /// Anthropic's input tokens leave out the cached ones: the prompt is all three.
    fn usage(&self) -> Usage {
        let read = self.cache_read_input_tokens.unwrap_or(0);
        Usage {
            prompt_tokens: self
                .input_tokens
                .unwrap_or(0)
                .saturating_add(self.cache_creation_input_tokens.unwrap_or(0))
                .saturating_add(read),
            completion_tokens: self.output_tokens.unwrap_or(0),
            cached_prompt_tokens: read,
        }
    }
}

/// The API's `stop_reason`.
pub(crate) fn finish_reason(reason: Option<&str>) -> FinishReason {
    match reason {
        None | Some("end_turn" | "stop_sequence") => FinishReason::Stop,
        Some("max_tokens") => FinishReason::Length,
        Some("tool_use") => FinishReason::ToolCalls,
        Some("refusal") => FinishReason::ContentFilter,
        Some(other) => FinishReason::Other(other.chars().take(64).collect()),
    }
}

fn stop_reason_name(reason: &FinishReason) -> &str {
    match reason {
        FinishReason::Stop => "end_turn",
        FinishReason::Length => "max_tokens",
        FinishReason::ToolCalls => "tool_use",
        FinishReason::ContentFilter => "refusal",
        FinishReason::Other(other) => other,
    }
}

/// A whole response. `format_tool`: the tool a JSON-schema answer was asked for with, whose
/// input becomes the text.
pub(crate) fn parse_response(
    bytes: &[u8],
    model: &str,
    provider: &str,
    format_tool: Option<&str>,
) -> Result<Completion, String> {
    let parsed: WireResponse = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let mut content = String::new();
    let mut tool_calls = Vec::new();
    let mut finish = finish_reason(parsed.stop_reason.as_deref());
    let mut answered = false;
    for (i, block) in parsed.content.iter().enumerate() {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => content.push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("tool_use") => {
                let name = block.get("name").and_then(Value::as_str).filter(|n| !n.is_empty());
                let name = name.ok_or_else(|| format!("content block {i}: a tool_use without a name"))?;
                let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                if Some(name) == format_tool {
                    content.push_str(&input.to_string());
                    answered = true;
                    continue;
                }
                if tool_calls.len() == MAX_TOOL_CALLS {
                    return Err(format!("more than {MAX_TOOL_CALLS} tool calls"));
                }
                let id = block.get("id").and_then(Value::as_str).unwrap_or("").to_string();
                tool_calls.push(ToolCall { id, name: name.to_string(), arguments: input.to_string() });
            }
            // Thinking and other blocks are not part of the answer.
            Some(_) => {}
            None => return Err(format!("content block {i} has no type")),
        }
    }
    // The answer called as a tool, and no other tool: finished (unless it was cut).
    if answered && tool_calls.is_empty() && finish == FinishReason::ToolCalls {
        finish = FinishReason::Stop;
    }
    Ok(Completion {
        content,
        tool_calls,
        finish_reason: finish,
        usage: parsed.usage.usage(),
        model: parsed.model.unwrap_or_else(|| model.to_string()),
        provider: provider.to_string(),
        rate_headers: Vec::new(),
        cached: false,
    })
}

// ---- Streamed events, as a client reads them. ----

/// What the stream's events said so far, beyond the pieces.
#[derive(Debug, Default)]
pub(crate) struct EventState {
    pub(crate) model: Option<String>,
    pub(crate) usage: WireUsageState,
    pub(crate) finish_reason: Option<FinishReason>,
    /// `message_stop` was read.
    pub(crate) done: bool,
    /// Content block index → tool call index (`None`: the format tool, whose input is text).
    blocks: Vec<(u64, Option<usize>)>,
    tool_calls: usize,
}

/// The usage as the stream reports it (input at the start, output at the end).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct WireUsageState {
    prompt: u64,
    cached: u64,
    output: u64,
}

impl WireUsageState {
    pub(crate) fn usage(&self) -> Usage {
        Usage {
            prompt_tokens: self.prompt,
            completion_tokens: self.output,
            cached_prompt_tokens: self.cached,
        }
    }
}

/// A stream's `error` event or an unparsable one.
pub(crate) enum EventError {
    /// The provider said it failed (`overloaded_error`, `api_error`): its type and message.
    Provider(String, String),
    /// Not an event of this API.
    Malformed(String),
}

/// Reads one streamed event: pieces to `out`, the rest to `state`.
pub(crate) fn parse_event(
    event: &str,
    data: &str,
    format_tool: Option<&str>,
    state: &mut EventState,
    out: &mut Vec<StreamEvent>,
) -> Result<(), EventError> {
    let value: Value =
        serde_json::from_str(data).map_err(|e| EventError::Malformed(format!("a malformed event: {e}")))?;
    let kind = value.get("type").and_then(Value::as_str).unwrap_or(event);
    let index = value.get("index").and_then(Value::as_u64).unwrap_or(0);
    match kind {
        "message_start" => {
            let message = value.get("message").cloned().unwrap_or_default();
            state.model = message.get("model").and_then(Value::as_str).map(str::to_string);
            if let Some(usage) =
                message.get("usage").cloned().and_then(|u| serde_json::from_value::<WireUsage>(u).ok())
            {
                let u = usage.usage();
                state.usage = WireUsageState {
                    prompt: u.prompt_tokens,
                    cached: u.cached_prompt_tokens,
                    output: u.completion_tokens,
                };
            }
        }
        "content_block_start" => {
            let block = value.get("content_block").cloned().unwrap_or_default();
            match block.get("type").and_then(Value::as_str) {
                Some("tool_use") => {
                    let name = block.get("name").and_then(Value::as_str).unwrap_or("").to_string();
                    if Some(name.as_str()) == format_tool {
                        if state.blocks.iter().any(|(_, call)| call.is_none()) {
                            return Err(EventError::Malformed("the answer's tool was called twice".into()));
                        }
                        state.blocks.push((index, None));
                    } else {
                        if state.tool_calls == MAX_TOOL_CALLS || state.blocks.iter().any(|(b, _)| *b == index)
                        {
                            return Err(EventError::Malformed(format!(
                                "more than {MAX_TOOL_CALLS} tool calls"
                            )));
                        }
                        let call = state.tool_calls;
                        state.tool_calls += 1;
                        state.blocks.push((index, Some(call)));
                        let id = block.get("id").and_then(Value::as_str).unwrap_or("").to_string();
                        out.push(StreamEvent::ToolCall(ToolCallDelta {
                            index: call,
                            id: Some(id),
                            name: Some(name),
                            arguments: String::new(),
                        }));
                    }
                }
                Some("text") => {
                    if let Some(text) = block.get("text").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                        out.push(StreamEvent::Text(text.to_string()));
                    }
                }
                _ => {}
            }
        }
        "content_block_delta" => {
            let delta = value.get("delta").cloned().unwrap_or_default();
            match delta.get("type").and_then(Value::as_str) {
                Some("text_delta") => {
                    if let Some(text) = delta.get("text").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                        out.push(StreamEvent::Text(text.to_string()));
                    }
                }
                Some("input_json_delta") => {
                    let json = delta.get("partial_json").and_then(Value::as_str).unwrap_or("").to_string();
                    match state.blocks.iter().rev().find(|(b, _)| *b == index) {
                        Some((_, Some(call))) => out.push(StreamEvent::ToolCall(ToolCallDelta {
                            index: *call,
                            id: None,
                            name: None,
                            arguments: json,
                        })),
                        Some((_, None)) => {
                            if !json.is_empty() {
                                out.push(StreamEvent::Text(json));
                            }
                        }
                        None => {
                            return Err(EventError::Malformed(format!(
                                "input for content block {index}, which did not start"
                            )));
                        }
                    }
                }
                _ => {}
            }
        }
        "message_delta" => {
            if let Some(reason) = value.pointer("/delta/stop_reason").and_then(Value::as_str) {
                state.finish_reason = Some(finish_reason(Some(reason)));
            }
            if let Some(output) = value.pointer("/usage/output_tokens").and_then(Value::as_u64) {
                state.usage.output = output;
            }
        }
        "message_stop" => state.done = true,
        "error" => {
            let kind = value.pointer("/error/type").and_then(Value::as_str).unwrap_or("error").to_string();
            let message = value
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .chars()
                .take(300)
                .collect();
            return Err(EventError::Provider(kind, message));
        }
        // `ping`, `content_block_stop` and events added later.
        _ => {}
    }
    Ok(())
}

/// The finish reason of a stream that asked for a JSON-schema answer: the forced tool call is
/// the answer, not a call.
pub(crate) fn stream_finish(state: &EventState, format_tool: Option<&str>) -> FinishReason {
    match (&state.finish_reason, format_tool) {
        (Some(FinishReason::ToolCalls), Some(_)) if state.tool_calls == 0 => FinishReason::Stop,
        (Some(reason), _) => reason.clone(),
        (None, _) => FinishReason::Stop,
    }
}

// ---- The request, as a server reads it. ----

#[derive(Deserialize)]
struct ServerRequest {
    #[serde(default)]
    model: Option<String>,
    max_tokens: u64,
    messages: Vec<ServerMessage>,
    #[serde(default)]
    system: Option<Value>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    tools: Option<Vec<ServerTool>>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    stream: Option<bool>,
}

#[derive(Deserialize)]
struct ServerMessage {
    role: String,
    content: Value,
}

#[derive(Deserialize)]
struct ServerTool {
    name: String,
    #[serde(default)]
    description: Option<String>,
    input_schema: Value,
}

/// A request as the server reads it.
pub(crate) struct ReadRequest {
    pub(crate) request: ChatRequest,
    pub(crate) model: Option<String>,
    pub(crate) stream: bool,
}

/// Reads a request's JSON; `Err` says what is wrong (a 400's message).
pub(crate) fn parse_request(bytes: &[u8]) -> Result<ReadRequest, String> {
    let wire: ServerRequest = serde_json::from_slice(bytes).map_err(|e| format!("invalid request: {e}"))?;
    let mut messages = Vec::new();
    match wire.system {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => messages.push(ChatMessage::system(s)),
        Some(Value::Array(blocks)) => {
            let text: Vec<&str> =
                blocks.iter().filter_map(|b| b.get("text").and_then(Value::as_str)).collect();
            messages.push(ChatMessage::system(text.join("\n")));
        }
        Some(_) => return Err("system must be a string or text blocks".into()),
    }
    for (i, m) in wire.messages.into_iter().enumerate() {
        let role = match m.role.as_str() {
            "user" => Role::User,
            "assistant" => Role::Assistant,
            other => return Err(format!("messages[{i}]: unknown role {other:?}")),
        };
        let blocks = match m.content {
            Value::String(s) => vec![json!({"type": "text", "text": s})],
            Value::Array(blocks) => blocks,
            _ => return Err(format!("messages[{i}]: content must be a string or blocks")),
        };
        let mut current =
            ChatMessage { role, content: Vec::new(), tool_calls: Vec::new(), tool_call_id: None };
        for block in blocks {
            match block.get("type").and_then(Value::as_str) {
                Some("text") => current.content.push(ContentPart::Text(
                    block.get("text").and_then(Value::as_str).unwrap_or("").to_string(),
                )),
                Some("image") => {
                    let source = block.get("source").cloned().unwrap_or_default();
                    let url = match source.get("type").and_then(Value::as_str) {
                        Some("url") => source.get("url").and_then(Value::as_str).unwrap_or("").to_string(),
                        Some("base64") => format!(
                            "data:{};base64,{}",
                            source.get("media_type").and_then(Value::as_str).unwrap_or(""),
                            source.get("data").and_then(Value::as_str).unwrap_or("")
                        ),
                        _ => return Err(format!("messages[{i}]: an image without a url or base64 source")),
                    };
                    current.content.push(ContentPart::Image { url, detail: None });
                }
                Some("tool_use") if role == Role::Assistant => current.tool_calls.push(ToolCall {
                    id: block.get("id").and_then(Value::as_str).unwrap_or("").to_string(),
                    name: block.get("name").and_then(Value::as_str).unwrap_or("").to_string(),
                    arguments: block.get("input").cloned().unwrap_or_else(|| json!({})).to_string(),
                }),
                Some("tool_result") if role == Role::User => {
                    let text = match block.get("content") {
                        Some(Value::String(s)) => s.clone(),
                        Some(Value::Array(parts)) => parts
                            .iter()
                            .filter_map(|p| p.get("text").and_then(Value::as_str))
                            .collect::<Vec<_>>()
                            .join("\n"),
                        _ => String::new(),
                    };
                    let id = block.get("tool_use_id").and_then(Value::as_str).unwrap_or("").to_string();
                    messages.push(ChatMessage::tool_result(id, text));
                }
                Some(other) => {
                    return Err(format!("messages[{i}]: blocks of type {other:?} are not served here"));
                }
                None => return Err(format!("messages[{i}]: a block without a type")),
            }
        }
        if !current.content.is_empty() || !current.tool_calls.is_empty() {
            messages.push(current);
        }
    }
    let mut request = ChatRequest::new(messages).max_tokens(wire.max_tokens);
    request.temperature = wire.temperature.unwrap_or(1.0);
    request.stop = wire.stop_sequences.unwrap_or_default();
    for tool in wire.tools.unwrap_or_default() {
        request.tools.push(ToolSpec {
            name: tool.name,
            description: tool.description.unwrap_or_default(),
            parameters: tool.input_schema,
            strict: false,
        });
    }
    request.tool_choice = match wire.tool_choice {
        None | Some(Value::Null) => None,
        Some(choice) => Some(match choice.get("type").and_then(Value::as_str) {
            Some("auto") => ToolChoice::Auto,
            Some("none") => ToolChoice::None,
            Some("any") => ToolChoice::Required,
            Some("tool") => {
                ToolChoice::Tool(choice.get("name").and_then(Value::as_str).unwrap_or("").to_string())
            }
            _ => return Err("tool_choice: type must be auto, none, any or tool".into()),
        }),
    };
    request.check()?;
    Ok(ReadRequest { request, model: wire.model, stream: wire.stream.unwrap_or(false) })
}

// ---- The response and events, as a server writes them. ----

fn usage_json(usage: &Usage) -> Value {
    json!({
        "input_tokens": usage.prompt_tokens - usage.cached_prompt_tokens.min(usage.prompt_tokens),
        "output_tokens": usage.completion_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": usage.cached_prompt_tokens,
    })
}

fn blocks_json(completion: &Completion) -> Vec<Value> {
    let mut blocks = Vec::new();
    if !completion.content.is_empty() {
        blocks.push(json!({"type": "text", "text": completion.content}));
    }
    for call in &completion.tool_calls {
        let input =
            call.arguments_json().ok().filter(Value::is_object).unwrap_or_else(|| Value::Object(Map::new()));
        blocks.push(json!({"type": "tool_use", "id": call.id, "name": call.name, "input": input}));
    }
    blocks
}

/// A whole response.
pub(crate) fn response_json(id: &str, completion: &Completion) -> Value {
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": completion.model,
        "content": blocks_json(completion),
        "stop_reason": stop_reason_name(&completion.finish_reason),
        "stop_sequence": null,
        "usage": usage_json(&completion.usage),
    })
}

/// A streamed answer's events (name, data), from its pieces.
pub(crate) fn stream_events(
    id: &str,
    completion: &Completion,
    pieces: &[StreamEvent],
) -> Vec<(&'static str, Value)> {
    let mut start_usage = usage_json(&completion.usage);
    start_usage["output_tokens"] = json!(1);
    let mut events = vec![(
        "message_start",
        json!({"type": "message_start", "message": {"id": id, "type": "message", "role": "assistant",
               "model": completion.model, "content": [], "stop_reason": null, "stop_sequence": null,
               "usage": start_usage}}),
    )];
    // As Anthropic does: a ping after the start (clients must skip it).
    events.push(("ping", json!({"type": "ping"})));
    // Text first (block 0 if any), then one block per tool call.
    let mut block: Option<u64> = None;
    let mut next_block = 0;
    let mut call_block: Vec<u64> = Vec::new();
    let close = |events: &mut Vec<(&'static str, Value)>, block: &mut Option<u64>| {
        if let Some(b) = block.take() {
            events.push(("content_block_stop", json!({"type": "content_block_stop", "index": b})));
        }
    };
    for piece in pieces {
        match piece {
            StreamEvent::Text(text) => {
                if block.is_none() {
                    events.push((
                        "content_block_start",
                        json!({"type": "content_block_start", "index": next_block,
                                  "content_block": {"type": "text", "text": ""}}),
                    ));
                    block = Some(next_block);
                    next_block += 1;
                }
                events.push((
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": block,
                              "delta": {"type": "text_delta", "text": text}}),
                ));
            }
            StreamEvent::ToolCall(delta) => {
                if delta.index == call_block.len() {
                    close(&mut events, &mut block);
                    events.push(("content_block_start", json!({"type": "content_block_start", "index": next_block,
                                  "content_block": {"type": "tool_use", "id": delta.id, "name": delta.name, "input": {}}})));
                    call_block.push(next_block);
                    block = Some(next_block);
                    next_block += 1;
                }
                if !delta.arguments.is_empty() {
                    let index = call_block.get(delta.index).copied().unwrap_or(0);
                    events.push((
                        "content_block_delta",
                        json!({"type": "content_block_delta", "index": index,
                                  "delta": {"type": "input_json_delta", "partial_json": delta.arguments}}),
                    ));
                }
            }
            StreamEvent::Done(_) => {}
        }
    }
    close(&mut events, &mut block);
    events.push((
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop_reason_name(&completion.finish_reason), "stop_sequence": null},
               "usage": {"output_tokens": completion.usage.completion_tokens}}),
    ));
    events.push(("message_stop", json!({"type": "message_stop"})));
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tool_results_are_one_user_message_and_schemas_a_forced_tool() {
        let request = ChatRequest::new(vec![
            ChatMessage::system("Be brief."),
            ChatMessage::user("Weather in Paris and Rome?"),
            ChatMessage::assistant_tool_calls(
                "",
                vec![
                    ToolCall { id: "a".into(), name: "w".into(), arguments: "{\"city\":\"Paris\"}".into() },
                    ToolCall { id: "b".into(), name: "w".into(), arguments: "{\"city\":\"Rome\"}".into() },
                ],
            ),
            ChatMessage::tool_result("a", "sunny"),
            ChatMessage::tool_result("b", "rain"),
        ])
        .tool(ToolSpec::new("w", "weather", json!({"type": "object"})))
        .response_format(ResponseFormat::json_schema("report", json!({"type": "object"})));
        let body = request_body("claude", &request, false).unwrap();
        assert_eq!(body["system"], "Be brief.");
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[1]["content"][1]["input"]["city"], "Rome");
        assert_eq!(messages[2]["content"].as_array().unwrap().len(), 2);
        // The caller's tool stays callable next to the answer's.
        assert_eq!(body["tool_choice"], json!({"type": "any"}));
        // What the server reads back is the same conversation.
        let read = parse_request(&serde_json::to_vec(&body).unwrap()).unwrap();
        assert_eq!(read.request.messages, request.messages);
        // The forced tool's input is the answer's text.
        let answer = br#"{"content":[{"type":"tool_use","id":"t","name":"report","input":{"ok":true}}],
            "stop_reason":"tool_use","usage":{"input_tokens":10,"output_tokens":5,"cache_read_input_tokens":4}}"#;
        let c = parse_response(answer, "m", "p", Some("report")).unwrap();
        assert_eq!(
            (c.content.as_str(), c.tool_calls.len(), c.finish_reason),
            ("{\"ok\":true}", 0, FinishReason::Stop)
        );
        assert_eq!((c.usage.prompt_tokens, c.usage.cached_prompt_tokens), (14, 4));
    }

    #[test]
    fn what_anthropic_refuses_is_never_sent() {
        // An empty answer in the history, an empty text part, a choice without tools.
        let request = ChatRequest::new(vec![
            ChatMessage::user("hi"),
            ChatMessage::assistant(""),
            ChatMessage::user_parts(vec![ContentPart::text(""), ContentPart::text("again")]),
        ])
        .tool_choice(ToolChoice::Auto);
        let body = request_body("c", &request, false).unwrap();
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 1, "{body}");
        assert_eq!(messages[0]["content"].as_array().unwrap().len(), 2, "{body}");
        assert!(body.get("tool_choice").is_none(), "{body}");
        let image = ChatRequest::new(vec![ChatMessage {
            role: Role::Assistant,
            content: vec![ContentPart::image_url("https://x/y.png")],
            tool_calls: Vec::new(),
            tool_call_id: None,
        }]);
        assert!(request_body("c", &image, false).is_err());
        // A schema answer with tools offered keeps the caller's tools callable.
        let both = ChatRequest::prompt("x")
            .tool(ToolSpec::new("w", "weather", json!({"type": "object"})))
            .response_format(ResponseFormat::json_schema("report", json!({"type": "object"})));
        assert_eq!(request_body("c", &both, false).unwrap()["tool_choice"], json!({"type": "any"}));
        // A schema answer cut at max_tokens is not a finished one.
        let cut = br#"{"content":[{"type":"tool_use","id":"t","name":"report","input":{}}],"stop_reason":"max_tokens","usage":{}}"#;
        assert_eq!(
            parse_response(cut, "m", "p", Some("report")).unwrap().finish_reason,
            FinishReason::Length
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

        /// Any bytes as a response, an event or a request: an answer or an error, no panic.
        #[test]
        fn any_bytes_parse_or_fail_cleanly(
            bytes in prop_oneof![
                any::<Vec<u8>>(),
                "[\\{\\}\\[\\]\":,a-z0-9_ -]{0,80}".prop_map(String::into_bytes),
                "\\{\"type\":\"(content_block_start|content_block_delta|message_delta|error)\",\"index\":[0-9]{1,20},\"(delta|content_block)\":\\{\"type\":\"(tool_use|input_json_delta|text_delta)\"\\}\\}".prop_map(String::into_bytes),
            ],
        ) {
            let _ = parse_response(&bytes, "m", "p", Some("x"));
            let mut state = EventState::default();
            let mut out = Vec::new();
            let _ = parse_event("", &String::from_utf8_lossy(&bytes), None, &mut state, &mut out);
            let _ = parse_request(&bytes);
        }
    }
}

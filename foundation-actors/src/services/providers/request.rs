//! What is sent to a language model: the conversation, the tools it may call, the shape its
//! answer must have, and the sampling parameters.
//!
//! A request carries JSON values (tool parameters, a response schema), so it travels between
//! processes as JSON, never in a binary encoding that cannot hold them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::message::ChatMessage;

/// Default completion budget of a request.
pub const DEFAULT_MAX_TOKENS: u64 = 256;
/// The largest `max_tokens` a request may ask for (about ten million: beyond any model's
/// context, and far from overflowing a token count).
pub const MAX_MAX_TOKENS: u64 = 10_000_000;
/// The most stop sequences a request may have (OpenAI's limit is 4; Anthropic's is larger).
pub const MAX_STOP_SEQUENCES: usize = 16;

/// A tool offered to the model: its name, what it does, and its parameters as a JSON Schema
/// (an object schema).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    /// Its name (`^[a-zA-Z0-9_-]{1,64}$` for OpenAI and Anthropic).
    pub name: String,
    /// What it does, for the model to decide when to call it.
    pub description: String,
    /// Its parameters: a JSON Schema of an object.
    pub parameters: Value,
    /// Whether the provider must keep to the schema exactly (OpenAI's `strict`).
    #[serde(default)]
    pub strict: bool,
}

impl ToolSpec {
    /// A tool with these parameters.
    pub fn new(name: impl Into<String>, description: impl Into<String>, parameters: Value) -> Self {
        ToolSpec { name: name.into(), description: description.into(), parameters, strict: false }
    }

    /// A tool whose parameters are the JSON Schema of `T` (feature `json-schema`).
    #[cfg(feature = "json-schema")]
    pub fn of<T: schemars::JsonSchema>(name: impl Into<String>, description: impl Into<String>) -> Self {
        Self::new(name, description, schema_of::<T>())
    }
}

/// The JSON Schema of `T`, as providers take it (feature `json-schema`): no `$schema` key.
#[cfg(feature = "json-schema")]
pub fn schema_of<T: schemars::JsonSchema>() -> Value {
    let mut schema = schemars::schema_for!(T).to_value();
    if let Some(object) = schema.as_object_mut() {
        object.remove("$schema");
    }
    schema
}

/// Makes a generated schema fit OpenAI's strict mode (see [`ResponseFormat::of`]).
#[cfg(feature = "json-schema")]
fn strict_schema(schema: &mut Value, depth: usize) {
    const FORMATS: [&str; 9] =
        ["date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"];
    if depth > 64 {
        return;
    }
    match schema {
        Value::Object(map) => {
            if map.get("format").and_then(Value::as_str).is_some_and(|f| !FORMATS.contains(&f)) {
                map.remove("format");
            }
            if let Some(Value::Object(properties)) = map.get("properties") {
                let names: Vec<Value> = properties.keys().map(|k| Value::String(k.clone())).collect();
                map.insert("required".into(), Value::Array(names));
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            for (key, value) in map.iter_mut() {
                match (key.as_str(), value) {
                    // Maps of names to schemas: each schema, never the map as one.
                    ("properties" | "$defs" | "definitions", Value::Object(named)) => {
                        for sub in named.values_mut() {
                            strict_schema(sub, depth + 1);
                        }
                    }
                    (_, value) => strict_schema(value, depth + 1),
                }
            }
        }
        Value::Array(items) => {
            for value in items {
                strict_schema(value, depth + 1);
            }
        }
        _ => {}
    }
}

/// Whether and which tool the model must call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoice {
    /// The model decides (the default when tools are offered).
    Auto,
    /// No tool: answer in text.
    None,
    /// At least one tool.
    Required,
    /// This tool.
    Tool(String),
}

/// The shape the answer's text must have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Free text (the default).
    Text,
    /// Some JSON object.
    JsonObject,
    /// A JSON value matching this schema.
    JsonSchema {
        /// The schema's name (`^[a-zA-Z0-9_-]{1,64}$`).
        name: String,
        /// The JSON Schema.
        schema: Value,
        /// Whether the provider must keep to the schema exactly (OpenAI's `strict`).
        strict: bool,
    },
}

impl ResponseFormat {
    /// A strict JSON-schema answer.
    pub fn json_schema(name: impl Into<String>, schema: Value) -> Self {
        ResponseFormat::JsonSchema { name: name.into(), schema, strict: true }
    }

    /// A strict answer in the JSON Schema of `T` (feature `json-schema`), made as OpenAI's
    /// strict mode requires: every object closed (`additionalProperties: false`) with all its
    /// properties required (an `Option` field is required and nullable), and only the string
    /// formats strict mode knows (`uint64` and the like dropped). Properties are in name order
    /// (JSON objects here keep no other).
    #[cfg(feature = "json-schema")]
    pub fn of<T: schemars::JsonSchema>(name: impl Into<String>) -> Self {
        let mut schema = schema_of::<T>();
        strict_schema(&mut schema, 0);
        Self::json_schema(name, schema)
    }
}

/// A chat request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The conversation so far.
    pub messages: Vec<ChatMessage>,
    /// The most tokens the answer may have. Default [`DEFAULT_MAX_TOKENS`]; the rate limiter
    /// reserves this many output tokens before the call and refunds what was not used.
    pub max_tokens: u64,
    /// Sampling temperature (the simulated model ignores it).
    pub temperature: f32,
    /// The tenant the call is made for (usage and cost are counted per tenant).
    pub tenant: Option<String>,
    /// Whether the answer may come from the call cache (see
    /// [`CallCache`](super::CallCache)). Default: cached at temperature 0.
    #[serde(default)]
    pub cache: super::CachePolicy,
    /// Tools the model may call.
    #[serde(default)]
    pub tools: Vec<ToolSpec>,
    /// Whether and which tool it must call (`None`: the provider's default, `auto` with tools).
    #[serde(default)]
    pub tool_choice: Option<ToolChoice>,
    /// The shape of the answer (`None`: free text).
    #[serde(default)]
    pub response_format: Option<ResponseFormat>,
    /// Texts that end the answer where they appear (not included in it); at most
    /// [`MAX_STOP_SEQUENCES`].
    #[serde(default)]
    pub stop: Vec<String>,
    /// A seed, for providers that sample reproducibly with one (OpenAI's `seed`, best effort).
    #[serde(default)]
    pub seed: Option<u64>,
    /// Opts in to a router's semantic tier ([`SemanticTier`](super::SemanticTier)) for this
    /// request: an answer stored for a question at least this similar (cosine, 0 to 1) in the
    /// same conversation context may be returned instead of calling a provider. `None`: the
    /// tenant's setting, if any. Not part of the call cache's key.
    #[serde(default)]
    pub semantic: Option<f32>,
}

impl ChatRequest {
    /// A request of these messages with the default budget.
    pub fn new(messages: Vec<ChatMessage>) -> Self {
        ChatRequest {
            messages,
            max_tokens: DEFAULT_MAX_TOKENS,
            temperature: 0.0,
            tenant: None,
            cache: super::CachePolicy::Auto,
            tools: Vec::new(),
            tool_choice: None,
            response_format: None,
            stop: Vec::new(),
            seed: None,
            semantic: None,
        }
    }

    /// A one-message request.
    pub fn prompt(text: impl Into<String>) -> Self {
        Self::new(vec![ChatMessage::user(text)])
    }

    /// With this completion budget.
    pub fn max_tokens(mut self, max_tokens: u64) -> Self {
        self.max_tokens = max_tokens;
        self
    }

    /// Answered from the router's semantic tier if a stored question is at least `threshold`
    /// similar (see [`ChatRequest::semantic`]).
    pub fn semantic(mut self, threshold: f32) -> Self {
        self.semantic = Some(threshold);
        self
    }

    /// With this cache policy (e.g. [`CachePolicy::Off`](super::CachePolicy::Off) for a fresh
    /// answer).
    pub fn cache(mut self, policy: super::CachePolicy) -> Self {
        self.cache = policy;
        self
    }

    /// Made for this tenant.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Offering this tool.
    pub fn tool(mut self, tool: ToolSpec) -> Self {
        self.tools.push(tool);
        self
    }

    /// With this tool choice.
    pub fn tool_choice(mut self, choice: ToolChoice) -> Self {
        self.tool_choice = Some(choice);
        self
    }

    /// With this answer shape.
    pub fn response_format(mut self, format: ResponseFormat) -> Self {
        self.response_format = Some(format);
        self
    }

    /// With this stop sequence (added to any others).
    pub fn stop(mut self, sequence: impl Into<String>) -> Self {
        self.stop.push(sequence.into());
        self
    }

    /// With this seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// What is wrong with the request before any provider sees it: a tool named twice or badly,
    /// a tool choice naming no offered tool, too many or empty stop sequences, a tool result
    /// without the id of its call. `Err` says which.
    pub fn check(&self) -> Result<(), String> {
        let mut names = std::collections::BTreeSet::new();
        for tool in &self.tools {
            if !valid_name(&tool.name) {
                return Err(format!("tool name {:?} is not 1-64 of [a-zA-Z0-9_-]", tool.name));
            }
            if !names.insert(tool.name.as_str()) {
                return Err(format!("tool `{}` is offered twice", tool.name));
            }
            if !tool.parameters.is_object() {
                return Err(format!("tool `{}`: parameters must be a JSON Schema object", tool.name));
            }
        }
        match &self.tool_choice {
            Some(ToolChoice::Tool(name)) if !names.contains(name.as_str()) => {
                return Err(format!("tool_choice names `{name}`, which is not offered"));
            }
            Some(ToolChoice::Required) if self.tools.is_empty() => {
                return Err("tool_choice is `required` but no tool is offered".into());
            }
            _ => {}
        }
        if let Some(ResponseFormat::JsonSchema { name, schema, .. }) = &self.response_format {
            if !valid_name(name) {
                return Err(format!("response_format name {name:?} is not 1-64 of [a-zA-Z0-9_-]"));
            }
            if !schema.is_object() {
                return Err("response_format: the schema must be a JSON object".into());
            }
        }
        if let Some(threshold) = self.semantic
            && !(0.0..=1.0).contains(&threshold)
        {
            return Err(format!("semantic threshold {threshold}; it must be a similarity from 0 to 1"));
        }
        if self.max_tokens == 0 || self.max_tokens > MAX_MAX_TOKENS {
            return Err(format!("max_tokens is {}; it must be 1 to {MAX_MAX_TOKENS}", self.max_tokens));
        }
        if self.stop.len() > MAX_STOP_SEQUENCES {
            return Err(format!("{} stop sequences; at most {MAX_STOP_SEQUENCES}", self.stop.len()));
        }
        if self.stop.iter().any(String::is_empty) {
            return Err("an empty stop sequence".into());
        }
        for message in &self.messages {
            if message.role == super::message::Role::Tool && message.tool_call_id.is_none() {
                return Err("a tool message without the id of the call it answers".into());
            }
        }
        Ok(())
    }
}

/// A tool or schema name the APIs take: 1-64 of `[a-zA-Z0-9_-]`.
pub(crate) fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

//! Embedding models: texts in, vectors out. [`EmbeddingModel`] is the trait; [`OpenAiEmbeddings`]
//! calls an OpenAI-compatible `/v1/embeddings` endpoint (OpenAI, vLLM, Ollama, the simulated
//! provider server), [`SimulatedEmbeddings`] embeds in the process with the workspace's
//! [`HashingEmbedder`] (lexical, deterministic, no network) — the same vectors the simulated
//! server returns.
//!
//! Untrusted answers as for chat: the body is bounded ([`MAX_RESPONSE_BYTES`](super::MAX_RESPONSE_BYTES)),
//! an answer with another number of vectors than inputs, vectors of different lengths, or
//! anything not an embeddings response is [`LmError::Malformed`]; vectors come back in the
//! order of the inputs whatever order the endpoint listed them in.

use std::time::Duration;

use foundation_core::cache::{Embedder, HashingEmbedder};
use serde::Deserialize;
use serde_json::json;

use super::completion::Usage;
use super::http_call::{Endpoint, rate_headers};
use super::model::{BoxFuture, LmError};
use super::tokens;

/// The most texts one request may embed (OpenAI's limit).
pub const MAX_EMBEDDING_INPUTS: usize = 2048;

/// The vectors of a request's texts, in their order, and what they cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    /// One vector per input, in the inputs' order.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens used (`prompt_tokens`; embeddings have no completion).
    pub usage: Usage,
    /// The model that embedded them.
    pub model: String,
    /// The response's rate-limit headers, for a limiter to correct itself.
    pub rate_headers: Vec<(String, String)>,
}

/// A model that embeds texts.
pub trait EmbeddingModel: Send + Sync + 'static {
    /// The model's name as its provider knows it.
    fn model(&self) -> &str;

    /// The vectors of `inputs` (1 to [`MAX_EMBEDDING_INPUTS`] texts), in their order.
    fn embed<'a>(&'a self, inputs: &'a [String]) -> BoxFuture<'a, Result<Embeddings, LmError>>;
}

pub(crate) fn check_inputs(inputs: &[String]) -> Result<(), LmError> {
    if inputs.is_empty() || inputs.len() > MAX_EMBEDDING_INPUTS {
        return Err(LmError::InvalidRequest {
            reason: format!("{} texts to embed; 1 to {MAX_EMBEDDING_INPUTS} a request", inputs.len()),
        });
    }
    Ok(())
}

/// Embeddings in the process: the [`HashingEmbedder`] (lexical: shared words and character
/// 3-grams make texts close), deterministic in every process and version.
#[derive(Debug, Clone)]
pub struct SimulatedEmbeddings {
    model: String,
    embedder: HashingEmbedder,
}

impl SimulatedEmbeddings {
    /// Vectors of `dims` numbers (at least 1), named `model`.
    pub fn new(model: impl Into<String>, dims: usize) -> Self {
        SimulatedEmbeddings { model: model.into(), embedder: HashingEmbedder::new(dims) }
    }

    /// The vectors and usage of `inputs`, without waiting (what the simulated server serves).
    pub fn vectors(&self, inputs: &[String]) -> (Vec<Vec<f32>>, Usage) {
        let vectors = inputs.iter().map(|t| self.embedder.embed(t)).collect();
        let prompt = inputs.iter().map(|t| tokens::count(t)).sum();
        (vectors, Usage { prompt_tokens: prompt, completion_tokens: 0, cached_prompt_tokens: 0 })
    }
}

impl EmbeddingModel for SimulatedEmbeddings {
    fn model(&self) -> &str {
        &self.model
    }

    fn embed<'a>(&'a self, inputs: &'a [String]) -> BoxFuture<'a, Result<Embeddings, LmError>> {
        Box::pin(async move {
            check_inputs(inputs)?;
            let (vectors, usage) = self.vectors(inputs);
            Ok(Embeddings { vectors, usage, model: self.model.clone(), rate_headers: Vec::new() })
        })
    }
}

/// An OpenAI-compatible embeddings endpoint.
#[derive(Debug, Clone)]
pub struct OpenAiEmbeddings {
    endpoint: Endpoint,
    model: String,
    url: String,
    api_key: Option<String>,
    dimensions: Option<usize>,
}

impl OpenAiEmbeddings {
    /// A client for `model` at `base_url` (`None`: `OPENAI_BASE_URL`, or OpenAI's) with `api_key`
    /// (`None`: `OPENAI_API_KEY`); `provider` names it in errors.
    pub fn new(
        provider: impl Into<String>,
        model: impl Into<String>,
        base_url: Option<String>,
        api_key: Option<String>,
        timeout: Duration,
    ) -> Self {
        let (base_url, api_key) = super::http_call::resolve(
            base_url,
            super::ENV_BASE_URL,
            super::DEFAULT_BASE_URL,
            api_key,
            super::ENV_API_KEY,
        );
        OpenAiEmbeddings {
            endpoint: Endpoint::new(provider.into(), timeout),
            model: model.into(),
            url: format!("{base_url}/embeddings"),
            api_key,
            dimensions: None,
        }
    }

    /// Asks for vectors of this many numbers (models that can shorten theirs).
    pub fn dimensions(mut self, dimensions: usize) -> Self {
        self.dimensions = Some(dimensions);
        self
    }

    async fn call(&self, inputs: &[String]) -> Result<Embeddings, LmError> {
        check_inputs(inputs)?;
        let mut body = json!({"model": self.model, "input": inputs, "encoding_format": "float"});
        if let Some(d) = self.dimensions {
            body["dimensions"] = json!(d);
        }
        let mut http = self.endpoint.http.post(&self.url).json(&body).timeout(self.endpoint.timeout);
        if let Some(key) = &self.api_key {
            http = http.bearer_auth(key);
        }
        let e = &self.endpoint;
        let response = http.send().await.map_err(|err| e.transport(err))?;
        let status = response.status().as_u16();
        let headers = rate_headers(response.headers());
        let bytes = e.read_body(response).await?;
        if let Some(error) = e.status_error(status, &headers, &bytes) {
            return Err(error);
        }
        let mut answer =
            parse(&bytes, inputs.len(), &self.model).map_err(|reason| e.malformed(&reason, &bytes))?;
        answer.rate_headers = headers;
        Ok(answer)
    }
}

impl EmbeddingModel for OpenAiEmbeddings {
    fn model(&self) -> &str {
        &self.model
    }

    fn embed<'a>(&'a self, inputs: &'a [String]) -> BoxFuture<'a, Result<Embeddings, LmError>> {
        Box::pin(self.call(inputs))
    }
}

#[derive(Deserialize)]
struct WireEmbeddings {
    data: Vec<WireVector>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireVector {
    index: usize,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
}

/// An embeddings response for `expected` inputs, vectors in the inputs' order.
fn parse(bytes: &[u8], expected: usize, model: &str) -> Result<Embeddings, String> {
    let wire: WireEmbeddings = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if wire.data.len() != expected {
        return Err(format!("{} vectors for {expected} texts", wire.data.len()));
    }
    let mut vectors: Vec<Option<Vec<f32>>> = vec![None; expected];
    for v in wire.data {
        let slot =
            vectors.get_mut(v.index).ok_or_else(|| format!("a vector for text {} of {expected}", v.index))?;
        if slot.replace(v.embedding).is_some() {
            return Err(format!("two vectors for text {}", v.index));
        }
    }
    let vectors: Vec<Vec<f32>> = vectors.into_iter().map(|v| v.unwrap_or_default()).collect();
    let dims = vectors.first().map_or(0, Vec::len);
    if dims == 0 || vectors.iter().any(|v| v.len() != dims) {
        return Err("vectors of different lengths (or empty)".into());
    }
    Ok(Embeddings {
        vectors,
        usage: Usage {
            prompt_tokens: wire.usage.map_or(0, |u| u.prompt_tokens),
            completion_tokens: 0,
            cached_prompt_tokens: 0,
        },
        model: wire.model.unwrap_or_else(|| model.to_string()),
        rate_headers: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn vectors_come_back_in_the_inputs_order_and_bad_answers_are_refused() {
        let body = br#"{"data":[{"index":1,"embedding":[0.0,1.0]},{"index":0,"embedding":[1.0,0.0]}],"model":"e","usage":{"prompt_tokens":4}}"#;
        let e = parse(body, 2, "m").unwrap();
        assert_eq!(e.vectors, vec![vec![1.0, 0.0], vec![0.0, 1.0]]);
        assert_eq!((e.usage.prompt_tokens, e.model.as_str()), (4, "e"));
        assert!(parse(body, 3, "m").unwrap_err().contains("2 vectors for 3"));
        let twice = br#"{"data":[{"index":0,"embedding":[1.0]},{"index":0,"embedding":[1.0]}]}"#;
        assert!(parse(twice, 2, "m").unwrap_err().contains("two vectors"));
        let ragged = br#"{"data":[{"index":0,"embedding":[1.0]},{"index":1,"embedding":[1.0,2.0]}]}"#;
        assert!(parse(ragged, 2, "m").unwrap_err().contains("different lengths"));
        let far = br#"{"data":[{"index":99999999999,"embedding":[1.0]}]}"#;
        assert!(parse(far, 1, "m").is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

        /// Any bytes: vectors or an error, no panic.
        #[test]
        fn any_bytes_parse_or_fail_cleanly(bytes in prop_oneof![
            any::<Vec<u8>>(),
            "\\{\"data\":\\[(\\{\"index\":[0-9]{1,20},\"embedding\":\\[[0-9.,]{0,12}\\]\\},?){0,3}\\]\\}".prop_map(String::into_bytes),
        ], expected in 0usize..4) {
            let _ = parse(&bytes, expected, "m");
        }
    }
}

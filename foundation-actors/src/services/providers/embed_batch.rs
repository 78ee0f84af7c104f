//! [`EmbeddingBatcher`]: one text at a time in, batched requests out. Callers embedding
//! single texts concurrently (the semantic cache, one request each) share requests: texts that
//! arrive within [`BatchConfig::max_delay`] of the first, up to [`BatchConfig::max_batch`],
//! go to the model as one request (a text asked twice in a batch is sent once).
//!
//! Bounds: at most [`BatchConfig::queue`] texts wait in the queue (and one batch gathered
//! beside it); a text that finds the queue full fails at once (`OverBudget`, dimension
//! `embedding queue`): no growth, no wait. At most [`BatchConfig::max_in_flight`] requests
//! run at once, each at most [`BATCH_TIMEOUT`]. A failed
//! request fails every text of its batch with the model's error; a text the model answered with
//! a vector of another length than the batch's others is `Malformed`. The batcher's task runs
//! until the last handle is dropped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};

use super::embedding::{EmbeddingModel, MAX_EMBEDDING_INPUTS};
use super::model::LmError;

/// How an [`EmbeddingBatcher`] groups texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// The most texts one request carries (1 to 2 048). Default 64.
    pub max_batch: usize,
    /// How long the first text of a batch waits for others. Default 2 ms.
    pub max_delay: Duration,
    /// Texts waiting to be batched, at most (at least 1). Default 1 024.
    pub queue: usize,
    /// Requests running at once, at most (at least 1). Default 4.
    pub max_in_flight: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig { max_batch: 64, max_delay: Duration::from_millis(2), queue: 1024, max_in_flight: 4 }
    }
}

/// The longest one batch's request may take before its texts fail (and its slot frees): 60 s.
pub const BATCH_TIMEOUT: Duration = Duration::from_secs(60);

struct Job {
    text: String,
    reply: oneshot::Sender<Result<Vec<f32>, LmError>>,
}

/// Embeds single texts through batched requests to an [`EmbeddingModel`] (see the
/// [module](self)). Cheap to clone; needs a tokio runtime to be created.
#[derive(Clone)]
pub struct EmbeddingBatcher {
    jobs: mpsc::Sender<Job>,
    model: String,
}

impl std::fmt::Debug for EmbeddingBatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddingBatcher").field("model", &self.model).finish_non_exhaustive()
    }
}

impl EmbeddingBatcher {
    /// A batcher in front of `model` (a [`Provider`](super::Provider) with an embedding model
    /// puts its limits, breaker and retries under every request).
    pub fn new(model: Arc<dyn EmbeddingModel>, config: BatchConfig) -> Self {
        let config = BatchConfig {
            max_batch: config.max_batch.clamp(1, MAX_EMBEDDING_INPUTS),
            queue: config.queue.max(1),
            max_in_flight: config.max_in_flight.max(1),
            ..config
        };
        let (jobs, rx) = mpsc::channel(config.queue);
        let name = model.model().to_string();
        tokio::spawn(collect(model, rx, config));
        EmbeddingBatcher { jobs, model: name }
    }

    /// The model's name.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The vector of `text`.
    pub async fn embed(&self, text: &str) -> Result<Vec<f32>, LmError> {
        let (reply, answer) = oneshot::channel();
        let gone = || LmError::Transport {
            provider: self.model.clone(),
            source: "the embedding batcher stopped".into(),
        };
        // A full queue is an error at once, not a wait: callers (the semantic tier) skip.
        self.jobs.try_send(Job { text: text.to_string(), reply }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => LmError::OverBudget {
                provider: self.model.clone(),
                dimension: "embedding queue".into(),
                wait: Duration::ZERO,
            },
            mpsc::error::TrySendError::Closed(_) => gone(),
        })?;
        answer.await.map_err(|_| gone())?
    }
}

/// Gathers jobs into batches and sends each batch as one request.
async fn collect(model: Arc<dyn EmbeddingModel>, mut rx: mpsc::Receiver<Job>, config: BatchConfig) {
    let in_flight = Arc::new(Semaphore::new(config.max_in_flight));
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + config.max_delay;
        while batch.len() < config.max_batch {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(job)) => batch.push(job),
                Ok(None) | Err(_) => break,
            }
        }
        // Waiting here holds further texts in the queue (bounded): back pressure.
        let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
        let model = model.clone();
        tokio::spawn(async move {
            send(&*model, batch).await;
            drop(permit);
        });
    }
}

/// One request for a batch's distinct texts; each job gets its text's vector or the error.
async fn send(model: &dyn EmbeddingModel, batch: Vec<Job>) {
    let mut texts: Vec<String> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    let slots: Vec<usize> = batch
        .iter()
        .map(|job| {
            *index.entry(job.text.as_str()).or_insert_with(|| {
                texts.push(job.text.clone());
                texts.len() - 1
            })
        })
        .collect();
    metrics::histogram!("foundation_embedding_batch_texts", "model" => model.model().to_string())
        .record(texts.len() as f64);
    let result = match tokio::time::timeout(BATCH_TIMEOUT, model.embed(&texts)).await {
        Ok(result) => result,
        Err(_) => Err(LmError::Timeout { provider: model.model().to_string(), after: BATCH_TIMEOUT }),
    };
    for (job, slot) in batch.into_iter().zip(slots) {
        let answer = match &result {
            Ok(embeddings) => embeddings.vectors.get(slot).cloned().ok_or_else(|| LmError::Malformed {
                provider: model.model().to_string(),
                source: format!("no vector for text {slot} of {}", texts.len()).into(),
            }),
            Err(e) => Err(e.clone()),
        };
        let _ = job.reply.send(answer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::{BoxFuture, Embeddings, SimulatedEmbeddings};
    use std::sync::Mutex;

    /// Counts requests and their sizes, answers with the simulated vectors.
    struct Counting {
        inner: SimulatedEmbeddings,
        requests: Mutex<Vec<usize>>,
        fail: bool,
    }

    impl EmbeddingModel for Counting {
        fn model(&self) -> &str {
            "counting"
        }

        fn embed<'a>(&'a self, inputs: &'a [String]) -> BoxFuture<'a, Result<Embeddings, LmError>> {
            self.requests.lock().unwrap().push(inputs.len());
            Box::pin(async move {
                if self.fail {
                    return Err(LmError::Server {
                        provider: "counting".into(),
                        status: 503,
                        body: "down".into(),
                    });
                }
                self.inner.embed(inputs).await
            })
        }
    }

    fn counting(fail: bool) -> Arc<Counting> {
        Arc::new(Counting {
            inner: SimulatedEmbeddings::new("sim", 32),
            requests: Mutex::new(Vec::new()),
            fail,
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_texts_share_requests_and_get_their_own_vectors() {
        let model = counting(false);
        let config =
            BatchConfig { max_batch: 16, max_delay: Duration::from_millis(50), ..Default::default() };
        let batcher = EmbeddingBatcher::new(model.clone(), config);
        let texts: Vec<String> = (0..40).map(|i| format!("text number {}", i % 20)).collect();
        let asks = texts.iter().map(|t| batcher.embed(t));
        let vectors = futures::future::join_all(asks).await;
        let expected = SimulatedEmbeddings::new("sim", 32).vectors(&texts).0;
        for (got, want) in vectors.into_iter().zip(expected) {
            assert_eq!(got.unwrap(), want);
        }
        let requests = model.requests.lock().unwrap().clone();
        assert!(requests.iter().all(|n| *n <= 16), "{requests:?}");
        assert!(requests.len() < 40, "batched: {requests:?}");

        // The same text twice in one batch is sent once.
        let model = counting(false);
        let batcher = EmbeddingBatcher::new(model.clone(), config);
        let (a, b) = tokio::join!(batcher.embed("same"), batcher.embed("same"));
        assert_eq!(a.unwrap(), b.unwrap());
        assert_eq!(*model.requests.lock().unwrap(), [1]);
    }

    #[tokio::test]
    async fn a_failed_request_fails_every_text_of_its_batch() {
        let batcher = EmbeddingBatcher::new(counting(true), BatchConfig::default());
        let (a, b) = tokio::join!(batcher.embed("a"), batcher.embed("b"));
        assert!(matches!(a, Err(LmError::Server { status: 503, .. })), "{a:?}");
        assert!(matches!(b, Err(LmError::Server { status: 503, .. })), "{b:?}");
    }
}

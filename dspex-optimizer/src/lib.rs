//! DSPy-style programs and their optimization.
//!
//! - [`Signature`] (`"question -> answer"`, or built in code, with instructions and field
//!   descriptions), [`Example`] (inputs and labels), [`Prediction`].
//! - [`Predictor`]s — [`Predictor::predict`] and [`Predictor::chain_of_thought`] (a `reasoning`
//!   field before the outputs) — composed into a [`Program`] that runs them in order. Programs
//!   are data (serde): a worker on another node rebuilds the same program from its spec.
//! - The [`adapter`] renders prompts with demonstrations and parses the output fields back (a
//!   missing field is a typed [`ParseError`](adapter::ParseError)).
//! - [`evaluate::evaluate`]: mean score, per-example results, failures, latency,
//!   tokens and cost, with bounded concurrency.
//! - Optimizers in [`optimizers`]: [`LabeledFewShot`](optimizers::LabeledFewShot),
//!   [`BootstrapFewShot`](optimizers::BootstrapFewShot),
//!   [`RandomSearch`](optimizers::RandomSearch) (DSPy's `BootstrapFewShotWithRandomSearch`) and
//!   [`InstructionSearch`](optimizers::InstructionSearch) (instruction × demonstration set, in the
//!   manner of MIPRO), deterministic for a seed.
//! - Datasets in [`datasets`]: JSON-lines loading and a bundled question-classification set.
//!
//! - [`distributed`]: the same random search as a service of a cluster
//!   ([`Optimizations`](distributed::Optimizations)) — runs submitted from any node, one
//!   scheduler singleton sharing the workers of every serving node among them by priority,
//!   results recorded once per task in a replicated log (no shared disk), a lost node's work
//!   redone, a lost scheduler replaced and the log replayed, workers scaled with the queue and
//!   the provider budget, progress on the telemetry channel. Custom metrics by name:
//!   [`register_metric`].
//!
//! ```
//! use std::sync::Arc;
//! use dspex_optimizer::*;
//! use foundation_actors::providers::{LanguageModel, SimulatedConfig, SimulatedModel};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let lm: Arc<dyn LanguageModel> =
//!     Arc::new(SimulatedModel::new(SimulatedConfig { latency: std::time::Duration::ZERO, ..Default::default() }));
//! let signature = Signature::parse("question -> label")?.with_instructions("Classify the question's answer type.");
//! let program = Program::single("classify", Predictor::predict(signature));
//! let data = datasets::questions();
//! let (train, dev) = data.split_at(100);
//! let metric = Metric::ExactMatch("label".into());
//!
//! let zero_shot = evaluate::evaluate(&program, dev, lm.clone(), &metric, 8).await;
//! let optimized = optimizers::LabeledFewShot { k: 16 }.compile(&program, train, 7);
//! let few_shot = evaluate::evaluate(&optimized, dev, lm.clone(), &metric, 8).await;
//! assert!(few_shot.mean > zero_shot.mean);
//! # Ok::<(), SignatureError>(())
//! # }).unwrap();
//! ```

pub mod adapter;
pub mod datasets;
pub mod distributed;
pub mod evaluate;
mod example;
pub mod judge;
mod metric;
pub mod metric_catalog;
mod models;
pub mod optimizers;
mod predict;
mod program;
pub mod rng;
mod signature;

pub use example::{Example, Prediction};
pub use judge::Judge;
pub use metric::{Metric, MetricFn, Tolerance, register_metric};
pub use models::LanguageModels;
pub use predict::{DEFAULT_MAX_TOKENS, Predictor, ProgramError, Strategy};
pub use program::{MAX_PROGRAM_BYTES, PROGRAM_FORMAT, Program, ProgramFileError, TraceStep};
pub use signature::{Field, Signature, SignatureError};

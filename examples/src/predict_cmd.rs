//! `foundation predict --program best.json --input question="…"`: runs a saved program once and
//! prints its outputs, with the simulated model or an OpenAI-compatible endpoint.
//!
//! Inputs are `NAME=VALUE` pairs; a missing or unknown input field is an error naming it (and
//! the fields the program reads), exit status 2, before any model is called.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use dspex_optimizer::Program;
use foundation_actors::providers::LanguageModel;

/// Options of `foundation predict`.
#[derive(Debug, Clone, Args)]
pub struct PredictArgs {
    /// The program file (written by `Program::save`, e.g. an optimization's result).
    #[arg(long, value_name = "FILE")]
    pub program: PathBuf,
    /// An input field, `NAME=VALUE`; repeat for each input the program reads.
    #[arg(long = "input", value_name = "NAME=VALUE")]
    pub inputs: Vec<String>,
    /// Print the prediction as one JSON object (fields, tokens, trace) instead of text.
    #[arg(long)]
    pub json: bool,
    /// An OpenAI-compatible endpoint (up to `/v1`) instead of the simulated model; the key is
    /// read from OPENAI_API_KEY.
    #[arg(long)]
    pub lm_url: Option<String>,
    /// The model asked for at `--lm-url`.
    #[arg(long, default_value = "gpt-4o-mini")]
    pub lm_model: String,
    /// Seed of the simulated model.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

/// The input fields the program reads from the caller: every predictor's inputs that no earlier
/// predictor produces.
fn program_inputs(program: &Program) -> Vec<String> {
    let mut produced = std::collections::BTreeSet::new();
    let mut wanted = Vec::new();
    for (_, predictor) in &program.predictors {
        let signature = predictor.effective_signature();
        for field in &signature.inputs {
            if !produced.contains(&field.name) && !wanted.contains(&field.name) {
                wanted.push(field.name.clone());
            }
        }
        produced.extend(signature.outputs.iter().map(|f| f.name.clone()));
    }
    wanted
}

/// The `NAME=VALUE` pairs as a map, checked against the fields the program reads.
fn parse_inputs(pairs: &[String], wanted: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut inputs = BTreeMap::new();
    for pair in pairs {
        let Some((name, value)) = pair.split_once('=') else {
            return Err(format!("--input {pair:?}: expected NAME=VALUE"));
        };
        if !wanted.iter().any(|w| w == name) {
            return Err(format!(
                "--input {name}: the program reads no such field (it reads: {})",
                wanted.join(", ")
            ));
        }
        if inputs.insert(name.to_string(), value.to_string()).is_some() {
            return Err(format!("--input {name}: given twice"));
        }
    }
    let missing: Vec<&str> = wanted.iter().filter(|w| !inputs.contains_key(*w)).map(String::as_str).collect();
    if !missing.is_empty() {
        return Err(format!(
            "missing --input for {} (the program reads: {})",
            missing.join(", "),
            wanted.join(", ")
        ));
    }
    Ok(inputs)
}

/// Runs `foundation predict`.
pub fn run(args: PredictArgs) -> anyhow::Result<ExitCode> {
    let program = match Program::load(&args.program) {
        Ok(program) => program,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let inputs = match parse_inputs(&args.inputs, &program_inputs(&program)) {
        Ok(inputs) => inputs,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let lm: Arc<dyn LanguageModel> = match &args.lm_url {
        Some(url) => match crate::node::optimize::endpoint(url, &args.lm_model) {
            Ok(lm) => lm,
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(2));
            }
        },
        None => crate::node::optimize::model(args.seed, Duration::ZERO),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (prediction, trace) = match runtime.block_on(program.run(lm.as_ref(), &inputs)) {
        Ok(answer) => answer,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if args.json {
        let line = serde_json::json!({
            "program": program.name,
            "fields": prediction.fields,
            "prompt_tokens": prediction.usage.prompt_tokens,
            "completion_tokens": prediction.usage.completion_tokens,
            "trace": trace,
        });
        println!("{line}");
    } else {
        for (name, value) in &prediction.fields {
            println!("{name}: {value}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dspex_optimizer::{Predictor, Signature};

    #[test]
    fn inputs_are_the_fields_no_earlier_predictor_gives_and_each_is_checked() {
        let program =
            Program::single("a", Predictor::predict(Signature::parse("question -> topic").unwrap())).then(
                "b",
                Predictor::chain_of_thought(Signature::parse("question, topic, context -> label").unwrap()),
            );
        let wanted = program_inputs(&program);
        assert_eq!(wanted, ["question", "context"]);
        let given =
            |pairs: &[&str]| parse_inputs(&pairs.iter().map(|p| p.to_string()).collect::<Vec<_>>(), &wanted);
        let inputs = given(&["question=Who wrote it? x=y", "context="]).unwrap();
        assert_eq!(inputs["question"], "Who wrote it? x=y");
        assert_eq!(inputs["context"], "");
        for (pairs, expected) in [
            (&["question=q"][..], "missing --input for context"),
            (&["question"][..], "expected NAME=VALUE"),
            (&["question=q", "context=c", "topic=t"][..], "reads no such field"),
            (&["question=q", "question=r", "context=c"][..], "given twice"),
        ] {
            let e = given(pairs).unwrap_err();
            assert!(e.contains(expected), "{pairs:?}: {e}");
        }
    }
}

//! A research agent that answers with native tool calls, on two node processes.
//!
//! - n1 (this process) runs the **researcher** agent. Its own tools: `calculator` (arithmetic
//!   on an expression) and `dataset_lookup` (the questions of the bundled dataset that mention a
//!   word, with their answer types). Its spec also names `country_facts`, a tool it does not
//!   have: n2 serves it.
//! - n2 (this program re-run as a child process, on loopback, with a cookie) serves
//!   `country_facts` to the cluster with a `ToolServer`.
//!
//! For each question the agent runs the tool loop (`AgentContext::run_tools`): the model is
//! offered the three tools with their JSON Schemas (generated from the argument types), calls
//! them (several at once when the question has several parts), the runtime checks the
//! arguments, runs each tool where it lives and gives the results back, and the model's answer
//! streams in as it is written. Then a structured brief (`run_tools_for`, decoded into a Rust
//! type); then n2 is SIGKILLed and, once its tool server has left the registry, a question
//! that needs its tool is asked again: the tool is not offered (the run says it is
//! unavailable) and the agent still answers.
//!
//! Run: `cargo run -p foundation-examples --example research_agent`. The simulated model needs
//! no network; `-- --openai-url http://localhost:11434/v1 --model llama3.2` calls an
//! OpenAI-compatible endpoint with tool support instead (key from `OPENAI_API_KEY`).

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use foundation_actors::agents::{
    Agent, AgentContext, AgentError, AgentSpec, LoopEvent, ToolLoop, ToolOutcome, ToolPlace, ToolServer,
    Tools,
};
use foundation_actors::providers::{LanguageModel, OpenAiClient, SimulatedConfig, SimulatedModel};
use foundation_actors::registry::{Query, ServiceRegistry};
use foundation_cluster::Cluster;
use foundation_cluster::testkit::{NodeProcess, free_port};
use foundation_core::config::ClusterConfig;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

const WAIT: Duration = Duration::from_secs(60);
/// The cookie, given to n2 in the environment (not on its command line).
const COOKIE_ENV: &str = "RESEARCH_AGENT_COOKIE";

#[derive(Parser)]
struct Args {
    /// An OpenAI-compatible endpoint (up to `/v1`) instead of the simulated model.
    #[arg(long)]
    openai_url: Option<String>,
    /// The endpoint's model.
    #[arg(long, default_value = "gpt-4o-mini")]
    model: String,
    /// The tool node only: NAME LISTEN SEED.
    #[arg(long, hide = true, num_args = 3)]
    tool_node: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// The tools: argument types (their JSON Schemas are what the model is offered) and code.

/// Arithmetic on numbers: `+ - * /` and parentheses.
#[derive(Deserialize, JsonSchema)]
struct Calculation {
    /// The expression, e.g. `(17 + 4) * 3`.
    expression: String,
}

/// A word to look for in the bundled question dataset.
#[derive(Deserialize, JsonSchema)]
struct Lookup {
    /// A word the questions mention, e.g. `Kenya`.
    topic: String,
}

/// A country to give facts about.
#[derive(Deserialize, JsonSchema)]
struct Country {
    /// Its English name, e.g. `Japan`.
    country: String,
}

/// What `country_facts` answers.
#[derive(Serialize)]
struct Facts {
    country: &'static str,
    capital: &'static str,
    population_millions: f64,
}

/// The researcher's own tools.
fn own_tools() -> anyhow::Result<Tools> {
    let questions = Arc::new(dspex_optimizer::datasets::questions());
    let mut tools = Tools::new();
    tools.register("calculator", "evaluates an arithmetic expression", |c: Calculation| async move {
        Ok::<_, foundation_core::BoxError>(evaluate(&c.expression)?)
    })?;
    tools.register(
        "dataset_lookup",
        "finds the questions of the bundled dataset that mention a topic, with their answer types",
        move |l: Lookup| {
            let questions = questions.clone();
            async move {
                let topic = l.topic.to_lowercase();
                let found: Vec<String> = questions
                    .iter()
                    .filter_map(|q| Some((q.get("question")?, q.get("label").unwrap_or("?"))))
                    .filter(|(q, _)| {
                        q.to_lowercase().split(|c: char| !c.is_alphanumeric()).any(|w| w == topic)
                    })
                    .take(5)
                    .map(|(q, label)| format!("{q} ({label})"))
                    .collect();
                Ok::<_, foundation_core::BoxError>(found)
            }
        },
    )?;
    Ok(tools)
}

/// The tool n2 serves.
fn served_tools() -> anyhow::Result<Tools> {
    const FACTS: [Facts; 5] = [
        Facts { country: "Japan", capital: "Tokyo", population_millions: 124.5 },
        Facts { country: "Kenya", capital: "Nairobi", population_millions: 55.1 },
        Facts { country: "Peru", capital: "Lima", population_millions: 34.4 },
        Facts { country: "Portugal", capital: "Lisbon", population_millions: 10.6 },
        Facts { country: "Canada", capital: "Ottawa", population_millions: 40.1 },
    ];
    let mut tools = Tools::new();
    tools.register("country_facts", "the capital and population of a country", |c: Country| async move {
        let facts = FACTS.iter().find(|f| f.country.eq_ignore_ascii_case(c.country.trim()));
        facts.ok_or_else(|| format!("no facts about `{}`", c.country).into())
    })?;
    Ok(tools)
}

/// Evaluates `+ - * /` with parentheses and unary minus (recursive descent).
fn evaluate(expression: &str) -> Result<f64, String> {
    fn expr(t: &[char], i: &mut usize) -> Result<f64, String> {
        let mut value = term(t, i)?;
        while let Some(&op) = t.get(*i).filter(|c| matches!(c, '+' | '-')) {
            *i += 1;
            let rhs = term(t, i)?;
            value = if op == '+' { value + rhs } else { value - rhs };
        }
        Ok(value)
    }
    fn term(t: &[char], i: &mut usize) -> Result<f64, String> {
        let mut value = factor(t, i)?;
        while let Some(&op) = t.get(*i).filter(|c| matches!(c, '*' | '/')) {
            *i += 1;
            let rhs = factor(t, i)?;
            value = if op == '*' { value * rhs } else { value / rhs };
        }
        Ok(value)
    }
    fn factor(t: &[char], i: &mut usize) -> Result<f64, String> {
        match t.get(*i) {
            Some('-') => {
                *i += 1;
                Ok(-factor(t, i)?)
            }
            Some('(') => {
                *i += 1;
                let value = expr(t, i)?;
                if t.get(*i) != Some(&')') {
                    return Err("a `(` is not closed".into());
                }
                *i += 1;
                Ok(value)
            }
            _ => {
                let start = *i;
                while t.get(*i).is_some_and(|c| c.is_ascii_digit() || *c == '.') {
                    *i += 1;
                }
                let number: String = t[start..*i].iter().collect();
                number.parse().map_err(|_| format!("a number was expected at position {start}"))
            }
        }
    }
    let tokens: Vec<char> = expression.chars().filter(|c| !c.is_whitespace()).collect();
    // The model writes the expression: its length bounds the recursion (no stack overflow).
    if tokens.len() > 256 {
        return Err("an expression is at most 256 characters".into());
    }
    let mut i = 0;
    let value = expr(&tokens, &mut i)?;
    match i == tokens.len() {
        true if value.is_finite() => Ok(value),
        true => Err(format!("`{expression}` has no finite value")),
        false => Err(format!("unexpected `{}` at position {i}", tokens[i])),
    }
}

// ---------------------------------------------------------------------------------------------
// The agent.

/// A brief, as a structured final answer.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct Brief {
    country: String,
    capital: String,
    population_millions: f64,
}

/// What the researcher is asked: a question, answered in text or as a brief.
#[derive(Serialize, Deserialize)]
enum Ask {
    Question(String),
    Brief(String),
}

/// Runs the tool loop on each question, printing the calls and streaming the answer.
struct Researcher;

/// Prints what the loop does as it happens: the model's text piece by piece, each call's
/// result and where it ran.
fn show(event: &LoopEvent, in_text: &AtomicBool) {
    if !matches!(event, LoopEvent::Text(_)) && in_text.swap(false, Ordering::SeqCst) {
        println!();
    }
    match event {
        LoopEvent::Text(piece) => {
            if !in_text.swap(true, Ordering::SeqCst) {
                print!("  model: ");
            }
            print!("{piece}");
        }
        LoopEvent::ToolCall { .. } | LoopEvent::ApprovalRequested(_) => {}
        LoopEvent::ToolResult { step, record } => {
            let place = match record.place {
                ToolPlace::Own => "own tool",
                ToolPlace::Served => "served by n2",
                ToolPlace::Nowhere => "not offered",
            };
            let outcome = match &record.outcome {
                ToolOutcome::Done(value) => format!("= {value}"),
                other => format!("error: {}", other.to_model(&record.name)),
            };
            println!("  step {step}: {}({}) [{place}] {outcome}", record.name, record.arguments);
        }
    }
    let _ = std::io::stdout().flush();
}

impl Agent for Researcher {
    type Input = Ask;
    type Output = String;

    async fn step(&mut self, ctx: &mut AgentContext, ask: Ask) -> Result<String, AgentError> {
        let in_text = Arc::new(AtomicBool::new(false));
        let printing = in_text.clone();
        let options = ToolLoop::new().max_steps(4).on_event(move |event| show(event, &printing));
        let end_text = || {
            if in_text.swap(false, Ordering::SeqCst) {
                println!();
            }
        };
        match ask {
            Ask::Question(question) => {
                let run = ctx.run_tools(question, &options).await;
                end_text();
                let run = run?;
                Ok(format!(
                    "steps: {}, tool calls: {}, tokens: {}{}",
                    run.steps.len(),
                    run.calls().count(),
                    run.usage.total(),
                    if run.unavailable.is_empty() {
                        String::new()
                    } else {
                        format!(", unavailable: {}", run.unavailable.join(", "))
                    }
                ))
            }
            Ask::Brief(question) => {
                let brief = ctx.run_tools_for::<Brief>(question, &options).await;
                end_text();
                Ok(format!("decoded: {:?}", brief?.0))
            }
        }
    }
}

fn model(args: &Args) -> Arc<dyn LanguageModel> {
    match &args.openai_url {
        Some(url) => Arc::new(OpenAiClient::new("openai", &args.model, Some(url.clone()), None, WAIT)),
        None => Arc::new(SimulatedModel::new(SimulatedConfig {
            latency: Duration::from_millis(20),
            stream_interval: Duration::from_millis(5),
            ..Default::default()
        })),
    }
}

fn node_config(listen: &str, seeds: &[&str], cookie: String) -> anyhow::Result<ClusterConfig> {
    let seeds = seeds.iter().map(|s| s.parse()).collect::<Result<_, _>>()?;
    Ok(ClusterConfig { listen: listen.parse()?, seeds, cookie, ..Default::default() })
}

/// n2: serves `country_facts` until its standard input closes.
async fn tool_node(name: &str, listen: &str, seed: &str) -> anyhow::Result<()> {
    let config = node_config(listen, &[seed], std::env::var(COOKIE_ENV).context(COOKIE_ENV)?)?;
    let cluster = Cluster::start(name, &config, None).await?;
    let registry = ServiceRegistry::start().await?;
    let server = ToolServer::new(served_tools()?)
        .max_message_bytes(cluster.max_frame_bytes())
        .start(&registry)
        .await?;
    println!("{name}: serving country_facts");
    tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink())).await??;
    server.stop().await;
    cluster.shutdown().await;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let [name, listen, seed] = args.tool_node.as_slice() {
        return tool_node(name, listen, seed).await;
    }

    let cookie = format!("research-{}", std::process::id());
    let listen = format!("127.0.0.1:{}", free_port());
    let cluster = Cluster::start("n1", &node_config(&listen, &[], cookie.clone())?, None).await?;
    let registry = ServiceRegistry::start().await?;
    let n2_listen = format!("127.0.0.1:{}", free_port());
    let exe = std::env::current_exe()?;
    let mut n2 = NodeProcess::spawn_with_env(
        "n2",
        &exe,
        ["--tool-node", "n2", &n2_listen, &listen],
        [(COOKIE_ENV, cookie.as_str())],
    )?;
    n2.wait_for("n2: serving country_facts", WAIT)?;
    // Its registration reaches this node's registry through the cluster.
    let deadline = Instant::now() + WAIT;
    while registry.discover(&Query::new().name("tools").capability("tool:country_facts")).is_empty() {
        anyhow::ensure!(Instant::now() < deadline, "n2's country_facts never reached n1's registry");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("n1: n2 serves country_facts");

    let researcher = AgentSpec::new("researcher", || Researcher)
        .shared_model(model(&args))
        .tools(own_tools()?)
        .remote_tools(["country_facts"])
        .max_message_bytes(cluster.max_frame_bytes())
        .tool_timeout(Duration::from_secs(5))
        .start(&registry)
        .await?;
    let questions = [
        Ask::Question("Compute the expression: (17 + 4) * 3".into()),
        Ask::Question(
            "Which questions of the dataset mention the topic: Kenya? What are the facts on country: Kenya?"
                .into(),
        ),
        Ask::Brief("Write a brief on the capital and population of country: Japan".into()),
    ];
    for ask in questions {
        let text = match &ask {
            Ask::Question(q) | Ask::Brief(q) => q.clone(),
        };
        println!("\nQ: {text}");
        let summary = researcher.ask(ask, WAIT).await?;
        println!("  ({summary})");
    }

    println!("\nn1: killing n2 (SIGKILL)");
    n2.kill();
    // The cluster notices the lost node and its tool server leaves n1's registry.
    let deadline = Instant::now() + WAIT;
    while !registry.discover(&Query::new().name("tools").capability("tool:country_facts")).is_empty() {
        anyhow::ensure!(Instant::now() < deadline, "n2's tool server never left n1's registry");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("n1: country_facts is served nowhere now");
    let question = "Give the capital and population of country: Peru";
    println!("\nQ: {question}");
    let summary = researcher.ask(Ask::Question(question.into()), WAIT).await?;
    println!("  ({summary})");

    researcher.stop().await;
    cluster.shutdown().await;
    println!("\ndone");
    Ok(())
}

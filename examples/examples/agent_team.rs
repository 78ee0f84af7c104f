//! A team of agents on a local three-node cluster of real processes, solving a batch of jobs and
//! surviving the loss of a node.
//!
//! - n1 (this process) runs the **planner**, which turns the batch into jobs, and the **critic**,
//!   which reviews every result through the model and may send a job back once.
//! - n2 and n3 (this program re-run as child processes, on loopback, with a cookie) each run a
//!   **worker** agent (capability `solve`) that calls a typed tool (`sum` or `word_count`) and
//!   the model, and serve contract-net bids for `solve`: the cost is the worker's current load,
//!   and an awarded job goes to the worker.
//! - n1 announces the jobs one by one (`Coordination::allocate`). Partway through the batch it
//!   SIGKILLs n3 while n3 works: the jobs n3 held are announced again and finish on n2.
//!
//! Run: `cargo run -p foundation-examples --example agent_team`. The simulated model needs no
//! network; `-- --openai-url http://localhost:11434/v1 --model llama3.2` calls an
//! OpenAI-compatible endpoint instead (key from `OPENAI_API_KEY`); `-- --kill-after 0` spares
//! n3. The exit status is 0 only if every job completed.

use foundation_core::sync::MutexRecover;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use foundation_actors::agents::{Agent, AgentContext, AgentError, AgentHandle, AgentRef, AgentSpec, Tools};
use foundation_actors::providers::{
    ChatRequest, LanguageModel, OpenAiClient, SimulatedConfig, SimulatedModel,
};
use foundation_actors::registry::ServiceRegistry;
use foundation_cluster::Cluster;
use foundation_cluster::coordination::{
    AllocateOptions, Bidder, BidderHandle, Coordination, CoordinationConfig, Task,
};
use foundation_core::config::ClusterConfig;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The batch: one request per line.
const BATCH: &str = "sum: 17 25 8\nwords: the quick brown fox jumps over the lazy dog\nsum: 1000 -1 -999\n\
    words: supervised actors restart from a known state\nsum: 3 4 5 6\nwords: to be or not to be\n\
    sum: 120 80\nwords: a task whose node is lost is announced again\nsum: 7 7 7 7 7\n\
    words: one\nsum: 65536 -1\nwords: agents find each other by capability";
const WAIT: Duration = Duration::from_secs(60);
/// The cookie, given to the worker nodes in the environment (not on their command line).
const COOKIE_ENV: &str = "AGENT_TEAM_COOKIE";

#[derive(Parser)]
struct Args {
    /// SIGKILL n3 once it has started this many jobs (0: never).
    #[arg(long, default_value_t = 3)]
    kill_after: usize,
    /// An OpenAI-compatible endpoint (up to `/v1`) instead of the simulated model.
    #[arg(long)]
    openai_url: Option<String>,
    /// The endpoint's model.
    #[arg(long, default_value = "gpt-4o-mini")]
    model: String,
    /// Latency of a simulated model call, in milliseconds.
    #[arg(long, default_value_t = 200)]
    latency_ms: u64,
    /// Worker nodes only: NAME LISTEN SEED.
    #[arg(long, hide = true, num_args = 3)]
    worker: Vec<String>,
}

impl Args {
    fn model(&self) -> Arc<dyn LanguageModel> {
        match &self.openai_url {
            Some(url) => Arc::new(OpenAiClient::new("openai", &self.model, Some(url.clone()), None, WAIT)),
            None => Arc::new(SimulatedModel::new(SimulatedConfig {
                latency: Duration::from_millis(self.latency_ms),
                ..Default::default()
            })),
        }
    }
}

/// One job, as the planner writes it and a worker reads it (on any node: plain serde).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Job {
    id: usize,
    question: String,
    tool: String,
    args: Value,
    /// The critic's comment, when it sent the job back.
    feedback: Option<String>,
}

/// A worker's answer: the tool's result and the model's sentence.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Answer {
    value: Value,
    text: String,
    /// Whether it answers a job the critic sent back.
    revised: bool,
}

/// Turns a batch into jobs. It has no model: a step may be plain code.
struct Planner;

impl Agent for Planner {
    type Input = String;
    type Output = Vec<Job>;

    async fn step(&mut self, _: &mut AgentContext, batch: String) -> Result<Vec<Job>, AgentError> {
        let job = |(i, line): (usize, &str)| {
            let (id, feedback) = (i + 1, None);
            let (question, tool, args) = match line.split_once(':').map(|(k, rest)| (k, rest.trim())) {
                Some(("sum", rest)) => {
                    let numbers: Result<Vec<i64>, _> = rest.split_whitespace().map(str::parse).collect();
                    let numbers = numbers.map_err(|e| AgentError::step(format!("`{line}`: {e}")))?;
                    (format!("What is {}?", rest.replace(' ', " + ")), "sum", json!({ "numbers": numbers }))
                }
                Some(("words", text)) => {
                    (format!("How many words are in \"{text}\"?"), "word_count", json!({ "text": text }))
                }
                _ => return Err(AgentError::step(format!("cannot plan `{line}`: not `sum:` or `words:`"))),
            };
            Ok(Job { id, question, tool: tool.into(), args, feedback })
        };
        batch.lines().map(str::trim).filter(|l| !l.is_empty()).enumerate().map(job).collect()
    }
}

/// Solves a job: the tool computes, the model phrases the answer.
struct Worker;

impl Agent for Worker {
    type Input = Job;
    type Output = Answer;

    async fn step(&mut self, ctx: &mut AgentContext, job: Job) -> Result<Answer, AgentError> {
        let value = ctx.call_tool(&job.tool, job.args.clone()).await?;
        let mut prompt = format!("{} The {} tool says {value}.", job.question, job.tool);
        if let Some(feedback) = &job.feedback {
            prompt.push_str(&format!(" A reviewer asked for a revision: {feedback}."));
        }
        let text = ctx.complete(ChatRequest::prompt(prompt + " Reply with one sentence.")).await?.content;
        Ok(Answer { value, text: text.replace('\n', " "), revised: job.feedback.is_some() })
    }
}

/// The workers' typed tools: arguments and results are serde types.
fn tools() -> anyhow::Result<Tools> {
    #[derive(Deserialize, schemars::JsonSchema)]
    struct Numbers {
        numbers: Vec<i64>,
    }
    #[derive(Deserialize, schemars::JsonSchema)]
    struct Text {
        text: String,
    }
    let mut tools = Tools::new();
    tools.register("sum", "adds integers", |n: Numbers| async move {
        n.numbers.iter().try_fold(0i64, |a, b| a.checked_add(*b)).ok_or_else(|| "overflow".into())
    })?;
    tools.register("word_count", "counts the words of a text", |t: Text| async move {
        Ok::<_, foundation_core::BoxError>(t.text.split_whitespace().count())
    })?;
    Ok(tools)
}

/// What the critic reviews, and its decision in the model's words.
#[derive(Serialize, Deserialize)]
struct Review {
    question: String,
    answer: Answer,
}

#[derive(Serialize, Deserialize)]
struct Verdict {
    accept: bool,
    comment: String,
}

/// The critic's instructions and demonstrations: a real model follows them; the simulated one
/// answers with the verdict and comment of the most similar demonstration.
const CRITIC_PROMPT: &str = "Review answers to tasks. Verdict is one of accept, revise.\n---\n\
    Task: What is 12 + 30 + 4?\nAnswer: 46\nVerdict: accept\nComment: correct\n---\n\
    Task: How many words are in \"the early bird catches the worm\"?\nAnswer: 6\nVerdict: accept\n\
    Comment: correct\n---\n\
    Task: What is 100 + -1 + -99?\nAnswer: 0\nVerdict: revise\nComment: negative numbers, check the signs\n---\n\
    Task: What is 100 + -1 + -99?\nAnswer: 0 (checked again after review)\nVerdict: accept\n\
    Comment: the signs are right";

/// Reviews a worker's result through the model.
struct Critic;

impl Agent for Critic {
    type Input = Review;
    type Output = Verdict;

    async fn step(&mut self, ctx: &mut AgentContext, review: Review) -> Result<Verdict, AgentError> {
        let Review { question, answer } = review;
        let again = if answer.revised { " (checked again after review)" } else { "" };
        let prompt = format!("{CRITIC_PROMPT}\n---\nTask: {question}\nAnswer: {}{again}\n", answer.value);
        let request = ChatRequest::prompt(prompt + "Verdict:\nComment:").max_tokens(64);
        let reply = ctx.complete(request).await?.content;
        let field = |name: &str| reply.lines().find_map(|l| l.trim().strip_prefix(name)).map(str::trim);
        let accept = !field("Verdict:").unwrap_or(&reply).to_lowercase().contains("revise");
        Ok(Verdict { accept, comment: field("Comment:").unwrap_or(&reply).replace('\n', " ") })
    }
}

/// A worker node's bidder: its cost is its worker's load; an awarded job goes to the worker.
struct WorkerBidder {
    node: String,
    worker: AgentHandle<Worker>,
    load: AtomicUsize,
}

impl Bidder for WorkerBidder {
    fn bid(&self, _: &Task) -> Option<f64> {
        Some(self.load.load(Ordering::SeqCst) as f64)
    }

    async fn perform(&self, task: Task) -> Result<Value, foundation_core::BoxError> {
        let job: Job = serde_json::from_value(task.payload)?;
        println!("{}: solving job {} (task {})", self.node, job.id, task.id);
        self.load.fetch_add(1, Ordering::SeqCst);
        let answer = self.worker.ask(job, WAIT).await;
        self.load.fetch_sub(1, Ordering::SeqCst);
        Ok(serde_json::to_value(answer?)?)
    }
}

fn node_config(listen: &str, seeds: &[&str], cookie: String) -> anyhow::Result<ClusterConfig> {
    let seeds = seeds.iter().map(|s| s.parse()).collect::<Result<_, _>>()?;
    Ok(ClusterConfig { listen: listen.parse()?, seeds, cookie, ..Default::default() })
}

/// A worker node (n2, n3): its worker agent and its bidder, until its standard input closes.
async fn worker_node(args: &Args, name: &str, listen: &str, seed: &str) -> anyhow::Result<()> {
    // n1 holds our standard input: it closes when n1 stops us, or dies (even while we start).
    let mut stdin_closed =
        tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink()));
    tokio::select! {
        started = serve_worker(args, name, listen, seed) => {
            let (cluster, _coordination, _bids) = started?;
            let _ = (&mut stdin_closed).await;
            cluster.shutdown().await;
        }
        _ = &mut stdin_closed => {}
    }
    Ok(())
}

/// Starts a worker node: its cluster node, coordinator, worker agent and bidder.
async fn serve_worker(
    args: &Args,
    name: &str,
    listen: &str,
    seed: &str,
) -> anyhow::Result<(Cluster, Coordination, BidderHandle)> {
    let config = node_config(listen, &[seed], std::env::var(COOKIE_ENV).context(COOKIE_ENV)?)?;
    let cluster = Cluster::start(name, &config, None).await?;
    cluster.wait_for_members(1, WAIT).await?;
    let registry = ServiceRegistry::start().await?;
    let coordination = Coordination::start(&cluster, CoordinationConfig::default()).await?;
    let worker = AgentSpec::new(format!("worker-{name}"), || Worker)
        .shared_model(args.model())
        .tools(tools()?)
        .capabilities(["solve"])
        .max_message_bytes(cluster.max_frame_bytes())
        .start(&registry)
        .await?;
    let bidder = WorkerBidder { node: name.to_string(), worker, load: AtomicUsize::new(0) };
    let bids = coordination.serve_bids("solve", bidder).await?;
    println!("{name}: worker ready, bidding for `solve`");
    Ok((cluster, coordination, bids))
}

/// The worker node processes; stopped when dropped (also on an error or a panic).
struct Nodes(Mutex<Vec<(String, Child)>>);

impl Nodes {
    /// Starts `name`, seeded with n1; its output lines go to `lines`.
    fn start(&self, name: &str, seed: &str, cookie: &str, args: &Args, lines: &Lines) -> anyhow::Result<()> {
        let listen = format!("127.0.0.1:{}", free_port()?);
        let mut command = Command::new(std::env::current_exe()?);
        command.args(["--worker", name, &listen, seed, "--model", &args.model]);
        command.args(["--latency-ms", &args.latency_ms.to_string()]);
        command.args(args.openai_url.iter().flat_map(|url| ["--openai-url", url]));
        command.env(COOKIE_ENV, cookie).stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut child = command.spawn()?;
        let (stdout, lines, name) = (child.stdout.take().context("stdout")?, lines.clone(), name.to_string());
        self.0.lock_or_recover().push((name.clone(), child));
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines.send((name.clone(), line));
            }
        });
        Ok(())
    }

    fn kill(&self, name: &str) {
        for (_, child) in self.0.lock_or_recover().iter_mut().filter(|(n, _)| n == name) {
            let _ = child.kill(); // SIGKILL
        }
    }

    /// Closes their input: each leaves the cluster and exits, or is killed after 5 s.
    fn stop(&self) {
        for (_, mut child) in self.0.lock_or_recover().drain(..) {
            drop(child.stdin.take());
            for _ in 0..50 {
                if !matches!(child.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The worker nodes' output: (node, line).
type Lines = tokio::sync::mpsc::UnboundedSender<(String, String)>;

/// ` (a, b)`, or nothing for no items.
fn listed(items: &[String]) -> String {
    if items.is_empty() { String::new() } else { format!(" ({})", items.join(", ")) }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// What became of one job.
struct Outcome {
    id: usize,
    node: String,
    /// Nodes that finished it after its winner was lost.
    reannounced_to: Vec<String>,
    sent_back: bool,
}

/// Allocates a job by contract net and has the critic review the result; sends it back once.
async fn solve(coordination: Coordination, critic: AgentRef, mut job: Job) -> Result<Outcome, String> {
    let options =
        AllocateOptions { bid_window: Duration::from_millis(200), work_timeout: WAIT, max_rounds: 5 };
    let mut reannounced_to = Vec::new();
    loop {
        let awarded =
            coordination.allocate("solve", json!(job), &options).await.map_err(|e| e.to_string())?;
        if !awarded.lost.is_empty() {
            let lost = awarded.lost.join("; ");
            println!(
                "job {}: its winner was lost ({lost}); announced again, done on {}",
                job.id, awarded.node
            );
            reannounced_to.push(awarded.node.clone());
        }
        let answer: Answer = serde_json::from_value(awarded.result).map_err(|e| e.to_string())?;
        let review = Review { question: job.question.clone(), answer: answer.clone() };
        let verdict: Verdict = critic.ask(review, WAIT).await.map_err(|e| e.to_string())?;
        let sent_back = job.feedback.is_some();
        if verdict.accept || sent_back {
            let (node, how) = (awarded.node, if verdict.accept { "accepted" } else { "kept" });
            println!("job {} done on {node}: {} [{how}] {:?}", job.id, answer.value, answer.text);
            return Ok(Outcome { id: job.id, node, reannounced_to, sent_back });
        }
        println!("job {}: the critic sent it back: {}", job.id, verdict.comment);
        job.feedback = Some(verdict.comment);
    }
}

/// n1: starts n2 and n3, runs the planner and the critic, hands out the jobs, kills n3 partway.
async fn lead(args: &Args) -> anyhow::Result<bool> {
    let nanos = std::time::UNIX_EPOCH.elapsed()?.subsec_nanos();
    let cookie = format!("agent-team-{}-{nanos}", std::process::id());
    let listen = format!("127.0.0.1:{}", free_port()?);
    let cluster = Cluster::start("n1", &node_config(&listen, &[], cookie.clone())?, None).await?;
    let registry = ServiceRegistry::start().await?;
    let coordination = Coordination::start(&cluster, CoordinationConfig::default()).await?;
    let (nodes, (lines, mut output)) =
        (Arc::new(Nodes(Mutex::default())), tokio::sync::mpsc::unbounded_channel());
    for name in ["n2", "n3"] {
        nodes.start(name, &listen, &cookie, args, &lines)?;
    }

    // Echo the worker nodes' lines; SIGKILL n3 once it has started `kill_after` jobs.
    let killed = Arc::new(AtomicBool::new(false));
    let (weak, kill_after, was_killed) = (Arc::downgrade(&nodes), args.kill_after, killed.clone());
    tokio::spawn(async move {
        let mut started = 0;
        while let Some((node, line)) = output.recv().await {
            println!("  [{node}] {line}");
            if node == "n3" && line.contains("solving job") {
                started += 1;
                if let (true, Some(nodes)) = (started == kill_after, weak.upgrade()) {
                    nodes.kill("n3");
                    was_killed.store(true, Ordering::SeqCst);
                    println!("n1: SIGKILL n3 while it works ({line})");
                }
            }
        }
    });

    cluster.wait_for_members(2, WAIT).await?;
    let planner = AgentSpec::new("planner", || Planner).capabilities(["plan"]).start(&registry).await?;
    let critic = AgentSpec::new("critic", || Critic).shared_model(args.model()).capabilities(["review"]);
    let critic = critic.start(&registry).await?;

    // The workers, found by capability (every node's registry sees the agents of every node),
    // and their bidders.
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut workers = AgentRef::find_all(&registry, "solve");
    while workers.len() < 2 || coordination.bidders("solve").await.len() < 2 {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the two workers did not show up within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        workers = AgentRef::find_all(&registry, "solve");
    }
    for worker in workers {
        let worker = worker.with_max_message_bytes(cluster.max_frame_bytes());
        let args = json!({ "numbers": [2, 2] });
        let probe = Job { id: 0, question: "2 + 2?".into(), tool: "sum".into(), args, feedback: None };
        let answer: Answer = worker.ask(probe, WAIT).await?; // across nodes, no bidding
        println!(
            "found {} (remote: {}); asked it directly: 2 + 2 = {}",
            worker.name(),
            !worker.is_local(),
            answer.value
        );
    }

    let jobs = planner.ask(BATCH.to_string(), WAIT).await?;
    println!("planner: {} jobs", jobs.len());
    let critic_ref = AgentRef::find(&registry, "review")?;
    let mut running = tokio::task::JoinSet::new();
    for job in &jobs {
        running.spawn(solve(coordination.clone(), critic_ref.clone(), job.clone()));
        tokio::time::sleep(Duration::from_millis(100)).await; // a steady stream of work
    }
    let mut done = Vec::new();
    while let Some(outcome) = running.join_next().await {
        match outcome {
            Ok(Ok(outcome)) => done.push(outcome),
            Ok(Err(e)) => println!("a job failed: {e}"),
            Err(e) => println!("a job's task failed: {e}"),
        }
    }
    done.sort_by_key(|o| o.id);

    let on = |node: &str| done.iter().filter(|o| o.node == node).count();
    println!("== summary ==");
    println!("jobs done: {} of {} (n2: {}, n3: {})", done.len(), jobs.len(), on("n2"), on("n3"));
    println!("n3 killed mid-run: {}", if killed.load(Ordering::SeqCst) { "yes" } else { "no" });
    let moved: Vec<String> = done
        .iter()
        .flat_map(|o| o.reannounced_to.iter().map(|n| format!("job {} done on {n}", o.id)))
        .collect();
    println!("re-announced after their node was lost: {}{}", moved.len(), listed(&moved));
    let back: Vec<String> = done.iter().filter(|o| o.sent_back).map(|o| format!("job {}", o.id)).collect();
    println!("sent back by the critic: {}{}", back.len(), listed(&back));
    planner.stop().await;
    critic.stop().await;
    tokio::task::block_in_place(|| nodes.stop()); // the worker nodes leave
    cluster.shutdown().await;
    Ok(done.len() == jobs.len())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let [name, listen, seed] = &args.worker[..] {
        return worker_node(&args, name, listen, seed).await;
    }
    anyhow::ensure!(lead(&args).await?, "some jobs did not complete");
    println!("all jobs completed");
    Ok(())
}

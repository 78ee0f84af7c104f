//! `foundation baseline record|compare`: latency baselines per operation, cluster-wide.
//!
//! `record` joins the cluster as an observer (as `cluster metrics` does), merges every node's
//! histograms (each a DDSketch over the telemetry window, so a recording describes the last
//! minute or so of work: run the workload, then record) and writes, per operation (a histogram
//! with its labels), its sample count and its p50, p90, p99 and max, to a JSON file. `compare`
//! reads the cluster again and reports, per operation in the baseline, whether its p50 or p99
//! grew past the tolerance (a regression), shrank past it (an improvement), or stayed within;
//! operations with fewer samples than `--min-samples` on either side are said to be too few to
//! judge, operations new or gone are listed. Exit status: 0 with no regression, 1 with one or
//! more, 2 when the baseline cannot be read or no node answers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};

use crate::cluster_cmd::{HistogramReach as Reach, observe, observer_runtime};

/// The version of the baseline file this build writes and reads.
const BASELINE_VERSION: u32 = 1;

/// `foundation baseline`.
#[derive(Debug, Subcommand)]
pub enum BaselineCommand {
    /// Read every node's histograms (the nodes that serve `--metrics`), merged over the
    /// cluster, and write each operation's count and percentiles to a file.
    Record(RecordArgs),
    /// Read the cluster again and compare each operation with a recorded baseline: exit 1 if
    /// any p50 or p99 grew past the tolerance.
    Compare(CompareArgs),
}

/// Options of `foundation baseline record`.
#[derive(Debug, Args)]
pub struct RecordArgs {
    #[command(flatten)]
    reach: Reach,
    /// The file to write.
    #[arg(long)]
    out: PathBuf,
}

/// Options of `foundation baseline compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    #[command(flatten)]
    reach: Reach,
    /// The baseline file `record` wrote.
    #[arg(long)]
    baseline: PathBuf,
    /// How much a percentile may grow before it is a regression (0.2: 20 %).
    #[arg(long, default_value_t = 0.2)]
    tolerance: f64,
    /// Samples an operation needs, in the baseline and now, to be judged.
    #[arg(long, default_value_t = 20)]
    min_samples: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// One operation's latency as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    /// The histogram.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Samples in the window, over every node.
    pub count: u64,
    /// Median (the histogram's unit: seconds for `_seconds`).
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest sample.
    pub max: f64,
}

impl Operation {
    /// `name{k="v",…}`.
    fn id(&self) -> String {
        let labels: Vec<String> = self.labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        if labels.is_empty() { self.name.clone() } else { format!("{}{{{}}}", self.name, labels.join(",")) }
    }
}

/// A baseline file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// [`BASELINE_VERSION`].
    pub version: u32,
    /// When it was recorded, in milliseconds since the Unix epoch.
    pub recorded_unix_ms: u64,
    /// The nodes whose readings it holds.
    pub nodes: Vec<String>,
    /// Every operation with samples.
    pub operations: Vec<Operation>,
}

/// What `compare` concluded about one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Within the tolerance.
    Ok,
    /// Its p50 or p99 grew past the tolerance.
    Regressed,
    /// Both shrank past it.
    Improved,
    /// Too few samples on one side to judge.
    TooFewSamples,
    /// In the baseline, not measured now.
    Gone,
    /// Measured now, not in the baseline.
    New,
}

/// One operation compared.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// `name{labels}`.
    pub operation: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Baseline then now, when both exist.
    pub p50: Option<(f64, f64)>,
    /// Baseline then now, when both exist.
    pub p99: Option<(f64, f64)>,
    /// Samples, baseline then now (0 when absent).
    pub count: (u64, u64),
}

/// Compares `now` with `base`: every operation of either, in operation order.
pub fn compare(base: &Baseline, now: &Baseline, tolerance: f64, min_samples: u64) -> Vec<Comparison> {
    let index = |b: &Baseline| b.operations.iter().map(|o| (o.id(), o.clone())).collect::<BTreeMap<_, _>>();
    let (before, after) = (index(base), index(now));
    let mut ids: Vec<&String> = before.keys().chain(after.keys()).collect();
    ids.sort();
    ids.dedup();
    ids.into_iter()
        .map(|id| {
            let (b, a) = (before.get(id), after.get(id));
            let count = (b.map_or(0, |o| o.count), a.map_or(0, |o| o.count));
            let pair = |f: fn(&Operation) -> f64| b.zip(a).map(|(b, a)| (f(b), f(a)));
            let (p50, p99) = (pair(|o| o.p50), pair(|o| o.p99));
            let grew = |(b, a): (f64, f64)| a > b * (1.0 + tolerance);
            let shrank = |(b, a): (f64, f64)| a * (1.0 + tolerance) < b;
            let verdict = match (b, a) {
                (Some(_), None) => Verdict::Gone,
                (None, _) => Verdict::New,
                _ if count.0 < min_samples || count.1 < min_samples => Verdict::TooFewSamples,
                _ if p50.is_some_and(grew) || p99.is_some_and(grew) => Verdict::Regressed,
                _ if p50.is_some_and(shrank) && p99.is_some_and(shrank) => Verdict::Improved,
                _ => Verdict::Ok,
            };
            Comparison { operation: id.clone(), verdict, p50, p99, count }
        })
        .collect()
}

/// Runs a `baseline` command.
pub fn run(config_file: Option<PathBuf>, command: BaselineCommand) -> anyhow::Result<ExitCode> {
    match command {
        BaselineCommand::Record(args) => record(config_file.as_deref(), args),
        BaselineCommand::Compare(args) => compare_cmd(config_file.as_deref(), args),
    }
}

/// The cluster's operations now (`None`, after saying why, when no node answered).
fn measure(config_file: Option<&Path>, reach: &Reach) -> anyhow::Result<Result<Baseline, ExitCode>> {
    let (runtime, tls) = match observer_runtime(config_file)? {
        Ok(both) => both,
        Err(code) => return Ok(Err(code)),
    };
    runtime.block_on(async {
        let Some(observer) = observe(&reach.seeds, &reach.cookie, tls, reach.timeout).await? else {
            return Ok(Err(ExitCode::from(2)));
        };
        let found = foundation_cluster::cluster_metrics::collect(&observer, reach.timeout).await;
        observer.shutdown().await;
        if found.answered.is_empty() {
            eprintln!("no node shared its metrics (start the nodes with --metrics)");
            return Ok(Err(ExitCode::from(2)));
        }
        let operations = found
            .histograms
            .iter()
            .filter(|h| h.name.starts_with(&reach.prefix) && h.merged.count() > 0)
            .map(|h| Operation {
                name: h.name.clone(),
                labels: h.labels.iter().cloned().collect(),
                count: h.merged.count(),
                p50: h.merged.p50().unwrap_or(0.0),
                p90: h.merged.p90().unwrap_or(0.0),
                p99: h.merged.p99().unwrap_or(0.0),
                max: h.merged.max().unwrap_or(0.0),
            })
            .collect();
        let recorded_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Ok(Ok(Baseline { version: BASELINE_VERSION, recorded_unix_ms, nodes: found.answered, operations }))
    })
}

fn record(config_file: Option<&Path>, args: RecordArgs) -> anyhow::Result<ExitCode> {
    let baseline = match measure(config_file, &args.reach)? {
        Ok(baseline) => baseline,
        Err(code) => return Ok(code),
    };
    let text = serde_json::to_string_pretty(&baseline)?;
    if let Err(e) = std::fs::write(&args.out, text + "\n") {
        eprintln!("cannot write the baseline to {}: {e}", args.out.display());
        return Ok(ExitCode::from(2));
    }
    println!(
        "recorded {} operations from {} nodes ({}) to {}",
        baseline.operations.len(),
        baseline.nodes.len(),
        baseline.nodes.join(", "),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The baseline in `path`, or why it cannot be used.
fn read_baseline(path: &Path) -> Result<Baseline, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the baseline {}: {e}", path.display()))?;
    let baseline: Baseline = serde_json::from_str(&text).map_err(|e| {
        format!("{} is not a baseline `foundation baseline record` wrote: {e}", path.display())
    })?;
    if baseline.version != BASELINE_VERSION {
        return Err(format!(
            "{} is a version {} baseline; this build reads version {BASELINE_VERSION}",
            path.display(),
            baseline.version
        ));
    }
    Ok(baseline)
}

fn compare_cmd(config_file: Option<&Path>, args: CompareArgs) -> anyhow::Result<ExitCode> {
    if !(args.tolerance.is_finite() && args.tolerance >= 0.0) {
        eprintln!("--tolerance {} is not a share (0.2 for 20 %)", args.tolerance);
        return Ok(ExitCode::from(2));
    }
    // Read before reaching the cluster: a wrong path is said at once.
    let base = match read_baseline(&args.baseline) {
        Ok(base) => base,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
    };
    let now = match measure(config_file, &args.reach)? {
        Ok(now) => now,
        Err(code) => return Ok(code),
    };
    let report = compare(&base, &now, args.tolerance, args.min_samples);
    let regressions = report.iter().filter(|c| c.verdict == Verdict::Regressed).count();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"regressions": regressions, "operations": report})
            )?
        );
    } else {
        println!("{:<70} {:>24} {:>24}  VERDICT", "OPERATION", "P50 BASE → NOW", "P99 BASE → NOW");
        let pair = |p: Option<(f64, f64)>| p.map_or("-".to_string(), |(b, a)| format!("{b:.6} → {a:.6}"));
        for c in &report {
            let verdict = serde_json::to_value(c.verdict).ok().and_then(|v| v.as_str().map(str::to_string));
            println!(
                "{:<70} {:>24} {:>24}  {}",
                c.operation,
                pair(c.p50),
                pair(c.p99),
                verdict.unwrap_or_default()
            );
        }
        println!(
            "{regressions} regressions over {} operations (tolerance {:.0} %, at least {} samples)",
            report.len(),
            args.tolerance * 100.0,
            args.min_samples
        );
    }
    Ok(if regressions > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(name: &str, count: u64, p50: f64, p99: f64) -> Operation {
        Operation { name: name.into(), labels: BTreeMap::new(), count, p50, p90: p99, p99, max: p99 }
    }

    fn baseline(operations: Vec<Operation>) -> Baseline {
        Baseline { version: BASELINE_VERSION, recorded_unix_ms: 0, nodes: vec!["n1".into()], operations }
    }

    #[test]
    fn each_operation_gets_a_verdict() {
        let base = baseline(vec![
            op("steady", 100, 1.0, 2.0),
            op("slower_tail", 100, 1.0, 2.0),
            op("faster", 100, 1.0, 2.0),
            op("rare", 5, 1.0, 2.0),
            op("gone", 100, 1.0, 2.0),
        ]);
        let now = baseline(vec![
            op("steady", 100, 1.1, 2.3),
            op("slower_tail", 100, 1.0, 2.5),
            op("faster", 100, 0.5, 1.0),
            op("rare", 500, 9.0, 9.0),
            op("new", 100, 1.0, 1.0),
        ]);
        let verdicts: Vec<(String, Verdict)> =
            compare(&base, &now, 0.2, 20).into_iter().map(|c| (c.operation, c.verdict)).collect();
        let expected = [
            ("faster", Verdict::Improved),
            ("gone", Verdict::Gone),
            ("new", Verdict::New),
            ("rare", Verdict::TooFewSamples),
            ("slower_tail", Verdict::Regressed),
            ("steady", Verdict::Ok),
        ];
        assert_eq!(verdicts, expected.map(|(o, v)| (o.to_string(), v)));
    }
}

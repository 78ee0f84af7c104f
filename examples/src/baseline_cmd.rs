//! `foundation baseline record|compare`: latency baselines per operation, cluster-wide.
//!
//! `record` joins the cluster as an observer (as `cluster metrics` does), merges every node's
//! histograms (each a DDSketch over the telemetry window, so a recording describes the last
//! minute or so of work: run the workload, then record) and writes, per operation (a histogram
//! with its labels), its sample count and its p50, p90, p99 and max, to a JSON file. `compare`
//! reads the cluster again (the histograms the baseline was recorded from: its prefix) and
//! reports, per operation, whether its p50 or p99 grew past the tolerance (a regression: more
//! than `tolerance × |baseline|` and more than `--min-delta` above it, so a zero baseline does
//! not make noise a regression), shrank past it (an improvement), or stayed within; operations
//! with fewer samples than `--min-samples` on either side are too few to judge, operations new
//! or gone are listed. Exit status: 0 with no regression, 1 with one or more, 2 when nothing
//! could be judged (no operation measured on both sides: the workload ran more than a window
//! ago?), when the baseline cannot be read or holds no operation, or when the cluster cannot be
//! reached. A node of the baseline that did not answer now is said.

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
    /// How much a percentile must grow, in the histogram's unit, before it is a regression
    /// whatever the tolerance (a baseline of 0 grows by any sample).
    #[arg(long, default_value_t = 0.000_1)]
    min_delta: f64,
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
    /// The histograms it was recorded from (a name prefix; empty: all).
    pub prefix: String,
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

/// How a comparison judges.
#[derive(Debug, Clone, Copy)]
pub struct Judging {
    /// Growth allowed, as a share of the baseline's magnitude.
    pub tolerance: f64,
    /// Growth allowed whatever the tolerance, in the histogram's unit.
    pub min_delta: f64,
    /// Samples needed on both sides.
    pub min_samples: u64,
}

/// Compares `now` with `base`: every operation of either, in operation order.
pub fn compare(base: &Baseline, now: &Baseline, judging: Judging) -> Vec<Comparison> {
    let Judging { tolerance, min_delta, min_samples } = judging;
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
            // Against the baseline's magnitude (a negative or zero one included), and by more
            // than the smallest change worth a verdict.
            let allowed = |b: f64| (tolerance * b.abs()).max(min_delta);
            let grew = |(b, a): (f64, f64)| a - b > allowed(b);
            let shrank = |(b, a): (f64, f64)| b - a > allowed(b);
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
fn measure(
    config_file: Option<&Path>,
    reach: &Reach,
    prefix: &str,
) -> anyhow::Result<Result<Baseline, ExitCode>> {
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
            .filter(|h| h.name.starts_with(prefix) && h.merged.count() > 0)
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
        for (node, why) in found
            .missing
            .iter()
            .filter(|(n, _)| !n.starts_with(foundation_cluster::singleton::OBSERVER_PREFIX))
        {
            eprintln!("{node} is not in this reading: {why}");
        }
        let nodes = found.answered;
        Ok(Ok(Baseline {
            version: BASELINE_VERSION,
            recorded_unix_ms,
            nodes,
            prefix: prefix.to_string(),
            operations,
        }))
    })
}

fn record(config_file: Option<&Path>, args: RecordArgs) -> anyhow::Result<ExitCode> {
    let baseline = match measure(config_file, &args.reach, &args.reach.prefix) {
        Ok(Ok(baseline)) => baseline,
        Ok(Err(code)) => return Ok(code),
        Err(e) => {
            eprintln!("cannot read the cluster: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    if baseline.operations.is_empty() {
        let which = if args.reach.prefix.is_empty() {
            String::new()
        } else {
            format!(" starting with `{}`", args.reach.prefix)
        };
        eprintln!(
            "no histogram{which} has samples: nothing to record (run the workload first: a reading covers the telemetry window)"
        );
        return Ok(ExitCode::from(2));
    }
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
    if baseline.operations.is_empty() {
        return Err(format!("{} holds no operation: nothing to compare with", path.display()));
    }
    Ok(baseline)
}

fn compare_cmd(config_file: Option<&Path>, args: CompareArgs) -> anyhow::Result<ExitCode> {
    if !(args.tolerance.is_finite() && args.tolerance >= 0.0) {
        eprintln!("--tolerance {} is not a share (0.2 for 20 %)", args.tolerance);
        return Ok(ExitCode::from(2));
    }
    if !(args.min_delta.is_finite() && args.min_delta >= 0.0) {
        eprintln!("--min-delta {} is not a non-negative number", args.min_delta);
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
    // The histograms the baseline holds (its prefix), narrowed by --prefix if given.
    let prefix = if args.reach.prefix.is_empty() { base.prefix.clone() } else { args.reach.prefix.clone() };
    let now = match measure(config_file, &args.reach, &prefix) {
        Ok(Ok(now)) => now,
        Ok(Err(code)) => return Ok(code),
        Err(e) => {
            eprintln!("cannot read the cluster: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    for node in base.nodes.iter().filter(|n| !now.nodes.contains(n)) {
        eprintln!("{node} is in the baseline but did not answer now: its samples are not compared");
    }
    let mut base = base;
    base.operations.retain(|o| o.name.starts_with(&prefix));
    let judging =
        Judging { tolerance: args.tolerance, min_delta: args.min_delta, min_samples: args.min_samples };
    let report = compare(&base, &now, judging);
    let regressions = report.iter().filter(|c| c.verdict == Verdict::Regressed).count();
    let judged = report
        .iter()
        .filter(|c| matches!(c.verdict, Verdict::Ok | Verdict::Regressed | Verdict::Improved))
        .count();
    if args.json {
        let summary = serde_json::json!({"regressions": regressions, "judged": judged, "operations": report});
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!("{:<70} {:>24} {:>24}  VERDICT", "OPERATION", "P50 BASE → NOW", "P99 BASE → NOW");
        let pair = |p: Option<(f64, f64)>| p.map_or("-".to_string(), |(b, a)| format!("{b:.4e} → {a:.4e}"));
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
        let count = |v: Verdict| report.iter().filter(|c| c.verdict == v).count();
        println!(
            "{regressions} regressions; {judged} operations judged, {} too few samples, {} gone, {} new (tolerance {:.0} %, at least {} samples)",
            count(Verdict::TooFewSamples),
            count(Verdict::Gone),
            count(Verdict::New),
            args.tolerance * 100.0,
            args.min_samples
        );
    }
    if judged == 0 {
        eprintln!(
            "no operation could be judged: none was measured now with enough samples (the workload ran more than a telemetry window ago?)"
        );
        return Ok(ExitCode::from(2));
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
        Baseline {
            version: BASELINE_VERSION,
            recorded_unix_ms: 0,
            nodes: vec!["n1".into()],
            prefix: String::new(),
            operations,
        }
    }

    #[test]
    fn each_operation_gets_a_verdict() {
        let base = baseline(vec![
            op("steady", 100, 1.0, 2.0),
            op("slower_tail", 100, 1.0, 2.0),
            op("faster", 100, 1.0, 2.0),
            op("rare", 5, 1.0, 2.0),
            op("gone", 100, 1.0, 2.0),
            op("idle_pool", 100, 0.0, 0.0),
            op("below_zero", 100, -1.0, -1.0),
        ]);
        let now = baseline(vec![
            op("steady", 100, 1.1, 2.3),
            op("slower_tail", 100, 1.0, 2.5),
            op("faster", 100, 0.5, 1.0),
            op("rare", 500, 9.0, 9.0),
            op("new", 100, 1.0, 1.0),
            // A zero baseline: 50 µs is noise under --min-delta.
            op("idle_pool", 100, 0.0, 0.000_05),
            op("below_zero", 100, -1.0, -1.0),
        ]);
        let verdicts: Vec<(String, Verdict)> =
            compare(&base, &now, JUDGING).into_iter().map(|c| (c.operation, c.verdict)).collect();
        let expected = [
            ("below_zero", Verdict::Ok),
            ("faster", Verdict::Improved),
            ("gone", Verdict::Gone),
            ("idle_pool", Verdict::Ok),
            ("new", Verdict::New),
            ("rare", Verdict::TooFewSamples),
            ("slower_tail", Verdict::Regressed),
            ("steady", Verdict::Ok),
        ];
        assert_eq!(verdicts, expected.map(|(o, v)| (o.to_string(), v)));
        // ... but 5 ms more than a zero baseline is a regression.
        let slower = baseline(vec![op("idle_pool", 100, 0.0, 0.005)]);
        let base = baseline(vec![op("idle_pool", 100, 0.0, 0.0)]);
        assert_eq!(compare(&base, &slower, JUDGING)[0].verdict, Verdict::Regressed);
    }

    const JUDGING: Judging = Judging { tolerance: 0.2, min_delta: 0.000_1, min_samples: 20 };
}

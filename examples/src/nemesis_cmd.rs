//! `foundation nemesis`: node processes on test hosts (network namespaces) under a seeded random
//! schedule of faults while clients on every node record a history; prints the checked summary
//! and exits 1 if it found anomalies, 2 if the run could not be made (no right to create
//! namespaces: run it as root, or with `CAP_SYS_ADMIN` and `CAP_NET_ADMIN`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use foundation_cluster::testkit::nemesis::{self, NemesisConfig};

/// Options of `foundation nemesis`.
#[derive(Debug, Args)]
pub struct NemesisArgs {
    /// How many nodes (3 to 9).
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// The schedule's seed (the same seed gives the same faults at the same offsets).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How long to inject faults: `90s`, `10m`, or seconds.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Where to keep the histories and the nodes' state (a new or empty directory; default: a
    /// new one under the temporary directory).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Print only the summary, not each fault as it is injected.
    #[arg(long)]
    quiet: bool,
    /// Print the schedule this seed gives and exit (runs nothing; needs no privileges).
    #[arg(long)]
    plan: bool,
}

/// `90s`, `10m`, `1h` or a number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number.parse().map_err(|_| format!("`{text}` is not a duration like 90s or 10m"))?;
    match unit {
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("`{text}`: the unit is s, m or h")),
    }
}

/// Runs the nemesis; `config_file` is given to every node.
pub fn run(config_file: Option<PathBuf>, args: NemesisArgs) -> anyhow::Result<ExitCode> {
    if args.plan {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        for step in nemesis::plan(args.nodes.clamp(3, 9), args.seed, args.duration) {
            // A reader that went away (`| head`) ends the listing, not the program with a panic.
            if writeln!(out, "{:>8.1}s  {}", step.at.as_secs_f64(), step.action).is_err() {
                break;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut config = NemesisConfig::new(std::env::current_exe()?, args.nodes, args.seed, args.duration);
    config.dir = args.dir;
    config.config_file = config_file;
    config.verbose = !args.quiet;
    match nemesis::run(&config) {
        Ok(report) => {
            println!("{report}");
            Ok(if report.anomalies.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::from(2))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_bad_ones_say_why() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("ten").unwrap_err().contains("not a duration"));
        assert!(parse_duration("5d").unwrap_err().contains("unit"));
    }
}

//! The `foundation` binary, run as a user would run it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::io::Write;
use std::process::{Command, Output};

fn foundation(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_foundation"));
    cmd.args(args).env_remove("FOUNDATION_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run the foundation binary")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn tour_runs_and_shows_config_percentiles_metrics_and_an_error_history() {
    let out =
        foundation(&["tour", "--calls", "200", "--seed", "3"], &[("FOUNDATION_NODE__NAME", "demo-node")]);
    let text = stdout(&out);
    assert!(out.status.success(), "stdout:\n{text}\nstderr:\n{}", stderr(&out));
    assert!(text.contains("node `demo-node`"), "{text}");
    assert!(text.contains("200 samples in the window"), "{text}");
    for p in ["p50", "p90", "p99", "p99.9"] {
        assert!(text.contains(&format!("    {p} ")), "{p} missing:\n{text}");
    }
    // The scrape came back over HTTP with the histogram's quantiles and count.
    assert!(text.contains("demo_model_call_seconds{quantile=\"0.99\"}"), "{text}");
    assert!(text.contains("demo_model_call_seconds_count 200"), "{text}");
    // A failed call prints its steps, the third one failing.
    let history = text.split("[error context]").nth(1).expect("an error history");
    let build = history.find("build_prompt").unwrap();
    let call = history.find("call_model").unwrap();
    let parse = history.find("FAILED").unwrap();
    assert!(build < call && call < parse, "{history}");
    assert!(text.contains("`foundation demo`"), "{text}");
}

#[test]
fn tour_refuses_bad_config_with_the_key_named() {
    let out = foundation(&["tour"], &[("FOUNDATION_TELEMETRY__WINDOW", "forever")]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("telemetry.window"), "{err}");
    assert!(err.contains("FOUNDATION_TELEMETRY__WINDOW"), "{err}");
}

#[test]
fn config_check_prints_the_effective_config_or_names_what_is_wrong() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "[node]\nname = \"from-file\"\n[telemetry]\nwindow = \"30s\"").unwrap();
    let path = file.path().to_str().unwrap();
    let out =
        foundation(&["config", "check", "--config", path], &[("FOUNDATION_TELEMETRY__WINDOW_BUCKETS", "3")]);
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(text.contains("name = \"from-file\""), "{text}");
    assert!(text.contains("window = \"30s\""), "{text}");
    assert!(text.contains("window_buckets = 3"), "{text}");

    let mut bad = tempfile::NamedTempFile::new().unwrap();
    writeln!(bad, "[telemetry]\nquantiles = [0.5, 2.0]\nlisen = \"x\"").unwrap();
    let out = foundation(&["config", "check", "--config", bad.path().to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("`telemetry.lisen`"), "{}", stderr(&out));

    // The file may also come from FOUNDATION_CONFIG.
    let out = foundation(&["config", "check"], &[("FOUNDATION_CONFIG", path)]);
    assert!(stdout(&out).contains("from-file"), "{}", stderr(&out));
}

#[test]
fn tour_serves_metrics_on_the_configured_address_until_stopped() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::Stdio;

    let mut child = Command::new(env!("CARGO_BIN_EXE_foundation"))
        .args(["tour", "--calls", "50", "--keep-serving"])
        .env_remove("FOUNDATION_CONFIG")
        .env("FOUNDATION_TELEMETRY__LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill the child even if an assertion fails.
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let mut child = Reap(child);
    let mut addr = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("[telemetry] still serving http://") {
            addr = Some(rest.split('/').next().unwrap().to_string());
            break;
        }
    }
    let addr = addr.expect("the tour announces where it keeps serving");
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(response.contains("# TYPE demo_model_call_seconds summary"), "{response}");
    assert!(response.contains("demo_model_call_seconds{quantile=\"0.999\"}"), "{response}");
    assert!(response.contains("demo_model_call_seconds_count 50"), "{response}");

    // SIGTERM stops it cleanly (exit status 0).
    let pid = child.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn demo_optimizes_across_a_local_cluster_and_reports_scores_and_speed_up() {
    let out = foundation(
        &[
            "demo",
            "--nodes",
            "2",
            "--workers",
            "2",
            "--candidates",
            "2",
            "--latency-ms",
            "10",
            "--timeout",
            "120s",
        ],
        &[],
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(text.contains("Launched 2 nodes"), "{text}");
    // 5 candidates × 100 validation questions, each once.
    assert!(text.contains("evaluations                500 (each recorded once"), "{text}");
    let score = |label: &str| -> f64 {
        let line =
            text.lines().find(|l| l.starts_with(label)).unwrap_or_else(|| panic!("no {label} in {text}"));
        line[label.len()..].split_whitespace().next().unwrap().parse().unwrap()
    };
    assert!(score("optimized") > score("baseline (zero-shot)"), "{text}");
    assert!(text.contains("speed-up over one worker"), "{text}");
    // Bad options are refused with a reason.
    let out = foundation(&["demo", "--dataset", "imagenet"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unknown dataset `imagenet`; bundled: questions"), "{}", stderr(&out));
}

/// `foundation node` for a user: text replies, `help` lists every command it takes, and the
/// test hooks are neither listed nor taken (nor offered by `--help`).
#[test]
fn a_node_lists_its_commands_and_refuses_test_hooks_unless_started_for_tests() {
    use foundation_cluster::testkit::{NodeProcess, free_port};
    use std::time::Duration;
    let wait = Duration::from_secs(30);
    let usage = stdout(&foundation(&["node", "--help"], &[]));
    assert!(usage.contains("--json") && !usage.contains("test-hooks"), "{usage}");

    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let args = ["node", "--name", "solo", "--listen", &listen, "--no-state"];
    let mut node = NodeProcess::spawn("solo", env!("CARGO_BIN_EXE_foundation"), args).unwrap();
    node.wait_for(&format!("node solo listening on {listen}"), wait).unwrap();
    node.send_line("help").unwrap();
    for command in [
        "allocate CAPABILITY WORK_MS",
        "broadcast TOPIC TEXT",
        "crdt-get KEY [majority]",
        "trace-stop ID",
        "stop-run",
    ] {
        node.wait_for(command, wait).unwrap();
    }
    node.send_line("partition n2").unwrap();
    node.wait_for("partition n2: unknown command `partition n2`; `help` lists the commands", wait).unwrap();
    node.send_line("lock jobs").unwrap();
    node.wait_for("lock jobs: coordination is not running here (start the node with --coordination)", wait)
        .unwrap();
    node.send_line("trace-hop solo").unwrap();
    node.wait_for("trace-hop solo: no tracing here (start the node with --trace-rate RATE)", wait).unwrap();
    assert!(!node.output().iter().any(|l| l.contains("partition") && !l.contains("unknown command")));

    // The same node for programs: one JSON object per line, the same replies.
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let args = ["node", "--json", "--name", "solo2", "--listen", &listen, "--no-state"];
    let mut node = NodeProcess::spawn("solo2", env!("CARGO_BIN_EXE_foundation"), args).unwrap();
    let pattern = serde_json::json!({"event": "listening", "node": "solo2", "addr": listen});
    node.wait_for_event(&pattern, wait).unwrap();
    node.send_line("help").unwrap();
    let help = node.wait_for_event(&serde_json::json!({"event": "help"}), wait).unwrap();
    let commands: Vec<&str> =
        help["commands"].as_array().unwrap().iter().map(|c| c["command"].as_str().unwrap()).collect();
    for command in ["lock", "crdt-inc", "cache-put", "trace-hop", "services", "budget", "replicas", "help"] {
        assert!(commands.contains(&command), "{command} not in {commands:?}");
    }
    assert!(!commands.contains(&"partition") && !commands.contains(&"heal"), "{commands:?}");
    node.send_line("heal").unwrap();
    let refused =
        node.wait_for_event(&serde_json::json!({"event": "error", "command": "heal"}), wait).unwrap();
    assert!(refused["error"].as_str().unwrap().starts_with("unknown command"), "{refused}");
    node.send_line("barrier b 0").unwrap();
    let refused =
        node.wait_for_event(&serde_json::json!({"event": "error", "command": "barrier b 0"}), wait).unwrap();
    assert!(refused["error"].as_str().unwrap().ends_with("usage: `barrier NAME PARTIES`"), "{refused}");
    // Every line it printed is a JSON object naming its event.
    for line in node.output() {
        let event: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(event["event"].is_string(), "{line}");
    }
}

/// SIGHUP reloads the configuration: the changed keys are reported with those that need a
/// restart; a bad file is refused and the node runs on (SIGHUP used to kill it).
#[test]
fn sighup_reloads_the_configuration_and_a_bad_one_is_refused() {
    use foundation_cluster::testkit::{NodeProcess, free_port};
    use serde_json::json;
    use std::time::Duration;
    let wait = Duration::from_secs(30);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("node.toml");
    std::fs::write(&file, "[telemetry]\nwindow = \"60s\"\n").unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let config = file.display().to_string();
    let args = ["--config", &config, "node", "--json", "--name", "hup", "--listen", &listen, "--no-state"];
    let node = NodeProcess::spawn("hup", env!("CARGO_BIN_EXE_foundation"), args).unwrap();
    node.wait_for_event(&json!({"event": "listening", "node": "hup"}), wait).unwrap();
    let hangup = || {
        let pid = node.pid().to_string();
        assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    };
    std::fs::write(&file, "[telemetry]\nwindow = \"30s\"\n").unwrap();
    hangup();
    let reloaded = node.wait_for_event(&json!({"event": "config_reloaded"}), wait).unwrap();
    assert_eq!(reloaded["changed"], json!(["telemetry.window"]), "{reloaded}");
    assert_eq!(reloaded["restart_needed"], json!(["telemetry.window"]), "{reloaded}");
    std::fs::write(&file, "[telemetry]\nwindow = \"0s\"\n").unwrap();
    hangup();
    let refused = node.wait_for_event(&json!({"event": "config_reload_failed"}), wait).unwrap();
    assert!(refused["error"].as_str().unwrap().contains("telemetry.window"), "{refused}");
    // Still running, on the configuration in force.
    let mut node = node;
    node.send_line("services").unwrap();
    node.wait_for_event(&json!({"event": "services"}), wait).unwrap();
    assert!(node.is_running());
}

#[test]
fn certs_writes_a_private_directory_and_never_overwrites_without_force() {
    use std::os::unix::fs::PermissionsExt as _;
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("certs");
    let out_arg = dir.to_str().unwrap();
    let out = foundation(&["certs", "--out", out_arg, "--nodes", "n1,n2", "--days", "30"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    let names = ["ca", "n1", "n2", "tools"];
    for name in names {
        let cert = std::fs::read_to_string(dir.join(format!("{name}.pem"))).unwrap();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{name}: {cert}");
        let key_file = dir.join(format!("{name}-key.pem"));
        assert!(std::fs::read_to_string(&key_file).unwrap().contains("PRIVATE KEY"), "{name}");
        assert_eq!(mode(&key_file), 0o600, "{}", key_file.display());
    }
    // The configuration to use, with absolute paths.
    let text = stdout(&out);
    let abs = std::fs::canonicalize(&dir).unwrap();
    assert!(text.contains("# n2\n[cluster.tls]\n"), "{text}");
    assert!(text.contains(&format!("cert = \"{}\"", abs.join("n1.pem").display())), "{text}");
    assert!(text.contains(&format!("key = \"{}\"", abs.join("n2-key.pem").display())), "{text}");
    assert!(text.contains("server_name = \"foundation-node\""), "{text}");
    assert!(
        text.contains(&format!("FOUNDATION_CLUSTER__TLS__CERT='{}'", abs.join("tools.pem").display())),
        "{text}"
    );

    // Again without --force: refused, every file named, nothing changed.
    let read_all = || -> Vec<(String, Vec<u8>)> {
        names
            .iter()
            .flat_map(|n| [format!("{n}.pem"), format!("{n}-key.pem")])
            .map(|f| (f.clone(), std::fs::read(dir.join(&f)).unwrap()))
            .collect()
    };
    let before = read_all();
    let again = foundation(&["certs", "--out", out_arg, "--nodes", "n1,n2"], &[]);
    assert_eq!(again.status.code(), Some(2), "{}", stdout(&again));
    let err = stderr(&again);
    assert!(err.contains("n1-key.pem") && err.contains("ca-key.pem") && err.contains("--force"), "{err}");
    assert_eq!(read_all(), before);
    // With --force: new files (a new CA).
    let forced = foundation(&["certs", "--out", out_arg, "--nodes", "n1,n2", "--force"], &[]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert_ne!(read_all(), before);
    assert_eq!(mode(&dir.join("ca-key.pem")), 0o600);

    // A name no certificate can carry: refused, named, nothing written.
    let other = base.path().join("other");
    let bad = foundation(&["certs", "--out", other.to_str().unwrap(), "--nodes", "n1,a.b"], &[]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("`a.b`"), "{}", stderr(&bad));
    assert!(!other.exists());

    // An existing directory others may enter (a project's, a home): refused, its mode untouched.
    let shared = base.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
    let refused = foundation(&["certs", "--out", shared.to_str().unwrap(), "--nodes", "n1"], &[]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("other users may enter it"), "{}", stderr(&refused));
    assert_eq!(mode(&shared), 0o755);
    assert_eq!(std::fs::read_dir(&shared).unwrap().count(), 0);
}

#[test]
fn predict_runs_a_saved_program_once_and_refuses_bad_input_naming_it() {
    use dspex_optimizer::{Predictor, Program, Signature, datasets, optimizers};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("best.json");
    let program =
        Program::single("classify", Predictor::predict(Signature::parse("question -> label").unwrap()));
    optimizers::LabeledFewShot { k: 4 }
        .compile(&program, &datasets::questions()[..20], 7)
        .save(&path)
        .unwrap();
    let file = path.to_str().unwrap();

    let out =
        foundation(&["predict", "--program", file, "--input", "question=Who wrote Hamlet?", "--json"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(line["fields"]["label"].is_string(), "{line}");
    assert_eq!(line["program"], "classify");
    assert_eq!(line["trace"].as_array().unwrap().len(), 1);

    for (args, expected) in [
        (vec!["predict", "--program", file], "missing --input for question"),
        (vec!["predict", "--program", file, "--input", "q=x"], "reads no such field"),
        (
            vec!["predict", "--program", "/nonexistent/best.json", "--input", "question=x"],
            "/nonexistent/best.json",
        ),
    ] {
        let out = foundation(&args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(expected), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn optimize_run_reads_a_spec_saves_the_best_program_and_predict_runs_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dspex_optimizer::datasets::questions();
    let line = |e: &dspex_optimizer::Example| {
        serde_json::json!({"question": e.inputs["question"], "label": e.labels["label"]}).to_string() + "\n"
    };
    std::fs::write(dir.path().join("train.jsonl"), data[..20].iter().map(line).collect::<String>()).unwrap();
    std::fs::write(dir.path().join("val.jsonl"), data[20..40].iter().map(line).collect::<String>()).unwrap();
    let spec = dir.path().join("run.toml");
    std::fs::write(
        &spec,
        r#"
name = "cli-run"
model = "simulated"
seed = 7
metric = "exact_match:label"
[program]
signature = "question -> label"
instructions = "Classify the type of answer the question asks for."
[data]
train = "train.jsonl"
validation = "val.jsonl"
[optimizer]
candidates = 1
"#,
    )
    .unwrap();
    let best = dir.path().join("best.json");
    let (spec_arg, best_arg) = (spec.to_str().unwrap(), best.to_str().unwrap());

    let out = foundation(&["optimize", "run", "--spec", spec_arg, "--out", best_arg], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("4 candidates") && text.contains("best: candidate"), "{text}");
    assert!(dspex_optimizer::Program::load(&best).is_ok());
    let out =
        foundation(&["predict", "--program", best_arg, "--input", "question=How far is the moon?"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("label: "));

    // A spec naming a model the command cannot reach without an endpoint; a bad spec.
    std::fs::write(&spec, std::fs::read_to_string(&spec).unwrap().replace("simulated", "gpt-4o")).unwrap();
    let out = foundation(&["optimize", "run", "--spec", spec_arg, "--out", best_arg], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--lm-url"), "{}", stderr(&out));
    std::fs::write(&spec, "name = 1").unwrap();
    let out = foundation(&["optimize", "run", "--spec", spec_arg, "--out", best_arg], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains(spec_arg), "{}", stderr(&out));
}

#[test]
fn sim_provider_refuses_bad_options_before_serving() {
    for (args, said) in [
        (vec!["sim-provider", "--rpm", "0"], "at least 1"),
        (vec!["sim-provider", "--chunk-words", "0"], "--chunk-words"),
        (vec!["sim-provider", "--listen", "not-an-address"], "not-an-address"),
    ] {
        let out = foundation(&args, &[]);
        assert!(!out.status.success(), "{args:?}: {}", stdout(&out));
        assert!(stderr(&out).contains(said), "{args:?}: {}", stderr(&out));
        assert!(!stdout(&out).contains("listening"), "{args:?}: {}", stdout(&out));
    }
    // An address already taken is an error naming it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = foundation(&["sim-provider", "--listen", &addr], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains(&format!("cannot serve on {addr}")), "{}", stderr(&out));
}

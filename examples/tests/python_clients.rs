//! Real clients against our simulated server: the official Python `openai` and `anthropic`
//! packages (from PyPI, in a virtual environment the test makes under the target directory and
//! reuses) drive `foundation sim-provider` — chat, content parts, stop sequences, tools and their
//! results, streaming (text and tool calls, usage at the end), structured outputs parsed into a
//! Pydantic model, JSON-schema answers checked by the `jsonschema` package, a 400 and a 429 with
//! its headers; then Anthropic's messages, tools and streaming (`tests/python/clients.py`).
//!
//! Without Python, its venv module or access to PyPI the test prints why and passes, unless
//! `CI_PYTHON_TEST=required` (set by `.ci/run`, which installs `python3-venv`), where that is a
//! failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The packages the script needs, with the versions it was written against.
const PACKAGES: &[&str] = &["openai>=1.55,<3", "anthropic>=0.40,<1", "jsonschema>=4,<5", "pydantic>=2,<3"];

fn required() -> bool {
    std::env::var("CI_PYTHON_TEST").as_deref() == Ok("required")
}

/// Skips (or, where required, fails) with the reason.
fn unavailable(reason: String) -> Option<PathBuf> {
    if required() {
        panic!("{reason} (CI_PYTHON_TEST=required)");
    }
    println!("skipped: {reason}");
    None
}

/// The virtual environment's python, made (and the packages installed) if needed.
fn venv_python() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-clients-venv");
    let python = dir.join("bin/python");
    let probe = |python: &Path| {
        Command::new(python)
            .args(["-c", "import openai, anthropic, jsonschema, pydantic"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if probe(&python) {
        return Some(python);
    }
    match Command::new("python3").arg("--version").output() {
        Ok(o) if o.status.success() => {}
        _ => return unavailable("python3 is not installed".into()),
    }
    let _ = std::fs::remove_dir_all(&dir);
    let made = Command::new("python3").arg("-m").arg("venv").arg(&dir).output().unwrap();
    if !made.status.success() {
        return unavailable(format!(
            "python3 -m venv failed (Debian's python3-venv missing?): {}",
            String::from_utf8_lossy(&made.stderr).trim()
        ));
    }
    let pip = Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
        .args(PACKAGES)
        .output()
        .unwrap();
    if !pip.status.success() {
        return unavailable(format!(
            "pip could not install {PACKAGES:?} (no access to PyPI?): {}",
            String::from_utf8_lossy(&pip.stderr).trim()
        ));
    }
    assert!(probe(&python), "the packages were installed but do not import");
    Some(python)
}

/// A `foundation sim-provider` process, killed when dropped.
struct SimProvider {
    child: Child,
    base_url: String,
}

impl SimProvider {
    fn start(extra: &[&str]) -> SimProvider {
        let mut child = Command::new(env!("CARGO_BIN_EXE_foundation"))
            .args([
                "sim-provider",
                "--listen",
                "127.0.0.1:0",
                "--latency-ms",
                "1",
                "--completion-tokens",
                "20",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let base_url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .to_string();
        SimProvider { child, base_url }
    }
}

impl Drop for SimProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_official_python_clients_work_against_the_simulated_provider() {
    let Some(python) = venv_python() else { return };
    let server = SimProvider::start(&[]);
    let limited = SimProvider::start(&["--rpm", "1"]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/clients.py");
    let out = Command::new(python)
        .arg(&script)
        .env("OPENAI_BASE_URL", &server.base_url)
        .env("LIMITED_BASE_URL", &limited.base_url)
        .env_remove("OPENAI_API_KEY")
        .env_remove("ANTHROPIC_API_KEY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the Python clients failed:\n{stdout}\n{stderr}");
    for check in [
        "chat",
        "cached prompt tokens",
        "content parts and stop sequences",
        "tools",
        "streaming",
        "streamed tool calls",
        "structured outputs (parse)",
        "json schema answers",
        "embeddings",
        "errors",
        "anthropic messages and tools",
        "anthropic streaming",
    ] {
        assert!(
            stdout.lines().any(|l| l == format!("ok {check}")),
            "`{check}` did not pass:\n{stdout}\n{stderr}"
        );
    }
}

//! ARCHITECTURE.md stays true: every source file of every crate's `src/` (and the `foundation`
//! command's multi-process tests and examples) is named in its crate's section of the codemap,
//! and every file the codemap names exists. A file counts as named when its path relative to
//! the crate's `src/` (or to the crate, for `tests/...`, `benches/...`, `examples/...`, or as
//! `src/...`) appears in backticks, or `dir/*.rs` for all of a directory's files, or its directory
//! (`dir/`) and its file name (`name.rs`) both appear in backticks on one line. The codemap points at nothing outside the repository, and carries no
//! notes about issue numbers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Each crate's directory and the heading that starts its section of the codemap.
const CRATES: &[(&str, &str)] = &[
    ("foundation-core", "### foundation-core"),
    ("foundation-actors", "### foundation-actors"),
    ("foundation-cluster", "### foundation-cluster"),
    ("dspex-optimizer", "### dspex-optimizer"),
    ("scope-tracer", "### scope-tracer"),
    ("examples", "### examples"),
    ("tests", "### tests"),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root").to_path_buf()
}

fn codemap() -> String {
    std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md")
}

/// Each crate's section: from its heading to the next heading.
fn sections(text: &str) -> BTreeMap<&'static str, String> {
    let mut sections = BTreeMap::new();
    for (krate, heading) in CRATES {
        let start = text.find(heading).unwrap_or_else(|| panic!("no section `{heading}` in ARCHITECTURE.md"));
        let rest = &text[start + heading.len()..];
        let end = rest.find("\n#").unwrap_or(rest.len());
        sections.insert(*krate, rest[..end].to_string());
    }
    sections
}

/// The `.rs` files below `dir`, relative to `base`, with `/` separators.
fn rust_files(base: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(base, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(base).expect("below its base");
            out.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
}

/// The words in backticks on `line`.
fn quoted(line: &str) -> Vec<&str> {
    line.split('`').skip(1).step_by(2).collect()
}

fn named(section: &str, file: &str) -> bool {
    let (dir, name) = file.rsplit_once('/').unwrap_or(("", file));
    let spelled = [format!("`{file}`"), format!("`src/{file}`"), format!("`{dir}/*.rs`")];
    if spelled.iter().any(|s| section.contains(s.as_str())) {
        return true;
    }
    // A directory's bullet (`dir/`) describes its `mod.rs`.
    if name == "mod.rs" && section.contains(&format!("`{dir}/`")) {
        return true;
    }
    !dir.is_empty()
        && section.lines().any(|line| {
            let words = quoted(line);
            words.iter().any(|w| w.trim_end_matches('/') == dir || w.ends_with(&format!("/{dir}/")))
                && words.contains(&name)
        })
}

#[test]
fn every_source_file_is_named_in_its_crates_section() {
    let text = codemap();
    let sections = sections(&text);
    let mut missing = Vec::new();
    for (krate, _) in CRATES {
        let dir = root().join(krate);
        let mut files = Vec::new();
        rust_files(&dir.join("src"), &dir.join("src"), &mut files);
        if *krate == "examples" {
            for sub in ["tests", "examples"] {
                let mut more = Vec::new();
                rust_files(&dir, &dir.join(sub), &mut more);
                files.extend(more);
            }
        }
        for file in files {
            if !named(&sections[krate], &file) {
                missing.push(format!("{krate}: {file}"));
            }
        }
    }
    assert!(missing.is_empty(), "source files ARCHITECTURE.md does not name:\n{}", missing.join("\n"));
}

#[test]
fn every_file_the_codemap_names_exists() {
    let text = codemap();
    let sections = sections(&text);
    let mut dangling = Vec::new();
    for (krate, _) in CRATES {
        let dir = root().join(krate);
        for line in sections[krate].lines() {
            let words = quoted(line);
            let dirs: Vec<&str> = words.iter().copied().filter(|w| w.ends_with('/')).collect();
            let files =
                words.iter().filter(|w| (w.ends_with(".rs") || w.ends_with(".html")) && !w.contains('*'));
            for word in files {
                let candidates = [dir.join("src").join(word), dir.join(word)]
                    .into_iter()
                    .chain(dirs.iter().map(|d| dir.join("src").join(d).join(word)))
                    .chain(dirs.iter().map(|d| dir.join(d).join(word)));
                if !candidates.into_iter().any(|p| p.exists()) {
                    dangling.push(format!("{krate}: `{word}`"));
                }
            }
        }
    }
    assert!(dangling.is_empty(), "files ARCHITECTURE.md names that do not exist:\n{}", dangling.join("\n"));
}

#[test]
fn the_codemap_points_at_nothing_outside_the_repository_and_has_no_issue_notes() {
    let text = codemap();
    for (i, line) in text.lines().enumerate() {
        assert!(!line.contains("../"), "line {}: a path outside the repository: {line}", i + 1);
        let lower = line.to_lowercase();
        let issue_number = lower
            .match_indices("issue ")
            .any(|(at, _)| lower[at + 6..].chars().next().is_some_and(|c| c.is_ascii_digit()));
        assert!(!issue_number, "line {}: a note about an issue number: {line}", i + 1);
    }
}

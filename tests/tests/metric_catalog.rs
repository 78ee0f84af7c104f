//! Every metric the crates record is described: each `foundation_*` or `scope_tracer_*` name a
//! `metrics::counter!`/`gauge!`/`histogram!` (or a helper's `.counter(...)`) in a crate's `src/`
//! code records, and every other literal of ours that names a counter (`…_total`), is in that
//! crate's catalog with the same kind (the `foundation` binary's in any), every catalogued
//! family is recorded somewhere, names follow
//! Prometheus' conventions. (`examples/tests/metrics_exposition.rs` puts the expositions through
//! `promtool`.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use foundation_core::telemetry::catalog::{MetricFamily, MetricKind};

/// Each crate's directory and the catalog its metrics must be in (`None`: any crate's, for the
/// `foundation` binary, which records through the library's families).
fn crates() -> Vec<(&'static str, Option<&'static [MetricFamily]>)> {
    vec![
        ("foundation-core", Some(foundation_core::telemetry::catalog::FAMILIES)),
        ("foundation-actors", Some(foundation_actors::metric_catalog::FAMILIES)),
        ("foundation-cluster", Some(foundation_cluster::metric_catalog::FAMILIES)),
        ("scope-tracer", Some(scope_tracer::metric_catalog::FAMILIES)),
        ("dspex-optimizer", Some(dspex_optimizer::metric_catalog::FAMILIES)),
        ("examples", None),
    ]
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root").to_path_buf()
}

fn families() -> Vec<&'static MetricFamily> {
    foundation_cluster::metric_catalog::all()
        .chain(scope_tracer::metric_catalog::FAMILIES)
        .chain(dspex_optimizer::metric_catalog::FAMILIES)
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A source file without its comments (doc examples included) and without its unit tests
/// (from `#[cfg(test)]` and a `mod` on the next line: a crate's tests are its files' last module).
fn code_of(text: &str) -> String {
    let text = text.find("#[cfg(test)]\nmod ").map_or(text, |at| &text[..at]);
    text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

fn is_ours(name: &str) -> bool {
    name.starts_with("foundation_") || name.starts_with("scope_tracer_")
}

/// The metric names recorded in `code`: `counter!(`, `gauge!(` or `histogram!(` (not
/// `describe_...!`), or a helper's `.counter(`, `.gauge(`, `.histogram(`, then, past whitespace,
/// a string literal; and every other literal that looks like a counter of ours (`…_total`),
/// which must then be a catalogued counter.
fn recorded(code: &str) -> Vec<(MetricKind, String)> {
    let mut found = Vec::new();
    let calls = [
        ("counter!(", MetricKind::Counter),
        ("gauge!(", MetricKind::Gauge),
        ("histogram!(", MetricKind::Histogram),
        (".counter(", MetricKind::Counter),
        (".gauge(", MetricKind::Gauge),
        (".histogram(", MetricKind::Histogram),
    ];
    for (call, kind) in calls {
        for (at, _) in code.match_indices(call) {
            if !call.starts_with('.') && code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let rest = code[at + call.len()..].trim_start();
            let Some(literal) = rest.strip_prefix('"') else { continue };
            let name = &literal[..literal.find('"').unwrap()];
            if is_ours(name) {
                found.push((kind, name.to_string()));
            }
        }
    }
    for literal in code.split('"').skip(1).step_by(2) {
        let word = literal.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if word && is_ours(literal) && literal.ends_with("_total") && !found.iter().any(|(_, n)| n == literal)
        {
            found.push((MetricKind::Counter, literal.to_string()));
        }
    }
    found
}

#[test]
fn every_recorded_metric_is_in_its_crate_s_catalog_with_its_kind_and_every_catalogued_one_is_recorded() {
    let mut in_source: BTreeMap<String, (MetricKind, String)> = BTreeMap::new();
    for (krate, catalog) in crates() {
        let mut files = Vec::new();
        rust_files(&root().join(krate).join("src"), &mut files);
        for file in files {
            let code = code_of(&std::fs::read_to_string(&file).unwrap());
            for (kind, name) in recorded(&code) {
                let at = file.strip_prefix(root()).unwrap().display().to_string();
                if let Some((other, where_)) = in_source.get(&name) {
                    assert_eq!(
                        *other, kind,
                        "{name} is recorded as {other:?} in {where_} and {kind:?} in {at}"
                    );
                }
                if let Some(catalog) = catalog {
                    let family = catalog.iter().find(|f| f.name == name).unwrap_or_else(|| {
                        panic!("{name} (recorded in {at}) is not in {krate}'s metric catalog: add it with its help text")
                    });
                    assert_eq!(
                        family.kind, kind,
                        "{name} is catalogued as {:?} but recorded as {kind:?} in {at}",
                        family.kind
                    );
                }
                in_source.insert(name, (kind, at));
            }
        }
    }
    assert!(in_source.len() > 60, "the scan found only {} metrics: is the pattern broken?", in_source.len());
    let catalogued: BTreeMap<&str, &MetricFamily> = families().into_iter().map(|f| (f.name, f)).collect();
    assert_eq!(catalogued.len(), families().len(), "a family is catalogued twice");
    for (name, (kind, at)) in &in_source {
        let family = catalogued
            .get(name.as_str())
            .unwrap_or_else(|| panic!("{name} (recorded in {at}) is in no catalog"));
        assert_eq!(
            family.kind, *kind,
            "{name} is catalogued as {:?} but recorded as {kind:?} in {at}",
            family.kind
        );
    }
    for name in catalogued.keys() {
        assert!(in_source.contains_key(*name), "{name} is catalogued but nothing records it");
    }
    // the scan finds a helper's metric and skips comments
    let helper = "fn f(p: &P) { p.counter(\"foundation_x_total\").increment(1); }\n    /// counter!(\"foundation_y_total\")";
    assert_eq!(recorded(&code_of(helper)), [(MetricKind::Counter, "foundation_x_total".to_string())]);
}

#[test]
fn catalogued_names_follow_the_prometheus_conventions() {
    let problems: Vec<String> = families().iter().filter_map(|f| f.naming_problem()).collect();
    assert!(problems.is_empty(), "{problems:#?}");
    // the check itself catches what it should
    assert!(MetricFamily::gauge("foundation_x_total", "x.").naming_problem().is_some());
    assert!(MetricFamily::counter("foundation_x", "x.").naming_problem().is_some());
    assert!(
        MetricFamily::histogram("foundation_wait", "x.")
            .in_unit(metrics::Unit::Seconds)
            .naming_problem()
            .is_some()
    );
    assert!(MetricFamily::counter("Foundation_x_total", "x.").naming_problem().is_some());
    assert!(MetricFamily::counter("foundation_x_total", " ").naming_problem().is_some());
}

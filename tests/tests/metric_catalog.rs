//! Every metric the crates record is described: each `foundation_*` or `scope_tracer_*` name a
//! `metrics::counter!`/`gauge!`/`histogram!` in a crate's `src/` records is in that crate's
//! catalog with the same kind, every catalogued family is recorded somewhere, names follow
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

const CRATES: &[&str] =
    &["foundation-core", "foundation-actors", "foundation-cluster", "scope-tracer", "dspex-optimizer"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root").to_path_buf()
}

fn families() -> Vec<&'static MetricFamily> {
    foundation_cluster::metric_catalog::all().chain(scope_tracer::metric_catalog::FAMILIES).collect()
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

/// The metric names recorded in `text`: `counter!(`, `gauge!(` or `histogram!(` (not
/// `describe_...!`), then, past whitespace, a string literal.
fn recorded(text: &str) -> Vec<(MetricKind, String)> {
    let mut found = Vec::new();
    for (mac, kind) in [
        ("counter!(", MetricKind::Counter),
        ("gauge!(", MetricKind::Gauge),
        ("histogram!(", MetricKind::Histogram),
    ] {
        for (at, _) in text.match_indices(mac) {
            if text[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let rest = text[at + mac.len()..].trim_start();
            let Some(literal) = rest.strip_prefix('"') else { continue };
            let name = &literal[..literal.find('"').unwrap()];
            if name.starts_with("foundation_") || name.starts_with("scope_tracer_") {
                found.push((kind, name.to_string()));
            }
        }
    }
    found
}

#[test]
fn every_recorded_metric_is_catalogued_with_its_kind_and_every_catalogued_one_is_recorded() {
    let mut in_source: BTreeMap<String, (MetricKind, String)> = BTreeMap::new();
    for krate in CRATES {
        let mut files = Vec::new();
        rust_files(&root().join(krate).join("src"), &mut files);
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for (kind, name) in recorded(&text) {
                let at = file.strip_prefix(root()).unwrap().display().to_string();
                if let Some((other, where_)) = in_source.get(&name) {
                    assert_eq!(
                        *other, kind,
                        "{name} is recorded as {other:?} in {where_} and {kind:?} in {at}"
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
        let family = catalogued.get(name.as_str()).unwrap_or_else(|| {
            panic!("{name} (recorded in {at}) is in no crate's metric_catalog: add it with its help text")
        });
        assert_eq!(
            family.kind, *kind,
            "{name} is catalogued as {:?} but recorded as {kind:?} in {at}",
            family.kind
        );
    }
    for name in catalogued.keys() {
        assert!(in_source.contains_key(*name), "{name} is catalogued but nothing records it");
    }
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

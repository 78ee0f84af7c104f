//! The dashboard's cluster traces: start one, stop it, see the running and recent ones with
//! their timelines, download one as Chrome trace JSON.
//!
//! - `GET /api/sessions` — the cluster traces this node heard of, newest first.
//! - `POST /api/sessions` — starts one; the body is a [`TraceScope`] as JSON (every field
//!   optional; empty body: every node, rate 1, one minute). `201` with `{"id": ...}`.
//! - `GET /api/sessions/ID` — its report so far; `POST /api/sessions/ID/stop` — stops it and
//!   returns the report; `GET /api/sessions/ID/export` — every trace in it as one Chrome trace
//!   JSON download.
//!
//! Errors are JSON `{"error": ...}`: `400` for a malformed scope, `404` for an id no node
//! here heard of, `409` when this node runs no trace participant, `504` when the trace's
//! coordinator does not answer, `502` when its answer cannot be read.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::{ASK_TIMEOUT, AppState};
use crate::session::{self, SessionError, SessionInfo, SessionReport, TraceScope};

/// How long the live view waits for a trace's coordinator.
const LIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(4);

/// Traces per cluster trace sent to the page (the newest are dropped beyond it).
const PAGE_TRACES: usize = 12;
/// Errors a cluster trace's view lists (the newest).
const PAGE_ERRORS: usize = 20;

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, axum::Json(serde_json::json!({"error": message.to_string()}))).into_response()
}

fn session_error(e: SessionError) -> Response {
    let status = match &e {
        SessionError::Scope(_) => StatusCode::BAD_REQUEST,
        SessionError::Unknown(_) => StatusCode::NOT_FOUND,
        SessionError::NoParticipant => StatusCode::CONFLICT,
        SessionError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        SessionError::Unreadable { .. } => StatusCode::BAD_GATEWAY,
    };
    error(status, e)
}

fn valid_id(id: &str) -> bool {
    id.len() == 16 && id.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

pub(super) async fn list() -> axum::Json<Vec<SessionInfo>> {
    axum::Json(session::sessions())
}

pub(super) async fn start(State(state): State<AppState>, body: String) -> Response {
    let scope: TraceScope = if body.trim().is_empty() {
        TraceScope::default()
    } else {
        match serde_json::from_str(&body) {
            Ok(scope) => scope,
            Err(e) => {
                return error(StatusCode::BAD_REQUEST, format!("the trace scope is not valid JSON: {e}"));
            }
        }
    };
    match session::start_cluster_trace(&state.cluster, scope).await {
        Ok(id) => (StatusCode::CREATED, axum::Json(serde_json::json!({"id": id}))).into_response(),
        Err(e) => session_error(e),
    }
}

async fn report(id: &str, stop: bool) -> Result<SessionReport, Response> {
    if !valid_id(id) {
        return Err(error(StatusCode::BAD_REQUEST, "a cluster trace id is 16 lowercase hex digits"));
    }
    let report = if stop {
        session::stop_cluster_trace(id, ASK_TIMEOUT * 5).await
    } else {
        session::collect_cluster_trace(id, ASK_TIMEOUT * 5).await
    };
    report.map_err(session_error)
}

pub(super) async fn get(Path(id): Path<String>) -> Response {
    match report(&id, false).await {
        Ok(r) => axum::Json(r).into_response(),
        Err(e) => e,
    }
}

pub(super) async fn stop(Path(id): Path<String>) -> Response {
    match report(&id, true).await {
        Ok(r) => axum::Json(r).into_response(),
        Err(e) => e,
    }
}

pub(super) async fn export(Path(id): Path<String>) -> Response {
    match report(&id, false).await {
        Ok(r) => {
            let disposition = format!("attachment; filename=\"cluster-trace-{id}.json\"");
            let chrome = crate::export::chrome_trace(&r.combined());
            ([(header::CONTENT_DISPOSITION, disposition)], axum::Json(chrome)).into_response()
        }
        Err(e) => e,
    }
}

/// One span as the page draws it.
#[derive(Serialize)]
struct Bar {
    name: String,
    node: String,
    /// Start, µs from the trace's first span.
    at_us: u64,
    dur_us: u64,
    /// Nesting depth (0: a root).
    depth: usize,
    /// Why it ended in error, if it did.
    error: Option<String>,
    /// Events kept in it.
    events: usize,
}

/// A cluster trace as the page shows it: its state and its newest traces as bars.
#[derive(Serialize)]
struct PageSession {
    id: String,
    state: session::SessionState,
    rate: f64,
    nodes: Vec<String>,
    coordinator: Option<String>,
    spans: usize,
    missing_nodes: Vec<String>,
    traces: Vec<(String, Vec<Bar>)>,
    error: Option<String>,
    /// The spans that ended in error (the newest, over every trace), and how many more.
    errors: Vec<crate::SpanError>,
    omitted_errors: usize,
}

fn bars(timeline: &crate::Timeline) -> Vec<Bar> {
    let origin = timeline.spans.iter().map(|s| s.start_unix_ns).min().unwrap_or(0);
    let mut depth: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    timeline
        .spans
        .iter()
        .map(|s| {
            // Parents come first in a timeline.
            let d = s.parent_span_id.as_deref().and_then(|p| depth.get(p)).map_or(0, |d| d + 1);
            depth.insert(&s.span_id, d);
            Bar {
                name: s.name.clone(),
                node: s.node.clone(),
                at_us: (s.start_unix_ns - origin) / 1000,
                dur_us: s.duration_ns / 1000,
                depth: d,
                error: s.error.clone(),
                events: s.events.len(),
            }
        })
        .collect()
}

/// The recent cluster traces for the page's live view: the running ones and the latest stopped
/// one, with their timelines (asked of their coordinators).
pub(super) async fn live() -> serde_json::Value {
    let known = session::sessions();
    let latest_stopped = known.iter().position(|s| s.state == session::SessionState::Stopped);
    let mut shown = Vec::new();
    for (i, info) in known.iter().enumerate().take(4) {
        let detailed = info.state == session::SessionState::Running || Some(i) == latest_stopped;
        let mut page = PageSession {
            id: info.spec.id.clone(),
            state: info.state,
            rate: info.spec.scope.rate,
            nodes: info.spec.scope.nodes.clone(),
            coordinator: None,
            spans: 0,
            missing_nodes: Vec::new(),
            traces: Vec::new(),
            error: None,
            errors: Vec::new(),
            omitted_errors: 0,
        };
        if detailed {
            // Longer than the coordinator waits for a node, so that one slow node does not make
            // every look time out.
            match session::collect_cluster_trace(&info.spec.id, LIVE_TIMEOUT).await {
                Ok(r) => {
                    page.state = r.state;
                    page.coordinator = Some(r.coordinator.clone());
                    page.spans = r.span_count();
                    page.missing_nodes = r.missing_nodes.iter().cloned().collect();
                    // The newest first, at most PAGE_ERRORS (over all the trace's timelines).
                    page.omitted_errors = r.omitted_errors + r.errors.len().saturating_sub(PAGE_ERRORS);
                    page.errors = r.errors.iter().rev().take(PAGE_ERRORS).cloned().collect();
                    page.traces = r
                        .traces
                        .iter()
                        .rev()
                        .take(PAGE_TRACES)
                        .map(|t| (t.trace_id.clone(), bars(t)))
                        .collect();
                }
                Err(e) => page.error = Some(e.to_string()),
            }
        }
        shown.push(page);
    }
    serde_json::to_value(shown).unwrap_or_default()
}

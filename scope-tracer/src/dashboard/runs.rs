//! The dashboard's optimization view: the runs heard of on the telemetry channel (their latest
//! progress, from whichever node runs the scheduler), and stop and resume.
//!
//! - `GET /api/runs` — the latest progress event of each run, by run id (what the page shows:
//!   progress, best score, evaluations per second in all and per node, ETA, state).
//! - `POST /api/runs/ID/stop`, `POST /api/runs/ID/resume` — through the [`RunControl`] the
//!   dashboard was given (the optimization service lives in a crate above this one); `200`
//!   with `{"ok": true}` once the service has recorded it, `409` with `{"error": ...}` when the
//!   service says no (no such run, a finished run stopped), `503` when it cannot be asked (no
//!   scheduler reachable, no answer in time), `404` for an id that is not a run's name, `501`
//!   when this dashboard was given no control. Same rules as every state-changing
//!   request of the dashboard (the `guard` module: token, `Host`, JSON, same origin).

use std::future::Future;
use std::pin::Pin;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;

/// The future a [`RunControl`] returns.
pub type ControlFuture<'a> = Pin<Box<dyn Future<Output = Result<(), ControlError>> + Send + 'a>>;

/// Why a stop or resume was not done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// The service said no, and why (no such run, a finished run stopped): `409`.
    #[error("{0}")]
    Refused(String),
    /// The service could not be asked (no scheduler reachable, no answer in time): `503`.
    #[error("{0}")]
    Unavailable(String),
}

/// What the dashboard's stop and resume buttons call: the optimization service's controls,
/// given by whoever starts the dashboard (e.g. `foundation node`, with
/// `Optimizations::run(&cluster, id).stop()`).
pub trait RunControl: Send + Sync + 'static {
    /// Stops run `run`; why not (see [`ControlError`]).
    fn stop<'a>(&'a self, run: &'a str) -> ControlFuture<'a>;
    /// Resumes run `run`; why not.
    fn resume<'a>(&'a self, run: &'a str) -> ControlFuture<'a>;
}

fn answer(result: Result<(), ControlError>) -> Response {
    match result {
        Ok(()) => axum::Json(serde_json::json!({"ok": true})).into_response(),
        Err(ControlError::Refused(why)) => refused(StatusCode::CONFLICT, &why),
        Err(ControlError::Unavailable(why)) => refused(StatusCode::SERVICE_UNAVAILABLE, &why),
    }
}

fn refused(status: StatusCode, why: &str) -> Response {
    (status, axum::Json(serde_json::json!({"error": why}))).into_response()
}

/// A run's name: 1 to 64 letters, digits, `-` and `_` (what the service takes).
fn valid_run(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

async fn control(state: &AppState, id: &str, stop: bool) -> Response {
    if !valid_run(id) {
        return refused(StatusCode::NOT_FOUND, "not a run's name");
    }
    let Some(control) = &state.run_control else {
        return refused(StatusCode::NOT_IMPLEMENTED, "this dashboard's node cannot stop or resume runs");
    };
    answer(if stop { control.stop(id).await } else { control.resume(id).await })
}

pub(super) async fn stop(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    control(&state, &id, true).await
}

pub(super) async fn resume(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    control(&state, &id, false).await
}

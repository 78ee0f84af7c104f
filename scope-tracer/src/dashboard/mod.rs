//! The live dashboard: an HTTP server (axum) any node can run, showing the cluster's nodes and
//! their health, updated over server-sent events, and serving traces as Chrome trace JSON.
//! Plain HTML, CSS and a little JavaScript served by the binary: no front-end build step.
//!
//! - `GET /` — the page; `GET /api/cluster` — [`ClusterHealth`] as JSON; `GET /api/runs` —
//!   the optimization runs heard of on the `telemetry` channel (their latest progress event),
//!   `POST /api/runs/ID/stop|resume` through the [`RunControl`] given (the `runs` module);
//!   `GET /api/profile` — every node's profile analyzed (bottlenecks, hotspots), `POST
//!   /api/profile/start|stop` a profile window on every node;
//!   `GET /api/slos` — this node's service-level objectives and burn rates (given its
//!   telemetry);
//!   `GET /api/series` — the charts' history ([`charts`]: the last five minutes per node and
//!   per run);
//!   `GET /api/events` — server-sent events, `cluster`, `runs`, `slos` and `profile` every
//!   [`PUSH_EVERY`], `series` with the samples the stream has not sent yet;
//!   `GET /api/traces/ID` — the trace collected from every node, as Chrome trace JSON
//!   (`/api/traces/ID/timeline` for the merged timeline).
//! - Cluster traces ([`crate::session`]): `GET`/`POST /api/sessions`, `GET /api/sessions/ID`,
//!   `POST /api/sessions/ID/stop`, `GET /api/sessions/ID/export` (see the `sessions` module);
//!   the running and latest ones, with their timelines, on the event stream as `sessions`.
//! - Bound to loopback by default. Any other address needs an access token, required on every
//!   request (`Authorization: Bearer`, or the cookie `GET /login`'s form sets); what else a
//!   request must show (its `Host`, and for a state-changing one its content type and origin)
//!   is in the `guard` module. At most
//!   [`max_event_streams`](DashboardOptions::max_event_streams) event streams are open at once
//!   (503 beyond); request bodies are limited to 64 KiB.

use foundation_core::sync::MutexRecover;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use foundation_actors::channels::Channels;
use foundation_cluster::Cluster;
use foundation_cluster::health::ClusterHealth;

pub mod charts;
mod guard;
mod runs;
mod sessions;

pub use runs::{ControlError, ControlFuture, RunControl};

/// How often the page is sent the cluster's state.
pub const PUSH_EVERY: Duration = Duration::from_secs(1);
/// How long a health or trace request waits for the other nodes.
const ASK_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a dashboard did not start.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// A token too weak to guard anything: shorter than 16 bytes, or not printable ASCII
    /// without spaces (it travels in a header).
    #[error(
        "the dashboard's access token must be at least 16 printable ASCII characters without spaces (e.g. `openssl rand -hex 16`)"
    )]
    WeakToken,
    /// A non-loopback address without a token.
    #[error(
        "the dashboard on {0} would be reachable from other machines: give it an access token (--dashboard-token)"
    )]
    TokenRequired(SocketAddr),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// How a dashboard admits requests.
#[derive(Clone)]
pub struct DashboardOptions {
    /// The access token every request must carry (required off loopback).
    pub token: Option<String>,
    /// Host names (besides IP addresses and `localhost`) the dashboard answers to, e.g. the
    /// name of a proxy in front of it.
    pub allowed_hosts: Vec<String>,
    /// Event streams (`/api/events`) open at once; more are refused with 503. Default 32.
    pub max_event_streams: usize,
    /// What the optimization view's stop and resume buttons call (none: the buttons answer
    /// 501).
    pub run_control: Option<Arc<dyn RunControl>>,
    /// The node's telemetry, if any: its service-level objectives (`[telemetry.slos]`) are
    /// shown with their burn rates (`/api/slos`, the `slos` event).
    pub telemetry: Option<foundation_core::Telemetry>,
}

impl Default for DashboardOptions {
    fn default() -> Self {
        DashboardOptions {
            token: None,
            allowed_hosts: Vec::new(),
            max_event_streams: 32,
            run_control: None,
            telemetry: None,
        }
    }
}

impl std::fmt::Debug for DashboardOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DashboardOptions")
            .field("token", &self.token.as_ref().map(|_| "…"))
            .field("allowed_hosts", &self.allowed_hosts)
            .field("max_event_streams", &self.max_event_streams)
            .field("run_control", &self.run_control.is_some())
            .field("telemetry", &self.telemetry.is_some())
            .finish()
    }
}

/// The largest request body the dashboard reads.
const MAX_BODY_BYTES: usize = 64 << 10;

#[derive(Clone)]
struct AppState {
    cluster: Cluster,
    token: Option<String>,
    allowed_hosts: Arc<Vec<String>>,
    /// The port it listens on (a `Host` with another port is refused).
    port: u16,
    /// Event streams open now, and how many may be.
    streams: Arc<std::sync::atomic::AtomicUsize>,
    max_streams: usize,
    /// Sessions the login form opened.
    sessions: Arc<guard::Sessions>,
    /// Latest progress event per optimization run, by run id.
    runs: Arc<Mutex<BTreeMap<String, serde_json::Value>>>,
    /// The stop and resume buttons' target.
    run_control: Option<Arc<dyn RunControl>>,
    /// The charts' samples.
    history: Arc<charts::History>,
    /// Where the service-level objectives are read.
    telemetry: Option<foundation_core::Telemetry>,
}

/// Keeps the latest `optimization_progress` event of each run.
fn follow_runs(channels: &Channels, runs: Arc<Mutex<BTreeMap<String, serde_json::Value>>>) {
    let Ok(mut telemetry) = channels.subscribe(&foundation_actors::channels::telemetry()) else { return };
    tokio::spawn(async move {
        while let Ok(event) = telemetry.recv().await {
            if event.kind == "optimization_progress" {
                runs.lock_or_recover().insert(event.source, event.data);
            }
        }
    });
}

/// A running dashboard; stops when dropped.
pub struct Dashboard {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    /// The charts' sampler.
    sampler: tokio::task::JoinHandle<()>,
}

impl Dashboard {
    /// Serves the dashboard of `cluster` (as this node sees it) on `addr`; with `channels`, it
    /// also shows the optimization runs whose progress arrives on the telemetry channel.
    pub async fn serve(
        addr: SocketAddr,
        cluster: Cluster,
        channels: Option<&Channels>,
        options: DashboardOptions,
    ) -> Result<Dashboard, DashboardError> {
        let token = options.token;
        if token.as_deref().is_some_and(|t| t.len() < 16 || !t.bytes().all(|b| b.is_ascii_graphic())) {
            return Err(DashboardError::WeakToken);
        }
        if !addr.ip().is_loopback() && token.is_none() {
            return Err(DashboardError::TokenRequired(addr));
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| DashboardError::Bind { addr, source })?;
        let addr = listener.local_addr().map_err(|source| DashboardError::Bind { addr, source })?;
        let runs = Arc::new(Mutex::new(BTreeMap::new()));
        if let Some(channels) = channels {
            follow_runs(channels, runs.clone());
        }
        let history = Arc::new(charts::History::default());
        let sampler = tokio::spawn(charts::sample_forever(history.clone(), cluster.clone(), runs.clone()));
        let state = AppState {
            cluster,
            token,
            allowed_hosts: Arc::new(options.allowed_hosts),
            port: addr.port(),
            streams: Arc::default(),
            max_streams: options.max_event_streams,
            sessions: Arc::default(),
            runs,
            run_control: options.run_control,
            history,
            telemetry: options.telemetry,
        };
        let app = axum::Router::new()
            .route("/", axum::routing::get(page))
            .route("/login", axum::routing::get(guard::login_page).post(guard::login))
            .route("/api/cluster", axum::routing::get(cluster_json))
            .route("/api/runs", axum::routing::get(runs_json))
            .route("/api/runs/{id}/stop", axum::routing::post(runs::stop))
            .route("/api/runs/{id}/resume", axum::routing::post(runs::resume))
            .route("/api/profile", axum::routing::get(profile_json))
            .route("/api/profile/start", axum::routing::post(profile_start))
            .route("/api/profile/stop", axum::routing::post(profile_stop))
            .route("/api/events", axum::routing::get(events))
            .route("/api/series", axum::routing::get(series_json))
            .route("/api/slos", axum::routing::get(slos_json))
            .route("/api/traces/{id}", axum::routing::get(trace_chrome))
            .route("/api/traces/{id}/timeline", axum::routing::get(trace_timeline))
            .route("/api/sessions", axum::routing::get(sessions::list).post(sessions::start))
            .route("/api/sessions/{id}", axum::routing::get(sessions::get))
            .route("/api/sessions/{id}/stop", axum::routing::post(sessions::stop))
            .route("/api/sessions/{id}/export", axum::routing::get(sessions::export))
            .layer(axum::middleware::from_fn_with_state(state.clone(), guard::guard))
            .with_state(state);
        // Header-read and request timeouts, a connection cap (the event streams have their own).
        let limits =
            foundation_core::http::HttpLimits { max_body_bytes: MAX_BODY_BYTES, ..Default::default() };
        let task = tokio::spawn(foundation_core::http::serve(listener, app, limits, std::future::pending()));
        Ok(Dashboard { addr, task, sampler })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        self.task.abort();
        self.sampler.abort();
    }
}

async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

async fn health(cluster: &Cluster) -> ClusterHealth {
    cluster.cluster_health(ASK_TIMEOUT).await
}

async fn cluster_json(State(state): State<AppState>) -> axum::Json<ClusterHealth> {
    axum::Json(health(&state.cluster).await)
}

fn runs(state: &AppState) -> serde_json::Value {
    serde_json::to_value(&*state.runs.lock_or_recover()).unwrap_or_default()
}

async fn runs_json(State(state): State<AppState>) -> axum::Json<serde_json::Value> {
    axum::Json(runs(&state))
}

/// This node's service-level objectives and their burn rates (none without telemetry).
fn slos(state: &AppState) -> Vec<foundation_core::telemetry::SloStatus> {
    state.telemetry.as_ref().map(foundation_core::Telemetry::slos).unwrap_or_default()
}

async fn slos_json(State(state): State<AppState>) -> axum::Json<Vec<foundation_core::telemetry::SloStatus>> {
    axum::Json(slos(&state))
}

/// The charts' history: the last minutes' samples, oldest first.
async fn series_json(State(state): State<AppState>) -> axum::Json<Vec<charts::Sample>> {
    axum::Json(state.history.samples())
}

/// Bottlenecks and hotspots now, against the cluster's health at the previous look.
async fn profile(
    state: &AppState,
    previous: Option<&ClusterHealth>,
) -> (crate::profiler::Analysis, ClusterHealth) {
    let health = health(&state.cluster).await;
    let profiles = crate::participant::profiles(ASK_TIMEOUT).await;
    let analysis =
        crate::profiler::analyze(&health, previous, &profiles, &crate::profiler::Thresholds::default());
    (analysis, health)
}

async fn profile_json(State(state): State<AppState>) -> axum::Json<crate::profiler::Analysis> {
    axum::Json(profile(&state, None).await.0)
}

/// Starts a profile window on every node (what the page's button posts): its id and the nodes
/// recording it.
async fn profile_start(State(state): State<AppState>) -> Response {
    let started = crate::participant::start_profile(&state.cluster, ASK_TIMEOUT).await;
    (StatusCode::CREATED, axum::Json(started)).into_response()
}

/// Stops a profile window on every node: `{"id": …}` (what the page posts: the window it
/// shows), or without one the window this node or the nodes have; 400 for a malformed id, 409
/// if there is no window.
async fn profile_stop(State(state): State<AppState>, body: String) -> Response {
    #[derive(serde::Deserialize)]
    struct Stop {
        id: Option<String>,
    }
    let id = match serde_json::from_str::<Stop>(if body.trim().is_empty() { "{}" } else { &body }) {
        Ok(stop) => stop.id,
        Err(e) => {
            let error = format!("expected {{\"id\": WINDOW}} or {{}}: {e}");
            return (StatusCode::BAD_REQUEST, axum::Json(serde_json::json!({"error": error})))
                .into_response();
        }
    };
    match crate::participant::stop_profile(&state.cluster, id.as_deref(), ASK_TIMEOUT).await {
        Ok(stopped) => axum::Json(stopped).into_response(),
        Err(e @ crate::participant::StopProfileError::BadId(_)) => {
            (StatusCode::BAD_REQUEST, axum::Json(serde_json::json!({"error": e.to_string()}))).into_response()
        }
        Err(e) => {
            (StatusCode::CONFLICT, axum::Json(serde_json::json!({"error": e.to_string()}))).into_response()
        }
    }
}

/// Server-sent events from a channel (a `Stream` written out: no stream crate needed); counted
/// among the open streams until dropped.
struct EventStream(tokio::sync::mpsc::Receiver<Event>, Arc<std::sync::atomic::AtomicUsize>);

impl futures_core::Stream for EventStream {
    type Item = Result<Event, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|e| e.map(Ok))
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.1.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

async fn events(State(state): State<AppState>) -> Response {
    use std::sync::atomic::Ordering;
    let open = state.streams.fetch_add(1, Ordering::AcqRel);
    if open >= state.max_streams {
        state.streams.fetch_sub(1, Ordering::AcqRel);
        return (StatusCode::SERVICE_UNAVAILABLE, "too many event streams open; try again later")
            .into_response();
    }
    let streams = state.streams.clone();
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    // Each event goes out as soon as it is known (a slow profile or an unreachable node must
    // not hold back the node list); cluster traces on a loop of their own, since asking their
    // coordinators can take up to a timeout.
    // Both loops stop as soon as the page goes away (`closed`), not at their next send: a
    // client opening and closing streams cannot leave work running behind it.
    let sessions_tx = tx.clone();
    tokio::spawn(async move {
        loop {
            let sessions = tokio::select! {
                sessions = sessions::live() => sessions.to_string(),
                () = sessions_tx.closed() => return,
            };
            if sessions_tx.send(Event::default().event("sessions").data(sessions)).await.is_err() {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(PUSH_EVERY) => {}
                () = sessions_tx.closed() => return,
            }
        }
    });
    tokio::spawn(async move {
        let mut previous: Option<ClusterHealth> = None;
        let mut sent_until = 0u64;
        loop {
            // The runs and the charts' history are this node's own knowledge: out first, never
            // behind the nodes' answers.
            if tx.send(Event::default().event("runs").data(runs(&state).to_string())).await.is_err() {
                return;
            }
            // The samples this stream has not sent yet (the whole history the first time): the
            // page appends them and keeps the newest five minutes.
            let fresh = state.history.since(sent_until);
            if let Some(last) = fresh.last() {
                sent_until = last.seq;
                let series = serde_json::to_string(&fresh).unwrap_or_default();
                if tx.send(Event::default().event("series").data(series)).await.is_err() {
                    return;
                }
            }
            let objectives = serde_json::to_string(&slos(&state)).unwrap_or_default();
            if tx.send(Event::default().event("slos").data(objectives)).await.is_err() {
                return;
            }
            let health = tokio::select! {
                health = health(&state.cluster) => health,
                () = tx.closed() => return,
            };
            let json = serde_json::to_string(&health).unwrap_or_default();
            if tx.send(Event::default().event("cluster").data(json)).await.is_err() {
                return;
            }
            let profiles = tokio::select! {
                profiles = crate::participant::profiles(ASK_TIMEOUT) => profiles,
                () = tx.closed() => return,
            };
            let thresholds = crate::profiler::Thresholds::default();
            let analysis = crate::profiler::analyze(&health, previous.as_ref(), &profiles, &thresholds);
            previous = Some(health);
            let analysis = serde_json::to_string(&analysis).unwrap_or_default();
            if tx.send(Event::default().event("profile").data(analysis)).await.is_err() {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(PUSH_EVERY) => {}
                () = tx.closed() => return,
            }
        }
    });
    Sse::new(EventStream(rx, streams)).keep_alive(KeepAlive::default()).into_response()
}

fn valid_trace_id(id: &str) -> bool {
    id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

async fn trace_chrome(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    if !valid_trace_id(&id) {
        return (StatusCode::BAD_REQUEST, "a trace id is 32 lowercase hex digits").into_response();
    }
    let timeline = crate::participant::collect(&state.cluster, &id, ASK_TIMEOUT).await;
    let disposition = format!("attachment; filename=\"trace-{id}.json\"");
    ([(header::CONTENT_DISPOSITION, disposition)], axum::Json(crate::export::chrome_trace(&timeline)))
        .into_response()
}

async fn trace_timeline(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    if !valid_trace_id(&id) {
        return (StatusCode::BAD_REQUEST, "a trace id is 32 lowercase hex digits").into_response();
    }
    axum::Json(crate::participant::collect(&state.cluster, &id, ASK_TIMEOUT).await).into_response()
}

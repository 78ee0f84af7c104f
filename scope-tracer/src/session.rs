//! Cluster traces: record everything the cluster does for a while, then collect it as one set of
//! timelines.
//!
//! [`start_cluster_trace`] tells every node's participant that a trace has begun: the nodes in
//! its [`TraceScope`] sample new traces at the scope's rate (on top of their own) until it
//! stops, and each node declares the trace's **coordinator**, a cluster singleton
//! (`scope.trace.ID`) that runs on one node and moves to a survivor if that node is lost.
//! [`stop_cluster_trace`] asks the coordinator to end it; [`collect_cluster_trace`] asks it for
//! the report so far (while running, the timelines grow). The coordinator asks every
//! participant in scope for the spans its node recorded during the trace (each node's window
//! measured on its own clock, from when it heard of the start to when it heard of the stop),
//! waits at most a timeout for each, merges them per trace id (parents first, skew corrected)
//! and names the nodes that did not answer.
//!
//! A trace stops by itself after [`TraceScope::max_duration_ms`], so a forgotten one does not
//! keep a cluster sampling everything. A coordinator that fails over keeps the trace's start
//! (every node holds the trace's spec); stopping is idempotent (a node keeps the first stop it
//! hears of). A node keeps the last [`KEEP_SESSIONS`] traces it heard of; spans live in the
//! nodes' bounded buffers, so a long trace at a high rate can lose its oldest spans there (the
//! buffer's drop count says so).
//!
//! The report lists the spans that **ended in error** across all its traces
//! ([`SessionReport::errors`], with node, span and message; the newest [`MAX_REPORT_ERRORS`]),
//! and keeps that list when it leaves its oldest traces out to fit a frame.

use foundation_core::sync::MutexRecover;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use foundation_actors::supervision::ChildSpec;
use foundation_actors::wire::Wire;
use foundation_cluster::{Cluster, SingletonHandle};
use foundation_core::Cause;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster_derive::RactorClusterMessage;
use serde::{Deserialize, Serialize};

use crate::participant::{self, ParticipantMsg};
use crate::recorder::SpanRecord;
use crate::timeline::{SpanError, Timeline, merge};

/// Traces a node remembers (older ones are forgotten, their coordinators released).
pub const KEEP_SESSIONS: usize = 8;
/// Spans a node sends for one cluster trace at most (the newest are kept).
pub const MAX_SPANS_PER_NODE: usize = 20_000;
/// Errors a report lists at most (the newest; the rest counted in
/// [`SessionReport::omitted_errors`]).
pub const MAX_REPORT_ERRORS: usize = 100;
/// Default for [`TraceScope::max_duration_ms`]: one minute.
pub const DEFAULT_MAX_DURATION: Duration = Duration::from_secs(60);
/// The longest a cluster trace may run: a day.
pub const MAX_DURATION: Duration = Duration::from_secs(86_400);

/// What a cluster trace records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TraceScope {
    /// The nodes that record (empty: every node).
    pub nodes: Vec<String>,
    /// The share of new traces those nodes sample while it runs, 0 to 1 (default 1: all).
    pub rate: f64,
    /// It stops by itself after this many milliseconds (default 60 000, at most a day).
    pub max_duration_ms: u64,
}

impl Default for TraceScope {
    fn default() -> Self {
        TraceScope { nodes: Vec::new(), rate: 1.0, max_duration_ms: DEFAULT_MAX_DURATION.as_millis() as u64 }
    }
}

impl TraceScope {
    /// Whether `node` records for this trace.
    pub fn includes(&self, node: &str) -> bool {
        self.nodes.is_empty() || self.nodes.iter().any(|n| n == node)
    }

    fn check(&self, cluster: &Cluster) -> Result<(), SessionError> {
        if !(0.0..=1.0).contains(&self.rate) {
            return Err(SessionError::Scope(format!("rate = {} (expected 0 to 1)", self.rate).into()));
        }
        if !(1..=MAX_DURATION.as_millis() as u64).contains(&self.max_duration_ms) {
            let reason = format!(
                "max_duration_ms = {} (expected 1 to {}: a day)",
                self.max_duration_ms,
                MAX_DURATION.as_millis()
            );
            return Err(SessionError::Scope(reason.into()));
        }
        let members: BTreeSet<String> = cluster
            .members()
            .into_iter()
            .map(|m| m.name)
            .chain(std::iter::once(cluster.name().to_string()))
            .collect();
        if let Some(unknown) = self.nodes.iter().find(|n| !members.contains(*n)) {
            let known: Vec<&str> = members.iter().map(String::as_str).collect();
            let reason = format!(
                "nodes contains `{unknown}`, not a member of this cluster (members: {})",
                known.join(", ")
            );
            return Err(SessionError::Scope(reason.into()));
        }
        Ok(())
    }
}

/// A cluster trace as every node knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionSpec {
    /// Its id, 16 hex digits.
    pub id: String,
    /// What it records.
    pub scope: TraceScope,
    /// When it started, on the starting node's clock (ns since the Unix epoch).
    pub started_unix_ns: u64,
    /// The node it was started from.
    pub started_by: String,
}

/// Whether a cluster trace is still recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// Recording.
    Running,
    /// Stopped (on request or after its maximum duration).
    Stopped,
}

/// A cluster trace's report: its spec, state and the timelines recorded so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionReport {
    /// The trace.
    pub spec: SessionSpec,
    /// Running or stopped.
    pub state: SessionState,
    /// When it stopped, on the coordinator's clock.
    pub stopped_unix_ns: Option<u64>,
    /// The node whose coordinator answered.
    pub coordinator: String,
    /// One timeline per trace id recorded in it, the earliest first.
    pub traces: Vec<Timeline>,
    /// Nodes in scope that did not answer in time.
    pub missing_nodes: BTreeSet<String>,
    /// Spans a node had but did not send (over [`MAX_SPANS_PER_NODE`]), by node.
    pub truncated: BTreeMap<String, usize>,
    /// The oldest traces left out so that the report fits in a frame (`cluster.max_frame_bytes`
    /// of the coordinator's node).
    pub omitted_traces: usize,
    /// The spans that ended in error, over every trace recorded (those left out too), oldest
    /// first: the newest [`MAX_REPORT_ERRORS`].
    pub errors: Vec<SpanError>,
    /// Errors not listed (over [`MAX_REPORT_ERRORS`], or to fit a frame).
    pub omitted_errors: usize,
}

impl SessionReport {
    /// Every span of every trace in it.
    pub fn span_count(&self) -> usize {
        self.traces.iter().map(|t| t.spans.len()).sum()
    }

    /// All its traces as one timeline (for an export that shows the whole recording).
    pub fn combined(&self) -> Timeline {
        Timeline {
            trace_id: self.spec.id.clone(),
            spans: self.traces.iter().flat_map(|t| t.spans.iter().cloned()).collect(),
            skew_adjusted: self.traces.iter().flat_map(|t| t.skew_adjusted.clone()).collect(),
            orphans: self.traces.iter().flat_map(|t| t.orphans.iter().cloned()).collect(),
            missing_nodes: self.missing_nodes.clone(),
            // The report's own list: it keeps the errors of traces left out to fit a frame.
            errors: self.errors.clone(),
        }
    }
}

/// A cluster trace as this node saw it (for lists: no spans).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The trace.
    pub spec: SessionSpec,
    /// Running or stopped, as this node heard.
    pub state: SessionState,
    /// Whether this node records for it.
    pub recording_here: bool,
}

/// Why a cluster trace could not be started, stopped or read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SessionError {
    /// The scope is not valid (why, or the error that kept it from reaching the nodes).
    #[error("invalid trace scope: {0}")]
    Scope(#[source] Cause),
    /// No participant runs on this node (start one with `participant::start`).
    #[error("no trace participant runs on this node: start one before starting a cluster trace")]
    NoParticipant,
    /// The id is not one this cluster knows (or it was forgotten).
    #[error("unknown cluster trace `{0}` (a node remembers its last 8)")]
    Unknown(String),
    /// Its coordinator's answer could not be read.
    #[error("the report of cluster trace `{id}` could not be read: {source}")]
    Unreadable {
        /// The trace.
        id: String,
        /// Why (the underlying error).
        #[source]
        source: Cause,
    },
    /// Its coordinator did not answer in time.
    #[error("the coordinator of cluster trace `{id}` did not answer within {timeout:?}")]
    Timeout {
        /// The trace.
        id: String,
        /// How long we waited.
        timeout: Duration,
    },
}

/// What this process knows of cluster traces: the participant writes it, readers list it.
struct Known {
    sessions: Vec<Local>,
}

struct Local {
    spec: SessionSpec,
    /// This node's window, on its own clock.
    heard_start_ns: u64,
    heard_stop_ns: Option<u64>,
    recording_here: bool,
    /// Keeps the coordinator declared on this node (released when the trace is forgotten).
    _coordinator: Option<SingletonHandle>,
}

static KNOWN: Mutex<Known> = Mutex::new(Known { sessions: Vec::new() });
/// The highest rate of the running traces this node records for (f64 bits; 0: none).
static BOOST: AtomicU64 = AtomicU64::new(0);

fn known() -> MutexGuard<'static, Known> {
    KNOWN.lock_or_recover()
}

use crate::recorder::now_unix_ns;

/// The sampling rate running cluster traces ask of this node (0 when none does).
pub fn boost() -> f64 {
    let rate = f64::from_bits(BOOST.load(Ordering::Relaxed));
    if rate == 0.0 || now_unix_ns() < BOOST_UNTIL.load(Ordering::Relaxed) {
        return rate;
    }
    // A trace reached its deadline without a stop heard: look again.
    update_boost(&known());
    f64::from_bits(BOOST.load(Ordering::Relaxed))
}

/// Until when (this node's clock) the current boost holds without a second look: the earliest
/// deadline of the traces that set it.
static BOOST_UNTIL: AtomicU64 = AtomicU64::new(0);

fn update_boost(known: &Known) {
    let now = now_unix_ns();
    let live = known.sessions.iter().filter(|s| s.recording_here && s.running(now));
    let (rate, until) = live.fold((0.0, u64::MAX), |(rate, until), s| {
        (f64::max(rate, s.spec.scope.rate), until.min(s.deadline_ns()))
    });
    BOOST_UNTIL.store(until, Ordering::Relaxed);
    BOOST.store(rate.to_bits(), Ordering::Relaxed);
}

impl Local {
    /// When it ends on its own, on this node's clock (if its coordinator never says so: no
    /// majority, or the stop lost).
    fn deadline_ns(&self) -> u64 {
        self.heard_start_ns.saturating_add(self.spec.scope.max_duration_ms.saturating_mul(1_000_000))
    }

    fn running(&self, now: u64) -> bool {
        self.heard_stop_ns.is_none() && now < self.deadline_ns()
    }
}

/// The pg group of a trace's coordinator.
fn coordinator_group(id: &str) -> String {
    format!("session:{id}")
}

/// The participant heard of a trace: record it, raise sampling if in scope, declare its
/// coordinator (with a cluster to declare it on).
pub(crate) fn begin(spec: SessionSpec, node: &str, cluster: Option<&Cluster>) {
    let mut known = known();
    if known.sessions.iter().any(|s| s.spec.id == spec.id) {
        return;
    }
    let coordinator = cluster.map(|c| {
        let name = format!("scope.trace.{}", spec.id);
        let (spec, cluster) = (spec.clone(), c.clone());
        SingletonHandle::start(
            c,
            &name,
            ChildSpec::new(name.clone(), move || (TraceCoordinator, (spec.clone(), cluster.clone()))),
        )
    });
    let recording_here = spec.scope.includes(node);
    known.sessions.push(Local {
        spec,
        heard_start_ns: now_unix_ns(),
        heard_stop_ns: None,
        recording_here,
        _coordinator: coordinator,
    });
    // Forget the oldest stopped one first; a running one only when all are running.
    let now = now_unix_ns();
    while known.sessions.len() > KEEP_SESSIONS {
        let oldest = known.sessions.iter().position(|s| !s.running(now)).unwrap_or(0);
        known.sessions.remove(oldest);
    }
    update_boost(&known);
}

/// The participant heard that a trace stopped (the first stop counts).
pub(crate) fn end(id: &str) {
    let mut known = known();
    if let Some(s) = known.sessions.iter_mut().find(|s| s.spec.id == id) {
        s.heard_stop_ns.get_or_insert_with(now_unix_ns);
    }
    update_boost(&known);
}

/// This node's window for a trace (on its own clock), if it records for it.
pub(crate) fn window(id: &str) -> Option<(u64, Option<u64>)> {
    let known = known();
    let s = known.sessions.iter().find(|s| s.spec.id == id && s.recording_here)?;
    Some((s.heard_start_ns, Some(s.heard_stop_ns.map_or(s.deadline_ns(), |stop| stop.min(s.deadline_ns())))))
}

/// When this node heard that the trace `id` stopped, if it did (a coordinator taking over
/// starts from it).
pub(crate) fn heard_stop(id: &str) -> Option<u64> {
    known().sessions.iter().find(|s| s.spec.id == id).and_then(|s| s.heard_stop_ns)
}

/// The cluster traces this node heard of, the newest first.
pub fn sessions() -> Vec<SessionInfo> {
    let known = known();
    let now = now_unix_ns();
    known
        .sessions
        .iter()
        .rev()
        .map(|s| SessionInfo {
            spec: s.spec.clone(),
            state: if s.running(now) { SessionState::Running } else { SessionState::Stopped },
            recording_here: s.recording_here,
        })
        .collect()
}

fn new_id() -> String {
    format!("{:016x}", foundation_core::random::next_u64() | 1)
}

/// Starts a cluster trace over `scope`: every participant hears of it (those in scope start
/// sampling at its rate) and declares its coordinator. Returns its id.
pub async fn start_cluster_trace(cluster: &Cluster, scope: TraceScope) -> Result<String, SessionError> {
    scope.check(cluster)?;
    if !participant::participants().iter().any(|p| p.get_id().is_local()) {
        return Err(SessionError::NoParticipant);
    }
    let spec = SessionSpec {
        id: new_id(),
        scope,
        started_unix_ns: now_unix_ns(),
        started_by: cluster.name().to_string(),
    };
    // Every participant is told and answers once it records, so that work started after this
    // returns is recorded everywhere (one that does not answer in time starts when the message
    // reaches it; its node is named missing if it never answers the collection).
    let began = participant::ask_all::<_, String>(
        &spec,
        cluster.max_frame_bytes(),
        PART_TIMEOUT,
        ParticipantMsg::Begin,
    )
    .await
    .map_err(|e| SessionError::Scope(format!("the trace's spec cannot be sent to the nodes: {e}").into()))?
    .len();
    tracing::info!(id = %spec.id, nodes = began, "cluster trace started");
    Ok(spec.id)
}

/// Stops the cluster trace `id` and returns its report (waiting at most `timeout` for its
/// coordinator, which may still be starting, and then for each node).
pub async fn stop_cluster_trace(id: &str, timeout: Duration) -> Result<SessionReport, SessionError> {
    ask(id, timeout, CoordinatorMsg::Stop).await
}

/// The report of the cluster trace `id` so far (running or stopped).
pub async fn collect_cluster_trace(id: &str, timeout: Duration) -> Result<SessionReport, SessionError> {
    ask(id, timeout, CoordinatorMsg::Report).await
}

async fn ask(
    id: &str,
    timeout: Duration,
    msg: fn(RpcReplyPort<Wire<SessionReport>>) -> CoordinatorMsg,
) -> Result<SessionReport, SessionError> {
    if !sessions().iter().any(|s| s.spec.id == id) {
        return Err(SessionError::Unknown(id.to_string()));
    }
    let timed_out = || SessionError::Timeout { id: id.to_string(), timeout };
    let deadline = tokio::time::Instant::now() + timeout;
    // The coordinator may be starting, or moving from a lost node (whose stand-in is still
    // listed until the loss is detected): ask whoever holds it until one answers or time is up.
    loop {
        let members = ractor::pg::get_scoped_members(&participant::SCOPE.to_string(), &coordinator_group(id));
        for member in members {
            let coordinator: ActorRef<CoordinatorMsg> = member.into();
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            if let Ok(ractor::rpc::CallResult::Success(report)) = coordinator.call(msg, Some(left)).await {
                return report
                    .into_inner()
                    .map_err(|e| SessionError::Unreadable { id: id.to_string(), source: Cause::new(e) });
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(timed_out());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How long the coordinator waits for each node's part.
const PART_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(RactorClusterMessage)]
enum CoordinatorMsg {
    #[rpc]
    Stop(RpcReplyPort<Wire<SessionReport>>),
    #[rpc]
    Report(RpcReplyPort<Wire<SessionReport>>),
    /// Its maximum duration passed.
    Expire,
}

struct TraceCoordinator;

struct CoordinatorState {
    spec: SessionSpec,
    cluster: Cluster,
    stopped_unix_ns: Option<u64>,
    /// The latest report and when it was made.
    last: Option<(std::time::Instant, SessionReport)>,
}

/// How long a report is reused for `collect` (a stop always collects anew).
const REPORT_REUSE: Duration = Duration::from_secs(1);
/// The report, encoded; its oldest traces left out (and counted) until it fits `max_bytes`
/// (the cluster's frame limit), then, if still too large, its oldest errors. If it does not fit
/// even without traces and errors, an empty frame (logged with the sizes), which the asker
/// reads as [`SessionError::Unreadable`] rather than wait for an answer that never comes.
fn fit(mut report: SessionReport, max_bytes: usize) -> Wire<SessionReport> {
    loop {
        match Wire::encode(&report, max_bytes) {
            Ok(wire) => return wire,
            Err(_) if !report.traces.is_empty() => {
                let half = report.traces.len().div_ceil(2);
                report.traces.drain(..half);
                report.omitted_traces += half;
            }
            // The error list goes last, and the oldest first.
            Err(_) if !report.errors.is_empty() => {
                let half = report.errors.len().div_ceil(2);
                report.errors.drain(..half);
                report.omitted_errors += half;
            }
            Err(e) => {
                tracing::warn!(
                    id = %report.spec.id, error = %e,
                    "a cluster trace's report does not fit a message even without its traces"
                );
                return Wire::from_encoded(&[]);
            }
        }
    }
}

impl Actor for TraceCoordinator {
    type Msg = CoordinatorMsg;
    type State = CoordinatorState;
    type Arguments = (SessionSpec, Cluster);

    async fn pre_start(
        &self,
        myself: ActorRef<CoordinatorMsg>,
        (spec, cluster): (SessionSpec, Cluster),
    ) -> Result<CoordinatorState, ActorProcessingErr> {
        ractor::pg::join_scoped(
            participant::SCOPE.to_string(),
            coordinator_group(&spec.id),
            vec![myself.get_cell()],
        );
        // Counted from the start (a coordinator that took over keeps the original deadline).
        let ends = spec.started_unix_ns.saturating_add(spec.scope.max_duration_ms.saturating_mul(1_000_000));
        let left = Duration::from_nanos(ends.saturating_sub(now_unix_ns()));
        myself.send_after(left, || CoordinatorMsg::Expire);
        // Taking over a trace that was already stopped: it stays stopped.
        let stopped_unix_ns = heard_stop(&spec.id);
        Ok(CoordinatorState { spec, cluster, stopped_unix_ns, last: None })
    }

    async fn handle(
        &self,
        _: ActorRef<CoordinatorMsg>,
        msg: CoordinatorMsg,
        state: &mut CoordinatorState,
    ) -> Result<(), ActorProcessingErr> {
        // A copy whose singleton lease ran out (paused past it, or cut off) acts no more: a new
        // coordinator may run elsewhere, and its manager kills this one at once.
        if !foundation_cluster::singleton::lease_valid(&format!("scope.trace.{}", state.spec.id)) {
            tracing::warn!(trace = %state.spec.id, "trace coordinator without a valid lease: message ignored");
            return Ok(());
        }
        match msg {
            CoordinatorMsg::Stop(reply) => {
                stop(state);
                let report = report(state).await;
                state.last = Some((std::time::Instant::now(), report.clone()));
                let _ = reply.send(fit(report, state.cluster.max_frame_bytes()));
            }
            CoordinatorMsg::Report(reply) => {
                // Several pages asking every second share one collection a second.
                let report = match &state.last {
                    Some((at, report)) if at.elapsed() < REPORT_REUSE => report.clone(),
                    _ => {
                        let report = report(state).await;
                        state.last = Some((std::time::Instant::now(), report.clone()));
                        report
                    }
                };
                let _ = reply.send(fit(report, state.cluster.max_frame_bytes()));
            }
            CoordinatorMsg::Expire => {
                if state.stopped_unix_ns.is_none() {
                    tracing::info!(id = %state.spec.id, "cluster trace reached its maximum duration");
                    stop(state);
                }
            }
        }
        Ok(())
    }
}

fn stop(state: &mut CoordinatorState) {
    state.stopped_unix_ns.get_or_insert_with(now_unix_ns);
    // The id is 16 hex digits: it fits any frame limit (checked all the same).
    let id = match foundation_actors::wire::encode(&state.spec.id, state.cluster.max_frame_bytes()) {
        Ok(id) => id,
        Err(e) => {
            tracing::warn!(id = %state.spec.id, error = %e, "the end of a cluster trace cannot be sent to the nodes");
            return;
        }
    };
    for participant in participant::participants() {
        let _ = participant.cast(ParticipantMsg::End(Wire::from_encoded(&id)));
    }
}

async fn report(state: &CoordinatorState) -> SessionReport {
    let scope = &state.spec.scope;
    // Every member in scope that has not left on purpose: a node that went down during the
    // trace did not answer, and is named.
    let expected: BTreeSet<String> = state
        .cluster
        .members()
        .into_iter()
        .filter(|m| m.status != foundation_cluster::MemberStatus::Left)
        .map(|m| m.name)
        .chain(std::iter::once(state.cluster.name().to_string()))
        .filter(|n| scope.includes(n) && !n.starts_with(foundation_cluster::singleton::OBSERVER_PREFIX))
        .collect();
    let mut answered = BTreeSet::new();
    let mut truncated = BTreeMap::new();
    let mut by_trace: BTreeMap<String, Vec<SpanRecord>> = BTreeMap::new();
    // An id too large to send (logged by `ask_all`) is asked of no one: every node missing.
    let parts: Vec<participant::SessionPart> = participant::ask_all(
        &state.spec.id,
        state.cluster.max_frame_bytes(),
        PART_TIMEOUT,
        ParticipantMsg::Session,
    )
    .await
    .unwrap_or_default();
    for part in parts {
        let Some(spans) = part.spans else { continue };
        answered.insert(part.node.clone());
        if part.truncated > 0 {
            truncated.insert(part.node, part.truncated);
        }
        for span in spans {
            by_trace.entry(span.trace_id.clone()).or_default().push(span);
        }
    }
    let missing: BTreeSet<String> = expected.difference(&answered).cloned().collect();
    let mut traces: Vec<Timeline> =
        by_trace.into_iter().map(|(id, spans)| merge(&id, spans, missing.clone())).collect();
    traces.sort_by_key(|t| t.spans.first().map_or(0, |s| s.start_unix_ns));
    let mut errors: Vec<SpanError> = traces.iter().flat_map(|t| t.errors.iter().cloned()).collect();
    errors.sort_by_key(|e| e.start_unix_ns);
    let omitted_errors = errors.len().saturating_sub(MAX_REPORT_ERRORS);
    errors.drain(..omitted_errors);
    SessionReport {
        spec: state.spec.clone(),
        state: if state.stopped_unix_ns.is_some() { SessionState::Stopped } else { SessionState::Running },
        stopped_unix_ns: state.stopped_unix_ns,
        coordinator: state.cluster.name().to_string(),
        traces,
        missing_nodes: missing,
        truncated,
        omitted_traces: 0,
        errors,
        omitted_errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str, rate: f64, max_duration_ms: u64) -> SessionSpec {
        SessionSpec {
            id: id.into(),
            scope: TraceScope { nodes: vec![], rate, max_duration_ms },
            started_unix_ns: now_unix_ns(),
            started_by: "n1".into(),
        }
    }

    #[test]
    fn a_report_is_cut_to_the_frame_limit_or_refused_readably() {
        let timeline = |i: usize| Timeline {
            trace_id: format!("{i:032x}"),
            spans: Vec::new(),
            skew_adjusted: Default::default(),
            orphans: Default::default(),
            missing_nodes: BTreeSet::new(),
            errors: Vec::new(),
        };
        let report = SessionReport {
            spec: spec("00000000000000f1", 1.0, 60_000),
            state: SessionState::Stopped,
            stopped_unix_ns: None,
            coordinator: "n1".into(),
            traces: (0..100).map(timeline).collect(),
            missing_nodes: BTreeSet::new(),
            truncated: BTreeMap::new(),
            omitted_traces: 0,
            errors: (0..5)
                .map(|i| SpanError {
                    trace_id: format!("{i:032x}"),
                    span_id: format!("{i:016x}"),
                    span: "step".into(),
                    node: "n2".into(),
                    start_unix_ns: i,
                    message: format!("failure {i}"),
                })
                .collect(),
            omitted_errors: 0,
        };
        // 100 timelines take more than 1 KiB: the oldest go until it fits.
        let sent = fit(report.clone(), 1024).into_inner().unwrap();
        assert!(sent.omitted_traces > 0 && sent.traces.len() + sent.omitted_traces == 100);
        assert!(foundation_actors::wire::encode(&sent, 1024).is_ok());
        assert_eq!(sent.traces.last(), report.traces.last(), "the newest are kept");
        // Errors outlive the traces: listed while traces are left out, and cut (oldest first)
        // only once every trace is.
        assert_eq!(sent.errors, report.errors);
        let many: Vec<SpanError> = (0..40).flat_map(|_| report.errors.clone()).collect();
        let tight = SessionReport { errors: many.clone(), ..report.clone() };
        let tight = fit(tight, 1024).into_inner().unwrap();
        assert!(tight.traces.is_empty(), "{tight:?}");
        assert!(tight.omitted_errors > 0 && tight.errors.len() + tight.omitted_errors == 200, "{tight:?}");
        assert_eq!(tight.errors.last(), many.last(), "the newest errors are kept");
        // Not even its spec fits: an unreadable answer rather than an oversized frame or none.
        let huge = SessionReport { coordinator: "n".repeat(2000), ..report };
        assert!(fit(huge, 1024).into_inner().is_err());
    }

    // One test: the list of known traces is process-wide.
    #[test]
    fn a_trace_ends_on_its_own_and_stopped_traces_are_forgotten_first() {
        // A trace whose stop never arrives (no coordinator ran) ends at its deadline anyway.
        begin(spec("00000000000000a1", 0.5, 60), "n1", None);
        assert_eq!(boost(), 0.5);
        assert_eq!(sessions()[0].state, SessionState::Running);
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(boost(), 0.0);
        assert_eq!(sessions()[0].state, SessionState::Stopped);
        let (from, until) = window("00000000000000a1").unwrap();
        assert_eq!(until, Some(from + 60_000_000));

        // A long-running trace survives eight newer ones that stopped.
        begin(spec("00000000000000b0", 1.0, 60_000), "n1", None);
        for i in 0..KEEP_SESSIONS {
            let id = format!("00000000000000c{i}");
            begin(spec(&id, 0.1, 60_000), "n1", None);
            end(&id);
        }
        let known: Vec<String> = sessions().into_iter().map(|s| s.spec.id).collect();
        assert!(known.contains(&"00000000000000b0".to_string()), "{known:?}");
        assert!(!known.contains(&"00000000000000a1".to_string()), "{known:?}");
        assert_eq!(boost(), 1.0);
        end("00000000000000b0");
        assert_eq!(boost(), 0.0);
    }
}

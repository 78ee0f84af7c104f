//! The HTTP endpoint Prometheus scrapes.

use std::net::SocketAddr;

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{Telemetry, TelemetryError};

/// The content type of Prometheus text exposition format 0.0.4.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A running metrics endpoint; stops when shut down or dropped.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// The address actually bound (useful after asking for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections, lets in-flight scrapes finish, and waits for the server.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub(super) async fn serve(telemetry: Telemetry, addr: SocketAddr) -> Result<MetricsServer, TelemetryError> {
    let listener =
        tokio::net::TcpListener::bind(addr).await.map_err(|source| TelemetryError::Bind { addr, source })?;
    let local = listener.local_addr().map_err(|source| TelemetryError::Bind { addr, source })?;
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let telemetry = telemetry.clone();
            async move { ([(CONTENT_TYPE, PROMETHEUS_TEXT)], telemetry.render()) }
        }),
    );
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(crate::http::serve(listener, app, crate::http::HttpLimits::default(), async {
        let _ = rx.await;
    }));
    tracing::info!(addr = %local, "serving Prometheus metrics on /metrics");
    Ok(MetricsServer { addr: local, shutdown: Some(tx), task: Some(task) })
}

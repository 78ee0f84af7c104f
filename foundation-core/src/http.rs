//! Serving HTTP with the limits a server others can reach needs (feature `metrics-server`):
//! every HTTP server of Foundation (`/metrics`, the dashboard, the simulated provider) runs on
//! [`serve`] instead of `axum::serve`, which has none of them.
//!
//! - **Header-read timeout** ([`HttpLimits::header_read_timeout`], 5 s): a client that opens a
//!   connection and sends its request headers slowly, or not at all, is disconnected (hyper's
//!   own timer); it cannot hold a connection for long.
//! - **Connections** ([`HttpLimits::max_connections`], 256): past the cap a new connection is
//!   closed at once, so a flood of them costs the server a file descriptor each for an instant.
//! - **Request timeout** ([`HttpLimits::request_timeout`], 30 s): a handler that has not
//!   produced its response headers by then is answered 503 (a streaming body, such as
//!   server-sent events, is not cut: its headers go out at once).
//! - **Body size** ([`HttpLimits::max_body_bytes`], 1 MiB): the limit axum's body extractors
//!   apply (413 beyond).

use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tower::ServiceExt as _;

/// The limits [`serve`] applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// How long a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// How long a handler may take to produce its response's headers.
    pub request_timeout: Duration,
    /// Connections served at once; more are closed on arrival.
    pub max_connections: usize,
    /// The largest request body read.
    pub max_body_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_connections: 256,
            max_body_bytes: 1 << 20,
        }
    }
}

/// Serves `router` on `listener` under `limits` until `shutdown` completes (then stops
/// accepting; connections in progress end by themselves).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    let timeout = limits.request_timeout;
    let router = router.layer(axum::extract::DefaultBodyLimit::max(limits.max_body_bytes)).layer(
        axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| async move {
                match tokio::time::timeout(timeout, next.run(request)).await {
                    Ok(response) => response,
                    Err(_) => axum::response::IntoResponse::into_response((
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        "the request took too long",
                    )),
                }
            },
        ),
    );
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, or a connection reset before it was accepted: go on.
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "connection refused: too many open");
            drop(stream);
            continue;
        };
        let router = router.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    router.clone().oneshot(request.map(axum::body::Body::new))
                });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
            drop(slot);
        });
    }
}

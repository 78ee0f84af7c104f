//! Serving HTTP with the limits a server others can reach needs (feature `http-server`):
//! every HTTP server of Foundation (`/metrics`, the dashboard, the simulated provider) runs on
//! [`serve`] instead of `axum::serve`, which has none of them.
//!
//! - **Header-read timeout** ([`HttpLimits::header_read_timeout`], 5 s): a client that opens a
//!   connection and sends its request headers slowly, or not at all (also between requests on a
//!   kept-alive connection), is disconnected (hyper's own timer).
//! - **Write timeout** ([`HttpLimits::write_timeout`], 10 s): a client that stops reading (its
//!   socket buffer full, a pipeline of requests whose answers it never takes) is disconnected
//!   once a write has waited that long, so it cannot hold a connection slot for good.
//! - **Connections** ([`HttpLimits::max_connections`], 256): past the cap a new connection is
//!   closed at once, so a flood of them costs the server a file descriptor each for an instant.
//! - **Request timeout** ([`HttpLimits::request_timeout`], 30 s): a handler that has not
//!   produced its response headers by then is answered 503 (a streaming body, such as
//!   server-sent events, is not cut: its headers go out at once).
//! - **Body size** ([`HttpLimits::max_body_bytes`], 1 MiB): the limit axum's body extractors
//!   apply (413 beyond).
//! - **Stopping**: when `shutdown` completes, or the future is dropped (its task aborted), every
//!   connection it serves is closed, kept-alive ones and event streams included.
//!
//! Not covered: many slow clients together can still take every connection slot for up to the
//! timeouts above (no cap per client address is kept).

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tower::ServiceExt as _;

/// The limits [`serve`] applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// How long a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// How long a handler may take to produce its response's headers.
    pub request_timeout: Duration,
    /// How long one write to the client may wait (the client not reading).
    pub write_timeout: Duration,
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
            write_timeout: Duration::from_secs(10),
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
    // Dropped with this future: every connection task sees it and closes its connection.
    let (_open, closed) = tokio::sync::watch::channel(());
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
        let mut closed = closed.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    router.clone().oneshot(request.map(axum::body::Body::new))
                });
            let stream = WriteDeadline::new(stream, limits.write_timeout);
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                ended = connection => if let Err(e) = ended {
                    tracing::debug!(%peer, error = %e, "connection ended");
                },
                // The server stopped: the connection is dropped (closed) here.
                _ = closed.changed() => {}
            }
            drop(slot);
        });
    }
}

/// A stream whose writes fail with `TimedOut` once one has waited longer than its deadline.
struct WriteDeadline<S> {
    inner: S,
    timeout: Duration,
    /// Running while a write waits.
    waiting: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteDeadline<S> {
    fn new(inner: S, timeout: Duration) -> Self {
        WriteDeadline { inner, timeout, waiting: None }
    }

    /// `polled` (a write's or a flush's outcome) as the deadline sees it: ready resets it; still
    /// pending past it is a `TimedOut` error.
    fn within<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if polled.is_ready() {
            self.waiting = None;
            return polled;
        }
        let timeout = self.timeout;
        let sleep = self.waiting.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.within(cx, polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.within(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

//! `foundation_core::http::serve`: a client that holds its headers is disconnected, connections
//! past the cap are closed at once, a slow handler is answered 503, a large body 413 (issue 20,
//! point 5). Timeouts here are short so that the test is; the defaults are in the module doc.
#![cfg(feature = "http-server")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use axum::routing::{get, post};
use foundation_core::http::{HttpLimits, serve};

fn get_status(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.lines().next().unwrap_or_default().to_string()
}

/// Whether the server closed `stream` (a read returns end of file or an error) within `within`.
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_floods_slow_handlers_and_large_bodies_are_bounded() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = axum::Router::new()
        .route("/", get(|| async { "ok" }))
        .route("/slow", get(|| async { tokio::time::sleep(Duration::from_secs(5)).await }))
        .route("/echo", post(|body: String| async move { body.len().to_string() }))
        .route("/big", get(|| async { "x".repeat(4 << 20) }));
    let limits = HttpLimits {
        header_read_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_millis(300),
        write_timeout: Duration::from_millis(300),
        max_connections: 3,
        max_body_bytes: 1024,
    };
    tokio::spawn(serve(listener, router, limits, std::future::pending()));

    let results = tokio::task::spawn_blocking(move || {
        assert_eq!(get_status(addr, "/"), "HTTP/1.1 200 OK");
        // A client that starts its headers and never finishes them is disconnected.
        let mut slow = TcpStream::connect(addr).unwrap();
        write!(slow, "GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
        assert!(
            closed_within(&mut slow, Duration::from_secs(5)),
            "a client holding its headers stayed connected"
        );
        // Connections past the cap are closed at once; the ones held are not.
        let mut held: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(100));
        let mut extra = TcpStream::connect(addr).unwrap();
        assert!(closed_within(&mut extra, Duration::from_secs(2)), "a fourth connection was kept");
        held.clear();
        // Their places come back once they are gone (closed by us, or by the header timeout).
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(get_status(addr, "/"), "HTTP/1.1 200 OK");
        // Clients that ask for large answers and never read them cannot keep their slots: once a
        // write has waited the write timeout, the server lets go.
        let readers_that_never_read: Vec<TcpStream> = (0..3)
            .map(|_| {
                let mut s = TcpStream::connect(addr).unwrap();
                for _ in 0..4 {
                    write!(s, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
                }
                s
            })
            .collect();
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(get_status(addr, "/"), "HTTP/1.1 200 OK", "slots held by clients that stopped reading");
        drop(readers_that_never_read);
        // A handler slower than the request timeout is answered 503; a body over the limit 413.
        let slow_handler = get_status(addr, "/slow");
        let mut stream = TcpStream::connect(addr).unwrap();
        let body = "x".repeat(2048);
        write!(
            stream,
            "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        (slow_handler, response.lines().next().unwrap_or_default().to_string())
    })
    .await
    .unwrap();
    assert_eq!(results.0, "HTTP/1.1 503 Service Unavailable");
    assert_eq!(results.1, "HTTP/1.1 413 Payload Too Large");
}

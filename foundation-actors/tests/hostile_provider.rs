//! Provider responses are untrusted input (issue 20, point 6): a loopback server answers with
//! what a broken or hostile endpoint might send — rate-limit headers that are huge, negative,
//! NaN or garbage, a body without end, a body that is not JSON — and nothing panics, no limiter
//! pauses longer than `MAX_PAUSE`, and each bad answer is a typed error naming the provider.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test or benchmark: a failed unwrap fails the run, with its message"
)]

use std::io::{Read, Write};
use std::time::Duration;

use foundation_actors::providers::*;
use foundation_core::rate_limit::{Limit, MAX_PAUSE, RateLimitError, RateLimiter};

/// A server on loopback that answers each connection with the next of `responses` (raw HTTP),
/// then closes it. Returns its base URL.
fn serve(responses: Vec<Vec<u8>>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for response in responses {
            let Ok((mut stream, _)) = listener.accept() else { return };
            // Read the request's head and body (its length from content-length).
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = stream.read(&mut buf).unwrap_or(0);
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text
                        .lines()
                        .find_map(|l| {
                            l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0))
                        })
                        .unwrap_or(0usize);
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            let _ = stream.write_all(&response);
        }
    });
    url
}

fn response(status: &str, headers: &[(&str, &str)], body: &[u8], with_length: bool) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {status}\r\nconnection: close\r\ncontent-type: application/json\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if with_length {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

const GOOD_BODY: &str = r#"{"model":"m","choices":[{"message":{"content":"ok"}}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#;

fn client(url: String) -> OpenAiClient {
    OpenAiClient::new("hostile", "m", Some(url), None, Duration::from_secs(10))
}

#[tokio::test]
async fn huge_negative_nan_and_garbage_rate_limit_headers_never_panic_nor_pause_past_the_cap() {
    let values = ["1e20", "99999999999999999999h", "-5", "NaN", "inf", "1e400", "soon", ""];
    let responses = values
        .iter()
        .map(|v| response("429 Too Many Requests", &[("retry-after", v)], b"{}", true))
        .collect();
    let model = client(serve(responses));
    for value in values {
        match model.complete(&ChatRequest::prompt("hi")).await {
            Err(LmError::RateLimited { provider, retry_after, .. }) => {
                assert_eq!(provider, "hostile");
                assert!(
                    retry_after.is_none_or(|d| d <= MAX_PAUSE),
                    "retry-after {value:?} read as {retry_after:?}"
                );
            }
            other => panic!("retry-after {value:?}: {other:?}"),
        }
        // The same header given to a limiter: at most MAX_PAUSE of pause, or none.
        let limiter = RateLimiter::new([Limit::per_minute("requests", 600)]).unwrap();
        let report = limiter.apply_headers([("retry-after", value)]);
        assert!(report.retry_after.is_none_or(|d| d <= MAX_PAUSE), "{value:?}: {report:?}");
        match limiter.try_acquire(&[1]) {
            Ok(_) => assert!(report.retry_after.is_none(), "{value:?}"),
            Err(RateLimitError::WouldWait { retry_in, .. }) => {
                assert!(retry_in.is_some_and(|d| d <= MAX_PAUSE), "{value:?}: waits {retry_in:?}");
            }
            Err(e) => panic!("{value:?}: {e}"),
        }
    }
}

#[tokio::test]
async fn huge_reset_and_negative_remaining_headers_on_a_success_are_read_as_unreadable() {
    let headers = [("x-ratelimit-reset-requests", "1e20"), ("x-ratelimit-remaining-requests", "-3")];
    let model = client(serve(vec![response("200 OK", &headers, GOOD_BODY.as_bytes(), true)]));
    let answer = model.complete(&ChatRequest::prompt("hi")).await.unwrap();
    assert_eq!(answer.content, "ok");
    let limiter = RateLimiter::new([Limit::per_minute("requests", 600)]).unwrap();
    let report = limiter.apply_headers(answer.rate_headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    assert_eq!(report.resets, vec![("requests".to_string(), Duration::MAX)], "{report:?}");
    assert!(report.unreadable.iter().any(|(n, _)| n == "x-ratelimit-remaining-requests"), "{report:?}");
    assert!(limiter.try_acquire(&[1]).is_ok(), "a reset is read, never applied as a pause");
}

#[tokio::test]
async fn a_body_without_end_or_not_json_is_a_typed_error_naming_the_provider() {
    let huge = vec![b' '; MAX_RESPONSE_BYTES + 1];
    let model = client(serve(vec![
        // Announced as too large, then one that says nothing of its length and never ends soon.
        response("200 OK", &[], &huge, true),
        response("200 OK", &[], &huge, false),
        response("200 OK", &[], b"<html>gateway says hello</html>", true),
        response("200 OK", &[], br#"{"choices":[]}"#, true),
    ]));
    for expected in ["larger than", "larger than", "gateway says hello", "no choices"] {
        match model.complete(&ChatRequest::prompt("hi")).await {
            Err(e @ LmError::Malformed { .. }) => {
                let text = e.to_string();
                assert!(text.contains("hostile"), "{text}");
                let cause = std::error::Error::source(&e).map(ToString::to_string).unwrap_or_default();
                assert!(cause.contains(expected) || text.contains(expected), "{text}: {cause}");
            }
            other => panic!("expected a malformed response ({expected}): {other:?}"),
        }
    }
}

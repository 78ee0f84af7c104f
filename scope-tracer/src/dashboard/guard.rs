//! What a request must show before the dashboard answers it (every route but the login page):
//!
//! - **Host** names this dashboard: an IP address literal, `localhost`, or a name given in
//!   [`DashboardOptions::allowed_hosts`](super::DashboardOptions::allowed_hosts) (with the
//!   dashboard's port, if a port is given). A page on another site whose name was pointed at
//!   this address (DNS rebinding) sends its own name and is refused (403).
//! - **State-changing requests** (every method but GET and HEAD) carry
//!   `Content-Type: application/json` (415 otherwise: a cross-site form or `text/plain` POST
//!   cannot set it without a preflight) and, if they carry an `Origin`, it is this dashboard's own
//!   (403 otherwise).
//! - **The token**, when one is set: `Authorization: Bearer TOKEN`, or the HttpOnly, SameSite
//!   cookie the login form sets — never a query string (it would sit in logs, history and
//!   `Referer` headers). The cookie holds a session id (128 random bits, valid 12 hours, the
//!   latest 64 kept), not the token: cookies are not kept apart by port, so another service on
//!   the same host may see it. Compared in constant time. Missing or wrong: 401 after a pause
//!   (guessing is slow; the token is at least 16 bytes), and the page itself redirects a
//!   browser to `/login`.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};

use super::AppState;

/// The cookie the login form sets.
pub(super) const COOKIE: &str = "foundation_dashboard";

/// Session ids kept at once (the oldest is forgotten first).
const MAX_SESSIONS: usize = 64;
/// How long a session cookie is valid.
const SESSION_SECONDS: u64 = 12 * 3600;
/// The pause before a refusal for a wrong token or session.
const REFUSAL_PAUSE: std::time::Duration = std::time::Duration::from_millis(250);

/// Equal in constant time for strings of one length (the length itself is not secret).
pub(super) fn same_secret(a: &str, b: &str) -> bool {
    let difference = a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    a.len() == b.len() && std::hint::black_box(difference) == 0
}

/// The sessions the login form opened: (id, when it ends).
#[derive(Default)]
pub(super) struct Sessions(std::sync::Mutex<std::collections::VecDeque<(String, std::time::Instant)>>);

impl Sessions {
    fn open(&self) -> String {
        use foundation_core::sync::MutexRecover as _;
        let id = foundation_core::files::unguessable_name("");
        let mut sessions = self.0.lock_or_recover();
        if sessions.len() >= MAX_SESSIONS {
            sessions.pop_front();
        }
        let until = std::time::Instant::now() + std::time::Duration::from_secs(SESSION_SECONDS);
        sessions.push_back((id.clone(), until));
        id
    }

    fn valid(&self, given: &str) -> bool {
        use foundation_core::sync::MutexRecover as _;
        let now = std::time::Instant::now();
        let mut sessions = self.0.lock_or_recover();
        sessions.retain(|(_, until)| *until > now);
        sessions.iter().fold(false, |found, (id, _)| found | same_secret(id, given))
    }
}

/// The request's `Host`, if it names this dashboard.
fn host_allowed(headers: &HeaderMap, port: u16, allowed: &[String]) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?.to_ascii_lowercase();
    let (name, given_port) = match host.rsplit_once(':') {
        // `[::1]:8080`, `127.0.0.1:8080`, `name:8080`; a bare IPv6 literal is bracketed.
        Some((name, p))
            if !name.is_empty() && p.chars().all(|c| c.is_ascii_digit()) && !name.ends_with(':') =>
        {
            (name.to_string(), Some(p.parse::<u16>().ok()?))
        }
        _ => (host.clone(), None),
    };
    if given_port.is_some_and(|p| p != port) {
        return None;
    }
    let literal = name.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>().is_ok();
    (literal || name == "localhost" || allowed.iter().any(|a| a.eq_ignore_ascii_case(&name))).then_some(host)
}

/// Whether the request carries the token (`Authorization: Bearer`) or an open session's cookie
/// (any of the cookies by that name: another port's may shadow ours).
fn authorized(headers: &HeaderMap, token: &str, sessions: &Sessions) -> bool {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer.is_some_and(|given| same_secret(given, token)) {
        return true;
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|cookies| cookies.split(';'))
        .filter_map(|c| c.trim().strip_prefix(COOKIE).and_then(|v| v.strip_prefix('=')))
        .any(|id| sessions.valid(id))
}

/// The middleware: Host, then method rules, then the token.
pub(super) async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let Some(host) = host_allowed(headers, state.port, &state.allowed_hosts) else {
        return (StatusCode::FORBIDDEN, "this dashboard does not answer to that Host").into_response();
    };
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        let json = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
            v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        });
        if !json {
            return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "send application/json").into_response();
        }
        if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
            && !["http://", "https://"]
                .iter()
                .any(|scheme| origin.eq_ignore_ascii_case(&format!("{scheme}{host}")))
        {
            return (StatusCode::FORBIDDEN, "a request from another origin").into_response();
        }
    }
    let path = request.uri().path();
    if let Some(token) = &state.token
        && path != "/login"
        && !authorized(headers, token, &state.sessions)
    {
        if path == "/" {
            return Redirect::to("/login").into_response();
        }
        tokio::time::sleep(REFUSAL_PAUSE).await;
        return (
            StatusCode::UNAUTHORIZED,
            "a valid access token is required (Authorization: Bearer, or log in at /login)",
        )
            .into_response();
    }
    next.run(request).await
}

/// `GET /login`: a form that posts the token as JSON and, once it is accepted, opens the page.
pub(super) async fn login_page() -> Html<&'static str> {
    Html(
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Foundation dashboard: log in</title></head>
<body><form id="login"><label>Access token <input id="token" type="password" autofocus></label>
<button>Log in</button> <span id="error"></span></form>
<script>
document.getElementById("login").addEventListener("submit", async e => {
  e.preventDefault();
  const r = await fetch("/login", {method: "POST", headers: {"content-type": "application/json"},
    body: JSON.stringify({token: document.getElementById("token").value})});
  if (r.ok) location.href = "/"; else document.getElementById("error").textContent = "wrong token";
});
</script></body></html>"#,
    )
}

/// What `POST /login` takes.
#[derive(serde::Deserialize)]
pub(super) struct Login {
    token: String,
}

/// `POST /login`: the right token opens a session, whose id goes back in an HttpOnly,
/// SameSite=Strict cookie; a wrong one gets 401 after a pause.
pub(super) async fn login(State(state): State<AppState>, axum::Json(login): axum::Json<Login>) -> Response {
    match &state.token {
        Some(token) if same_secret(&login.token, token) => {
            let id = state.sessions.open();
            let cookie =
                format!("{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={SESSION_SECONDS}");
            (StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response()
        }
        Some(_) => {
            tokio::time::sleep(REFUSAL_PAUSE).await;
            (StatusCode::UNAUTHORIZED, "wrong token").into_response()
        }
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        // The headers of a request are anyone's to write. For a long run:
        // PROPTEST_CASES=1000000 cargo test -p scope-tracer --lib guard
        #![proptest_config(ProptestConfig { cases: 5000, ..ProptestConfig::default() })]

        #[test]
        fn any_host_cookie_or_authorization_is_judged_without_panicking(
            host in prop_oneof![any::<Vec<u8>>(), "[a-z0-9.:\\[\\]%-]{0,40}".prop_map(String::into_bytes)],
            cookie in prop_oneof![any::<Vec<u8>>(), "(foundation_dashboard=[ -~]{0,40}; ?){0,4}".prop_map(String::into_bytes)],
            bearer in prop_oneof![any::<Vec<u8>>(), "Bearer [ -~]{0,40}".prop_map(String::into_bytes)],
        ) {
            let mut headers = HeaderMap::new();
            for (name, value) in [(header::HOST, host), (header::COOKIE, cookie), (header::AUTHORIZATION, bearer)] {
                if let Ok(value) = axum::http::HeaderValue::from_bytes(&value) {
                    headers.insert(name, value);
                }
            }
            let _ = host_allowed(&headers, 8080, &["dash.internal".to_string()]);
            prop_assert!(!authorized(&headers, "a-token-of-sixteen-bytes", &Sessions::default())
                || headers.get(header::AUTHORIZATION).is_some_and(|v| v.as_bytes() == b"Bearer a-token-of-sixteen-bytes"));
        }
    }

    fn host(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, value.parse().unwrap());
        headers
    }

    #[test]
    fn only_hosts_that_name_this_dashboard_pass() {
        let allowed = vec!["dash.internal".to_string()];
        for ok in
            ["127.0.0.1:8080", "localhost:8080", "[::1]:8080", "10.0.0.5", "dash.internal:8080", "LOCALHOST"]
        {
            assert!(host_allowed(&host(ok), 8080, &allowed).is_some(), "{ok}");
        }
        for refused in ["evil.example:8080", "evil.example", "127.0.0.1:9999", "localhost.evil.example:8080"]
        {
            assert!(host_allowed(&host(refused), 8080, &allowed).is_none(), "{refused}");
        }
        assert!(host_allowed(&HeaderMap::new(), 8080, &allowed).is_none(), "no Host at all");
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("s3cret", "s3cret"));
        assert!(!same_secret("s3cret", "s3creT") && !same_secret("s3cret", "s3cre") && !same_secret("", "x"));
    }
}

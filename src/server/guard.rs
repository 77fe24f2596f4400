//! Keeping web pages from driving ccr.
//!
//! A page open in the user's browser can send requests to `http://127.0.0.1:3456` (no-cors
//! `text/plain` POSTs need no preflight), and with DNS rebinding it can even read the answers
//! under its own host name. Every request passes [`guard`] first, which refuses with an
//! Anthropic-shaped 403:
//!
//! 1. an `Origin` header that is neither a loopback origin (`http://localhost:…`,
//!    `http://127.0.0.1:…`, `http://[::1]:…`, any scheme and port) nor listed in
//!    `server.allowedOrigins` (`Origin: null`, sent by sandboxed pages and files, is refused too);
//! 2. `Sec-Fetch-Site: cross-site` (a browser telling us the request comes from another site)
//!    unless the `Origin` is an allowed one;
//! 3. a `POST` to `/v1/*` or `/admin/*` whose `Content-Type` is not JSON (`application/json` or
//!    `…+json`), or that has a body but no `Content-Type` at all. Body-less admin calls
//!    (`curl -X POST …/drain`) pass;
//! 4. without `server.apiKey` (the keyless loopback mode): a `Host` that is not a loopback name
//!    (`localhost`, `127.x.x.x`, `[::1]`) or listed in `server.allowedHosts`: this is what
//!    defeats DNS rebinding. With a key, the key protects `/v1` and `/admin` and any `Host` the
//!    operator serves on works.
//!
//! Clients that are not browsers (Claude Code, curl, `ccr status`) send no `Origin` and no
//! `Sec-Fetch-*`, send JSON with its content type, and address a loopback host: they are never
//! refused.

use super::Runtime;
use crate::anthropic::{ApiError, ErrorKind};
use crate::config::Server;
use crate::config::origin::{host_name, is_loopback, parse_origin};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "requests from web pages are refused (Origin {0}); list the origin in server.allowedOrigins to allow it"
    )]
    Origin(String),
    #[error("cross-site browser requests are refused (Sec-Fetch-Site: cross-site)")]
    CrossSite,
    #[error("POST bodies must be JSON (Content-Type: application/json), got {0}")]
    ContentType(String),
    #[error(
        "Host {0} is not a loopback name; without server.apiKey ccr answers only loopback names \
         (list the name in server.allowedHosts, or set server.apiKey)"
    )]
    Host(String),
}

/// The middleware: [`check`] against the live config.
pub async fn guard(State(rt): State<Arc<Runtime>>, request: Request, next: Next) -> Response {
    let config = rt.config();
    if let Err(refusal) = check(&config.server, request.method(), request.uri().path(), request.headers()) {
        tracing::warn!("refused {} {}: {refusal}", request.method(), request.uri().path());
        return ApiError::new(ErrorKind::PermissionError, refusal.to_string()).into_response();
    }
    next.run(request).await
}

/// The four rules of the module docs.
pub fn check(server: &Server, method: &Method, path: &str, headers: &HeaderMap) -> Result<(), Refusal> {
    let text = |name: header::HeaderName| {
        headers.get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let origin_allowed = match text(header::ORIGIN) {
        None => false,
        Some(origin) => {
            let allowed = parse_origin(&origin).is_some_and(|o| {
                is_loopback(&o.host)
                    || server.allowed_origins.iter().any(|a| parse_origin(a).as_ref() == Some(&o))
            });
            if !allowed {
                return Err(Refusal::Origin(shorten(&origin)));
            }
            true
        }
    };
    if !origin_allowed
        && headers.get("sec-fetch-site").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
    {
        return Err(Refusal::CrossSite);
    }
    if method == Method::POST && (path.starts_with("/v1/") || path.starts_with("/admin/")) {
        match text(header::CONTENT_TYPE) {
            Some(ct) if !is_json(&ct) => return Err(Refusal::ContentType(shorten(&ct))),
            None if has_body(headers) => return Err(Refusal::ContentType("no Content-Type".into())),
            _ => {}
        }
    }
    if server.api_key.is_none()
        && let Some(host) = text(header::HOST)
    {
        let name = host_name(&host);
        if !is_loopback(name) && !server.allowed_hosts.iter().any(|h| host_name(h).eq_ignore_ascii_case(name))
        {
            return Err(Refusal::Host(shorten(&host)));
        }
    }
    Ok(())
}

/// `application/json` or any `…+json` type, parameters ignored.
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().parse::<u64>().map_or(true, |n| n > 0))
}

/// At most 100 characters of a header value, for messages and logs.
fn shorten(value: &str) -> String {
    let mut s: String = value.chars().take(100).collect();
    if s.len() < value.len() {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_rules() {
        let mut server = Server::default();
        let post = Method::POST;
        let ok = |s: &Server, h: &[(&'static str, &str)]| check(s, &post, "/v1/messages", &headers(h));
        assert!(ok(&server, &[("host", "127.0.0.1:3456"), ("content-type", "application/json")]).is_ok());
        assert!(ok(&server, &[("host", "localhost"), ("origin", "http://localhost:5173")]).is_ok());
        assert!(matches!(ok(&server, &[("origin", "https://evil.example")]), Err(Refusal::Origin(_))));
        assert!(matches!(ok(&server, &[("origin", "null")]), Err(Refusal::Origin(_))));
        assert!(matches!(ok(&server, &[("sec-fetch-site", "cross-site")]), Err(Refusal::CrossSite)));
        assert!(matches!(ok(&server, &[("content-type", "text/plain")]), Err(Refusal::ContentType(_))));
        assert!(matches!(ok(&server, &[("content-length", "5")]), Err(Refusal::ContentType(_))));
        assert!(ok(&server, &[("content-length", "0")]).is_ok());
        assert!(ok(&server, &[("content-type", "application/vnd.x+json; charset=utf-8")]).is_ok());
        assert!(matches!(ok(&server, &[("host", "evil.example:3456")]), Err(Refusal::Host(_))));
        server.allowed_hosts = vec!["ccr.lan".into()];
        server.allowed_origins = vec!["https://tools.example".into()];
        assert!(ok(&server, &[("host", "CCR.lan:3456")]).is_ok());
        assert!(
            ok(&server, &[("origin", "https://tools.example:443"), ("sec-fetch-site", "cross-site")]).is_ok()
        );
        server.api_key = Some("k".into());
        assert!(ok(&server, &[("host", "evil.example:3456")]).is_ok());
        // GETs need no content type.
        assert!(check(&server, &Method::GET, "/status", &headers(&[("content-type", "text/plain")])).is_ok());
    }
}

//! The API access tokens web page: static files embedded in the binary, so
//! that `latchkey serve` needs no other server and no build step. The page
//! is a client of the public API only.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("../web/index.html");
const SCRIPT: &str = include_str!("../web/app.js");
const STYLE: &str = include_str!("../web/app.css");
const ICON: &str = include_str!("../web/favicon.svg");

/// The page may load its own files and call its own origin, nothing else;
/// no inline script can run, and no other site may frame it.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
     form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// The API access tokens page.
#[utoipa::path(get, path = "/", tag = "web page",
    responses((status = 200, description = "The API access tokens page", content_type = "text/html", body = String)))]
pub async fn index() -> Response {
    asset(INDEX, "text/html; charset=utf-8")
}

/// The page's script.
#[utoipa::path(get, path = "/app.js", tag = "web page",
    responses((status = 200, description = "The page's script", content_type = "text/javascript", body = String)))]
pub async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

/// The page's style sheet.
#[utoipa::path(get, path = "/app.css", tag = "web page",
    responses((status = 200, description = "The page's style sheet", content_type = "text/css", body = String)))]
pub async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}

/// The page's icon.
#[utoipa::path(get, path = "/favicon.svg", tag = "web page",
    responses((status = 200, description = "The page's icon", content_type = "image/svg+xml", body = String)))]
pub async fn icon() -> Response {
    asset(ICON, "image/svg+xml")
}

/// The icon again where browsers and bookmark tools look for it without
/// reading the page. Every browser that runs the page renders an SVG icon,
/// so one drawing serves both addresses.
#[utoipa::path(get, path = "/favicon.ico", tag = "web page",
    responses((status = 200, description = "The page's icon (SVG)", content_type = "image/svg+xml", body = String)))]
pub async fn legacy_icon() -> Response {
    asset(ICON, "image/svg+xml")
}

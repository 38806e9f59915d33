//! The web component: the wallet app under `/app/`, the interactive API reference under
//! `/docs/`, and `/` sending a browser to the app. Everything it serves is a static file
//! built by `components/web/app/build.mjs` and embedded at compile time (see build.rs); it
//! holds no secret and reaches nothing, so it imports no database or variable.
//!
//! Every response carries the headers a payments site needs: a Content-Security-Policy that
//! allows scripts, styles and connections from this origin only (no inline script, no
//! eval), no framing, no MIME sniffing, and no referrer (the verification page has a token
//! in its URL until the app strips it).

use spin_sdk::http_service;
use wasmpay_common::{
    http::{Method, Request, Response},
    problem::Problem,
};

pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub etag: &'static str,
    pub body: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     font-src 'self'; connect-src 'self'; manifest-src 'self'; form-action 'self'; base-uri 'none'; \
     frame-ancestors 'none'";

const SECURITY_HEADERS: [(&str, &str); 7] = [
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("permissions-policy", "camera=(), microphone=(), geolocation=(), payment=()"),
];

#[http_service]
async fn handle(request: spin_sdk::http::Request) -> Response {
    match Request::read(request).await {
        Ok(request) => secured(respond(&request)),
        Err(problem) => secured(problem.into_response()),
    }
}

fn respond(request: &Request) -> Response {
    let head = match *request.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => return Problem::method_not_allowed(&["GET", "HEAD"]).into_response(),
    };
    match resolve(request.path()) {
        Target::Redirect(location) => Response::builder().status(308).header("location", location).build(),
        Target::Asset(asset) => serve(asset, request, head),
        Target::Missing => Problem::not_found(format!("nothing is served at {}", request.path())).into_response(),
    }
}

enum Target {
    Redirect(&'static str),
    Asset(&'static Asset),
    Missing,
}

/// What a path names. The app's own pages (`/app/wallets`, `/app/verify-email`, …) are
/// paths without a file extension and all get the app's index.html; the app routes them.
fn resolve(path: &str) -> Target {
    match path {
        "/" | "/app" => return Target::Redirect("/app/"),
        "/docs" => return Target::Redirect("/docs/"),
        "/app/" => return asset("/app/index.html"),
        "/docs/" => return asset("/docs/index.html"),
        _ => {}
    }
    if let Some(found) = ASSETS.iter().find(|a| a.path == path && !a.path.ends_with("/index.html")) {
        return Target::Asset(found);
    }
    match path.strip_prefix("/app/") {
        Some(page) if !page.rsplit('/').next().unwrap_or_default().contains('.') => asset("/app/index.html"),
        _ => Target::Missing,
    }
}

fn asset(path: &str) -> Target {
    ASSETS.iter().find(|a| a.path == path).map_or(Target::Missing, Target::Asset)
}

fn serve(asset: &'static Asset, request: &Request, head: bool) -> Response {
    let revalidated = request
        .header("if-none-match")
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == asset.etag || tag.trim() == "*"));
    let status = if revalidated { 304 } else { 200 };
    let mut response = Response::builder();
    response
        .status(status)
        .header("etag", asset.etag)
        // Names carry no content hash, so every use revalidates (a 304 when unchanged).
        .header("cache-control", "no-cache");
    if revalidated {
        return response.build();
    }
    response
        .header("content-type", asset.content_type)
        .header("content-length", asset.body.len().to_string());
    if head { response.build() } else { response.body(bytes::Bytes::from_static(asset.body)).build() }
}

fn secured(mut response: Response) -> Response {
    for (name, value) in SECURITY_HEADERS {
        response.set_header(name, value);
    }
    response
}

//! The web component over HTTP: what it serves where, the headers a payments site needs on
//! every response, and that its routes never take a request meant for the API. (The app
//! itself is driven in a real browser by browser.rs.)

use reqwest::{Method, StatusCode, redirect::Policy};
use wasmpay_test_support::paths;

use crate::app::TestApp;

const SECURITY_HEADERS: [(&str, &str); 6] = [
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; \
         connect-src 'self'; manifest-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
];

struct Fetched {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Fetched {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    #[track_caller]
    fn assert_secured(&self) {
        for (name, expected) in SECURITY_HEADERS {
            assert_eq!(self.header(name), expected, "{name} on a {} response", self.status);
        }
    }
}

/// Requests as a browser makes them, redirects not followed.
async fn fetch(app: &TestApp, method: Method, path: &str, headers: &[(&str, &str)]) -> Fetched {
    let client = reqwest::Client::builder().redirect(Policy::none()).build().unwrap();
    let mut request = client.request(method, app.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
    Fetched {
        status: response.status(),
        headers: response.headers().clone(),
        body: response.bytes().await.unwrap().to_vec(),
    }
}

#[tokio::test]
async fn the_root_and_bare_prefixes_redirect_to_the_app_and_the_docs() {
    let app = TestApp::spawn().await;
    for (path, location) in [("/", "/app/"), ("/app", "/app/"), ("/docs", "/docs/")] {
        let reply = fetch(&app, Method::GET, path, &[]).await;
        assert_eq!(reply.status, StatusCode::PERMANENT_REDIRECT, "{path}");
        assert_eq!(reply.header("location"), location, "{path}");
        reply.assert_secured();
    }
}

#[tokio::test]
async fn every_page_of_the_app_is_its_index_and_assets_have_their_types() {
    let app = TestApp::spawn().await;
    let index = fetch(&app, Method::GET, "/app/", &[]).await;
    assert_eq!(index.status, StatusCode::OK);
    assert_eq!(index.header("content-type"), "text/html; charset=utf-8");
    index.assert_secured();
    let html = String::from_utf8(index.body.clone()).unwrap();
    assert!(html.contains(r#"<script type="module" src="/app/app.js"></script>"#), "{html}");
    assert!(!html.contains("<script>") && !html.contains("style="), "no inline script or style: {html}");
    // The pages the app routes itself, including the verification link's target.
    for page in ["/app/sign-in", "/app/verify-email", "/app/wallets", "/app/wallets/8b0c7a3e-0000-4000-8000-000000000000"] {
        let reply = fetch(&app, Method::GET, &format!("{page}?token=abc"), &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{page}");
        assert_eq!(reply.body, index.body, "{page} is the app");
        reply.assert_secured();
    }
    for (asset, content_type) in [
        ("/app/app.js", "text/javascript; charset=utf-8"),
        ("/app/app.css", "text/css; charset=utf-8"),
        ("/app/favicon.svg", "image/svg+xml"),
        ("/docs/swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
        ("/docs/swagger-ui.css", "text/css; charset=utf-8"),
    ] {
        let reply = fetch(&app, Method::GET, asset, &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{asset}");
        assert_eq!(reply.header("content-type"), content_type, "{asset}");
        assert_eq!(reply.header("content-length"), reply.body.len().to_string(), "{asset}");
        assert!(!reply.body.is_empty(), "{asset}");
        reply.assert_secured();
    }
}

#[tokio::test]
async fn unknown_files_methods_other_than_get_and_head_are_problems() {
    let app = TestApp::spawn().await;
    for path in ["/app/missing.js", "/app/wallets/x.png", "/docs/missing.css", "/docs/index.html/x"] {
        let reply = fetch(&app, Method::GET, path, &[]).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(reply.header("content-type"), "application/problem+json", "{path}");
        reply.assert_secured();
    }
    for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
        let reply = fetch(&app, method.clone(), "/app/", &[]).await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(reply.header("allow"), "GET, HEAD");
        assert_eq!(reply.header("content-type"), "application/problem+json");
        reply.assert_secured();
    }
}

#[tokio::test]
async fn head_and_revalidation_send_no_body() {
    let app = TestApp::spawn().await;
    let full = fetch(&app, Method::GET, "/app/app.js", &[]).await;
    let etag = full.header("etag").to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() > 10, "{etag}");
    assert_eq!(full.header("cache-control"), "no-cache");

    let head = fetch(&app, Method::HEAD, "/app/app.js", &[]).await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.body.is_empty());
    assert_eq!(head.header("etag"), etag);

    let unchanged = fetch(&app, Method::GET, "/app/app.js", &[("if-none-match", &etag)]).await;
    assert_eq!(unchanged.status, StatusCode::NOT_MODIFIED);
    assert!(unchanged.body.is_empty());
    unchanged.assert_secured();
    let changed = fetch(&app, Method::GET, "/app/app.js", &[("if-none-match", "\"other\"")]).await;
    assert_eq!(changed.status, StatusCode::OK);
    assert_eq!(changed.body, full.body);
}

#[tokio::test]
async fn the_docs_render_this_repository_s_openapi_document_for_the_same_origin() {
    let app = TestApp::spawn().await;
    let page = fetch(&app, Method::GET, "/docs/", &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    page.assert_secured();
    let html = String::from_utf8(page.body).unwrap();
    for script in ["/docs/swagger-ui-bundle.js", "/docs/docs.js"] {
        assert!(html.contains(&format!(r#"<script src="{script}" defer></script>"#)), "{html}");
    }
    let document = fetch(&app, Method::GET, "/docs/openapi.yaml", &[]).await;
    assert_eq!(document.status, StatusCode::OK);
    assert_eq!(document.header("content-type"), "application/yaml");
    assert_eq!(document.body, std::fs::read(paths::repo_root().join("openapi.yaml")).unwrap());
    let spec: serde_yaml::Value = serde_yaml::from_slice(&document.body).unwrap();
    assert_eq!(spec["servers"][0]["url"], "/", "\"try it\" must call the origin serving the document");
}

#[tokio::test]
async fn the_api_keeps_its_routes() {
    let app = TestApp::spawn().await;
    for component in ["auth", "accounts", "transfers"] {
        let reply = app.get(&format!("/{component}/health")).send().await;
        reply.expect(200);
        assert_eq!(reply.json()["status"], "ok");
    }
    // Unknown API paths are the API's own problems, not the app's index.
    let reply = app.get("/accounts/me/nothing-here").undocumented().send().await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.header("content-type"), Some("application/problem+json"));
}

#[test]
fn the_web_component_imports_no_database_variables_or_network() {
    let wasm = std::fs::read(paths::component("web")).unwrap();
    let Ok(wit_component::DecodedWasm::Component(resolve, world)) = wit_component::decode(&wasm) else {
        panic!("web.wasm is not a component");
    };
    let imports: Vec<String> = resolve.worlds[world].imports.keys().map(|key| resolve.name_world_key(key)).collect();
    assert!(imports.iter().any(|i| i.starts_with("wasi:io/")), "decoded: {imports:?}");
    for import in &imports {
        for denied in ["postgres", "variables", "outgoing-handler", "sockets", "key-value", "sqlite", "mqtt", "redis", "llm"] {
            assert!(!import.contains(denied), "web.wasm imports {import}");
        }
    }
}

//! Requests in, responses out: the one shape every handler sees. The edge
//! ([`crate::router::serve`]) reads Spin's request into a [`Request`] once, body included
//! (up to [`MAX_BODY_BYTES`]), and turns the handler's [`Response`] into Spin's.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde::{Serialize, de::DeserializeOwned};
pub use spin_sdk::http::{HeaderMap, Method};

use crate::problem::{FieldError, Problem};

/// Largest JSON body a route accepts; every request body in the API is a small object.
pub const MAX_JSON_BODY_BYTES: usize = 16 * 1024;
/// What the edge reads of a request body: one byte more than any route accepts, so an
/// oversized body is recognised without buffering all of it.
pub const MAX_BODY_BYTES: usize = MAX_JSON_BODY_BYTES + 1;

/// A request as a handler reads it: method, path, query, headers and (a bounded prefix of)
/// the body.
pub struct Request {
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Request {
    /// Reads Spin's request: the body up to [`MAX_BODY_BYTES`], the rest left unread.
    pub async fn read(request: spin_sdk::http::Request) -> Result<Self, Problem> {
        let (parts, mut body) = request.into_parts();
        let mut read = Vec::new();
        while read.len() < MAX_BODY_BYTES {
            match body.frame().await {
                None => break,
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        read.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => return Err(Problem::bad_request(format!("the request body could not be read: {e}"))),
            }
        }
        read.truncate(MAX_BODY_BYTES);
        Ok(Self {
            method: parts.method,
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or_default().to_owned(),
            headers: parts.headers,
            body: read.into(),
        })
    }

    /// A request built in place, for unit tests.
    pub fn new(method: Method, path_and_query: &str, headers: &[(&str, &str)], body: &[u8]) -> Self {
        let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            if let (Ok(name), Ok(value)) = (name.parse::<http::HeaderName>(), value.parse()) {
                map.append(name, value);
            }
        }
        Self {
            method,
            path: path.to_owned(),
            query: query.to_owned(),
            headers: map,
            body: Bytes::copy_from_slice(body),
        }
    }

    pub fn method(&self) -> &Method {
        &self.method
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// The query string without `?` (empty when there is none).
    pub fn query(&self) -> &str {
        &self.query
    }

    /// The first value of a header, when it is UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| std::str::from_utf8(value.as_bytes()).ok())
    }

    /// The first value of a header, any bytes that are not UTF-8 replaced.
    pub fn header_lossy(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
    }

    /// The body as read (at most [`MAX_BODY_BYTES`]).
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

/// A response: status, headers and a body held in memory (every response is small).
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl Response {
    pub fn builder() -> ResponseBuilder {
        ResponseBuilder(Response {
            status: 200,
            headers: Vec::new(),
            body: Bytes::new(),
        })
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    /// The first value of a header (names compare without case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Replaces every value of a header with `value`.
    pub fn set_header(&mut self, name: &str, value: impl Into<String>) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.to_owned(), value.into()));
    }

    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

pub struct ResponseBuilder(Response);

impl ResponseBuilder {
    pub fn status(&mut self, status: u16) -> &mut Self {
        self.0.status = status;
        self
    }

    pub fn header(&mut self, name: &str, value: impl Into<String>) -> &mut Self {
        self.0.headers.push((name.to_owned(), value.into()));
        self
    }

    pub fn body(&mut self, body: impl Into<Bytes>) -> &mut Self {
        self.0.body = body.into();
        self
    }

    pub fn build(&mut self) -> Response {
        self.0.clone()
    }
}

impl spin_sdk::http::IntoResponse for Response {
    fn into_response(self) -> Result<spin_sdk::wasip3::http::types::Response, spin_sdk::wasip3::http::types::ErrorCode> {
        let mut builder = http::Response::builder().status(self.status);
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        match builder.body(Full::new(self.body)) {
            Ok(response) => response.into_response(),
            Err(e) => {
                eprintln!("a response could not be built: {e}");
                let fallback = Problem::internal().into_response();
                http::Response::builder()
                    .status(fallback.status)
                    .header("content-type", crate::problem::CONTENT_TYPE)
                    .body(Full::new(fallback.body))
                    .map_err(|e| spin_sdk::wasip3::http::types::ErrorCode::InternalError(Some(e.to_string())))?
                    .into_response()
            }
        }
    }
}

/// Parses a JSON request body into `T`. Wrong content type → 415, oversized → 413, broken
/// JSON → 400, well-formed JSON of the wrong shape (missing field, wrong type) → 422.
pub fn json_body<T: DeserializeOwned>(request: &Request) -> Result<T, Problem> {
    let content_type = request.header("content-type").unwrap_or_default();
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    if !media_type.eq_ignore_ascii_case("application/json") {
        return Err(Problem::unsupported_media_type("application/json"));
    }
    let body = request.body();
    if body.len() > MAX_JSON_BODY_BYTES {
        return Err(Problem::payload_too_large(MAX_JSON_BODY_BYTES));
    }
    serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => Problem::validation(vec![FieldError::new("body", e.to_string())]),
            Category::Syntax | Category::Eof | Category::Io => Problem::malformed_json(e.to_string()),
        }
    })
}

pub fn json<T: Serialize>(status: u16, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(bytes)
            .build(),
        Err(e) => {
            eprintln!("response serialization failed: {e}");
            Problem::internal().into_response()
        }
    }
}

pub fn no_content() -> Response {
    Response::builder().status(204).build()
}

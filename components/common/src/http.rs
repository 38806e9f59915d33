//! Request bodies in, JSON responses out.

use serde::{Serialize, de::DeserializeOwned};
use spin_sdk::http::{Request, Response};

use crate::problem::{FieldError, Problem};

/// Largest JSON body a route accepts; every request body in the API is a small object.
pub const MAX_JSON_BODY_BYTES: usize = 16 * 1024;

/// Parses a JSON request body into `T`. Wrong content type → 415, oversized → 413, broken
/// JSON → 400, well-formed JSON of the wrong shape (missing field, wrong type) → 422.
pub fn json_body<T: DeserializeOwned>(request: &Request) -> Result<T, Problem> {
    let content_type = request
        .header("content-type")
        .and_then(|value| value.as_str())
        .unwrap_or_default();
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

//! A component's route table. Matches on the full request path, as Spin hands it over,
//! with the same `routefinder` patterns Spin uses (`:name` segments, `*` wildcard), and
//! answers unknown paths with a 404 problem and known paths with another method with a
//! 405 problem listing the allowed methods.
//!
//! The path picks one route pattern first (the most specific, as Spin picks a component),
//! and only then the method: `/accounts/me` names the resource of the literal pattern, so
//! a `DELETE` there is a 405 listing `GET`, never a call of `/accounts/:id`'s handler.

use spin_sdk::http::{Method, Request, Response};

use crate::problem::Problem;

/// Path parameters captured by a route such as `/accounts/:id`.
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// A parameter that must be a UUID; anything else names no resource.
    pub fn uuid(&self, name: &str) -> Option<uuid::Uuid> {
        self.get(name)?.parse().ok()
    }
}

pub type Handler = fn(&Request, &Params) -> Result<Response, Problem>;

#[derive(Default)]
pub struct Router {
    /// Route patterns in the order they were added, each with the handler of every method
    /// it serves.
    patterns: Vec<(String, Vec<(Method, Handler)>)>,
    /// Finds the best pattern for a path; its handler is the index in `patterns`. (A
    /// routefinder key never compares equal to another, so it cannot look a pattern up.)
    by_path: routefinder::Router<usize>,
}

impl Router {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(self, path: &str, handler: Handler) -> Self {
        self.route(Method::Get, path, handler)
    }

    pub fn post(self, path: &str, handler: Handler) -> Self {
        self.route(Method::Post, path, handler)
    }

    pub fn patch(self, path: &str, handler: Handler) -> Self {
        self.route(Method::Patch, path, handler)
    }

    pub fn delete(self, path: &str, handler: Handler) -> Self {
        self.route(Method::Delete, path, handler)
    }

    fn route(mut self, method: Method, path: &str, handler: Handler) -> Self {
        match self.patterns.iter_mut().find(|(pattern, _)| pattern == path) {
            Some((_, methods)) => methods.push((method, handler)),
            None => {
                // Route patterns are literals in the component's source; a bad one is a
                // programming error caught by the component's own tests.
                self.by_path
                    .add(path, self.patterns.len())
                    .unwrap_or_else(|e| panic!("invalid route pattern {path}: {e}"));
                self.patterns.push((path.to_owned(), vec![(method, handler)]));
            }
        }
        self
    }

    pub fn handle(&self, request: &Request) -> Response {
        let path = request.path();
        let Some(found) = self.by_path.best_match(path) else {
            return Problem::not_found(format!("no resource at {path}")).into_response();
        };
        let (_, methods) = &self.patterns[*found.handler()];
        let Some((_, handler)) = methods.iter().find(|(method, _)| method == request.method()) else {
            let allowed: Vec<&str> = methods.iter().map(|(method, _)| method_name(method)).collect();
            return Problem::method_not_allowed(&allowed).into_response();
        };
        let params = Params(
            found
                .captures()
                .iter()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect(),
        );
        handler(request, &params).unwrap_or_else(Problem::into_response)
    }
}

fn method_name(method: &Method) -> &'static str {
    match method {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Patch => "PATCH",
        Method::Delete => "DELETE",
        Method::Head => "HEAD",
        Method::Options => "OPTIONS",
        Method::Connect => "CONNECT",
        Method::Trace => "TRACE",
        Method::Other(_) => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(_: &Request, params: &Params) -> Result<Response, Problem> {
        Ok(Response::builder().status(200).body(params.get("id").unwrap_or("literal").to_owned()).build())
    }

    fn accounts() -> Router {
        Router::new()
            .get("/accounts/me", named)
            .get("/accounts/:id", named)
            .delete("/accounts/:id", named)
            .post("/accounts", named)
    }

    fn call(method: Method, path: &str) -> Response {
        accounts().handle(&Request::builder().method(method).uri(path).build())
    }

    fn allow(response: &Response) -> Option<&str> {
        response.header("allow").and_then(|value| value.as_str())
    }

    #[test]
    fn the_most_specific_pattern_serves_its_methods() {
        assert_eq!(call(Method::Get, "/accounts/me").body(), b"literal");
        assert_eq!(call(Method::Get, "/accounts/42").body(), b"42");
        assert_eq!(call(Method::Delete, "/accounts/42").body(), b"42");
    }

    #[test]
    fn a_405_lists_the_methods_of_the_pattern_the_path_names() {
        for method in [Method::Options, Method::Delete, Method::Post] {
            let response = call(method, "/accounts/me");
            assert_eq!(*response.status(), 405);
            assert_eq!(allow(&response), Some("GET"));
        }
        let response = call(Method::Patch, "/accounts/42");
        assert_eq!(*response.status(), 405);
        assert_eq!(allow(&response), Some("GET, DELETE"));
    }

    #[test]
    fn unknown_paths_are_404s() {
        let response = call(Method::Get, "/accounts/42/nothing");
        assert_eq!(*response.status(), 404);
        assert_eq!(allow(&response), None);
    }
}

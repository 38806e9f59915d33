//! A component's route table. Matches on the full request path, as Spin hands it over,
//! with the same `routefinder` patterns Spin uses (`:name` segments, `*` wildcard), and
//! answers unknown paths with a 404 problem and known paths with another method with a
//! 405 problem listing the allowed methods.
//!
//! The path picks one route pattern first (the most specific, as Spin picks a component),
//! and only then the method: `/accounts/me` names the resource of the literal pattern, so
//! a `DELETE` there is a 405 listing `GET`, never a call of `/accounts/:id`'s handler.
//!
//! Spin reuses a WASIp3 instance for many requests, several at once: [`serve`] builds the
//! table once per instance and runs each request's handler as its own future.

use std::{cell::OnceCell, future::Future, pin::Pin, rc::Rc};

use crate::{
    http::{Method, Request, Response},
    problem::Problem,
};

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

type Outcome = Pin<Box<dyn Future<Output = Result<Response, Problem>>>>;
type Handler = Box<dyn Fn(Request, Params) -> Outcome>;

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

    pub fn get<F, R>(self, path: &str, handler: F) -> Self
    where
        F: Fn(Request, Params) -> R + 'static,
        R: Future<Output = Result<Response, Problem>> + 'static,
    {
        self.route(Method::GET, path, handler)
    }

    pub fn post<F, R>(self, path: &str, handler: F) -> Self
    where
        F: Fn(Request, Params) -> R + 'static,
        R: Future<Output = Result<Response, Problem>> + 'static,
    {
        self.route(Method::POST, path, handler)
    }

    pub fn patch<F, R>(self, path: &str, handler: F) -> Self
    where
        F: Fn(Request, Params) -> R + 'static,
        R: Future<Output = Result<Response, Problem>> + 'static,
    {
        self.route(Method::PATCH, path, handler)
    }

    pub fn delete<F, R>(self, path: &str, handler: F) -> Self
    where
        F: Fn(Request, Params) -> R + 'static,
        R: Future<Output = Result<Response, Problem>> + 'static,
    {
        self.route(Method::DELETE, path, handler)
    }

    fn route<F, R>(mut self, method: Method, path: &str, handler: F) -> Self
    where
        F: Fn(Request, Params) -> R + 'static,
        R: Future<Output = Result<Response, Problem>> + 'static,
    {
        let handler: Handler = Box::new(move |request, params| Box::pin(handler(request, params)));
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

    pub async fn handle(&self, request: Request) -> Response {
        let path = request.path();
        let Some(found) = self.by_path.best_match(path) else {
            return Problem::not_found(format!("no resource at {path}")).into_response();
        };
        let (_, methods) = &self.patterns[*found.handler()];
        let Some((_, handler)) = methods.iter().find(|(method, _)| method == request.method()) else {
            let allowed: Vec<&str> = methods.iter().map(|(method, _)| method.as_str()).collect();
            return Problem::method_not_allowed(&allowed).into_response();
        };
        let params = Params(
            found
                .captures()
                .iter()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect(),
        );
        handler(request, params).await.unwrap_or_else(Problem::into_response)
    }
}

thread_local! {
    /// The component's route table, built by the first request the instance serves.
    static ROUTES: OnceCell<Rc<Router>> = const { OnceCell::new() };
}

/// Serves one request of Spin's with the component's route table (`routes` builds it, once
/// per instance).
pub async fn serve(request: spin_sdk::http::Request, routes: fn() -> Router) -> Response {
    let router = ROUTES.with(|cell| cell.get_or_init(|| Rc::new(routes())).clone());
    match Request::read(request).await {
        Ok(request) => router.handle(request).await,
        Err(problem) => problem.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn named(_: Request, params: Params) -> Result<Response, Problem> {
        Ok(Response::builder()
            .status(200)
            .body(params.get("id").unwrap_or("literal").to_owned())
            .build())
    }

    fn accounts() -> Router {
        Router::new()
            .get("/accounts/me", named)
            .get("/accounts/:id", named)
            .delete("/accounts/:id", named)
            .post("/accounts", named)
    }

    fn call(method: Method, path: &str) -> Response {
        futures::executor::block_on(accounts().handle(Request::new(method, path, &[], b"")))
    }

    #[test]
    fn the_most_specific_pattern_serves_its_methods() {
        assert_eq!(call(Method::GET, "/accounts/me").body(), b"literal");
        assert_eq!(call(Method::GET, "/accounts/42").body(), b"42");
        assert_eq!(call(Method::DELETE, "/accounts/42").body(), b"42");
    }

    #[test]
    fn a_405_lists_the_methods_of_the_pattern_the_path_names() {
        for method in [Method::OPTIONS, Method::DELETE, Method::POST] {
            let response = call(method, "/accounts/me");
            assert_eq!(response.status(), 405);
            assert_eq!(response.header("allow"), Some("GET"));
        }
        let response = call(Method::PATCH, "/accounts/42");
        assert_eq!(response.status(), 405);
        assert_eq!(response.header("allow"), Some("GET, DELETE"));
    }

    #[test]
    fn unknown_paths_are_404s() {
        let response = call(Method::GET, "/accounts/42/nothing");
        assert_eq!(response.status(), 404);
        assert_eq!(response.header("allow"), None);
    }
}

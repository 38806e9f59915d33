//! The HTTP trigger: accepts connections on 127.0.0.1, routes each request as Spin does,
//! adds Spin's headers and hands it to the matched component: a fresh instance of a WASIp2
//! component, or the scheduler of a WASIp3 component's reused instances (Spin's
//! `Wasip3HttpExecutor`). Unmatched paths get Spin's empty 404; a component that traps or
//! returns no response (or a WASIp3 request that runs past the request timeout) gets
//! Spin's empty 500.

use std::{
    collections::HashMap,
    convert::Infallible,
    error::Error as StdError,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, Limited, combinators::UnsyncBoxBody};
use hyper::{
    Request, Response, StatusCode,
    body::Incoming,
    header::{CONTENT_LENGTH, HOST, HeaderName, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpListener, sync::oneshot};
use wasmtime::component::Accessor;
use wasmtime_wasi_http::{
    handler::{Proxy, ProxyHandler},
    p2::{
        WasiHttpView,
        bindings::http::types::{ErrorCode, Scheme},
    },
    p3,
};

use crate::{
    routes::Router,
    runtime::{ComponentRuntime, Handler, Instances, RequestState},
};

type BoxError = Box<dyn StdError + Send + Sync>;
pub type HostBody = UnsyncBoxBody<Bytes, BoxError>;

/// A loaded application: its routes and its pre-instantiated components.
pub struct App {
    pub(crate) router: Router,
    pub(crate) components: HashMap<String, ComponentRuntime>,
    pub(crate) max_request_body_bytes: usize,
}

pub async fn serve(listener: TcpListener, app: Arc<App>, mut shutdown: oneshot::Receiver<()>) {
    loop {
        let (stream, client_addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    eprintln!("accept failed: {e}");
                    continue;
                }
            },
            _ = &mut shutdown => return,
        };
        let app = app.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(handle(&app, request, client_addr).await) }
            });
            if let Err(e) = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await
                && !e.is_incomplete_message()
            {
                eprintln!("connection from {client_addr} failed: {e}");
            }
        });
    }
}

fn empty(status: StatusCode) -> Response<HostBody> {
    let mut response = Response::new(Empty::new().map_err(|never| match never {}).boxed_unsync());
    *response.status_mut() = status;
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<HostBody> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())).map_err(|never| match never {}).boxed_unsync());
    *response.status_mut() = status;
    response
}

async fn handle(app: &App, request: Request<Incoming>, client_addr: SocketAddr) -> Response<HostBody> {
    let path = request.uri().path().to_owned();
    if let Some(spin_path) = path.strip_prefix("/.well-known/spin/") {
        return match spin_path {
            "health" => text(StatusCode::OK, "OK"),
            _ => empty(StatusCode::NOT_FOUND),
        };
    }
    let Some(route) = app.router.route(&path) else {
        return empty(StatusCode::NOT_FOUND);
    };
    let Some(component) = app.components.get(&route.component) else {
        return empty(StatusCode::NOT_FOUND);
    };
    let (mut parts, body) = request.into_parts();
    let declared_length = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared_length.is_some_and(|length| length > app.max_request_body_bytes) {
        return text(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n");
    }
    let body = match Limited::new(body, app.max_request_body_bytes).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            return text(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n");
        }
        Err(e) => {
            eprintln!("reading the request body from {client_addr} failed: {e}");
            return empty(StatusCode::BAD_REQUEST);
        }
    };
    let Some(host) = parts.headers.get(HOST).and_then(|h| h.to_str().ok()).map(str::to_owned) else {
        eprintln!("no 'Host' header present in request");
        return empty(StatusCode::INTERNAL_SERVER_ERROR);
    };
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str()).to_owned();
    let full_url = format!("http://{host}{path_and_query}");
    match full_url.parse() {
        Ok(uri) => parts.uri = uri,
        Err(e) => {
            eprintln!("invalid request URI {full_url:?}: {e}");
            return empty(StatusCode::BAD_REQUEST);
        }
    }
    for (name, value) in route.spin_headers(&full_url, &client_addr.to_string()) {
        match (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            (Ok(name), Ok(value)) => {
                parts.headers.append(name, value);
            }
            _ => return empty(StatusCode::BAD_REQUEST),
        }
    }
    let request = Request::from_parts(parts, Full::new(body).map_err(|never| match never {}).boxed_unsync());
    let outcome = match &component.handler {
        Handler::Wasip2(pre) => run_wasip2(component, pre, request).await,
        Handler::Wasip3(handler) => run_wasip3(handler, request).await,
    };
    match outcome {
        Ok(response) => response,
        Err(e) => {
            eprintln!("Error processing request for route {}: {e:?}", route.raw_route);
            empty(StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

async fn run_wasip2(
    component: &ComponentRuntime,
    pre: &wasmtime_wasi_http::p2::bindings::ProxyPre<RequestState>,
    request: Request<UnsyncBoxBody<Bytes, ErrorCode>>,
) -> anyhow::Result<Response<HostBody>> {
    let mut store = component.stores.new_store();
    let incoming = store.data_mut().http().new_incoming_request(Scheme::Http, request)?;
    let (sender, receiver) = oneshot::channel();
    let outparam = store.data_mut().http().new_response_outparam(sender)?;
    let pre = pre.clone();
    let mut task = tokio::spawn(async move {
        let proxy = pre.instantiate_async(&mut store).await?;
        proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut store, incoming, outparam)
            .await
    });
    match receiver.await {
        Ok(Ok(response)) => {
            // The guest may still be streaming the body: report a late failure in the log.
            tokio::spawn(async move {
                if let Ok(Err(e)) = (&mut task).await {
                    eprintln!("Component error after response started: {e:?}");
                }
            });
            Ok(response.map(|body| body.map_err(|e| -> BoxError { format!("{e:?}").into() }).boxed_unsync()))
        }
        Ok(Err(code)) => anyhow::bail!("guest failed to produce a response: {code:?}"),
        Err(_) => match task.await {
            Ok(Ok(())) => anyhow::bail!("guest failed to produce a response prior to returning"),
            Ok(Err(e)) => Err(anyhow::Error::from(e).context("guest invocation failed")),
            Err(e) => Err(anyhow::Error::new(e).context("guest invocation panicked")),
        },
    }
}

/// A WASIp3 request, as Spin's `Wasip3HttpExecutor` runs it: a task for the component's
/// instances, whose instance keeps running until the response body has been sent.
async fn run_wasip3(
    handler: &ProxyHandler<Instances>,
    request: Request<UnsyncBoxBody<Bytes, ErrorCode>>,
) -> anyhow::Result<Response<HostBody>> {
    let getter = (|state: &mut RequestState| p3::WasiHttpView::http(state)) as fn(&mut RequestState) -> p3::WasiHttpCtxView<'_>;
    let request = request.map(|body| body.map_err(p2_to_p3_error_code).boxed_unsync());
    let (request, request_io) = p3::Request::from_http(request);
    let (sender, receiver) = oneshot::channel();
    handler.spawn(
        None,
        Box::new(move |store: &Accessor<RequestState>, proxy: &Proxy| {
            Box::pin(async move {
                let outcome = async {
                    let Proxy::P3(guest) = proxy else {
                        anyhow::bail!("a WASIp3 handler was given a WASIp2 instance");
                    };
                    let request = store.with(|mut access| access.data_mut().table.push(request))?;
                    let response = guest.wasi_http_handler().call_handle(store, request).await?;
                    let response = response.map_err(|code| anyhow::anyhow!("the guest answered with an error: {code:?}"))?;
                    let response = store.with(|mut access| access.data_mut().table.delete(response))?;
                    let response = store.with(|mut access| response.into_http_with_getter(&mut access, request_io, getter))?;
                    let (sent, body_done) = oneshot::channel();
                    let response = response.map(|body| {
                        NotifyOnDrop {
                            body: body.map_err(|e| -> BoxError { format!("{e:?}").into() }),
                            dropped: Some(sent),
                        }
                        .boxed_unsync()
                    });
                    if sender.send(response).is_ok() {
                        // The instance must keep running until the body has been sent, or
                        // the guest could not finish writing it.
                        let _ = body_done.await;
                    }
                    anyhow::Ok(())
                }
                .await;
                if let Err(e) = outcome {
                    eprintln!("Component error handling request: {e:?}");
                }
            })
        }),
    );
    Ok(receiver.await?)
}

fn p2_to_p3_error_code(code: ErrorCode) -> p3::bindings::http::types::ErrorCode {
    p3::bindings::http::types::ErrorCode::InternalError(Some(format!("{code:?}")))
}

/// A response body that says when the server is done with it (sent or abandoned).
struct NotifyOnDrop<B> {
    body: B,
    dropped: Option<oneshot::Sender<()>>,
}

impl<B> Drop for NotifyOnDrop<B> {
    fn drop(&mut self) {
        if let Some(dropped) = self.dropped.take() {
            let _ = dropped.send(());
        }
    }
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for NotifyOnDrop<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<hyper::body::Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

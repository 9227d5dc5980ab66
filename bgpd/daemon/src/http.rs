//! The small HTTP/1.1 server behind the health endpoint and the metrics:
//! one hyper connection per accepted socket, a header timeout, and a
//! handler that maps (method, path) to a response.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Response, StatusCode};
use tracing::warn;

pub type Reply = Response<Full<Bytes>>;

pub fn reply(code: StatusCode, content_type: &'static str, body: String) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(content_type));
    r
}

/// Binds `key`'s address: an error names the key and the address.
pub async fn bind(key: &str, addr: std::net::SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    use anyhow::Context;
    tokio::net::TcpListener::bind(addr).await.with_context(|| format!("{key} {addr}: cannot listen"))
}

/// Answers requests until the process ends.
pub async fn serve<F, Fut>(listener: tokio::net::TcpListener, what: &'static str, handler: F)
where
    F: Fn(Method, String) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Reply> + Send + 'static,
{
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                warn!("{what}: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let fut = handler(req.method().clone(), req.uri().path().to_owned());
                async move { Ok::<_, std::convert::Infallible>(fut.await) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            // A client that stalls mid-request is cut off; hyper needs the
            // timer to enforce it (it panics without one).
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .serve_connection(io, svc);
            if let Err(e) = conn.await {
                tracing::debug!("{what}: connection: {e}");
            }
        });
    }
}

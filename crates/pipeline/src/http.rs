//! The one small HTTP/1 server of notifyscope (hyper), for the endpoints it offers on an
//! address it was asked to bind (`/metrics`; a telemetry receiver is to share it). A
//! request's body is read up to a limit (larger ones get 413 without being read whole), and
//! the handler answers from the whole request; a handler never sees a socket.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long a client may take to send a request's head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// A request, read whole.
#[derive(Debug)]
pub struct Request {
    pub method: Method,
    /// Without the query.
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// An answer: status, content type and body.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: Bytes,
}

impl Response {
    pub fn new(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Self {
        Response {
            status,
            content_type,
            body: body.into(),
        }
    }

    /// Plain text for people.
    pub fn text(status: StatusCode, text: impl Into<String>) -> Self {
        Response::new(status, "text/plain; charset=utf-8", text.into())
    }
}

/// What answers the requests of one endpoint.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, request: Request) -> Response;
}

impl<F> Handler for F
where
    F: Fn(Request) -> Response + Send + Sync + 'static,
{
    fn handle(&self, request: Request) -> Response {
        self(request)
    }
}

/// Serves `handler` on `listener` until `stop`, each connection in a task of its own; a
/// body over `body_limit` bytes is refused with 413.
pub async fn serve(
    listener: TcpListener,
    handler: Arc<dyn Handler>,
    body_limit: usize,
    stop: CancellationToken,
) {
    let name = listener
        .local_addr()
        .map_or_else(|_| "an endpoint".to_owned(), |a: SocketAddr| a.to_string());
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, endpoint = %name, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stop.cancelled() => return,
        };
        let handler = handler.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(answer(request, handler.as_ref(), body_limit).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .header_read_timeout(HEAD_TIMEOUT)
                .timer(hyper_util::rt::TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                served = connection => {
                    if let Err(e) = served {
                        tracing::debug!(error = %e, "HTTP connection ended with an error");
                    }
                }
                () = stop.cancelled() => {}
            }
        });
    }
}

async fn answer(
    request: hyper::Request<Incoming>,
    handler: &dyn Handler,
    body_limit: usize,
) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let too_large = || {
        Response::text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over {body_limit} bytes\n"),
        )
    };
    let declared = parts
        .headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let response = if declared.is_some_and(|n| n > body_limit) {
        too_large()
    } else {
        match Limited::new(body, body_limit).collect().await {
            Ok(collected) => handler.handle(Request {
                method: parts.method,
                path: parts.uri.path().to_owned(),
                headers: parts.headers,
                body: collected.to_bytes(),
            }),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => too_large(),
            Err(e) => Response::text(
                StatusCode::BAD_REQUEST,
                format!("the body could not be read: {e}\n"),
            ),
        }
    };
    let mut out = hyper::Response::new(Full::new(response.body));
    *out.status_mut() = response.status;
    out.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(response.content_type),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An echo endpoint on a free port; what a raw request to it gets back.
    async fn exchange(limit: usize, raw: &[u8]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bound");
        let addr = listener.local_addr().expect("address");
        let stop = CancellationToken::new();
        let echo = |r: Request| {
            Response::text(
                StatusCode::OK,
                format!("{} {} {}", r.method, r.path, r.body.len()),
            )
        };
        let server = tokio::spawn(serve(listener, Arc::new(echo), limit, stop.clone()));
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connected");
        stream.write_all(raw).await.expect("sent");
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer))
            .await
            .expect("an answer in time")
            .expect("read");
        stop.cancel();
        let _ = server.await;
        answer
    }

    #[tokio::test]
    async fn a_body_within_the_limit_reaches_the_handler() {
        let answer = exchange(
            16,
            b"POST /v1/logs?x=1 HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("POST /v1/logs 5"), "{answer}");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_with_413() {
        let declared = exchange(
            4,
            b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello",
        )
        .await;
        assert!(declared.starts_with("HTTP/1.1 413"), "{declared}");
        let chunked = exchange(
            4,
            b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n\
              3\r\nhel\r\n3\r\nlo!\r\n0\r\n\r\n",
        )
        .await;
        assert!(chunked.starts_with("HTTP/1.1 413"), "{chunked}");
    }

    #[tokio::test]
    async fn garbage_is_answered_with_400() {
        let answer = exchange(4, b"\x00\x01 not http at all\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    }
}

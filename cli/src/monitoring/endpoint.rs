//! The monitoring endpoint of `dsss node`: plain HTTP/1.1 on its own address, for Prometheus
//! and for orchestrators' probes. `GET /metrics` answers the Prometheus text format, `GET
//! /healthz` 200 while the process serves, `GET /readyz` 200 once the node is ready for
//! clients and 503 with the reason otherwise.
//!
//! It is plain HTTP on purpose: Prometheus and the kubelet's probes speak it without client
//! certificates, and nothing here is secret or changes the node (bind it to an address only
//! the monitoring network reaches). Every connection is bounded: one request of at most
//! [`REQUEST_HEAD_BYTES_MAX`], read within [`REQUEST_TIMEOUT`], answered and closed; at most
//! [`CONNECTIONS_MAX`] at once, later ones wait for the accept loop. A request that is not a
//! well-formed `GET` of a known path gets the HTTP error that says so.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::exposition::CONTENT_TYPE;

/// The largest request head (request line and headers) the endpoint reads.
pub const REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;

/// How long a client has to send its request head, and to take the answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections served at once.
pub const CONNECTIONS_MAX: usize = 16;

/// What the endpoint answers, computed when asked.
pub trait Pages: Send + Sync + 'static {
    /// The metrics page.
    fn metrics(&self) -> impl Future<Output = String> + Send;
    /// `Ok` when ready for clients, or why not.
    fn readiness(&self) -> impl Future<Output = Result<(), String>> + Send;
}

/// One answer.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: &'static str,
    content_type: &'static str,
    body: String,
}

impl Answer {
    fn text(status: &'static str, body: impl Into<String>) -> Answer {
        Answer {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }
}

/// Serves `pages` on `listener` until the task is dropped or aborted.
pub async fn serve<P: Pages>(listener: TcpListener, pages: Arc<P>) {
    let slots = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, say: wait rather than spin.
                tracing::warn!(%error, "the monitoring endpoint could not accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let pages = Arc::clone(&pages);
        tokio::spawn(async move {
            let _slot = slot;
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, answer_one(stream, &*pages)).await;
        });
    }
}

async fn answer_one<P: Pages>(mut stream: TcpStream, pages: &P) {
    let answer = match read_head(&mut stream).await {
        Ok(head) => match parse_request_line(&head) {
            Ok(path) => route(path, pages).await,
            Err(answer) => answer,
        },
        Err(answer) => answer,
    };
    let head = format!(
        "HTTP/1.1 {}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        answer.status,
        answer.content_type,
        answer.body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(answer.body.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Reads until the blank line that ends the head, at most [`REQUEST_HEAD_BYTES_MAX`].
async fn read_head(stream: &mut TcpStream) -> Result<String, Answer> {
    let mut head = Vec::with_capacity(1024);
    let mut buffer = [0_u8; 1024];
    loop {
        if head.windows(4).any(|window| window == b"\r\n\r\n")
            || head.windows(2).any(|window| window == b"\n\n")
        {
            break;
        }
        if head.len() >= REQUEST_HEAD_BYTES_MAX {
            return Err(Answer::text(
                "431 Request Header Fields Too Large",
                format!("the request head passed {REQUEST_HEAD_BYTES_MAX} bytes\n"),
            ));
        }
        let read = stream
            .read(&mut buffer)
            .await
            .map_err(|error| Answer::text("400 Bad Request", format!("{error}\n")))?;
        if read == 0 {
            // The client closed before ending its head: take what came, if it holds a line.
            break;
        }
        head.extend_from_slice(&buffer[..read]);
    }
    String::from_utf8(head)
        .map_err(|_| Answer::text("400 Bad Request", "the request head is not UTF-8\n"))
}

/// The path of a `GET` request line, or the error answer.
fn parse_request_line(head: &str) -> Result<&str, Answer> {
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Answer::text(
            "400 Bad Request",
            "the request line is not `METHOD PATH HTTP/1.x`\n",
        ));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(Answer::text(
            "505 HTTP Version Not Supported",
            format!("{version} is not HTTP/1.x\n"),
        ));
    }
    if method != "GET" {
        return Err(Answer::text(
            "405 Method Not Allowed",
            format!("{method}: only GET is served\n"),
        ));
    }
    // A query string (`/metrics?x=y`) asks for the same page.
    Ok(target.split('?').next().unwrap_or(target))
}

async fn route<P: Pages>(path: &str, pages: &P) -> Answer {
    match path {
        "/metrics" => Answer {
            status: "200 OK",
            content_type: CONTENT_TYPE,
            body: pages.metrics().await,
        },
        "/healthz" => Answer::text("200 OK", "ok\n"),
        "/readyz" => match pages.readiness().await {
            Ok(()) => Answer::text("200 OK", "ready\n"),
            Err(reason) => Answer::text("503 Service Unavailable", format!("{reason}\n")),
        },
        other => Answer::text(
            "404 Not Found",
            format!("{other}: the paths are /metrics, /healthz and /readyz\n"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed {
        ready: bool,
    }

    impl Pages for Fixed {
        async fn metrics(&self) -> String {
            "dsss_up 1\n".to_owned()
        }
        async fn readiness(&self) -> Result<(), String> {
            if self.ready {
                Ok(())
            } else {
                Err("no leader known in region a".to_owned())
            }
        }
    }

    async fn endpoint(ready: bool) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, Arc::new(Fixed { ready })));
        address
    }

    async fn exchange(address: std::net::SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn each_path_gets_its_page_and_everything_else_a_named_error() {
        let address = endpoint(false).await;
        let metrics = exchange(address, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(metrics.starts_with("HTTP/1.1 200 OK\r\n"), "{metrics}");
        assert!(metrics.contains("content-type: text/plain; version=0.0.4"));
        assert!(metrics.ends_with("\r\n\r\ndsss_up 1\n"), "{metrics}");
        let healthy = exchange(address, b"GET /healthz HTTP/1.0\r\n\r\n").await;
        assert!(healthy.starts_with("HTTP/1.1 200 OK"), "{healthy}");
        let unready = exchange(address, b"GET /readyz?verbose HTTP/1.1\r\n\r\n").await;
        assert!(
            unready.starts_with("HTTP/1.1 503 Service Unavailable"),
            "{unready}"
        );
        assert!(unready.ends_with("no leader known in region a\n"));
        let missing = exchange(address, b"GET /secrets HTTP/1.1\r\n\r\n").await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        let posted = exchange(address, b"POST /metrics HTTP/1.1\r\n\r\n").await;
        assert!(posted.starts_with("HTTP/1.1 405"), "{posted}");
        let garbage = exchange(address, b"\x00\xff\xfe\r\n\r\n").await;
        assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage}");
        let http2 = exchange(address, b"GET /metrics HTTP/2\r\n\r\n").await;
        assert!(http2.starts_with("HTTP/1.1 505"), "{http2}");
        let ready_address = endpoint(true).await;
        let ready = exchange(ready_address, b"GET /readyz HTTP/1.1\r\n\r\n").await;
        assert!(ready.starts_with("HTTP/1.1 200 OK"), "{ready}");
    }

    #[tokio::test]
    async fn a_head_past_the_bound_is_refused_and_a_silent_client_does_not_hold_a_slot() {
        let address = endpoint(true).await;
        let mut long = b"GET /metrics HTTP/1.1\r\n".to_vec();
        while long.len() <= REQUEST_HEAD_BYTES_MAX {
            long.extend_from_slice(b"x-filler: 0123456789abcdef\r\n");
        }
        let refused = exchange(address, &long).await;
        assert!(refused.starts_with("HTTP/1.1 431"), "{refused}");
        // Every slot taken by a client that says nothing: the endpoint still answers once
        // their time is up.
        let mut silent = Vec::new();
        for _ in 0..CONNECTIONS_MAX {
            silent.push(TcpStream::connect(address).await.unwrap());
        }
        let answered = tokio::time::timeout(
            REQUEST_TIMEOUT * 3,
            exchange(address, b"GET /healthz HTTP/1.1\r\n\r\n"),
        )
        .await
        .expect("the endpoint answered once the silent clients timed out");
        assert!(answered.starts_with("HTTP/1.1 200 OK"), "{answered}");
        drop(silent);
    }
}

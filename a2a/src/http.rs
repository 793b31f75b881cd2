//! Serving a router over HTTP/1.1 until a stop signal, with what `axum::serve` does not
//! offer: a bound on how long a client may take to send its request's headers, so that a
//! connection that never finishes them is closed instead of held.

use std::{future::Future, time::Duration};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::A2aError;

/// Serves `router` on `listener` until `stop` completes; then stops accepting, lets each
/// connection finish the request it is answering, and returns once all are closed.
/// A client has `header_timeout` to send a request's headers (the first, and each next one
/// on a kept-alive connection); the body and the answer are bounded by the router's own
/// layers ([`Limits`](crate::Limits)).
///
/// Errors: none once listening; a failed `accept` (too many open files) is waited out.
pub async fn serve_until(
    listener: tokio::net::TcpListener,
    router: Router,
    header_timeout: Duration,
    stop: impl Future<Output = ()>,
) -> Result<(), A2aError> {
    let (closing, closed) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors or a connection reset while queued: the
                        // listener itself is fine; try again shortly rather than spin.
                        tracing::debug!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                // Small JSON-RPC answers: sent at once, not held back by Nagle.
                let _ = stream.set_nodelay(true);
                let service = hyper_util::service::TowerToHyperService::new(router.clone());
                let mut closed = closed.clone();
                connections.spawn(async move {
                    let connection = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(header_timeout)
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::pin!(connection);
                    let stopping = async move {
                        // The guard the wait returns is let go at once (it is not `Send`).
                        let _stopped = closed.wait_for(|closing| *closing).await.is_ok();
                    };
                    tokio::select! {
                        _ = connection.as_mut() => {}
                        () = stopping => {
                            connection.as_mut().graceful_shutdown();
                            let _ = connection.await;
                        }
                    }
                });
            }
            // Finished connections are collected as they go, so the set holds open ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = closing.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

//! The link between hubs: HTTP/2 over TCP (h2c, prior knowledge) from hyper. Each hub
//! serves `POST /colloquy/cluster/v1/turn` and keeps one multiplexed connection to each
//! other alive hub; concurrent turns to one hub are streams of that connection.
//!
//! A request carries the module's name and what is left of the turn's deadline in headers
//! (never a wall time: clocks of two machines disagree), the turn as JSON in the body, and
//! the cluster secret as a bearer token, checked before the body is read. The answer is an
//! [`Answer`] as JSON. Cancelling the call (the sender's deadline, a cancelled caller)
//! resets the stream, which drops the hosted call: the module's task is aborted.

use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use bytes::Bytes;
use colloquy_core::ModuleName;
use colloquy_registry::{ModuleDirectory, Turn};
use http_body_util::{BodyExt, Full, Limited};
use hyper::{
    body::Incoming,
    client::conn::http2::SendRequest,
    header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE},
    Request, Response, StatusCode,
};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, Instrument};

use crate::{
    wire::{Answer, IncomingTurn, OutgoingTurn},
    Cluster, ClusterError,
};

/// The one path of the link.
const TURN_PATH: &str = "/colloquy/cluster/v1/turn";
/// The module a turn is for.
const MODULE_HEADER: &str = "x-colloquy-module";
/// What is left of the turn's deadline, in milliseconds.
const DEADLINE_HEADER: &str = "x-colloquy-deadline-ms";
/// The sending hub's name, for the host's tracing span (with the turn's conversation and
/// number, it ties the host's events to the sender's).
const FROM_HEADER: &str = "x-colloquy-from";
/// The largest turn body read (a turn carries its history window: 20 messages of up to
/// 1 MiB each by default).
const MAX_TURN_BYTES: usize = 64 << 20;
/// The body of a 409 answer: the turn's history builds on a request this hub does not
/// remember; the sender sends the whole window.
const RESEND: &str = "the history window this turn builds on is not remembered here; send it whole";
/// How long a connection to a hub may take before the turn goes through the database.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Checks a cluster secret, returning it shared.
pub(crate) fn check_secret(secret: &str) -> Result<Arc<str>, ClusterError> {
    let printable = secret.bytes().all(|b| b.is_ascii_graphic());
    if secret.is_empty() || !printable {
        return Err(ClusterError::BadSecret {
            length: secret.len(),
        });
    }
    Ok(Arc::from(secret))
}

/// Compares without stopping at the first difference, so the time taken does not tell how
/// much of a guess was right.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Accepts hubs' connections until `closing` is cancelled; each connection serves its
/// streams concurrently. Then it stops accepting and closes every connection gracefully:
/// streams in progress (answers being written after the router's drain) finish, new ones
/// are refused (HTTP/2 GOAWAY), and the senders go another way.
pub(crate) async fn serve(
    listener: TcpListener,
    cluster: Weak<Cluster>,
    closing: CancellationToken,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            () = closing.cancelled() => break,
        };
        let (stream, from) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors, say: not this loop's to fix; try again shortly.
                debug!(error = %e, "the cluster link could not accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let cluster = cluster.clone();
        let closing = closing.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let cluster = cluster.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&cluster, request).await) }
            });
            let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = closing.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = ended {
                debug!(%from, error = %e, "a hub's link connection ended");
            }
        });
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
}

fn json(answer: &Answer) -> Response<Full<Bytes>> {
    match serde_json::to_vec(answer) {
        Ok(body) => {
            let mut response = reply(StatusCode::OK, body);
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the answer cannot be encoded: {e}"),
        ),
    }
}

/// Answers one turn another hub sent.
async fn answer(cluster: &Weak<Cluster>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let Some(cluster) = cluster.upgrade() else {
        return json(&Answer::Unavailable("the hub is stopping".into()));
    };
    if request.uri().path() != TURN_PATH || request.method() != hyper::Method::POST {
        return reply(
            StatusCode::NOT_FOUND,
            "the cluster link serves POST /colloquy/cluster/v1/turn only",
        );
    }
    if let Some(secret) = &cluster.secret {
        let given = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
        if !given.is_some_and(|given| same_secret(given, secret.as_bytes())) {
            return reply(
                StatusCode::UNAUTHORIZED,
                "the cluster secret is missing or wrong",
            );
        }
    }
    let module: Option<ModuleName> = request
        .headers()
        .get(MODULE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let left: Option<u64> = request
        .headers()
        .get(DEADLINE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let (Some(module), Some(left)) = (module, left) else {
        return reply(
            StatusCode::BAD_REQUEST,
            "a turn needs its module and deadline headers",
        );
    };
    let from = request
        .headers()
        .get(FROM_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unnamed")
        .to_owned();
    // Taken before the body is read: the deadline runs from the moment the turn arrived.
    let deadline = Duration::from_millis(left);
    let body = match Limited::new(request.into_body(), MAX_TURN_BYTES)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                format!("the turn cannot be read: {e}"),
            )
        }
    };
    let incoming: IncomingTurn = match serde_json::from_slice(&body) {
        Ok(incoming) => incoming,
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                format!("the turn cannot be read: {e}"),
            )
        }
    };
    let Some(registered) = cluster.registry.get(&module) else {
        return json(&Answer::Unavailable(format!("{module} is not hosted here")));
    };
    let Some(router) = cluster.router() else {
        return json(&Answer::Unavailable("the hub is stopping".into()));
    };
    if !cluster.surely_unfenced() {
        return json(&Answer::Unavailable(
            "the hosting hub has not heartbeat within its member timeout and may have been fenced"
                .into(),
        ));
    }
    let window = incoming.window();
    let (by_reference, sent) = (incoming.by_reference(), incoming.sent());
    let Some(turn) = incoming.into_turn(deadline, Some(&cluster.hosted_histories)) else {
        debug!("a turn builds on a history window not remembered here; asking for it whole");
        return reply(StatusCode::CONFLICT, RESEND);
    };
    if by_reference {
        debug!(
            sent,
            window = turn.history.len(),
            "history window rebuilt from the one remembered"
        );
    }
    let (history, request) = (turn.history.clone(), Arc::clone(&turn.message));
    // The sender's exchange, seen from here: its hub, conversation, turn and message id (the
    // router's `hosted_turn` span inside adds source and target).
    let span = tracing::debug_span!(
        "link_turn",
        from_hub = %from,
        conversation_id = %turn.conversation.id,
        turn = turn.message.turn,
        message_id = %turn.message.id,
    );
    let answer = Answer::hosted(router.host(&registered, turn).instrument(span).await);
    cluster
        .hosted_histories
        .remember(&history, &request, window);
    // A hub paused while the module ran (past the member timeout) may have been fenced and
    // its turns handed to another: its answer is withheld, and the sender tries again.
    if !cluster.surely_unfenced() {
        return json(&Answer::Unavailable(
            "the hosting hub was paused past its member timeout while the module ran".into(),
        ));
    }
    json(&answer)
}

/// This hub's link to another one: one HTTP/2 connection, opened at first use and again
/// after it broke, closed when the other hub is no longer alive.
pub(crate) struct Peer {
    address: String,
    /// This hub's name, sent with each turn.
    from: HeaderValue,
    authorization: Option<HeaderValue>,
    connection: tokio::sync::Mutex<Option<Connection>>,
    /// Cancelled when the other hub is no longer alive: calls in flight to it give up.
    gone: CancellationToken,
    /// The last request sent there, per conversation (its history goes by reference).
    sent: crate::history::Sent,
}

/// Why a sent turn has no answer.
enum Unanswered {
    /// The host does not remember the history the turn builds on.
    Resend,
    /// Anything else: the turn may go another way.
    Failed(String),
}

impl From<String> for Unanswered {
    fn from(reason: String) -> Self {
        Self::Failed(reason)
    }
}

impl std::fmt::Display for Unanswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Resend => f.write_str(RESEND),
            Self::Failed(reason) => f.write_str(reason),
        }
    }
}

struct Connection {
    sender: SendRequest<Full<Bytes>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Peer {
    pub(crate) fn new(address: String, from: &str, secret: Option<Arc<str>>) -> Self {
        Self {
            address,
            // A name that is not a valid header value is sent as a placeholder.
            from: HeaderValue::try_from(from).unwrap_or(HeaderValue::from_static("unnamed")),
            // A secret was checked to be printable ASCII, so it is a valid header value.
            authorization: secret
                .and_then(|secret| HeaderValue::try_from(format!("Bearer {secret}")).ok())
                .map(|mut value| {
                    value.set_sensitive(true);
                    value
                }),
            connection: tokio::sync::Mutex::new(None),
            gone: CancellationToken::new(),
            sent: crate::history::Sent::default(),
        }
    }

    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    /// Gives up on the other hub: calls in flight return, and no connection is kept.
    pub(crate) fn close(&self) {
        self.gone.cancel();
        if let Ok(mut connection) = self.connection.try_lock() {
            *connection = None;
        }
    }

    /// Sends `turn` for `module` and waits for the answer. `Err`: the hub could not be
    /// reached, refused, went away or could not run it; the turn may go another way.
    pub(crate) async fn call(&self, module: &ModuleName, turn: &Turn) -> Result<Answer, String> {
        if self.gone.is_cancelled() {
            return Err("the hub is no longer alive".into());
        }
        let conversation = turn.conversation.id;
        let answered = tokio::select! {
            answer = self.send_turn(module, turn) => answer,
            () = self.gone.cancelled() => Err("the hub stopped heartbeating while it ran the turn".into()),
        };
        match &answered {
            Ok(_) => self.sent.remember(conversation, turn.message.id),
            Err(_) => self.sent.forget(conversation),
        }
        answered
    }

    /// Sends the turn with the newer part of its window; again with the whole window if the
    /// host does not remember the part it builds on.
    async fn send_turn(&self, module: &ModuleName, turn: &Turn) -> Result<Answer, String> {
        let since = self.sent.last(turn.conversation.id);
        match self.send(module, turn, since).await {
            Err(Unanswered::Resend) if since.is_some() => self
                .send(module, turn, None)
                .await
                .map_err(|e| e.to_string()),
            answered => answered.map_err(|e| e.to_string()),
        }
    }

    async fn send(
        &self,
        module: &ModuleName,
        turn: &Turn,
        since: Option<colloquy_core::MessageId>,
    ) -> Result<Answer, Unanswered> {
        let body = serde_json::to_vec(&OutgoingTurn::after(turn, since))
            .map_err(|e| format!("the turn cannot be encoded: {e}"))?;
        let mut request = Request::post(format!("http://{}{TURN_PATH}", self.address))
            .header(MODULE_HEADER, module.as_str())
            .header(
                DEADLINE_HEADER,
                colloquy_core::duration_millis(turn.deadline),
            )
            .header(FROM_HEADER, self.from.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("the request cannot be built: {e}"))?;
        if let Some(authorization) = &self.authorization {
            request
                .headers_mut()
                .insert(AUTHORIZATION, authorization.clone());
        }
        let mut sender = self.sender().await?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("the turn was not answered: {e}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("the answer was cut off: {e}"))?
            .to_bytes();
        if status == StatusCode::CONFLICT {
            return Err(Unanswered::Resend);
        }
        if status != StatusCode::OK {
            return Err(Unanswered::Failed(format!(
                "the hub refused the turn ({status}): {}",
                String::from_utf8_lossy(&body)
            )));
        }
        match serde_json::from_slice(&body) {
            Ok(Answer::Unavailable(reason)) => Err(Unanswered::Failed(reason)),
            Ok(answer) => Ok(answer),
            Err(e) => Err(Unanswered::Failed(format!(
                "the answer cannot be read: {e}"
            ))),
        }
    }

    /// The connection's sender, connecting first if there is none or it broke.
    async fn sender(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let mut connection = self.connection.lock().await;
        if let Some(open) = connection.as_ref() {
            if !open.sender.is_closed() {
                return Ok(open.sender.clone());
            }
        }
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.address))
            .await
            .map_err(|_| {
                format!(
                    "no connection to {} within {CONNECT_TIMEOUT:?}",
                    self.address
                )
            })?
            .map_err(|e| format!("no connection to {}: {e}", self.address))?;
        let _ = stream.set_nodelay(true);
        let (sender, driver) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .map_err(|e| format!("no HTTP/2 with {}: {e}", self.address))?;
        let address = self.address.clone();
        let task = tokio::spawn(
            async move {
                if let Err(e) = driver.await {
                    debug!(error = %e, "a link connection ended");
                }
            }
            .instrument(tracing::debug_span!("link", peer = %address)),
        );
        *connection = Some(Connection {
            sender: sender.clone(),
            task,
        });
        Ok(sender)
    }
}

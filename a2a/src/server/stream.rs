//! Streaming (`SendStreamingMessage`, `SubscribeToTask`): the events of a task as Server-Sent
//! Events.

use super::*;

/// The events of one stream: a first one, those of an exchange until its last, and the
/// error that ended the exchange early, if one did.
pub(super) struct Events {
    pub(super) first: Option<StreamResponse>,
    pub(super) events: Option<broadcast::Receiver<StreamResponse>>,
    pub(super) failure: Option<oneshot::Receiver<RpcError>>,
}

impl Events {
    /// The next event, or `None` after the last.
    async fn next(&mut self) -> Option<Result<StreamResponse, RpcError>> {
        if let Some(first) = self.first.take() {
            return Some(Ok(self.passing(first)));
        }
        let events = self.events.as_mut()?;
        loop {
            match events.recv().await {
                Ok(event) => return Some(Ok(self.passing(event))),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => {
                    self.events = None;
                    let failure = self.failure.take()?;
                    return failure.await.ok().map(Err);
                }
            }
        }
    }
}

impl Events {
    /// Passes `event` on; after the last one, the stream has nothing more to wait for.
    fn passing(&mut self, event: StreamResponse) -> StreamResponse {
        if is_last(&event) {
            self.events = None;
            self.failure = None;
        }
        event
    }
}

/// A stream of JSON-RPC responses (all with the request's `id`) as Server-Sent Events.
pub(super) fn sse(id: Value, v03: bool, events: Events) -> Response {
    let stream = futures_util::stream::unfold(events, move |mut events| {
        let id = id.clone();
        async move {
            let body = match events.next().await? {
                Ok(event) => {
                    let result = serde_json::to_value(&event).unwrap_or(Value::Null);
                    let result = if v03 {
                        legacy::event_to_v03(result)
                    } else {
                        result
                    };
                    json!({"jsonrpc": "2.0", "id": id, "result": result})
                }
                Err(e) => {
                    json!({"jsonrpc": "2.0", "id": id, "error": {"code": e.code, "message": e.message}})
                }
            };
            Some((
                Ok::<_, Infallible>(Event::default().data(body.to_string())),
                events,
            ))
        }
    });
    Sse::new(stream).into_response()
}

pub(super) fn is_streaming(method: &str) -> bool {
    matches!(
        method,
        "SendStreamingMessage" | "message/stream" | "SubscribeToTask" | "tasks/resubscribe"
    )
}

impl A2aServer {
    /// A streaming call: `SendStreamingMessage` (the exchange's events as it runs) or
    /// `SubscribeToTask` (the current task, then its events). Errors found before the
    /// stream starts (bad parameters, an unknown context, a task that cannot be followed)
    /// are plain JSON-RPC errors; those of the exchange, opening its conversation included,
    /// end the stream with an error event, and a rejected invitation is its one event (the
    /// rejected task).
    pub(super) async fn stream(
        self: Arc<Self>,
        caller: ModuleName,
        module: ModuleName,
        method: &str,
        params: &RawValue,
    ) -> Result<Events, RpcError> {
        if matches!(method, "SubscribeToTask" | "tasks/resubscribe") {
            let request: SubscribeToTaskRequest = parse_params(params, "SubscribeToTask")?;
            let Some((flight, events)) = self.flights.follow(&request.id, &caller, &module) else {
                // Known but over (or not found): a finished task cannot be followed.
                self.stored_task(&caller, &module, &request.id).await?;
                return Err(RpcError::new(
                    error_code::UNSUPPORTED_OPERATION,
                    format!("task {} has finished; read it with GetTask", request.id),
                ));
            };
            let first = flight.working().map(StreamResponse::Task);
            return Ok(Events {
                first,
                events: Some(events),
                failure: None,
            });
        }
        match self.prepare(&caller, &module, params).await? {
            Prepared::Answered(answer) => {
                let event = serde_json::from_str(answer.get())
                    .map_err(|e| RpcError::new(error_code::INTERNAL_ERROR, e.to_string()))?;
                Ok(Events {
                    first: Some(event),
                    events: None,
                    failure: None,
                })
            }
            Prepared::Ready(exchange) => {
                let events = exchange.flight.subscribe();
                let (failed, failure) = oneshot::channel();
                // The exchange runs on its own: a client that hangs up does not stop it,
                // and GetTask finds its outcome.
                tokio::spawn(async move {
                    if let Err(e) = self.run(&module, exchange).await {
                        let _ = failed.send(e);
                    }
                });
                Ok(Events {
                    first: None,
                    events: Some(events),
                    failure: Some(failure),
                })
            }
        }
    }
}

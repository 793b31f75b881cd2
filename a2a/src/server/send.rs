//! `SendMessage`: a message resolved to an exchange (or to the stored answer of a retried
//! `messageId`), run, and answered as a task.

use super::*;

/// A `SendMessage` resolved to an exchange ready to run, or already answered.
pub(super) enum Prepared {
    /// Answered without running an exchange (a retried `messageId`, a rejected invitation):
    /// the `SendMessageResponse` JSON.
    Answered(Raw),
    /// The exchange to run.
    Ready(Exchange),
}

/// One exchange about to run.
pub(super) struct Exchange {
    pub(super) key: AnswerKey,
    /// The request's stored id, derived from the caller's `messageId` (see
    /// [`mapping::request_id`](crate::mapping::request_id)).
    pub(super) request_id: colloquy_runtime::MessageId,
    pub(super) conversation: Target,
    /// The message's parts, made into the request's content where it is sent.
    pub(super) parts: Vec<a2a::Part>,
    pub(super) flight: Arc<Flight>,
}

/// The conversation an exchange runs in.
pub(super) enum Target {
    /// A conversation to open with the exchange's request, which stores the handshake's
    /// outcome with it (one write fewer than opening first); its derived id.
    Open(Box<ConversationSpec>, ConversationId),
    /// The conversation the exchange continues.
    Continue(ConversationHandle),
}

/// The answer to a message whose invitation the module rejected: a rejected task.
pub(super) fn rejected(conversation: ConversationId, reason: &str) -> Task {
    let mut why = a2a::Message::new(a2a::Role::Agent, vec![a2a::Part::text(reason)]);
    why.context_id = Some(conversation.to_string());
    Task {
        id: TaskRef {
            conversation,
            turn: 0,
        }
        .to_string(),
        context_id: conversation.to_string(),
        status: TaskStatus {
            state: TaskState::Rejected,
            message: Some(why),
            timestamp: None,
        },
        artifacts: None,
        history: None,
        metadata: None,
    }
}

impl A2aServer {
    /// One JSON-RPC call to `module`.
    pub(super) async fn call(
        &self,
        caller: &ModuleName,
        module: &ModuleName,
        method: &str,
        params: &RawValue,
    ) -> Result<Raw, RpcError> {
        match method {
            // A2A v1.0 names, and the v0.3 names deployed clients still send.
            "SendMessage" | "message/send" => self.send(caller, module, params).await,
            "GetTask" | "tasks/get" => self.get_task(caller, module, params).await,
            "CancelTask" | "tasks/cancel" => self.cancel_task(caller, module, params).await,
            other => Err(RpcError::new(
                error_code::METHOD_NOT_FOUND,
                format!("unknown method {other:?}"),
            )),
        }
    }

    pub(super) async fn send(
        &self,
        caller: &ModuleName,
        module: &ModuleName,
        params: &RawValue,
    ) -> Result<Raw, RpcError> {
        match self.prepare(caller, module, params).await? {
            Prepared::Answered(answer) => Ok(answer),
            Prepared::Ready(exchange) => {
                let (_, answer) = self.run(module, exchange).await?;
                Ok(answer)
            }
        }
    }

    /// Reads a `SendMessage`: answered already (a retried `messageId`), or the exchange to
    /// run in the conversation it opens or continues.
    pub(super) async fn prepare(
        &self,
        caller: &ModuleName,
        module: &ModuleName,
        params: &RawValue,
    ) -> Result<Prepared, RpcError> {
        let request: SendMessageRequest = parse_params(params, "SendMessage")?;
        check_message(&request.message)?;
        let key = (
            caller.clone(),
            module.clone(),
            request.message.message_id.clone(),
        );
        if let Some(answer) = self.answered.get(&key) {
            return Ok(Prepared::Answered(answer));
        }
        let message_id = &request.message.message_id;
        let conversation = match &request.message.context_id {
            None => {
                // Derived from the messageId too: a retry through another hub (or after a
                // restart) finds the conversation the first attempt opened.
                let id = crate::mapping::context_id(caller, module, message_id);
                let spec = ConversationSpec::new(caller.clone(), [module.clone()]).id(id);
                // Opened by `run`, with the request: one write fewer than opening here.
                return Ok(Prepared::Ready(Exchange {
                    key,
                    request_id: crate::mapping::request_id(caller, module, message_id),
                    conversation: Target::Open(Box::new(spec), id),
                    parts: request.message.parts,
                    flight: Flight::new(caller.clone(), module.clone()),
                }));
            }
            Some(context) => {
                let id: ConversationId = context
                    .parse()
                    .map_err(|_| RpcError::not_found("context"))?;
                // Not the caller's, or no such conversation: "not found". A module that is
                // not a participant is refused by the send below, also as "not found".
                self.hub
                    .conversation(id, caller.clone())
                    .await
                    .map_err(|_| RpcError::not_found("context"))?
            }
        };
        Ok(Prepared::Ready(Exchange {
            key,
            request_id: crate::mapping::request_id(caller, module, message_id),
            conversation: Target::Continue(conversation),
            parts: request.message.parts,
            flight: Flight::new(caller.clone(), module.clone()),
        }))
    }

    /// Runs one exchange through the hub: the request is stored (streams hear "submitted"
    /// and "working"), the module answers or fails or is cancelled, and the final task is
    /// remembered for retries and reported to streams.
    pub(super) async fn run(
        &self,
        module: &ModuleName,
        exchange: Exchange,
    ) -> Result<(Task, Raw), RpcError> {
        let Exchange {
            key,
            request_id,
            conversation,
            parts,
            flight,
        } = exchange;
        let started = std::time::Instant::now();
        let flights = Arc::clone(&self.flights);
        let stored = Arc::clone(&flight);
        let options = RouteOptions::default()
            .message_id(request_id)
            .cancel_on(flight.cancel.clone())
            .on_stored(move |request| flights.stored(&stored, request));
        let sent = match conversation {
            Target::Continue(conversation) => {
                let content = content_from_parts(&parts);
                conversation
                    .send_with(module.clone(), MessageKind::Request, content, options)
                    .await
            }
            Target::Open(spec, id) => {
                let opened = self
                    .hub
                    .start_conversation_and_send(
                        *spec,
                        module.clone(),
                        MessageKind::Request,
                        content_from_parts(&parts),
                        options.clone(),
                    )
                    .await;
                match opened {
                    Ok((_, sent)) => sent,
                    // Opened before, by this message sent earlier (through another hub,
                    // or before a restart): it continues there, where the request's id
                    // finds the exchange if it was stored. (The opening took the content:
                    // it is made again from the parts on this rare path.)
                    Err(HubError::Store(colloquy_runtime::StoreError::AlreadyExists {
                        ..
                    })) => {
                        self.hub
                            .conversation(id, flight.caller.clone())
                            .await
                            .map_err(hub_error)?
                            .send_with(
                                module.clone(),
                                MessageKind::Request,
                                content_from_parts(&parts),
                                options,
                            )
                            .await
                    }
                    Err(HubError::Rejected {
                        conversation,
                        reason,
                        ..
                    }) => {
                        self.flights.landed(&flight);
                        let task = rejected(conversation, &reason);
                        let answer = to_raw(&SendMessageResponse::Task(task.clone()))?;
                        self.answered.insert(key, Arc::clone(&answer));
                        // A stream's one event: the rejected task, which ends it.
                        flight.emit(StreamResponse::Task(task.clone()));
                        return Ok((task, answer));
                    }
                    Err(e) => Err(e),
                }
            }
        };
        self.flights.landed(&flight);
        if let Err(HubError::Route(RouteError::AlreadyStored {
            conversation, turn, ..
        })) = &sent
        {
            // Sent before (through another hub, or before a restart): the stored exchange
            // is the answer, as GetTask would give it.
            let (task, _) = self
                .stored_task(&flight.caller, module, &format!("{conversation}:{turn}"))
                .await?;
            let answer = to_raw(&SendMessageResponse::Task(task.clone()))?;
            self.answered.insert(key, Arc::clone(&answer));
            return Ok((task, answer));
        }
        let caller = &flight.caller;
        // `unanswered`: the exchange ended without a reply the store could show.
        let (task, unanswered) = match (sent, flight.request()) {
            (Ok(exchange), _) => {
                let outcome = match &exchange.reply {
                    Some(reply) => Outcome::Replied(reply),
                    None => Outcome::Without(TaskState::Completed),
                };
                (task(&exchange.request, outcome, caller), false)
            }
            (Err(HubError::Route(RouteError::Canceled { .. })), Some(request)) => (
                task(request, Outcome::Without(TaskState::Canceled), caller),
                true,
            ),
            (
                Err(HubError::Route(
                    failure @ (RouteError::HandlerFailed { .. }
                    | RouteError::HandlerTimedOut { .. }
                    | RouteError::HandlerPanicked { .. }
                    | RouteError::InvalidResponse { .. }),
                )),
                Some(request),
            ) => {
                // The request is stored and the exchange is over: a failed task, not an
                // HTTP or JSON-RPC error.
                let reason = failure.to_string();
                (task(request, Outcome::Failed(&reason), caller), true)
            }
            (Err(e), _) => return Err(hub_error(e)),
        };
        let outcome = match task.status.state {
            TaskState::Canceled => "canceled",
            TaskState::Failed => "failed",
            _ => "completed",
        };
        self.metrics
            .exchange(module, outcome, started.elapsed().as_secs_f64());
        if unanswered {
            self.unanswered.insert(
                task.id.clone(),
                (caller.clone(), module.clone(), task.clone()),
            );
        }
        // Serialized once: the answer, and what a retry of the same messageId gets.
        let answer = to_raw(&SendMessageResponse::Task(task.clone()))?;
        self.answered.insert(key, Arc::clone(&answer));
        if let Some(artifacts) = &task.artifacts {
            for artifact in artifacts {
                flight.emit(StreamResponse::ArtifactUpdate(TaskArtifactUpdateEvent {
                    task_id: task.id.clone(),
                    context_id: task.context_id.clone(),
                    artifact: artifact.clone(),
                    append: None,
                    last_chunk: Some(true),
                    metadata: None,
                }));
            }
        }
        if let Some(request) = flight.request() {
            flight.emit(status_update(request, task.status.clone()));
        }
        Ok((task, answer))
    }

    /// The task `id` as stored, if it is an exchange between the caller and `module`.
    pub(super) async fn stored_task(
        &self,
        caller: &ModuleName,
        module: &ModuleName,
        id: &str,
    ) -> Result<(Task, bool), RpcError> {
        let task_ref: TaskRef = id.parse().map_err(|_| RpcError::not_found("task"))?;
        let reader = self.hub.reader();
        let conversation = reader
            .conversation(task_ref.conversation)
            .await
            .map_err(store_error)?
            .filter(|c| c.is_participant(caller) && c.is_participant(module))
            .ok_or_else(|| RpcError::not_found("task"))?;
        let messages = reader
            .messages(
                task_ref.conversation,
                MessageRange::Turns {
                    first: task_ref.turn,
                    last: task_ref.turn.saturating_add(1),
                },
            )
            .await
            .map_err(store_error)?;
        let Some(request) = messages
            .first()
            .filter(|m| m.turn == task_ref.turn && &m.source == caller)
        else {
            return Err(RpcError::not_found("task"));
        };
        let reply = messages
            .get(1)
            .filter(|m| m.in_reply_to == Some(request.id));
        let in_flight =
            conversation.busy_until().is_some() && conversation.turn_count() == task_ref.turn;
        let outcome = match reply {
            Some(reply) => Outcome::Replied(reply),
            None if in_flight => Outcome::Without(TaskState::Working),
            None => Outcome::Without(TaskState::Completed),
        };
        Ok((task(request, outcome, caller), in_flight))
    }
}

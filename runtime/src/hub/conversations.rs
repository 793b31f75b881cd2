//! Conversations through the hub: opening one (with its first message, or not), a handle
//! on one already stored, a scoped one that always ends, a broadcast of short ones, and the
//! routing every handle's send goes through.

use std::future::Future;

use colloquy_core::{Capability, ConversationId, Draft, Intent, MessageKind, ModuleName};
use colloquy_router::{ConversationSpec, Exchange, Opened, RouteOptions};
use serde_json::Value;
use tracing::warn;

use super::{BroadcastReply, Hub};
use crate::{ConversationHandle, HubError};

impl Hub {
    /// Opens a conversation and runs the handshake. A rejection returns
    /// [`HubError::Rejected`] (the conversation is stored as Failed); a counter-proposal
    /// returns a handle whose [`handshake`](ConversationHandle::handshake) holds it.
    pub async fn start_conversation(
        &self,
        spec: ConversationSpec,
    ) -> Result<ConversationHandle, HubError> {
        let opened = self.router().open(spec).await?;
        self.opened_handle(opened)
    }

    /// The initiator's handle on a conversation just opened, or [`HubError::Rejected`]
    /// when its handshake ended it.
    fn opened_handle(&self, opened: Opened) -> Result<ConversationHandle, HubError> {
        if opened.conversation.status().is_terminal() {
            let reason = match opened.conversation.status() {
                colloquy_core::Status::Failed { reason } => reason.clone(),
                other => other.to_string(),
            };
            return Err(HubError::Rejected {
                conversation: opened.conversation.id(),
                module: opened.responder,
                reason,
            });
        }
        Ok(ConversationHandle::new(
            self.clone(),
            opened.conversation.id(),
            opened.conversation.initiator().clone(),
            opened.conversation.participants().to_vec(),
            Some(opened.outcome),
        ))
    }

    /// Opens a conversation and sends its first message, from the initiator to `target`:
    /// [`start_conversation`](Self::start_conversation) then
    /// [`send_with`](ConversationHandle::send_with), with one store write fewer (the
    /// handshake's outcome is stored by the request's write; see
    /// [`Router::open_and_route`](colloquy_router::Router::open_and_route)). For a conversation opened to send one message, as an
    /// A2A `SendMessage` without a `contextId` does.
    ///
    /// The outer result is the opening's: a rejection is [`HubError::Rejected`] and sends
    /// nothing. The inner one is the exchange's, as `send_with` returns it.
    ///
    /// ```
    /// # use colloquy_runtime::{
    /// #     async_trait, ConversationSpec, Hub, MessageKind, Module, ModuleError, ModuleInfo,
    /// #     Response, RouteOptions, Turn,
    /// # };
    /// # struct Echo;
    /// # #[async_trait]
    /// # impl Module for Echo {
    /// #     fn info(&self) -> ModuleInfo { ModuleInfo::new("echo".parse().unwrap()) }
    /// #     async fn handle(&self, turn: Turn) -> Result<Response, ModuleError> {
    /// #         Ok(Response::reply(turn.message.content.clone()))
    /// #     }
    /// # }
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let hub = Hub::builder().memory().build().await?;
    /// hub.register(Echo).await?;
    /// hub.register_callers(&["client".parse()?], "a caller").await?;
    /// let spec = ConversationSpec::between("client", "echo")?;
    /// let (conversation, sent) = hub
    ///     .start_conversation_and_send(
    ///         spec,
    ///         "echo".parse()?,
    ///         MessageKind::Request,
    ///         "hi",
    ///         RouteOptions::default(),
    ///     )
    ///     .await?;
    /// assert_eq!(sent?.request.turn, 1);
    /// // Three writes, not four: created (version 0), the handshake's outcome with the
    /// // request (1), the reply (2).
    /// assert_eq!(conversation.state().await?.version(), 2);
    /// # Ok(()) }
    /// ```
    pub async fn start_conversation_and_send(
        &self,
        spec: ConversationSpec,
        target: ModuleName,
        kind: MessageKind,
        content: impl Into<Value>,
        options: RouteOptions,
    ) -> Result<(ConversationHandle, Result<Exchange, HubError>), HubError> {
        let Some(initiator) = spec.participants.first().cloned() else {
            return Err(colloquy_core::CoreError::TooFewParticipants { count: 0 }.into());
        };
        let draft = Draft::new(initiator, target, kind, content.into());
        let first = self.router().open_and_route(spec, draft, options).await?;
        let handle = self.opened_handle(first.opened)?;
        // The router routes exactly when the handshake left the conversation active, which
        // `opened_handle` has just checked; were it otherwise, the send did not happen.
        let exchange = match first.exchange {
            Some(sent) => sent.map_err(HubError::from),
            None => Err(HubError::Route(
                colloquy_router::RouteError::UnknownConversation {
                    conversation: handle.id(),
                },
            )),
        };
        if let Ok(exchange) = &exchange {
            handle.learn(exchange);
        }
        Ok((handle, exchange))
    }

    /// A handle on an existing conversation (for example one a previous process started),
    /// speaking as `speaker`, which must be a participant.
    pub async fn conversation(
        &self,
        id: ConversationId,
        speaker: ModuleName,
    ) -> Result<ConversationHandle, HubError> {
        let conversation = self.router().conversation(id).await?;
        if !conversation.is_participant(&speaker) {
            return Err(colloquy_core::CoreError::NotParticipant {
                conversation: id,
                module: speaker,
                participants: conversation.participants().to_vec(),
            }
            .into());
        }
        Ok(ConversationHandle::new(
            self.clone(),
            id,
            speaker,
            conversation.participants().to_vec(),
            None,
        ))
    }

    /// Runs `body` in a new conversation that always ends: Completed when `body` returns
    /// `Ok`, Failed (with the error) when it returns `Err`, and Failed if `body` panics or
    /// is cancelled.
    pub async fn scoped<T, F, Fut>(&self, spec: ConversationSpec, body: F) -> Result<T, HubError>
    where
        F: FnOnce(ConversationHandle) -> Fut,
        Fut: Future<Output = Result<T, HubError>>,
    {
        let handle = self.start_conversation(spec).await?;
        let mut guard = EndOnDrop {
            handle: Some(handle.clone()),
        };
        let result = body(handle.clone()).await;
        guard.handle = None;
        let ended = match &result {
            Ok(_) => handle.end().await,
            Err(e) => handle.fail(e.to_string()).await,
        };
        match ended {
            // The body may have ended the conversation itself.
            Ok(_) | Err(HubError::Refused(_)) => {}
            Err(e) if result.is_ok() => return Err(e),
            Err(e) => warn!(error = %e, "could not fail the scoped conversation"),
        }
        result
    }

    /// Sends `content` from `from` to every other module that declares `capability`, each
    /// in its own short conversation (Inform intent, ended afterwards), all at once. One
    /// result per module, sorted by module name.
    pub async fn broadcast(
        &self,
        from: &ModuleName,
        capability: &Capability,
        content: Value,
    ) -> Result<Vec<BroadcastReply>, HubError> {
        // Every module the hub can reach: its own, and those other hubs of its cluster host.
        let mut targets: Vec<ModuleName> = self
            .reachable_modules()
            .iter()
            .filter(|info| info.capabilities.contains(capability))
            .map(|info| info.name.clone())
            .filter(|name| name != from)
            .collect();
        targets.sort();
        if targets.is_empty() {
            return Err(HubError::NoModuleWithCapability {
                capability: capability.to_string(),
            });
        }
        let mut tasks = tokio::task::JoinSet::new();
        for target in targets {
            let hub = self.clone();
            let spec = ConversationSpec::new(from.clone(), [target.clone()]).intent(Intent::Inform);
            let content = content.clone();
            tasks.spawn(async move {
                let result = hub
                    .scoped(
                        spec,
                        |conv| async move { Ok(conv.send(content).await?.reply) },
                    )
                    .await;
                BroadcastReply {
                    module: target,
                    result,
                }
            });
        }
        let mut replies = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            // Each task contains its module call's panics, so joining cannot fail unless
            // the runtime is shutting down; such a task is simply missing from the result.
            if let Ok(reply) = joined {
                replies.push(reply);
            }
        }
        replies.sort_by(|a, b| a.module.cmp(&b.module));
        Ok(replies)
    }

    /// Routes with per-call options (used by handles).
    pub(crate) async fn route(
        &self,
        id: ConversationId,
        draft: colloquy_core::Draft,
        options: RouteOptions,
    ) -> Result<colloquy_router::Exchange, HubError> {
        Ok(self.router().route(id, draft, options).await?)
    }
}

/// Fails a scoped conversation whose body panicked or was dropped before finishing.
struct EndOnDrop {
    handle: Option<ConversationHandle>,
}

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        let Some(handle) = self.handle.take() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = handle
                    .fail("the scope ended before finishing (panic or cancellation)")
                    .await;
            });
        }
    }
}

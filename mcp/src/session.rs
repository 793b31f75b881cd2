//! [`McpSession`]: one MCP client's session with the hub: who it speaks as, and the
//! protocol's requests answered with the tools and resources.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex, PoisonError},
};

use colloquy_runtime::{ConversationId, ModuleName};
use rmcp::{
    model::{
        CallToolRequestParams, CallToolResponse, Implementation, ListResourceTemplatesResult,
        ListResourcesResult, ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams,
        ReadResourceResponse, ResourceUpdatedNotificationParam, ServerCapabilities, ServerConfig,
        SubscribeRequestParams, SubscriptionFilter, UnsubscribeRequestParams,
    },
    service::{RequestContext, SubscriptionContext},
    ErrorData, RoleServer, ServerHandler,
};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::{resources, server::CallerOf, tools, McpServer};

/// One client's session: it speaks as one participant (stdio), or as the participant each
/// HTTP call's token names.
#[derive(Debug, Clone)]
pub struct McpSession {
    server: Arc<McpServer>,
    /// The participant of a stdio session; `None` over HTTP, where each call says.
    fixed: Option<ModuleName>,
    /// The transcripts this session subscribed to with `resources/subscribe`, and the
    /// follower that announces their updates (stopped with the session).
    subscriptions: Arc<Subscriptions>,
}

#[derive(Debug, Default)]
struct Subscriptions {
    wanted: Mutex<HashSet<ConversationId>>,
    follower: Mutex<Option<DropGuard>>,
    /// The hub's events, subscribed to when a `subscriptions/listen` filter is accepted:
    /// before the client is told its subscription stands, so that a turn it sends right
    /// after that cannot be stored before anyone listens. Its `listen` takes one.
    listening: Mutex<std::collections::VecDeque<EventReceiver>>,
}

type EventReceiver = tokio::sync::broadcast::Receiver<colloquy_runtime::ConversationEvent>;

impl Subscriptions {
    fn wants(&self, id: ConversationId) -> bool {
        self.wanted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&id)
    }
}

impl McpSession {
    pub(crate) fn new(server: Arc<McpServer>, fixed: Option<ModuleName>) -> Self {
        Self {
            server,
            fixed,
            subscriptions: Arc::default(),
        }
    }

    /// The participant this request speaks as.
    fn caller(&self, context: &RequestContext<RoleServer>) -> Result<ModuleName, ErrorData> {
        if let Some(caller) = &self.fixed {
            return Ok(caller.clone());
        }
        context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<CallerOf>())
            .map(|CallerOf(caller)| caller.clone())
            .ok_or_else(|| {
                ErrorData::invalid_request(
                    "the call carries no caller: serve the session through McpServer::router",
                    None,
                )
            })
    }
}

impl ServerHandler for McpSession {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_resources_subscribe()
                .build(),
        )
        .with_server_info(
            Implementation::new("colloquy", env!("CARGO_PKG_VERSION")).with_title("colloquy hub"),
        )
        .with_instructions(
            "colloquy is a hub where modules (agents, services) hold durable, turn-ordered \
             conversations. list_modules says whom you can address; start_conversation opens \
             a conversation with them; send delivers your content to a module and returns its \
             reply, both stored as turns; history and the colloquy://conversations/{id} \
             resource read a transcript; end_conversation closes it.",
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools::definitions()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if !tools::known(&request.name) {
            return Err(ErrorData::invalid_params(
                format!("no tool named {:?}; tools/list names them", request.name),
                None,
            ));
        }
        let caller = self.caller(&context)?;
        Ok(tools::call(
            &self.server,
            &caller,
            &request.name,
            request.arguments,
            context.ct.clone(),
        )
        .await
        .into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let caller = self.caller(&context)?;
        resources::list(&self.server, &caller)
            .await
            .map_err(|e| ErrorData::internal_error(e, None))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(resources::templates())
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let caller = self.caller(&context)?;
        resources::read(&self.server, &caller, &request.uri)
            .await
            .map(Into::into)
            .map_err(|e| ErrorData::resource_not_found(e, None))
    }

    /// Legacy (before 2026-07-28) subscriptions: a transcript subscribed to is announced
    /// (`notifications/resources/updated`) at each new turn or change of state.
    #[allow(deprecated)]
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        if self.fixed.is_none() {
            // Over stateless HTTP no stream outlives the call: a subscription would never
            // be told anything. Say so instead of accepting it.
            return Err(ErrorData::invalid_request(
                "resources/subscribe needs a session; over HTTP subscribe with subscriptions/listen (protocol 2026-07-28), or speak over stdio",
                None,
            ));
        }
        let caller = self.caller(&context)?;
        let id = resources::conversation_of(&request.uri).ok_or_else(|| {
            ErrorData::invalid_params(
                format!(
                    "{} is not a conversation's transcript; only those change",
                    request.uri
                ),
                None,
            )
        })?;
        self.subscriptions
            .wanted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id);
        let mut follower = self
            .subscriptions
            .follower
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if follower.is_none() {
            let stop = CancellationToken::new();
            *follower = Some(stop.clone().drop_guard());
            // Subscribed now, before this request is answered: a turn stored right after
            // the answer is heard of.
            let events = self.server.hub.subscribe();
            let subscriptions = Arc::downgrade(&self.subscriptions);
            let peer = context.peer.clone();
            tokio::spawn(async move {
                let wanted = |id| subscriptions.upgrade().is_some_and(|s| s.wants(id));
                let announce = |uri: String| {
                    let peer = peer.clone();
                    async move {
                        peer.notify_resource_updated(ResourceUpdatedNotificationParam::new(uri))
                            .await
                            .is_ok()
                    }
                };
                tokio::select! {
                    () = resources::follow(events, &caller, wanted, announce) => {}
                    () = stop.cancelled() => {}
                }
            });
        }
        Ok(())
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        if let Some(id) = resources::conversation_of(&request.uri) {
            self.subscriptions
                .wanted
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
        }
        Ok(())
    }

    /// Subscriptions of protocol 2026-07-28 (`subscriptions/listen`): the transcripts of
    /// the filter are accepted; the caller hears only of its own conversations.
    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        let transcripts: Vec<String> = requested
            .resource_subscriptions
            .iter()
            .flatten()
            .filter(|uri| resources::conversation_of(uri).is_some())
            .cloned()
            .collect();
        let mut accepted = SubscriptionFilter::new();
        accepted.resource_subscriptions = Some(transcripts);
        self.subscriptions
            .listening
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(self.server.hub.subscribe());
        Some(accepted)
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        // The events subscribed to when the filter was accepted (any of them: each was
        // subscribed to before its subscription was acknowledged).
        let events = self
            .subscriptions
            .listening
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
            .unwrap_or_else(|| self.server.hub.subscribe());
        let caller = self.caller(context.request_context())?;
        let wanted: HashSet<ConversationId> = context
            .accepted()
            .resource_subscriptions
            .iter()
            .flatten()
            .filter_map(|uri| resources::conversation_of(uri))
            .collect();
        let sink = context.sink().clone();
        let announce = |uri: String| {
            let sink = sink.clone();
            async move { sink.notify_resource_updated(uri).await.is_ok() }
        };
        tokio::select! {
            () = resources::follow(events, &caller, |id| wanted.contains(&id), announce) => {}
            () = context.cancelled() => {}
        }
        Ok(())
    }
}

//! Turns another hub routed here: the sender's hub stored the request and sends the turn
//! to this hub, which hosts the module; the module runs under the same call discipline as
//! a local turn, and the answer goes back unstored (the sender stores it).

use colloquy_registry::{Registered, Response, Turn};
use tracing::Instrument;

use super::{call::Work, Router};
use crate::RouteError;

impl Router {
    /// Runs `turn` on `target`, a module registered in this process, for another hub that
    /// stored the request and will store the answer: with the turn's deadline, a panic
    /// contained ([`RouteError::HandlerPanicked`]), counted as in flight so that
    /// [`shutdown`](Self::shutdown) drains it (refused with [`RouteError::ShuttingDown`]
    /// once shutdown began), and observed like a local handler. Nothing is written: the
    /// store is the sender's to write.
    pub async fn host(&self, target: &Registered, turn: Turn) -> Result<Response, RouteError> {
        let _flight = self.enter()?;
        let conversation = turn.conversation.id;
        let module = target.info.name.clone();
        let deadline = turn.deadline;
        let span = tracing::debug_span!(
            "hosted_turn",
            conversation_id = %conversation,
            turn = turn.message.turn,
            source = %turn.message.source,
            target = %module,
        );
        async {
            let work = if target.delivery.is_inline() {
                Work::Inline(target.module.handle(turn))
            } else {
                let handler = std::sync::Arc::clone(&target.module);
                Work::Task(Box::pin(
                    async move { handler.handle(turn).await }.instrument(tracing::Span::current()),
                ))
            };
            let started = self.observers.any().then(|| self.clock.instant());
            let called = self.call(conversation, &module, deadline, None, work).await;
            if let Some(started) = started {
                let elapsed = started.elapsed();
                self.observers.each(|o| o.handled(&module, elapsed));
            }
            called?.map_err(|e| RouteError::HandlerFailed {
                conversation,
                module: module.clone(),
                message: e.message().to_owned(),
            })
        }
        .instrument(span)
        .await
    }
}

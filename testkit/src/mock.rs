//! [`mock`]: a module whose turns the test answers by hand, tower-test style: the test
//! receives each turn through a [`MockHandle`] and decides what the module says.

use async_trait::async_trait;
use colloquy_core::{ModuleInfo, ModuleName};
use colloquy_registry::{Module, ModuleError, Response, Turn};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

/// A module that hands each turn to its [`MockHandle`] and answers what the test says.
#[derive(Debug)]
pub struct MockModule {
    info: ModuleInfo,
    turns: mpsc::UnboundedSender<PendingTurn>,
}

/// The test's end of a [`MockModule`]: takes the turns the module receives.
///
/// Dropped with a turn the test never took, it fails the test (unless the test is
/// already failing): a turn nobody looked at is a test that checks less than it seems.
#[derive(Debug)]
pub struct MockHandle {
    name: ModuleName,
    turns: mpsc::UnboundedReceiver<PendingTurn>,
}

/// One turn waiting for the test's answer. Dropping it unanswered fails the handler's
/// call with a [`ModuleError`].
#[derive(Debug)]
pub struct PendingTurn {
    /// The turn as the module received it.
    pub turn: Turn,
    answer: oneshot::Sender<Result<Response, ModuleError>>,
}

/// A mock module named `name` and the handle that answers its turns.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use colloquy_testkit::{mock, modules::Echo, TestHub};
/// let hub = TestHub::memory().await?;
/// let (module, mut handle) = mock("planner".parse()?);
/// let conv = hub.converse(Echo::new("client".parse()?), module).await?;
/// let sending = tokio::spawn(async move { conv.send("plan it").await });
/// let pending = handle.next_turn().await.expect("a turn");
/// assert_eq!(pending.turn.message.content, "plan it");
/// pending.reply("planned");
/// let exchange = sending.await??;
/// assert_eq!(exchange.reply.unwrap().content, "planned");
/// # Ok(()) }
/// ```
pub fn mock(name: ModuleName) -> (MockModule, MockHandle) {
    let (sender, receiver) = mpsc::unbounded_channel();
    (
        MockModule {
            info: ModuleInfo::new(name.clone()).with_description("answered by the test"),
            turns: sender,
        },
        MockHandle {
            name,
            turns: receiver,
        },
    )
}

#[async_trait]
impl Module for MockModule {
    fn info(&self) -> ModuleInfo {
        self.info.clone()
    }

    async fn handle(&self, turn: Turn) -> Result<Response, ModuleError> {
        let (answer, answered) = oneshot::channel();
        self.turns
            .send(PendingTurn { turn, answer })
            .map_err(|_| ModuleError::new("the mock's handle was dropped"))?;
        answered
            .await
            .unwrap_or_else(|_| Err(ModuleError::new("the test dropped the turn unanswered")))
    }
}

impl MockHandle {
    /// The next turn the module receives, waiting for it; `None` once the module is gone.
    pub async fn next_turn(&mut self) -> Option<PendingTurn> {
        self.turns.recv().await
    }

    /// The next turn if one is waiting now.
    pub fn try_next_turn(&mut self) -> Option<PendingTurn> {
        self.turns.try_recv().ok()
    }
}

impl Drop for MockHandle {
    #[allow(clippy::panic)] // Failing the test that left a turn unexamined is the point.
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        if let Ok(pending) = self.turns.try_recv() {
            panic!(
                "mock module {} received turn {} ({}) that the test never took",
                self.name, pending.turn.message.turn, pending.turn.message.content
            );
        }
    }
}

impl PendingTurn {
    /// Answers with `response`.
    pub fn respond(self, response: Response) {
        // The handler's call may have timed out meanwhile; then nobody listens.
        let _ = self.answer.send(Ok(response));
    }

    /// Answers with a plain reply.
    pub fn reply(self, content: impl Into<Value>) {
        self.respond(Response::reply(content));
    }

    /// True once nobody waits for the answer any more: the handler's call was dropped
    /// (its deadline passed, its caller cancelled it, or the hub shut down).
    pub fn is_abandoned(&self) -> bool {
        self.answer.is_closed()
    }

    /// Fails the handler's call with `message`.
    pub fn fail(self, message: impl Into<String>) {
        let _ = self.answer.send(Err(ModuleError::new(message)));
    }
}

//! Ready-made modules for tests: echo, scripted replies, slow, failing, panicking, silent
//! and recording modules.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use async_trait::async_trait;
use colloquy_core::{HandshakeOutcome, Message, ModuleInfo, ModuleName};
use colloquy_registry::{Invitation, Module, ModuleError, Response, Turn};
use serde_json::Value;

/// Replies with the content it received.
#[derive(Debug, Clone)]
pub struct Echo {
    info: ModuleInfo,
}

impl Echo {
    /// An echo module named `name` with capability `echo`.
    pub fn new(name: ModuleName) -> Self {
        let info = ModuleInfo::new(name).with_description("replies with what it received");
        let info = match "echo".parse() {
            Ok(capability) => info.with_capability(capability),
            Err(_) => info,
        };
        Self { info }
    }

    /// The same module with more (or other) declared information.
    pub fn with_info(info: ModuleInfo) -> Self {
        Self { info }
    }
}

#[async_trait]
impl Module for Echo {
    fn info(&self) -> ModuleInfo {
        self.info.clone()
    }

    async fn handle(&self, turn: Turn) -> Result<Response, ModuleError> {
        Ok(Response::reply(turn.message.content.clone()))
    }
}

/// Gives a fixed sequence of responses, one per turn it receives; once they run out it
/// fails each turn with "script exhausted".
#[derive(Debug)]
pub struct Scripted {
    name: ModuleName,
    script: Mutex<VecDeque<Response>>,
    invite: HandshakeOutcome,
}

impl Scripted {
    /// A module named `name` that answers with `responses` in order.
    pub fn new(name: ModuleName, responses: impl IntoIterator<Item = Response>) -> Self {
        Self {
            name,
            script: Mutex::new(responses.into_iter().collect()),
            invite: HandshakeOutcome::Accept,
        }
    }

    /// Answers invitations with `outcome` instead of accepting.
    pub fn answering_invites_with(mut self, outcome: HandshakeOutcome) -> Self {
        self.invite = outcome;
        self
    }
}

#[async_trait]
impl Module for Scripted {
    fn info(&self) -> ModuleInfo {
        ModuleInfo::new(self.name.clone()).with_description("answers from a script")
    }

    async fn on_invite(&self, _invitation: &Invitation) -> HandshakeOutcome {
        self.invite.clone()
    }

    async fn handle(&self, _turn: Turn) -> Result<Response, ModuleError> {
        self.script
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
            .ok_or_else(|| ModuleError::new("script exhausted"))
    }
}

/// Waits `delay` (on tokio's clock, so paused-time tests take no real time), then echoes.
#[derive(Debug, Clone)]
pub struct Slow {
    name: ModuleName,
    delay: Duration,
}

impl Slow {
    /// A module named `name` that takes `delay` per turn.
    pub fn new(name: ModuleName, delay: Duration) -> Self {
        Self { name, delay }
    }
}

#[async_trait]
impl Module for Slow {
    fn info(&self) -> ModuleInfo {
        ModuleInfo::new(self.name.clone()).with_description("answers after a delay")
    }

    async fn handle(&self, turn: Turn) -> Result<Response, ModuleError> {
        tokio::time::sleep(self.delay).await;
        Ok(Response::reply(turn.message.content.clone()))
    }
}

/// Fails every turn with `message`.
#[derive(Debug, Clone)]
pub struct Failing {
    info: ModuleInfo,
    message: String,
}

impl Failing {
    /// A module named `name` whose every turn fails with `message`.
    pub fn new(name: ModuleName, message: impl Into<String>) -> Self {
        Self {
            info: ModuleInfo::new(name).with_description("fails every turn"),
            message: message.into(),
        }
    }

    /// Declares `capability` too (so broadcasts reach it).
    pub fn with_capability(mut self, capability: colloquy_core::Capability) -> Self {
        self.info = self.info.with_capability(capability);
        self
    }
}

#[async_trait]
impl Module for Failing {
    fn info(&self) -> ModuleInfo {
        self.info.clone()
    }

    async fn handle(&self, _turn: Turn) -> Result<Response, ModuleError> {
        Err(ModuleError::new(self.message.clone()))
    }
}

/// Panics on every turn with `message` (to prove panics are contained).
#[derive(Debug, Clone)]
pub struct Panicking {
    name: ModuleName,
    message: String,
}

impl Panicking {
    /// A module named `name` that panics with `message`.
    pub fn new(name: ModuleName, message: impl Into<String>) -> Self {
        Self {
            name,
            message: message.into(),
        }
    }
}

#[async_trait]
impl Module for Panicking {
    fn info(&self) -> ModuleInfo {
        ModuleInfo::new(self.name.clone()).with_description("panics on every turn")
    }

    #[allow(clippy::panic)] // Panicking is this test double's whole purpose.
    async fn handle(&self, _turn: Turn) -> Result<Response, ModuleError> {
        panic!("{}", self.message)
    }
}

/// Never answers (a hung module); only its deadline ends the turn.
#[derive(Debug, Clone)]
pub struct Silent {
    name: ModuleName,
}

impl Silent {
    /// A module named `name` that never returns from a turn.
    pub fn new(name: ModuleName) -> Self {
        Self { name }
    }
}

#[async_trait]
impl Module for Silent {
    fn info(&self) -> ModuleInfo {
        ModuleInfo::new(self.name.clone()).with_description("never answers")
    }

    async fn handle(&self, _turn: Turn) -> Result<Response, ModuleError> {
        std::future::pending().await
    }
}

/// Records every turn it receives, then answers with a fixed response (default: echo).
#[derive(Debug, Clone)]
pub struct Recorder {
    name: ModuleName,
    turns: Arc<Mutex<Vec<Turn>>>,
    reply: Option<Value>,
}

/// A view on what a [`Recorder`] received; stays valid after the recorder is registered.
#[derive(Debug, Clone)]
pub struct Recording {
    turns: Arc<Mutex<Vec<Turn>>>,
}

impl Recording {
    /// Every turn received so far, in order.
    pub fn turns(&self) -> Vec<Turn> {
        self.turns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The messages received so far.
    pub fn messages(&self) -> Vec<Arc<Message>> {
        self.turns().into_iter().map(|t| t.message).collect()
    }

    /// How many turns were received.
    pub fn len(&self) -> usize {
        self.turns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// True if nothing was received.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Recorder {
    /// A recorder named `name` that echoes, and the view on what it receives.
    pub fn new(name: ModuleName) -> (Self, Recording) {
        let turns = Arc::new(Mutex::new(Vec::new()));
        (
            Self {
                name,
                turns: Arc::clone(&turns),
                reply: None,
            },
            Recording { turns },
        )
    }

    /// Replies with `content` instead of echoing.
    pub fn replying(mut self, content: Value) -> Self {
        self.reply = Some(content);
        self
    }
}

#[async_trait]
impl Module for Recorder {
    fn info(&self) -> ModuleInfo {
        ModuleInfo::new(self.name.clone()).with_description("records what it receives")
    }

    async fn handle(&self, turn: Turn) -> Result<Response, ModuleError> {
        let reply = self
            .reply
            .clone()
            .unwrap_or_else(|| turn.message.content.clone());
        self.turns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(turn);
        Ok(Response::reply(reply))
    }
}

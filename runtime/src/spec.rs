//! [`ConversationSpec`]: what to open.

use std::time::Duration;

use colloquy_core::{Intent, ModuleName};
use serde_json::{Map, Value};

use crate::HubError;

/// What [`Hub::start_conversation`](crate::Hub::start_conversation) opens.
///
/// ```
/// use colloquy_runtime::ConversationSpec;
/// use colloquy_core::Intent;
/// let spec = ConversationSpec::between("extractor", "validator")?
///     .intent(Intent::Negotiate)
///     .max_turns(12);
/// assert_eq!(spec.participants().len(), 2);
/// # Ok::<(), colloquy_runtime::HubError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationSpec {
    pub(crate) participants: Vec<ModuleName>,
    pub(crate) intent: Intent,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) max_turns: Option<u64>,
    pub(crate) context: Map<String, Value>,
    pub(crate) metadata: Map<String, Value>,
}

impl ConversationSpec {
    /// A conversation opened by `initiator` with `others`.
    pub fn new(initiator: ModuleName, others: impl IntoIterator<Item = ModuleName>) -> Self {
        let mut participants = vec![initiator];
        participants.extend(others);
        Self {
            participants,
            intent: Intent::Collaborate,
            idle_timeout: None,
            max_turns: None,
            context: Map::new(),
            metadata: Map::new(),
        }
    }

    /// A two-party conversation, parsing both names.
    pub fn between(initiator: &str, other: &str) -> Result<Self, HubError> {
        Ok(Self::new(initiator.parse()?, [other.parse()?]))
    }

    /// Sets the intent (default Collaborate).
    pub fn intent(mut self, intent: Intent) -> Self {
        self.intent = intent;
        self
    }

    /// Overrides the hub's idle timeout for this conversation.
    pub fn idle_timeout(mut self, idle_timeout: Duration) -> Self {
        self.idle_timeout = Some(idle_timeout);
        self
    }

    /// Limits the number of turns.
    pub fn max_turns(mut self, max_turns: u64) -> Self {
        self.max_turns = Some(max_turns);
        self
    }

    /// Sets the initial shared context.
    pub fn context(mut self, context: Map<String, Value>) -> Self {
        self.context = context;
        self
    }

    /// Sets metadata.
    pub fn metadata(mut self, metadata: Map<String, Value>) -> Self {
        self.metadata = metadata;
        self
    }

    /// Participants, initiator first.
    pub fn participants(&self) -> &[ModuleName] {
        &self.participants
    }
}

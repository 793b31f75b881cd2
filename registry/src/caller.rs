//! [`Caller`]: a participant that speaks through a front (A2A, MCP) on behalf of clients
//! outside the hub, and is never delivered a turn.

use async_trait::async_trait;
use colloquy_core::{ModuleInfo, ModuleName};

use crate::{Module, ModuleError, Response, Turn};

/// A participant standing for the clients of a network front: they open conversations and
/// send requests through the front; a turn addressed to the participant fails with a
/// message that says to answer it with a reply instead. Its info carries the caller
/// capability ([`ModuleInfo::is_caller`]), so listings of modules leave it out.
///
/// ```
/// use colloquy_registry::{Caller, Module};
/// let caller = Caller::new("mcp-client".parse()?, "MCP clients of this hub");
/// assert!(caller.info().is_caller());
/// # Ok::<(), colloquy_core::CoreError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Caller {
    info: ModuleInfo,
}

impl Caller {
    /// The participant `name`, described as `description` (who speaks through it).
    pub fn new(name: ModuleName, description: impl Into<String>) -> Self {
        Self {
            info: ModuleInfo::caller(name, description),
        }
    }
}

#[async_trait]
impl Module for Caller {
    fn info(&self) -> ModuleInfo {
        self.info.clone()
    }

    async fn handle(&self, _turn: Turn) -> Result<Response, ModuleError> {
        Err(ModuleError::new(format!(
            "{} speaks through a network front and cannot be addressed; answer it with a reply",
            self.info.name
        )))
    }
}

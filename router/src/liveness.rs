//! [`WriterLiveness`]: the one question the router asks of a cluster.

use colloquy_core::ConversationId;
use colloquy_storage::StoreError;

/// The router's port to a cluster of hubs sharing one database: whether the writer of a
/// conversation's exchange in progress may still be alive. A router without one (a store
/// only this process writes) treats every exchange it did not start as a dead writer's.
///
/// The cluster (`colloquy-cluster`) answers from the members' table; the router asks only
/// when a conversation it loaded is busy with an exchange it did not start.
#[async_trait::async_trait]
pub trait WriterLiveness: Send + Sync {
    /// True while the exchange in progress in `conversation` belongs to another writer that
    /// may still be alive (not fenced): the router waits for it to end rather than starting
    /// its own. False once that writer is fenced: its exchange is taken over.
    async fn writer_may_be_alive(&self, conversation: ConversationId) -> Result<bool, StoreError>;
}

//! [`TestHub`]: a hub on memory or on a temporary SQLite file that is removed on drop.

use std::{ops::Deref, path::PathBuf};

use colloquy_registry::Module;
use colloquy_runtime::{ConversationHandle, ConversationSpec, Hub, HubBuilder, HubError};

/// A [`Hub`] for tests. Derefs to the hub; a SQLite file lives in a temporary directory
/// that is removed when the `TestHub` is dropped, so tests never share or leave files.
#[derive(Debug)]
pub struct TestHub {
    hub: Hub,
    dir: Option<tempfile::TempDir>,
}

impl TestHub {
    /// A hub on a memory store with default settings.
    pub async fn memory() -> Result<Self, HubError> {
        Self::memory_with(|b| b).await
    }

    /// A hub on a memory store, configured by `configure`.
    pub async fn memory_with(
        configure: impl FnOnce(HubBuilder) -> HubBuilder,
    ) -> Result<Self, HubError> {
        let hub = configure(Hub::builder().memory()).build().await?;
        Ok(Self { hub, dir: None })
    }

    /// A hub on a new SQLite file in a temporary directory.
    pub async fn sqlite() -> Result<Self, HubError> {
        Self::sqlite_with(|b| b).await
    }

    /// A hub on a new SQLite file, configured by `configure` (whose store choice is
    /// overridden by the temporary file).
    pub async fn sqlite_with(
        configure: impl FnOnce(HubBuilder) -> HubBuilder,
    ) -> Result<Self, HubError> {
        let dir = tempfile::tempdir().map_err(|e| {
            HubError::Store(colloquy_storage::StoreError::Backend {
                backend: "sqlite",
                message: format!("cannot create a temporary directory: {e}"),
            })
        })?;
        let path = dir.path().join("test.db");
        let hub = configure(Hub::builder()).sqlite(path).build().await?;
        Ok(Self {
            hub,
            dir: Some(dir),
        })
    }

    /// Registers `initiator` and `other` and opens a conversation between them, the
    /// set-up most tests start from.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use colloquy_testkit::{modules::Echo, TestHub};
    /// let hub = TestHub::memory().await?;
    /// let conv = hub
    ///     .converse(Echo::new("a".parse()?), Echo::new("b".parse()?))
    ///     .await?;
    /// assert_eq!(conv.send("hi").await?.request.turn, 1);
    /// # Ok(()) }
    /// ```
    pub async fn converse(
        &self,
        initiator: impl Module,
        other: impl Module,
    ) -> Result<ConversationHandle, HubError> {
        let spec = ConversationSpec::new(initiator.info().name, [other.info().name]);
        self.hub.register(initiator).await?;
        self.hub.register(other).await?;
        self.hub.start_conversation(spec).await
    }

    /// The database file, for a SQLite hub.
    pub fn path(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.path().join("test.db"))
    }

    /// The hub.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Takes the temporary directory out, so the file outlives this `TestHub` (for tests
    /// that reopen it with another hub).
    pub fn keep_dir(&mut self) -> Option<tempfile::TempDir> {
        self.dir.take()
    }
}

impl Deref for TestHub {
    type Target = Hub;
    fn deref(&self) -> &Hub {
        &self.hub
    }
}

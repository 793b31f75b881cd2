//! [`TestCluster`]: hubs of one process sharing one in-memory store as a cluster.

use std::sync::Arc;

use colloquy_runtime::{Clock, Hub, HubBuilder};
use colloquy_storage::MemoryStore;

/// A cluster of hubs in this process: one [`MemoryStore::cluster`] on the hubs' clock
/// (tokio's, so paused time fences and takes over without waiting), a handle of it per hub.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cluster = colloquy_testkit::TestCluster::new();
/// let a = cluster.hub("a").build().await?;
/// let b = cluster.hub("b").build().await?;
/// assert!(a.in_cluster() && b.in_cluster());
/// assert_eq!(a.members().await.expect("a cluster")?.len(), 2);
/// b.shutdown().await;
/// a.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct TestCluster {
    store: MemoryStore,
}

impl TestCluster {
    /// An empty cluster whose clock starts now.
    pub fn new() -> Self {
        let clock = Clock::system();
        Self {
            store: MemoryStore::cluster(move || clock.now()),
        }
    }

    /// A builder for a hub named `name`, on a handle of its own of the cluster's store
    /// (so that it writes as its own member).
    pub fn hub(&self, name: &str) -> HubBuilder {
        Hub::builder()
            .store(Arc::new(self.store.handle()))
            .member_name(name)
    }

    /// The cluster's store, for what a test does to it directly (a handle writing as no
    /// member).
    pub fn store(&self) -> &MemoryStore {
        &self.store
    }
}

impl Default for TestCluster {
    fn default() -> Self {
        Self::new()
    }
}

//! Hubs sharing one database as one system: the cluster of colloquy.
//!
//! On a store several processes write at once (PostgreSQL, whose store offers
//! [`Membership`](colloquy_storage::Membership)), each hub is a member: it joins with the
//! modules it hosts and the address of its link, heartbeats, fences members that went
//! silent (their writes are refused from then on, whatever they touch), takes over the
//! exchanges a fenced member left unanswered, and leaves at shutdown. Modules other hubs
//! host are found in the [`Cluster::directory`], and a turn to one of them goes to its
//! hub directly: the sender's hub stores the request (that row is the outbox), sends the
//! turn over one multiplexed HTTP/2 connection to the hosting hub, which runs the module
//! through its router's call discipline ([`Router::host`]: deadline, panic containment,
//! drained at shutdown) and answers on the connection; the sender stores the reply. The
//! database sees the same writes as for a same-hub exchange.
//!
//! The database path stays where it earns its place: a hub without a link (an older
//! version during an upgrade), a link that cannot be reached, or a host that went silent
//! mid-call; then the turn is queued as a delivery row that a hub hosting the module
//! claims (see `queue.rs`).
//!
//! ```no_run
//! # async fn run(store: std::sync::Arc<dyn colloquy_storage::ConversationStore>) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use colloquy_cluster::{Cluster, ClusterConfig, LinkConfig};
//! use colloquy_registry::Registry;
//! use colloquy_router::{Clock, Router, RouterConfig};
//!
//! let registry = Arc::new(Registry::new());
//! let config = ClusterConfig::new("hub-a").link(LinkConfig::loopback());
//! // `None` when the store is one process's own (memory, SQLite).
//! if let Some(cluster) = Cluster::bind(store.clone(), registry, Clock::system(), config).await? {
//!     let router = Arc::new(Router::new(store, cluster.directory(), RouterConfig::default(), Clock::system()));
//!     cluster.start(&router).await;
//!     // ... the hub runs ...
//!     router.shutdown(std::time::Duration::from_secs(10)).await;
//!     cluster.stop().await;
//! }
//! # Ok(()) }
//! ```
//!
//! # What this crate deliberately does not do
//!
//! - **No storage of turns.** Requests and replies are written by the sender's router
//!   only; the hosting hub writes nothing for a turn it runs.
//! - **No framing of its own.** The link is HTTP/2 from hyper (h2c: hubs sit on a private
//!   network; encrypt it below, with WireGuard or a service mesh, where that is not so).
//! - **No clock of its own.** Liveness is judged on the database server's clock; deadlines
//!   travel as what is left of them, never as wall times compared across machines.
//! - **No unauthenticated link off the machine.** A link listening on a non-loopback
//!   address needs the cluster secret ([`ClusterError::SecretRequired`]).

mod cluster;
mod directory;
mod error;
mod history;
mod link;
mod member;
mod queue;
mod wire;

pub use cluster::{Cluster, ClusterConfig, LinkConfig};
pub use error::ClusterError;

#[cfg(doc)]
use colloquy_router::Router;

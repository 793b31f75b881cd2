//! The colloquy runtime: the [`Hub`] you build, register modules with and converse through.
//!
//! A hub wires a store (memory or SQLite), a module [`Registry`](colloquy_registry::Registry)
//! and a [`Router`](colloquy_router::Router) together on tokio, and runs a background reaper
//! that times out idle conversations and evicts cold ones from memory.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use colloquy_runtime::{Hub, ConversationSpec};
//! use colloquy_registry::{Module, ModuleError, Response, Turn};
//! use colloquy_core::ModuleInfo;
//!
//! struct Greeter;
//! #[async_trait::async_trait]
//! impl Module for Greeter {
//!     fn info(&self) -> ModuleInfo { ModuleInfo::new("greeter".parse().unwrap()) }
//!     async fn handle(&self, turn: Turn) -> Result<Response, ModuleError> {
//!         Ok(Response::reply(format!("hello, {}", turn.message.source)))
//!     }
//! }
//! struct Visitor;
//! #[async_trait::async_trait]
//! impl Module for Visitor {
//!     fn info(&self) -> ModuleInfo { ModuleInfo::new("visitor".parse().unwrap()) }
//!     async fn handle(&self, _turn: Turn) -> Result<Response, ModuleError> { Ok(Response::NoReply) }
//! }
//!
//! let hub = Hub::builder().memory().build().await?;
//! hub.register(Greeter).await?;
//! hub.register(Visitor).await?;
//! let conv = hub.start_conversation(ConversationSpec::between("visitor", "greeter")?).await?;
//! let exchange = conv.send("hi").await?;
//! assert_eq!(exchange.request.turn, 1);
//! assert_eq!(exchange.reply.unwrap().content, "hello, visitor");
//! assert_eq!(conv.history(10).await?.len(), 2);
//! conv.end().await?;
//! hub.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # What this crate deliberately does not do
//!
//! - **No routing logic of its own.** Turn order, deadlines, panics and persistence are the
//!   router's; the hub only wires, schedules the reaper and offers handles.
//! - **No unbounded growth.** At most `hot_capacity` conversations stay in memory, each
//!   with a bounded history window; everything else lives in the store.
//! - **No wall-clock sleeps in tests.** Time comes from tokio's clock, so
//!   `tokio::time::pause()` makes idle timeouts, deadlines and the reaper instant.

mod error;
mod handle;
mod hub;
mod spec;
mod stale;

pub use colloquy_router::{
    Clock, Exchange, ReapReport, RouteError, RouteOptions, RouterStats, ShutdownReport,
};
pub use error::HubError;
pub use handle::ConversationHandle;
pub use hub::{BroadcastReply, Health, Hub, HubBuilder};
pub use spec::ConversationSpec;
pub use stale::{find_stale, StaleScan};

//! The colloquy runtime: the [`Hub`] you build, register modules with and converse through.
//!
//! A hub wires a store (memory or SQLite), a module [`Registry`](colloquy_registry::Registry)
//! and a [`Router`](colloquy_router::Router) together on tokio, and runs a background reaper
//! that times out idle conversations and evicts cold ones from memory.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // One crate is enough for a first application.
//! use colloquy_runtime::{
//!     async_trait, ConversationSpec, Hub, Module, ModuleError, ModuleInfo, Response, Turn,
//! };
//!
//! struct Greeter;
//! #[async_trait]
//! impl Module for Greeter {
//!     fn info(&self) -> ModuleInfo { ModuleInfo::new("greeter".parse().unwrap()) }
//!     async fn handle(&self, turn: Turn) -> Result<Response, ModuleError> {
//!         Ok(Response::reply(format!("hello, {}", turn.message.source)))
//!     }
//! }
//! struct Visitor;
//! #[async_trait]
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
mod operator;
mod reader;
mod stale;

pub use colloquy_router::{
    Clock, ConversationEvent, ConversationSpec, Exchange, ExchangeOutcome, ReapReport, RouteError,
    RouteOptions, RouterObserver, RouterStats, ShutdownReport, StoredHook,
};

// One crate for a first application: everything a module, a conversation and its errors
// need, so that `colloquy-runtime` is the only dependency (with `async-trait`, re-exported
// too, for `#[async_trait]` on `Module` impls).
pub use async_trait::async_trait;
pub use colloquy_cluster::LinkConfig;
pub use colloquy_core::{
    Capability, Conversation, ConversationId, CoreError, HandshakeOutcome, Intent, Message,
    MessageId, MessageKind, ModuleInfo, ModuleName, Phase, StateChange, Status, StatusKind,
    Timestamp, MAX_NAME_LEN,
};
pub use colloquy_registry::{
    Caller, ConversationView, Delivery, History, Invitation, Module, ModuleError, Registration,
    RegistryError, Reply, Response, Turn,
};
#[cfg(feature = "postgres")]
pub use colloquy_storage::PostgresOptions;
pub use colloquy_storage::{
    Analytics, AnalyticsTally, ConversationPage, ExchangeTally, ListCursor, ListFilter, Member,
    MemberRecord, MessageRange, ModuleActivity, ModuleExchanges, ModuleRecord, SearchHit,
    SqliteOptions, StatusCounts, StoreError, Synchronous, TextSearch, TimeRange, TurnWriter,
    EXCHANGE_BUCKETS_MS, MAX_PAGE,
};
pub use error::HubError;
pub use handle::ConversationHandle;
pub use hub::{BroadcastReply, Health, Hub, HubBuilder};
pub use operator::{end_conversation, reap_stored};
pub use reader::StoreReader;
pub use stale::{find_stale, StaleScan};

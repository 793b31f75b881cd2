//! The network front of colloquy, both ways: a hub's modules served as A2A agents, so that
//! agents in any language (the Python and TypeScript A2A SDKs) can converse with them, and
//! A2A agents elsewhere registered in a hub as modules ([`RemoteAgent`]).
//!
//! [`A2aServer`] exposes every module the hub can reach as an A2A v1.0 agent over HTTP: its card at
//! `GET /agents/{module}/.well-known/agent-card.json`, its JSON-RPC 2.0 endpoint at
//! `POST /agents/{module}`. The protocol mapping lives in [`mapping`]: `contextId` is the
//! conversation id; one `SendMessage` is one exchange (the request is turn N, the module's
//! reply turn N+1, both stored before the answer goes out) and its task id names that
//! exchange (`<conversation>:<N>`), so `GetTask` finds it in the store after any restart; a
//! retried `messageId` gets the same answer and makes no new turn; a handler failure is a
//! failed task, not an error. A message without a `contextId` (sent or streamed) opens its
//! conversation with the request ([`Hub::start_conversation_and_send`](colloquy_runtime::Hub::start_conversation_and_send)):
//! three writes, not four. The types on the wire are those of `a2a-lf`, the official
//! a2aproject Rust crate for A2A v1.0; clients still on v0.3 call its method names
//! (`message/send`, `message/stream`, `tasks/get`, `tasks/cancel`) with its JSON and get
//! its JSON back. Beside the agents: `GET /healthz` (the hub's health, 200 or 503) and
//! `GET /metrics` (Prometheus text), and every call held to [`Limits`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use colloquy_a2a::{A2aOptions, A2aServer};
//! let hub = colloquy_runtime::Hub::builder().memory().build().await?;
//! let server = A2aServer::new(hub, A2aOptions::new("http://127.0.0.1:8080")?).await?;
//! let app = server.router(); // mount it, or `server.serve(listener)`
//! # drop(app); Ok(()) }
//! ```
//!
//! # What this crate deliberately does not do (yet)
//!
//! - **No routing of its own.** Every message goes through the hub (turn lock, versioned
//!   writes, deadlines); this crate only translates, in both directions.
//! - **No TLS in the client.** [`RemoteAgent`] speaks plain HTTP (agents on a private
//!   network or behind a proxy that terminates TLS).
//! - **Streaming is per exchange.** `SendStreamingMessage` reports the stored request
//!   (submitted, working), then the reply as an artifact and the final status;
//!   `SubscribeToTask` follows an exchange in flight; `CancelTask` stops its handler (the
//!   request stays stored, the turn ends without a reply). A module's partial output is not
//!   streamed: a hub handler answers once.
//! - **Why a task failed or was canceled is remembered in memory** (the last 10,000); after
//!   a restart `GetTask` finds the stored request and says the exchange ended without a
//!   reply.
//! - **Callers are participants, named by bearer tokens** ([`A2aOptions::token`]): a caller
//!   sees and continues only its participant's conversations (another's are "not found").
//!   Without tokens every caller speaks as one participant ([`A2aOptions::caller`]).
//! - **A retried `messageId` is recognised by the store**, through any hub and after a
//!   restart: the request's stored id (and, for a send without `contextId`, the
//!   conversation's) is derived from the caller, the module and the `messageId`
//!   ([`mapping`]), so the store refuses to store it twice and the stored exchange is the
//!   answer. Answers are also remembered in memory (the last 10,000), so a retry to the
//!   same process costs no store read. What is not stored is why a task failed or was
//!   canceled: a retry elsewhere sees the stored request without a reply.

mod error;
mod flight;
mod http;
mod legacy;
pub mod mapping;
mod ops;
mod remote;
mod server;

pub use error::A2aError;
pub use http::serve_until;
pub use ops::Limits;
pub use remote::RemoteAgent;
pub use server::{A2aOptions, A2aServer};

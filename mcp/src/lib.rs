//! colloquy over the Model Context Protocol, both ways: a hub served to LLM applications
//! (desktop assistants, IDEs, agent frameworks) as an MCP server, and MCP servers joined to
//! a hub as modules. Built on `rmcp`, the official Rust SDK of the protocol.
//!
//! - [`McpServer`] serves a hub over stdio (what desktop clients launch: one client, one
//!   participant, [`McpServer::serve_stdio`]) and over Streamable HTTP
//!   ([`McpServer::router`], mounted at `/mcp` by `colloquy serve`). Its tools list the
//!   modules, start a conversation (sending its first message in the same call, if given),
//!   send a turn and wait for the reply, read the history,
//!   end a conversation and find conversations; its resources are the module list
//!   (`colloquy://modules`) and each conversation's transcript
//!   (`colloquy://conversations/{id}`), to which a client can subscribe for live turns.
//! - [`McpModule`] is a module whose capabilities are an MCP server's tools: a turn
//!   `{"tool": NAME, "arguments": {...}}` calls the tool and its result is the reply; a
//!   tool error is a failed turn with the tool's message. The server is a child process
//!   ([`McpModule::spawn`], restarted when it dies) or a Streamable HTTP endpoint
//!   ([`McpModule::connect`]).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use colloquy_mcp::{McpOptions, McpServer};
//! let hub = colloquy_runtime::Hub::builder().memory().build().await?;
//! let server = McpServer::new(hub, McpOptions::new()?).await?;
//! // stdio: the process speaks MCP on its standard input and output until the client leaves.
//! server.serve_stdio().await?;
//! # Ok(()) }
//! ```
//!
//! # What this crate deliberately does not do
//!
//! - **No routing of its own.** Every turn goes through the hub (turn lock, versioned
//!   writes, deadlines); this crate only translates.
//! - **Callers are participants.** Over HTTP a bearer token names the participant
//!   ([`McpOptions::token`]); over stdio the process speaks as one participant. A caller
//!   sees, continues and reads only its own participant's conversations; another's are
//!   "not found", never "forbidden", so their ids are not confirmed either.
//! - **A refused turn is a tool result**, with `isError` and the reason (the module
//!   failed, timed out, the conversation ended, a bad argument), never a protocol error;
//!   nothing is stored for a call refused before its request was stored.
//! - **No prompts, sampling or elicitation.** The hub's modules answer turns; they do not
//!   ask the client's model or user anything.
//! - **No TLS** in the MCP client of [`McpModule::connect`] (servers on a private network
//!   or behind a proxy that terminates TLS), as for A2A.

mod error;
mod module;
mod resources;
mod server;
mod session;
mod tools;

pub use error::McpError;
pub use module::{McpModule, RestartPolicy};
pub use server::{McpOptions, McpServer};
pub use session::McpSession;

//! colloquy's web inspector: read-only pages on the hub, for an operator who would rather
//! look than read a terminal.
//!
//! [`Inspector::router`] gives an axum router to merge into a server (`colloquy serve`
//! merges it on the A2A port) with these pages, all under `/inspect`:
//!
//! - `/inspect`: conversations, newest first, filtered by status, module and start time,
//!   paged by the store's cursor (a page at a time, never everything); statuses, turn
//!   counts and activity follow as they change, and new conversations are announced
//!   (`/inspect/live`);
//! - `/inspect/conversations/{id}`: one conversation: its state, why it ended, its
//!   transcript turn by turn (source -> target, kind, time, the turn it answers, content as
//!   indented JSON), control turns marked, and after the turn each came with, every change
//!   of the shared state (the store's `state_changes`: what a patch changed and the context
//!   after it, the handshake's phase, transfers, the end and its reason);
//!   new turns and status changes appear as they are stored (Server-Sent Events from
//!   `/inspect/conversations/{id}/live`, fed by [`Hub::subscribe`]);
//! - `/inspect/modules`: modules with their capabilities and schemas, the hubs hosting
//!   them on a shared database, and the endpoint of each remote A2A agent;
//! - `/inspect/health`: the hub's health, counts by status, turn and duration
//!   distributions and per-module activity, drawn as bars.
//!
//! Every value from a conversation is escaped by the templates (askama escapes HTML by
//! default; the live page adds rows as text nodes), so a message containing `<script>`
//! shows as text.
//!
//! Access: with no tokens the inspector is open (serve it on loopback only). With tokens
//! ([`InspectorOptions::token`], the same as the A2A front's), a reader presents one as a
//! bearer token, or once as `?token=` (kept in an HTTP-only cookie for the session), and
//! sees only the conversations its participant takes part in; modules and health
//! (aggregates, no content) are shown to every reader with a valid token.
//!
//! # What this crate deliberately does not do
//!
//! - **No writes.** Nothing here sends, ends or changes a conversation.
//! - **No front-end build.** Server-rendered pages, one small script for the live
//!   transcript, one stylesheet, embedded in the crate.
//! - **No push between hubs.** On a database several hubs share, the live pages also read
//!   the store every half second while they are open (turns stored through other hubs are
//!   not announced to this one): another hub's turns appear within that, without a reload.
//!   The list follows the newest 100 conversations that way.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use colloquy_inspector::{Inspector, InspectorOptions};
//! let hub = colloquy_runtime::Hub::builder().sqlite("colloquy.db").build().await?;
//! let app = Inspector::new(hub, InspectorOptions::new()).router();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8765").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```

mod auth;
mod error;
mod live;
mod pages;
mod sample;
mod timeline;
mod transcript;
mod view;

use std::{collections::HashMap, sync::Arc};

use axum::{routing::get, Router};
use colloquy_runtime::{Hub, ModuleName};

pub use error::InspectorError;

/// Who may read what (see the crate's doc).
#[derive(Debug, Clone, Default)]
pub struct InspectorOptions {
    tokens: HashMap<String, ModuleName>,
    remote: HashMap<ModuleName, String>,
}

impl InspectorOptions {
    /// No tokens: every page is open.
    pub fn new() -> Self {
        Self::default()
    }

    /// A reader with `token` sees the conversations `participant` takes part in. Once a
    /// token is given, a request without a known token is refused (401).
    pub fn token(mut self, token: impl Into<String>, participant: ModuleName) -> Self {
        self.tokens.insert(token.into(), participant);
        self
    }

    /// Marks `module` as a remote A2A agent at `endpoint` on the modules page.
    pub fn remote_agent(mut self, module: ModuleName, endpoint: impl Into<String>) -> Self {
        self.remote.insert(module, endpoint.into());
        self
    }
}

/// The inspector of one hub.
#[derive(Debug, Clone)]
pub struct Inspector {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    hub: Hub,
    options: InspectorOptions,
}

impl Inspector {
    /// The inspector of `hub`.
    pub fn new(hub: Hub, options: InspectorOptions) -> Self {
        Self {
            shared: Arc::new(Shared { hub, options }),
        }
    }

    /// The pages, under `/inspect` (see the crate's doc).
    pub fn router(&self) -> Router {
        let pages = Router::new()
            .route("/inspect", get(pages::list))
            .route("/inspect/conversations/{id}", get(transcript::conversation))
            .route("/inspect/conversations/{id}/live", get(live::events))
            .route(
                "/inspect/conversations/{id}/timeline",
                get(transcript::timeline),
            )
            .route(
                "/inspect/conversations/{id}/turns/{turn}",
                get(transcript::turn_json),
            )
            .route("/inspect/live", get(live::list_events))
            .route("/inspect/modules", get(pages::modules))
            .route("/inspect/search", get(pages::search))
            .route("/inspect/health", get(pages::health))
            .route_layer(axum::middleware::from_fn_with_state(
                Arc::clone(&self.shared),
                auth::authenticate,
            ))
            .with_state(Arc::clone(&self.shared));
        // The stylesheet and script hold nothing of any conversation: no token needed (the
        // page that asks for a token uses the stylesheet too).
        pages
            .route("/inspect/assets/{file}", get(pages::asset))
            .layer(axum::middleware::map_response(secure_headers))
    }
}

/// What every response of the inspector tells the browser: run only the inspector's own
/// scripts and styles (no inline script or style, nothing from elsewhere), never inside a
/// frame, no guessing of content types, no referrer sent on.
async fn secure_headers(mut response: axum::response::Response) -> axum::response::Response {
    use axum::http::{header, HeaderValue};
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

//! What a page can fail with, and the status each answers.

use axum::{
    http::StatusCode,
    response::{Html, IntoResponse, Response},
};
use colloquy_runtime::StoreError;

/// Why a page could not be shown.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InspectorError {
    /// No such conversation, or not one the reader may see (the two look the same, so a
    /// reader learns nothing of others' conversations).
    #[error("no conversation {id} that this reader may see; check the id, or the token")]
    NotFound {
        /// The id asked for.
        id: String,
    },
    /// The server has tokens and the request brought none it knows.
    #[error("a token is required: give it as a bearer token or once as ?token=")]
    Unauthorized,
    /// A filter or cursor that cannot be read.
    #[error("{reason}")]
    BadRequest {
        /// What was wrong, and what to give instead.
        reason: String,
    },
    /// The store failed to answer.
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
    /// A page could not be rendered (a bug: templates are checked when the crate builds).
    #[error("the page could not be rendered: {0}")]
    Render(#[from] askama::Error),
}

impl InspectorError {
    fn status(&self) -> StatusCode {
        match self {
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Render(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for InspectorError {
    fn into_response(self) -> Response {
        let status = self.status();
        let page = crate::view::ErrorPage {
            title: status.canonical_reason().unwrap_or("error").to_owned(),
            message: self.to_string(),
            ask_token: matches!(self, Self::Unauthorized),
        };
        match askama::Template::render(&page) {
            Ok(html) => (status, Html(html)).into_response(),
            Err(_) => (status, self.to_string()).into_response(),
        }
    }
}

//! Who is reading: the participant a token names, or everyone on an open inspector.
//!
//! A token comes as `Authorization: Bearer <token>`, or once as `?token=` on any page,
//! which answers with a redirect to the same page without it and an HTTP-only, same-site
//! cookie holding it (so the browser's later requests, the live stream's too, carry it).

use std::sync::Arc;

use axum::{
    extract::{Query, Request, State},
    http::{header, HeaderMap, HeaderValue, StatusCode, Uri},
    middleware::Next,
    response::{IntoResponse, Response},
};
use colloquy_runtime::{Conversation, ModuleName};

use crate::{InspectorError, Shared};

/// The cookie that keeps a token given as `?token=`.
const COOKIE: &str = "colloquy_inspector";

/// Who reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reader {
    /// No tokens are configured: everything is visible.
    Everyone,
    /// A token's participant: only its conversations are visible.
    Participant(ModuleName),
}

impl Reader {
    /// True if the reader may see `conversation`.
    pub(crate) fn may_see(&self, conversation: &Conversation) -> bool {
        match self {
            Self::Everyone => true,
            Self::Participant(me) => conversation.participants().contains(me),
        }
    }

    /// The participant the store's list is narrowed to, if any.
    pub(crate) fn participant(&self) -> Option<&ModuleName> {
        match self {
            Self::Everyone => None,
            Self::Participant(me) => Some(me),
        }
    }
}

/// Finds the reader of every page (a request extension), or answers 401.
pub(crate) async fn authenticate(
    State(shared): State<Arc<Shared>>,
    mut request: Request,
    next: Next,
) -> Response {
    let tokens = &shared.options.tokens;
    if tokens.is_empty() {
        request.extensions_mut().insert(Reader::Everyone);
        return next.run(request).await;
    }
    if let Some(token) = query_token(request.uri()) {
        return match tokens.get(&token) {
            Some(_) => remember(request.uri(), &token),
            None => InspectorError::Unauthorized.into_response(),
        };
    }
    match presented(request.headers()).and_then(|token| tokens.get(&token)) {
        Some(participant) => {
            request
                .extensions_mut()
                .insert(Reader::Participant(participant.clone()));
            next.run(request).await
        }
        None => InspectorError::Unauthorized.into_response(),
    }
}

#[derive(serde::Deserialize)]
struct TokenParam {
    token: Option<String>,
}

fn query_token(uri: &Uri) -> Option<String> {
    Query::<TokenParam>::try_from_uri(uri)
        .ok()
        .and_then(|Query(param)| param.token)
}

/// A bearer token, or the cookie's.
fn presented(headers: &HeaderMap) -> Option<String> {
    if let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
    {
        return Some(token.trim().to_owned());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().strip_prefix(&format!("{COOKIE}=")))
        .find_map(from_hex)
}

/// Redirects to `uri` without its `token` parameter (however its name is encoded, as
/// `token` or `%74oken`: the names are compared decoded, as the query was read), setting
/// the cookie.
fn remember(uri: &Uri, token: &str) -> Response {
    let query = uri.query().unwrap_or_default();
    let mut rest = form_urlencoded::Serializer::new(String::new());
    let mut kept = 0;
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if name != "token" {
            rest.append_pair(&name, &value);
            kept += 1;
        }
    }
    let location = if kept == 0 {
        uri.path().to_owned()
    } else {
        format!("{}?{}", uri.path(), rest.finish())
    };
    let cookie = format!(
        "{COOKIE}={}; Path=/inspect; HttpOnly; SameSite=Strict",
        to_hex(token)
    );
    let mut response = StatusCode::SEE_OTHER.into_response();
    // Both values are built from a path the request carried and hex digits: valid
    // header values; a failure would only leave the header out.
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// A token as hex digits: any token fits in a cookie.
fn to_hex(token: &str) -> String {
    token.bytes().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(hex: &str) -> Option<String> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect();
    String::from_utf8(bytes?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_survives_the_cookie() {
        for token in ["s3cret", "with space;and=signs", "ünïcode"] {
            assert_eq!(from_hex(&to_hex(token)).as_deref(), Some(token));
        }
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
    }
}

//! Who is calling: tokens, passwords, platform operators, and the principal of a request.

pub mod api_keys;
pub mod jwt;
pub mod operators;
pub mod password;

use std::net::IpAddr;

use axum::http::HeaderMap;
use uuid::Uuid;

use crate::{
    error::{AppError, AppResult},
    state::AppState,
};

/// The verified identity behind a request, decided once at the edge.
#[derive(Debug, Clone)]
pub enum Principal {
    Anonymous,
    Platform(PlatformOperator),
}

#[derive(Debug, Clone)]
pub struct PlatformOperator {
    pub id: Uuid,
    pub email: String,
}

/// What resolvers know about the request besides its arguments.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub principal: Principal,
    pub client_addr: Option<IpAddr>,
}

impl RequestContext {
    pub fn require_platform(&self) -> AppResult<&PlatformOperator> {
        match &self.principal {
            Principal::Platform(operator) => Ok(operator),
            Principal::Anonymous => Err(AppError::unauthenticated()),
        }
    }
}

/// Reads `Authorization: Bearer <jwt>` from HTTP headers.
pub fn bearer_token(headers: &HeaderMap) -> AppResult<Option<&str>> {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    parse_bearer(value.to_str().ok()).map(Some)
}

/// Accepts `Bearer <token>` (scheme case-insensitive) and nothing else.
pub fn parse_bearer(value: Option<&str>) -> AppResult<&str> {
    value
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer") && !token.is_empty())
        .map(|(_, token)| token.trim())
        .ok_or_else(|| AppError::Unauthenticated("malformed Authorization header".into()))
}

/// Turns a bearer token (if any) into the request's principal: a present but bad token is an
/// error, never a silent downgrade to anonymous.
pub async fn authenticate(state: &AppState, token: Option<&str>) -> AppResult<Principal> {
    let Some(token) = token else {
        return Ok(Principal::Anonymous);
    };
    let claims = state.jwt.verify(token)?;
    match claims.kind {
        jwt::TokenKind::Platform => {
            // The operator must still exist and be active: removal takes effect at once.
            let operator = operators::find_active(&state.db, claims.sub)
                .await?
                .ok_or_else(|| AppError::Unauthenticated("invalid or expired token".into()))?;
            Ok(Principal::Platform(PlatformOperator {
                id: operator.id,
                email: operator.email,
            }))
        }
        jwt::TokenKind::TenantUser => {
            Err(AppError::Unauthenticated("invalid or expired token".into()))
        }
    }
}

/// A random string of ASCII letters and digits from a CSPRNG (about 5.95 bits per character).
pub fn random_token(len: usize) -> String {
    use rand::{Rng, distr::Alphanumeric};
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}
